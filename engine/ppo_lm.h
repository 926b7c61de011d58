/* ppo_lm — PPO for language models against a reward model, with a KL
 * penalty to the SFT model (Ziegler et al. 2019; Ouyang et al. 2022; the
 * details of Huang et al. 2023 and TRL's PPOTrainer).
 *
 * One update: sample responses to a batch of prompts from the policy
 * (temperature T, stop at EOS, fixed maximum length); score prompt +
 * response with the reward model (normalised by its stored gain/bias, minus
 * a penalty when no EOS came); per-token log-probs under the policy and the
 * frozen SFT reference; values from the value model; per-token rewards
 * -β·KL plus the score on the last token; GAE with γ, λ; advantage
 * whitening (and optional reward whitening); then ppo_epochs passes of
 * shuffled minibatches of the clipped surrogate plus the clipped value loss,
 * each minibatch optionally split into micro-batches whose gradients add up
 * to one optimizer step. Log-probs everywhere are of logits / T, so sampling
 * and training agree on the distribution.
 *
 * The value model (hyperparameter value_model) is either a separate GPT-2
 * with a scalar head initialised from the reward model, head included, and
 * trained by its own Adam (InstructGPT, TRL), or a scalar head on the
 * policy's trunk. Separate models are clipped separately (max_grad_norm
 * each): the value loss then cannot shrink the policy's step.
 *
 * Structure: load_models / prepare_prompts / alloc_buffers set up a
 * ppo_job; each update is next_prompts → generate_rollout → score_rollout →
 * compute_advantages → train_on_rollout → report_update; emit_checkpoint and
 * restore_state write and read the resumable state (ppo_state).
 *
 * Resume: periodic checkpoints (checkpoint_interval) and the one written when
 * the sink asks to stop carry, beside the policy's weights, everything the
 * next update reads: Adam moments and step, the value model's weights and
 * moments, β, every RNG stream, the prompt order (as the RNG state that
 * shuffled it) and cursor, the update and non-finite counters. The final
 * checkpoint of a finished run is the policy's weights alone.
 *
 * Data parallelism (in->dist, dist.h): every rank holds the models and the
 * whole rollout. Each samples and scores its shard of the B rows — with its
 * own sampling seed, seed + rank · 2654435761 — and the shards are gathered,
 * so advantages are computed on the whole batch alike everywhere; each
 * micro-batch is split across ranks, weighted by token share, and the
 * gradients all-reduced before every optimizer step. Only rank 0 reports
 * and checkpoints; a checkpoint carries every rank's sampling RNG, so it
 * resumes on the same number of ranks.
 *
 * Non-finite values: a rollout with a non-finite log-prob, value or score
 * skips the update before any training; a non-finite loss or gradient norm
 * ends the update at that optimizer step (steps before it stay applied).
 * Either is reported as a "non_finite" event; non_finite_patience of them
 * in a row fail the job. No checkpoint is ever written with non-finite
 * weights.
 */
#ifndef RLHF_PPO_LM_H
#define RLHF_PPO_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hparams.h"
#include "sink.h"
#include "tokenizer.h"

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
    char lora_targets[HPARAM_CHOICE_BYTES];    /* all | attn | mlp | c_attn */
    int64_t rollout_samples, rollout_interval; /* lm_policy.h: rollouts kept */
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
    /* (n_prompts) which prompts a chat template rendered: tokenized as
     * apply_chat_template does (tokenizer_encode_input); NULL: none. */
    const bool *prompts_rendered;
    /* The frozen KL reference when it is not the policy's init (an online
     * loop trains from its last policy, penalised towards the original SFT
     * model); NULL: policy_checkpoint. Not with LoRA (the reference is the
     * base with its adapters off). */
    const char *ref_checkpoint;
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
