#include "ppo_control.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "actor_critic.h"
#include "env.h"
#include "nn.h"
#include "optim.h"
#include "ppo.h"
#include "rng.h"
#include "safetensors.h"
#include "train_state.h"

/* ==== hyperparameters ======================================================== */

static const char *const env_choices[] = {"CartPole-v1", "Acrobot-v1", NULL};
static const char *const activation_choices[] = {"tanh", "relu", "gelu", NULL};
static const char *const algorithm_choices[] = {"ppo", "a2c", NULL};

#define F(name) offsetof(ppo_control_config, name)
static const hparam_def ppo_control_defs[] = {
    {"env", HPARAM_CHOICE, F(env), 0, 0, 0, env_choices, "Environment (Gymnasium id)."},
    {"algorithm", HPARAM_CHOICE, F(algorithm), 0, 0, 0, algorithm_choices,
     "ppo, or a2c: one unclipped actor-critic step per rollout on the whole batch (update_epochs, "
     "num_minibatches, clip_coef, clip_vloss and target_kl do not apply)."},
    {"seed", HPARAM_INT, F(seed), 1, 0, 4294967295.0, NULL,
     "Seeds environments, initialisation, sampling and shuffles."},
    {"total_steps", HPARAM_INT, F(total_steps), 100000, 1, 1e12, NULL,
     "Environment steps to train for (summed over the vector of envs)."},
    {"num_envs", HPARAM_INT, F(num_envs), 4, 1, 4096, NULL, "Parallel environments (N)."},
    {"num_steps", HPARAM_INT, F(num_steps), 128, 1, 100000, NULL,
     "Steps per environment per rollout (T); a rollout is N x T transitions."},
    {"learning_rate", HPARAM_FLOAT, F(learning_rate), 2.5e-4, 0, 1, NULL, "Adam step size."},
    {"anneal_lr", HPARAM_BOOL, F(anneal_lr), 1, 0, 0, NULL,
     "Anneal the learning rate linearly to 0 over the run."},
    {"gamma", HPARAM_FLOAT, F(gamma), 0.99, 0, 1, NULL, "Discount factor."},
    {"gae_lambda", HPARAM_FLOAT, F(gae_lambda), 0.95, 0, 1, NULL, "GAE lambda."},
    {"num_minibatches", HPARAM_INT, F(num_minibatches), 4, 1, 1 << 20, NULL,
     "Minibatches per epoch; must divide N x T."},
    {"update_epochs", HPARAM_INT, F(update_epochs), 4, 1, 1000, NULL, "Passes over each rollout."},
    {"norm_adv", HPARAM_BOOL, F(norm_adv), 1, 0, 0, NULL,
     "Normalise advantages per minibatch (mean 0, std 1)."},
    {"clip_coef", HPARAM_FLOAT, F(clip_coef), 0.2, 0, 10, NULL,
     "Surrogate clipping epsilon (PPO eq. 7); also clips the value loss."},
    {"clip_vloss", HPARAM_BOOL, F(clip_vloss), 1, 0, 0, NULL, "Use the clipped value loss."},
    {"ent_coef", HPARAM_FLOAT, F(ent_coef), 0.01, 0, 10, NULL, "Entropy bonus coefficient."},
    {"vf_coef", HPARAM_FLOAT, F(vf_coef), 0.5, 0, 100, NULL, "Value loss coefficient."},
    {"max_grad_norm", HPARAM_FLOAT, F(max_grad_norm), 0.5, 0, 1e6, NULL,
     "Clip the global gradient norm to this."},
    {"target_kl", HPARAM_FLOAT, F(target_kl), 0, 0, 10, NULL,
     "Stop an update's epochs early when approx_kl exceeds this (0 = never)."},
    {"hidden_size", HPARAM_INT, F(hidden_size), 64, 1, 4096, NULL, "Units per hidden layer."},
    {"hidden_layers", HPARAM_INT, F(hidden_layers), 2, 1, AC_MAX_HIDDEN_LAYERS, NULL,
     "Hidden layers in each trunk."},
    {"activation", HPARAM_CHOICE, F(activation), 0, 0, 0, activation_choices, "Hidden activation."},
    {"shared_trunk", HPARAM_BOOL, F(shared_trunk), 0, 0, 0, NULL,
     "One trunk with actor and critic heads instead of two separate MLPs."},
    {"adam_eps", HPARAM_FLOAT, F(adam_eps), 1e-5, 1e-12, 1, NULL,
     "Adam epsilon (added to the bias-corrected root, as PyTorch)."},
    {"eval_interval", HPARAM_INT, F(eval_interval), 0, 0, 1000000, NULL,
     "Greedy evaluation every this many updates (0 = never)."},
    {"eval_episodes", HPARAM_INT, F(eval_episodes), 100, 1, 10000, NULL,
     "Episodes per greedy evaluation, run in parallel."},
    {"target_return", HPARAM_FLOAT, F(target_return), 0, -1e9, 1e9, NULL,
     "Stop once a greedy evaluation's mean return reaches this (0 = off; needs eval_interval)."},
    {"checkpoint_interval", HPARAM_INT, F(checkpoint_interval), 0, 0, 1e9, NULL,
     "Every this many updates, a checkpoint with the training state (optimizer, RNGs, "
     "environments) that can resume the run; 0 = only at the end. A stopped run's checkpoint "
     "can resume too."},
    {"keep_best", HPARAM_BOOL, F(keep_best), 1, 0, 0, NULL,
     "With evaluations: each greedy evaluation that beats the best so far emits the policy as a "
     "weights-only checkpoint (metadata checkpoint_role best) and a best_policy event."},
};
#undef F

const hparam_table ppo_control_hparams = {
    ppo_control_defs, (int)(sizeof ppo_control_defs / sizeof ppo_control_defs[0]),
    sizeof(ppo_control_config)};

/* ==== training state ============================================================ */

#define EPISODE_WINDOW 100

