#include "actor_critic.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static ac_dense place_dense(int64_t *cursor, int in, int out) {
    ac_dense d = {.w = *cursor, .b = *cursor + (int64_t)in * out, .in = in, .out = out};
    *cursor += (int64_t)in * out + out;
    return d;
}

int ac_model_init(ac_model *model, int obs_dim, int n_actions, int hidden_size, int hidden_layers,
                  bool shared_trunk, activation_kind activation) {
    if (hidden_layers < 1 || hidden_layers > AC_MAX_HIDDEN_LAYERS)
        return -1;
    memset(model, 0, sizeof *model);
    model->obs_dim = obs_dim;
    model->n_actions = n_actions;
    model->hidden_size = hidden_size;
    model->hidden_layers = hidden_layers;
    model->shared_trunk = shared_trunk;
    model->activation = activation;
    int64_t cursor = 0;
    for (int l = 0; l < hidden_layers; l++)
        model->actor_trunk[l] = place_dense(&cursor, l == 0 ? obs_dim : hidden_size, hidden_size);
    if (!shared_trunk)
        for (int l = 0; l < hidden_layers; l++)
            model->critic_trunk[l] =
                place_dense(&cursor, l == 0 ? obs_dim : hidden_size, hidden_size);
    model->actor_head = place_dense(&cursor, hidden_size, n_actions);
    model->critic_head = place_dense(&cursor, hidden_size, 1);
    model->n_params = cursor;
    return 0;
}

static void init_dense(const ac_dense *d, float *params, float gain, rng_state *rng,
                       double *scratch) {
    init_orthogonal(params + d->w, d->out, d->in, gain, rng, scratch);
    memset(params + d->b, 0, sizeof(float) * (size_t)d->out);
}

void ac_model_init_params(const ac_model *model, float *params, rng_state *rng) {
    int big = model->hidden_size > model->obs_dim ? model->hidden_size : model->obs_dim;
    int widest = big > model->n_actions ? big : model->n_actions;
    double *scratch = malloc(sizeof(double) * (size_t)widest * (size_t)widest);
    const float hidden_gain = sqrtf(2.0f);
    for (int l = 0; l < model->hidden_layers; l++)
        init_dense(&model->actor_trunk[l], params, hidden_gain, rng, scratch);
    if (!model->shared_trunk)
        for (int l = 0; l < model->hidden_layers; l++)
            init_dense(&model->critic_trunk[l], params, hidden_gain, rng, scratch);
    init_dense(&model->actor_head, params, 0.01f, rng, scratch);
    init_dense(&model->critic_head, params, 1.0f, rng, scratch);
    free(scratch);
}

int ac_acts_init(ac_acts *acts, const ac_model *model, int max_batch) {
    memset(acts, 0, sizeof *acts);
    const int64_t BH = (int64_t)max_batch * model->hidden_size;
    const int64_t BA = (int64_t)max_batch * model->n_actions;
    const int trunks = model->shared_trunk ? 1 : 2;
    const int64_t total = trunks * 2 * model->hidden_layers * BH + 3 * BA + 2 * max_batch + 3 * BH;
    acts->memory = calloc((size_t)total, sizeof(float));
    if (acts->memory == NULL)
        return -1;
    acts->max_batch = max_batch;
    float *cursor = acts->memory;
    for (int l = 0; l < model->hidden_layers; l++) {
        acts->actor_pre[l] = cursor, cursor += BH;
        acts->actor_post[l] = cursor, cursor += BH;
        if (!model->shared_trunk) {
            acts->critic_pre[l] = cursor, cursor += BH;
            acts->critic_post[l] = cursor, cursor += BH;
        }
    }
    acts->logits = cursor, cursor += BA;
    acts->logp = cursor, cursor += BA;
    acts->dlogits = cursor, cursor += BA;
    acts->values = cursor, cursor += max_batch;
    acts->dvalues = cursor, cursor += max_batch;
    acts->dhidden[0] = cursor, cursor += BH;
    acts->dhidden[1] = cursor, cursor += BH;
    acts->dtrunk_top = cursor, cursor += BH;
    return 0;
}

void ac_acts_free(ac_acts *acts) {
    free(acts->memory);
    memset(acts, 0, sizeof *acts);
}

/* ---- forward ---------------------------------------------------------------- */

