/* env — classic-control environments behind one small interface, and a
 * vector of N copies stepped together.
 *
 * An env_spec is a table of plain functions over an opaque state of
 * state_bytes bytes. Dynamics follow Gymnasium exactly (state kept in double
 * precision, observations returned as float32, as Gymnasium does), so returns
 * are comparable with published results. Time limits (truncation) are not the
 * environment's business: vec_env counts steps and truncates at
 * max_episode_steps, like Gymnasium's TimeLimit wrapper.
 */
#ifndef RLHF_ENV_H
#define RLHF_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct env_spec {
    const char *name;          /* Gymnasium id, e.g. "CartPole-v1" */
    int32_t obs_dim;           /* length of the observation vector */
    int32_t n_actions;         /* discrete actions 0..n_actions-1 */
    int32_t max_episode_steps; /* TimeLimit: truncate after this many steps */
    size_t state_bytes;        /* size of the opaque per-env state: a whole number of
                                * doubles, which is how checkpoints save it */
    float max_step_reward;     /* no step pays more: bounds the best return still reachable */
    /* Draws an initial state from rng and writes the first observation. */
    void (*reset)(void *state, rng_state *rng, float *obs);
    /* Advances one step with a valid action; writes the next observation,
     * sets *terminated when the episode reached a terminal state, and
     * returns the reward of this step. */
    float (*step)(void *state, int32_t action, float *obs, bool *terminated);
} env_spec;

extern const env_spec env_cartpole_v1;
extern const env_spec env_acrobot_v1;

/* The environment called name, or NULL. */
const env_spec *env_find(const char *name);
/* Every environment, NULL-terminated, for help text and validation. */
extern const env_spec *const env_all[];

/* What one vec_env_step produced, one entry per environment. */
typedef struct vec_env_step_result {
    float *rewards;         /* (N) reward of the step just taken */
    uint8_t *terminated;    /* (N) 1 if the episode reached a terminal state */
    uint8_t *truncated;     /* (N) 1 if the episode hit max_episode_steps (and did not terminate) */
    float *final_obs;       /* (N, obs_dim) last observation of an episode that just ended;
                             * valid only where terminated or truncated */
    double *episode_return; /* (N) undiscounted return of the episode that just ended */
    int32_t *episode_length; /* (N) its length in steps */
} vec_env_step_result;

typedef struct vec_env {
    const env_spec *spec;
    int32_t n;
    unsigned char *states;   /* (N, state_bytes) */
    rng_state *rngs;         /* (N) one stream per env: stream = index */
    int32_t *elapsed;        /* (N) steps taken in the current episode */
    double *running_return;  /* (N) return so far in the current episode */
    float *obs;              /* (N, obs_dim) current observation of each env */
    vec_env_step_result out; /* buffers filled by vec_env_step */
} vec_env;

/* Allocates N environments seeded from seed (env i uses rng stream i) and
 * resets them all. Returns 0, or -1 when allocation fails. */
int vec_env_init(vec_env *venv, const env_spec *spec, int32_t n, uint64_t seed);
void vec_env_free(vec_env *venv);

/* Steps every env i with actions[i], filling venv->out. An env whose episode
 * ended (terminated or truncated) is reset at once ("same-step autoreset", as
 * Gymnasium 0.2x vector envs and Stable-Baselines3 do): venv->obs then holds
 * the first observation of the new episode and out.final_obs the last one of
 * the old. */
void vec_env_step(vec_env *venv, const int32_t *actions);

#endif
