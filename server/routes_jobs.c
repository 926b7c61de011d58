/* Jobs: create (validated against the engine's job registry, with the
 * datasets and checkpoints it names), list, get, cancel. Every change to
 * the jobs table goes through common/jobs_db.h; a job's events, metrics and
 * stream are in routes_job_events.c, its checkpoints in
 * routes_checkpoints.c.
 *
 * Lists are newest first with `after` = the last id of the previous page
 * (the OpenAI convention).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoints_store.h"
#include "dataset_format.h"
#include "datasets_store.h"
#include "job_create.h"
#include "job_json.h"
#include "jobs.h"
#include "jobs_db.h"
#include "model_dir.h"
#include "models_store.h"
#include "project_access.h"
#include "routes.h"
#include "scheduler.h"
#include "worker_launch.h"

/* The job as JSON, or NULL if there is none (or on error). */
static json_t *job_load(sqlite3 *db, int64_t id) {
    job_row job;
    if (jobs_db_get(db, id, &job) != 1)
        return NULL;
    json_t *out = job_json(&job);
    job_row_free(&job);
    return out;
}

/* ---- POST /v1/jobs ---------------------------------------------------------- */

/* Job types the service will run once the engine has them. */
static const char *const planned_job_types[] = {"sft",  "reward", "ppo", "dpo",
                                                "grpo", "rloo",   NULL};

/* The dataset format (datasets.format) a job type trains on
 * (common/dataset_format.h). A type the engine has that needs training
 * data but reads no dataset format is refused with job_type_unavailable:
 * the daemon cannot feed it yet. */
static const char *job_dataset_format(const job_type *type) {
    return dataset_format_for_job(type->name);
}

int job_error_key(const char *err, char *key, size_t len) {
    const char *open = strchr(err, '\'');
    const char *close = open ? strchr(open + 1, '\'') : NULL;
    if (close == NULL || close - open - 1 >= 64)
        return 0;
    snprintf(key, len, "%.*s", (int)(close - open - 1), open + 1);
    return 1;
}

/* param "hyperparameters.gamma", or "hyperparameters" if the message names
 * no key. */
static void hyperparameter_param(const char *err, char *param, size_t len) {
    char key[64];
    if (job_error_key(err, key, sizeof key))
        snprintf(param, len, "hyperparameters.%s", key);
    else
        snprintf(param, len, "hyperparameters");
}

/* Whether cfg (of type's table) has a non-empty "grader" hyperparameter. */
static bool has_grader(const job_type *type, const void *cfg) {
    const hparam_def *d = hparams_find(type->hparams, "grader");
    return d != NULL && ((const char *)cfg + d->offset)[0] != '\0';
}

void job_available_types(char *out, size_t len) {
    size_t used = 0;
    out[0] = '\0';
    for (const job_type *const *t = job_types; *t && used < len; t++)
        if (!(*t)->daemon_only)
            used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "", (*t)->name);
}

/* A dataset named by training_file / validation_file. */
typedef struct job_dataset_ref {
    const char *param;   /* "training_file" */
    const char *purpose; /* job_datasets.purpose: "training" */
    const json_t *value; /* from the body; NULL if absent */
} job_dataset_ref;

/* The shape of ref's value: 1 ok (absent or a positive integer), 0 replied. */
static int check_dataset_ref_syntax(request *r, const job_type *type, const job_dataset_ref *ref,
                                    enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    if (job_dataset_format(type) == NULL)
        *replied =
            http_reply_error(r, 400, "invalid_value", ref->param,
                             "%s jobs train on no dataset; leave %s out", type->name, ref->param);
    else if (!json_is_integer(ref->value))
        *replied = http_reply_error(r, 400, "invalid_type", ref->param,
                                    "%s must be a dataset id (an integer)", ref->param);
    else if (json_integer_value(ref->value) <= 0)
        *replied = http_reply_error(r, 400, "invalid_value", ref->param,
                                    "%s must be a positive dataset id", ref->param);
    else
        return 1;
    return 0;
}

