/* jobs — the registry of job types rlhf-train can run.
 *
 * A job type is a name, its hyperparameter table, a validator for what the
 * table's per-key ranges cannot express, and a run function that reports
 * through a train_sink. The CLI, `rlhf-train describe` and (later) the daemon
 * all go through this registry, so a new job type is one entry here.
 */
#ifndef RLHF_JOBS_H
#define RLHF_JOBS_H

#include <stddef.h>

#include "hparams.h"
#include "sink.h"

typedef struct job_type {
    const char *name;    /* "ppo-control" */
    const char *summary; /* one line */
    const hparam_table *hparams;
    /* Metrics worth a glance (progress lines, dashboards), in order. */
    const char *const *headline_metrics;
    int (*validate)(const void *cfg, char *err, size_t errlen);
    int (*run)(const void *cfg, const train_sink *sink, char *err, size_t errlen);
} job_type;

/* Every job type, NULL-terminated. */
extern const job_type *const job_types[];

/* The job type called name, or NULL. */
const job_type *job_type_find(const char *name);

/* Defaults, then the JSON object (may be NULL), then validation, into cfg
 * (config_bytes of the type's table). Returns 0, or -1 with err naming the
 * offending key. */
int job_config_from_json(const job_type *type, void *cfg, const json_t *obj, char *err,
                         size_t errlen);

#endif