typedef struct ppo_run {
    const ppo_control_config *cfg;
    const env_spec *spec;
    int N, T, batch, minibatch, obs_dim, n_actions;
    ac_model model;
    ac_acts acts;
    vec_env venv;
    rng_state policy_rng, shuffle_rng;
    /* one allocation, carved below */
    void *memory;
    float *params, *grads, *adam_m, *adam_v; /* (P) each */
    /* rollout, time-major (T, N) */
    float *obs;                                                              /* (T, N, obs_dim) */
    int32_t *actions;                                                        /* (T, N) */
    float *logprobs, *rewards, *values, *next_values, *advantages, *returns; /* (T, N) */
    uint8_t *terminated, *ended;                                             /* (T, N) */
    /* one minibatch, gathered contiguously */
    int32_t *perm;                                              /* (batch) */
    float *mb_obs;                                              /* (M, obs_dim) */
    int32_t *mb_actions;                                        /* (M) */
    float *mb_oldlogp, *mb_adv, *mb_returns, *mb_oldvalues;     /* (M) */
    float *mb_newlogp, *mb_entropy, *mb_dnewlogp, *mb_dentropy; /* (M) */
    float *mb_dlogp;                                            /* (M, A) */
    float *trunc_obs;     /* (N, obs_dim) final observations of truncated episodes */
    int32_t *trunc_index; /* (N) */
    /* recent training episodes */
    double episode_returns[EPISODE_WINDOW];
    double episode_lengths[EPISODE_WINDOW];
    int64_t episodes;
    int64_t global_step;
    int64_t adam_t;     /* optimizer steps so far (Adam's t) */
    int64_t update;     /* PPO updates done */
    int64_t evals;      /* greedy evaluations done (each seeds its envs by its index) */
    double eval_return; /* the last complete evaluation's mean return, NAN if none */
    double best_return; /* the best complete evaluation's, NAN if none */
    int64_t best_step;  /* global_step of that evaluation */
    bool a2c;           /* algorithm a2c: one step on the whole batch, unclipped */
} ppo_run;

/* Carves aligned pieces out of one block; with base NULL it only measures. */
typedef struct carver {
    char *base;
    size_t used;
} carver;

static void *carve(carver *c, size_t count, size_t elem) {
    size_t offset = (c->used + 63) & ~(size_t)63;
    c->used = offset + count * elem;
    return c->base ? c->base + offset : NULL;
}

static void layout(ppo_run *run, carver *c) {
    const size_t P = (size_t)run->model.n_params, TN = (size_t)run->batch,
                 M = (size_t)run->minibatch, D = (size_t)run->obs_dim, A = (size_t)run->n_actions,
                 N = (size_t)run->N;
    run->params = carve(c, P, sizeof(float));
    run->grads = carve(c, P, sizeof(float));
    run->adam_m = carve(c, P, sizeof(float));
    run->adam_v = carve(c, P, sizeof(float));
    run->obs = carve(c, TN * D, sizeof(float));
    run->actions = carve(c, TN, sizeof(int32_t));
    run->logprobs = carve(c, TN, sizeof(float));
    run->rewards = carve(c, TN, sizeof(float));
    run->values = carve(c, TN, sizeof(float));
    run->next_values = carve(c, TN, sizeof(float));
    run->advantages = carve(c, TN, sizeof(float));
    run->returns = carve(c, TN, sizeof(float));
    run->terminated = carve(c, TN, 1);
    run->ended = carve(c, TN, 1);
    run->perm = carve(c, TN, sizeof(int32_t));
    run->mb_obs = carve(c, M * D, sizeof(float));
    run->mb_actions = carve(c, M, sizeof(int32_t));
    run->mb_oldlogp = carve(c, M, sizeof(float));
    run->mb_adv = carve(c, M, sizeof(float));
    run->mb_returns = carve(c, M, sizeof(float));
    run->mb_oldvalues = carve(c, M, sizeof(float));
    run->mb_newlogp = carve(c, M, sizeof(float));
    run->mb_entropy = carve(c, M, sizeof(float));
    run->mb_dnewlogp = carve(c, M, sizeof(float));
    run->mb_dentropy = carve(c, M, sizeof(float));
    run->mb_dlogp = carve(c, M * A, sizeof(float));
    run->trunc_obs = carve(c, N * D, sizeof(float));
    run->trunc_index = carve(c, N, sizeof(int32_t));
}

int ppo_control_validate(const ppo_control_config *cfg, char *err, size_t errlen) {
    if (env_find(cfg->env) == NULL) {
        snprintf(err, errlen, "hyperparameter 'env': unknown environment '%s'", cfg->env);
        return -1;
    }
    const int64_t batch = cfg->num_envs * cfg->num_steps;
    if (batch > (int64_t)1 << 28) {
        snprintf(err, errlen,
                 "hyperparameter 'num_steps': num_envs x num_steps = %lld is too large",
                 (long long)batch);
        return -1;
    }
    const bool a2c = strcmp(cfg->algorithm, "a2c") == 0;
    if (a2c && batch < 2) {
        snprintf(err, errlen, "hyperparameter 'num_steps': a2c needs num_envs x num_steps >= 2");
        return -1;
    }
    if (!a2c && (batch % cfg->num_minibatches != 0 || batch / cfg->num_minibatches < 2)) {
        snprintf(err, errlen,
                 "hyperparameter 'num_minibatches': %lld must divide num_envs x num_steps = %lld "
                 "into minibatches of at least 2",
                 (long long)cfg->num_minibatches, (long long)batch);
        return -1;
    }
    if (cfg->target_return != 0.0 && cfg->eval_interval == 0) {
        snprintf(err, errlen, "hyperparameter 'target_return' needs eval_interval > 0");
        return -1;
    }
    return 0;
}

static void run_free(ppo_run *run) {
    ac_acts_free(&run->acts);
    vec_env_free(&run->venv);
    free(run->memory);
}

