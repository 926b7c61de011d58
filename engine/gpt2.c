#include "gpt2.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"
#include "nn.h"

/* ==== parameters ============================================================= */

void gpt2_param_sizes(const gpt2_config *cfg, int64_t sizes[GPT2_NUM_PARAM_TENSORS]) {
    const int64_t V = cfg->vocab_size, maxT = cfg->max_seq_len, L = cfg->n_layer, C = cfg->d_model;
    const int64_t h = cfg->scalar_head ? 1 : 0;
    const int64_t s[GPT2_NUM_PARAM_TENSORS] = {
        V * C,         maxT * C, L * C, L * C, L * 3 * C * C, L * 3 * C,
        L * C * C,     L * C,    L * C, L * C, L * 4 * C * C, L * 4 * C,
        L * C * 4 * C, L * C,    C,     C,     h * C,         h,
    };
    memcpy(sizes, s, sizeof s);
}

int64_t gpt2_num_params(const gpt2_config *cfg) {
    int64_t sizes[GPT2_NUM_PARAM_TENSORS], n = 0;
    gpt2_param_sizes(cfg, sizes);
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++)
        n += sizes[i];
    return n;
}

void gpt2_params_view(gpt2_params *p, const gpt2_config *cfg, float *memory) {
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(cfg, sizes);
    float **views[GPT2_NUM_PARAM_TENSORS] = {
        &p->wte,      &p->wpe,      &p->ln1w, &p->ln1b, &p->qkvw,  &p->qkvb,
        &p->attprojw, &p->attprojb, &p->ln2w, &p->ln2b, &p->fcw,   &p->fcb,
        &p->fcprojw,  &p->fcprojb,  &p->lnfw, &p->lnfb, &p->headw, &p->headb,
    };
    float *cursor = memory;
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        *views[i] = cursor;
        cursor += sizes[i];
    }
}

void gpt2_decay_mask(const gpt2_config *cfg, uint8_t *mask) {
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(cfg, sizes);
    /* wte, wpe, qkvw, attprojw, fcw, fcprojw are matrices (nanoGPT's rule:
     * decay every parameter with ndim >= 2; LayerNorms, biases, the head's
     * vector and bias are not decayed). */
    static const uint8_t is_matrix[GPT2_NUM_PARAM_TENSORS] = {1, 1, 0, 0, 1, 0, 1, 0, 0,
                                                              0, 1, 0, 1, 0, 0, 0, 0, 0};
    for (int i = 0; i < GPT2_NUM_PARAM_TENSORS; i++) {
        memset(mask, is_matrix[i], (size_t)sizes[i]);
        mask += sizes[i];
    }
}

int gpt2_init(gpt2_model *m, const gpt2_config *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    if (cfg->vocab_size < 1 || cfg->max_seq_len < 1 || cfg->n_layer < 1 || cfg->n_head < 1 ||
        cfg->d_model < 1 || cfg->d_model % cfg->n_head != 0) {
        snprintf(err, errlen,
                 "invalid GPT-2 config: vocab %d, context %d, layers %d, heads %d, d_model %d "
                 "(all positive, d_model divisible by heads)",
                 cfg->vocab_size, cfg->max_seq_len, cfg->n_layer, cfg->n_head, cfg->d_model);
        return -1;
    }
    m->cfg = *cfg;
    m->num_params = gpt2_num_params(cfg);
    m->param_memory = calloc((size_t)m->num_params, sizeof(float));
    m->grad_memory = calloc((size_t)m->num_params, sizeof(float));
    if (m->param_memory == NULL || m->grad_memory == NULL) {
        snprintf(err, errlen, "out of memory for %lld parameters", (long long)m->num_params);
        gpt2_free(m);
        return -1;
    }
    gpt2_params_view(&m->params, cfg, m->param_memory);
    gpt2_params_view(&m->grads, cfg, m->grad_memory);
    return 0;
}

void gpt2_init_shared(gpt2_model *dst, const gpt2_model *src) {
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->num_params = src->num_params;
    dst->param_memory = src->param_memory;
    dst->params = src->params;
    dst->borrowed_base = true;
}

void gpt2_free(gpt2_model *m) {
    gpt2_lora_free(m);
    if (!m->borrowed_base)
        free(m->param_memory);
    free(m->grad_memory);
    free(m->acts.memory);
    memset(m, 0, sizeof *m);
}

