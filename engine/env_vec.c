/* The environment registry and vec_env: N copies of one environment stepped
 * together, with Gymnasium's TimeLimit truncation and same-step autoreset. */
#include <stdlib.h>
#include <string.h>

#include "env.h"

const env_spec *const env_all[] = {&env_cartpole_v1, &env_acrobot_v1, NULL};

const env_spec *env_find(const char *name) {
    if (name == NULL)
        return NULL;
    for (int i = 0; env_all[i] != NULL; i++)
        if (strcmp(env_all[i]->name, name) == 0)
            return env_all[i];
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* vec_env                                                                  */

int vec_env_init(vec_env *venv, const env_spec *spec, int32_t n, uint64_t seed) {
    memset(venv, 0, sizeof *venv);
    if (spec == NULL || n < 1)
        return -1;
    size_t count = (size_t)n;
    size_t obs_count = count * (size_t)spec->obs_dim;
    venv->spec = spec;
    venv->n = n;
    venv->states = malloc(count * spec->state_bytes);
    venv->rngs = malloc(count * sizeof *venv->rngs);
    venv->elapsed = calloc(count, sizeof *venv->elapsed);
    venv->running_return = calloc(count, sizeof *venv->running_return);
    venv->obs = malloc(obs_count * sizeof *venv->obs);
    venv->out.rewards = calloc(count, sizeof *venv->out.rewards);
    venv->out.terminated = calloc(count, sizeof *venv->out.terminated);
    venv->out.truncated = calloc(count, sizeof *venv->out.truncated);
    venv->out.final_obs = calloc(obs_count, sizeof *venv->out.final_obs);
    venv->out.episode_return = calloc(count, sizeof *venv->out.episode_return);
    venv->out.episode_length = calloc(count, sizeof *venv->out.episode_length);
    if (!venv->states || !venv->rngs || !venv->elapsed || !venv->running_return || !venv->obs ||
        !venv->out.rewards || !venv->out.terminated || !venv->out.truncated ||
        !venv->out.final_obs || !venv->out.episode_return || !venv->out.episode_length) {
        vec_env_free(venv);
        return -1;
    }
    for (int32_t i = 0; i < n; i++) {
        rng_seed(&venv->rngs[i], seed, (uint64_t)i);
        spec->reset(venv->states + (size_t)i * spec->state_bytes, &venv->rngs[i],
                    venv->obs + (size_t)i * (size_t)spec->obs_dim);
    }
    return 0;
}

void vec_env_free(vec_env *venv) {
    free(venv->states);
    free(venv->rngs);
    free(venv->elapsed);
    free(venv->running_return);
    free(venv->obs);
    free(venv->out.rewards);
    free(venv->out.terminated);
    free(venv->out.truncated);
    free(venv->out.final_obs);
    free(venv->out.episode_return);
    free(venv->out.episode_length);
    memset(venv, 0, sizeof *venv);
}

/* episode_return and episode_length are 0 where the episode goes on;
 * final_obs rows are left untouched there. */
void vec_env_step(vec_env *venv, const int32_t *actions) {
    const env_spec *spec = venv->spec;
    size_t obs_dim = (size_t)spec->obs_dim;
    for (int32_t i = 0; i < venv->n; i++) {
        unsigned char *state = venv->states + (size_t)i * spec->state_bytes;
        float *obs = venv->obs + (size_t)i * obs_dim;
        bool terminated = false;
        float reward = spec->step(state, actions[i], obs, &terminated);
        venv->elapsed[i] += 1;
        venv->running_return[i] += reward;
        /* TimeLimit: a step that both terminates and hits the limit counts
         * as terminated, so value bootstrapping stays off for it. */
        bool truncated = !terminated && venv->elapsed[i] >= spec->max_episode_steps;

        venv->out.rewards[i] = reward;
        venv->out.terminated[i] = terminated;
        venv->out.truncated[i] = truncated;
        venv->out.episode_return[i] = 0.0;
        venv->out.episode_length[i] = 0;
        if (terminated || truncated) {
            memcpy(venv->out.final_obs + (size_t)i * obs_dim, obs, obs_dim * sizeof *obs);
            venv->out.episode_return[i] = venv->running_return[i];
            venv->out.episode_length[i] = venv->elapsed[i];
            venv->elapsed[i] = 0;
            venv->running_return[i] = 0.0;
            spec->reset(state, &venv->rngs[i], obs);
        }
    }
}