static int run_init(ppo_run *run, const ppo_control_config *cfg, char *err, size_t errlen) {
    memset(run, 0, sizeof *run);
    run->cfg = cfg;
    run->spec = env_find(cfg->env);
    run->N = (int)cfg->num_envs;
    run->T = (int)cfg->num_steps;
    run->batch = run->N * run->T;
    run->a2c = strcmp(cfg->algorithm, "a2c") == 0;
    run->minibatch = run->a2c ? run->batch : run->batch / (int)cfg->num_minibatches;
    run->obs_dim = run->spec->obs_dim;
    run->n_actions = run->spec->n_actions;
    ac_model_init(&run->model, run->obs_dim, run->n_actions, (int)cfg->hidden_size,
                  (int)cfg->hidden_layers, cfg->shared_trunk,
                  (activation_kind)activation_from_name(cfg->activation));
    carver measure = {NULL, 0};
    layout(run, &measure);
    run->memory = calloc(1, measure.used + 64);
    int max_batch = run->minibatch > run->N ? run->minibatch : run->N;
    if (cfg->eval_interval > 0 && cfg->eval_episodes > max_batch)
        max_batch = (int)cfg->eval_episodes;
    if (run->memory == NULL || ac_acts_init(&run->acts, &run->model, max_batch) != 0 ||
        vec_env_init(&run->venv, run->spec, run->N, (uint64_t)cfg->seed) != 0) {
        snprintf(err, errlen, "out of memory allocating the PPO run");
        run_free(run);
        return -1;
    }
    carver c = {(char *)(((uintptr_t)run->memory + 63) & ~(uintptr_t)63), 0};
    layout(run, &c);
    /* Streams far above the env indices (0..N-1) that vec_env uses. */
    rng_state init_rng;
    rng_seed(&init_rng, (uint64_t)cfg->seed, 0xA0000001u);
    rng_seed(&run->policy_rng, (uint64_t)cfg->seed, 0xA0000002u);
    rng_seed(&run->shuffle_rng, (uint64_t)cfg->seed, 0xA0000003u);
    ac_model_init_params(&run->model, run->params, &init_rng);
    run->eval_return = run->best_return = NAN;
    return 0;
}

static int64_t count_updates(const ppo_control_config *cfg, int batch) {
    return cfg->total_steps / batch > 0 ? cfg->total_steps / batch : 1;
}

