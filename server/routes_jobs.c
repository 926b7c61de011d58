/* Jobs: create (validated against the engine's job registry, with the
 * datasets it trains on), list, get, cancel, and the job's events,
 * metrics, checkpoints and live stream.
 *
 * Lists are newest first with `after` = the last id of the previous page
 * (the OpenAI convention); metrics are by step, oldest first, with
 * `after_step`.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "jobs.h"
#include "metrics_page.h"
#include "park.h"
#include "read_cache.h"
#include "routes.h"
#include "scheduler.h"
#include "worker_launch.h"

#define JOB_COLUMNS                                                                                \
    "id, type, status, config, attempts, max_attempts, cancel_requested, created_at, "             \
    "started_at, finished_at, error, "                                                             \
    "(SELECT dataset_id FROM job_datasets WHERE job_id = jobs.id AND purpose = 'training'), "      \
    "(SELECT dataset_id FROM job_datasets WHERE job_id = jobs.id AND purpose = 'validation'), "    \
    "parent_checkpoint_id, reward_checkpoint_id, training_project_id, "                            \
    "(SELECT max(id) FROM checkpoints WHERE job_id = jobs.id AND kind = 'final'), ranks"

static json_t *column_int_or_null(sqlite3_stmt *st, int i) {
    return sqlite3_column_type(st, i) == SQLITE_NULL ? json_null()
                                                     : json_integer(sqlite3_column_int64(st, i));
}

/* A JSON text column, parsed; null if NULL or unparsable. */
static json_t *column_json(sqlite3_stmt *st, int i) {
    const char *text = (const char *)sqlite3_column_text(st, i);
    json_t *v = text ? json_loads(text, 0, NULL) : NULL;
    return v ? v : json_null();
}

static json_t *job_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    const char *error = (const char *)sqlite3_column_text(st, 10);
    json_t *job = json_pack(
        "{s:I, s:s, s:s, s:s, s:o, s:o, s:o, s:I, s:I, s:b, s:I, s:o, s:o, s:o}", "id",
        (json_int_t)sqlite3_column_int64(st, 0), "object", "job", "type",
        (const char *)sqlite3_column_text(st, 1), "status",
        (const char *)sqlite3_column_text(st, 2), "training_file", column_int_or_null(st, 11),
        "validation_file", column_int_or_null(st, 12), "hyperparameters", column_json(st, 3),
        "attempts", (json_int_t)sqlite3_column_int64(st, 4), "max_attempts",
        (json_int_t)sqlite3_column_int64(st, 5), "cancel_requested", sqlite3_column_int(st, 6) != 0,
        "created_at", (json_int_t)sqlite3_column_int64(st, 7), "started_at",
        column_int_or_null(st, 8), "finished_at", column_int_or_null(st, 9), "error",
        error ? json_pack("{s:s}", "message", error) : json_null());
    /* What the job starts from and, once it succeeded, its result: the
     * OpenAI fine-tuning names (model, fine_tuned_model), as checkpoint ids. */
    if (job != NULL) {
        json_object_set_new(job, "model", column_int_or_null(st, 13));
        json_object_set_new(job, "reward_model", column_int_or_null(st, 14));
        json_object_set_new(job, "training_project", column_int_or_null(st, 15));
        json_object_set_new(job, "fine_tuned_model",
                            strcmp((const char *)sqlite3_column_text(st, 2), "succeeded") == 0
                                ? column_int_or_null(st, 16)
                                : json_null());
        json_object_set_new(job, "ranks", json_integer(sqlite3_column_int64(st, 17)));
    }
    return job;
}

/* The job as JSON, or NULL if there is none (or on error). */
static json_t *job_load(sqlite3 *db, int64_t id) {
    return db_load_row(db, "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1", id, job_from_row,
                       NULL);
}

static enum MHD_Result reply_no_job(request *r) {
    return http_reply_error(r, 404, "job_not_found", NULL, "no job %lld", (long long)r->path_id);
}