void gpt2_zero_grad(gpt2_model *m) {
    if (m->grad_memory != NULL)
        memset(m->grad_memory, 0, sizeof(float) * (size_t)m->num_params);
    if (m->lora != NULL)
        memset(m->lora->grads, 0, sizeof(float) * (size_t)m->lora->num_params);
}

static void fill_normal(float *x, int64_t n, double std, rng_state *rng) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(std * rng_next_normal(rng));
}

void gpt2_init_weights(gpt2_model *m, rng_state *rng) {
    const gpt2_config *c = &m->cfg;
    const int64_t L = c->n_layer, C = c->d_model;
    gpt2_params *p = &m->params;
    memset(m->param_memory, 0, sizeof(float) * (size_t)m->num_params);
    const double resid_std = 0.02 / sqrt(2.0 * (double)L);
    fill_normal(p->wte, (int64_t)c->vocab_size * C, 0.02, rng);
    fill_normal(p->wpe, (int64_t)c->max_seq_len * C, 0.02, rng);
    fill_normal(p->qkvw, L * 3 * C * C, 0.02, rng);
    fill_normal(p->attprojw, L * C * C, resid_std, rng);
    fill_normal(p->fcw, L * 4 * C * C, 0.02, rng);
    fill_normal(p->fcprojw, L * 4 * C * C, resid_std, rng);
    for (int64_t i = 0; i < L * C; i++)
        p->ln1w[i] = p->ln2w[i] = 1.0f;
    for (int64_t i = 0; i < C; i++)
        p->lnfw[i] = 1.0f;
    if (c->scalar_head)
        fill_normal(p->headw, C, 1.0 / sqrt((double)C + 1.0), rng);
}

/* ==== activations ============================================================== */

int gpt2_reserve(gpt2_model *m, int B, int T, char *err, size_t errlen) {
    const gpt2_config *c = &m->cfg;
    if (T < 1 || T > c->max_seq_len || B < 1) {
        snprintf(err, errlen, "batch (%d, %d) does not fit a context of %d", B, T, c->max_seq_len);
        return -1;
    }
    gpt2_acts *a = &m->acts;
    if (gpt2_lora_reserve(m, (int64_t)B * T) != 0) {
        snprintf(err, errlen, "out of memory for LoRA activations of a (%d, %d) batch", B, T);
        return -1;
    }
    if (a->memory != NULL && B <= a->B && T <= a->T)
        return 0;
    free(a->memory);
    memset(a, 0, sizeof *a);
    const size_t L = (size_t)c->n_layer, C = (size_t)c->d_model, NH = (size_t)c->n_head,
                 V = (size_t)c->vocab_size, BT = (size_t)B * (size_t)T;
    const size_t sizes[] = {
        BT * C,
        L * BT * C,
        L * BT,
        L * BT,
        L * BT * 3 * C,
        L * BT * C,
        L * BT * NH * T,
        L * BT * C,
        L * BT * C,
        L * BT * C,
        L * BT,
        L * BT,
        L * BT * 4 * C,
        L * BT * 4 * C,
        L * BT * C,
        L * BT * C,
        BT * C,
        BT,
        BT,
        BT * V,
        BT,
        BT,
        BT * C,
        BT * C,
        BT * C,
        BT * 3 * C,
        BT * 4 * C,
        BT * 4 * C,
        (size_t)T * T,
        V,
        BT * C,
    };
    float **views[] = {
        &a->encoded,  &a->ln1,      &a->ln1_mean,  &a->ln1_rstd,  &a->qkv,       &a->atty,
        &a->att,      &a->attproj,  &a->residual2, &a->ln2,       &a->ln2_mean,  &a->ln2_rstd,
        &a->fch,      &a->fch_gelu, &a->fcproj,    &a->residual3, &a->lnf,       &a->lnf_mean,
        &a->lnf_rstd, &a->logits,   &a->values,    &a->dvalues,   &a->dresidual, &a->dbtc,
        &a->dbtc2,    &a->dqkv,     &a->dfch,      &a->dfch2,     &a->datt,      &a->row_scratch,
        &a->lnf_sel,
    };
    const size_t n = sizeof sizes / sizeof sizes[0];
    size_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += sizes[i];
    a->memory = malloc(sizeof(float) * total);
    if (a->memory == NULL) {
        snprintf(err, errlen, "out of memory for activations of a (%d, %d) batch (%zu MB)", B, T,
                 total * sizeof(float) >> 20);
        return -1;
    }
    float *cursor = a->memory;
    for (size_t i = 0; i < n; i++) {
        *views[i] = cursor;
        cursor += sizes[i];
    }
    a->B = B;
    a->T = T;
    return 0;
}

