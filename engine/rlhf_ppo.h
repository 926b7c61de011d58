/* rlhf_ppo — the per-token math of PPO for language models (InstructGPT /
 * Ziegler et al. 2019, with the details of Huang et al. 2023, "The N
 * Implementation Details of RLHF with PPO"). The training loop builds on
 * these; each is tested against hand-computed values.
 *
 * Layout: B sequences of T response tokens, row-major (B, T); mask (B, T)
 * is 1 for real response tokens (everything after a sequence's EOS, and its
 * padding, is 0). len[b] = number of real tokens of row b.
 */
#ifndef RLHF_RLHF_PPO_H
#define RLHF_RLHF_PPO_H

#include <stdbool.h>
#include <stdint.h>

typedef enum kl_estimator {
    KL_ESTIMATOR_K1,  /* log π - log π_ref (unbiased, can be negative) */
    KL_ESTIMATOR_K3,  /* (ρ - 1) - log ρ, ρ = π_ref / π (Schulman 2020; ≥ 0, unbiased) */
    KL_ESTIMATOR_ABS, /* |log π - log π_ref| */
} kl_estimator;

/* "k1" | "k3" | "abs", or -1. */
int kl_estimator_from_name(const char *name);

/* kl (B, T) = the per-token estimate from the sampled tokens' log-probs under
 * the policy and the reference; 0 where mask is 0. */
void rlhf_kl_per_token(float *kl, const float *logp, const float *ref_logp, const uint8_t *mask,
                       int B, int T, kl_estimator estimator);

/* The per-token reward of RLHF: r_t = -β · kl_t on every real token, plus
 * score[b] on the last real token (len[b] - 1). Rows with len 0 get nothing.
 * The KL that goes into the reward is the KL that gets reported: callers
 * log mean over rows of Σ_t kl_t from the same array. */
void rlhf_shape_rewards(float *rewards, const float *kl, const float *score, const int32_t *len,
                        float beta, int B, int T);

/* GAE over each row's real tokens (t < len[b]); the value after the last
 * token is 0 (the episode ends). returns = advantages + values. */
void rlhf_compute_gae(float *advantages, float *returns, const float *rewards, const float *values,
                      const int32_t *len, float gamma, float lambda, int B, int T);

/* Masked whitening (TRL's masked_whiten): (x - mean) / sqrt(var + 1e-8) over
 * the masked entries, variance with Bessel's correction; shift_mean false
 * adds the mean back (reward whitening keeps its sign). Unmasked entries are
 * left as they are. */
void rlhf_whiten(float *x, const uint8_t *mask, int64_t n, bool shift_mean);

/* Adaptive KL coefficient (Ziegler et al. 2019, §2.2):
 *   e = clip(kl / target - 1, -0.2, 0.2),  β ← β · (1 + e · n_steps / horizon) */
typedef struct kl_controller {
    double beta;
    double target;  /* 0: fixed β */
    double horizon; /* in samples */
} kl_controller;

void kl_controller_update(kl_controller *c, double current_kl, int64_t n_steps);

#endif