/* 1 if job path_id exists, else 0 after replying 404 (or 500). */
static int require_job(request *r, enum MHD_Result *replied) {
    /* every job route starts here: a cached statement */
    sqlite3_stmt *st = db_cached_prepare(r->db, "SELECT 1 FROM jobs WHERE id = ?1");
    int found = -1;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, r->path_id);
        int rc = sqlite3_step(st);
        found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
        db_cached_done(st);
    }
    if (found <= 0)
        *replied = found == 0 ? reply_no_job(r) : http_reply_db_error(r);
    return found > 0;
}

/* ---- POST /v1/jobs ---------------------------------------------------------- */

/* Job types the service will run once the engine has them. */
static const char *const planned_job_types[] = {"sft", "reward", "ppo", NULL};

/* The dataset format (datasets.format) each job type trains on, for
 * training_file and validation_file alike. The worker (train/db_job.c)
 * turns that format's rows into the job's inputs. A type the engine has
 * that needs training data but is not listed here is refused with
 * job_type_unavailable: the daemon cannot feed it yet. */
static const struct {
    const char *job_type;
    const char *dataset_format;
} job_dataset_formats[] = {
    {"sft", "sft"},
    {"reward", "preference"},
    {"ppo", "prompts"},
};

static const char *job_dataset_format(const job_type *type) {
    for (size_t i = 0; i < sizeof job_dataset_formats / sizeof job_dataset_formats[0]; i++)
        if (strcmp(job_dataset_formats[i].job_type, type->name) == 0)
            return job_dataset_formats[i].dataset_format;
    return NULL;
}

/* The engine's messages name the offending key in the first '...' of the
 * text ("hyperparameter 'gamma' must be ..."); param becomes
 * "hyperparameters.gamma", or "hyperparameters" if there is no key. */
static void hyperparameter_param(const char *err, char *param, size_t len) {
    const char *open = strchr(err, '\'');
    const char *close = open ? strchr(open + 1, '\'') : NULL;
    if (close != NULL && close - open - 1 < 64)
        snprintf(param, len, "hyperparameters.%.*s", (int)(close - open - 1), open + 1);
    else
        snprintf(param, len, "hyperparameters");
}

static void available_types(char *out, size_t len) {
    size_t used = 0;
    out[0] = '\0';
    for (const job_type *const *t = job_types; *t && used < len; t++)
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
 * the job type trains on; links it to job_id. 1 ok, 0 replied (the caller
 * rolls back). */
static int link_job_dataset(request *r, const job_type *type, const job_dataset_ref *ref,
                            int64_t job_id, enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    const int64_t id = json_integer_value(ref->value);
    const char *want = job_dataset_format(type);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT format, n_rows FROM datasets WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    char format[32] = "";
    int64_t n_rows = 0;
    if (rc == SQLITE_ROW) {
        snprintf(format, sizeof format, "%s", (const char *)sqlite3_column_text(st, 0));
        n_rows = sqlite3_column_int64(st, 1);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        *replied = http_reply_db_error(r);
    else if (rc == SQLITE_DONE)
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
    else if (sqlite3_prepare_v2(r->db,
                                "INSERT INTO job_datasets (job_id, purpose, dataset_id) "
                                "VALUES (?1, ?2, ?3)",
                                -1, &st, NULL) != SQLITE_OK)
        *replied = http_reply_db_error(r);
    else {
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_text(st, 2, ref->purpose, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, id);
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE)
            return 1;
        *replied = http_reply_db_error(r);
    }
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
    int64_t checkpoint_id;         /* resolved */
} model_ref;

static const char *const policy_job_types[] = {"sft", "ppo", NULL};
static const char *const reward_job_types[] = {"reward", NULL};

/* "job:12" → 12; -1 if text is not prefix followed by a positive integer. */
static int64_t prefixed_id(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    if (strncmp(text, prefix, n) != 0 || text[n] < '1' || text[n] > '9')
        return -1;
    char *end;
    long long v = strtoll(text + n, &end, 10);
    return *end == '\0' && v > 0 ? v : -1;
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
    }
    *replied = http_reply_error(
        r, 400, json_is_integer(ref->value) ? "invalid_value" : "invalid_type", ref->param,
        "%s must be a checkpoint id (a positive integer or "
        "\"checkpoint:N\") or \"job:N\" (job N's final checkpoint)",
        ref->param);
    return 0;
}

