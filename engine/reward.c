#include "reward.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "model.h"
#include "optim.h"
#include "rng.h"
#include "safetensors.h"
#include "sft.h"

/* ==== hyperparameters ======================================================== */

static const char *const schedule_choices[] = {"cosine", "linear", "constant", NULL};

#define F(name) offsetof(reward_config, name)
static const hparam_def reward_defs[] = {
    {"seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,
     "Seeds the head's initialisation, the data order, the split and the samples."},
    {"n_layer", HPARAM_INT, F(n_layer), 2, 1, 96, NULL,
     "Blocks when training from scratch (an init checkpoint brings its own)."},
    {"n_head", HPARAM_INT, F(n_head), 4, 1, 128, NULL, "Attention heads (from scratch)."},
    {"d_model", HPARAM_INT, F(d_model), 64, 8, 8192, NULL, "Width (from scratch)."},
    {"context", HPARAM_INT, F(context), 64, 8, 8192, NULL,
     "Longest sequence (from scratch; from a model at most its positions, as for sft)."},
    {"batch_size", HPARAM_INT, F(batch_size), 8, 1, 512, NULL, "Rankings per step."},
    {"max_steps", HPARAM_INT, F(max_steps), 0, 0, 1e9, NULL,
     "Optimizer steps; 0 = as many as `epochs` takes."},
    {"epochs", HPARAM_INT, F(epochs), 1, 1, 10000, NULL,
     "Passes over the rankings (InstructGPT trains one: more overfits)."},
    {"learning_rate", HPARAM_FLOAT, F(learning_rate), 1e-4, 0, 1, NULL, "Peak AdamW step size."},
    {"lr_schedule", HPARAM_CHOICE, F(lr_schedule), 0, 0, 0, schedule_choices,
     "Decay after warm-up."},
    {"warmup_steps", HPARAM_INT, F(warmup_steps), 10, 0, 1e9, NULL, "Linear warm-up steps."},
    {"min_lr_ratio", HPARAM_FLOAT, F(min_lr_ratio), 0.1, 0, 1, NULL,
     "Final learning rate as a fraction of the peak."},
    {"weight_decay", HPARAM_FLOAT, F(weight_decay), 0.0, 0, 10, NULL,
     "AdamW weight decay on matrices."},
    {"max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 1.0, 0, 1e6, NULL,
     "Clip the global gradient norm to this."},
    {"use_margin", HPARAM_BOOL, F(use_margin), 0, 0, 0, NULL,
     "Subtract each ranking's margin inside the BT logit (Llama 2)."},
    {"center_coef", HPARAM_FLOAT, F(center_coef), 0.0, 0, 10, NULL,
     "Reward-centering penalty c · mean(r²) (0 = off)."},
    {"eval_fraction", HPARAM_FLOAT, F(eval_fraction), 0.1, 0, 0.5, NULL,
     "Share of rankings held out for accuracy when no eval set is given."},
    {"eval_interval", HPARAM_INT, F(eval_interval), 50, 0, 1e9, NULL,
     "Held-out accuracy every this many steps (0 = only at the end)."},
    {"norm_samples", HPARAM_INT, F(norm_samples), 64, 0, 100000, NULL,
     "Responses sampled from the SFT policy to normalise rewards to mean 0, std 1 (0 = skip)."},
    {"norm_max_tokens", HPARAM_INT, F(norm_max_tokens), 48, 1, 4096, NULL,
     "Length limit of those samples."},
    {"prior_first_comparison", HPARAM_INT, F(prior_first_comparison), 0, 0, 9007199254740991.0,
     NULL,
     "With prior_last_comparison: before the first update, the initial model's pair accuracy "
     "on the rankings of comparisons prior_first_comparison..prior_last_comparison of the "
     "job's project, reported at step 0 as prior_correct of prior_pairs (0 = none; the online "
     "loop sets these)."},
    {"prior_last_comparison", HPARAM_INT, F(prior_last_comparison), 0, 0, 9007199254740991.0, NULL,
     "The last comparison of that range."},
};
#undef F

const hparam_table reward_hparams = {reward_defs, (int)(sizeof reward_defs / sizeof reward_defs[0]),
                                     sizeof(reward_config)};

