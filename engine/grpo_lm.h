/* grpo_lm — group-sampled policy gradients for language models: GRPO
 * (Shao et al. 2024, with DAPO's clip-higher and Dr. GRPO's options) and
 * RLOO (Ahmadian et al. 2024). No value model: G completions of each prompt
 * are each other's baseline.
 *
 * One step: prompts_per_step prompts of the shuffled stream, each sampled
 * num_generations (G) times from the policy at temperature T (stop at EOS,
 * at most max_completion_length tokens); each completion scored by the
 * reward: grader_weight · grader + reward_model_weight · reward model (the
 * grader is JSON in hyperparameter `grader`, engine/grader.h, reading the
 * prompt row as item.prompt and item.answer; the reward model is a reward
 * job's checkpoint, its score normalised by the stored gain and bias; either
 * may be absent, not both). Log-probs everywhere are of logits / T.
 *
 *   GRPO  A_i = (r_i - mean_g) / (std_g + 1e-4) within the prompt's group
 *         (scale_rewards false: r_i - mean_g); num_iterations optimizer
 *         steps on the batch, each minimising
 *           L = Σ_b Σ_t w_{b,t} [max(-A_b ρ, -A_b clip(ρ, 1-ε_low, 1+ε_high))
 *                                + β k3_{b,t}],   ρ = π/π_old
 *         with w from loss_aggregation (ppo.h ppo_loss_weights):
 *           sequence  w = 1 / (B · |o_b|)   (the GRPO paper)
 *           token     w = 1 / Σ_b |o_b|     (DAPO)
 *           constant  w = 1 / (B · T_max)   (Dr. GRPO; T_max = max_completion_length)
 *         B = prompts_per_step · G completions, |o_b| the tokens of
 *         completion b (EOS included). β defaults to 0, TRL's current default
 *         (no reference model is then needed; none is loaded without LoRA).
 *         Groups whose rewards are all equal have A = 0; their share is
 *         frac_reward_zero_std, and skip_zero_std drops them from the loss
 *         (and from the normalisers) altogether.
 *   RLOO  r_i = score_i - β Σ_t (log π - log π_ref) (the KL in the reward),
 *         A_i = r_i - mean of the group's other G - 1 rewards, one
 *         REINFORCE step per batch on the sequences' summed log-probs:
 *         L = -(1/B) Σ_b A_b Σ_t log π(o_{b,t}).
 *
 * Metrics (TRL's names): reward, reward_std (mean within-group std),
 * frac_reward_zero_std, rewards/<grader part>/mean, rewards/reward_model/mean,
 * kl (mean per-token k3 when β > 0 or RLOO), clip_ratio/low_mean,
 * clip_ratio/high_mean, clip_ratio/region_mean, completions/mean_length,
 * completions/min_length, completions/max_length, completions/clipped_ratio
 * (no EOS), loss, lr, grad_norm; eval/reward, the mean reward of one
 * completion per held-out prompt sampled at temperature T from the same RNG
 * stream every time (so two evaluations differ by the policy alone), at the
 * start, every eval_interval steps and at the end.
 *
 * Sampling: each step draws one seed from the sample stream; group g of the
 * step samples its G completions from stream g of that seed. A group's
 * completions therefore do not depend on which process samples it, which
 * is what lets data parallelism (in->dist) split the groups: rank r samples,
 * scores (old, reference and reward-model log-probs, graders) and trains on
 * its contiguous shard of the groups (dist_shard over prompts_per_step);
 * the samples, rewards and log-probs are gathered so that every rank
 * computes the advantages and metrics of the whole batch, and the gradients
 * and loss statistics are summed before the one Adam step all replicas
 * take. N ranks give one rank's run up to the order of float sums; the
 * held-out evaluation runs on rank 0 alone (its RNG stream is one sequence).
 *
 * Resume as ppo_lm: periodic checkpoints and a stopped run's carry Adam's
 * moments and step, the RNG streams, the prompt order and cursor; the run
 * then ends bit-identical to an uninterrupted one at the same thread count.
 */
#ifndef RLHF_GRPO_LM_H
#define RLHF_GRPO_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hparams.h"
#include "sink.h"
#include "tokenizer.h"

typedef enum grpo_algorithm { GRPO_ALGORITHM_GRPO, GRPO_ALGORITHM_RLOO } grpo_algorithm;

typedef struct grpo_lm_config {
    int64_t seed;
    int64_t total_steps;
    int64_t prompts_per_step;
    int64_t num_generations; /* G (RLOO's k) */
    int64_t num_iterations;  /* GRPO: optimizer steps per batch; RLOO: 1 */
    double learning_rate;
    bool anneal_lr;
    double max_grad_norm;
    double epsilon_low, epsilon_high; /* GRPO */
    double beta;
    char loss_aggregation[HPARAM_CHOICE_BYTES]; /* GRPO: sequence | token | constant */
    bool scale_rewards;                         /* GRPO */
    bool skip_zero_std;                         /* GRPO */
    int64_t max_completion_length;
    double temperature;
    char grader[HPARAM_JSON_BYTES];
    double grader_weight, reward_model_weight;
    int64_t eval_interval;
    int64_t checkpoint_interval;
    int64_t rollout_samples, rollout_interval; /* lm_policy.h: rollouts kept */
    int64_t lora_r;
    double lora_alpha;
    char lora_targets[HPARAM_CHOICE_BYTES];
} grpo_lm_config;

extern const hparam_table grpo_lm_hparams; /* job type grpo */
extern const hparam_table rloo_lm_hparams; /* job type rloo: the fields RLOO reads */

typedef struct grpo_lm_inputs {
    grpo_algorithm algorithm;
    const char *const *prompts;
    const char *const *answers; /* per prompt, item.answer ("" or NULL = none) */
    int64_t n_prompts;
    const char *const *eval_prompts; /* held-out, for eval/reward; may be NULL */
    const char *const *eval_answers;
    int64_t n_eval;
    const tokenizer *tok;
    const char *policy_checkpoint; /* the SFT model: policy init and reference */
    const char *reward_checkpoint; /* optional reward model */
    const char *resume_checkpoint;
    /* (n_prompts, then n_eval) which prompts a chat template rendered:
     * tokenized as apply_chat_template does (tokenizer_encode_input); NULL:
     * none. */
    const bool *prompts_rendered;
    const char *ref_checkpoint; /* the reference when not the init (ppo_lm.h); NULL: none */
    /* Data parallel (dist.h): each rank samples, scores and trains on its
     * shard of the groups; NULL = one process. */
    const dist_comm *dist;
} grpo_lm_inputs;

typedef struct grpo_lm_result {
    int64_t steps;
    double first_eval, last_eval; /* eval/reward; NAN without held-out prompts */
    double first_reward, last_reward;
    bool stopped;
} grpo_lm_result;

/* Ranges the table cannot express, and the grader (parsed; its errors name
 * the field under hyperparameters.grader). */
int grpo_lm_validate(const grpo_lm_config *cfg, char *err, size_t errlen);
int rloo_lm_validate(const grpo_lm_config *cfg, char *err, size_t errlen);
int grpo_lm_train(const grpo_lm_config *cfg, const grpo_lm_inputs *in, const train_sink *sink,
                  grpo_lm_result *result, char *err, size_t errlen);

#endif
