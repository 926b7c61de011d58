/* ppo_control — PPO (Schulman et al. 2017) on classic-control tasks, with the
 * implementation details CleanRL documents (Huang et al. 2022, "The 37
 * Implementation Details of PPO"): vectorised envs, GAE, per-minibatch
 * advantage normalisation, clipped surrogate and value losses, entropy
 * bonus, global gradient clipping, Adam with eps 1e-5, linear LR annealing,
 * orthogonal init, optional target-KL early stop.
 *
 * Truncation (TimeLimit) is not termination: a truncated step bootstraps
 * from V(final observation) (Pardo et al. 2018), a terminated one from 0.
 * The math (GAE, the clipped losses, advantage normalisation) is ppo.h's.
 *
 * algorithm "a2c" is the synchronous advantage actor-critic baseline (Mnih
 * et al. 2016, as Stable-Baselines3's A2C): one gradient step per rollout
 * on the whole batch, policy loss -mean(A · log pi(a|s)), value loss
 * 0.5 · mean((V - R)^2) unclipped, entropy bonus; update_epochs,
 * num_minibatches, clip_coef, clip_vloss and target_kl do not apply. The
 * optimizer stays Adam (SB3 uses RMSprop) so a study compares the
 * objectives, not the optimizers. Pair it with A2C's own settings (SB3:
 * num_steps 5, learning_rate 7e-4, gae_lambda 1, ent_coef 0, norm_adv off).
 *
 * With evaluations (eval_interval > 0) and keep_best, every greedy
 * evaluation that beats the best so far emits the policy as a weights-only
 * checkpoint (metadata checkpoint_role "best", eval_return) and a
 * "best_policy" event, so the best-evaluated policy survives a run whose
 * greedy return drifts down by the end.
 */
#ifndef RLHF_PPO_CONTROL_H
#define RLHF_PPO_CONTROL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hparams.h"
#include "sink.h"

typedef struct ppo_control_config {
    char env[HPARAM_CHOICE_BYTES];
    char algorithm[HPARAM_CHOICE_BYTES]; /* "ppo" | "a2c" */
    int64_t seed;
    int64_t total_steps;
    int64_t num_envs;
    int64_t num_steps;
    double learning_rate;
    bool anneal_lr;
    double gamma;
    double gae_lambda;
    int64_t num_minibatches;
    int64_t update_epochs;
    bool norm_adv;
    double clip_coef;
    bool clip_vloss;
    double ent_coef;
    double vf_coef;
    double max_grad_norm;
    double target_kl;
    int64_t hidden_size;
    int64_t hidden_layers;
    char activation[HPARAM_CHOICE_BYTES];
    bool shared_trunk;
    double adam_eps;
    int64_t eval_interval;
    int64_t eval_episodes;
    double target_return;
    int64_t checkpoint_interval;
    bool keep_best;
} ppo_control_config;

extern const hparam_table ppo_control_hparams;

typedef struct ppo_control_result {
    int64_t global_step;     /* env steps taken */
    int64_t updates;         /* PPO updates done */
    double episodic_return;  /* mean of the last 100 training episodes */
    double eval_return;      /* last complete greedy evaluation, NAN if none */
    double best_eval_return; /* the best complete greedy evaluation, NAN if none */
    int64_t best_step;       /* global_step of that evaluation */
    bool solved;             /* target_return reached by a greedy evaluation */
    int64_t solved_step;     /* global_step when it was */
    double wall_s;           /* seconds from start to the end (or to solving) */
    bool stopped;            /* the sink asked to stop */
} ppo_control_result;

/* Checks what the table's per-key ranges cannot: the env exists,
 * num_minibatches divides the rollout, target_return has evaluations. */
int ppo_control_validate(const ppo_control_config *cfg, char *err, size_t errlen);

/* Trains until total_steps, a solve (target_return), or the sink asks to
 * stop. Returns 0, or -1 with a message in err. result may be NULL. */
int ppo_control_train(const ppo_control_config *cfg, const train_sink *sink,
                      ppo_control_result *result, char *err, size_t errlen);

/* The same, continuing from resume_checkpoint (a path; NULL = from the
 * start): a checkpoint with training state that this job wrote with the
 * same hyperparameters, every checkpoint_interval updates or when asked to
 * stop. It carries the weights, Adam's moments and step, every RNG stream,
 * each environment's physics state, RNG, episode step count, return so far
 * and current observation, the recent-episode window and the counters, so
 * the run ends bit-identical to an uninterrupted one at the same thread
 * count. The final checkpoint of a finished run holds the weights alone. */
int ppo_control_train_resume(const ppo_control_config *cfg, const char *resume_checkpoint,
                             const train_sink *sink, ppo_control_result *result, char *err,
                             size_t errlen);

#endif
