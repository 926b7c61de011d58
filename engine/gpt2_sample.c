/* Sampling from a GPT-2 model with a KV cache: one column of B tokens per
 * step, each layer's keys and values appended to the cache so a step costs
 * O(t) attention instead of a full forward; the equivalence with
 * gpt2_forward is tested.
 *
 * Prompts go through gpt2_prefill: all P columns of the B rows through each
 * layer at once (one sgemm over B·P rows per matrix instead of P small ones
 * that each re-pack the weights), attention causal within the block, K and V
 * written to cache columns 0..P-1 exactly where P decode steps would put
 * them, logits only for the last column. Its scratch is allocated per call
 * rather than grown in the cache: the cache's step scratch stays B rows for
 * the decode loop, and the prefill's (15·C floats per row) is freed before
 * decoding starts. Long prompts are cut into column blocks of at most
 * PREFILL_ROWS rows (B · block columns), which bounds that scratch (about
 * 94 MB at C = 768); a block attends to every cached column before it. */
#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "lora.h"
#include "nn.h"

int gpt2_kv_cache_init(gpt2_kv_cache *cache, const gpt2_config *cfg, int B, int cap_T, char *err,
                       size_t errlen) {
    memset(cache, 0, sizeof *cache);
    if (B < 1 || cap_T < 1 || cap_T > cfg->max_seq_len) {
        snprintf(err, errlen, "KV cache for %d rows x %d positions does not fit a context of %d", B,
                 cap_T, cfg->max_seq_len);
        return -1;
    }
    const size_t L = (size_t)cfg->n_layer, C = (size_t)cfg->d_model, V = (size_t)cfg->vocab_size;
    const size_t kv = L * (size_t)B * (size_t)cap_T * C; /* NH · hs = C */
    const size_t step = (size_t)B * (C * 4 + 3 * C + 4 * C * 2 + V + 2) + (size_t)cap_T;
    cache->memory = malloc(sizeof(float) * (2 * kv + step));
    cache->key_mask = calloc((size_t)B * (size_t)cap_T, 1);
    cache->next_pos = calloc((size_t)B, sizeof(int32_t));
    if (cache->memory == NULL || cache->key_mask == NULL || cache->next_pos == NULL) {
        snprintf(err, errlen, "out of memory for a KV cache of %d x %d", B, cap_T);
        gpt2_kv_cache_free(cache);
        return -1;
    }
    cache->B = B;
    cache->cap_T = cap_T;
    float *c = cache->memory;
    cache->k = c, c += kv;
    cache->v = c, c += kv;
    cache->x = c, c += (size_t)B * C;
    cache->ln = c, c += (size_t)B * C;
    cache->atty = c, c += (size_t)B * C;
    cache->tmp = c, c += (size_t)B * C;
    cache->qkv = c, c += (size_t)B * 3 * C;
    cache->fch = c, c += (size_t)B * 4 * C;
    cache->fch_gelu = c, c += (size_t)B * 4 * C;
    cache->logits = c, c += (size_t)B * V;
    cache->mean = c, c += (size_t)B;
    cache->rstd = c, c += (size_t)B;
    cache->scores = c;
    return 0;
}

void gpt2_kv_cache_free(gpt2_kv_cache *cache) {
    free(cache->memory);
    free(cache->key_mask);
    free(cache->next_pos);
    memset(cache, 0, sizeof *cache);
}

