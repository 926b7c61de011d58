#include "llama.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "llama_lora.h"
#include "lm_logits.h"
#include "nn.h"

/* ==== parameters ============================================================== */

void llama_param_sizes(const llama_config *cfg, int64_t sizes[LLAMA_NUM_PARAM_TENSORS]) {
    const int64_t V = cfg->vocab_size, C = cfg->hidden_size, F = cfg->intermediate_size;
    const int64_t L = cfg->n_layer, hd = cfg->head_dim;
    const int64_t QKV = (cfg->n_head + 2 * (int64_t)cfg->n_kv_head) * hd, QD = cfg->n_head * hd;
    const int64_t s[LLAMA_NUM_PARAM_TENSORS] = {
        V * C,
        L * C,
        L * QKV * C,
        cfg->qkv_bias ? L * QKV : 0,
        cfg->qk_norm ? L * hd : 0,
        cfg->qk_norm ? L * hd : 0,
        L * C * QD,
        cfg->o_bias ? L * C : 0,
        L * C,
        L * 2 * F * C,
        L * C * F,
        C,
        cfg->tie_embeddings ? 0 : V * C,
        cfg->scalar_head ? C : 0,
        cfg->scalar_head ? 1 : 0,
    };
    memcpy(sizes, s, sizeof s);
}

int64_t llama_num_params(const llama_config *cfg) {
    int64_t sizes[LLAMA_NUM_PARAM_TENSORS], n = 0;
    llama_param_sizes(cfg, sizes);
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++)
        n += sizes[i];
    return n;
}

void llama_params_view(llama_params *p, const llama_config *cfg, float *memory) {
    int64_t sizes[LLAMA_NUM_PARAM_TENSORS];
    llama_param_sizes(cfg, sizes);
    float **views[LLAMA_NUM_PARAM_TENSORS] = {
        &p->embed,  &p->attn_norm,  &p->wqkv,    &p->bqkv,     &p->q_norm,
        &p->k_norm, &p->wo,         &p->bo,      &p->mlp_norm, &p->wgateup,
        &p->wdown,  &p->final_norm, &p->lm_head, &p->headw,    &p->headb,
    };
    float *cursor = memory;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        *views[i] = cursor;
        cursor += sizes[i];
    }
}

void llama_decay_mask(const llama_config *cfg, uint8_t *mask) {
    int64_t sizes[LLAMA_NUM_PARAM_TENSORS];
    llama_param_sizes(cfg, sizes);
    /* decay every parameter with ndim >= 2 (nanoGPT's rule): not the norms,
     * biases or the scalar head's vector */
    static const uint8_t is_matrix[LLAMA_NUM_PARAM_TENSORS] = {1, 0, 1, 0, 0, 0, 1, 0,
                                                               0, 1, 1, 0, 1, 0, 0};
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        memset(mask, is_matrix[i], (size_t)sizes[i]);
        mask += sizes[i];
    }
}

/* inv_freq as HF computes it in float32 (_compute_default_rope_parameters),
 * then the llama3 rule (_compute_llama3_parameters): wavelengths longer than
 * original_max / low_freq_factor are slowed by factor, shorter than
 * original_max / high_freq_factor kept, and those between interpolated. */
static void rope_inv_freq(float *inv_freq, const llama_config *c) {
    const int half = c->head_dim / 2;
    for (int i = 0; i < half; i++) {
        const float expo = (float)(2 * i) / (float)c->head_dim;
        inv_freq[i] = 1.0f / powf(c->rope_theta, expo);
        if (!c->rope_llama3)
            continue;
        const float old_len = (float)c->rope_original_max_position;
        const float low_wavelen = old_len / c->rope_low_freq_factor;
        const float high_wavelen = old_len / c->rope_high_freq_factor;
        const float wavelen = (float)(2.0 * M_PI) / inv_freq[i];
        float f = wavelen > low_wavelen ? inv_freq[i] / c->rope_factor : inv_freq[i];
        if (!(wavelen < high_wavelen) && !(wavelen > low_wavelen)) {
            const float smooth = (old_len / wavelen - c->rope_low_freq_factor) /
                                 (c->rope_high_freq_factor - c->rope_low_freq_factor);
            f = (1.0f - smooth) * f / c->rope_factor + smooth * f;
        }
        inv_freq[i] = f;
    }
}

static int config_error(char *err, size_t errlen, const char *what) {
    snprintf(err, errlen, "invalid Llama config: %s", what);
    return -1;
}

int llama_init(llama_model *m, const llama_config *cfg, char *err, size_t errlen) {
    memset(m, 0, sizeof *m);
    const llama_config *c = cfg;
    if (c->vocab_size < 1 || c->hidden_size < 1 || c->intermediate_size < 1 || c->n_layer < 1)
        return config_error(err, errlen,
                            "vocab_size, hidden_size, intermediate_size and num_hidden_layers "
                            "must be positive");
    if (c->n_head < 1 || c->n_kv_head < 1 || c->n_head % c->n_kv_head != 0)
        return config_error(err, errlen,
                            "num_attention_heads must be a positive multiple of "
                            "num_key_value_heads");
    if (c->head_dim < 2 || c->head_dim % 2 != 0)
        return config_error(err, errlen, "head_dim must be even and positive");
    if (c->max_seq_len < 1)
        return config_error(err, errlen, "max_position_embeddings must be positive");
    if (!(c->rope_theta > 0.0f) || !(c->rms_norm_eps >= 0.0f))
        return config_error(err, errlen, "rope_theta must be positive, rms_norm_eps >= 0");
    if (c->rope_llama3 && (!(c->rope_factor > 0.0f) || !(c->rope_low_freq_factor > 0.0f) ||
                           !(c->rope_high_freq_factor > c->rope_low_freq_factor) ||
                           c->rope_original_max_position < 1))
        return config_error(err, errlen,
                            "rope_scaling (llama3) needs factor > 0, 0 < low_freq_factor < "
                            "high_freq_factor and original_max_position_embeddings > 0");
    if (c->n_eos < 0 || c->n_eos > LLAMA_MAX_EOS)
        return config_error(err, errlen, "too many eos_token_id values");
    m->cfg = *cfg;
    m->num_params = llama_num_params(cfg);
    const size_t half = (size_t)c->head_dim / 2, rope = (size_t)c->max_seq_len * half;
    m->param_memory = calloc((size_t)m->num_params, sizeof(float));
    m->rope_cos = malloc(sizeof(float) * rope);
    m->rope_sin = malloc(sizeof(float) * rope);
    float *inv_freq = malloc(sizeof(float) * half);
    if (m->param_memory == NULL || m->rope_cos == NULL || m->rope_sin == NULL || inv_freq == NULL) {
        snprintf(err, errlen, "out of memory for %lld parameters", (long long)m->num_params);
        free(inv_freq);
        llama_free(m);
        return -1;
    }
    llama_params_view(&m->params, cfg, m->param_memory);
    /* angles in float32 as HF's rotary embedding: inv_freq · position */
    rope_inv_freq(inv_freq, c);
    for (int t = 0; t < c->max_seq_len; t++)
        for (size_t i = 0; i < half; i++) {
            const float angle = (float)t * inv_freq[i];
            m->rope_cos[(size_t)t * half + i] = cosf(angle);
            m->rope_sin[(size_t)t * half + i] = sinf(angle);
        }
    free(inv_freq);
    return 0;
}

