/* See lm_policy.h. */
#include "lm_policy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim.h"
#include "train_state.h"

const char *const lm_lora_target_choices[] = {"all", "attn", "mlp", "c_attn", NULL};

/* The adapters spec asks for on a model of family. */
static int lora_adapters(const lm_lora_spec *spec, model_family family, uint32_t stream,
                         model_lora *out, char *err, size_t errlen) {
    /* c_attn: GPT-2's fused q/k/v projection; the Llama family's q, k and v */
    const char *text = strcmp(spec->targets, "c_attn") != 0 ? spec->targets
                       : family == MODEL_FAMILY_GPT2        ? "attn.c_attn"
                                                            : "q_proj,k_proj,v_proj";
    unsigned targets;
    if (model_lora_targets(family, text, &targets, err, errlen) != 0)
        return -1;
    *out = (model_lora){(int)spec->r, (float)spec->alpha, targets, spec->seed, stream};
    return 0;
}

int lm_open_model(model *m, const char *path, bool with_head, lm_lora_load lora,
                  const lm_lora_spec *spec, uint32_t stream, model_info *info, char *err,
                  size_t errlen) {
    model_lora adapters;
    model_family family;
    if (lora != LM_LORA_NONE && (model_source_family(path, &family, err, errlen) != 0 ||
                                 lora_adapters(spec, family, stream, &adapters, err, errlen) != 0))
        return -1;
    const model_open_options opt = {.scalar_head = with_head,
                                    .init_weights = true,
                                    .init_seed = spec->seed,
                                    .init_stream = 0xE0000001u,
                                    .lora = lora == LM_LORA_FROM_FILE ? &adapters : NULL};
    if (model_load(path, &opt, m, info, err, errlen) != 0)
        return -1;
    if (lora == LM_LORA_FRESH && model_attach_lora(m, &adapters, err, errlen) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

int lm_open_shared(model *m, const model *base, const lm_lora_spec *spec, uint32_t stream,
                   char *err, size_t errlen) {
    if (spec->r < 1) {
        snprintf(err, errlen, "a model over another's weights needs LoRA (lora_r > 0)");
        return -1;
    }
    model_lora adapters;
    if (lora_adapters(spec, base->family, stream, &adapters, err, errlen) != 0)
        return -1;
    model_init_shared(m, base);
    if (model_attach_lora(m, &adapters, err, errlen) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

bool lm_all_finite(const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return false;
    return true;
}

bool lm_model_loaded(const model *m) {
    int64_t n;
    return model_base_params(m, &n) != NULL;
}

bool lm_weights_finite(const model *m) {
    int64_t n;
    const float *w = model_base_params(m, &n);
    return lm_all_finite(w, n);
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

static void scale_logits(model *m, float s) {
    const int64_t n = model_logits_count(m);
    float *logits = model_logits(m);
    for (int64_t i = 0; i < n; i++)
        logits[i] *= s;
}

void lm_rows_logprobs(model *m, const lm_rows *r, int r0, int n, float inv_temp, float *logp) {
    const int S = r->S, P = r->P, N = r->N;
    model_forward(m, r->seq + (int64_t)r0 * S, r->positions + (int64_t)r0 * S,
                  r->seq_mask + (int64_t)r0 * S, n, S, P - 1, S - 1);
    if (inv_temp != 1.0f)
        scale_logits(m, inv_temp);
    model_token_logprobs(m, r->gen + (int64_t)r0 * N, logp, NULL);
    for (int64_t i = 0; i < (int64_t)n * N; i++)
        if (!r->mask[(int64_t)r0 * N + i])
            logp[i] = 0.0f;
}

void lm_rows_backward(model *m, const lm_rows *r, int r0, float inv_temp, const float *dlogp) {
    model_logprobs_backward(m, r->gen + (int64_t)r0 * r->N, dlogp, NULL);
    if (inv_temp != 1.0f) /* d/d(logits/T) → d/dlogits */
        scale_logits(m, inv_temp);
    model_backward(m, true, false);
}

/* ---- the trainer's state, and resume ------------------------------------------------ */

int lm_open_policy(model *m, const char *init_path, const char *resume_path,
                   const lm_lora_spec *spec, uint32_t stream, char *err, size_t errlen) {
    const lm_lora_load lora = spec->r == 0  ? LM_LORA_NONE
                              : resume_path ? LM_LORA_FROM_FILE
                                            : LM_LORA_FRESH;
    if (lm_open_model(m, resume_path ? resume_path : init_path, false, lora, spec, stream, NULL,
                      err, errlen) != 0)
        return -1;
    if (model_alloc_grads(m, err, errlen) != 0) {
        model_free(m);
        return -1;
    }
    return 0;
}

int lm_train_state_init(lm_train_state *st, const model *policy, uint64_t seed,
                        uint32_t data_stream, uint32_t sample_stream, int64_t n) {
    memset(st, 0, sizeof *st);
    rng_seed(&st->data_rng, seed, data_stream);
    rng_seed(&st->sample_rng, seed, sample_stream);
    st->order_rng = st->data_rng;
    st->cursor = n;
    st->extra = NAN;
    const size_t np = (size_t)model_trainable_count(policy);
    st->adam_m = calloc(np, sizeof(float));
    st->adam_v = calloc(np, sizeof(float));
    return st->adam_m && st->adam_v ? 0 : -1;
}

void lm_train_state_free(lm_train_state *st) {
    free(st->adam_m), free(st->adam_v);
    st->adam_m = st->adam_v = NULL;
}

int32_t lm_train_state_next(lm_train_state *st, int32_t *order, int64_t n) {
    if (st->cursor >= n) {
        st->order_rng = st->data_rng;
        rng_permutation(&st->data_rng, order, (int32_t)n);
        st->cursor = 0;
    }
    return order[st->cursor++];
}

double lm_train_state_adam(lm_train_state *st, model *policy, float lr, double max_norm) {
    float *g = model_trainable_grads(policy);
    const int64_t n = model_trainable_count(policy);
    const double norm = grad_clip_global_norm(g, n, max_norm);
    if (!isfinite(norm))
        return norm;
    const adam_config adam = {lr, 0.9f, 0.999f, 1e-8f, 0.0f};
    st->adam_t++;
    adam_step(model_trainable_params(policy), g, st->adam_m, st->adam_v, NULL, n, &adam,
              st->adam_t);
    return norm;
}

double lm_train_state_adam_dist(lm_train_state *st, model *policy, const dist_comm *dist,
                                double *stats, int n_stats, float lr, double max_norm, char *err,
                                size_t errlen) {
    if (dist_allreduce_sum_f32(dist, model_trainable_grads(policy),
                               model_trainable_count(policy)) != 0 ||
        (n_stats > 0 && dist_allreduce_sum_f64(dist, stats, n_stats) != 0)) {
        snprintf(err, errlen, "summing the ranks' gradients failed");
        return NAN;
    }
    for (int i = 0; i < n_stats; i++)
        if (!isfinite(stats[i]))
            return NAN; /* a loss that is not finite: no step */
    const double norm = lm_train_state_adam(st, policy, lr, max_norm);
    if (isfinite(norm) && dist_check_replicas(dist, model_trainable_params(policy),
                                              model_trainable_count(policy), err, errlen) != 0)
        return NAN;
    return norm;
}

/* Decodes ids[0..n) into out (NUL-terminated); the bytes written. */
static size_t decode_into(const tokenizer *tok, const int32_t *ids, size_t n, char *out,
                          size_t cap) {
    const int64_t k = n > 0 ? tokenizer_decode(tok, ids, n, out, cap - 1) : 0;
    const size_t len = k < 0 ? 0 : (size_t)k > cap - 1 ? cap - 1 : (size_t)k;
    out[len] = '\0';
    return len;
}

int lm_report_rollouts(const train_sink *sink, int64_t step, int64_t last_step, int64_t samples,
                       int64_t interval, const lm_rollout_batch *b) {
    if (sink == NULL || sink->rollout == NULL || samples <= 0 ||
        (step % interval != 0 && step != last_step))
        return 0;
    const int N = b->N, P = b->P;
    enum { TOKEN_BYTES = 64, TEXT_BYTES = 8192 };
    char *texts = malloc((size_t)N * TOKEN_BYTES + 2 * TEXT_BYTES);
    const char **token_text = malloc(sizeof(char *) * (size_t)(N ? N : 1));
    int32_t *prompt = malloc(sizeof(int32_t) * (size_t)(P ? P : 1));
    int rc = texts && token_text && prompt ? 0 : -1;
    for (int r = 0; rc == 0 && r < b->B && r < samples; r++) {
        const int64_t o = (int64_t)r * N;
        int n_prompt = 0;
        for (int c = 0; c < P; c++)
            if (b->prompt_mask[(int64_t)r * P + c])
                prompt[n_prompt++] = b->prompt_ids[(int64_t)r * P + c];
        char *prompt_text = texts + (size_t)N * TOKEN_BYTES, *response = prompt_text + TEXT_BYTES;
        decode_into(b->tok, prompt, (size_t)n_prompt, prompt_text, TEXT_BYTES);
        decode_into(b->tok, b->gen + o, (size_t)b->len[r], response, TEXT_BYTES);
        for (int t = 0; t < b->len[r]; t++) {
            char *slot = texts + (size_t)t * TOKEN_BYTES;
            decode_into(b->tok, b->gen + o + t, 1, slot, TOKEN_BYTES);
            token_text[t] = slot;
        }
        const sink_rollout ro = {.sample = r,
                                 .prompt = prompt_text,
                                 .response = response,
                                 .score = b->score[r],
                                 .n_tokens = b->len[r],
                                 .token_text = token_text,
                                 .logprob = b->logprob ? b->logprob + o : NULL,
                                 .ref_logprob = b->ref_logprob ? b->ref_logprob + o : NULL,
                                 .kl = b->kl ? b->kl + o : NULL,
                                 .value = b->value ? b->value + o : NULL,
                                 .reward = b->reward ? b->reward + o : NULL,
                                 .advantage = b->advantage ? b->advantage + o : NULL};
        rc = sink_rollout_report(sink, step, &ro);
    }
    free(texts), free(token_text), free(prompt);
    return rc;
}

int lm_train_state_emit(const lm_train_state *st, model *policy, const train_sink *sink,
                        const char *job, const hparam_table *table, const void *cfg,
                        bool with_state, char *err, size_t errlen) {
    if (!lm_all_finite(model_trainable_params(policy), model_trainable_count(policy))) {
        snprintf(err, errlen, "the weights are not finite at step %lld; no checkpoint written",
                 (long long)st->step);
        return -1;
    }
    char step[24], adam_t[24], cursor[24], extra[40], rngs[3][80];
    snprintf(step, sizeof step, "%lld", (long long)st->step);
    snprintf(adam_t, sizeof adam_t, "%lld", (long long)st->adam_t);
    snprintf(cursor, sizeof cursor, "%lld", (long long)st->cursor);
    snprintf(extra, sizeof extra, "%a", st->extra);
    train_state_format_rng(rngs[0], sizeof rngs[0], &st->order_rng);
    train_state_format_rng(rngs[1], sizeof rngs[1], &st->data_rng);
    train_state_format_rng(rngs[2], sizeof rngs[2], &st->sample_rng);
    char *config = train_state_config_text(table, cfg);
    if (config == NULL) {
        snprintf(err, errlen, "out of memory for the checkpoint");
        return -1;
    }
    const char *const meta[][2] = {{"rlhfd_job", job},
                                   {"step", step},
                                   {"training_state.adam_t", adam_t},
                                   {"training_state.cursor", cursor},
                                   {"training_state.extra", extra},
                                   {"training_state.order_rng", rngs[0]},
                                   {"training_state.data_rng", rngs[1]},
                                   {"training_state.sample_rng", rngs[2]},
                                   {"training_state.config", config}};
    const int64_t np = model_trainable_count(policy);
    const safetensors_tensor state[2] = {
        {.name = "training_state.adam_m", .data = st->adam_m, .ndim = 1, .shape = {np}},
        {.name = "training_state.adam_v", .data = st->adam_v, .ndim = 1, .shape = {np}}};
    const int rc = model_sink_checkpoint(sink, st->step, policy, meta, with_state ? 9 : 2,
                                         with_state ? state : NULL, with_state ? 2 : 0);
    free(config);
    if (rc != 0)
        snprintf(err, errlen, "writing the checkpoint at step %lld failed", (long long)st->step);
    return rc;
}

static int load_state_tensor(const safetensors_file *f, const char *name, float *dst, int64_t n,
                             char *err, size_t errlen) {
    const safetensors_info *t = safetensors_find(f, name);
    if (t == NULL) {
        snprintf(err, errlen, "resume: the checkpoint has no %s", name);
        return -1;
    }
    return safetensors_load_f32(t, dst, n, err, errlen);
}

int lm_train_state_restore(lm_train_state *st, const model *policy, const char *path,
                           const hparam_table *table, const void *cfg, int64_t total_steps,
                           int32_t *order, int64_t n, char *err, size_t errlen) {
    safetensors_file f;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    int rc = train_state_check_config(&f, table, cfg, err, errlen);
    if (rc == 0) {
        int ok = 1;
        st->step = train_state_meta_i64(&f, "step", &ok);
        st->adam_t = train_state_meta_i64(&f, "training_state.adam_t", &ok);
        st->cursor = train_state_meta_i64(&f, "training_state.cursor", &ok);
        st->extra = train_state_meta_f64(&f, "training_state.extra", &ok);
        static const char *const keys[3] = {"training_state.order_rng", "training_state.data_rng",
                                            "training_state.sample_rng"};
        rng_state *const rngs[3] = {&st->order_rng, &st->data_rng, &st->sample_rng};
        for (int i = 0; i < 3; i++)
            ok = ok && train_state_parse_rng(rngs[i], safetensors_metadata_get(&f, keys[i])) == 0;
        if (!ok || st->cursor > n || st->step > total_steps) {
            snprintf(err, errlen,
                     "resume: the checkpoint's training state is incomplete or not of this data");
            rc = -1;
        }
    }
    const int64_t np = model_trainable_count(policy);
    if (rc == 0)
        rc = load_state_tensor(&f, "training_state.adam_m", st->adam_m, np, err, errlen) ||
             load_state_tensor(&f, "training_state.adam_v", st->adam_v, np, err, errlen);
    safetensors_free(&f);
    if (rc != 0)
        return -1;
    if (st->cursor < n) { /* the order in use: redo its shuffle */
        rng_state r = st->order_rng;
        rng_permutation(&r, order, (int32_t)n);
    }
    return 0;
}
