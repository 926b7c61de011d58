/* ppo — the policy-gradient math every trainer shares: advantages (GAE),
 * the clipped policy and value losses, KL estimators and the KL-penalised
 * reward, whitening, and the adaptive KL coefficient. The control trainer
 * (ppo_control.h, CartPole / Acrobot) and the language-model trainer
 * (ppo_lm.h, RLHF) both call these; group / leave-one-out baselines
 * (GRPO, RLOO) belong here too. Each function is tested against
 * hand-computed values (tests/test_ppo.c, tests/test_rlhf_ppo.c).
 *
 * References, cited by equation below:
 *   [GAE]  Schulman et al. 2016, High-Dimensional Continuous Control Using
 *          Generalized Advantage Estimation.
 *   [PPO]  Schulman et al. 2017, Proximal Policy Optimization Algorithms.
 *   [KL]   Schulman 2020, Approximating KL Divergence (k1, k3).
 *   [Z19]  Ziegler et al. 2019, Fine-Tuning Language Models from Human
 *          Preferences (KL-penalised reward eq. 2, adaptive β §2.2).
 *   [I22]  Huang et al. 2022, The 37 Implementation Details of PPO (CleanRL).
 *   [N23]  Huang et al. 2023, The N Implementation Details of RLHF with PPO
 *          (TRL's masked whitening and per-token reward).
 *
 * Layouts: the control trainer's rollouts are time-major (T, N) — T steps of
 * N environments; a language model's are row-major (B, T) — B sequences of
 * T response tokens, mask (B, T) 1 on real tokens, len[b] = real tokens of
 * row b (everything after the EOS, and padding, is 0).
 */
#ifndef RLHF_PPO_H
#define RLHF_PPO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ==== advantages ======================================================== */

/* GAE ([GAE] eq. 16, with the TD residual of eq. 10) over a time-major
 * (T, N) rollout:
 *   δ_t = r_t + γ (1 - terminated_t) V'_t - V_t
 *   A_t = δ_t + γ λ (1 - ended_t) A_{t+1},   A_T = 0
 *   R_t = A_t + V_t
 * where V'_t (next_values) is the value of the state after step t within the
 * same episode: V(s_{t+1}) normally, V(final observation) for a truncated
 * step ([I22]: a time limit is not a terminal state), ignored for a
 * terminated one; ended_t = terminated_t or truncated_t cuts the recursion at
 * episode boundaries. */
void ppo_compute_gae(float *advantages, float *returns, const float *rewards, const float *values,
                     const float *next_values, const uint8_t *terminated, const uint8_t *ended,
                     int T, int N, float gamma, float lambda);

/* The same recursion over B row-major sequences (B, T) that each end (are
 * terminated) after their len[b] real tokens: V'_t = V_{t+1} within the
 * row, 0 after its last token; A and R are 0 on padding (t >= len[b]). */
void ppo_compute_gae_sequences(float *advantages, float *returns, const float *rewards,
                               const float *values, const int32_t *len, float gamma, float lambda,
                               int B, int T);

/* ==== losses ============================================================ */

/* Clipped surrogate ([PPO] eq. 7) as a loss to minimise, averaged over n:
 *   L = mean_i max(-A_i r_i, -A_i clip(r_i, 1-ε, 1+ε)),  r_i = exp(newlogp_i - oldlogp_i)
 * Returns L. */
float ppo_policy_loss_forward(const float *newlogp, const float *oldlogp, const float *adv, int n,
                              float clip);
/* dnewlogp_i += scale · ∂L/∂newlogp_i: -A_i r_i / n where the unclipped
 * term is the max, 0 where the clipped term is strictly larger (the ratio
 * left the trust region in the direction the advantage rewards). */
void ppo_policy_loss_backward(float *dnewlogp, const float *newlogp, const float *oldlogp,
                              const float *adv, int n, float clip, float scale);

/* Value loss 0.5 · mean (v - R)², or with clipping (OpenAI baselines' ppo2,
 * [I22] detail 9) 0.5 · mean max((v - R)², (v_old + clip(v - v_old, ±ε) - R)²). */
float ppo_value_loss_forward(const float *values, const float *old_values, const float *returns,
                             int n, float clip, bool clip_vloss);
void ppo_value_loss_backward(float *dvalues, const float *values, const float *old_values,
                             const float *returns, int n, float clip, bool clip_vloss, float scale);

/* ==== KL to a reference policy ========================================== */

typedef enum ppo_kl_estimator {
    PPO_KL_K1,  /* log π - log π_ref ([KL] k1: unbiased, can be negative) */
    PPO_KL_K3,  /* (ρ - 1) - log ρ, ρ = π_ref / π ([KL] k3: unbiased, ≥ 0) */
    PPO_KL_ABS, /* |log π - log π_ref| */
} ppo_kl_estimator;

/* "k1" | "k3" | "abs", or -1. */
int ppo_kl_estimator_from_name(const char *name);

/* kl (B, T) = the per-token estimate of KL(π || π_ref) from the sampled
 * tokens' log-probs under the policy and the reference; 0 where mask is 0. */