int llama_alloc_grads(llama_model *m, char *err, size_t errlen) {
    if (m->grad_memory != NULL)
        return 0;
    if (m->borrowed_base) {
        snprintf(err, errlen, "a model over another's weights cannot train them (LoRA only)");
        return -1;
    }
    m->grad_memory = calloc((size_t)m->num_params, sizeof(float));
    if (m->grad_memory == NULL) {
        snprintf(err, errlen, "out of memory for %lld gradients", (long long)m->num_params);
        return -1;
    }
    llama_params_view(&m->grads, &m->cfg, m->grad_memory);
    return 0;
}

void llama_init_shared(llama_model *dst, const llama_model *src) {
    memset(dst, 0, sizeof *dst);
    dst->cfg = src->cfg;
    dst->num_params = src->num_params;
    dst->param_memory = src->param_memory;
    dst->params = src->params;
    dst->rope_cos = src->rope_cos, dst->rope_sin = src->rope_sin;
    dst->borrowed_base = true;
}

void llama_free(llama_model *m) {
    llama_lora_free(m);
    if (!m->borrowed_base) {
        free(m->param_memory);
        free(m->rope_cos);
        free(m->rope_sin);
    }
    free(m->grad_memory);
    free(m->acts.memory);
    memset(m, 0, sizeof *m);
}

void llama_zero_grad(llama_model *m) {
    if (m->grad_memory != NULL)
        memset(m->grad_memory, 0, sizeof(float) * (size_t)m->num_params);
    if (m->lora != NULL)
        memset(m->lora->grads, 0, sizeof(float) * (size_t)m->lora->num_params);
}

static void fill_normal(float *x, int64_t n, double std, rng_state *rng) {
    for (int64_t i = 0; i < n; i++)
        x[i] = (float)(std * rng_next_normal(rng));
}

void llama_init_weights(llama_model *m, rng_state *rng) {
    const llama_config *c = &m->cfg;
    int64_t sizes[LLAMA_NUM_PARAM_TENSORS];
    llama_param_sizes(c, sizes);
    uint8_t is_matrix[LLAMA_NUM_PARAM_TENSORS] = {1, 0, 1, 0, 0, 0, 1, 0, 0, 1, 1, 0, 1, 0, 0};
    memset(m->param_memory, 0, sizeof(float) * (size_t)m->num_params);
    float *cursor = m->param_memory;
    for (int i = 0; i < LLAMA_NUM_PARAM_TENSORS; i++) {
        if (is_matrix[i])
            fill_normal(cursor, sizes[i], 0.02, rng);
        cursor += sizes[i];
    }
    llama_params *p = &m->params;
    const int64_t L = c->n_layer, C = c->hidden_size, hd = c->head_dim;
    for (int64_t i = 0; i < L * C; i++)
        p->attn_norm[i] = p->mlp_norm[i] = 1.0f;
    for (int64_t i = 0; i < C; i++)
        p->final_norm[i] = 1.0f;
    if (c->qk_norm)
        for (int64_t i = 0; i < L * hd; i++)
            p->q_norm[i] = p->k_norm[i] = 1.0f;
    if (c->scalar_head)
        fill_normal(p->headw, C, 1.0 / sqrt((double)C + 1.0), rng);
}

/* ==== activations ============================================================= */

int llama_reserve(llama_model *m, int B, int T, char *err, size_t errlen) {
    const llama_config *c = &m->cfg;
    if (T < 1 || T > c->max_seq_len || B < 1) {
        snprintf(err, errlen, "batch (%d, %d) does not fit a context of %d", B, T, c->max_seq_len);
        return -1;
    }
    llama_acts *a = &m->acts;
    if (llama_lora_reserve(m, (int64_t)B * T) != 0) {
        snprintf(err, errlen, "out of memory for LoRA activations of a (%d, %d) batch", B, T);
        return -1;
    }
    if (a->memory != NULL && B <= a->B && T <= a->T)
        return 0;
    free(a->memory);
    memset(a, 0, sizeof *a);
    const size_t L = (size_t)c->n_layer, C = (size_t)c->hidden_size,
                 F = (size_t)c->intermediate_size;
    const size_t NH = (size_t)c->n_head, NKV = (size_t)c->n_kv_head, hd = (size_t)c->head_dim;
    const size_t QKV = (NH + 2 * NKV) * hd, QD = NH * hd, V = (size_t)c->vocab_size;
    const size_t BT = (size_t)B * (size_t)T, qkn = c->qk_norm ? 1 : 0;
    const size_t sizes[] = {
        BT * C,
        L * BT * C,
        L * BT,
        qkn * L * BT * QKV,
        qkn * L * BT * (NH + NKV),
        L * BT * QKV,
        L * BT * NH * T,
        L * BT * QD,
        L * BT * C,
        L * BT * C,
        L * BT,
        L * BT * 2 * F,
        L * BT * F,
        L * BT * C,
        BT * C,
        BT,
        BT * V,
        BT,
        BT,
        BT * C,
        BT * C,
        BT * C,
        BT * QD,
        BT * QKV,
        BT * QKV,
        BT * 2 * F,
        BT * F,
        (size_t)T * T,
        V,
        BT * C,
    };
    float **views[] = {
        &a->encoded, &a->attn_in,   &a->attn_rstd, &a->qkv_raw,    &a->qk_rstd,     &a->qkv,
        &a->att,     &a->atty,      &a->residual2, &a->mlp_in,     &a->mlp_rstd,    &a->gateup,
        &a->swiglu,  &a->residual3, &a->final_out, &a->final_rstd, &a->logits,      &a->values,
        &a->dvalues, &a->dresidual, &a->dbtc,      &a->dbtc2,      &a->datty,       &a->dqkv,
        &a->dqkv2,   &a->dgateup,   &a->dswiglu,   &a->datt,       &a->row_scratch, &a->final_sel,
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

/* ==== layers ================================================================== */

void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                     float eps) {
    for (int i = 0; i < N; i++) {
        const float *x = inp + (int64_t)i * C;
        float *o = out + (int64_t)i * C;
        double ss = 0.0;
        for (int j = 0; j < C; j++)
            ss += (double)x[j] * x[j];
        const float r = (float)(1.0 / sqrt(ss / C + eps));
        for (int j = 0; j < C; j++)
            o[j] = weight[j] * (x[j] * r);
        rstd[i] = r;
    }
}

void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C) {
    for (int i = 0; i < N; i++) {
        const float *dy = dout + (int64_t)i * C, *x = inp + (int64_t)i * C;
        float *dx = dinp + (int64_t)i * C;
        const float r = rstd[i];
        /* y = w x r, ∂r/∂x_k = -r³ x_k / C: dx = r w dy - x r³ mean(w dy x) */
        float dot = 0.0f;
        for (int j = 0; j < C; j++)
            dot += weight[j] * dy[j] * x[j];
        const float k = r * r * r * dot / (float)C;
        for (int j = 0; j < C; j++)
            dx[j] += r * weight[j] * dy[j] - x[j] * k;
        if (dweight != NULL)
            for (int j = 0; j < C; j++)
                dweight[j] += dy[j] * x[j] * r;
    }
}