/* In the caller's transaction: ref names a stored checkpoint of a job of a
 * fitting type (and, by job, a succeeded job with a final checkpoint).
 * 1 ok with ref->checkpoint_id set, or when absent; 0 replied. */
static int resolve_model(request *r, model_ref *ref, enum MHD_Result *replied) {
    if (ref->value == NULL)
        return 1;
    sqlite3_stmt *st = NULL;
    const char *sql =
        ref->by_job
            ? "SELECT type, status, (SELECT max(c.id) FROM checkpoints c WHERE c.job_id = jobs.id "
              "AND c.kind = 'final' AND c.bytes IS NOT NULL) FROM jobs WHERE id = ?1"
            : "SELECT j.type, j.status, c.id FROM checkpoints c JOIN jobs j ON j.id = c.job_id "
              "WHERE c.id = ?1 AND c.bytes IS NOT NULL";
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    sqlite3_bind_int64(st, 1, ref->id);
    int rc = sqlite3_step(st);
    char type[64] = "", status[32] = "";
    int64_t checkpoint = 0;
    if (rc == SQLITE_ROW) {
        snprintf(type, sizeof type, "%s", (const char *)sqlite3_column_text(st, 0));
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 1));
        checkpoint = sqlite3_column_int64(st, 2);
    }
    sqlite3_finalize(st);
    const char *noun = ref->by_job ? "job" : "checkpoint";
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        *replied = http_reply_db_error(r);
    else if (rc == SQLITE_DONE)
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

/* In the caller's transaction: the annotation project a reward job trains
 * on exists and has rankings that give preference pairs (not skips, not
 * all ties). Its rankings up to now are the job's data: *cutoff = the
 * newest one's id. 1 ok (or absent), 0 replied. */
static int resolve_project(request *r, const json_t *value, int64_t *cutoff,
                           enum MHD_Result *replied) {
    if (value == NULL)
        return 1;
    const int64_t id = json_integer_value(value);
    int found = db_row_exists(r->db, "SELECT 1 FROM projects WHERE id = ?1", id);
    if (found <= 0) {
        *replied = found < 0 ? http_reply_db_error(r)
                             : http_reply_error(r, 400, "project_not_found", "training_project",
                                                "training_project: no project %lld", (long long)id);
        return 0;
    }
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT max(rk.id) FROM rankings rk JOIN comparisons c ON c.id = "
                           "rk.comparison_id WHERE c.project_id = ?1 AND rk.skipped = 0 AND "
                           "EXISTS (SELECT 1 FROM preference_pairs p WHERE p.ranking_id = rk.id)",
                           -1, &st, NULL) != SQLITE_OK) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *cutoff = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW)
        *replied = http_reply_db_error(r);
    else if (*cutoff == 0)
        *replied = http_reply_error(r, 400, "project_has_no_rankings", "training_project",
                                    "training_project: project %lld has no rankings that order "
                                    "two candidates yet (skips and all-tie rankings say nothing)",
                                    (long long)id);
    else
        return 1;
    return 0;
}

/* What POST /v1/jobs names besides datasets. */
typedef struct job_refs {
    model_ref model, reward_model;
    const json_t *project; /* training_project */
    int64_t ranking_cutoff;
} job_refs;

static int store_job_refs(sqlite3 *db, int64_t job_id, const job_refs *refs) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "UPDATE jobs SET parent_checkpoint_id = ?2, reward_checkpoint_id = ?3, "
                           "training_project_id = ?4, training_ranking_cutoff = ?5 WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, job_id);
    if (refs->model.checkpoint_id > 0)
        sqlite3_bind_int64(st, 2, refs->model.checkpoint_id);
    if (refs->reward_model.checkpoint_id > 0)
        sqlite3_bind_int64(st, 3, refs->reward_model.checkpoint_id);
    if (refs->project != NULL) {
        sqlite3_bind_int64(st, 4, json_integer_value(refs->project));
        sqlite3_bind_int64(st, 5, refs->ranking_cutoff);
    }
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Inserts a queued job and its first event in the caller's transaction. */
static int64_t job_insert(sqlite3 *db, const char *type, const char *config, int64_t max_attempts,
                          int64_t token_id) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO jobs (type, status, config, max_attempts, created_by, "
                           "created_at) VALUES (?1, 'queued', ?2, ?3, ?4, ?5)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, config, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, max_attempts);
        sqlite3_bind_int64(st, 4, token_id);
        sqlite3_bind_int64(st, 5, db_now_s());
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    char message[128];
    snprintf(message, sizeof message, "%s job created and queued", type);
    if (id > 0 && db_insert_job_event(db, id, "info", "message", "created", message, NULL) != 0)
        id = -1;
    return id;
}