/* In the caller's transaction: ref names a dataset with rows in the format
 * the job type trains on. 1 ok (or absent), 0 replied (the caller rolls
 * back). */
static int check_job_dataset(request *r, const job_type *type, const job_dataset_ref *ref,
                             enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    const int64_t id = json_integer_value(ref->value);
    const char *want = job_dataset_format(type);
    char format[16] = "";
    int64_t n_rows = 0;
    int found = datasets_store_info(r->db, id, format, &n_rows);
    if (found < 0)
        *replied = http_reply_db_error(r);
    else if (found == 0)
        *replied = http_reply_error(r, 400, "dataset_not_found", ref->param, "no dataset %lld",
                                    (long long)id);
    else if (strcmp(format, want) != 0)
        *replied = http_reply_error(r, 400, "invalid_dataset_format", ref->param,
                                    "%s jobs train on datasets of format %s; dataset %lld is %s",
                                    type->name, want, (long long)id, format);
    else if (n_rows == 0)
        *replied =
            http_reply_error(r, 400, "dataset_empty", ref->param,
                             "dataset %lld has no rows; upload its JSONL first", (long long)id);
    else
        return 1;
    return 0;
}

/* ---- model, reward_model, training_project ------------------------------------- */

/* A checkpoint named by `model` or `reward_model`: an integer is a
 * checkpoint id (a checkpoint object's `id`, periodic or final, of any
 * job); "job:N" is job N's final checkpoint, its `fine_tuned_model`, so the
 * job must have succeeded; "checkpoint:N" spells out the first form. The
 * checkpoint must come from a job of a fitting type: a policy (sft, ppo) for
 * `model`, a reward job for `reward_model`. */
typedef struct model_ref {
    const char *param;             /* "model" */
    const json_t *value;           /* from the body; NULL if absent */
    const char *const *from_types; /* job types whose checkpoints fit */
    const char *what;              /* "a policy (an sft or ppo job's checkpoint)" */
    bool by_job;                   /* "job:N" */
    int64_t id;                    /* checkpoint or job id */
    const char *name;              /* a model id of GET /v1/models, or NULL */
    int64_t checkpoint_id;         /* resolved */
    int64_t base_model;            /* resolved: a registered model (by name) */
} model_ref;

static const char *const policy_job_types[] = {"sft", "ppo", "dpo", "grpo", "rloo", NULL};
static const char *const reward_job_types[] = {"reward", NULL};

/* "job:12" → 12; -1 if text is not prefix followed by a positive integer. */
static int64_t prefixed_id(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    int64_t v;
    return strncmp(text, prefix, n) == 0 && text[n] >= '1' && text[n] <= '9' &&
                   http_parse_int64(text + n, strlen(text + n), 1, INT64_MAX, &v)
               ? v
               : -1;
}

/* The shape of ref's value: 1 ok (absent, or well formed into by_job/id),
 * 0 replied. */
static int check_model_syntax(request *r, model_ref *ref, enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    if (json_is_integer(ref->value) && json_integer_value(ref->value) > 0) {
        ref->id = json_integer_value(ref->value);
        return 1;
    }
    if (json_is_string(ref->value)) {
        const char *text = json_string_value(ref->value);
        if ((ref->id = prefixed_id(text, "checkpoint:")) > 0)
            return 1;
        if ((ref->id = prefixed_id(text, "job:")) > 0) {
            ref->by_job = true;
            return 1;
        }
        if (*text != '\0') { /* a model id (GET /v1/models), resolved in the transaction */
            ref->name = text;
            return 1;
        }
    }
    *replied = http_reply_error(
        r, 400, json_is_integer(ref->value) ? "invalid_value" : "invalid_type", ref->param,
        "%s must be a checkpoint id (a positive integer or "
        "\"checkpoint:N\"), \"job:N\" (job N's final checkpoint) or a model id of "
        "GET /v1/models",
        ref->param);
    return 0;
}