/* The per-head part of the attention input, in place on N rows of qkv
 * (stride QKV): Qwen3's RMSNorm over each q and k head (when qk_norm; the
 * input is raw, the rstd (N, NH + NKV) kept; raw may equal qkv), then RoPE
 * of each q and k head at the row's position. The v heads are copied. */
static void qk_heads_forward(const llama_model *m, float *qkv, float *qk_rstd, const float *raw,
                             int l, const int32_t *pos, int N, int T) {
    const llama_config *c = &m->cfg;
    const int hd = c->head_dim, half = hd / 2, nqk = c->n_head + c->n_kv_head;
    const int QKV = (nqk + c->n_kv_head) * hd;
    for (int r = 0; r < N; r++) {
        float *row = qkv + (int64_t)r * QKV;
        const float *raw_row = raw + (int64_t)r * QKV;
        if (c->qk_norm) {
            for (int h = 0; h < nqk; h++) {
                const float *w =
                    (h < c->n_head ? m->params.q_norm : m->params.k_norm) + (int64_t)l * hd;
                rmsnorm_forward(row + h * hd, qk_rstd + (int64_t)r * nqk + h, raw_row + h * hd, w,
                                1, hd, c->rms_norm_eps);
            }
            if (raw != qkv)
                memcpy(row + nqk * hd, raw_row + nqk * hd,
                       sizeof(float) * (size_t)(QKV - nqk * hd));
        }
        const int p = pos ? pos[r] : r % T;
        const float *cs = m->rope_cos + (int64_t)p * half, *sn = m->rope_sin + (int64_t)p * half;
        for (int h = 0; h < nqk; h++) {
            float *x = row + h * hd;
            for (int i = 0; i < half; i++) { /* HF: x·cos + rotate_half(x)·sin */
                const float a = x[i], b = x[i + half];
                x[i] = a * cs[i] - b * sn[i];
                x[i + half] = b * cs[i] + a * sn[i];
            }
        }
    }
}

/* Backward of qk_heads_forward: dqkv (gradient w.r.t. the rotated heads) is
 * rotated back in place; with qk_norm the gradient w.r.t. raw goes to
 * draw (+=) and the norm weights' to dq_norm / dk_norm (NULL: frozen). */
static void qk_heads_backward(const llama_model *m, float *dqkv, float *draw, float *dq_norm,
                              float *dk_norm, const float *raw, const float *qk_rstd, int l,
                              const int32_t *pos, int N, int T) {
    const llama_config *c = &m->cfg;
    const int hd = c->head_dim, half = hd / 2, nqk = c->n_head + c->n_kv_head;
    const int QKV = (nqk + c->n_kv_head) * hd;
    for (int r = 0; r < N; r++) {
        float *row = dqkv + (int64_t)r * QKV;
        const int p = pos ? pos[r] : r % T;
        const float *cs = m->rope_cos + (int64_t)p * half, *sn = m->rope_sin + (int64_t)p * half;
        for (int h = 0; h < nqk; h++) {
            float *x = row + h * hd;
            for (int i = 0; i < half; i++) { /* the transposed rotation */
                const float a = x[i], b = x[i + half];
                x[i] = a * cs[i] + b * sn[i];
                x[i + half] = b * cs[i] - a * sn[i];
            }
        }
        if (!c->qk_norm)
            continue;
        float *drow = draw + (int64_t)r * QKV;
        const float *raw_row = raw + (int64_t)r * QKV;
        for (int h = 0; h < nqk; h++) {
            const bool is_q = h < c->n_head;
            const float *w = (is_q ? m->params.q_norm : m->params.k_norm) + (int64_t)l * hd;
            float *dw = is_q ? dq_norm : dk_norm;
            rmsnorm_backward(drow + h * hd, dw ? dw + (int64_t)l * hd : NULL, row + h * hd,
                             raw_row + h * hd, w, qk_rstd + (int64_t)r * nqk + h, 1, hd);
        }
        for (int j = nqk * hd; j < QKV; j++)
            drow[j] += row[j];
    }
}

/* silu(gate) ⊙ up over N rows of gateup (N, 2F) → out (N, F). */
static void swiglu_forward(float *out, const float *gateup, int N, int F) {
    for (int r = 0; r < N; r++) {
        const float *g = gateup + (int64_t)r * 2 * F, *u = g + F;
        float *o = out + (int64_t)r * F;
        for (int j = 0; j < F; j++) {
            const float s = 1.0f / (1.0f + expf(-g[j]));
            o[j] = g[j] * s * u[j];
        }
    }
}

static void swiglu_backward(float *dgateup, const float *dout, const float *gateup, int N, int F) {
    for (int r = 0; r < N; r++) {
        const float *g = gateup + (int64_t)r * 2 * F, *u = g + F, *d = dout + (int64_t)r * F;
        float *dg = dgateup + (int64_t)r * 2 * F, *du = dg + F;
        for (int j = 0; j < F; j++) {
            const float s = 1.0f / (1.0f + expf(-g[j]));
            du[j] += d[j] * g[j] * s;
            /* silu'(g) = s (1 + g (1 - s)) */
            dg[j] += d[j] * u[j] * s * (1.0f + g[j] * (1.0f - s));
        }
    }
}