/* Stores the validated job with its dataset links in one transaction and
 * replies with it; a dataset that does not fit stores nothing. */
static enum MHD_Result job_store(request *r, const job_type *type, const void *cfg,
                                 int64_t max_attempts, const job_dataset_ref refs[2],
                                 job_refs *models, int64_t ranks) {
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
    int64_t id = job_insert(r->db, type->name, config, max_attempts, r->token.id);
    free(config);
    if (id <= 0) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    if (!link_job_dataset(r, type, &refs[0], id, &replied) ||
        !link_job_dataset(r, type, &refs[1], id, &replied) ||
        !resolve_model(r, &models->model, &replied) ||
        !resolve_model(r, &models->reward_model, &replied) ||
        !resolve_project(r, models->project, &models->ranking_cutoff, &replied)) {
        db_rollback(r->db);
        return replied;
    }
    if (store_job_refs(r->db, id, models) != 0) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    if (ranks != 1 && worker_launch_set_job_ranks(r->db, id, ranks) != 0) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    json_t *job = job_load(r->db, id);
    if (job == NULL) {
        replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    replied = http_commit_reply(r, 200, job);
    scheduler_wake(r->srv->scheduler);
    return replied;
}

/* Which of training_file, training_project, model and reward_model the
 * type takes and needs, and their shapes: 1 ok, 0 replied. Existence and
 * kind are checked in job_store's transaction. */
static int check_job_refs(request *r, const job_type *type, const job_dataset_ref refs[2],
                          job_refs *models, enum MHD_Result *replied) {
    const bool rankings = type->needs_train_data && type->data_kind == JOB_DATA_RANKINGS;
    const bool ppo = type->needs_train_data && type->data_kind == JOB_DATA_PROMPTS;
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
    else if (models->model.value == NULL && (rankings || ppo))
        *replied = http_reply_error(r, 400, "missing_required_parameter", "model",
                                    "%s jobs need model: the SFT checkpoint to start from (a "
                                    "checkpoint id, or \"job:N\" for sft job N's final one)",
                                    type->name);
    else if (models->reward_model.value != NULL && !ppo)
        *replied =
            http_reply_error(r, 400, "invalid_value", "reward_model",
                             "%s jobs take no reward model; leave reward_model out", type->name);
    else if (models->reward_model.value == NULL && ppo)
        *replied = http_reply_error(r, 400, "missing_required_parameter", "reward_model",
                                    "%s jobs need reward_model: a reward job's checkpoint (a "
                                    "checkpoint id, or \"job:N\")",
                                    type->name);
    else if (check_model_syntax(r, &models->model, replied) &&
             check_model_syntax(r, &models->reward_model, replied))
        return 1;
    return 0;
}

enum MHD_Result route_jobs_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {
        "type",  "hyperparameters", "max_attempts",     "training_file", "validation_file",
        "model", "reward_model",    "training_project", "ranks",         NULL};
    json_t *type_v = json_object_get(body, "type");
    json_t *hp = json_object_get(body, "hyperparameters");
    json_t *attempts_v = json_object_get(body, "max_attempts");
    const job_dataset_ref refs[2] = {
        {"training_file", "training", json_object_get(body, "training_file")},
        {"validation_file", "validation", json_object_get(body, "validation_file")}};
    job_refs models = {.model = {"model", json_object_get(body, "model"), policy_job_types,
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
    available_types(names, sizeof names);
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
    } else if (type->needs_train_data && job_dataset_format(type) == NULL)
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
            r, 400,
            ranks < 1 || ranks > WORKER_LAUNCH_MAX_RANKS ? "invalid_value" : "ranks_unavailable",
            "ranks", "%s", err);
    else if (!check_job_refs(r, type, refs, &models, &replied))
        ;
    else if (cfg == NULL)
        replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    else if (job_config_from_json(type, cfg, hp, err, sizeof err) != 0) {
        hyperparameter_param(err, param, sizeof param);
        replied = http_reply_error(r, 400, "invalid_hyperparameter", param, "%s", err);
    } else
        replied = job_store(r, type, cfg, max_attempts, refs, &models, ranks);
    free(cfg);
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
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT " JOB_COLUMNS " FROM jobs WHERE (?1 = 0 OR id < ?1) AND "
                           "(?2 IS NULL OR status = ?2) AND (?3 IS NULL OR type = ?3) "
                           "ORDER BY id DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, limit + 1);
    return http_reply_rows(r, st, limit, 0, job_from_row);
}