/* In the caller's transaction: ref->name as a model id, a registered base
 * model (only for `model`: the lineage starts there) or a fine-tuned one
 * ("ft:...", its checkpoint). 1 resolved (base_model set, or id set to the
 * checkpoint), 0 replied. */
static int resolve_model_name(request *r, model_ref *ref, enum MHD_Result *replied) {
    model_row row;
    json_t *ft = NULL;
    int found = models_store_find(r->db, ref->name, &row);
    if (found == 0 && (found = models_store_find_ft(r->db, ref->name, &ft, &ref->id)) == 1) {
        json_decref(ft);
        return 1;
    }
    if (found < 0)
        *replied = http_reply_db_error(r);
    else if (found == 0)
        *replied = http_reply_error(r, 400, "model_not_found", ref->param,
                                    "%s: no model '%s' (GET /v1/models lists the registered and "
                                    "fine-tuned models)",
                                    ref->param, ref->name);
    else if (strcmp(ref->param, "model") != 0)
        *replied = http_reply_error(r, 400, "invalid_model", ref->param,
                                    "%s: '%s' is a base model; %s must be %s", ref->param,
                                    ref->name, ref->param, ref->what);
    else if (strcmp(row.status, "ready") != 0)
        *replied = http_reply_error(r, 400, "model_not_ready", ref->param, "%s: model '%s' is %s",
                                    ref->param, ref->name, row.status);
    else {
        ref->base_model = row.id;
        return 1;
    }
    return 0;
}

/* In the caller's transaction: ref names a stored checkpoint of a job of a
 * fitting type (and, by job, a succeeded job with a final checkpoint).
 * 1 ok with ref->checkpoint_id set, or when absent; 0 replied. */
static int resolve_model(request *r, model_ref *ref, enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    if (ref->name != NULL && !resolve_model_name(r, ref, replied))
        return 0;
    if (ref->base_model > 0)
        return 1;
    checkpoint_origin origin;
    int found = checkpoints_store_origin(r->db, ref->id, ref->by_job, &origin);
    const char *type = origin.job_type, *status = origin.job_status;
    const int64_t checkpoint = origin.checkpoint_id;
    const char *noun = ref->by_job ? "job" : "checkpoint";
    if (found < 0)
        *replied = http_reply_db_error(r);
    else if (found == 0)
        *replied =
            http_reply_error(r, 400, ref->by_job ? "job_not_found" : "checkpoint_not_found",
                             ref->param, "%s: no %s %lld", ref->param, noun, (long long)ref->id);
    else if (!http_one_of(type, ref->from_types))
        *replied = http_reply_error(r, 400, "invalid_model", ref->param,
                                    "%s: %s %lld %s a %s job; %s must be %s", ref->param, noun,
                                    (long long)ref->id, ref->by_job ? "is" : "is from", type,
                                    ref->param, ref->what);
    else if (ref->by_job && (strcmp(status, "succeeded") != 0 || checkpoint == 0))
        *replied = http_reply_error(r, 400, "model_not_ready", ref->param,
                                    "%s: job %lld is %s; \"job:N\" names a succeeded job's final "
                                    "checkpoint (or name one of its checkpoints by id)",
                                    ref->param, (long long)ref->id, status);
    else {
        ref->checkpoint_id = checkpoint;
        return 1;
    }
    return 0;
}

/* The newest ranking of project id that gives preference pairs (not a
 * skip, not all ties, not by an excluded annotator), into *cutoff (0 if none). 1 the project
 * exists, 0 not, -1 error. */
int jobs_project_ranking_cutoff(sqlite3 *db, int64_t id, int64_t *cutoff) {
    int found = db_row_exists(db, "SELECT 1 FROM projects WHERE id = ?1", id);
    if (found <= 0)
        return found;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT max(k.id) FROM rankings k JOIN comparisons c ON c.id = "
                           "k.comparison_id WHERE c.project_id = ?1 AND k.skipped = 0 AND "
                           "EXISTS (SELECT 1 FROM preference_pairs p WHERE p.ranking_id = k.id) "
                           "AND NOT " PROJECT_EXCLUDED_RANKING,
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *cutoff = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : -1;
}