/* Masked softmax in place over row[0..n) where visible(j) = j <= last and
 * mask[j] (mask NULL = all); a row with nothing visible becomes zeros. */
static void causal_softmax_row(float *row, int n, int last, const uint8_t *mask) {
    float maxv = -INFINITY;
    for (int j = 0; j <= last; j++)
        if ((!mask || mask[j]) && row[j] > maxv)
            maxv = row[j];
    float sum = 0.0f;
    for (int j = 0; j < n; j++) {
        const int visible = j <= last && (!mask || mask[j]);
        row[j] = visible ? expf(row[j] - maxv) : 0.0f;
        sum += row[j];
    }
    const float inv = sum > 0.0f ? 1.0f / sum : 0.0f;
    for (int j = 0; j <= last && j < n; j++)
        row[j] *= inv;
}

/* Grouped-query causal attention over qkv (B, T, QKV) → out (B, T, QD),
 * probabilities att (B, NH, T, T) kept. Query head h reads key/value head
 * h / (NH / NKV); two sgemms per (b, h) on strided views. */
static void attention_forward(float *out, float *att, const float *qkv, const uint8_t *attn_mask,
                              int B, int T, int NH, int NKV, int hd) {
    const int QKV = (NH + 2 * NKV) * hd, QD = NH * hd, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const float *base = qkv + (int64_t)b * T * QKV;
            const float *q = base + h * hd, *k = base + (NH + h / group) * hd;
            const float *v = base + (NH + NKV + h / group) * hd;
            float *p = att + ((int64_t)b * NH + h) * T * T;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, scale, q, QKV, k, QKV,
                        0.0f, p, T);
            const uint8_t *mask = attn_mask ? attn_mask + (int64_t)b * T : NULL;
            for (int t = 0; t < T; t++)
                causal_softmax_row(p + (int64_t)t * T, T, t, mask);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, v, QKV,
                        0.0f, out + (int64_t)b * T * QD + h * hd, QD);
        }
}

/* dqkv += ∂/∂qkv given dout (B, T, QD); datt (T, T) scratch. Key/value
 * heads shared by a group accumulate every query head's part. */
static void attention_backward(float *dqkv, float *datt, const float *dout, const float *qkv,
                               const float *att, int B, int T, int NH, int NKV, int hd) {
    const int QKV = (NH + 2 * NKV) * hd, QD = NH * hd, group = NH / NKV;
    const float scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int h = 0; h < NH; h++) {
            const int64_t off = (int64_t)b * T * QKV;
            const int qo = h * hd, ko = (NH + h / group) * hd, vo = (NH + NKV + h / group) * hd;
            const float *q = qkv + off + qo, *k = qkv + off + ko, *v = qkv + off + vo;
            float *dq = dqkv + off + qo, *dk = dqkv + off + ko, *dv = dqkv + off + vo;
            const float *p = att + ((int64_t)b * NH + h) * T * T;
            const float *dy = dout + (int64_t)b * T * QD + h * hd;
            /* dP = dY Vᵀ ; dV += Pᵀ dY */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, T, T, hd, 1.0f, dy, QD, v, QKV,
                        0.0f, datt, T);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, 1.0f, p, T, dy, QD, 1.0f,
                        dv, QKV);
            /* softmax backward: dS = P ⊙ (dP - Σ_j P dP) */
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
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, T, hd, T, scale, datt, T, k, QKV,
                        1.0f, dq, QKV);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, T, hd, T, scale, datt, T, q, QKV,
                        1.0f, dk, QKV);
        }
}

static void add_inplace(float *out, const float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        out[i] += x[i];
}

/* ==== the model =============================================================== */

static const float *llama_head_weight(const llama_model *m) {
    return m->cfg.tie_embeddings ? m->params.embed : m->params.lm_head;
}