static const float *trunk_forward(const ac_model *model, const ac_dense *trunk, const float *params,
                                  float **pre, float **post, const float *obs, int B) {
    const float *inp = obs;
    for (int l = 0; l < model->hidden_layers; l++) {
        const ac_dense *d = &trunk[l];
        dense_forward(pre[l], inp, params + d->w, params + d->b, B, d->in, d->out);
        activation_forward(model->activation, post[l], pre[l], (int64_t)B * d->out);
        inp = post[l];
    }
    return inp;
}

void ac_forward(const ac_model *model, const float *params, ac_acts *acts, const float *obs, int B,
                bool with_critic) {
    const ac_dense *ah = &model->actor_head, *ch = &model->critic_head;
    const float *actor_top =
        trunk_forward(model, model->actor_trunk, params, acts->actor_pre, acts->actor_post, obs, B);
    dense_forward(acts->logits, actor_top, params + ah->w, params + ah->b, B, ah->in, ah->out);
    log_softmax_forward(acts->logp, acts->logits, B, model->n_actions);
    if (!with_critic)
        return;
    const float *critic_top = model->shared_trunk
                                  ? actor_top
                                  : trunk_forward(model, model->critic_trunk, params,
                                                  acts->critic_pre, acts->critic_post, obs, B);
    dense_forward(acts->values, critic_top, params + ch->w, params + ch->b, B, ch->in, ch->out);
}

/* ---- backward ---------------------------------------------------------------- */

/* Backpropagates acts->dtrunk_top (gradient of the top hidden output)
 * through one trunk. dhidden[0] holds the pre-activation gradient; the
 * post-activation gradient alternates between dtrunk_top and dhidden[1]. */
static void trunk_backward(const ac_model *model, const ac_dense *trunk, const float *params,
                           float *grads, ac_acts *acts, float **pre, float **post, const float *obs,
                           int B) {
    float *dpost = acts->dtrunk_top;
    float *spare = acts->dhidden[1];
    float *dpre = acts->dhidden[0];
    for (int l = model->hidden_layers - 1; l >= 0; l--) {
        const ac_dense *d = &trunk[l];
        const int64_t n = (int64_t)B * d->out;
        memset(dpre, 0, sizeof(float) * (size_t)n);
        activation_backward(model->activation, dpre, dpost, pre[l], post[l], n);
        float *dinp = NULL;
        if (l > 0) {
            dinp = spare;
            memset(dinp, 0, sizeof(float) * (size_t)B * (size_t)d->in);
        }
        dense_backward(dinp, grads + d->w, grads + d->b, dpre, l == 0 ? obs : post[l - 1],
                       params + d->w, B, d->in, d->out);
        spare = dpost;
        dpost = dinp;
    }
}

void ac_backward(const ac_model *model, const float *params, float *grads, ac_acts *acts,
                 const float *obs, int B) {
    const ac_dense *ah = &model->actor_head, *ch = &model->critic_head;
    const int L = model->hidden_layers;
    const size_t top_bytes = sizeof(float) * (size_t)B * (size_t)model->hidden_size;
    memset(acts->dtrunk_top, 0, top_bytes);
    dense_backward(acts->dtrunk_top, grads + ah->w, grads + ah->b, acts->dlogits,
                   acts->actor_post[L - 1], params + ah->w, B, ah->in, ah->out);
    if (model->shared_trunk) {
        dense_backward(acts->dtrunk_top, grads + ch->w, grads + ch->b, acts->dvalues,
                       acts->actor_post[L - 1], params + ch->w, B, ch->in, ch->out);
        trunk_backward(model, model->actor_trunk, params, grads, acts, acts->actor_pre,
                       acts->actor_post, obs, B);
        return;
    }
    trunk_backward(model, model->actor_trunk, params, grads, acts, acts->actor_pre,
                   acts->actor_post, obs, B);
    memset(acts->dtrunk_top, 0, top_bytes);
    dense_backward(acts->dtrunk_top, grads + ch->w, grads + ch->b, acts->dvalues,
                   acts->critic_post[L - 1], params + ch->w, B, ch->in, ch->out);
    trunk_backward(model, model->critic_trunk, params, grads, acts, acts->critic_pre,
                   acts->critic_post, obs, B);
}