void gpt2_decode_step(const gpt2_model *m, gpt2_kv_cache *cache, const int32_t *tokens,
                      const uint8_t *real, int t, bool want_logits) {
    const gpt2_config *cfg = &m->cfg;
    const gpt2_params *p = &m->params;
    const int B = cache->B, C = cfg->d_model, NH = cfg->n_head, hs = C / NH, L = cfg->n_layer;
    const int capT = cache->cap_T;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++) {
        const int is_real = real == NULL || real[b];
        const int32_t pos = is_real ? cache->next_pos[b]++ : 0;
        cache->key_mask[(int64_t)b * capT + t] = (uint8_t)is_real;
        const float *te = p->wte + (int64_t)tokens[b] * C, *pe = p->wpe + (int64_t)pos * C;
        for (int j = 0; j < C; j++)
            cache->x[(int64_t)b * C + j] = te[j] + pe[j];
    }
    float *mean = cache->mean, *rstd = cache->rstd;
    for (int l = 0; l < L; l++) {
        const int64_t CC = (int64_t)C * C;
        layernorm_forward(cache->ln, mean, rstd, cache->x, p->ln1w + l * C, p->ln1b + l * C, B, C);
        dense_forward(cache->qkv, cache->ln, p->qkvw + l * 3 * CC, p->qkvb + l * 3 * C, B, C,
                      3 * C);
        if (gpt2_lora_active(m, LORA_C_ATTN))
            gpt2_lora_forward(m, LORA_C_ATTN, l, cache->qkv, cache->ln, B, false);
        for (int b = 0; b < B; b++) {
            const uint8_t *mask = cache->key_mask + (int64_t)b * capT;
            for (int h = 0; h < NH; h++) {
                const int64_t base = (((int64_t)l * B + b) * NH + h) * capT * hs;
                float *kc = cache->k + base, *vc = cache->v + base;
                const float *q = cache->qkv + (int64_t)b * 3 * C + h * hs;
                memcpy(kc + (int64_t)t * hs, q + C, sizeof(float) * (size_t)hs);
                memcpy(vc + (int64_t)t * hs, q + 2 * C, sizeof(float) * (size_t)hs);
                float *y = cache->atty + (int64_t)b * C + h * hs;
                /* scores over cached columns 0..t, softmax over the real ones */
                float *s = cache->scores;
                cblas_sgemv(CblasRowMajor, CblasNoTrans, t + 1, hs, scale, kc, hs, q, 1, 0.0f, s,
                            1);
                float maxv = -INFINITY;
                for (int j = 0; j <= t; j++)
                    if (mask[j] && s[j] > maxv)
                        maxv = s[j];
                float sum = 0.0f;
                for (int j = 0; j <= t; j++) {
                    s[j] = mask[j] ? expf(s[j] - maxv) : 0.0f;
                    sum += s[j];
                }
                const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                for (int j = 0; j <= t; j++)
                    s[j] *= inv;
                cblas_sgemv(CblasRowMajor, CblasTrans, t + 1, hs, 1.0f, vc, hs, s, 1, 0.0f, y, 1);
            }
        }
        dense_forward(cache->tmp, cache->atty, p->attprojw + l * CC, p->attprojb + l * C, B, C, C);
        if (gpt2_lora_active(m, LORA_ATTN_C_PROJ))
            gpt2_lora_forward(m, LORA_ATTN_C_PROJ, l, cache->tmp, cache->atty, B, false);
        for (int64_t i = 0; i < (int64_t)B * C; i++)
            cache->x[i] += cache->tmp[i];
        layernorm_forward(cache->ln, mean, rstd, cache->x, p->ln2w + l * C, p->ln2b + l * C, B, C);
        dense_forward(cache->fch, cache->ln, p->fcw + l * 4 * CC, p->fcb + l * 4 * C, B, C, 4 * C);
        if (gpt2_lora_active(m, LORA_MLP_C_FC))
            gpt2_lora_forward(m, LORA_MLP_C_FC, l, cache->fch, cache->ln, B, false);
        activation_forward(ACTIVATION_GELU, cache->fch_gelu, cache->fch, (int64_t)B * 4 * C);
        dense_forward(cache->tmp, cache->fch_gelu, p->fcprojw + l * 4 * CC, p->fcprojb + l * C, B,
                      4 * C, C);
        if (gpt2_lora_active(m, LORA_MLP_C_PROJ))
            gpt2_lora_forward(m, LORA_MLP_C_PROJ, l, cache->tmp, cache->fch_gelu, B, false);
        for (int64_t i = 0; i < (int64_t)B * C; i++)
            cache->x[i] += cache->tmp[i];
    }
    layernorm_forward(cache->ln, mean, rstd, cache->x, p->lnfw, p->lnfb, B, C);
    if (want_logits)
        dense_forward(cache->logits, cache->ln, p->wte, NULL, B, C, cfg->vocab_size);
}

/* ---- prompt prefill --------------------------------------------------------------- */

enum { PREFILL_ROWS = 2048 };