void llama_forward(llama_model *m, const llama_batch *batch, int t0, int t1) {
    const llama_config *c = &m->cfg;
    const int B = batch->B, T = batch->T, BT = B * T, C = c->hidden_size, L = c->n_layer;
    const int F = c->intermediate_size, NH = c->n_head, NKV = c->n_kv_head, hd = c->head_dim;
    const int QKV = (NH + 2 * NKV) * hd, QD = NH * hd;
    const int64_t btc = (int64_t)BT * C;
    const float eps = c->rms_norm_eps;
    llama_acts *a = &m->acts;
    const llama_params *p = &m->params;
    m->tokens = batch->tokens;
    m->positions = batch->positions;
    m->attn_mask = batch->attn_mask;
    m->B = B;
    m->T = T;
    t0 = t0 < 0 ? 0 : t0;
    t1 = t1 > T ? T : t1;
    const bool want_logits = t0 < t1;
    m->LT0 = t0;
    m->LT = want_logits ? t1 - t0 : 0;

    for (int i = 0; i < BT; i++)
        memcpy(a->encoded + (int64_t)i * C, p->embed + (int64_t)batch->tokens[i] * C,
               sizeof(float) * (size_t)C);
    const float *residual = a->encoded;
    for (int l = 0; l < L; l++) {
        float *attn_in = a->attn_in + l * btc, *qkv = a->qkv + (int64_t)l * BT * QKV;
        float *qkv_raw = c->qk_norm ? a->qkv_raw + (int64_t)l * BT * QKV : qkv;
        float *qk_rstd = c->qk_norm ? a->qk_rstd + (int64_t)l * BT * (NH + NKV) : NULL;
        float *att = a->att + (int64_t)l * BT * NH * T, *atty = a->atty + (int64_t)l * BT * QD;
        float *residual2 = a->residual2 + l * btc, *mlp_in = a->mlp_in + l * btc;
        float *gateup = a->gateup + (int64_t)l * BT * 2 * F,
              *swiglu = a->swiglu + (int64_t)l * BT * F;
        float *residual3 = a->residual3 + l * btc;
        rmsnorm_forward(attn_in, a->attn_rstd + (int64_t)l * BT, residual,
                        p->attn_norm + (int64_t)l * C, BT, C, eps);
        dense_forward(qkv_raw, attn_in, p->wqkv + (int64_t)l * QKV * C,
                      c->qkv_bias ? p->bqkv + (int64_t)l * QKV : NULL, BT, C, QKV);
        for (int tgt = LLAMA_LORA_Q; tgt <= LLAMA_LORA_V; tgt++)
            llama_lora_forward(m, tgt, l, qkv_raw, attn_in, BT, true);
        qk_heads_forward(m, qkv, qk_rstd, qkv_raw, l, batch->positions, BT, T);
        attention_forward(atty, att, qkv, batch->attn_mask, B, T, NH, NKV, hd);
        dense_forward(residual2, atty, p->wo + (int64_t)l * C * QD,
                      c->o_bias ? p->bo + (int64_t)l * C : NULL, BT, QD, C);
        llama_lora_forward(m, LLAMA_LORA_O, l, residual2, atty, BT, true);
        add_inplace(residual2, residual, btc);
        rmsnorm_forward(mlp_in, a->mlp_rstd + (int64_t)l * BT, residual2,
                        p->mlp_norm + (int64_t)l * C, BT, C, eps);
        dense_forward(gateup, mlp_in, p->wgateup + (int64_t)l * 2 * F * C, NULL, BT, C, 2 * F);
        llama_lora_forward(m, LLAMA_LORA_GATE, l, gateup, mlp_in, BT, true);
        llama_lora_forward(m, LLAMA_LORA_UP, l, gateup, mlp_in, BT, true);
        swiglu_forward(swiglu, gateup, BT, F);
        dense_forward(residual3, swiglu, p->wdown + (int64_t)l * C * F, NULL, BT, F, C);
        llama_lora_forward(m, LLAMA_LORA_DOWN, l, residual3, swiglu, BT, true);
        add_inplace(residual3, residual2, btc);
        residual = residual3;
    }
    rmsnorm_forward(a->final_out, a->final_rstd, residual, p->final_norm, BT, C, eps);
    const float *head = llama_head_weight(m);
    if (want_logits && m->LT == T) {
        dense_forward(a->logits, a->final_out, head, NULL, BT, C, c->vocab_size);
    } else if (want_logits) { /* the selected columns, gathered into one matmul */
        for (int b = 0; b < B; b++)
            memcpy(a->final_sel + (int64_t)b * m->LT * C, a->final_out + ((int64_t)b * T + t0) * C,
                   sizeof(float) * (size_t)m->LT * (size_t)C);
        dense_forward(a->logits, a->final_sel, head, NULL, B * m->LT, C, c->vocab_size);
    }
    if (c->scalar_head)
        for (int i = 0; i < BT; i++) {
            const float *x = a->final_out + (int64_t)i * C;
            float v = p->headb[0];
            for (int j = 0; j < C; j++)
                v += x[j] * p->headw[j];
            a->values[i] = v;
        }
}

float llama_lm_loss(llama_model *m, const int32_t *targets, const uint8_t *loss_mask,
                    float grad_scale) {
    return lm_logits_ce_loss(m->acts.logits, targets, loss_mask, m->B * m->LT, m->cfg.vocab_size,
                             grad_scale, m->acts.row_scratch);
}

void llama_token_logprobs(llama_model *m, const int32_t *targets, float *logp, float *entropy) {
    lm_logits_token_logprobs(m->acts.logits, targets, m->B * m->LT, m->cfg.vocab_size, logp,
                             entropy, m->acts.row_scratch);
}

void llama_logprobs_backward(llama_model *m, const int32_t *targets, const float *dlogp,
                             const float *dentropy) {
    lm_logits_logprobs_backward(m->acts.logits, targets, dlogp, dentropy, m->B * m->LT,
                                m->cfg.vocab_size, m->acts.row_scratch);
}