int reward_validate(const reward_config *cfg, char *err, size_t errlen) {
    if (cfg->d_model % cfg->n_head != 0) {
        snprintf(err, errlen, "hyperparameter 'n_head': %lld does not divide d_model %lld",
                 (long long)cfg->n_head, (long long)cfg->d_model);
        return -1;
    }
    return 0;
}

int ranking_validate(const ranking *rk, char *err, size_t errlen) {
    if (rk->k < 2 || rk->k > RANKING_MAX_K) {
        snprintf(err, errlen, "a ranking needs 2 to %d responses, got %d", RANKING_MAX_K, rk->k);
        return -1;
    }
    int strict = 0;
    for (int i = 0; i < rk->k; i++) {
        if (rk->rank[i] < 0 || rk->rank[i] >= rk->k) {
            snprintf(err, errlen, "rank %d of response %d is outside 0..%d", rk->rank[i], i,
                     rk->k - 1);
            return -1;
        }
        for (int j = 0; j < rk->k; j++)
            strict |= rk->rank[i] < rk->rank[j];
    }
    if (!strict) {
        snprintf(err, errlen, "a ranking where every response ties says nothing");
        return -1;
    }
    return 0;
}

/* ==== the loss ================================================================ */

static double softplus(double x) { /* log(1 + e^x), stable */
    return x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
}

static double sigmoid(double x) {
    return x >= 0 ? 1.0 / (1.0 + exp(-x)) : exp(x) / (1.0 + exp(x));
}

double reward_ranking_loss(const float *r, const ranking *rk, bool use_margin, double center_coef,
                           float *dr, float scale, int *correct, int *pairs) {
    int n_pairs = 0;
    for (int i = 0; i < rk->k; i++)
        for (int j = 0; j < rk->k; j++)
            n_pairs += rk->rank[i] < rk->rank[j];
    if (n_pairs == 0)
        return NAN;
    const double m = use_margin ? rk->margin : 0.0;
    double loss = 0.0;
    for (int w = 0; w < rk->k; w++)
        for (int l = 0; l < rk->k; l++) {
            if (rk->rank[w] >= rk->rank[l])
                continue;
            const double d = (double)r[w] - r[l] - m;
            loss += softplus(-d); /* -log σ(d) */
            if (correct)
                *correct += r[w] > r[l];
            if (dr) {
                const double g = -sigmoid(-d) / n_pairs; /* ∂/∂d of the pair's share */
                dr[w] += (float)(scale * g);
                dr[l] -= (float)(scale * g);
            }
        }
    if (pairs)
        *pairs += n_pairs;
    loss /= n_pairs;
    if (center_coef > 0.0)
        for (int k = 0; k < rk->k; k++) {
            loss += center_coef * (double)r[k] * r[k] / rk->k;
            if (dr)
                dr[k] += (float)(scale * 2.0 * center_coef * r[k] / rk->k);
        }
    return loss;
}

/* ==== data ====================================================================== */

/* Every response of every ranking, tokenized as prompt + response + EOT. */
typedef struct ranked_data {
    const ranking *rankings; /* in order */
    int64_t n;
    int32_t *ids;
    int64_t *offset;   /* (n · 9 + 1) start of sequence (ranking i, response k) at i·9 + k */
    int64_t truncated; /* rankings with a response cut at the context */
} ranked_data;

static void ranked_free(ranked_data *d) {
    free(d->ids), free(d->offset);
    memset(d, 0, sizeof *d);
}

static int ranked_build(ranked_data *d, const tokenizer *tok, const ranking *rk, int64_t n,
                        int64_t context, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    const int64_t cap = context;
    d->ids = malloc(sizeof(int32_t) * (size_t)(n * RANKING_MAX_K * cap));
    d->offset = malloc(sizeof(int64_t) * (size_t)(n * RANKING_MAX_K + 1));
    uint8_t *mask = malloc((size_t)cap);
    if (!d->ids || !d->offset || !mask) {
        snprintf(err, errlen, "out of memory tokenizing %lld rankings", (long long)n);
        free(mask);
        ranked_free(d);
        return -1;
    }
    int64_t at = 0;
    for (int64_t i = 0; i < n; i++) {
        bool cut = false;
        for (int k = 0; k < RANKING_MAX_K; k++) {
            d->offset[i * RANKING_MAX_K + k] = at;
            if (k >= rk[i].k)
                continue;
            const text_pair ex = {rk[i].prompt, rk[i].responses[k], NULL, 0};
            const int64_t len =
                sft_tokenize_text(tok, &ex, true, rk[i].rendered, d->ids + at, mask, cap);
            if (len < 1) {
                snprintf(err, errlen, "ranking %lld: the tokenizer failed", (long long)i + 1);
                free(mask);
                ranked_free(d);
                return -1;
            }
            cut |= len == cap && d->ids[at + len - 1] != tok->eot_id; /* the end did not fit */
            at += len;
        }
        d->truncated += cut;
    }
    d->offset[n * RANKING_MAX_K] = at;
    d->rankings = rk;
    d->n = n;
    free(mask);
    return 0;
}