int gpt2_prefill(const gpt2_model *m, gpt2_kv_cache *cache, const int32_t *prompts,
                 const uint8_t *prompt_mask, int P, char *err, size_t errlen) {
    const gpt2_config *cfg = &m->cfg;
    const gpt2_params *p = &m->params;
    const int B = cache->B, C = cfg->d_model, NH = cfg->n_head, hs = C / NH, L = cfg->n_layer;
    const int capT = cache->cap_T;
    const float scale = 1.0f / sqrtf((float)hs);
    if (P < 1 || P > capT) {
        snprintf(err, errlen, "a prompt of %d columns does not fit a KV cache of %d", P, capT);
        return -1;
    }
    int PC = PREFILL_ROWS / B; /* columns per block */
    if (PC < 1)
        PC = 1;
    if (PC > P)
        PC = P;
    const size_t R = (size_t)B * (size_t)PC, Cs = (size_t)C;
    float *mem = malloc(sizeof(float) * (R * Cs * 15 + 2 * R + (size_t)PC * (size_t)capT));
    if (mem == NULL) {
        snprintf(err, errlen, "out of memory prefilling %d rows x %d columns", B, PC);
        return -1;
    }
    float *x = mem, *ln = x + R * Cs, *atty = ln + R * Cs, *tmp = atty + R * Cs;
    float *qkv = tmp + R * Cs, *fch = qkv + R * 3 * Cs, *fch_gelu = fch + R * 4 * Cs;
    float *mean = fch_gelu + R * 4 * Cs, *rstd = mean + R, *scores = rstd + R;
    const int64_t CC = (int64_t)C * C;
    for (int t0 = 0; t0 < P; t0 += PC) {
        const int nc = P - t0 < PC ? P - t0 : PC, t1 = t0 + nc, n = B * nc;
        /* rows (b, i) = b · nc + i hold column t0 + i of row b */
        for (int b = 0; b < B; b++)
            for (int i = 0; i < nc; i++) {
                const int64_t src = (int64_t)b * P + t0 + i;
                const int is_real = prompt_mask == NULL || prompt_mask[src];
                const int32_t pos = is_real ? cache->next_pos[b]++ : 0;
                cache->key_mask[(int64_t)b * capT + t0 + i] = (uint8_t)is_real;
                const float *te = p->wte + (int64_t)prompts[src] * C,
                            *pe = p->wpe + (int64_t)pos * C;
                float *xr = x + ((int64_t)b * nc + i) * C;
                for (int j = 0; j < C; j++)
                    xr[j] = te[j] + pe[j];
            }
        for (int l = 0; l < L; l++) {
            layernorm_forward(ln, mean, rstd, x, p->ln1w + l * C, p->ln1b + l * C, n, C);
            dense_forward(qkv, ln, p->qkvw + l * 3 * CC, p->qkvb + l * 3 * C, n, C, 3 * C);
            if (gpt2_lora_active(m, LORA_C_ATTN))
                gpt2_lora_forward(m, LORA_C_ATTN, l, qkv, ln, n, false);
            for (int b = 0; b < B; b++) {
                const uint8_t *mask = cache->key_mask + (int64_t)b * capT;
                for (int h = 0; h < NH; h++) {
                    const int64_t base = (((int64_t)l * B + b) * NH + h) * capT * hs;
                    float *kc = cache->k + base, *vc = cache->v + base;
                    const float *q = qkv + (int64_t)b * nc * 3 * C + h * hs;
                    for (int i = 0; i < nc; i++) {
                        memcpy(kc + (int64_t)(t0 + i) * hs, q + (int64_t)i * 3 * C + C,
                               sizeof(float) * (size_t)hs);
                        memcpy(vc + (int64_t)(t0 + i) * hs, q + (int64_t)i * 3 * C + 2 * C,
                               sizeof(float) * (size_t)hs);
                    }
                    /* scores (nc, t1) = Q Kᵀ over cached columns 0..t1-1 */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nc, t1, hs, scale, q,
                                3 * C, kc, hs, 0.0f, scores, t1);
                    for (int i = 0; i < nc; i++) {
                        float *s = scores + (int64_t)i * t1;
                        const int last = t0 + i; /* causal: keys 0..last */
                        float maxv = -INFINITY;
                        for (int j = 0; j <= last; j++)
                            if (mask[j] && s[j] > maxv)
                                maxv = s[j];
                        float sum = 0.0f;
                        for (int j = 0; j <= last; j++) {
                            s[j] = mask[j] ? expf(s[j] - maxv) : 0.0f;
                            sum += s[j];
                        }
                        const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                        for (int j = 0; j <= last; j++)
                            s[j] *= inv;
                        for (int j = last + 1; j < t1; j++)
                            s[j] = 0.0f;
                    }
                    float *y = atty + (int64_t)b * nc * C + h * hs;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, hs, t1, 1.0f, scores,
                                t1, vc, hs, 0.0f, y, C);
                }
            }
            dense_forward(tmp, atty, p->attprojw + l * CC, p->attprojb + l * C, n, C, C);
            if (gpt2_lora_active(m, LORA_ATTN_C_PROJ))
                gpt2_lora_forward(m, LORA_ATTN_C_PROJ, l, tmp, atty, n, false);
            for (int64_t i = 0; i < (int64_t)n * C; i++)
                x[i] += tmp[i];
            layernorm_forward(ln, mean, rstd, x, p->ln2w + l * C, p->ln2b + l * C, n, C);
            dense_forward(fch, ln, p->fcw + l * 4 * CC, p->fcb + l * 4 * C, n, C, 4 * C);
            if (gpt2_lora_active(m, LORA_MLP_C_FC))
                gpt2_lora_forward(m, LORA_MLP_C_FC, l, fch, ln, n, false);
            activation_forward(ACTIVATION_GELU, fch_gelu, fch, (int64_t)n * 4 * C);
            dense_forward(tmp, fch_gelu, p->fcprojw + l * 4 * CC, p->fcprojb + l * C, n, 4 * C, C);
            if (gpt2_lora_active(m, LORA_MLP_C_PROJ))
                gpt2_lora_forward(m, LORA_MLP_C_PROJ, l, tmp, fch_gelu, n, false);
            for (int64_t i = 0; i < (int64_t)n * C; i++)
                x[i] += tmp[i];
        }
        if (t1 == P) { /* the LM head on the last column only, as the step loop asks */
            for (int b = 0; b < B; b++)
                memcpy(cache->x + (int64_t)b * C, x + ((int64_t)b * nc + nc - 1) * C,
                       sizeof(float) * Cs);
            layernorm_forward(cache->ln, cache->mean, cache->rstd, cache->x, p->lnfw, p->lnfb, B,
                              C);
            dense_forward(cache->logits, cache->ln, p->wte, NULL, B, C, cfg->vocab_size);
        }
    }
    free(mem);
    return 0;
}