void llama_backward(llama_model *m, bool with_logits, bool with_values) {
    const llama_config *c = &m->cfg;
    const int B = m->B, T = m->T, BT = B * T, C = c->hidden_size, L = c->n_layer;
    const int F = c->intermediate_size, NH = c->n_head, NKV = c->n_kv_head, hd = c->head_dim;
    const int QKV = (NH + 2 * NKV) * hd, QD = NH * hd;
    const int64_t btc = (int64_t)BT * C;
    llama_acts *a = &m->acts;
    const llama_params *p = &m->params;
    llama_params *g = &m->grads;
    /* Without a gradient buffer (LoRA, or a frozen model) the base is frozen:
     * input gradients only, plus the adapters' and the scalar head's. */
    const bool fr = m->grad_memory == NULL;
#define GW(x) (fr ? NULL : (x))
    float *dheadw = fr ? (m->lora ? m->lora->dheadw : NULL) : g->headw;
    float *dheadb = fr ? (m->lora ? m->lora->dheadb : NULL) : g->headb;

    /* heads → dfinal (in dbtc) */
    float *dfinal = a->dbtc;
    memset(dfinal, 0, sizeof(float) * (size_t)btc);
    const float *head = llama_head_weight(m);
    float *dhead = GW(c->tie_embeddings ? g->embed : g->lm_head);
    if (with_logits && m->LT == T) {
        dense_backward(dfinal, dhead, NULL, a->logits, a->final_out, head, BT, C, c->vocab_size);
    } else if (with_logits && m->LT > 0) {
        const int64_t n = (int64_t)B * m->LT * C;
        memset(a->dbtc2, 0, sizeof(float) * (size_t)n);
        dense_backward(a->dbtc2, dhead, NULL, a->logits, a->final_sel, head, B * m->LT, C,
                       c->vocab_size);
        for (int b = 0; b < B; b++)
            memcpy(dfinal + ((int64_t)b * T + m->LT0) * C, a->dbtc2 + (int64_t)b * m->LT * C,
                   sizeof(float) * (size_t)m->LT * (size_t)C);
    }
    if (with_values && c->scalar_head)
        for (int i = 0; i < BT; i++) {
            const float dv = a->dvalues[i];
            if (dv == 0.0f)
                continue;
            const float *x = a->final_out + (int64_t)i * C;
            float *dx = dfinal + (int64_t)i * C;
            for (int j = 0; j < C; j++)
                dx[j] += dv * p->headw[j];
            if (dheadw == NULL)
                continue;
            for (int j = 0; j < C; j++)
                dheadw[j] += dv * x[j];
            dheadb[0] += dv;
        }
    float *dresidual = a->dresidual;
    memset(dresidual, 0, sizeof(float) * (size_t)btc);
    rmsnorm_backward(dresidual, GW(g->final_norm), dfinal, a->residual3 + (L - 1) * btc,
                     p->final_norm, a->final_rstd, BT, C);

    for (int l = L - 1; l >= 0; l--) {
        const float *residual = l == 0 ? a->encoded : a->residual3 + (l - 1) * btc;
        const float *attn_in = a->attn_in + l * btc, *qkv = a->qkv + (int64_t)l * BT * QKV;
        const float *qkv_raw = c->qk_norm ? a->qkv_raw + (int64_t)l * BT * QKV : NULL;
        const float *qk_rstd = c->qk_norm ? a->qk_rstd + (int64_t)l * BT * (NH + NKV) : NULL;
        const float *att = a->att + (int64_t)l * BT * NH * T;
        const float *atty = a->atty + (int64_t)l * BT * QD;
        const float *residual2 = a->residual2 + l * btc, *mlp_in = a->mlp_in + l * btc;
        const float *gateup = a->gateup + (int64_t)l * BT * 2 * F;
        const float *swiglu = a->swiglu + (int64_t)l * BT * F;
        /* residual3 = residual2 + down(swiglu): dresidual is both */
        memset(a->dswiglu, 0, sizeof(float) * (size_t)BT * (size_t)F);
        dense_backward(a->dswiglu, GW(g->wdown + (int64_t)l * C * F), NULL, dresidual, swiglu,
                       p->wdown + (int64_t)l * C * F, BT, F, C);
        llama_lora_backward(m, LLAMA_LORA_DOWN, l, a->dswiglu, dresidual, swiglu, BT);
        memset(a->dgateup, 0, sizeof(float) * (size_t)BT * 2 * (size_t)F);
        swiglu_backward(a->dgateup, a->dswiglu, gateup, BT, F);
        memset(a->dbtc, 0, sizeof(float) * (size_t)btc);
        dense_backward(a->dbtc, GW(g->wgateup + (int64_t)l * 2 * F * C), NULL, a->dgateup, mlp_in,
                       p->wgateup + (int64_t)l * 2 * F * C, BT, C, 2 * F);
        llama_lora_backward(m, LLAMA_LORA_GATE, l, a->dbtc, a->dgateup, mlp_in, BT);
        llama_lora_backward(m, LLAMA_LORA_UP, l, a->dbtc, a->dgateup, mlp_in, BT);
        rmsnorm_backward(dresidual, GW(g->mlp_norm + (int64_t)l * C), a->dbtc, residual2,
                         p->mlp_norm + (int64_t)l * C, a->mlp_rstd + (int64_t)l * BT, BT, C);
        /* residual2 = residual + o(atty) */
        memset(a->datty, 0, sizeof(float) * (size_t)BT * (size_t)QD);
        dense_backward(a->datty, GW(g->wo + (int64_t)l * C * QD),
                       c->o_bias ? GW(g->bo + (int64_t)l * C) : NULL, dresidual, atty,
                       p->wo + (int64_t)l * C * QD, BT, QD, C);
        llama_lora_backward(m, LLAMA_LORA_O, l, a->datty, dresidual, atty, BT);
        memset(a->dqkv, 0, sizeof(float) * (size_t)BT * (size_t)QKV);
        attention_backward(a->dqkv, a->datt, a->datty, qkv, att, B, T, NH, NKV, hd);
        float *dproj = a->dqkv;
        if (c->qk_norm) {
            memset(a->dqkv2, 0, sizeof(float) * (size_t)BT * (size_t)QKV);
            dproj = a->dqkv2;
        }
        qk_heads_backward(m, a->dqkv, dproj, GW(g->q_norm), GW(g->k_norm), qkv_raw, qk_rstd, l,
                          m->positions, BT, T);
        memset(a->dbtc, 0, sizeof(float) * (size_t)btc);
        dense_backward(a->dbtc, GW(g->wqkv + (int64_t)l * QKV * C),
                       c->qkv_bias ? GW(g->bqkv + (int64_t)l * QKV) : NULL, dproj, attn_in,
                       p->wqkv + (int64_t)l * QKV * C, BT, C, QKV);
        for (int tgt = LLAMA_LORA_Q; tgt <= LLAMA_LORA_V; tgt++)
            llama_lora_backward(m, tgt, l, a->dbtc, dproj, attn_in, BT);
        rmsnorm_backward(dresidual, GW(g->attn_norm + (int64_t)l * C), a->dbtc, residual,
                         p->attn_norm + (int64_t)l * C, a->attn_rstd + (int64_t)l * BT, BT, C);
    }
    for (int i = 0; i < BT && !fr; i++) {
        float *d = g->embed + (int64_t)m->tokens[i] * C;
        const float *s = dresidual + (int64_t)i * C;
        for (int j = 0; j < C; j++)
            d[j] += s[j];
    }
#undef GW
}

/* ==== KV cache: decoding and prompt prefill ==================================== */

/* Scratch of a block of R = B · nc rows (one decode step: nc = 1). */
typedef struct block_scratch {
    float *x, *xn, *qkv, *atty, *tmp, *gateup, *swiglu, *rstd, *qk_rstd, *scores;
    int32_t *pos;
} block_scratch;

static size_t block_scratch_floats(const llama_config *c, size_t R, size_t nc, size_t capT) {
    const size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    const size_t NH = (size_t)c->n_head, NKV = (size_t)c->n_kv_head, hd = (size_t)c->head_dim;
    return R * (3 * C + (NH + 2 * NKV) * hd + NH * hd + 3 * F + 2 + NH + NKV) +
           (nc > NH ? nc : NH) * capT; /* scores: nc rows, or a decode step's group */
}

/* Carves block_scratch_floats(...) floats at mem and R ints at pos. */
static void block_scratch_view(block_scratch *s, const llama_config *c, size_t R, float *mem,
                               int32_t *pos) {
    const size_t C = (size_t)c->hidden_size, F = (size_t)c->intermediate_size;
    const size_t NH = (size_t)c->n_head, NKV = (size_t)c->n_kv_head, hd = (size_t)c->head_dim;
    s->x = mem, mem += R * C;
    s->xn = mem, mem += R * C;
    s->tmp = mem, mem += R * C;
    s->qkv = mem, mem += R * (NH + 2 * NKV) * hd;
    s->atty = mem, mem += R * NH * hd;
    s->gateup = mem, mem += R * 2 * F;
    s->swiglu = mem, mem += R * F;
    s->rstd = mem, mem += R;
    s->qk_rstd = mem, mem += R * (NH + NKV) + R;
    s->scores = mem;
    s->pos = pos;
}