typedef struct seq_batch {
    int32_t *tokens; /* (S, T) */
    uint8_t *attn;
    int32_t *last; /* (S) index of each sequence's last token */
    int S, T;
} seq_batch;

/* The sequences of rankings idx[0..n), right-padded. */
static void make_seq_batch(seq_batch *sb, const ranked_data *d, const int64_t *idx, int n) {
    int S = 0, T = 1;
    /* unused slots k >= K have empty ranges, so offset[j + 1] ends sequence j */
    for (int b = 0; b < n; b++)
        for (int k = 0; k < d->rankings[idx[b]].k; k++) {
            const int64_t j = idx[b] * RANKING_MAX_K + k;
            const int64_t len = d->offset[j + 1] - d->offset[j];
            T = len > T ? (int)len : T;
            S++;
        }
    sb->S = S;
    sb->T = T;
    int s = 0;
    for (int b = 0; b < n; b++)
        for (int k = 0; k < d->rankings[idx[b]].k; k++, s++) {
            const int64_t j = idx[b] * RANKING_MAX_K + k;
            const int64_t start = d->offset[j], len = d->offset[j + 1] - start;
            for (int t = 0; t < T; t++) {
                sb->tokens[(int64_t)s * T + t] = t < len ? d->ids[start + t] : 0;
                sb->attn[(int64_t)s * T + t] = (uint8_t)(t < len);
            }
            sb->last[s] = (int32_t)len - 1;
        }
}

/* ==== training ==================================================================== */

/* Rewards of a sequence batch: the scalar head at each sequence's last token. */
static void rewards_forward(model *m, const seq_batch *sb, float *r) {
    model_forward(m, sb->tokens, NULL, sb->attn, sb->S, sb->T, 0, 0);
    const float *values = model_values(m);
    for (int s = 0; s < sb->S; s++)
        r[s] = values[(int64_t)s * sb->T + sb->last[s]];
}

typedef struct eval_stats {
    double loss, accuracy, reward_mean, reward_std, margin;
    int64_t correct, pairs; /* accuracy = correct / pairs */
} eval_stats;

/* Loss, pair accuracy and reward statistics over rankings idx[0..n) of d,
 * in batches of B; with train set, also backpropagates the mean loss. With
 * data parallelism each rank runs its shard of idx (the gradient still of
 * the mean over all n; the caller sums the ranks' gradients) and the
 * statistics are reduced over ranks. */