/* ==== layers ========================================================================= */

void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C) {
    const float eps = 1e-5f;
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C;
        float m = 0.0f;
        for (int j = 0; j < C; j++)
            m += x[j];
        m /= (float)C;
        float v = 0.0f;
        for (int j = 0; j < C; j++)
            v += (x[j] - m) * (x[j] - m);
        v /= (float)C;
        const float s = 1.0f / sqrtf(v + eps);
        float *o = out + (int64_t)i * C;
        for (int j = 0; j < C; j++)
            o[j] = (x[j] - m) * s * weight[j] + bias[j];
        mean[i] = m;
        rstd[i] = s;
    }
}

void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *dy = dout + (int64_t)i * C;
        const float *x = inp + (int64_t)i * C;
        float *dx = dinp + (int64_t)i * C;
        const float m = mean[i], s = rstd[i];
        /* dx = s · (dn - mean(dn) - n · mean(dn · n)), dn = w ⊙ dy, n = (x - m) s */
        float dn_mean = 0.0f, dn_n_mean = 0.0f;
        for (int j = 0; j < C; j++) {
            const float n = (x[j] - m) * s;
            const float dn = weight[j] * dy[j];
            dn_mean += dn;
            dn_n_mean += dn * n;
        }
        dn_mean /= (float)C;
        dn_n_mean /= (float)C;
        for (int j = 0; j < C; j++) {
            const float n = (x[j] - m) * s;
            const float dn = weight[j] * dy[j];
            dx[j] += (dn - dn_mean - n * dn_n_mean) * s;
        }
        if (dweight != NULL) /* NULL: a frozen LayerNorm, input gradient only */
            for (int j = 0; j < C; j++) {
                dbias[j] += dy[j];
                dweight[j] += (x[j] - m) * s * dy[j];
            }
    }
}

static void encoder_forward(float *out, const int32_t *tokens, const int32_t *positions,
                            const float *wte, const float *wpe, int BT, int T, int C) {
    for (int i = 0; i < BT; i++) {
        const float *te = wte + (int64_t)tokens[i] * C;
        const float *pe = wpe + (int64_t)(positions ? positions[i] : i % T) * C;
        float *o = out + (int64_t)i * C;
        for (int j = 0; j < C; j++)
            o[j] = te[j] + pe[j];
    }
}

static void encoder_backward(float *dwte, float *dwpe, const float *dout, const int32_t *tokens,
                             const int32_t *positions, int BT, int T, int C) {
    for (int i = 0; i < BT; i++) {
        float *dte = dwte + (int64_t)tokens[i] * C;
        float *dpe = dwpe + (int64_t)(positions ? positions[i] : i % T) * C;
        const float *d = dout + (int64_t)i * C;
        for (int j = 0; j < C; j++) {
            dte[j] += d[j];
            dpe[j] += d[j];
        }
    }
}

static void residual_forward(float *out, const float *a, const float *b, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

/* Causal self-attention over the fused qkv (B, T, 3C) → out (B, T, C),
 * keeping the softmax probabilities att (B, NH, T, T) for backward. Each
 * (b, h) is two sgemms on strided views: scores = Q Kᵀ / sqrt(hs), out = P V.
 * Scores of masked keys (future, or padding) are excluded from the softmax;
 * a row with no visible key is all zeros. */
static void attention_forward(float *out, float *att, const float *qkv, const uint8_t *attn_mask,
                              int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * C3 + h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *p = att + ((int64_t)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, scale, q, C3, k, C3,
                        0.0f, p, T);
            const uint8_t *mask = attn_mask ? attn_mask + (int64_t)b * T : NULL;
            for (int t = 0; t < T; t++) {
                float *row = p + (int64_t)t * T;
                float maxv = -INFINITY;
                for (int j = 0; j <= t; j++)
                    if ((!mask || mask[j]) && row[j] > maxv)
                        maxv = row[j];
                float sum = 0.0f;
                for (int j = 0; j < T; j++) {
                    const int visible = j <= t && (!mask || mask[j]);
                    row[j] = visible ? expf(row[j] - maxv) : 0.0f;
                    sum += row[j];
                }
                const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
                for (int j = 0; j <= t; j++)
                    row[j] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, v, C3,
                        0.0f, out + (int64_t)b * T * C + h * hs, C);
        }
}