int llama_kv_cache_init(llama_kv_cache *cache, const llama_config *cfg, int B, int cap_T, char *err,
                        size_t errlen) {
    memset(cache, 0, sizeof *cache);
    if (B < 1 || cap_T < 1 || cap_T > cfg->max_seq_len) {
        snprintf(err, errlen, "KV cache for %d rows x %d positions does not fit a context of %d", B,
                 cap_T, cfg->max_seq_len);
        return -1;
    }
    const size_t kv = (size_t)cfg->n_layer * (size_t)B * (size_t)cfg->n_kv_head * (size_t)cap_T *
                      (size_t)cfg->head_dim;
    const size_t step = block_scratch_floats(cfg, (size_t)B, 1, (size_t)cap_T);
    const size_t logits = (size_t)B * (size_t)cfg->vocab_size;
    cache->memory = malloc(sizeof(float) * (2 * kv + step + logits));
    cache->key_mask = calloc((size_t)B * (size_t)cap_T, 1);
    cache->next_pos = calloc((size_t)B, sizeof(int32_t));
    cache->pos = calloc((size_t)B, sizeof(int32_t));
    if (cache->memory == NULL || cache->key_mask == NULL || cache->next_pos == NULL ||
        cache->pos == NULL) {
        snprintf(err, errlen, "out of memory for a KV cache of %d x %d", B, cap_T);
        llama_kv_cache_free(cache);
        return -1;
    }
    cache->B = B;
    cache->cap_T = cap_T;
    cache->k = cache->memory;
    cache->v = cache->k + kv;
    cache->logits = cache->v + kv;
    block_scratch s;
    block_scratch_view(&s, cfg, (size_t)B, cache->logits + logits, cache->pos);
    cache->x = s.x, cache->xn = s.xn, cache->qkv = s.qkv, cache->atty = s.atty;
    cache->tmp = s.tmp, cache->gateup = s.gateup, cache->swiglu = s.swiglu;
    cache->scores = s.scores, cache->rstd = s.rstd;
    return 0;
}

void llama_kv_cache_free(llama_kv_cache *cache) {
    free(cache->memory);
    free(cache->key_mask);
    free(cache->next_pos);
    free(cache->pos);
    memset(cache, 0, sizeof *cache);
}

/* Columns t0..t0+nc-1 of tokens (B, nc) (real (B, nc), NULL = all) through
 * every layer: K and V go to those cache columns, each query attends to the
 * cached columns up to its own; the last column's logits when want_logits.
 * Rows of the block: (b, i) = b · nc + i. */
static void forward_block(const llama_model *m, llama_kv_cache *cache, block_scratch *s,
                          const int32_t *tokens, const uint8_t *real, int t0, int nc,
                          bool want_logits) {
    const llama_config *c = &m->cfg;
    const llama_params *p = &m->params;
    const int B = cache->B, capT = cache->cap_T, C = c->hidden_size, F = c->intermediate_size;
    const int NH = c->n_head, NKV = c->n_kv_head, hd = c->head_dim, group = NH / NKV;
    const int QKV = (NH + 2 * NKV) * hd, QD = NH * hd, n = B * nc, t1 = t0 + nc;
    const float eps = c->rms_norm_eps, scale = 1.0f / sqrtf((float)hd);
    for (int b = 0; b < B; b++)
        for (int i = 0; i < nc; i++) {
            const int r = b * nc + i;
            const int is_real = real == NULL || real[r];
            s->pos[r] = is_real ? cache->next_pos[b]++ : 0;
            cache->key_mask[(int64_t)b * capT + t0 + i] = (uint8_t)is_real;
            memcpy(s->x + (int64_t)r * C, p->embed + (int64_t)tokens[r] * C,
                   sizeof(float) * (size_t)C);
        }
    for (int l = 0; l < c->n_layer; l++) {
        rmsnorm_forward(s->xn, s->rstd, s->x, p->attn_norm + (int64_t)l * C, n, C, eps);
        dense_forward(s->qkv, s->xn, p->wqkv + (int64_t)l * QKV * C,
                      c->qkv_bias ? p->bqkv + (int64_t)l * QKV : NULL, n, C, QKV);
        for (int tgt = LLAMA_LORA_Q; tgt <= LLAMA_LORA_V; tgt++)
            llama_lora_forward(m, tgt, l, s->qkv, s->xn, n, false);
        qk_heads_forward(m, s->qkv, s->qk_rstd, s->qkv, l, s->pos, n, 1);
        for (int b = 0; b < B; b++) {
            const uint8_t *mask = cache->key_mask + (int64_t)b * capT;
            const float *rows = s->qkv + (int64_t)b * nc * QKV;
            for (int g = 0; g < NKV; g++) {
                const int64_t base = (((int64_t)l * B + b) * NKV + g) * capT * hd;
                float *kc = cache->k + base, *vc = cache->v + base;
                for (int i = 0; i < nc; i++) {
                    memcpy(kc + (int64_t)(t0 + i) * hd, rows + (int64_t)i * QKV + (NH + g) * hd,
                           sizeof(float) * (size_t)hd);
                    memcpy(vc + (int64_t)(t0 + i) * hd,
                           rows + (int64_t)i * QKV + (NH + NKV + g) * hd,
                           sizeof(float) * (size_t)hd);
                }
                if (nc == 1) { /* one decode column: the group's G query heads as one (G, hd) */
                    float *y = s->atty + (int64_t)b * QD + g * group * hd;
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, group, t1, hd, scale,
                                rows + g * group * hd, hd, kc, hd, 0.0f, s->scores, t1);
                    for (int i = 0; i < group; i++)
                        causal_softmax_row(s->scores + (int64_t)i * t1, t1, t0, mask);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, group, hd, t1, 1.0f,
                                s->scores, t1, vc, hd, 0.0f, y, hd);
                    continue;
                }
                for (int h = g * group; h < (g + 1) * group; h++) {
                    /* scores (nc, t1) = Q Kᵀ over cached columns 0..t1-1 */
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, nc, t1, hd, scale,
                                rows + h * hd, QKV, kc, hd, 0.0f, s->scores, t1);
                    for (int i = 0; i < nc; i++)
                        causal_softmax_row(s->scores + (int64_t)i * t1, t1, t0 + i, mask);
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, nc, hd, t1, 1.0f,
                                s->scores, t1, vc, hd, 0.0f,
                                s->atty + (int64_t)b * nc * QD + h * hd, QD);
                }
            }
        }
        dense_forward(s->tmp, s->atty, p->wo + (int64_t)l * C * QD,
                      c->o_bias ? p->bo + (int64_t)l * C : NULL, n, QD, C);
        llama_lora_forward(m, LLAMA_LORA_O, l, s->tmp, s->atty, n, false);
        add_inplace(s->x, s->tmp, (int64_t)n * C);
        rmsnorm_forward(s->xn, s->rstd, s->x, p->mlp_norm + (int64_t)l * C, n, C, eps);
        dense_forward(s->gateup, s->xn, p->wgateup + (int64_t)l * 2 * F * C, NULL, n, C, 2 * F);
        llama_lora_forward(m, LLAMA_LORA_GATE, l, s->gateup, s->xn, n, false);
        llama_lora_forward(m, LLAMA_LORA_UP, l, s->gateup, s->xn, n, false);
        swiglu_forward(s->swiglu, s->gateup, n, F);
        dense_forward(s->tmp, s->swiglu, p->wdown + (int64_t)l * C * F, NULL, n, F, C);
        llama_lora_forward(m, LLAMA_LORA_DOWN, l, s->tmp, s->swiglu, n, false);
        add_inplace(s->x, s->tmp, (int64_t)n * C);
    }
    if (!want_logits)
        return;
    /* the LM head on the last column only: the step's largest matmul */
    for (int b = 0; b < B; b++)
        memcpy(s->tmp + (int64_t)b * C, s->x + ((int64_t)b * nc + nc - 1) * C,
               sizeof(float) * (size_t)C);
    rmsnorm_forward(s->xn, s->rstd, s->tmp, p->final_norm, B, C, eps);
    dense_forward(cache->logits, s->xn, llama_head_weight(m), NULL, B, C, c->vocab_size);
}