/* ---- choosing tokens ------------------------------------------------------------ */

typedef struct scored {
    float p;
    int32_t id;
} scored;

static int by_prob_desc(const void *a, const void *b) {
    const float x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    if (x != y)
        return x < y ? 1 : -1;
    return ((const scored *)a)->id - ((const scored *)b)->id; /* deterministic ties */
}

static int32_t argmax(const float *z, int V) {
    int32_t best = 0;
    for (int j = 1; j < V; j++)
        if (z[j] > z[best])
            best = j;
    return best;
}

/* Plain softmax(z / T) sampling (no top-k / top-p), the PPO rollout's case:
 * vectorised exp in place, then the inverse CDF of one uniform draw, found
 * block by block (block sums first, then one block element by element)
 * instead of a sequential scan over all V. No allocation. */
enum { CDF_BLOCK = 64 };

static int32_t sample_softmax_in_place(float *z, int V, float temperature, rng_state *rng) {
    const float maxv = nn_max(z, V), inv_t = 1.0f / temperature;
    for (int j = 0; j < V; j++)
        z[j] = (z[j] - maxv) * inv_t;
    nn_exp_sum(z, z, V, 0.0f);
    double total = 0.0;
    for (int j0 = 0; j0 < V; j0 += CDF_BLOCK) {
        const int n = V - j0 < CDF_BLOCK ? V - j0 : CDF_BLOCK;
        float s = 0.0f;
        for (int k = 0; k < n; k++)
            s += z[j0 + k];
        total += s;
    }
    const double u = rng_next_double(rng) * total;
    double cdf = 0.0;
    for (int j0 = 0; j0 < V; j0 += CDF_BLOCK) {
        const int n = V - j0 < CDF_BLOCK ? V - j0 : CDF_BLOCK;
        float s = 0.0f;
        for (int k = 0; k < n; k++)
            s += z[j0 + k];
        if (u >= cdf + s && j0 + n < V) {
            cdf += s;
            continue;
        }
        /* u falls in this block (or rounding left it past the last one) */
        int32_t last = -1;
        for (int k = 0; k < n; k++) {
            if (z[j0 + k] <= 0.0f)
                continue;
            last = j0 + k;
            cdf += z[j0 + k];
            if (u < cdf)
                return last;
        }
        if (last >= 0)
            return last;
        break; /* an empty last block: fall back to the argmax below */
    }
    return argmax(z, V);
}