/* dqkv += ∂/∂qkv given dout (B, T, C); datt is (T, T) scratch. */
static void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int C, int NH) {
    const int hs = C / NH, C3 = 3 * C;
    const float scale = 1.0f / sqrtf((float)hs);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *q = qkv + (int64_t)b * T * C3 + h * hs;
            const float *k = q + C, *v = q + 2 * C;
            float *dq = dqkv + (int64_t)b * T * C3 + h * hs;
            float *dk = dq + C, *dv = dq + 2 * C;
            const float *p = att + ((int64_t)b * NH + h) * T * T;
            const float *dy = dout + (int64_t)b * T * C + h * hs;
            /* dP = dY Vᵀ ; dV += Pᵀ dY */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hs, 1.0f, dy, C, v, C3, 0.0f,
                        datt, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, 1.0f, p, T, dy, C, 1.0f,
                        dv, C3);
            /* softmax backward: dS = P ⊙ (dP - Σ_j P dP), in place in datt */
            for (int t = 0; t < T; t++) {
                const float *prow = p + (int64_t)t * T;
                float *drow = datt + (int64_t)t * T;
                float dot = 0.0f;
                for (int j = 0; j <= t; j++)
                    dot += prow[j] * drow[j];
                for (int j = 0; j < T; j++)
                    drow[j] = j <= t ? prow[j] * (drow[j] - dot) : 0.0f;
            }
            /* S = scale · Q Kᵀ: dQ += scale · dS K ; dK += scale · dSᵀ Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hs, T, scale, datt, T, k, C3,
                        1.0f, dq, C3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hs, T, scale, datt, T, q, C3,
                        1.0f, dk, C3);
        }
}

/* ==== the model ========================================================================= */

void gpt2_forward(gpt2_model *m, const gpt2_batch *batch, bool want_logits) {
    gpt2_forward_columns(m, batch, 0, want_logits ? batch->T : 0);
}

