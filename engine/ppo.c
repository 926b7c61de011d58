#include "ppo.h"

#include <math.h>
#include <string.h>

/* ==== advantages ======================================================== */

void ppo_compute_gae(float *advantages, float *returns, const float *rewards, const float *values,
                     const float *next_values, const uint8_t *terminated, const uint8_t *ended,
                     int T, int N, float gamma, float lambda) {
    for (int n = 0; n < N; n++) {
        float next_adv = 0.0f;
        for (int t = T - 1; t >= 0; t--) {
            const int64_t i = (int64_t)t * N + n;
            const float bootstrap = terminated[i] ? 0.0f : gamma * next_values[i];
            const float delta = rewards[i] + bootstrap - values[i];
            const float carry = ended[i] ? 0.0f : gamma * lambda * next_adv;
            advantages[i] = delta + carry;
            returns[i] = advantages[i] + values[i];
            next_adv = advantages[i];
        }
    }
}

void ppo_compute_gae_sequences(float *advantages, float *returns, const float *rewards,
                               const float *values, const int32_t *len, float gamma, float lambda,
                               int B, int T) {
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
            next_adv = delta + gamma * lambda * next_adv;
            advantages[i] = next_adv;
            returns[i] = next_adv + values[i];
            next_value = values[i];
        }
    }
}

/* ==== losses ============================================================ */

static float clampf(float x, float lo, float hi) {
    return x < lo ? lo : x > hi ? hi : x;
}

float ppo_policy_loss_forward(const float *newlogp, const float *oldlogp, const float *adv, int n,
                              float clip) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float ratio = expf(newlogp[i] - oldlogp[i]);
        const float unclipped = -adv[i] * ratio;
        const float clipped = -adv[i] * clampf(ratio, 1.0f - clip, 1.0f + clip);
        sum += unclipped > clipped ? unclipped : clipped;
    }
    return (float)(sum / n);
}

void ppo_policy_loss_backward(float *dnewlogp, const float *newlogp, const float *oldlogp,
                              const float *adv, int n, float clip, float scale) {
    const float k = scale / (float)n;
    for (int i = 0; i < n; i++) {
        const float ratio = expf(newlogp[i] - oldlogp[i]);
        const float unclipped = -adv[i] * ratio;
        const float clipped = -adv[i] * clampf(ratio, 1.0f - clip, 1.0f + clip);
        /* d(-A r)/dlogp = -A r; the clipped branch is constant in logp. */
        if (unclipped >= clipped)
            dnewlogp[i] += k * unclipped;
    }
}

float ppo_value_loss_forward(const float *values, const float *old_values, const float *returns,
                             int n, float clip, bool clip_vloss) {
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        const float d = values[i] - returns[i];
        float sq = d * d;
        if (clip_vloss) {
            const float vc = old_values[i] + clampf(values[i] - old_values[i], -clip, clip);
            const float dc = vc - returns[i];
            sq = sq > dc * dc ? sq : dc * dc;
        }
        sum += sq;
    }
    return (float)(0.5 * sum / n);
}

void ppo_value_loss_backward(float *dvalues, const float *values, const float *old_values,
                             const float *returns, int n, float clip, bool clip_vloss,
                             float scale) {
    const float k = scale / (float)n;
    for (int i = 0; i < n; i++) {
        const float d = values[i] - returns[i];
        if (clip_vloss) {
            const float vc = old_values[i] + clampf(values[i] - old_values[i], -clip, clip);
            const float dc = vc - returns[i];
            /* The clipped branch wins strictly only when the clamp is active,
             * where it does not depend on values[i]. */
            if (dc * dc > d * d)
                continue;
        }
        dvalues[i] += k * d;
    }
}

/* ==== KL to a reference policy ========================================== */

int ppo_kl_estimator_from_name(const char *name) {
    static const char *const names[] = {
        [PPO_KL_K1] = "k1", [PPO_KL_K3] = "k3", [PPO_KL_ABS] = "abs"};
    for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
        if (strcmp(name, names[i]) == 0)
            return i;
    return -1;
}

void ppo_kl_per_token(float *kl, const float *logp, const float *ref_logp, const uint8_t *mask,
                      int B, int T, ppo_kl_estimator estimator) {
    const int64_t n = (int64_t)B * T;
    for (int64_t i = 0; i < n; i++) {
        if (!mask[i]) {
            kl[i] = 0.0f;
            continue;
        }
        const double d = (double)logp[i] - ref_logp[i]; /* log π - log π_ref */
        switch (estimator) {
            case PPO_KL_K1:
                kl[i] = (float)d;
                break;
            case PPO_KL_K3: /* ρ = π_ref/π = e^{-d}: (ρ - 1) - log ρ = e^{-d} - 1 + d */
                kl[i] = (float)(expm1(-d) + d);
                break;
            case PPO_KL_ABS:
                kl[i] = (float)fabs(d);
                break;
        }
    }
}