static eval_stats run_rankings(model *m, const ranked_data *d, const int64_t *idx, int64_t n, int B,
                               seq_batch *sb, float *r, float *dr, const reward_config *cfg,
                               bool train, const dist_comm *dist) {
    eval_stats st = {0};
    int correct = 0, pairs = 0, counted = 0;
    double sum_r = 0.0, sum_r2 = 0.0, sum_margin = 0.0;
    int64_t n_r = 0;
    int64_t lo, hi;
    dist_shard(n, dist_rank(dist), dist_size(dist), &lo, &hi);
    for (int64_t start = lo; start < hi; start += B) {
        const int nb = (int)(hi - start < B ? hi - start : B);
        make_seq_batch(sb, d, idx + start, nb);
        rewards_forward(m, sb, r);
        if (train)
            memset(model_dvalues(m), 0, sizeof(float) * (size_t)sb->S * (size_t)sb->T);
        int s = 0;
        for (int b = 0; b < nb; b++) {
            const ranking *rk = &d->rankings[idx[start + b]];
            float local_dr[RANKING_MAX_K] = {0};
            const double l =
                reward_ranking_loss(r + s, rk, cfg->use_margin, cfg->center_coef,
                                    train ? local_dr : NULL, 1.0f / (float)n, &correct, &pairs);
            if (!isnan(l)) {
                st.loss += l;
                counted++;
            }
            for (int k = 0; k < rk->k; k++) {
                sum_r += r[s + k];
                sum_r2 += (double)r[s + k] * r[s + k];
                n_r++;
                for (int j = 0; j < rk->k; j++)
                    if (rk->rank[k] < rk->rank[j])
                        sum_margin += r[s + k] - r[s + j];
                if (train)
                    model_dvalues(m)[(int64_t)(s + k) * sb->T + sb->last[s + k]] = local_dr[k];
            }
            s += rk->k;
        }
        if (train)
            model_backward(m, false, true);
    }
    (void)dr;
    double sums[8] = {st.loss, counted, correct, pairs, sum_r, sum_r2, (double)n_r, sum_margin};
    if (dist_allreduce_sum_f64(dist, sums, 8) != 0)
        sums[0] = NAN; /* reported as a non-finite loss */
    st.loss = sums[0], counted = (int)sums[1], correct = (int)sums[2], pairs = (int)sums[3];
    sum_r = sums[4], sum_r2 = sums[5], n_r = (int64_t)sums[6], sum_margin = sums[7];
    st.loss = counted ? st.loss / counted : NAN;
    st.correct = correct, st.pairs = pairs;
    st.accuracy = pairs ? (double)correct / pairs : NAN;
    st.margin = pairs ? sum_margin / pairs : NAN;
    st.reward_mean = n_r ? sum_r / (double)n_r : NAN;
    st.reward_std =
        n_r ? sqrt(fmax(0.0, sum_r2 / (double)n_r - st.reward_mean * st.reward_mean)) : NAN;
    return st;
}