void ppo_kl_per_token(float *kl, const float *logp, const float *ref_logp, const uint8_t *mask,
                      int B, int T, ppo_kl_estimator estimator);

/* The KL-penalised per-token reward of RLHF ([Z19] eq. 2, per token as
 * [N23]): r_t = -β · kl_t on every real token, plus score[b] on the last
 * real token (len[b] - 1). Rows with len 0 get nothing. The KL that goes
 * into the reward is the KL that gets reported: callers log mean over rows
 * of Σ_t kl_t from the same array. */
void ppo_kl_penalty_rewards(float *rewards, const float *kl, const float *score, const int32_t *len,
                            float beta, int B, int T);

/* Adaptive KL coefficient ([Z19] §2.2):
 *   e = clip(kl / target - 1, -0.2, 0.2),  β ← β · (1 + e · n_steps / horizon) */
typedef struct ppo_kl_controller {
    double beta;
    double target;  /* 0: fixed β */
    double horizon; /* in samples */
} ppo_kl_controller;

void ppo_kl_controller_update(ppo_kl_controller *c, double current_kl, int64_t n_steps);

/* ==== whitening ========================================================= */

/* Where whitening puts its ε = 1e-8 (the two conventions give different
 * bits, and each trainer is tested bit-for-bit against its own). */
typedef enum ppo_whiten_eps {
    PPO_WHITEN_EPS_IN_VAR, /* (x - μ) / sqrt(σ² + ε): TRL's masked_whiten [N23] */
    PPO_WHITEN_EPS_ON_STD, /* (x - μ) / (σ + ε): CleanRL's advantage normalisation [I22] */
} ppo_whiten_eps;

/* Whitens the entries of x[0..n) where mask is 1 (mask NULL = all): μ and σ
 * over them, σ² with Bessel's correction (as torch.var); keep_mean adds μ
 * back (reward whitening keeps its sign). Fewer than two entries: unchanged.
 * Unmasked entries are left as they are. */
void ppo_whiten(float *x, const uint8_t *mask, int64_t n, bool keep_mean, ppo_whiten_eps eps);

/* ==== group baselines (GRPO, RLOO) ====================================== */
/* rewards (n_groups · G) hold G completions of each prompt, group by group.
 *   [GRPO] Shao et al. 2024, DeepSeekMath §4.1.2 (outcome supervision):
 *          A_i = (r_i - mean_g) / (std_g + 1e-4), std with Bessel's
 *          correction (torch.std, as TRL); scale_std false gives Dr. GRPO's
 *          A_i = r_i - mean_g (Liu et al. 2025, §3.2).
 *   [RLOO] Ahmadian et al. 2024, eq. 5 (Kool et al. 2019):
 *          A_i = r_i - (1/(G-1)) Σ_{j≠i} r_j  (G ≥ 2).
 * ppo_group_advantages returns how many groups have all rewards equal
 * (their advantages are 0): TRL's frac_reward_zero_std numerator. */
int ppo_group_advantages(float *adv, const float *rewards, int n_groups, int G, bool scale_std);
void ppo_rloo_advantages(float *adv, const float *rewards, int n_groups, int G);

/* ==== token losses with aggregation (GRPO) ================================ */

/* How per-token losses l_{b,t} of B sequences of len[b] tokens (T columns)
 * become one number, L = Σ_b Σ_{t<len_b} w_{b,t} l_{b,t}:
 *   PPO_AGG_SEQUENCE  w = 1 / (B · len_b)      mean over each sequence's tokens,
 *                                              then over sequences (GRPO paper, TRL "grpo")
 *   PPO_AGG_TOKEN     w = 1 / Σ_b len_b        mean over all tokens (DAPO, TRL "bnpo")
 *   PPO_AGG_CONSTANT  w = 1 / (B · T)          a constant normaliser, T the most tokens
 *                                              a completion may have (Dr. GRPO, TRL "dr_grpo")
 *   PPO_AGG_SUM       w = 1 / B                the sequence's summed log-prob, mean over
 *                                              sequences: REINFORCE on sequences (RLOO) */
typedef enum ppo_loss_agg {
    PPO_AGG_SEQUENCE,
    PPO_AGG_TOKEN,
    PPO_AGG_CONSTANT,
    PPO_AGG_SUM,
} ppo_loss_agg;

/* w (B, T) as above; 0 on padding (t ≥ len[b]) and for rows with len 0. */
void ppo_loss_weights(float *w, const int32_t *len, int B, int T, ppo_loss_agg agg);

/* The GRPO per-token loss, with DAPO's separate clip bounds and the k3 KL
 * to the reference ([GRPO] eq. 3; [KL] k3):
 *   l = max(-A r, -A clip(r, 1 - ε_low, 1 + ε_high)) + β (e^{ref - logp} - (ref - logp) - 1),
 *   r = e^{logp - old}
 * over n tokens; writes l and, when dlogp is not NULL, ∂l/∂logp (0 in the
 * clipped branch, as ppo_policy_loss_backward). */
void ppo_clipped_token_loss(float *loss, float *dlogp, const float *logp, const float *old_logp,
                            const float *ref_logp, const float *adv, int n, float eps_low,
                            float eps_high, float beta);

#endif