void ppo_kl_penalty_rewards(float *rewards, const float *kl, const float *score, const int32_t *len,
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

void ppo_kl_controller_update(ppo_kl_controller *c, double current_kl, int64_t n_steps) {
    if (c->target <= 0.0)
        return;
    double e = current_kl / c->target - 1.0;
    e = e < -0.2 ? -0.2 : e > 0.2 ? 0.2 : e;
    c->beta *= 1.0 + e * (double)n_steps / c->horizon;
}

/* ==== whitening ========================================================= */

void ppo_whiten(float *x, const uint8_t *mask, int64_t n, bool keep_mean, ppo_whiten_eps eps) {
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
    const double back = keep_mean ? mean : 0.0;
    if (eps == PPO_WHITEN_EPS_IN_VAR) {
        const double scale = 1.0 / sqrt(var + 1e-8);
        for (int64_t i = 0; i < n; i++)
            if (mask == NULL || mask[i])
                x[i] = (float)(((double)x[i] - mean) * scale + back);
    } else {
        const double std = sqrt(var);
        for (int64_t i = 0; i < n; i++)
            if (mask == NULL || mask[i]) {
                const double z = ((double)x[i] - mean) / (std + 1e-8);
                x[i] = (float)(keep_mean ? z + mean : z);
            }
    }
}

/* ==== group baselines ==================================================== */

int ppo_group_advantages(float *adv, const float *rewards, int n_groups, int G, bool scale_std) {
    int zero_std = 0;
    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (int64_t)g * G;
        double mean = 0.0, var = 0.0;
        for (int i = 0; i < G; i++)
            mean += r[i];
        mean /= G;
        for (int i = 0; i < G; i++)
            var += ((double)r[i] - mean) * ((double)r[i] - mean);
        const double std = G > 1 ? sqrt(var / (G - 1)) : 0.0;
        bool all_equal = true;
        for (int i = 1; i < G; i++)
            all_equal &= r[i] == r[0];
        zero_std += all_equal;
        for (int i = 0; i < G; i++)
            adv[(int64_t)g * G + i] =
                all_equal ? 0.0f : (float)(((double)r[i] - mean) / (scale_std ? std + 1e-4 : 1.0));
    }
    return zero_std;
}

void ppo_rloo_advantages(float *adv, const float *rewards, int n_groups, int G) {
    for (int g = 0; g < n_groups; g++) {
        const float *r = rewards + (int64_t)g * G;
        double sum = 0.0;
        for (int i = 0; i < G; i++)
            sum += r[i];
        for (int i = 0; i < G; i++)
            adv[(int64_t)g * G + i] = (float)((double)r[i] - (sum - r[i]) / (G - 1));
    }
}

/* ==== token losses with aggregation ====================================== */

void ppo_loss_weights(float *w, const int32_t *len, int B, int T, ppo_loss_agg agg) {
    int64_t tokens = 0;
    for (int b = 0; b < B; b++)
        tokens += len[b];
    for (int b = 0; b < B; b++)
        for (int t = 0; t < T; t++) {
            double v = 0.0;
            if (t < len[b])
                switch (agg) {
                    case PPO_AGG_SEQUENCE:
                        v = 1.0 / ((double)B * len[b]);
                        break;
                    case PPO_AGG_TOKEN:
                        v = 1.0 / (double)tokens;
                        break;
                    case PPO_AGG_CONSTANT:
                        v = 1.0 / ((double)B * T);
                        break;
                    case PPO_AGG_SUM:
                        v = 1.0 / B;
                        break;
                }
            w[(int64_t)b * T + t] = (float)v;
        }
}

void ppo_clipped_token_loss(float *loss, float *dlogp, const float *logp, const float *old_logp,
                            const float *ref_logp, const float *adv, int n, float eps_low,
                            float eps_high, float beta) {
    for (int i = 0; i < n; i++) {
        const float ratio = expf(logp[i] - old_logp[i]);
        const float unclipped = -adv[i] * ratio;
        const float clipped = -adv[i] * clampf(ratio, 1.0f - eps_low, 1.0f + eps_high);
        float l = unclipped > clipped ? unclipped : clipped;
        float d = unclipped >= clipped ? unclipped : 0.0f; /* d(-A r)/dlogp = -A r */
        if (beta != 0.0f) {
            const float e = expf(ref_logp[i] - logp[i]);
            l += beta * (e - (ref_logp[i] - logp[i]) - 1.0f);
            d += beta * (1.0f - e);
        }
        loss[i] = l;
        if (dlogp)
            dlogp[i] = d;
    }
}