/* In the caller's transaction: the annotation project a reward job trains
 * on exists and has rankings that give preference pairs. Its rankings up
 * to now are the job's data: *cutoff = the newest one's id. 1 ok (or
 * absent), 0 replied. */
static int resolve_project(request *r, const json_t *value, int64_t *cutoff,
                           enum MHD_Result *replied) {
    if (value == NULL)
        return 1;
    const int64_t id = json_integer_value(value);
    int found = jobs_project_ranking_cutoff(r->db, id, cutoff);
    if (found < 0)
        *replied = http_reply_db_error(r);
    else if (found == 0)
        *replied = http_reply_error(r, 400, "project_not_found", "training_project",
                                    "training_project: no project %lld", (long long)id);
    else if (*cutoff == 0)
        *replied = http_reply_error(r, 400, "project_has_no_rankings", "training_project",
                                    "training_project: project %lld has no rankings that order "
                                    "two candidates yet (skips and all-tie rankings say nothing)",
                                    (long long)id);
    else
        return 1;
    return 0;
}

/* What POST /v1/jobs names besides datasets, as the request gives them. */
typedef struct job_ref_params {
    model_ref model, reward_model;
    const json_t *project; /* training_project */
    int64_t ranking_cutoff;
} job_ref_params;

/* The lineage's registered base model (0: a GPT-2 from scratch). */
static int64_t lineage_base_model(sqlite3 *db, const job_ref_params *refs) {
    return refs->model.base_model > 0 ? refs->model.base_model
                                      : models_store_checkpoint_base(db, refs->model.checkpoint_id);
}

/* A hyperparameters.context the request gave must fit the positions of
 * the lineage's registered model (its config.json; rlhf-train refuses the
 * same, job_check_context). 1 ok, 0 replied. */
static int check_context(request *r, const job_type *type, const void *cfg,
                         const job_ref_params *refs, enum MHD_Result *replied) {
    const int64_t base = lineage_base_model(r->db, refs);
    char dir[4096], err[600];
    if (base <= 0)
        return 1;
    const int found =
        model_dir_path(r->db, r->srv->cfg.data_dir, base, dir, sizeof dir, err, sizeof err);
    if (found < 0)
        *replied = http_reply_error(r, 500, "artifact_unreadable", NULL, "%s", err);
    else if (found == 1 && job_check_context(type, cfg, dir, err, sizeof err) != 0)
        *replied = http_reply_error(r, 400, "invalid_hyperparameter", "hyperparameters.context",
                                    "%s", err);
    else
        return 1;
    return 0;
}

/* Stores the validated job with its dataset links in one transaction and
 * replies with it; a dataset or checkpoint that does not fit stores
 * nothing. */