void gpt2_sample_tokens(int32_t *out, float *logits, int B, int V, const gpt2_sample_config *sc,
                        rng_state *rng) {
    scored *cand = NULL;
    for (int b = 0; b < B; b++) {
        float *z = logits + (int64_t)b * V;
        if (sc->temperature <= 0.0f) {
            out[b] = argmax(z, V);
            continue;
        }
        if (sc->top_k <= 0 && sc->top_p >= 1.0f) {
            out[b] = sample_softmax_in_place(z, V, sc->temperature, rng);
            continue;
        }
        if (cand == NULL && (cand = malloc(sizeof(scored) * (size_t)V)) == NULL) {
            out[b] = argmax(z, V); /* out of memory: degrade to greedy, never crash */
            continue;
        }
        /* softmax(z / T), then sorted by probability for top-k / top-p */
        float maxv = z[argmax(z, V)];
        double sum = 0.0;
        for (int j = 0; j < V; j++) {
            cand[j].p = expf((z[j] - maxv) / sc->temperature);
            cand[j].id = j;
            sum += cand[j].p;
        }
        int keep = V;
        if (sc->top_k > 0 || sc->top_p < 1.0f) {
            qsort(cand, (size_t)V, sizeof(scored), by_prob_desc);
            if (sc->top_k > 0 && sc->top_k < keep)
                keep = sc->top_k;
            if (sc->top_p < 1.0f) {
                double kept_sum = 0.0, mass = 0.0;
                for (int j = 0; j < keep; j++)
                    kept_sum += cand[j].p;
                for (int j = 0; j < keep; j++) {
                    mass += cand[j].p;
                    if (mass >= sc->top_p * kept_sum) { /* smallest prefix reaching top_p */
                        keep = j + 1;
                        break;
                    }
                }
            }
            sum = 0.0;
            for (int j = 0; j < keep; j++)
                sum += cand[j].p;
        }
        const double u = rng_next_double(rng) * sum;
        double cdf = 0.0;
        int32_t choice = cand[keep - 1].id;
        for (int j = 0; j < keep; j++) {
            cdf += cand[j].p;
            if (u < cdf) {
                choice = cand[j].id;
                break;
            }
        }
        out[b] = choice;
    }
    free(cand);
}

int gpt2_generate(const gpt2_model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                  int P, const gpt2_sample_config *sc, rng_state *rng, int32_t *out,
                  int32_t *out_len, char *err, size_t errlen) {
    const int N = sc->max_new_tokens, V = m->cfg.vocab_size;
    if (P < 1 || N < 1 || P + N > m->cfg.max_seq_len) {
        snprintf(err, errlen,
                 "prompt %d + max_new_tokens %d must be within the context of %d (and "
                 "both at least 1)",
                 P, N, m->cfg.max_seq_len);
        return -1;
    }
    gpt2_kv_cache cache;
    if (gpt2_kv_cache_init(&cache, &m->cfg, B, P + N, err, errlen) != 0)
        return -1;
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    uint8_t *real = malloc((size_t)B), *done = calloc((size_t)B, 1);
    if (next == NULL || real == NULL || done == NULL) {
        snprintf(err, errlen, "out of memory generating %d rows", B);
        free(next), free(real), free(done);
        gpt2_kv_cache_free(&cache);
        return -1;
    }
    if (gpt2_prefill(m, &cache, prompts, prompt_mask, P, err, errlen) != 0) {
        free(next), free(real), free(done);
        gpt2_kv_cache_free(&cache);
        return -1;
    }
    const int32_t filler = sc->eos_id >= 0 ? sc->eos_id : 0;
    memset(out_len, 0, sizeof(int32_t) * (size_t)B);
    int remaining = B;
    for (int s = 0; s < N; s++) {
        gpt2_sample_tokens(next, cache.logits, B, V, sc, rng);
        for (int b = 0; b < B; b++) {
            int32_t *o = out + (int64_t)b * N + s;
            if (done[b]) {
                *o = filler;
                continue;
            }
            *o = next[b];
            out_len[b]++;
            if (next[b] == sc->eos_id) {
                done[b] = 1;
                remaining--;
            }
        }
        if (remaining == 0 || s == N - 1) {
            for (int b = 0; b < B; b++)
                for (int r = s + 1; r < N; r++)
                    out[(int64_t)b * N + r] = filler;
            break;
        }
        for (int b = 0; b < B; b++)
            real[b] = !done[b];
        gpt2_decode_step(m, &cache, next, real, P + s, true);
    }
    free(next), free(real), free(done);
    gpt2_kv_cache_free(&cache);
    return 0;
}
