/* jobs — the registry of job types rlhf-train can run.
 *
 * A job type is a name, its hyperparameter table, a validator for what the
 * table's per-key ranges cannot express, and a run function that reports
 * through a train_sink. The CLI, `rlhf-train describe`, the worker
 * (train/db_job.c) and rlhfd's job validation (server/routes_jobs.c) all go
 * through this registry, so a new job type is one entry here.
 */
#ifndef RLHF_JOBS_H
#define RLHF_JOBS_H

#include <stddef.h>

#include "dist.h"
#include "dpo_lm.h"
#include "grpo_lm.h"
#include "hparams.h"
#include "sink.h"
#include "reward.h"
#include "ppo_lm.h"
#include "sft.h"

/* What a job trains on, beyond its hyperparameters. The CLI fills it from
 * files, the daemon's worker from the database. Unused parts stay zero. */
typedef struct job_inputs {
    const text_pair *train; /* (prompt, response) examples; (prompt, answer or "") for
                             * prompts jobs (ppo reads the prompts, graders the answers) */
    int64_t n_train;
    const text_pair *eval; /* optional held-out examples */
    int64_t n_eval;
    const ranking *rankings; /* preference rankings (reward model) */
    int64_t n_rankings;
    const ranking *eval_rankings; /* optional held-out rankings */
    int64_t n_eval_rankings;
    const char *init_checkpoint;   /* safetensors path, or NULL */
    const char *resume_checkpoint; /* a resumable checkpoint of this job, or NULL */
    const char *reward_checkpoint; /* ppo: the reward model */
    const char *tokenizer_dir;     /* a Hugging Face tokenizer.json's directory, or GPT-2
                                    * BPE files (vocab.json + merges.txt or encoder.json +
                                    * vocab.bpe); NULL = init_checkpoint's tokenizer.json
                                    * when it is a directory with one, else byte-level */
    const dist_comm *dist;         /* data-parallel process group; NULL = one process */
    const char *ref_checkpoint;    /* ppo, grpo: the KL reference if not init_checkpoint;
                                    * reward: the policy it is normalised on if not
                                    * init_checkpoint (reward_inputs.norm_policy) */
    const char *const *more_reward_checkpoints; /* loop-sample: the ensemble's members after
                                                 * reward_checkpoint (jobs_db.h) */
    int n_more_reward;
    const ranking *prior_rankings; /* reward: scored by the initial model before training
                                    * (reward_inputs.prior); rank 0 only */
    int64_t n_prior_rankings;
} job_inputs;

typedef struct job_type {
    const char *name;    /* "ppo-control" */
    const char *summary; /* one line */
    const hparam_table *hparams;
    /* Metrics worth a glance (progress lines, dashboards), in order. */
    const char *const *headline_metrics;
    /* 1 if the job needs training data, of the kind data_kind says. */
    int needs_train_data;
    /* (prompt, response) examples in job_inputs.train, or rankings in
     * job_inputs.rankings. */
    enum { JOB_DATA_PAIRS, JOB_DATA_RANKINGS, JOB_DATA_PROMPTS } data_kind;
    /* Whether the job takes a reward model (job_inputs.reward_checkpoint):
     * ppo needs one, grpo and rloo may score with one (beside graders). */
    enum { JOB_REWARD_NONE, JOB_REWARD_REQUIRED, JOB_REWARD_OPTIONAL } reward_model;
    /* 1 if run() trains data parallel over job_inputs.dist (dist.h). */
    int data_parallel;
    /* 1 if only rlhfd creates it, for a resource that reads its output
     * (loop-sample: an online loop's round); POST /v1/jobs refuses it. */
    int daemon_only;
    int (*validate)(const void *cfg, char *err, size_t errlen);
    int (*run)(const void *cfg, const job_inputs *in, const train_sink *sink, char *err,
               size_t errlen);
} job_type;

/* Every job type, NULL-terminated. */
extern const job_type *const job_types[];

/* Loads the tokenizer a job's inputs ask for (tokenizer.json in
 * tokenizer_dir or the init directory, GPT-2 BPE from tokenizer_dir, else
 * byte-level). Returns 0 or -1 with err. */
int job_load_tokenizer(tokenizer *tok, const job_inputs *in, char *err, size_t errlen);

/* The job type called name, or NULL. */
const job_type *job_type_find(const char *name);

/* Defaults, then the JSON object (may be NULL), then validation, into cfg
 * (config_bytes of the type's table). Returns 0, or -1 with err naming the
 * offending key. */
int job_config_from_json(const job_type *type, void *cfg, const json_t *obj, char *err,
                         size_t errlen);

/* What an init model decides: the rows of type's table that size a model
 * from scratch (n_layer, n_head, d_model, context) take the values of the
 * model at model_path (NULL: nothing to do), which a trainer that starts
 * from it uses in their place. Callers resolve the configuration with it
 * before they show or store it, so the configuration a job reports is the
 * one it ran with. Returns how many values changed, or -1 with err. */
int job_config_from_model(const job_type *type, void *cfg, const char *model_path, char *err,
                          size_t errlen);

/* Refuses a context the model at model_path cannot serve: cfg's "context"
 * row (when type's table has one) more than the model's positions (the
 * Llama family's max_position_embeddings, GPT-2's n_positions). Callers
 * check it when the context was asked for (a default context is lowered to
 * the model's positions by job_config_from_model instead). 0 (also with
 * model_path NULL), or -1 with err naming "context" and the model's key. */
int job_check_context(const job_type *type, const void *cfg, const char *model_path, char *err,
                      size_t errlen);

#endif
