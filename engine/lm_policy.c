/* See lm_policy.h. */
#include "lm_policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2_checkpoint.h"
#include "lora.h"

const char *const lm_lora_target_choices[] = {"all", "attn", "mlp", "c_attn", NULL};
/* lm_lora_target_choices spelled out for lora_parse_targets */
static const char *const lora_target_sets[] = {"all", "attn.c_attn,attn.c_proj",
                                               "mlp.c_fc,mlp.c_proj", "attn.c_attn"};

int lm_open_model(gpt2_model *m, const char *path, bool with_head, lm_lora_load lora,
                  const lm_lora_spec *spec, uint32_t stream, model_info *info, char *err,
                  size_t errlen) {
    model_lora adapters = {0};
    if (lora != LM_LORA_NONE) {
        unsigned targets = LORA_TARGETS_ALL;
        for (int i = 0; lm_lora_target_choices[i] != NULL; i++)
            if (strcmp(spec->targets, lm_lora_target_choices[i]) == 0 &&
                lora_parse_targets(lora_target_sets[i], &targets, err, errlen) != 0)
                return -1;
        adapters = (model_lora){(int)spec->r, (float)spec->alpha, targets, spec->seed, stream};
    }
    const model_open_options opt = {.scalar_head = with_head,
                                    .init_weights = true,
                                    .init_seed = spec->seed,
                                    .init_stream = 0xE0000001u,
                                    .lora = lora == LM_LORA_FROM_FILE ? &adapters : NULL};
    if (model_open(path, &opt, m, info, err, errlen) != 0)
        return -1;
    if (lora == LM_LORA_FRESH && model_lora_attach(m, &adapters, err, errlen) != 0) {
        gpt2_free(m);
        return -1;
    }
    return 0;
}

float *lm_trainable_params(gpt2_model *m) {
    return m->lora ? m->lora->params : m->param_memory;
}
float *lm_trainable_grads(gpt2_model *m) {
    return m->lora ? m->lora->grads : m->grad_memory;
}
int64_t lm_trainable_count(const gpt2_model *m) {
    return m->lora ? m->lora->num_params : m->num_params;
}

bool lm_all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

/* ---- rows ---------------------------------------------------------------------- */

int lm_rows_alloc(lm_rows *r, int B, int P, int N) {
    memset(r, 0, sizeof *r);
    r->B = B, r->P = P, r->N = N, r->S = P + N;
    const size_t BS = (size_t)B * (size_t)r->S, BN = (size_t)B * (size_t)N;
    r->seq = malloc(sizeof(int32_t) * BS);
    r->seq_mask = malloc(BS);
    r->positions = malloc(sizeof(int32_t) * BS);
    r->gen = malloc(sizeof(int32_t) * BN);
    r->len = malloc(sizeof(int32_t) * (size_t)B);
    r->mask = malloc(BN);
    return r->seq && r->seq_mask && r->positions && r->gen && r->len && r->mask ? 0 : -1;
}

void lm_rows_free(lm_rows *r) {
    free(r->seq), free(r->seq_mask), free(r->positions), free(r->gen), free(r->len), free(r->mask);
    memset(r, 0, sizeof *r);
}

void lm_rows_set(lm_rows *r, int b, const int32_t *prompt, int n_prompt, const int32_t *resp,
                 int n_resp, int32_t pad) {
    const int P = r->P, N = r->N, S = r->S, lead = P - n_prompt;
    int32_t *seq = r->seq + (int64_t)b * S, *pos = r->positions + (int64_t)b * S;
    uint8_t *sm = r->seq_mask + (int64_t)b * S;
    int p = 0;
    for (int c = 0; c < S; c++) {
        const bool real = c < P ? c >= lead : c - P < n_resp;
        seq[c] = !real ? pad : c < P ? prompt[c - lead] : resp[c - P];
        sm[c] = (uint8_t)real;
        pos[c] = real ? p++ : 0;
    }
    for (int t = 0; t < N; t++) {
        r->gen[(int64_t)b * N + t] = t < n_resp ? resp[t] : pad;
        r->mask[(int64_t)b * N + t] = (uint8_t)(t < n_resp);
    }
    r->len[b] = n_resp;
}

static void scale_logits(gpt2_model *m, float s) {
    const int64_t n = (int64_t)m->B * m->LT * m->cfg.vocab_size;
    for (int64_t i = 0; i < n; i++)
        m->acts.logits[i] *= s;
}

void lm_rows_logprobs(gpt2_model *m, const lm_rows *r, int r0, int n, float inv_temp, float *logp) {
    const int S = r->S, P = r->P, N = r->N;
    const gpt2_batch batch = {r->seq + (int64_t)r0 * S, r->positions + (int64_t)r0 * S,
                              r->seq_mask + (int64_t)r0 * S, n, S};
    gpt2_forward_columns(m, &batch, P - 1, S - 1);
    if (inv_temp != 1.0f)
        scale_logits(m, inv_temp);
    gpt2_token_logprobs(m, r->gen + (int64_t)r0 * N, logp, NULL);
    for (int64_t i = 0; i < (int64_t)n * N; i++)
        if (!r->mask[(int64_t)r0 * N + i])
            logp[i] = 0.0f;
}

void lm_rows_backward(gpt2_model *m, const lm_rows *r, int r0, float inv_temp, const float *dlogp) {
    gpt2_logprobs_backward(m, r->gen + (int64_t)r0 * r->N, dlogp, NULL);
    if (inv_temp != 1.0f) /* d/d(logits/T) → d/dlogits */
        scale_logits(m, inv_temp);
    gpt2_backward(m, true, false);
}

/* ---- checkpoints ------------------------------------------------------------------ */

int lm_emit_checkpoint(const train_sink *sink, gpt2_model *policy, const char *job, int64_t step,
                       bool with_state, const char *const (*meta)[2], int n_meta,
                       const safetensors_tensor *state, int n_state, char *err, size_t errlen) {
    if (!lm_all_finite(lm_trainable_params(policy), lm_trainable_count(policy))) {
        snprintf(err, errlen, "the weights are not finite at step %lld; no checkpoint written",
                 (long long)step);
        return -1;
    }
    char step_text[24];
    snprintf(step_text, sizeof step_text, "%lld", (long long)step);
    const int n_all = 2 + (with_state ? n_meta : 0);
    const char *(*all)[2] = calloc((size_t)n_all, sizeof *all);
    if (all == NULL) {
        snprintf(err, errlen, "out of memory for the checkpoint");
        return -1;
    }
    all[0][0] = "rlhfd_job", all[0][1] = job;
    all[1][0] = "step", all[1][1] = step_text;
    for (int i = 0; with_state && i < n_meta; i++)
        all[2 + i][0] = meta[i][0], all[2 + i][1] = meta[i][1];
    size_t n = 0;
    void *bytes =
        gpt2_checkpoint_serialize(policy, (const char *const(*)[2])all, n_all,
                                  with_state ? state : NULL, with_state ? n_state : 0, &n);
    free(all);
    const int rc = bytes ? sink_checkpoint(sink, step, bytes, n) : -1;
    free(bytes);
    if (rc != 0)
        snprintf(err, errlen, "writing the checkpoint at step %lld failed", (long long)step);
    return rc;
}

int lm_load_state_tensor(const safetensors_file *f, const char *name, float *dst, int64_t n,
                         char *err, size_t errlen) {
    const safetensors_info *t = safetensors_find(f, name);
    if (t == NULL) {
        snprintf(err, errlen, "resume: the checkpoint has no %s", name);
        return -1;
    }
    return safetensors_load_f32(t, dst, n, err, errlen);
}
