#include "lm_logits.h"

#include <math.h>
#include <string.h>

#include "nn.h"

/* ex (V) receives exp(z - max); returns log Σ exp(z). */
static float row_logsumexp(const float *z, int V, float *ex, float *sum_out) {
    const float maxv = nn_max(z, V);
    const float sum = nn_exp_sum(ex, z, V, maxv);
    *sum_out = sum;
    return maxv + logf(sum);
}

float lm_logits_ce_loss(float *logits, const int32_t *targets, const uint8_t *loss_mask, int N,
                        int V, float grad_scale, float *row_scratch) {
    int64_t count = 0;
    for (int i = 0; i < N; i++)
        count += !loss_mask || loss_mask[i];
    double total = 0.0;
    const float k = count > 0 ? grad_scale / (float)count : 0.0f;
    for (int i = 0; i < N; i++) {
        float *z = logits + (int64_t)i * V;
        if (loss_mask && !loss_mask[i]) {
            if (grad_scale > 0.0f)
                memset(z, 0, sizeof(float) * (size_t)V);
            continue;
        }
        const float target_logit = z[targets[i]];
        float sum;
        /* with a gradient to produce, exp(z - max) goes straight into z */
        const float lse = row_logsumexp(z, V, grad_scale > 0.0f ? z : row_scratch, &sum);
        total += lse - target_logit;
        if (grad_scale <= 0.0f)
            continue;
        /* ∂(lse - z_y)/∂z = softmax(z) - onehot(y), averaged over counted rows */
        const float scale = k / sum;
        for (int j = 0; j < V; j++)
            z[j] *= scale;
        z[targets[i]] -= k;
    }
    return count > 0 ? (float)(total / (double)count) : NAN;
}

void lm_logits_token_logprobs(const float *logits, const int32_t *targets, int N, int V,
                              float *logp, float *entropy, float *row_scratch) {
    for (int i = 0; i < N; i++) {
        const float *z = logits + (int64_t)i * V;
        float sum;
        const float lse = row_logsumexp(z, V, row_scratch, &sum);
        logp[i] = z[targets[i]] - lse;
        if (entropy != NULL) /* H = lse - Σ p z */
            entropy[i] = lse - nn_dot(row_scratch, z, V) / sum;
    }
}

void lm_logits_logprobs_backward(float *logits, const int32_t *targets, const float *dlogp,
                                 const float *dentropy, int N, int V, float *row_scratch) {
    for (int i = 0; i < N; i++) {
        float *z = logits + (int64_t)i * V;
        const float gl = dlogp[i], ge = dentropy ? dentropy[i] : 0.0f;
        if (gl == 0.0f && ge == 0.0f) {
            memset(z, 0, sizeof(float) * (size_t)V);
            continue;
        }
        float sum;
        const float lse = row_logsumexp(z, V, row_scratch, &sum);
        const float inv = 1.0f / sum;
        /* H = lse - Σ p z; ∂/∂z_j = -gl·p_j - ge·p_j·(log p_j + H) + gl·1[j = y] */
        const float h = ge != 0.0f ? lse - nn_dot(row_scratch, z, V) * inv : 0.0f;
        for (int j = 0; j < V; j++) {
            const float p = row_scratch[j] * inv, lp = z[j] - lse;
            z[j] = -gl * p - ge * p * (lp + h);
        }
        z[targets[i]] += gl;
    }
}