enum MHD_Result route_jobs_get(request *r) {
    json_t *job = job_load(r->db, r->path_id);
    return job ? http_reply_json(r, 200, job) : reply_no_job(r);
}

/* ---- POST /v1/jobs/{id}/cancel ------------------------------------------------ */

/* A job not yet running is cancelled at once; a running one is marked, and
 * its worker (signalled by the scheduler, or told by its next heartbeat)
 * checkpoints and records 'cancelled'. Cancelling twice is not an error. */
enum MHD_Result route_jobs_cancel(request *r) {
    if (db_begin(r->db) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, "SELECT status, cancel_requested FROM jobs WHERE id = ?1", -1,
                           &st, NULL) != SQLITE_OK) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    sqlite3_bind_int64(st, 1, r->path_id);
    char status[32] = "";
    int already = 0;
    if (sqlite3_step(st) == SQLITE_ROW) {
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        already = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    if (status[0] == '\0') {
        db_rollback(r->db);
        return reply_no_job(r);
    }
    /* validating_files: a worker has claimed the job and checks its inputs. */
    bool waiting = strcmp(status, "queued") == 0;
    bool running = strcmp(status, "running") == 0 || strcmp(status, "validating_files") == 0;
    if (!waiting && !running) {
        db_rollback(r->db);
        if (strcmp(status, "cancelled") == 0)
            return http_reply_json(r, 200, job_load(r->db, r->path_id));
        return http_reply_error(r, 409, "job_not_cancellable", NULL, "job %lld has already %s",
                                (long long)r->path_id, status);
    }
    int ok = 1;
    if (!already) {
        ok = sqlite3_prepare_v2(r->db,
                                "UPDATE jobs SET cancel_requested = 1, "
                                "status = CASE WHEN ?2 THEN 'cancelled' ELSE status END, "
                                "finished_at = CASE WHEN ?2 THEN ?3 ELSE finished_at END "
                                "WHERE id = ?1",
                                -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(st, 1, r->path_id);
            sqlite3_bind_int(st, 2, waiting);
            sqlite3_bind_int64(st, 3, db_now_s());
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        sqlite3_finalize(st);
        ok = ok && db_insert_job_event(r->db, r->path_id, "info", "message",
                                       waiting ? "cancelled" : "cancel_requested",
                                       waiting ? "job cancelled before it started"
                                               : "cancellation requested; the worker will "
                                                 "checkpoint and stop",
                                       NULL) == 0;
    }
    if (!ok || db_commit(r->db) != SQLITE_OK) {
        db_rollback(r->db);
        return http_reply_db_error(r);
    }
    scheduler_wake(r->srv->scheduler);
    return http_reply_json(r, 200, job_load(r->db, r->path_id));
}

/* ---- GET /v1/jobs/{id}/events ------------------------------------------------- */

static json_t *event_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    (void)db;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:o}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "job.event", "job_id",
                     (json_int_t)job_id, "created_at", (json_int_t)sqlite3_column_int64(st, 1),
                     "level", (const char *)sqlite3_column_text(st, 2), "type",
                     (const char *)sqlite3_column_text(st, 3), "code",
                     (const char *)sqlite3_column_text(st, 4), "message",
                     (const char *)sqlite3_column_text(st, 5), "data", column_json(st, 6));
}

#define EVENT_COLUMNS "id, created_at, level, type, code, message, data"