void gpt2_forward_columns(gpt2_model *m, const gpt2_batch *batch, int t0, int t1) {
    const gpt2_config *c = &m->cfg;
    const int B = batch->B, T = batch->T, C = c->d_model, L = c->n_layer, NH = c->n_head;
    const int BT = B * T;
    const int64_t btc = (int64_t)BT * C;
    gpt2_acts *a = &m->acts;
    const gpt2_params *p = &m->params;
    m->tokens = batch->tokens;
    m->positions = batch->positions;
    m->attn_mask = batch->attn_mask;
    m->B = B;
    m->T = T;
    t0 = t0 < 0 ? 0 : t0;
    t1 = t1 > T ? T : t1;
    const bool want_logits = t0 < t1;
    m->LT0 = t0;
    m->LT = want_logits ? t1 - t0 : T; /* without logits, as before: rows = positions */

    encoder_forward(a->encoded, batch->tokens, batch->positions, p->wte, p->wpe, BT, T, C);
    const float *residual = a->encoded;
    for (int l = 0; l < L; l++) {
        float *ln1 = a->ln1 + l * btc, *qkv = a->qkv + l * 3 * btc, *atty = a->atty + l * btc;
        float *att = a->att + (int64_t)l * BT * NH * T, *attproj = a->attproj + l * btc;
        float *residual2 = a->residual2 + l * btc, *ln2 = a->ln2 + l * btc;
        float *fch = a->fch + l * 4 * btc, *fch_gelu = a->fch_gelu + l * 4 * btc;
        float *fcproj = a->fcproj + l * btc, *residual3 = a->residual3 + l * btc;
        layernorm_forward(ln1, a->ln1_mean + (int64_t)l * BT, a->ln1_rstd + (int64_t)l * BT,
                          residual, p->ln1w + l * C, p->ln1b + l * C, BT, C);
        dense_forward(qkv, ln1, p->qkvw + (int64_t)l * 3 * C * C, p->qkvb + l * 3 * C, BT, C,
                      3 * C);
        if (gpt2_lora_active(m, LORA_C_ATTN))
            gpt2_lora_forward(m, LORA_C_ATTN, l, qkv, ln1, BT, true);
        attention_forward(atty, att, qkv, batch->attn_mask, B, T, C, NH);
        dense_forward(attproj, atty, p->attprojw + (int64_t)l * C * C, p->attprojb + l * C, BT, C,
                      C);
        if (gpt2_lora_active(m, LORA_ATTN_C_PROJ))
            gpt2_lora_forward(m, LORA_ATTN_C_PROJ, l, attproj, atty, BT, true);
        residual_forward(residual2, residual, attproj, btc);
        layernorm_forward(ln2, a->ln2_mean + (int64_t)l * BT, a->ln2_rstd + (int64_t)l * BT,
                          residual2, p->ln2w + l * C, p->ln2b + l * C, BT, C);
        dense_forward(fch, ln2, p->fcw + (int64_t)l * 4 * C * C, p->fcb + l * 4 * C, BT, C, 4 * C);
        if (gpt2_lora_active(m, LORA_MLP_C_FC))
            gpt2_lora_forward(m, LORA_MLP_C_FC, l, fch, ln2, BT, true);
        activation_forward(ACTIVATION_GELU, fch_gelu, fch, 4 * btc);
        dense_forward(fcproj, fch_gelu, p->fcprojw + (int64_t)l * 4 * C * C, p->fcprojb + l * C, BT,
                      4 * C, C);
        if (gpt2_lora_active(m, LORA_MLP_C_PROJ))
            gpt2_lora_forward(m, LORA_MLP_C_PROJ, l, fcproj, fch_gelu, BT, true);
        residual_forward(residual3, residual2, fcproj, btc);
        residual = residual3;
    }
    layernorm_forward(a->lnf, a->lnf_mean, a->lnf_rstd, residual, p->lnfw, p->lnfb, BT, C);
    if (want_logits && m->LT == T) {
        dense_forward(a->logits, a->lnf, p->wte, NULL, BT, C, c->vocab_size);
    } else if (want_logits) { /* the selected columns, gathered into one matmul */
        for (int b = 0; b < B; b++)
            memcpy(a->lnf_sel + (int64_t)b * m->LT * C, a->lnf + ((int64_t)b * T + t0) * C,
                   sizeof(float) * (size_t)m->LT * (size_t)C);
        dense_forward(a->logits, a->lnf_sel, p->wte, NULL, B * m->LT, C, c->vocab_size);
    }
    if (c->scalar_head)
        for (int i = 0; i < BT; i++) {
            const float *x = a->lnf + (int64_t)i * C;
            float v = p->headb[0];
            for (int j = 0; j < C; j++)
                v += x[j] * p->headw[j];
            a->values[i] = v;
        }
}

/* The rows are V = 50257 wide for GPT-2, so the loss and log-prob passes
 * use nn.h's vectorised max / exp-sum / dot (libm's expf per logit was a
 * third of a training step). ex (V) receives exp(z - max). */
static float row_logsumexp(const float *z, int V, float *ex, float *sum_out, float *max_out) {
    const float maxv = nn_max(z, V);
    const float sum = nn_exp_sum(ex, z, V, maxv);
    if (sum_out)
        *sum_out = sum;
    if (max_out)
        *max_out = maxv;
    return maxv + logf(sum);
}

float gpt2_lm_loss(gpt2_model *m, const int32_t *targets, const uint8_t *loss_mask,
                   float grad_scale) {
    const int BT = m->B * m->LT, V = m->cfg.vocab_size; /* rows with logits */
    float *logits = m->acts.logits;
    int64_t count = 0;
    for (int i = 0; i < BT; i++)
        count += !loss_mask || loss_mask[i];
    double total = 0.0;
    const float k = count > 0 ? grad_scale / (float)count : 0.0f;
    for (int i = 0; i < BT; i++) {
        float *z = logits + (int64_t)i * V;
        const int use = !loss_mask || loss_mask[i];
        if (!use) {
            if (grad_scale > 0.0f)
                memset(z, 0, sizeof(float) * (size_t)V);
            continue;
        }
        const float target_logit = z[targets[i]];
        float sum;
        /* with a gradient to produce, exp(z - max) goes straight into z */
        const float lse =
            row_logsumexp(z, V, grad_scale > 0.0f ? z : m->acts.row_scratch, &sum, NULL);
        total += lse - target_logit;
        if (grad_scale <= 0.0f)
            continue;
        /* ∂(lse - z_y)/∂z = softmax(z) - onehot(y), averaged over counted tokens */
        const float scale = k / sum;
        for (int j = 0; j < V; j++)
            z[j] *= scale;
        z[targets[i]] -= k;
    }
    return count > 0 ? (float)(total / (double)count) : NAN;
}