/* Mean return and length of the recent training episodes (episodes > 0). */
static void episode_means(const ppo_run *run, double *ret, double *len) {
    const int have = run->episodes < EPISODE_WINDOW ? (int)run->episodes : EPISODE_WINDOW;
    double r = 0.0, l = 0.0;
    for (int i = 0; i < have; i++)
        r += run->episode_returns[i], l += run->episode_lengths[i];
    *ret = r / have;
    *len = l / have;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void record_episode(ppo_run *run, double ret, int32_t len) {
    int slot = (int)(run->episodes % EPISODE_WINDOW);
    run->episode_returns[slot] = ret;
    run->episode_lengths[slot] = len;
    run->episodes++;
}

/* ==== rollout ======================================================================= */

/* Values of the final observations of episodes that were truncated at step
 * t: the bootstrap target of a time limit, not of a terminal state. */
static void bootstrap_truncated(ppo_run *run, int t) {
    const vec_env_step_result *out = &run->venv.out;
    const int D = run->obs_dim;
    int count = 0;
    for (int n = 0; n < run->N; n++)
        if (out->truncated[n]) {
            memcpy(run->trunc_obs + (int64_t)count * D, out->final_obs + (int64_t)n * D,
                   sizeof(float) * (size_t)D);
            run->trunc_index[count++] = n;
        }
    if (count == 0)
        return;
    ac_forward(&run->model, run->params, &run->acts, run->trunc_obs, count, true);
    for (int k = 0; k < count; k++)
        run->next_values[(int64_t)t * run->N + run->trunc_index[k]] = run->acts.values[k];
}

static void collect_rollout(ppo_run *run) {
    const int N = run->N, D = run->obs_dim, A = run->n_actions;
    vec_env *venv = &run->venv;
    for (int t = 0; t < run->T; t++) {
        const int64_t row = (int64_t)t * N;
        ac_forward(&run->model, run->params, &run->acts, venv->obs, N, true);
        memcpy(run->obs + row * D, venv->obs, sizeof(float) * (size_t)N * (size_t)D);
        int32_t *act = run->actions + row;
        categorical_sample(act, run->acts.logp, N, A, &run->policy_rng);
        for (int n = 0; n < N; n++) {
            run->logprobs[row + n] = run->acts.logp[(int64_t)n * A + act[n]];
            run->values[row + n] = run->acts.values[n];
            if (t > 0 && !run->ended[row - N + n])
                run->next_values[row - N + n] = run->acts.values[n];
        }
        vec_env_step(venv, act);
        const vec_env_step_result *out = &venv->out;
        for (int n = 0; n < N; n++) {
            run->rewards[row + n] = out->rewards[n];
            run->terminated[row + n] = out->terminated[n];
            run->ended[row + n] = out->terminated[n] | out->truncated[n];
            if (run->ended[row + n])
                record_episode(run, out->episode_return[n], out->episode_length[n]);
        }
        bootstrap_truncated(run, t);
        run->global_step += N;
    }
    /* Bootstrap the last step from the state the rollout stopped in. */
    ac_forward(&run->model, run->params, &run->acts, venv->obs, N, true);
    const int64_t last = (int64_t)(run->T - 1) * N;
    for (int n = 0; n < N; n++)
        if (!run->ended[last + n])
            run->next_values[last + n] = run->acts.values[n];
}

/* ==== optimisation ==================================================================== */

typedef struct update_stats {
    double policy_loss, value_loss, entropy, old_approx_kl, approx_kl, clipfrac, grad_norm;
    int minibatches;
    double last_approx_kl;
} update_stats;

static void gather_minibatch(ppo_run *run, const int32_t *idx) {
    const int M = run->minibatch, D = run->obs_dim;
    for (int i = 0; i < M; i++) {
        const int32_t j = idx[i];
        for (int d = 0; d < D; d++) /* D is 4..6: a loop beats a memcpy call */
            run->mb_obs[(int64_t)i * D + d] = run->obs[(int64_t)j * D + d];
        run->mb_actions[i] = run->actions[j];
        run->mb_oldlogp[i] = run->logprobs[j];
        run->mb_adv[i] = run->advantages[j];
        run->mb_returns[i] = run->returns[j];
        run->mb_oldvalues[i] = run->values[j];
    }
}

/* One gradient step on the gathered minibatch. Returns -1 on a non-finite loss. */
static int minibatch_step(ppo_run *run, float lr, update_stats *st) {
    const ppo_control_config *cfg = run->cfg;
    const int M = run->minibatch, A = run->n_actions;
    const float clip = (float)cfg->clip_coef;
    ac_acts *acts = &run->acts;
    ac_forward(&run->model, run->params, acts, run->mb_obs, M, true);
    categorical_entropy(run->mb_entropy, acts->logp, M, A);
    double old_kl = 0.0, kl = 0.0, clipped = 0.0, entropy = 0.0;
    for (int i = 0; i < M; i++) {
        run->mb_newlogp[i] = acts->logp[(int64_t)i * A + run->mb_actions[i]];
        const double logratio = (double)run->mb_newlogp[i] - run->mb_oldlogp[i];
        const double ratio = exp(logratio);
        old_kl += -logratio;            /* k1 estimator */
        kl += (ratio - 1.0) - logratio; /* k3 estimator (Schulman 2020) */
        clipped += fabs(ratio - 1.0) > cfg->clip_coef;
        entropy += run->mb_entropy[i];
    }
    if (cfg->norm_adv) /* unbiased std, as torch.Tensor.std; eps 1e-8 as CleanRL */
        ppo_whiten(run->mb_adv, NULL, M, false, PPO_WHITEN_EPS_ON_STD);
    const bool clip_vloss = cfg->clip_vloss && !run->a2c;
    float pg_loss = 0.0f;
    if (run->a2c) {
        double sum = 0.0;
        for (int i = 0; i < M; i++)
            sum -= (double)run->mb_adv[i] * run->mb_newlogp[i];
        pg_loss = (float)(sum / M);
    } else
        pg_loss = ppo_policy_loss_forward(run->mb_newlogp, run->mb_oldlogp, run->mb_adv, M, clip);
    const float v_loss = ppo_value_loss_forward(acts->values, run->mb_oldvalues, run->mb_returns, M,
                                                clip, clip_vloss);
    const double loss = pg_loss - cfg->ent_coef * entropy / M + cfg->vf_coef * v_loss;
    if (!isfinite(loss))
        return -1;

    /* loss = pg - c_ent · mean(H) + c_v · v_loss, backpropagated to logits and values. */
    memset(run->mb_dnewlogp, 0, sizeof(float) * (size_t)M);
    if (run->a2c)
        for (int i = 0; i < M; i++)
            run->mb_dnewlogp[i] = -run->mb_adv[i] / (float)M;
    else
        ppo_policy_loss_backward(run->mb_dnewlogp, run->mb_newlogp, run->mb_oldlogp, run->mb_adv, M,
                                 clip, 1.0f);
    memset(run->mb_dlogp, 0, sizeof(float) * (size_t)M * (size_t)A);
    for (int i = 0; i < M; i++) {
        run->mb_dlogp[(int64_t)i * A + run->mb_actions[i]] = run->mb_dnewlogp[i];
        run->mb_dentropy[i] = (float)(-cfg->ent_coef / M);
    }
    memset(acts->dlogits, 0, sizeof(float) * (size_t)M * (size_t)A);
    log_softmax_backward(acts->dlogits, run->mb_dlogp, acts->logp, M, A);
    categorical_entropy_backward(acts->dlogits, run->mb_dentropy, acts->logp, run->mb_entropy, M,
                                 A);
    memset(acts->dvalues, 0, sizeof(float) * (size_t)M);
    ppo_value_loss_backward(acts->dvalues, acts->values, run->mb_oldvalues, run->mb_returns, M,
                            clip, clip_vloss, (float)cfg->vf_coef);
    const int64_t P = run->model.n_params;
    memset(run->grads, 0, sizeof(float) * (size_t)P);
    ac_backward(&run->model, run->params, run->grads, acts, run->mb_obs, M);
    const double grad_norm = grad_clip_global_norm(run->grads, P, cfg->max_grad_norm);
    const adam_config adam = {lr, 0.9f, 0.999f, (float)cfg->adam_eps, 0.0f};
    st->minibatches++;
    run->adam_t++;
    adam_step(run->params, run->grads, run->adam_m, run->adam_v, NULL, P, &adam, run->adam_t);

    st->policy_loss += pg_loss;
    st->value_loss += v_loss;
    st->entropy += entropy / M;
    st->old_approx_kl += old_kl / M;
    st->approx_kl += kl / M;
    st->last_approx_kl = kl / M;
    st->clipfrac += clipped / M;
    st->grad_norm += grad_norm;
    return 0;
}

/* ==== evaluation ======================================================================= */

/* Greedy (argmax) policy on eval_episodes fresh episodes run in parallel.
 * Returns the mean return, or NAN when target_return > 0 and reaching it
 * became impossible (every unfinished episode scoring the most it still
 * could would not lift the mean to the target), which ends the evaluation
 * early. */
static double evaluate_greedy(ppo_run *run, int64_t eval_index, int *ok) {
    const ppo_control_config *cfg = run->cfg;
    const int E = (int)cfg->eval_episodes, A = run->n_actions;
    vec_env eval;
    *ok = vec_env_init(&eval, run->spec, E,
                       (uint64_t)cfg->seed * 1000003u + 7919u * (uint64_t)(eval_index + 1)) == 0;
    if (!*ok)
        return NAN;
    uint8_t *done = calloc((size_t)E, 1);
    int32_t *act = malloc(sizeof(int32_t) * (size_t)E);
    double finished_sum = 0.0, result = NAN;
    int finished = 0;
    if (done == NULL || act == NULL) {
        *ok = 0;
        goto out;
    }
    while (finished < E) {
        ac_forward(&run->model, run->params, &run->acts, eval.obs, E, false);
        categorical_argmax(act, run->acts.logp, E, A);
        vec_env_step(&eval, act);
        double reachable = 0.0;
        for (int n = 0; n < E; n++) {
            if (done[n])
                continue;
            if (eval.out.terminated[n] || eval.out.truncated[n]) {
                done[n] = 1;
                finished++;
                finished_sum += eval.out.episode_return[n];
                continue;
            }
            reachable +=
                eval.running_return[n] + (double)(run->spec->max_episode_steps - eval.elapsed[n]) *
                                             run->spec->max_step_reward;
        }
        if (cfg->target_return != 0.0 && (finished_sum + reachable) / E < cfg->target_return)
            goto out;
    }
    result = finished_sum / E;
out:
    free(done);
    free(act);
    vec_env_free(&eval);
    return result;
}

/* ==== the loop ========================================================================== */

static double explained_variance(const float *pred, const float *target, int n) {
    double my = 0.0, md = 0.0;
    for (int i = 0; i < n; i++) {
        my += target[i];
        md += target[i] - pred[i];
    }
    my /= n;
    md /= n;
    double vy = 0.0, vd = 0.0;
    for (int i = 0; i < n; i++) {
        vy += (target[i] - my) * (target[i] - my);
        const double d = target[i] - pred[i] - md;
        vd += d * d;
    }
    return vy == 0.0 ? NAN : 1.0 - vd / vy;
}

/* ==== checkpoints ======================================================================= */

/* The policy's tensors plus, with training state, three more. */
#define CHECKPOINT_MAX_TENSORS (2 * (2 * AC_MAX_HIDDEN_LAYERS + 2) + 3)

typedef struct checkpoint_names {
    safetensors_tensor tensors[CHECKPOINT_MAX_TENSORS];
    char names[CHECKPOINT_MAX_TENSORS][48];
    int count;
} checkpoint_names;

static void add_dense(checkpoint_names *c, const float *params, const ac_dense *d,
                      const char *module, int index) {
    for (int bias = 0; bias < 2; bias++) {
        char *name = c->names[c->count];
        if (index >= 0)
            snprintf(name, sizeof c->names[0], "%s.%d.%s", module, index, bias ? "bias" : "weight");
        else
            snprintf(name, sizeof c->names[0], "%s.%s", module, bias ? "bias" : "weight");
        c->tensors[c->count++] =
            bias ? (safetensors_tensor){.name = name,
                                        .data = params + d->b,
                                        .ndim = 1,
                                        .shape = {d->out}}
                 : (safetensors_tensor){
                       .name = name, .data = params + d->w, .ndim = 2, .shape = {d->out, d->in}};
    }
}

/* The policy with the names PyTorch gives CleanRL's Agent (nn.Sequential
 * indices: actor.0, actor.2, ... with the head last); a shared trunk is
 * "trunk.{i}" with "actor_head" and "critic_head". Each tensor's data
 * points into run->params. */
static void policy_tensors(const ppo_run *run, checkpoint_names *c) {
    const ac_model *m = &run->model;
    const int L = m->hidden_layers;
    c->count = 0;
    const char *actor = m->shared_trunk ? "trunk" : "actor";
    for (int l = 0; l < L; l++)
        add_dense(c, run->params, &m->actor_trunk[l], actor, 2 * l);
    if (!m->shared_trunk)
        for (int l = 0; l < L; l++)
            add_dense(c, run->params, &m->critic_trunk[l], "critic", 2 * l);
    add_dense(c, run->params, &m->actor_head, m->shared_trunk ? "actor_head" : "actor",
              m->shared_trunk ? -1 : 2 * L);
    add_dense(c, run->params, &m->critic_head, m->shared_trunk ? "critic_head" : "critic",
              m->shared_trunk ? -1 : 2 * L);
}

/* The three tensors of the training state: Adam's moments and each env's
 * current observation (the one the next rollout starts from). */
static void state_tensors(const ppo_run *run, checkpoint_names *c) {
    const int64_t P = run->model.n_params;
    c->tensors[c->count++] = (safetensors_tensor){
        .name = "training_state.adam_m", .data = run->adam_m, .ndim = 1, .shape = {P}};
    c->tensors[c->count++] = (safetensors_tensor){
        .name = "training_state.adam_v", .data = run->adam_v, .ndim = 1, .shape = {P}};
    c->tensors[c->count++] = (safetensors_tensor){.name = "training_state.env_obs",
                                                  .data = run->venv.obs,
                                                  .ndim = 2,
                                                  .shape = {run->N, run->obs_dim}};
}

/* Doubles in each env's opaque physics state (env.h: a whole number of them). */
static int64_t env_state_doubles(const ppo_run *run) {
    return (int64_t)run->N * (int64_t)(run->spec->state_bytes / sizeof(double));
}

enum { STATE_TEXTS = 8 };

/* The training state's metadata values that are lists (malloc'd; all NULL
 * on failure). */
static int state_texts(const ppo_run *run, char *text[STATE_TEXTS]) {
    const int64_t N = run->N, S = env_state_doubles(run);
    double *states = malloc(sizeof(double) * (size_t)S);
    int64_t *elapsed = malloc(sizeof(int64_t) * (size_t)N);
    int ok = states != NULL && elapsed != NULL;
    memset(text, 0, sizeof(char *) * STATE_TEXTS);
    if (ok) {
        memcpy(states, run->venv.states, sizeof(double) * (size_t)S);
        for (int64_t n = 0; n < N; n++)
            elapsed[n] = run->venv.elapsed[n];
        text[0] = train_state_config_text(&ppo_control_hparams, run->cfg);
        text[1] = train_state_format_rngs(&run->policy_rng, 1);
        text[2] = train_state_format_rngs(&run->shuffle_rng, 1);
        text[3] = train_state_format_rngs(run->venv.rngs, N);
        text[4] = train_state_format_f64s(states, S);
        text[5] = train_state_format_i64s(elapsed, N);
        text[6] = train_state_format_f64s(run->venv.running_return, N);
        /* the ring of recent episodes, slot by slot: returns then lengths */
        double window[2 * EPISODE_WINDOW];
        memcpy(window, run->episode_returns, sizeof run->episode_returns);
        memcpy(window + EPISODE_WINDOW, run->episode_lengths, sizeof run->episode_lengths);
        text[7] = train_state_format_f64s(window, 2 * EPISODE_WINDOW);
        for (int i = 0; i < STATE_TEXTS; i++)
            ok = ok && text[i] != NULL;
    }
    free(states);
    free(elapsed);
    if (!ok)
        for (int i = 0; i < STATE_TEXTS; i++)
            free(text[i]), text[i] = NULL;
    return ok ? 0 : -1;
}

/* The policy as safetensors (policy_tensors' names, with the architecture in
 * the metadata); with_state adds what a resume restores: tensors and
 * metadata under "training_state.". */
/* The policy (and with_state the training state, to resume) as a
 * checkpoint through the sink; best marks it as the best-evaluated policy
 * (weights only). */
static int emit_checkpoint(const ppo_run *run, const train_sink *sink, bool with_state, bool best) {
    const ac_model *m = &run->model;
    checkpoint_names c;
    policy_tensors(run, &c);
    char hidden[24], layers[24], update[24], global_step[24], adam_t[24], evals[24], episodes[24],
        eval_return[40], best_return[40], best_step[24], best_eval[40];
    snprintf(hidden, sizeof hidden, "%d", m->hidden_size);
    snprintf(layers, sizeof layers, "%d", m->hidden_layers);
    const char *meta[32][2] = {{"format", "rlhfd.ppo_control.v1"},
                               {"env", run->cfg->env},
                               {"hidden_size", hidden},
                               {"hidden_layers", layers},
                               {"activation", run->cfg->activation},
                               {"shared_trunk", m->shared_trunk ? "true" : "false"}};
    int n_meta = 6;
    char *text[STATE_TEXTS] = {NULL};
    if (best) {
        snprintf(best_eval, sizeof best_eval, "%.17g", run->best_return);
        meta[n_meta][0] = "checkpoint_role", meta[n_meta++][1] = "best";
        meta[n_meta][0] = "eval_return", meta[n_meta++][1] = best_eval;
    } else if (with_state) {
        state_tensors(run, &c);
        if (state_texts(run, text) != 0)
            return -1;
        snprintf(update, sizeof update, "%lld", (long long)run->update);
        snprintf(global_step, sizeof global_step, "%lld", (long long)run->global_step);
        snprintf(adam_t, sizeof adam_t, "%lld", (long long)run->adam_t);
        snprintf(evals, sizeof evals, "%lld", (long long)run->evals);
        snprintf(episodes, sizeof episodes, "%lld", (long long)run->episodes);
        snprintf(eval_return, sizeof eval_return, "%a", run->eval_return);
        snprintf(best_return, sizeof best_return, "%a", run->best_return);
        snprintf(best_step, sizeof best_step, "%lld", (long long)run->best_step);
        const char *const state[][2] = {{"training_state.update", update},
                                        {"training_state.global_step", global_step},
                                        {"training_state.adam_t", adam_t},
                                        {"training_state.evals", evals},
                                        {"training_state.eval_return", eval_return},
                                        {"training_state.best_return", best_return},
                                        {"training_state.best_step", best_step},
                                        {"training_state.episodes", episodes},
                                        {"training_state.episode_window", text[7]},
                                        {"training_state.policy_rng", text[1]},
                                        {"training_state.shuffle_rng", text[2]},
                                        {"training_state.env_rngs", text[3]},
                                        {"training_state.env_states", text[4]},
                                        {"training_state.env_elapsed", text[5]},
                                        {"training_state.env_running_return", text[6]},
                                        {"training_state.config", text[0]}};
        for (size_t i = 0; i < sizeof state / sizeof state[0]; i++)
            meta[n_meta][0] = state[i][0], meta[n_meta++][1] = state[i][1];
    }
    size_t n_bytes = 0;
    void *bytes =
        safetensors_serialize(c.tensors, c.count, (const char *const(*)[2])meta, n_meta, &n_bytes);
    for (int i = 0; i < STATE_TEXTS; i++)
        free(text[i]);
    if (bytes == NULL)
        return -1;
    int rc = sink_checkpoint(sink, run->global_step, bytes, n_bytes);
    free(bytes);
    return rc;
}

/* Loads tensor name of f into dst, which must have the given shape. */
static int load_tensor(const safetensors_file *f, const safetensors_tensor *want, float *dst,
                       char *err, size_t errlen) {
    const safetensors_info *t = safetensors_find(f, want->name);
    if (t == NULL) {
        snprintf(err, errlen, "resume: the checkpoint has no tensor '%s'", want->name);
        return -1;
    }
    int64_t n = 1;
    for (int d = 0; d < want->ndim; d++)
        n *= want->shape[d];
    char why[256];
    if (safetensors_check_shape(t, want->ndim, want->shape, why, sizeof why) != 0 ||
        safetensors_load_f32(t, dst, n, why, sizeof why) != 0) {
        snprintf(err, errlen, "resume: %s", why);
        return -1;
    }
    return 0;
}

/* Restores run (just initialised with the same config) from a checkpoint
 * emit_checkpoint wrote with its training state. */
static int restore_from(ppo_run *run, const safetensors_file *f, int64_t num_updates, char *err,
                        size_t errlen) {
    if (train_state_check_config(f, &ppo_control_hparams, run->cfg, err, errlen) != 0)
        return -1;
    checkpoint_names c;
    policy_tensors(run, &c);
    state_tensors(run, &c);
    float *const dst[3] = {run->adam_m, run->adam_v, run->venv.obs};
    for (int i = 0; i < c.count; i++) {
        const int k = i - (c.count - 3);
        float *to = k >= 0 ? dst[k] : run->params + (c.tensors[i].data - run->params);
        if (load_tensor(f, &c.tensors[i], to, err, errlen) != 0)
            return -1;
    }
    const int64_t N = run->N, S = env_state_doubles(run);
    double *states = malloc(sizeof(double) * (size_t)S);
    int64_t *elapsed = malloc(sizeof(int64_t) * (size_t)N);
    if (states == NULL || elapsed == NULL) {
        free(states), free(elapsed);
        snprintf(err, errlen, "resume: out of memory");
        return -1;
    }
    int ok = 1;
    run->update = train_state_meta_i64(f, "training_state.update", &ok);
    run->global_step = train_state_meta_i64(f, "training_state.global_step", &ok);
    run->adam_t = train_state_meta_i64(f, "training_state.adam_t", &ok);
    run->evals = train_state_meta_i64(f, "training_state.evals", &ok);
    run->episodes = train_state_meta_i64(f, "training_state.episodes", &ok);
    run->eval_return = train_state_meta_f64(f, "training_state.eval_return", &ok);
    run->best_return = train_state_meta_f64(f, "training_state.best_return", &ok);
    run->best_step = train_state_meta_i64(f, "training_state.best_step", &ok);
    double window[2 * EPISODE_WINDOW];
#define META(key) safetensors_metadata_get(f, "training_state." key)
    ok = ok && train_state_parse_rngs(&run->policy_rng, 1, META("policy_rng")) == 0 &&
         train_state_parse_rngs(&run->shuffle_rng, 1, META("shuffle_rng")) == 0 &&
         train_state_parse_rngs(run->venv.rngs, N, META("env_rngs")) == 0 &&
         train_state_parse_f64s(states, S, META("env_states")) == 0 &&
         train_state_parse_i64s(elapsed, N, META("env_elapsed")) == 0 &&
         train_state_parse_f64s(run->venv.running_return, N, META("env_running_return")) == 0 &&
         train_state_parse_f64s(window, 2 * EPISODE_WINDOW, META("episode_window")) == 0;
#undef META
    for (int64_t n = 0; ok && n < N; n++) {
        ok = elapsed[n] >= 0 && elapsed[n] < run->spec->max_episode_steps;
        run->venv.elapsed[n] = (int32_t)elapsed[n];
    }
    if (ok) {
        memcpy(run->venv.states, states, sizeof(double) * (size_t)S);
        memcpy(run->episode_returns, window, sizeof run->episode_returns);
        memcpy(run->episode_lengths, window + EPISODE_WINDOW, sizeof run->episode_lengths);
    }
    free(states), free(elapsed);
    if (!ok) {
        snprintf(err, errlen, "resume: the checkpoint's training state is incomplete or malformed");
        return -1;
    }
    if (run->update > num_updates || run->global_step != run->update * run->batch ||
        run->adam_t > run->update * run->cfg->update_epochs * run->cfg->num_minibatches) {
        snprintf(err, errlen,
                 "resume: the checkpoint's counters are inconsistent (update %lld, global_step "
                 "%lld, adam_t %lld)",
                 (long long)run->update, (long long)run->global_step, (long long)run->adam_t);
        return -1;
    }
    return 0;
}

static int restore_state(ppo_run *run, const char *path, int64_t num_updates, char *err,
                         size_t errlen) {
    safetensors_file f;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    const int rc = restore_from(run, &f, num_updates, err, errlen);
    safetensors_free(&f);
    return rc;
}

int ppo_control_train(const ppo_control_config *cfg, const train_sink *sink,
                      ppo_control_result *result, char *err, size_t errlen) {
    return ppo_control_train_resume(cfg, NULL, sink, result, err, errlen);
}

int ppo_control_train_resume(const ppo_control_config *cfg, const char *resume_checkpoint,
                             const train_sink *sink, ppo_control_result *result, char *err,
                             size_t errlen) {
    if (ppo_control_validate(cfg, err, errlen) != 0)
        return -1;
    ppo_run run;
    if (run_init(&run, cfg, err, errlen) != 0)
        return -1;
    const int64_t num_updates = count_updates(cfg, run.batch);
    if (resume_checkpoint != NULL &&
        restore_state(&run, resume_checkpoint, num_updates, err, errlen) != 0) {
        run_free(&run);
        return -1;
    }
    ppo_control_result res = {.eval_return = run.eval_return,
                              .updates = run.update,
                              .global_step = run.global_step,
                              .best_eval_return = run.best_return,
                              .best_step = run.best_step};
    if (run.episodes > 0) {
        double len;
        episode_means(&run, &res.episodic_return, &len);
    }
    const int64_t start_step = run.global_step;
    const double start = now_s();
    int rc = 0;
    for (int64_t update = run.update + 1; update <= num_updates; update++) {
        if (sink_should_stop(sink)) {
            res.stopped = true;
            break;
        }
        const float lr = cfg->anneal_lr
                             ? lr_linear((float)cfg->learning_rate, update - 1, num_updates)
                             : (float)cfg->learning_rate;
        const double t_rollout = now_s();
        collect_rollout(&run);
        const double t_optimize = now_s();
        ppo_compute_gae(run.advantages, run.returns, run.rewards, run.values, run.next_values,
                        run.terminated, run.ended, run.T, run.N, (float)cfg->gamma,
                        (float)cfg->gae_lambda);
        update_stats st = {0};
        bool kl_stop = false;
        const int64_t epochs = run.a2c ? 1 : cfg->update_epochs;
        for (int64_t epoch = 0; epoch < epochs && !kl_stop; epoch++) {
            rng_permutation(&run.shuffle_rng, run.perm, run.batch);
            for (int start_i = 0; start_i < run.batch; start_i += run.minibatch) {
                gather_minibatch(&run, run.perm + start_i);
                if (minibatch_step(&run, lr, &st) != 0) {
                    snprintf(err, errlen, "non-finite loss at update %lld", (long long)update);
                    rc = -1;
                    goto done;
                }
            }
            kl_stop = !run.a2c && cfg->target_kl > 0.0 && st.last_approx_kl > cfg->target_kl;
        }
        run.update = res.updates = update;
        res.global_step = run.global_step;
        const double t_done = now_s();
        const double elapsed = t_done - start;
        sink_metric m[32];
        int k = 0;
        const double nb = st.minibatches;
        m[k++] = (sink_metric){"update", (double)update};
        m[k++] = (sink_metric){"global_step", (double)run.global_step};
        if (run.episodes > 0) {
            double r, l;
            episode_means(&run, &r, &l);
            res.episodic_return = r;
            m[k++] = (sink_metric){"episodic_return", r};
            m[k++] = (sink_metric){"episodic_length", l};
        }
        m[k++] = (sink_metric){"policy_loss", st.policy_loss / nb};
        m[k++] = (sink_metric){"value_loss", st.value_loss / nb};
        m[k++] = (sink_metric){"entropy", st.entropy / nb};
        m[k++] = (sink_metric){"old_approx_kl", st.old_approx_kl / nb};
        m[k++] = (sink_metric){"approx_kl", st.approx_kl / nb};
        m[k++] = (sink_metric){"clipfrac", st.clipfrac / nb};
        m[k++] = (sink_metric){"grad_norm", st.grad_norm / nb};
        m[k++] = (sink_metric){"explained_variance",
                               explained_variance(run.values, run.returns, run.batch)};
        m[k++] = (sink_metric){"learning_rate", lr};
        m[k++] = (sink_metric){"sps", (run.global_step - start_step) / elapsed};
        m[k++] = (sink_metric){"wall_s", elapsed};
        m[k++] = (sink_metric){"rollout_s", t_optimize - t_rollout};
        m[k++] = (sink_metric){"optimize_s", t_done - t_optimize};
        if (kl_stop)
            m[k++] = (sink_metric){"kl_early_stop", 1.0};
        bool evaluated = cfg->eval_interval > 0 && update % cfg->eval_interval == 0;
        double eval_return = NAN;
        if (evaluated) {
            int ok;
            const double t_eval = now_s();
            eval_return = evaluate_greedy(&run, run.evals++, &ok);
            m[k++] = (sink_metric){"eval_s", now_s() - t_eval};
            if (!ok) {
                snprintf(err, errlen, "out of memory in evaluation");
                rc = -1;
                goto done;
            }
            if (isnan(eval_return))
                m[k++] = (sink_metric){"eval_pass", 0.0};
            else
                m[k++] = (sink_metric){"eval_return", eval_return},
                run.eval_return = res.eval_return = eval_return;
        }
        const bool new_best =
            !isnan(eval_return) && (isnan(run.best_return) || eval_return > run.best_return);
        if (new_best) {
            run.best_return = eval_return, run.best_step = run.global_step;
            m[k++] = (sink_metric){"best_eval_return", eval_return};
        }
        if (sink_metrics(sink, run.global_step, m, k) != 0) {
            snprintf(err, errlen, "the metrics sink failed");
            rc = -1;
            goto done;
        }
        if (new_best && cfg->keep_best) {
            const sink_metric data[] = {{"global_step", (double)run.global_step},
                                        {"eval_return", eval_return}};
            char msg[160];
            snprintf(msg, sizeof msg,
                     "best greedy evaluation so far: mean return %.1f at step %lld", eval_return,
                     (long long)run.global_step);
            if (emit_checkpoint(&run, sink, false, true) != 0 ||
                sink_event(sink, SINK_LEVEL_INFO, "best_policy", msg, data, 2) != 0) {
                snprintf(err, errlen, "writing the best policy at update %lld failed",
                         (long long)update);
                rc = -1;
                goto done;
            }
        }
        if (cfg->target_return != 0.0 && !isnan(eval_return) && eval_return >= cfg->target_return) {
            res.solved = true;
            res.solved_step = run.global_step;
            res.wall_s = now_s() - start;
            sink_metric data[] = {{"global_step", (double)run.global_step},
                                  {"wall_s", res.wall_s},
                                  {"eval_return", eval_return}};
            char msg[160];
            snprintf(msg, sizeof msg, "%s solved: greedy mean return %.1f over %lld episodes",
                     cfg->env, eval_return, (long long)cfg->eval_episodes);
            sink_event(sink, SINK_LEVEL_INFO, "solved", msg, data, 3);
            break;
        }
        if (cfg->checkpoint_interval > 0 && update < num_updates &&
            update % cfg->checkpoint_interval == 0 &&
            emit_checkpoint(&run, sink, true, false) != 0) {
            snprintf(err, errlen, "writing the checkpoint at update %lld failed",
                     (long long)update);
            rc = -1;
            goto done;
        }
    }
    /* A stopped run keeps its state so it can resume; a finished one is weights only. */
    if (emit_checkpoint(&run, sink, res.stopped, false) != 0) {
        snprintf(err, errlen, "writing the checkpoint failed");
        rc = -1;
    }
done:
    res.best_eval_return = run.best_return, res.best_step = run.best_step;
    if (!res.solved)
        res.wall_s = now_s() - start;
    if (result)
        *result = res;
    run_free(&run);
    return rc;
}