enum MHD_Result route_jobs_events(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 1000, &limit, &after, &replied) ||
        !require_job(r, &replied))
        return replied;
    return http_reply_page(r,
                           "SELECT " EVENT_COLUMNS " FROM job_events WHERE job_id = ?3 AND "
                           "(?1 = 0 OR id < ?1) ORDER BY id DESC LIMIT ?2",
                           after, limit, r->path_id, event_from_row);
}

/* ---- GET /v1/jobs/{id}/metrics?names=a,b&after_step=S&limit=N ---------------- */

/* Pages are whole steps: data is [{step, metrics: {name: value}}], oldest
 * first, at most limit steps; the next page starts after last_step. */
/* The job's status into status (16 bytes): 1 found, else 0 after replying
 * 404 or 500. */
static int job_status(request *r, char *status, enum MHD_Result *replied) {
    sqlite3_stmt *st = db_cached_prepare(r->db, "SELECT status FROM jobs WHERE id = ?1");
    int found = -1;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, r->path_id);
        int rc = sqlite3_step(st);
        found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
        if (found == 1)
            snprintf(status, 16, "%s", (const char *)sqlite3_column_text(st, 0));
        db_cached_done(st);
    }
    if (found <= 0)
        *replied = found == 0 ? reply_no_job(r) : http_reply_db_error(r);
    return found > 0;
}

/* Pages are whole steps: data is [{step, metrics: {name: value}}], oldest
 * first, at most limit steps; the next page starts after last_step.
 *
 * Three ways to the same bytes (server/metrics_page.h): a series of one
 * name from the read cache (no SQL once a finished job's series is cached;
 * one indexed statement for a running job's, which appends what is new:
 * server/read_cache.h); other named queries from the fast serializer; the
 * rest (every name, or what the fast path declines) from jansson. */
enum MHD_Result route_jobs_metrics(request *r) {
    enum MHD_Result replied;
    int64_t limit, unused;
    if (!http_query_page(r, NULL, 100, 10000, &limit, &unused, &replied))
        return replied;
    const char *after_text = http_query(r, "after_step");
    long long after_step = INT64_MIN;
    char *end;
    bool after_ok = after_text == NULL || (after_step = strtoll(after_text, &end, 10),
                                           *after_text != '\0' && *end == '\0');
    const char *names_text = http_query(r, "names");
    bool one_name = names_text != NULL && names_text[0] != '\0' && strlen(names_text) <= 64 &&
                    strchr(names_text, ',') == NULL;
    read_cache *cache = r->srv->read_cache;
    char *text = NULL;
    size_t len = 0;
    int cached = 0;
    if (cache != NULL && after_ok && one_name &&
        (cached = read_cache_series_serve(cache, r->db, r->path_id, names_text, after_step, limit,
                                          &text, &len)) == 1)
        return http_reply_json_text(r, 200, text, len);
    if (cached < 0)
        return MHD_NO;
    char status[16];
    if (!job_status(r, status, &replied))
        return replied;
    if (!after_ok)
        return http_reply_error(r, 400, "invalid_value", "after_step",
                                "after_step must be an integer");
    json_t *names = NULL;
    if (names_text != NULL) {
        names = json_array();
        for (const char *p = names_text; *p;) {
            size_t n = strcspn(p, ",");
            if (n == 0 || n > 64 || json_array_size(names) >= 64) {
                json_decref(names);
                return http_reply_error(r, 400, "invalid_value", "names",
                                        "names must be a comma-separated list of at most 64 "
                                        "metric names, each 1..64 bytes");
            }
            json_t *name = json_stringn(p, n);
            if (name == NULL) {
                json_decref(names);
                return http_reply_error(r, 400, "invalid_value", "names",
                                        "names must be UTF-8 (percent-encoded in the URL)");
            }
            json_array_append_new(names, name);
            p += n + (p[n] == ',');
        }
    }
    int rc = metrics_page_fast(r->db, r->path_id, after_step, limit, names, &text, &len);
    if (rc == 0)
        rc = metrics_page_json(r->db, r->path_id, after_step, limit, names, &text, &len) == 0 ? 1
                                                                                              : -1;
    json_decref(names);
    if (rc < 0)
        return http_reply_db_error(r);
    return http_reply_json_text(r, 200, text, len);
}