void gpt2_token_logprobs(const gpt2_model *m, const int32_t *targets, float *logp, float *entropy) {
    const int BT = m->B * m->LT, V = m->cfg.vocab_size; /* rows with logits */
    float *ex = m->acts.row_scratch;
    for (int i = 0; i < BT; i++) {
        const float *z = m->acts.logits + (int64_t)i * V;
        float sum;
        const float lse = row_logsumexp(z, V, ex, &sum, NULL);
        logp[i] = z[targets[i]] - lse;
        if (entropy != NULL) /* H = lse - Σ p z */
            entropy[i] = lse - nn_dot(ex, z, V) / sum;
    }
}

void gpt2_logprobs_backward(gpt2_model *m, const int32_t *targets, const float *dlogp,
                            const float *dentropy) {
    const int BT = m->B * m->LT, V = m->cfg.vocab_size; /* rows with logits */
    float *ex = m->acts.row_scratch;
    for (int i = 0; i < BT; i++) {
        float *z = m->acts.logits + (int64_t)i * V;
        const float gl = dlogp[i], ge = dentropy ? dentropy[i] : 0.0f;
        if (gl == 0.0f && ge == 0.0f) {
            memset(z, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float sum;
        const float lse = row_logsumexp(z, V, ex, &sum, NULL);
        const float inv = 1.0f / sum;
        /* H = lse - Σ p z; ∂/∂z_j = -gl·p_j - ge·p_j·(log p_j + H) + gl·1[j = y] */
        const float h = ge != 0.0f ? lse - nn_dot(ex, z, V) * inv : 0.0f;
        for (int j = 0; j < V; j++) {
            const float p = ex[j] * inv, lp = z[j] - lse;
            z[j] = -gl * p - ge * p * (lp + h);
        }
        z[targets[i]] += gl;
    }
}

void gpt2_backward(gpt2_model *m, bool with_logits, bool with_values) {
    const gpt2_config *c = &m->cfg;
    const int B = m->B, T = m->T, C = c->d_model, L = c->n_layer, NH = c->n_head;
    const int BT = B * T;
    const int64_t btc = (int64_t)BT * C;
    gpt2_acts *a = &m->acts;
    const gpt2_params *p = &m->params;
    gpt2_params *g = &m->grads;
    /* With LoRA the base is frozen: input gradients only (NULL weight
     * gradients), plus the adapters' and the scalar head's. */
    const bool fr = m->lora != NULL;
#define GW(x) (fr ? NULL : (x))

    /* heads → dlnf (in dbtc) */
    float *dlnf = a->dbtc;
    memset(dlnf, 0, sizeof(float) * (size_t)btc);
    if (with_logits && m->LT == T) {
        dense_backward(dlnf, GW(g->wte), NULL, a->logits, a->lnf, p->wte, BT, C, c->vocab_size);
    } else if (with_logits) { /* dlnf of the selected columns, via dbtc2 (free until layer L-1) */
        const int64_t n = (int64_t)B * m->LT * C;
        memset(a->dbtc2, 0, sizeof(float) * (size_t)n);
        dense_backward(a->dbtc2, GW(g->wte), NULL, a->logits, a->lnf_sel, p->wte, B * m->LT, C,
                       c->vocab_size);
        for (int b = 0; b < B; b++)
            memcpy(dlnf + ((int64_t)b * T + m->LT0) * C, a->dbtc2 + (int64_t)b * m->LT * C,
                   sizeof(float) * (size_t)m->LT * (size_t)C);
    }
    if (with_values && c->scalar_head)
        for (int i = 0; i < BT; i++) {
            const float dv = a->dvalues[i];
            if (dv == 0.0f)
                continue;
            const float *x = a->lnf + (int64_t)i * C;
            float *dx = dlnf + (int64_t)i * C;
            for (int j = 0; j < C; j++) {
                dx[j] += dv * p->headw[j];
                g->headw[j] += dv * x[j];
            }
            g->headb[0] += dv;
        }
    float *dresidual = a->dresidual;
    memset(dresidual, 0, sizeof(float) * (size_t)btc);
    layernorm_backward(dresidual, GW(g->lnfw), GW(g->lnfb), dlnf, a->residual3 + (L - 1) * btc,
                       p->lnfw, a->lnf_mean, a->lnf_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * btc;
        const float *ln1 = a->ln1 + l * btc, *qkv = a->qkv + l * 3 * btc;
        const float *atty = a->atty + l * btc, *att = a->att + (int64_t)l * BT * NH * T;
        const float *residual2 = a->residual2 + l * btc, *ln2 = a->ln2 + l * btc;
        const float *fch = a->fch + l * 4 * btc, *fch_gelu = a->fch_gelu + l * 4 * btc;
        const int64_t CC = (int64_t)C * C;
        /* residual3 = residual2 + fcproj: dresidual is both dfcproj and dresidual2 */
        memset(a->dfch, 0, sizeof(float) * (size_t)(4 * btc));
        dense_backward(a->dfch, GW(g->fcprojw + l * 4 * CC), GW(g->fcprojb + l * C), dresidual,
                       fch_gelu, p->fcprojw + l * 4 * CC, BT, 4 * C, C);
        if (gpt2_lora_active(m, LORA_MLP_C_PROJ))
            gpt2_lora_backward(m, LORA_MLP_C_PROJ, l, a->dfch, dresidual, fch_gelu, BT);
        memset(a->dfch2, 0, sizeof(float) * (size_t)(4 * btc));
        activation_backward(ACTIVATION_GELU, a->dfch2, a->dfch, fch, fch_gelu, 4 * btc);
        memset(a->dbtc, 0, sizeof(float) * (size_t)btc);
        dense_backward(a->dbtc, GW(g->fcw + l * 4 * CC), GW(g->fcb + l * 4 * C), a->dfch2, ln2,
                       p->fcw + l * 4 * CC, BT, C, 4 * C);
        if (gpt2_lora_active(m, LORA_MLP_C_FC))
            gpt2_lora_backward(m, LORA_MLP_C_FC, l, a->dbtc, a->dfch2, ln2, BT);
        layernorm_backward(dresidual, GW(g->ln2w + l * C), GW(g->ln2b + l * C), a->dbtc, residual2,
                           p->ln2w + l * C, a->ln2_mean + (int64_t)l * BT,
                           a->ln2_rstd + (int64_t)l * BT, BT, C);
        /* residual2 = residual + attproj: dresidual is both dattproj and dresidual */
        memset(a->dbtc, 0, sizeof(float) * (size_t)btc);
        dense_backward(a->dbtc, GW(g->attprojw + l * CC), GW(g->attprojb + l * C), dresidual, atty,
                       p->attprojw + l * CC, BT, C, C);
        if (gpt2_lora_active(m, LORA_ATTN_C_PROJ))
            gpt2_lora_backward(m, LORA_ATTN_C_PROJ, l, a->dbtc, dresidual, atty, BT);
        memset(a->dqkv, 0, sizeof(float) * (size_t)(3 * btc));
        attention_backward(a->dqkv, a->datt, a->dbtc, qkv, att, B, T, C, NH);
        memset(a->dbtc2, 0, sizeof(float) * (size_t)btc);
        dense_backward(a->dbtc2, GW(g->qkvw + l * 3 * CC), GW(g->qkvb + l * 3 * C), a->dqkv, ln1,
                       p->qkvw + l * 3 * CC, BT, C, 3 * C);
        if (gpt2_lora_active(m, LORA_C_ATTN))
            gpt2_lora_backward(m, LORA_C_ATTN, l, a->dbtc2, a->dqkv, ln1, BT);
        layernorm_backward(dresidual, GW(g->ln1w + l * C), GW(g->ln1b + l * C), a->dbtc2, residual,
                           p->ln1w + l * C, a->ln1_mean + (int64_t)l * BT,
                           a->ln1_rstd + (int64_t)l * BT, BT, C);
    }
    if (!fr)
        encoder_backward(g->wte, g->wpe, dresidual, m->tokens, m->positions, BT, T, C);
#undef GW
}