static int init_reward_model(model *m, const reward_config *cfg, const reward_inputs *in, char *err,
                             size_t errlen) {
    if (in->init_checkpoint == NULL) {
        const gpt2_config gc = {in->tok->vocab_size, (int)cfg->context, (int)cfg->n_layer,
                                (int)cfg->n_head,    (int)cfg->d_model, true};
        gpt2_model g;
        if (gpt2_init(&g, &gc, err, errlen) != 0)
            return -1;
        rng_state r;
        rng_seed(&r, (uint64_t)cfg->seed, 0xC0000001u);
        gpt2_init_weights(&g, &r);
        model_from_gpt2(m, &g);
        return 0;
    }
    /* the head's N(0, 1/sqrt(C+1)) from the same stream; the rest is overwritten */
    const model_open_options opt = {.scalar_head = true,
                                    .init_weights = true,
                                    .init_seed = (uint64_t)cfg->seed,
                                    .init_stream = 0xC0000001u,
                                    .max_context = (int)cfg->context};
    if (model_load(in->init_checkpoint, &opt, m, NULL, err, errlen) != 0 ||
        model_alloc_grads(m, err, errlen) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

/* Responses sampled (temperature 1) from the initial (SFT) weights for the
 * prompts of the first rankings: the population the reward is normalised on. */
typedef struct norm_samples {
    int32_t *ids; /* (n, cap) prompt + response + EOT, right-padded */
    int32_t *len; /* (n) */
    int n, cap;
    int n_cut; /* samples that hit norm_max_tokens (or the context) unfinished */
} norm_samples;

static int sample_policy(norm_samples *ns, const model *policy, const reward_config *cfg,
                         const reward_inputs *in, char *err, size_t errlen) {
    const int n = (int)(cfg->norm_samples < in->n_train ? cfg->norm_samples : in->n_train);
    const int cap = model_max_seq_len(policy);
    ns->ids = calloc((size_t)n * (size_t)cap, sizeof(int32_t));
    ns->len = calloc((size_t)n, sizeof(int32_t));
    int32_t *out = malloc(sizeof(int32_t) * (size_t)cap);
    if (!ns->ids || !ns->len || !out) {
        free(out);
        snprintf(err, errlen, "out of memory sampling for the reward normalisation");
        return -1;
    }
    rng_state r;
    rng_seed(&r, (uint64_t)cfg->seed, 0xC0000002u);
    ns->cap = cap;
    ns->n = 0;
    for (int i = 0; i < n; i++) {
        int32_t *row = ns->ids + (int64_t)ns->n * cap;
        const char *prompt = in->train[i].prompt;
        const int64_t np = tokenizer_encode_input(in->tok, prompt, strlen(prompt), row, (size_t)cap,
                                                  in->train[i].rendered);
        const int64_t room = cap - np - 1;
        const int max_new = (int)(cfg->norm_max_tokens < room ? cfg->norm_max_tokens : room);
        if (np < 1 || max_new < 1)
            continue;
        int32_t got = 0;
        if (model_generate(policy, row, NULL, 1, (int)np, 1.0f, 0, 1.0f, max_new, in->tok->eot_id,
                           &r, out, &got, err, errlen) != 0) {
            free(out);
            return -1;
        }
        memcpy(row + np, out, sizeof(int32_t) * (size_t)got);
        int64_t len = np + got;
        if (got == 0 || out[got - 1] != in->tok->eot_id) {
            row[len++] = in->tok->eot_id; /* score it as a finished answer */
            ns->n_cut += got == max_new;
        }
        ns->len[ns->n++] = (int32_t)len;
    }
    free(out);
    return 0;
}

/* ==== the session ================================================================ */

struct reward_session {
    const reward_config *cfg;
    const reward_inputs *in;
    const train_sink *sink;
    model m;
    int B, max_seqs;
    int64_t n_train, n_eval; /* order[0..n_train) trains, order[n_train..+n_eval) is held out */
    int64_t total_steps, steps, cursor;
    lr_schedule_kind sched;
    rng_state data_rng;
    norm_samples ns;
    ranked_data all;
    seq_batch sb;
    float *r;               /* (max_seqs) rewards of a batch */
    float *adam_m, *adam_v; /* (num_params) */
    uint8_t *decay;         /* (num_params) 1 = AdamW decays it */
    int64_t *order;         /* (n_train + n_eval) */
    double gain, bias;      /* the normalisation: 1, 0 until reward_session_normalize */
};

void reward_session_free(reward_session *s) {
    if (s == NULL)
        return;
    free((void *)s->all.rankings);
    ranked_free(&s->all);
    free(s->ns.ids), free(s->ns.len);
    free(s->sb.tokens), free(s->sb.attn), free(s->sb.last), free(s->r);
    free(s->adam_m), free(s->adam_v), free(s->decay), free(s->order);
    model_free(&s->m);
    free(s);
}

int reward_session_init(reward_session **out, const reward_config *cfg, const reward_inputs *in,
                        const train_sink *sink, char *err, size_t errlen) {
    *out = NULL;
    if (reward_validate(cfg, err, errlen) != 0)
        return -1;
    for (int64_t i = 0; i < in->n_train; i++)
        if (ranking_validate(&in->train[i], err, errlen) != 0) {
            char inner[256];
            snprintf(inner, sizeof inner, "%s", err);
            snprintf(err, errlen, "ranking %lld: %s", (long long)i + 1, inner);
            return -1;
        }
    if (in->n_train < 1) {
        snprintf(err, errlen, "no rankings to train on");
        return -1;
    }
    reward_session *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    if (init_reward_model(&s->m, cfg, in, err, errlen) != 0) {
        free(s);
        return -1;
    }
    s->cfg = cfg, s->in = in, s->sink = sink;
    s->gain = 1.0, s->bias = 0.0;
    model *m = &s->m;
    const int B = s->B = (int)cfg->batch_size;
    const int64_t context = model_max_seq_len(m);

    /* The SFT policy's samples, before training changes the shared trunk
     * (or in->norm_policy's). (rank 0's job alone: it normalises and writes
     * the checkpoint) */
    if (dist_is_root(in->dist) && cfg->norm_samples > 0) {
        model policy;
        const model_open_options popt = {.max_context = (int)cfg->context};
        const bool own = in->norm_policy != NULL;
        if (own && model_load(in->norm_policy, &popt, &policy, NULL, err, errlen) != 0)
            goto fail;
        const int sampled = sample_policy(&s->ns, own ? &policy : m, cfg, in, err, errlen);
        if (own)
            model_free(&policy);
        if (sampled != 0 || sink_warn_truncated(sink, "normalisation samples", s->ns.n_cut, s->ns.n,
                                                "norm_max_tokens", cfg->norm_max_tokens) != 0)
            goto fail;
    }

    /* Split: a seeded shuffle; the tail is held out unless eval rankings are given. */
    const int64_t n_all = in->n_train + (in->eval ? in->n_eval : 0);
    ranking *joined = malloc(sizeof(ranking) * (size_t)n_all);
    s->order = malloc(sizeof(int64_t) * (size_t)n_all);
    if (joined == NULL || s->order == NULL) {
        free(joined);
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    memcpy(joined, in->train, sizeof(ranking) * (size_t)in->n_train);
    if (in->eval)
        memcpy(joined + in->n_train, in->eval, sizeof(ranking) * (size_t)in->n_eval);
    const int built = ranked_build(&s->all, in->tok, joined, n_all, context, err, errlen);
    s->all.rankings = joined; /* owned from here: freed with the session */
    if (built != 0 || sink_warn_truncated(sink, "rankings (a response)", s->all.truncated, n_all,
                                          "context", context) != 0)
        goto fail;
    rng_seed(&s->data_rng, (uint64_t)cfg->seed, 0xC0000003u);
    int64_t n_train = in->n_train, n_eval = in->eval ? in->n_eval : 0;
    int64_t *order = s->order;
    for (int64_t i = 0; i < in->n_train; i++)
        order[i] = i;
    for (int64_t i = in->n_train - 1; i > 0; i--) {
        const int64_t j = (int64_t)rng_next_below(&s->data_rng, (uint32_t)i + 1);
        const int64_t t = order[i];
        order[i] = order[j], order[j] = t;
    }
    if (in->eval)
        for (int64_t i = 0; i < n_eval; i++)
            order[n_train + i] = in->n_train + i;
    else if (cfg->eval_fraction > 0.0 && n_train >= 2) {
        n_eval = (int64_t)(cfg->eval_fraction * (double)n_train);
        n_eval = n_eval < 1 ? 1 : n_eval;
        n_train -= n_eval;
    }
    s->n_train = n_train, s->n_eval = n_eval;

    const int max_seqs = s->max_seqs = B * RANKING_MAX_K;
    seq_batch *sb = &s->sb;
    sb->tokens = malloc(sizeof(int32_t) * (size_t)max_seqs * (size_t)context);
    sb->attn = malloc((size_t)max_seqs * (size_t)context);
    sb->last = malloc(sizeof(int32_t) * (size_t)max_seqs);
    s->r = malloc(sizeof(float) * (size_t)max_seqs);
    const int64_t np = model_trainable_count(m);
    s->adam_m = calloc((size_t)np, sizeof(float));
    s->adam_v = calloc((size_t)np, sizeof(float));
    s->decay = malloc((size_t)np);
    if (!sb->tokens || !sb->attn || !sb->last || !s->r || !s->adam_m || !s->adam_v || !s->decay ||
        model_reserve(m, max_seqs, (int)context, err, errlen) != 0) {
        if (err[0] == '\0')
            snprintf(err, errlen, "out of memory for training state");
        goto fail;
    }
    model_trainable_decay_mask(m, s->decay);

    const int64_t steps_per_epoch = (n_train + B - 1) / B;
    s->total_steps = cfg->max_steps > 0 ? cfg->max_steps : steps_per_epoch * cfg->epochs;
    s->sched = (lr_schedule_kind)lr_schedule_from_name(cfg->lr_schedule);
    *out = s;
    return 0;
fail:
    reward_session_free(s);
    return -1;
}

int64_t reward_session_total_steps(const reward_session *s) {
    return s->total_steps;
}

int64_t reward_session_steps_done(const reward_session *s) {
    return s->steps;
}

bool reward_session_has_eval(const reward_session *s) {
    return s->n_eval > 0;
}

const model *reward_session_model(const reward_session *s) {
    return &s->m;
}

int reward_session_step(reward_session *s, reward_step_result *out, char *err, size_t errlen) {
    const reward_config *cfg = s->cfg;
    const dist_comm *dist = s->in->dist;
    model *m = &s->m;
    const int B = s->B;
    const int64_t step = s->steps;
    float *params = model_trainable_params(m), *grads = model_trainable_grads(m);
    const int64_t np = model_trainable_count(m);
    if (s->cursor + B > s->n_train) { /* a new epoch over the training rankings */
        for (int64_t i = s->n_train - 1; i > 0; i--) {
            const int64_t j = (int64_t)rng_next_below(&s->data_rng, (uint32_t)i + 1);
            const int64_t t = s->order[i];
            s->order[i] = s->order[j], s->order[j] = t;
        }
        s->cursor = 0;
    }
    const int nb = (int)(s->n_train - s->cursor < B ? s->n_train - s->cursor : B);
    model_zero_grad(m);
    const eval_stats st =
        run_rankings(m, &s->all, s->order + s->cursor, nb, B, &s->sb, s->r, NULL, cfg, true, dist);
    s->cursor += nb;
    if (dist_allreduce_sum_f32(dist, grads, np) != 0) {
        snprintf(err, errlen, "reducing the gradients across ranks failed at step %lld",
                 (long long)step + 1);
        return -1;
    }
    if (!isfinite(st.loss)) {
        snprintf(err, errlen, "non-finite loss at step %lld", (long long)step + 1);
        return -1;
    }
    const double grad_norm = grad_clip_global_norm(grads, np, cfg->max_grad_norm);
    const float lr = lr_schedule(s->sched, (float)cfg->learning_rate, step, cfg->warmup_steps,
                                 s->total_steps, (float)cfg->min_lr_ratio);
    const adam_config adamw = {lr, 0.9f, 0.999f, 1e-8f, (float)cfg->weight_decay};
    adam_step(params, grads, s->adam_m, s->adam_v, s->decay, np, &adamw, step + 1);
    if (dist_check_replicas(dist, params, np, err, errlen) != 0)
        return -1;
    s->steps = step + 1;
    *out = (reward_step_result){.step = s->steps,
                                .loss = st.loss,
                                .accuracy = st.accuracy,
                                .margin = st.margin,
                                .reward_mean = st.reward_mean,
                                .reward_std = st.reward_std,
                                .grad_norm = grad_norm,
                                .lr = lr};
    return 0;
}

reward_eval_result reward_session_eval(reward_session *s) {
    if (s->n_eval == 0)
        return (reward_eval_result){NAN, NAN};
    const eval_stats ev = run_rankings(&s->m, &s->all, s->order + s->n_train, s->n_eval, s->B,
                                       &s->sb, s->r, NULL, s->cfg, false, s->in->dist);
    return (reward_eval_result){ev.loss, ev.accuracy};
}

void reward_session_normalize(reward_session *s, double *gain, double *bias) {
    const norm_samples *ns = &s->ns;
    seq_batch *sb = &s->sb;
    const int max_seqs = s->max_seqs;
    if (ns->n >= 2) {
        double sum = 0.0, sum2 = 0.0;
        for (int start = 0; start < ns->n; start += max_seqs) {
            const int nb = ns->n - start < max_seqs ? ns->n - start : max_seqs;
            int T = 1;
            for (int i = 0; i < nb; i++)
                T = ns->len[start + i] > T ? ns->len[start + i] : T;
            for (int i = 0; i < nb; i++)
                for (int t = 0; t < T; t++) {
                    const int in_row = t < ns->len[start + i];
                    sb->tokens[(int64_t)i * T + t] =
                        in_row ? ns->ids[(int64_t)(start + i) * ns->cap + t] : 0;
                    sb->attn[(int64_t)i * T + t] = (uint8_t)in_row;
                }
            for (int i = 0; i < nb; i++)
                sb->last[i] = ns->len[start + i] - 1;
            sb->S = nb;
            sb->T = T;
            rewards_forward(&s->m, sb, s->r);
            for (int i = 0; i < nb; i++)
                sum += s->r[i], sum2 += (double)s->r[i] * s->r[i];
        }
        const double mean = sum / ns->n;
        const double std = sqrt(fmax(sum2 / ns->n - mean * mean, 1e-12));
        s->gain = 1.0 / std;
        s->bias = -mean / std;
        char msg[160];
        snprintf(msg, sizeof msg,
                 "normalised on %d SFT-policy samples: raw mean %.4g, std %.4g -> gain %.4g, "
                 "bias %.4g",
                 ns->n, mean, std, s->gain, s->bias);
        const sink_metric data[] = {{"gain", s->gain}, {"bias", s->bias}};
        sink_event(s->sink, SINK_LEVEL_INFO, "reward_normalised", msg, data, 2);
    }
    *gain = s->gain, *bias = s->bias;
}

int reward_session_checkpoint(reward_session *s, char *err, size_t errlen) {
    if (!dist_is_root(s->in->dist))
        return 0;
    char gain[32], bias[32], steps[24];
    snprintf(gain, sizeof gain, "%.9g", s->gain);
    snprintf(bias, sizeof bias, "%.9g", s->bias);
    snprintf(steps, sizeof steps, "%lld", (long long)s->steps);
    const char *const meta[][2] = {
        {"rlhfd_job", "reward"}, {"step", steps}, {"reward_gain", gain}, {"reward_bias", bias}};
    const int rc = model_sink_checkpoint(s->sink, s->steps, &s->m, meta, 4, NULL, 0);
    if (rc != 0)
        snprintf(err, errlen, "writing the reward model checkpoint failed");
    return rc;
}

/* The initial model's pair accuracy on in->prior, before any update: a
 * pair is two responses of a ranking with different ranks, correct when
 * the better ranked scores strictly higher (reward_ranking_loss). Reported
 * at step 0; rank 0 alone (dist is left out: the others never see prior). */
static int score_prior(reward_session *s, char *err, size_t errlen) {
    ranked_data d;
    if (ranked_build(&d, s->in->tok, s->in->prior, s->in->n_prior, model_max_seq_len(&s->m), err,
                     errlen) != 0)
        return -1;
    int64_t *idx = malloc(sizeof(int64_t) * (size_t)s->in->n_prior);
    if (idx == NULL) {
        ranked_free(&d);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    for (int64_t i = 0; i < s->in->n_prior; i++)
        idx[i] = i;
    const eval_stats st =
        run_rankings(&s->m, &d, idx, s->in->n_prior, s->B, &s->sb, s->r, NULL, s->cfg, false, NULL);
    free(idx);
    ranked_free(&d);
    const sink_metric mt[] = {{"prior_correct", (double)st.correct},
                              {"prior_pairs", (double)st.pairs},
                              {"prior_accuracy", st.accuracy}};
    if (sink_metrics(s->sink, 0, mt, 3) != 0) {
        snprintf(err, errlen, "the metrics sink failed");
        return -1;
    }
    return 0;
}

/* ==== the loop =================================================================== */

int reward_train(const reward_config *cfg, const reward_inputs *in, const train_sink *sink,
                 reward_result *result, char *err, size_t errlen) {
    reward_session *s;
    if (reward_session_init(&s, cfg, in, sink, err, errlen) != 0)
        return -1;
    reward_result res = {.gain = 1.0, .bias = 0.0, .eval_accuracy = NAN, .eval_loss = NAN};
    const int64_t total = reward_session_total_steps(s);
    int rc = -1;
    if (in->n_prior > 0 && dist_is_root(in->dist) && score_prior(s, err, errlen) != 0)
        goto done;
    while (reward_session_steps_done(s) < total) {
        if (dist_should_stop(in->dist, sink))
            break;
        reward_step_result st;
        if (reward_session_step(s, &st, err, errlen) != 0)
            goto done;
        res.steps = st.step;
        res.train_accuracy = st.accuracy;
        sink_metric mt[12];
        int k = 0;
        mt[k++] = (sink_metric){"loss", st.loss};
        mt[k++] = (sink_metric){"accuracy", st.accuracy};
        mt[k++] = (sink_metric){"margin", st.margin};
        mt[k++] = (sink_metric){"reward_mean", st.reward_mean};
        mt[k++] = (sink_metric){"reward_std", st.reward_std};
        mt[k++] = (sink_metric){"grad_norm", st.grad_norm};
        mt[k++] = (sink_metric){"lr", st.lr};
        const bool last = st.step == total;
        if (reward_session_has_eval(s) &&
            (last || (cfg->eval_interval > 0 && st.step % cfg->eval_interval == 0))) {
            const reward_eval_result ev = reward_session_eval(s);
            res.eval_accuracy = ev.accuracy;
            res.eval_loss = ev.loss;
            mt[k++] = (sink_metric){"eval_loss", ev.loss};
            mt[k++] = (sink_metric){"eval_accuracy", ev.accuracy};
        }
        if (sink_metrics(sink, st.step, mt, k) != 0) {
            snprintf(err, errlen, "the metrics sink failed");
            goto done;
        }
    }
    /* Normalise: SFT-policy samples score mean 0, std 1 (Ziegler et al. 2019). */
    reward_session_normalize(s, &res.gain, &res.bias);
    if (reward_session_checkpoint(s, err, errlen) != 0)
        goto done;
    rc = 0;
done:
    if (result)
        *result = res;
    reward_session_free(s);
    return rc;
}
