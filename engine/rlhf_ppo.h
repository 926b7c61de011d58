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
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hparams.h"
#include "sink.h"
#include "tokenizer.h"

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

/* ---- the PPO job (engine/ppo_lm.c) ---------------------------------------------- */

typedef struct ppo_lm_config {
    int64_t seed;
    int64_t total_updates;
    int64_t batch_size;      /* prompts per rollout */
    int64_t mini_batch_size; /* rows per gradient step */
    int64_t ppo_epochs;
    double learning_rate;
    bool anneal_lr;
    double max_grad_norm;
    double clip_coef;
    double vf_clip;
    double vf_coef;
    double gamma, lam;
    double kl_coef;
    char kl_estimator[HPARAM_CHOICE_BYTES];
    double target_kl; /* adaptive β target per sequence; 0 = fixed β */
    double kl_horizon;
    bool whiten_rewards;
    int64_t response_length;
    double temperature;
    double missing_eos_penalty;
    int64_t non_finite_patience;
    int64_t sample_interval;
    int64_t checkpoint_interval;           /* updates; 0 = only at the end */
    char value_model[HPARAM_CHOICE_BYTES]; /* reward_model | policy_head */
    int64_t gradient_accumulation_steps;   /* micro-batches per minibatch */
    int64_t lora_r;                        /* 0 = full fine-tuning */
    double lora_alpha;
    char lora_targets[HPARAM_CHOICE_BYTES]; /* all | attn | mlp | c_attn */
} ppo_lm_config;

extern const hparam_table ppo_lm_hparams;

/* One scored rollout, as ppo_lm_inputs.observe_rollout sees it (tests
 * check the scoring through it). seq, positions, seq_mask are (B, S) with
 * S = P + N (left-padded prompt, then the response); logp, ref_logp and
 * values (B, N) belong to response token t, predicted at column P + t - 1;
 * values are the value model's raw outputs there. */
typedef struct ppo_lm_rollout_view {
    int64_t update;
    int B, P, N, S;
    const int32_t *seq, *positions;
    const uint8_t *seq_mask;
    const int32_t *len; /* (B) response tokens incl. EOS */
    const float *logp, *ref_logp, *values;
    const float *score; /* (B) normalised RM score incl. the missing-EOS penalty */
} ppo_lm_rollout_view;

typedef struct ppo_lm_inputs {
    const char *const *prompts;
    int64_t n_prompts;
    const tokenizer *tok;
    const char *policy_checkpoint; /* the SFT model: policy init and frozen reference */
    const char *reward_checkpoint; /* the reward model, with reward_gain / reward_bias */
    /* A periodic or stopped-run checkpoint of this job (same hyperparameters,
     * prompts, SFT and reward models): training continues from it and ends
     * bit-identical to an uninterrupted run at the same thread count. */
    const char *resume_checkpoint;
    /* Optional: called with every rollout once it is scored. */
    void (*observe_rollout)(void *ctx, const ppo_lm_rollout_view *rollout);
    void *observe_ctx;
    /* Data parallelism (dist.h): each rank samples and scores its share of
     * every rollout (with its own sampling seed) and trains on its share of
     * every micro-batch; NULL = one process. */
    const dist_comm *dist;
} ppo_lm_inputs;

typedef struct ppo_lm_result {
    int64_t updates;
    double first_score, last_score; /* mean normalised RM score of the first and last rollout */
    double last_kl;                 /* mean per-sequence KL of the last rollout */
    bool stopped;                   /* the sink asked to stop */
} ppo_lm_result;

int ppo_lm_validate(const ppo_lm_config *cfg, char *err, size_t errlen);
int ppo_lm_train(const ppo_lm_config *cfg, const ppo_lm_inputs *in, const train_sink *sink,
                 ppo_lm_result *result, char *err, size_t errlen);
#endif
