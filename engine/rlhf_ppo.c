#include "rlhf_ppo.h"

#include <math.h>
#include <string.h>

int kl_estimator_from_name(const char *name) {
    if (strcmp(name, "k1") == 0)
        return KL_ESTIMATOR_K1;
    if (strcmp(name, "k3") == 0)
        return KL_ESTIMATOR_K3;
    if (strcmp(name, "abs") == 0)
        return KL_ESTIMATOR_ABS;
    return -1;
}

void rlhf_kl_per_token(float *kl, const float *logp, const float *ref_logp, const uint8_t *mask,
                       int B, int T, kl_estimator estimator) {
    const int64_t n = (int64_t)B * T;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i]) {
            kl[i] = 0.0f;
            continue;
        }
        const double d = (double)logp[i] - ref_logp[i]; /* log π - log π_ref */
        switch (estimator) {
            case KL_ESTIMATOR_K1:
                kl[i] = (float)d;
                break;
            case KL_ESTIMATOR_K3: /* ρ = π_ref/π = e^{-d}: (ρ - 1) - log ρ = e^{-d} - 1 + d */
                kl[i] = (float)(expm1(-d) + d);
                break;
            case KL_ESTIMATOR_ABS:
                kl[i] = (float)fabs(d);
                break;
        }
    }
}

void rlhf_shape_rewards(float *rewards, const float *kl, const float *score, const int32_t *len,
                        float beta, int B, int T) {
    for (int b = 0; b < B; b++) {
        float *r = rewards + (int64_t)b * T;
        const float *k = kl + (int64_t)b * T;
        for (int t = 0; t < T; t++)
            r[t] = t < len[b] ? -beta * k[t] : 0.0f;
        if (len[b] > 0)
            r[len[b] - 1] += score[b];
    }
}

void rlhf_compute_gae(float *advantages, float *returns, const float *rewards, const float *values,
                      const int32_t *len, float gamma, float lambda, int B, int T) {
    for (int b = 0; b < B; b++) {
        const int64_t row = (int64_t)b * T;
        float next_value = 0.0f, next_adv = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            const int64_t i = row + t;
            if (t >= len[b]) {
                advantages[i] = returns[i] = 0.0f;
                continue;
            }
            const float delta = rewards[i] + gamma * next_value - values[i];
            next_adv = delta + gamma * lambda * next_adv; /* GAE, Schulman 2016 eq. 16 */
            advantages[i] = next_adv;
            returns[i] = next_adv + values[i];
            next_value = values[i];
        }
    }
}

void rlhf_whiten(float *x, const uint8_t *mask, int64_t n, bool shift_mean) {
    double sum = 0.0;
    int64_t count = 0;
    for (int64_t i = 0; i < n; i++)
        if (mask == NULL || mask[i])
            sum += x[i], count++;
    if (count < 2)
        return;
    const double mean = sum / (double)count;
    double var = 0.0;
    for (int64_t i = 0; i < n; i++)
        if (mask == NULL || mask[i])
            var += ((double)x[i] - mean) * ((double)x[i] - mean);
    var /= (double)(count - 1); /* Bessel */
    const double scale = 1.0 / sqrt(var + 1e-8);
    for (int64_t i = 0; i < n; i++)
        if (mask == NULL || mask[i])
            x[i] = (float)(((double)x[i] - mean) * scale + (shift_mean ? 0.0 : mean));
}

void kl_controller_update(kl_controller *c, double current_kl, int64_t n_steps) {
    if (c->target <= 0.0)
        return;
    double e = current_kl / c->target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    c->beta *= 1.0 + e * (double)n_steps / c->horizon;
}