/* ---- checkpoints ---------------------------------------------------------------- */

static json_t *checkpoint_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    (void)db;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:I, s:o, s:I}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "checkpoint", "job_id",
                     (json_int_t)job_id, "step_number", (json_int_t)sqlite3_column_int64(st, 1),
                     "kind", (const char *)sqlite3_column_text(st, 2), "sha256",
                     (const char *)sqlite3_column_text(st, 3), "size_bytes",
                     (json_int_t)sqlite3_column_int64(st, 4), "metrics", column_json(st, 5),
                     "created_at", (json_int_t)sqlite3_column_int64(st, 6));
}

enum MHD_Result route_jobs_checkpoints(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied) ||
        !require_job(r, &replied))
        return replied;
    return http_reply_page(r,
                           "SELECT id, step, kind, sha256, size_bytes, metrics, created_at "
                           "FROM checkpoints WHERE job_id = ?3 AND (?1 = 0 OR id < ?1) "
                           "ORDER BY id DESC LIMIT ?2",
                           after, limit, r->path_id, checkpoint_from_row);
}

/* GET /v1/checkpoints/{id}/content: the safetensors file. */
enum MHD_Result route_checkpoints_content(request *r) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT bytes, sha256, job_id, step FROM checkpoints WHERE id = ?1", -1,
                           &st, NULL) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, r->path_id);
    if (sqlite3_step(st) != SQLITE_ROW || sqlite3_column_type(st, 0) != SQLITE_BLOB) {
        sqlite3_finalize(st);
        return http_reply_error(r, 404, "checkpoint_not_found", NULL,
                                "no checkpoint %lld with stored content", (long long)r->path_id);
    }
    size_t n = (size_t)sqlite3_column_bytes(st, 0);
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        n, (void *)sqlite3_column_blob(st, 0), MHD_RESPMEM_MUST_COPY);
    char disposition[128];
    snprintf(disposition, sizeof disposition,
             "attachment; filename=\"job%lld-step%lld.safetensors\"",
             (long long)sqlite3_column_int64(st, 2), (long long)sqlite3_column_int64(st, 3));
    MHD_add_response_header(resp, "Content-Type", "application/octet-stream");
    MHD_add_response_header(resp, "Content-Disposition", disposition);
    MHD_add_response_header(resp, "x-checkpoint-sha256", (const char *)sqlite3_column_text(st, 1));
    sqlite3_finalize(st);
    return http_queue(r, 200, resp);
}

/* ---- GET /v1/jobs/{id}/stream: Server-Sent Events ----------------------------- */

/* Each job event becomes
 *   id: <event id>\nevent: message|metrics\ndata: <event JSON>\n\n
 * Resume with Last-Event-ID (or ?after=). When the job has ended and every
 * event is sent, a final "event: end" carries the status and the stream
 * closes. Idle streams get a ": keep-alive" comment every heartbeat. */
typedef struct sse_stream {
    server *srv;
    struct MHD_Connection *conn; /* parked while there is nothing to send */
    int64_t token_id;            /* the stream ends if its token is revoked */
    int64_t job_id;
    int64_t last_id;
    char *buf;
    size_t len, off, cap;
    int64_t last_write_ms;
    bool ended;
} sse_stream;

static int sse_append(sse_stream *s, const char *text, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = (s->len + n) * 2;
        char *grown = realloc(s->buf, cap);
        if (grown == NULL)
            return -1;
        s->buf = grown, s->cap = cap;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    return 0;
}

/* Reads the next events and, in the same snapshot, whether the job ended.
 * 0 ok (possibly nothing new), -1 error. */