void llama_decode_step(const llama_model *m, llama_kv_cache *cache, const int32_t *tokens,
                       const uint8_t *real, int t, bool want_logits) {
    block_scratch s;
    block_scratch_view(&s, &m->cfg, (size_t)cache->B, cache->x, cache->pos);
    forward_block(m, cache, &s, tokens, real, t, 1, want_logits);
}

/* Long prompts go in column blocks of at most PREFILL_ROWS rows, bounding
 * the scratch; a block attends to every cached column before it. */
enum { PREFILL_ROWS = 2048 };

int llama_prefill(const llama_model *m, llama_kv_cache *cache, const int32_t *prompts,
                  const uint8_t *prompt_mask, int P, char *err, size_t errlen) {
    const int B = cache->B;
    if (P < 1 || P > cache->cap_T) {
        snprintf(err, errlen, "a prompt of %d columns does not fit a KV cache of %d", P,
                 cache->cap_T);
        return -1;
    }
    int PC = PREFILL_ROWS / B;
    PC = PC < 1 ? 1 : PC > P ? P : PC;
    const size_t R = (size_t)B * (size_t)PC;
    float *mem =
        malloc(sizeof(float) * block_scratch_floats(&m->cfg, R, (size_t)PC, (size_t)cache->cap_T));
    int32_t *pos = malloc(sizeof(int32_t) * R);
    int32_t *tok = malloc(sizeof(int32_t) * R);
    uint8_t *real = malloc(R);
    if (mem == NULL || pos == NULL || tok == NULL || real == NULL) {
        snprintf(err, errlen, "out of memory prefilling %d rows x %d columns", B, PC);
        free(mem), free(pos), free(tok), free(real);
        return -1;
    }
    block_scratch s;
    block_scratch_view(&s, &m->cfg, R, mem, pos);
    for (int t0 = 0; t0 < P; t0 += PC) {
        const int nc = P - t0 < PC ? P - t0 : PC;
        for (int b = 0; b < B; b++)
            for (int i = 0; i < nc; i++) {
                const int64_t src = (int64_t)b * P + t0 + i;
                tok[b * nc + i] = prompts[src];
                real[b * nc + i] = prompt_mask == NULL || prompt_mask[src];
            }
        forward_block(m, cache, &s, tok, real, t0, nc, t0 + nc == P);
    }
    free(mem), free(pos), free(tok), free(real);
    return 0;
}

static bool is_eos(const llama_config *c, int32_t id) {
    for (int i = 0; i < c->n_eos; i++)
        if (c->eos_ids[i] == id)
            return true;
    return false;
}

int llama_generate(const llama_model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                   int P, const llama_sample_config *sc, rng_state *rng, int32_t *out,
                   int32_t *out_len, char *err, size_t errlen) {
    const llama_config *c = &m->cfg;
    const int N = sc->max_new_tokens, V = c->vocab_size;
    if (P < 1 || N < 1 || P + N > c->max_seq_len) {
        snprintf(err, errlen,
                 "prompt %d + max_new_tokens %d must be within the context of %d (and both at "
                 "least 1)",
                 P, N, c->max_seq_len);
        return -1;
    }
    llama_kv_cache cache;
    if (llama_kv_cache_init(&cache, c, B, P + N, err, errlen) != 0)
        return -1;
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    uint8_t *real = malloc((size_t)B), *done = calloc((size_t)B, 1);
    int rc = -1;
    if (next == NULL || real == NULL || done == NULL) {
        snprintf(err, errlen, "out of memory generating %d rows", B);
        goto out;
    }
    if (llama_prefill(m, &cache, prompts, prompt_mask, P, err, errlen) != 0)
        goto out;
    /* the token choice is GPT-2's sampler (engine/gpt2_sample.c): it only
     * reads temperature, top_k and top_p */
    const gpt2_sample_config choose = {sc->temperature, sc->top_k, sc->top_p, N, -1};
    const int32_t filler = c->n_eos > 0 ? c->eos_ids[0] : 0;
    memset(out_len, 0, sizeof(int32_t) * (size_t)B);
    int remaining = B;
    for (int step = 0; step < N; step++) {
        gpt2_sample_tokens(next, cache.logits, B, V, &choose, rng);
        for (int b = 0; b < B; b++) {
            int32_t *o = out + (int64_t)b * N + step;
            if (done[b]) {
                *o = filler;
                continue;
            }
            *o = next[b];
            out_len[b]++;
            if (is_eos(c, next[b])) {
                done[b] = 1;
                remaining--;
            }
        }
        if (remaining == 0 || step == N - 1) {
            for (int b = 0; b < B; b++)
                for (int r = step + 1; r < N; r++)
                    out[(int64_t)b * N + r] = filler;
            break;
        }
        for (int b = 0; b < B; b++)
            real[b] = !done[b];
        llama_decode_step(m, &cache, next, real, P + step, true);
    }
    rc = 0;
out:
    free(next), free(real), free(done);
    llama_kv_cache_free(&cache);
    return rc;
}