static enum MHD_Result job_store(request *r, const job_type *type, const void *cfg,
                                 bool context_given, int64_t max_attempts,
                                 const job_dataset_ref datasets[2], job_ref_params *refs,
                                 int64_t ranks, const job_create_view *view) {
    json_t *resolved = hparams_to_json(type->hparams, cfg);
    /* Stored at full precision: the worker must read back the very same
     * doubles (replies print 15 digits, http.h). */
    char *config = json_dumps(resolved, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(resolved);
    if (config == NULL || db_begin(r->db) != SQLITE_OK) {
        free(config);
        return http_reply_db_error(r);
    }
    enum MHD_Result replied;
    if (!check_job_dataset(r, type, &datasets[0], &replied) ||
        !check_job_dataset(r, type, &datasets[1], &replied) ||
        !resolve_model(r, &refs->model, &replied) ||
        !resolve_model(r, &refs->reward_model, &replied) ||
        !resolve_project(r, refs->project, &refs->ranking_cutoff, &replied) ||
        (context_given && !check_context(r, type, cfg, refs, &replied))) {
        free(config);
        db_rollback(r->db);
        return replied;
    }
    const job_new job = {
        .type = type->name,
        .config = config,
        .max_attempts = max_attempts,
        .created_by = r->token.id,
        .refs = {.model = refs->model.checkpoint_id,
                 .reward_model = refs->reward_model.checkpoint_id,
                 .project = refs->project ? json_integer_value(refs->project) : 0,
                 .ranking_cutoff = refs->ranking_cutoff,
                 /* the lineage's base model: its tokenizer and chat format */
                 .base_model = lineage_base_model(r->db, refs)},
        .ranks = ranks,
    };
    int64_t id = jobs_db_insert(r->db, &job);
    free(config);
    json_t *out = NULL;
    int ok = id > 0;
    for (int i = 0; ok && i < 2; i++)
        if (datasets[i].value != NULL)
            ok = jobs_db_link_dataset(r->db, id, datasets[i].purpose,
                                      json_integer_value(datasets[i].value)) == 0;
    if (ok && view != NULL)
        ok = view->store(r->db, id, view->ctx);
    if (!ok || (out = view ? view->reply(r->db, id, view->ctx) : job_load(r->db, id)) == NULL) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    replied = http_commit_reply(r, 200, out);
    scheduler_wake(r->srv->scheduler);
    return replied;
}

/* Which of training_file, training_project, model and reward_model the
 * type takes and needs, and their shapes: 1 ok, 0 replied. Existence and
 * kind are checked in job_store's transaction. */
static int check_job_refs(request *r, const job_type *type, const job_dataset_ref refs[2],
                          job_ref_params *models, enum MHD_Result *replied) {
    const bool rankings = type->needs_train_data && type->data_kind == JOB_DATA_RANKINGS;
    const bool prompts = type->needs_train_data && type->data_kind == JOB_DATA_PROMPTS;
    if (models->project != NULL && !rankings)
        *replied = http_reply_error(r, 400, "invalid_value", "training_project",
                                    "%s jobs do not train on rankings; leave training_project out",
                                    type->name);
    else if (models->project != NULL &&
             (!json_is_integer(models->project) || json_integer_value(models->project) <= 0))
        *replied = http_reply_error(r, 400, "invalid_type", "training_project",
                                    "training_project must be a project id (a positive integer)");
    else if (models->project != NULL && refs[0].value != NULL)
        *replied = http_reply_error(r, 400, "invalid_value", "training_project",
                                    "give training_file (a preference dataset) or "
                                    "training_project (an annotation project), not both");
    else if (type->needs_train_data && refs[0].value == NULL && models->project == NULL)
        *replied =
            http_reply_error(r, 400, "missing_required_parameter", "training_file",
                             "%s jobs need training_file: the id of a dataset of format "
                             "%s%s",
                             type->name, job_dataset_format(type),
                             rankings ? ", or training_project: an annotation project id" : "");
    else if (!check_dataset_ref_syntax(r, type, &refs[0], replied) ||
             !check_dataset_ref_syntax(r, type, &refs[1], replied))
        return 0;
    else if (models->model.value != NULL && !type->needs_train_data)
        *replied = http_reply_error(r, 400, "invalid_value", "model",
                                    "%s jobs start from no model; leave model out", type->name);
    else if (models->model.value == NULL && (rankings || prompts))
        *replied = http_reply_error(r, 400, "missing_required_parameter", "model",
                                    "%s jobs need model: the SFT checkpoint to start from (a "
                                    "checkpoint id, or \"job:N\" for sft job N's final one)",
                                    type->name);
    else if (models->reward_model.value != NULL && type->reward_model == JOB_REWARD_NONE)
        *replied =
            http_reply_error(r, 400, "invalid_value", "reward_model",
                             "%s jobs take no reward model; leave reward_model out", type->name);
    else if (models->reward_model.value == NULL && type->reward_model == JOB_REWARD_REQUIRED)
        *replied = http_reply_error(r, 400, "missing_required_parameter", "reward_model",
                                    "%s jobs need reward_model: a reward job's checkpoint (a "
                                    "checkpoint id, or \"job:N\")",
                                    type->name);
    else if (check_model_syntax(r, &models->model, replied) &&
             check_model_syntax(r, &models->reward_model, replied))
        return 1;
    return 0;
}

enum MHD_Result jobs_create(request *r, const json_t *body, const job_create_view *view) {
    enum MHD_Result replied;
    static const char *const keys[] = {
        "type",  "hyperparameters", "max_attempts",     "training_file", "validation_file",
        "model", "reward_model",    "training_project", "ranks",         NULL};
    json_t *type_v = json_object_get(body, "type");
    json_t *hp = json_object_get(body, "hyperparameters");
    json_t *attempts_v = json_object_get(body, "max_attempts");
    const job_dataset_ref refs[2] = {
        {"training_file", "training", json_object_get(body, "training_file")},
        {"validation_file", "validation", json_object_get(body, "validation_file")}};
    job_ref_params models = {.model = {"model", json_object_get(body, "model"), policy_job_types,
                                       "a policy: a checkpoint of an sft or ppo job"},
                             .reward_model = {"reward_model", json_object_get(body, "reward_model"),
                                              reward_job_types,
                                              "a reward model: a checkpoint of a reward job"},
                             .project = json_object_get(body, "training_project")};
    const job_type *type = json_is_string(type_v) ? job_type_find(json_string_value(type_v)) : NULL;
    int64_t max_attempts = attempts_v ? json_integer_value(attempts_v) : r->srv->cfg.max_attempts;
    json_t *ranks_v = json_object_get(body, "ranks"); /* data-parallel ranks (worker_launch.h) */
    const int64_t ranks = ranks_v ? json_integer_value(ranks_v) : 1;
    void *cfg = type ? calloc(1, type->hparams->config_bytes) : NULL;
    char err[512], param[96], names[256];
    job_available_types(names, sizeof names);
    if (!http_check_keys(r, body, keys, &replied))
        ;
    else if (type_v == NULL)
        replied = http_reply_error(r, 400, "missing_required_parameter", "type",
                                   "type is required (one of: %s)", names);
    else if (!json_is_string(type_v))
        replied = http_reply_error(r, 400, "invalid_type", "type", "type must be a string");
    else if (type == NULL) {
        const char *name = json_string_value(type_v);
        bool planned = http_one_of(name, planned_job_types);
        replied =
            http_reply_error(r, 400, planned ? "job_type_unavailable" : "unknown_job_type", "type",
                             planned ? "job type '%.64s' is not available yet: this "
                                       "build's engine does not implement it (available: %s)"
                                     : "unknown job type '%.64s' (available: %s)",
                             name, names);
    } else if (type->daemon_only)
        replied = http_reply_error(r, 400, "job_type_unavailable", "type",
                                   "%s jobs are created by rlhfd itself (an online loop's rounds, "
                                   "POST /v1/loops), which reads their output",
                                   type->name);
    else if (type->needs_train_data && job_dataset_format(type) == NULL)
        replied = http_reply_error(r, 400, "job_type_unavailable", "type",
                                   "job type '%s' is in the engine, but the daemon cannot feed it "
                                   "its training data yet; run it with rlhf-train %s",
                                   type->name, type->name);
    else if (hp != NULL && !json_is_object(hp))
        replied = http_reply_error(r, 400, "invalid_type", "hyperparameters",
                                   "hyperparameters must be a JSON object");
    else if (attempts_v != NULL &&
             (!json_is_integer(attempts_v) || max_attempts < 1 || max_attempts > 100))
        replied = http_reply_error(r, 400, "invalid_value", "max_attempts",
                                   "max_attempts must be an integer in [1, 100]");
    else if (ranks_v != NULL && !json_is_integer(ranks_v))
        replied = http_reply_error(r, 400, "invalid_type", "ranks", "ranks must be an integer");
    else if (ranks != 1 && !type->data_parallel)
        replied = http_reply_error(r, 400, "invalid_value", "ranks",
                                   "%s jobs run in one process; ranks must be 1", type->name);
    else if (worker_launch_check(&r->srv->cfg, ranks, err, sizeof err) != 0)
        replied = http_reply_error(
            r, 400, ranks < 1 || ranks > JOBS_DB_MAX_RANKS ? "invalid_value" : "ranks_unavailable",
            "ranks", "%s", err);
    else if (!check_job_refs(r, type, refs, &models, &replied))
        ;
    else if (cfg == NULL)
        replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    else if (job_config_from_json(type, cfg, hp, err, sizeof err) != 0) {
        if (view != NULL)
            view->hyperparameter_param(err, param, sizeof param, view->ctx);
        else
            hyperparameter_param(err, param, sizeof param);
        replied = http_reply_error(r, 400, "invalid_hyperparameter", param, "%s", err);
    } else if (type->reward_model == JOB_REWARD_OPTIONAL && models.reward_model.value == NULL &&
               !has_grader(type, cfg))
        replied = http_reply_error(r, 400, "missing_required_parameter", "hyperparameters.grader",
                                   "%s jobs need a reward: hyperparameters.grader (a grader "
                                   "object), reward_model (a reward job's checkpoint), or both",
                                   type->name);
    else
        replied = job_store(r, type, cfg, json_object_get(hp, "context") != NULL, max_attempts,
                            refs, &models, ranks, view);
    free(cfg);
    return replied;
}

enum MHD_Result route_jobs_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    replied = jobs_create(r, body, NULL);
    json_decref(body);
    return replied;
}

