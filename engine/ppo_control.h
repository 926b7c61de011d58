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
} ppo_control_config;

extern const hparam_table ppo_control_hparams;

typedef struct ppo_control_result {
    int64_t global_step;    /* env steps taken */
    int64_t updates;        /* PPO updates done */
    double episodic_return; /* mean of the last 100 training episodes */
    double eval_return;     /* last complete greedy evaluation, NAN if none */
    bool solved;            /* target_return reached by a greedy evaluation */
    int64_t solved_step;    /* global_step when it was */
    double wall_s;          /* seconds from start to the end (or to solving) */
    bool stopped;           /* the sink asked to stop */
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