static int sse_fill(sse_stream *s) {
    sqlite3 *db = db_pool_acquire(&s->srv->pool);
    int ok = sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    const bool revoked =
        ok && db_row_exists(db, "SELECT 1 FROM api_tokens WHERE id = ?1 AND revoked_at IS NULL",
                            s->token_id) == 0;
    sqlite3_stmt *st = NULL;
    ok = ok && !revoked &&
         sqlite3_prepare_v2(db,
                            "SELECT " EVENT_COLUMNS " FROM job_events WHERE job_id = ?1 "
                            "AND id > ?2 ORDER BY id LIMIT 200",
                            -1, &st, NULL) == SQLITE_OK;
    int n_events = 0;
    if (ok) {
        sqlite3_bind_int64(st, 1, s->job_id);
        sqlite3_bind_int64(st, 2, s->last_id);
        while (ok && sqlite3_step(st) == SQLITE_ROW) {
            json_t *event = event_from_row(db, st, s->job_id);
            char *text = json_dumps(event, HTTP_JSON_DUMP_FLAGS);
            char head[96];
            int hn = snprintf(head, sizeof head,
                              "id: %lld\nevent: %s\ndata: ", (long long)sqlite3_column_int64(st, 0),
                              (const char *)sqlite3_column_text(st, 3));
            ok = text && sse_append(s, head, (size_t)hn) == 0 &&
                 sse_append(s, text, strlen(text)) == 0 && sse_append(s, "\n\n", 2) == 0;
            s->last_id = sqlite3_column_int64(st, 0);
            n_events++;
            free(text);
            json_decref(event);
        }
    }
    sqlite3_finalize(st);
    st = NULL;
    if (revoked) {
        static const char gone[] =
            "event: error\ndata: {\"error\":{\"message\":\"the API token was revoked\","
            "\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n\n";
        ok = sse_append(s, gone, sizeof gone - 1) == 0;
        s->ended = true;
    } else if (ok && n_events == 0 &&
               sqlite3_prepare_v2(db, "SELECT status FROM jobs WHERE id = ?1", -1, &st, NULL) ==
                   SQLITE_OK) {
        sqlite3_bind_int64(st, 1, s->job_id);
        const char *status =
            sqlite3_step(st) == SQLITE_ROW ? (const char *)sqlite3_column_text(st, 0) : "deleted";
        if (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
            strcmp(status, "cancelled") == 0 || strcmp(status, "deleted") == 0) {
            char end[96];
            int en = snprintf(end, sizeof end, "event: end\ndata: {\"status\":\"%s\"}\n\n", status);
            ok = sse_append(s, end, (size_t)en) == 0;
            s->ended = true;
        }
    }
    sqlite3_finalize(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    db_pool_release(&s->srv->pool, db);
    return ok ? 0 : -1;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    sse_stream *s = cls;
    while (s->off == s->len) {
        if (s->ended || atomic_load(&s->srv->shutting_down))
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->off = s->len = 0;
        if (sse_fill(s) != 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (s->len > 0)
            break;
        int64_t now = db_now_ms();
        if (now - s->last_write_ms >= s->srv->cfg.sse_heartbeat_ms) {
            sse_append(s, ": keep-alive\n\n", 14);
            break;
        }
        /* Nothing new: park until the next tick (never sleep in a pool
         * thread); MHD calls this reader again when it resumes. */
        if (park_suspend(s->srv->park, s->conn) != 0)
            return MHD_CONTENT_READER_END_OF_STREAM; /* shutting down */
        return 0;
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    s->last_write_ms = db_now_ms();
    return (ssize_t)n;
}

static void sse_free(void *cls) {
    sse_stream *s = cls;
    free(s->buf);
    free(s);
}

enum MHD_Result route_jobs_stream(request *r) {
    enum MHD_Result replied;
    if (!require_job(r, &replied))
        return replied;
    const char *resume = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *param = resume ? "Last-Event-ID" : "after";
    if (resume == NULL)
        resume = http_query(r, "after");
    char *end = NULL;
    long long last_id = resume ? strtoll(resume, &end, 10) : 0;
    if (resume != NULL && (*resume == '\0' || *end != '\0' || last_id < 0))
        return http_reply_error(r, 400, "invalid_value", param,
                                "%s must be a non-negative event id", param);
    sse_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    s->srv = r->srv;
    s->conn = r->conn;
    s->token_id = r->token.id;
    s->job_id = r->path_id;
    s->last_id = last_id;
    s->last_write_ms = db_now_ms();
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, sse_read, s, sse_free);
    if (resp == NULL) {
        sse_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return http_queue(r, 200, resp);
}