/* ---- GET /v1/jobs, GET /v1/jobs/{id} ---------------------------------------- */

static const char *const job_statuses[] = {"validating_files", "queued",    "running", "succeeded",
                                           "failed",           "cancelled", NULL};

enum MHD_Result route_jobs_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    const char *status = http_query(r, "status");
    const char *type = http_query(r, "type");
    if (status != NULL && !http_one_of(status, job_statuses))
        return http_reply_error(r, 400, "invalid_value", "status",
                                "status must be one of validating_files, queued, running, "
                                "succeeded, failed, cancelled");
    sqlite3_stmt *st = jobs_db_list(r->db, after, status, type, limit + 1);
    if (st == NULL)
        return http_reply_db_error(r);
    return http_reply_rows(r, st, limit, 0, job_json_from_stmt);
}

enum MHD_Result route_jobs_get(request *r) {
    json_t *job = job_load(r->db, r->path_id);
    return job ? http_reply_json(r, 200, job) : job_reply_not_found(r);
}

/* ---- POST /v1/jobs/{id}/cancel ------------------------------------------------ */

/* A job not yet running is cancelled at once; a running one is marked, and
 * its worker (signalled by the scheduler, or told by its next heartbeat)
 * checkpoints and records 'cancelled'. Cancelling twice is not an error. */
enum MHD_Result jobs_cancel(request *r, const job_create_view *view) {
    char status[JOBS_DB_STATUS_BYTES];
    switch (jobs_db_request_cancel(r->db, r->path_id, status)) {
        case JOB_CANCEL_NO_JOB:
            return job_reply_not_found(r);
        case JOB_CANCEL_TOO_LATE:
            return http_reply_error(r, 409, "job_not_cancellable", NULL, "job %lld has already %s",
                                    (long long)r->path_id, status);
        case JOB_CANCEL_DONE:
        case JOB_CANCEL_ASKED:
            scheduler_wake(r->srv->scheduler);
            /* fall through */
        case JOB_CANCEL_ALREADY:
            return http_reply_json(r, 200,
                                   view ? view->reply(r->db, r->path_id, view->ctx)
                                        : job_load(r->db, r->path_id));
        case JOB_CANCEL_ERROR:
            break;
    }
    return http_reply_db_error(r);
}

enum MHD_Result route_jobs_cancel(request *r) {
    return jobs_cancel(r, NULL);
}
