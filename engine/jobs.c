#include "jobs.h"

#include <string.h>

#include "ppo_control.h"

static int ppo_control_validate_any(const void *cfg, char *err, size_t errlen) {
    return ppo_control_validate(cfg, err, errlen);
}

static int ppo_control_run(const void *cfg, const train_sink *sink, char *err, size_t errlen) {
    return ppo_control_train(cfg, sink, NULL, err, errlen);
}

static const char *const ppo_control_headline[] = {
    "global_step", "episodic_return",    "eval_return", "approx_kl",
    "clipfrac",    "explained_variance", "sps",         NULL};

static const job_type ppo_control_job = {
    .name = "ppo-control",
    .summary = "PPO on a classic-control environment (CartPole-v1, Acrobot-v1)",
    .hparams = &ppo_control_hparams,
    .headline_metrics = ppo_control_headline,
    .validate = ppo_control_validate_any,
    .run = ppo_control_run,
};

const job_type *const job_types[] = {&ppo_control_job, NULL};

const job_type *job_type_find(const char *name) {
    for (const job_type *const *t = job_types; *t; t++)
        if (strcmp((*t)->name, name) == 0)
            return *t;
    return NULL;
}

int job_config_from_json(const job_type *type, void *cfg, const json_t *obj, char *err,
                         size_t errlen) {
    hparams_set_defaults(type->hparams, cfg);
    if (obj != NULL && hparams_apply_json(type->hparams, cfg, obj, err, errlen) != 0)
        return -1;
    return type->validate(cfg, err, errlen);
}
