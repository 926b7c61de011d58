/* Fine-tuning jobs, the OpenAI-compatible view of jobs (openai_ids.h:
 * ftjob-N is job N, ftevent-N its event, ftckpt-N its checkpoint): create,
 * list, retrieve, cancel, events, checkpoints.
 *
 * A create is translated into the native body of POST /v1/jobs and goes
 * through the same validation and insert (job_create.h): method.type picks
 * the job type (supervised → sft, dpo → dpo, reinforcement → grpo),
 * OpenAI's hyperparameter names become the type's by the method's rules
 * (hp_maps: n_epochs → epochs, or grpo's total_steps; learning_rate_
 * multiplier × the type's default learning_rate; "auto" keeps the
 * default), method.reinforcement.grader the grader hyperparameter (checked
 * here, so errors name OpenAI's path; a score_model grader's model becomes
 * reward_model), file-N the dataset id, and `model` the model reference
 * (openai_model_ref: a registered model's name, a fine-tuned model, a
 * checkpoint). What only this
 * surface knows (the model string, suffix, metadata) is stored in
 * fine_tuning_jobs in the job's transaction (schema 012). Every job, native
 * or not, is also a fine-tuning job here.
 *
 * Statuses: rlhfd validates a job's files synchronously, on upload (every
 * row) and on create (format, rows, model), so a job is `queued` when
 * create returns; the worker's loading phase (native validating_files) is
 * reported as `running`. The statuses a client sees are therefore queued →
 * running → succeeded | failed | cancelled, in OpenAI's order
 * (validating_files → queued → running → ...) with validating_files over
 * before the create returns (docs/api.md).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_create.h"
#include "job_events_store.h"
#include "job_json.h"
#include "jobs.h"
#include "jobs_db.h"
#include "models_store.h"
#include "openai_ids.h"
#include "checkpoints_store.h"
#include "datasets_store.h"
#include "grader.h"
#include "routes.h"

/* The built-in base: a GPT-2 initialised at random (sized by the job's
 * hyperparameters), with the byte-level tokenizer: a native sft job
 * without `model`. */
#define OPENAI_BASE_MODEL "scratch"

/* ---- names ----------------------------------------------------------------------- */

/* method.type and the job type it runs as. */
static const struct {
    const char *method, *job_type;
} methods[] = {{"supervised", "sft"}, {"dpo", "dpo"}, {"reinforcement", "grpo"}};
#define N_METHODS (sizeof methods / sizeof methods[0])

/* How an OpenAI hyperparameter's value becomes the native one. */
typedef enum hp_rule {
    HP_RULE_INTEGER,       /* a positive integer, as it is */
    HP_RULE_NUMBER,        /* a positive number, as it is */
    HP_RULE_LR_MULTIPLIER, /* × the type's default learning_rate */
    HP_RULE_EPOCHS,        /* passes over the prompts: total_steps = n × ceil(rows / batch) */
    HP_RULE_COMPUTE,       /* × the type's default num_generations, rounded, at least 2 */
    HP_RULE_ONE,           /* only 1 (eval_samples: the held-out evaluation is greedy) */
    HP_RULE_DEFAULT_ONLY,  /* only "default" (reasoning_effort: no such control here) */
} hp_rule;

/* OpenAI's hyperparameter names, the methods (space-separated) that take
 * them, and the job type's names for them (NULL: nothing native; the rule
 * says what is accepted). "auto" is the type's default everywhere. */
static const struct hp_map {
    const char *methods, *openai, *native;
    hp_rule rule;
} hp_maps[] = {
    {"supervised dpo", "n_epochs", "epochs", HP_RULE_INTEGER},
    {"supervised dpo", "batch_size", "batch_size", HP_RULE_INTEGER},
    {"supervised dpo reinforcement", "learning_rate_multiplier", "learning_rate",
     HP_RULE_LR_MULTIPLIER},
    {"dpo", "beta", "beta", HP_RULE_NUMBER},
    {"reinforcement", "n_epochs", "total_steps", HP_RULE_EPOCHS},
    {"reinforcement", "batch_size", "prompts_per_step", HP_RULE_INTEGER},
    {"reinforcement", "compute_multiplier", "num_generations", HP_RULE_COMPUTE},
    {"reinforcement", "eval_interval", "eval_interval", HP_RULE_INTEGER},
    {"reinforcement", "eval_samples", NULL, HP_RULE_ONE},
    {"reinforcement", "reasoning_effort", NULL, HP_RULE_DEFAULT_ONLY},
};
#define N_HP_MAPS (sizeof hp_maps / sizeof hp_maps[0])

/* Whether method is one of the space-separated methods. */
static bool hp_map_takes(const struct hp_map *m, const char *method) {
    const size_t n = strlen(method);
    for (const char *p = m->methods; *p; p += strcspn(p, " "), p += *p == ' ')
        if (strncmp(p, method, n) == 0 && (p[n] == ' ' || p[n] == '\0'))
            return true;
    return false;
}

/* The entry of method's OpenAI name openai (or, with openai NULL, of its
 * native name native), or NULL. */
static const struct hp_map *hp_map_find(const char *method, const char *openai,
                                        const char *native) {
    for (size_t i = 0; i < N_HP_MAPS; i++)
        if (hp_map_takes(&hp_maps[i], method) &&
            (openai ? strcmp(hp_maps[i].openai, openai) == 0
                    : native && hp_maps[i].native && strcmp(hp_maps[i].native, native) == 0))
            return &hp_maps[i];
    return NULL;
}

/* The method a job type shows as: supervised for sft, dpo for dpo,
 * reinforcement for grpo, else the native type's own name (reward, ppo,
 * rloo, ppo-control). */
static const char *method_of(const char *native_type) {
    for (size_t i = 0; i < N_METHODS; i++)
        if (strcmp(methods[i].job_type, native_type) == 0)
            return methods[i].method;
    return native_type;
}

/* The OpenAI status of a native one (see the top of the file). */
static const char *status_of(const char *native) {
    return strcmp(native, "validating_files") == 0 ? "running" : native;
}

/* The type's default of hyperparameter name (a multiplier's unit), or 0. */
static double type_default(const job_type *type, const char *name) {
    const hparam_def *def = type ? hparams_find(type->hparams, name) : NULL;
    return def ? def->default_value : 0.0;
}

/* Optimizer steps per pass over n_rows prompts, batch prompts a step. */
static int64_t steps_per_epoch(int64_t n_rows, int64_t batch) {
    return batch > 0 ? (n_rows + batch - 1) / batch : 0;
}

/* ---- the job object ------------------------------------------------------------------ */

/* What fine_tuning_jobs holds for a job (NULLs for a native job). */
typedef struct ft_extra {
    char *model, *suffix, *metadata;
} ft_extra;

static void ft_extra_free(ft_extra *x) {
    free(x->model), free(x->suffix), free(x->metadata);
}

static char *column_dup(sqlite3_stmt *st, int i) {
    const char *text = (const char *)sqlite3_column_text(st, i);
    return text ? strdup(text) : NULL;
}

/* job_id's row of fine_tuning_jobs into x: 0 (also when it has none), -1. */
static int ft_extra_load(sqlite3 *db, int64_t job_id, ft_extra *x) {
    memset(x, 0, sizeof *x);
    sqlite3_stmt *st = db_cached_prepare(
        db, "SELECT model, suffix, metadata FROM fine_tuning_jobs WHERE job_id = ?1");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, job_id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        x->model = column_dup(st, 0);
        x->suffix = column_dup(st, 1);
        x->metadata = column_dup(st, 2);
    }
    db_cached_done(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : -1;
}

/* The `model` a job shows: as given, or for a native job its starting
 * checkpoint (ftckpt-N) or the built-in base. */
static void job_model(const job_row *job, const ft_extra *x, char *out, size_t len) {
    if (x->model)
        snprintf(out, len, "%s", x->model);
    else if (job->refs.model > 0)
        openai_id_format(out, len, OPENAI_ID_CKPT, job->refs.model);
    else
        snprintf(out, len, OPENAI_BASE_MODEL);
}

/* The tokens a succeeded job trained on: its last `tokens` metric (the
 * trainer's running count), or null. */
static json_t *trained_tokens(sqlite3 *db, const job_row *job) {
    if (strcmp(job->status, "succeeded") != 0)
        return json_null();
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT value FROM metrics WHERE job_id = ?1 AND "
                                             "name = 'tokens' ORDER BY step DESC LIMIT 1");
    json_t *out = NULL;
    if (st != NULL) {
        sqlite3_bind_int64(st, 1, job->id);
        if (sqlite3_step(st) == SQLITE_ROW)
            out = json_integer((json_int_t)sqlite3_column_double(st, 0));
        db_cached_done(st);
    }
    return out ? out : json_null();
}

/* OpenAI's hyperparameters of the resolved native config (a job of a
 * type no method maps shows none). */
static json_t *openai_hyperparameters(sqlite3 *db, const job_row *job) {
    json_t *config = json_loads(job->config, 0, NULL), *out = json_object();
    const job_type *type = job_type_find(job->type);
    const char *method = method_of(job->type);
    for (size_t i = 0; i < N_HP_MAPS; i++) {
        const struct hp_map *m = &hp_maps[i];
        json_t *v = m->native ? json_object_get(config, m->native) : NULL;
        if (!hp_map_takes(m, method) || (m->native && v == NULL))
            continue;
        json_t *shown = NULL;
        double unit = m->native ? type_default(type, m->native) : 0;
        switch (m->rule) {
            case HP_RULE_INTEGER:
            case HP_RULE_NUMBER:
                shown = json_incref(v);
                break;
            case HP_RULE_LR_MULTIPLIER:
            case HP_RULE_COMPUTE:
                shown = unit > 0 ? json_real(json_number_value(v) / unit) : json_null();
                break;
            case HP_RULE_EPOCHS: { /* total_steps over the steps a pass takes */
                char format[16];
                int64_t rows = 0;
                const int64_t per =
                    datasets_store_info(db, job->training_file, format, &rows) == 1
                        ? steps_per_epoch(
                              rows, json_integer_value(json_object_get(config, "prompts_per_step")))
                        : 0;
                const int64_t steps = json_integer_value(v);
                shown = per <= 0           ? json_null()
                        : steps % per == 0 ? json_integer(steps / per)
                                           : json_real((double)steps / (double)per);
                break;
            }
            case HP_RULE_ONE:
                shown = json_integer(1);
                break;
            case HP_RULE_DEFAULT_ONLY:
                shown = json_string("default");
                break;
        }
        json_object_set_new(out, m->openai, shown);
    }
    json_decref(config);
    return out;
}

/* A failed job's error: the native message, with the request field it
 * names (the worker's messages start "training_file: ..." and so on) as
 * param and code invalid_<param>; else code job_failed. */
static json_t *openai_error(const job_row *job) {
    if (job->error == NULL || strcmp(job->status, "failed") != 0)
        return json_null();
    static const char *const fields[] = {"training_file", "validation_file", "model",
                                         "reward_model", NULL};
    for (const char *const *f = fields; *f; f++) {
        size_t n = strlen(*f);
        if (strncmp(job->error, *f, n) == 0 && job->error[n] == ':') {
            char code[64];
            snprintf(code, sizeof code, "invalid_%s", *f);
            return json_pack("{s:s, s:s, s:s}", "code", code, "message", job->error, "param", *f);
        }
    }
    return json_pack("{s:s, s:s, s:n}", "code", "job_failed", "message", job->error, "param");
}

static json_t *file_or_null(int64_t dataset_id) {
    char id[32];
    openai_id_format(id, sizeof id, OPENAI_ID_FILE, dataset_id);
    return dataset_id > 0 ? json_string(id) : json_null();
}

/* The fine_tuning.job object of job. NULL on error. */
static json_t *openai_job_json(sqlite3 *db, const job_row *job) {
    ft_extra x;
    if (ft_extra_load(db, job->id, &x) != 0)
        return NULL;
    char id[32], model[OPENAI_MODEL_NAME_BYTES], tuned[2 * OPENAI_MODEL_NAME_BYTES];
    openai_id_format(id, sizeof id, OPENAI_ID_JOB, job->id);
    job_model(job, &x, model, sizeof model);
    const bool done = strcmp(job->status, "succeeded") == 0 && job->final_checkpoint > 0;
    char base[OPENAI_MODEL_NAME_BYTES];
    models_store_base_name(db, job->refs.base_model, base, sizeof base);
    openai_model_name(tuned, sizeof tuned, base, x.suffix, job->id, 0);
    json_t *hp = openai_hyperparameters(db, job);
    json_t *config = json_loads(job->config, 0, NULL);
    json_t *seed = json_object_get(config, "seed");
    json_t *metadata = x.metadata ? json_loads(x.metadata, 0, NULL) : NULL;
    const char *method = method_of(job->type);
    json_t *out = json_object();
    json_object_set_new(out, "id", json_string(id));
    json_object_set_new(out, "object", json_string("fine_tuning.job"));
    json_object_set_new(out, "created_at", json_integer(job->created_at));
    json_object_set_new(out, "finished_at",
                        job->finished_at ? json_integer(job->finished_at) : json_null());
    json_object_set_new(out, "status", json_string(status_of(job->status)));
    json_object_set_new(out, "error", openai_error(job));
    json_object_set_new(out, "model", json_string(model));
    json_object_set_new(out, "fine_tuned_model", done ? json_string(tuned) : json_null());
    json_object_set_new(out, "trained_tokens", trained_tokens(db, job));
    json_object_set_new(out, "training_file", file_or_null(job->training_file));
    json_object_set_new(out, "validation_file", file_or_null(job->validation_file));
    json_object_set_new(out, "result_files", json_array());
    json_object_set_new(out, "hyperparameters", json_incref(hp));
    json_t *method_body = json_pack("{s:o}", "hyperparameters", hp);
    json_t *grader_spec = json_object_get(config, "grader");
    if (strcmp(method, "reinforcement") == 0 && json_is_object(grader_spec))
        json_object_set(method_body, "grader", grader_spec);
    json_object_set_new(out, "method",
                        json_pack("{s:s, s:o}", "type", method, method, method_body));
    json_object_set_new(out, "seed", seed ? json_incref(seed) : json_null());
    json_object_set_new(out, "suffix", x.suffix ? json_string(x.suffix) : json_null());
    json_object_set_new(out, "user_provided_suffix",
                        x.suffix ? json_string(x.suffix) : json_null());
    json_object_set_new(out, "metadata", metadata ? metadata : json_null());
    json_object_set_new(out, "organization_id", json_string("rlhfd"));
    json_object_set_new(out, "estimated_finish", json_null());
    json_object_set_new(out, "integrations", json_array());
    json_decref(config);
    ft_extra_free(&x);
    return out;
}

static json_t *openai_job_load(sqlite3 *db, int64_t id) {
    job_row job;
    if (jobs_db_get(db, id, &job) != 1)
        return NULL;
    json_t *out = openai_job_json(db, &job);
    job_row_free(&job);
    return out;
}

static json_t *openai_job_from_stmt(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    job_row job;
    if (job_row_read(st, &job) != 0)
        return NULL;
    json_t *out = openai_job_json(db, &job);
    job_row_free(&job);
    return out;
}

/* ---- POST /v1/fine_tuning/jobs ------------------------------------------------------- */

/* What the create stores beside the native job (job_create_view's ctx). */
typedef struct ft_create {
    const char *model, *suffix;
    char *metadata;     /* JSON text, malloc'd; NULL if none */
    const char *method; /* method.type: "supervised" */
    char hp_prefix[64]; /* "method.supervised.hyperparameters" */
} ft_create;

static int ft_store(sqlite3 *db, int64_t job_id, void *ctx) {
    const ft_create *c = ctx;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO fine_tuning_jobs (job_id, model, suffix, metadata) "
                           "VALUES (?1, ?2, ?3, ?4)",
                           -1, &st, NULL) != SQLITE_OK)
        return 0;
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_text(st, 2, c->model, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, c->suffix, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, c->metadata, -1, SQLITE_STATIC);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    sqlite3_finalize(st);
    return ok;
}

static json_t *ft_reply(sqlite3 *db, int64_t job_id, void *ctx) {
    (void)ctx;
    return openai_job_load(db, job_id);
}

/* An engine error about native key k names OpenAI's name for it. */
static void ft_hyperparameter_param(const char *err, char *param, size_t len, void *ctx) {
    const ft_create *c = ctx;
    char key[64];
    const struct hp_map *m;
    if (!job_error_key(err, key, sizeof key))
        snprintf(param, len, "%s", c->hp_prefix);
    else if (strcmp(key, "seed") == 0)
        snprintf(param, len, "seed");
    else if (strcmp(key, "grader") == 0)
        snprintf(param, len, "method.%s.grader", c->method);
    else if ((m = hp_map_find(c->method, NULL, key)) != NULL)
        snprintf(param, len, "%s.%s", c->hp_prefix, m->openai);
    else
        snprintf(param, len, "%s.%s", c->hp_prefix, key);
}

/* A model named on this surface as the native reference native[key]
 * (`model`, or `reward_model` for a score_model grader's model): a
 * fine-tuned model's name (ft:...:ftjob-N → "job:N", its final
 * checkpoint; ...:ftckpt-M → checkpoint M), a checkpoint ftckpt-N → N,
 * and anything else as it is: the native "checkpoint:N" and "job:N", or a
 * model id of GET /v1/models — a registered base model (POST /v1/models)
 * or a fine-tuned one — that the create resolves in its transaction
 * (routes_jobs.c, resolve_model_name: an unknown name is 400
 * model_not_found). The built-in base as `model` sets nothing. */
static void openai_model_ref(const char *model, const char *key, json_t *native) {
    int64_t job = 0, checkpoint = 0;
    char ref[64];
    if (strcmp(key, "model") == 0 && strcmp(model, OPENAI_BASE_MODEL) == 0)
        return;
    if (!openai_model_parse(model, &job, &checkpoint))
        job = 0, checkpoint = openai_id_parse(model, OPENAI_ID_CKPT);
    if (checkpoint > 0)
        json_object_set_new(native, key, json_integer(checkpoint));
    else if (job > 0) {
        snprintf(ref, sizeof ref, "job:%lld", (long long)job);
        json_object_set_new(native, key, json_string(ref));
    } else
        json_object_set_new(native, key, json_string(model));
}

/* member key of obj as "file-N" (absent or null: 0 when optional): 1 with
 * *id, or 0 with e. */
static int file_ref(const json_t *obj, const char *key, bool required, int64_t *id, http_error *e) {
    const json_t *v = json_object_get(obj, key);
    *id = 0;
    if (v == NULL || json_is_null(v))
        return required
                   ? http_error_set(e, 400, "missing_required_parameter", key,
                                    "%s is required: a file id (file-N) from POST /v1/files", key)
                   : 1;
    if (!json_is_string(v))
        return http_error_set(e, 400, "invalid_type", key, "%s must be a file id (file-N)", key);
    if ((*id = openai_id_parse(json_string_value(v), OPENAI_ID_FILE)) <= 0)
        return http_error_set(e, 400, "invalid_value", key,
                              "%s must be a file id (file-N), not '%.64s'", key,
                              json_string_value(v));
    return 1;
}

/* The OpenAI names method takes, "n_epochs, batch_size, ...", for messages. */
static void hp_names_of(const char *method, char *out, size_t len) {
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < N_HP_MAPS && used < len; i++)
        if (hp_map_takes(&hp_maps[i], method))
            used += (size_t)snprintf(out + used, len - used, "%s%s", used ? ", " : "",
                                     hp_maps[i].openai);
}

/* One OpenAI hyperparameter value v of map entry m (at param) onto the
 * native ones; n_epochs into *epochs (total_steps needs the batch, which
 * may come later). 1, or 0 with e. */
static int map_hyperparameter(const struct hp_map *m, const json_t *v, const char *param,
                              const job_type *type, json_t *native, int64_t *epochs,
                              http_error *e) {
    const char *text = json_is_string(v) ? json_string_value(v) : NULL;
    if (m->rule == HP_RULE_DEFAULT_ONLY) {
        if (text && (strcmp(text, "auto") == 0 || strcmp(text, "default") == 0))
            return 1;
        return http_error_set(e, 400, "invalid_value", param,
                              "%s must be \"default\" (or \"auto\"): rlhfd's models have no "
                              "reasoning mode whose effort could be set",
                              param);
    }
    if (text && strcmp(text, "auto") == 0)
        return 1; /* the type's default */
    const bool integral =
        m->rule == HP_RULE_INTEGER || m->rule == HP_RULE_EPOCHS || m->rule == HP_RULE_ONE;
    if (integral ? !json_is_integer(v) : !json_is_number(v))
        return http_error_set(e, 400, "invalid_type", param, "%s must be \"auto\" or %s", param,
                              integral ? "an integer" : "a number");
    const double x = json_number_value(v);
    if (x <= 0)
        return http_error_set(e, 400, "invalid_value", param, "%s must be positive", param);
    switch (m->rule) {
        case HP_RULE_INTEGER:
        case HP_RULE_NUMBER:
            json_object_set(native, m->native, (json_t *)v);
            break;
        case HP_RULE_LR_MULTIPLIER:
            json_object_set_new(native, m->native, json_real(x * type_default(type, m->native)));
            break;
        case HP_RULE_COMPUTE: { /* more completions per prompt: more exploration */
            const double g = round(x * type_default(type, m->native));
            json_object_set_new(native, m->native,
                                json_integer(g < 2     ? 2
                                             : g > 1e9 ? 1000000000
                                                       : (json_int_t)g));
            break;
        }
        case HP_RULE_EPOCHS:
            *epochs = json_integer_value(v);
            break;
        case HP_RULE_ONE:
            if (x != 1)
                return http_error_set(e, 400, "invalid_value", param,
                                      "%s must be 1 or \"auto\": rlhfd evaluates each validation "
                                      "prompt once, greedily (eval/reward)",
                                      param);
            break;
        case HP_RULE_DEFAULT_ONLY:
            break;
    }
    return 1;
}

/* OpenAI's hyperparameters (c->hp_prefix) of c->method onto native ones
 * for type; n_rows: the training file's rows (0 if unknown). 1, or 0
 * with e. */
static int map_hyperparameters(const json_t *hp, const ft_create *c, const job_type *type,
                               int64_t n_rows, json_t *native, http_error *e) {
    if (hp == NULL || json_is_null(hp))
        return 1;
    if (!json_is_object(hp))
        return http_error_set(e, 400, "invalid_type", c->hp_prefix, "%s must be an object",
                              c->hp_prefix);
    char names[256];
    hp_names_of(c->method, names, sizeof names);
    const char *key;
    json_t *v;
    int64_t epochs = 0;
    json_object_foreach((json_t *)hp, key, v) {
        char param[128];
        snprintf(param, sizeof param, "%s.%.48s", c->hp_prefix, key);
        const struct hp_map *m = hp_map_find(c->method, key, NULL);
        bool elsewhere = false;
        for (size_t i = 0; m == NULL && i < N_HP_MAPS; i++)
            elsewhere = elsewhere || strcmp(hp_maps[i].openai, key) == 0;
        if (m == NULL)
            return http_error_set(e, 400, elsewhere ? "invalid_value" : "unknown_parameter", param,
                                  "%s hyperparameter '%.48s' (method %s takes %s)",
                                  elsewhere ? "not a method's" : "unknown", key, c->method, names);
        if (!map_hyperparameter(m, v, param, type, native, &epochs, e))
            return 0;
    }
    if (epochs > 0) { /* passes over the prompts, batch_size prompts a step */
        const json_t *batch = json_object_get(native, "prompts_per_step");
        const int64_t per =
            steps_per_epoch(n_rows, batch ? json_integer_value(batch)
                                          : (int64_t)type_default(type, "prompts_per_step"));
        const double steps = (double)epochs * (double)per;
        if (per > 0) /* else the file's own error (not found, empty) follows */
            json_object_set_new(native, "total_steps",
                                json_integer(steps > 2e9 ? 2000000000 : (json_int_t)steps));
    }
    return 1;
}

/* suffix: up to 64 of [A-Za-z0-9._-] (it becomes part of a model name,
 * whose fields ':' separates). */
static int check_suffix(const json_t *v, http_error *e) {
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_string(v))
        return http_error_set(e, 400, "invalid_type", "suffix", "suffix must be a string");
    const char *s = json_string_value(v);
    size_t n = strlen(s);
    if (n == 0 || n > 64 ||
        strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789._-") != n)
        return http_error_set(e, 400, "invalid_value", "suffix",
                              "suffix must be 1 to 64 characters of A-Z, a-z, 0-9, '.', '_', '-'");
    return 1;
}

/* metadata: at most 16 string values, keys up to 64 bytes, values up to 512. */
static int check_metadata(const json_t *v, http_error *e) {
    if (v == NULL || json_is_null(v))
        return 1;
    if (!json_is_object(v) || json_object_size(v) > 16)
        return http_error_set(e, 400, json_is_object(v) ? "invalid_value" : "invalid_type",
                              "metadata", "metadata must be an object of at most 16 strings");
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)v, key, value) {
        char param[96];
        snprintf(param, sizeof param, "metadata.%.64s", key);
        if (strlen(key) > 64 || !json_is_string(value) || json_string_length(value) > 512)
            return http_error_set(e, 400, "invalid_value", param,
                                  "metadata keys are up to 64 bytes and values strings up to "
                                  "512 bytes");
    }
    return 1;
}

/* ---- graders ------------------------------------------------------------------------ */

/* The fields of a row a reinforcement job's grader reads as {{item.*}}:
 * a prompts row's (engine/grpo_lm.c gives the grader {prompt, answer}). */
static const char *const item_fields[] = {"prompt", "answer", NULL};

/* text's first {{ item.KEY... }} whose KEY a row does not give: 1 with
 * KEY in out, or 0. */
static int unknown_item_field(const char *text, char *out, size_t len) {
    for (const char *p = strstr(text, "{{"); p != NULL; p = strstr(p + 2, "{{")) {
        const char *q = p + 2 + strspn(p + 2, " ");
        if (strncmp(q, "item.", 5) != 0)
            continue;
        q += 5;
        const size_t n = strcspn(q, ".[ }");
        bool known = false;
        for (const char *const *f = item_fields; *f; f++)
            known = known || (strlen(*f) == n && strncmp(q, *f, n) == 0);
        if (!known) {
            snprintf(out, len, "%.*s", (int)(n < 64 ? n : 64), q);
            return 1;
        }
    }
    return 0;
}

/* OpenAI's grader object g at path, checked for what rlhfd cannot run or
 * feed; the reward model its score_model graders name into *model (they
 * must agree: a job has one reward model). The rest of its checks are
 * grader_parse's. 1, or 0 with e. */
static int check_openai_grader(const json_t *g, const char *path, const char **model,
                               http_error *e) {
    static const char *const unrunnable[] = {"python", "label_model", "endpoint", NULL};
    static const char *const templated[] = {"input", "reference", NULL};
    char param[320], key[72];
    if (!json_is_object(g))
        return 1;
    const char *type = json_string_value(json_object_get(g, "type"));
    snprintf(param, sizeof param, "%s.type", path);
    if (type && http_one_of(type, unrunnable))
        return http_error_set(e, 400, "unsupported_grader", param,
                              "%s: %s graders cannot run here (rlhfd runs no user code, no LLM "
                              "judge and calls no endpoint); use string_check, text_similarity, "
                              "regex, length, score_model (a reward model) or multi",
                              param, type);
    for (const char *const *t = templated; *t; t++) {
        const json_t *v = json_object_get(g, *t);
        snprintf(param, sizeof param, "%s.%s", path, *t);
        if (json_is_string(v) && unknown_item_field(json_string_value(v), key, sizeof key))
            return http_error_set(e, 400, "invalid_value", param,
                                  "%s reads {{item.%s}}, but a reinforcement job's rows give "
                                  "its grader item.prompt and item.answer only (a prompts "
                                  "file: {\"prompt\", \"answer\"})",
                                  param, key);
    }
    if (type && strcmp(type, "score_model") == 0) {
        const json_t *input = json_object_get(g, "input");
        const char *m = json_string_value(json_object_get(g, "model"));
        snprintf(param, sizeof param, "%s.sampling_params", path);
        if (json_object_get(g, "sampling_params") != NULL)
            return http_error_set(e, 400, "invalid_value", param,
                                  "%s: a score_model grader here is a reward model (a reward "
                                  "job's checkpoint), which samples nothing; leave it out",
                                  param);
        snprintf(param, sizeof param, "%s.input", path);
        if (input != NULL && !json_is_string(input))
            return http_error_set(e, 400, "invalid_value", param,
                                  "%s: a score_model grader here is a reward model scoring the "
                                  "row's prompt with a text (a template string, default "
                                  "{{sample.output_text}}), not an LLM judge given messages",
                                  param);
        snprintf(param, sizeof param, "%s.model", path);
        if (m != NULL && *model != NULL && strcmp(m, *model) != 0)
            return http_error_set(e, 400, "invalid_value", param,
                                  "%s: every score_model grader of a job names the same reward "
                                  "model (the job's one reward_model), not '%.64s' and '%.64s'",
                                  param, *model, m);
        if (m != NULL)
            *model = m;
    }
    const json_t *subs = type && strcmp(type, "multi") == 0 ? json_object_get(g, "graders") : NULL;
    if (json_is_object(subs)) { /* the sub-paths grader_parse names */
        const char *name;
        const json_t *sub;
        json_object_foreach((json_t *)subs, name, sub) {
            snprintf(param, sizeof param, "%s.graders.%.64s", path, name);
            if (!check_openai_grader(sub, param, model, e))
                return 0;
        }
    }
    for (size_t i = 0; json_is_array(subs) && i < json_array_size(subs); i++) {
        snprintf(param, sizeof param, "%s.graders[%zu]", path, i);
        if (!check_openai_grader(json_array_get(subs, i), param, model, e))
            return 0;
    }
    return 1;
}

/* method.reinforcement.grader onto the native job: hyperparameters.grader
 * (validated here by the engine's parser, so its errors name OpenAI's
 * path), and a score_model grader's model as reward_model, weighted 0 in
 * the reward beside the grader: the reward is the grader's score, the
 * reward model counting through it alone. 1, or 0 with e. */
static int map_grader(const json_t *spec, const ft_create *c, json_t *native, json_t *native_hp,
                      http_error *e) {
    char path[64], err[512], param[320];
    snprintf(path, sizeof path, "method.%s.grader", c->method);
    if (spec == NULL || json_is_null(spec))
        return http_error_set(e, 400, "missing_required_parameter", path,
                              "%s is required: a reinforcement job scores each sampled "
                              "completion with a grader",
                              path);
    const char *model = NULL;
    if (!check_openai_grader(spec, path, &model, e))
        return 0;
    grader *g = grader_parse(spec, path, err, sizeof err);
    if (g == NULL) { /* "<path>.<field>: why" */
        const char *colon = strstr(err, ": ");
        snprintf(param, sizeof param, "%.*s", colon ? (int)(colon - err) : (int)strlen(err), err);
        return http_error_set(e, 400, "invalid_grader", param, "%s", err);
    }
    grader_free(g);
    json_object_set(native_hp, "grader", (json_t *)spec);
    if (model != NULL) {
        openai_model_ref(model, "reward_model", native);
        json_object_set_new(native_hp, "reward_model_weight", json_real(0.0));
    }
    return 1;
}

/* method (or the legacy top-level hyperparameters): the job type, c's
 * method and hyperparameters prefix, and the hyperparameters and grader
 * objects (NULL if absent). 1, or 0 with e. */
static int check_method(const json_t *body, const job_type **type, const json_t **hp,
                        const json_t **grader_spec, ft_create *c, http_error *e) {
    const json_t *method = json_object_get(body, "method");
    const json_t *legacy = json_object_get(body, "hyperparameters");
    const char *name = "supervised";
    *hp = *grader_spec = NULL;
    if (method != NULL && !json_is_null(method)) {
        if (legacy != NULL && !json_is_null(legacy))
            return http_error_set(e, 400, "invalid_value", "hyperparameters",
                                  "give hyperparameters in method.<type>.hyperparameters, or the "
                                  "legacy top-level hyperparameters without method, not both");
        if (!json_is_object(method))
            return http_error_set(e, 400, "invalid_type", "method",
                                  "method must be an object {type, <type>: {hyperparameters}}");
        const json_t *t = json_object_get(method, "type");
        if (t == NULL)
            return http_error_set(e, 400, "missing_required_parameter", "method.type",
                                  "method.type is required (supervised, dpo, reinforcement)");
        if (!json_is_string(t))
            return http_error_set(e, 400, "invalid_type", "method.type",
                                  "method.type must be a string");
        name = json_string_value(t);
        const char *key;
        json_t *v;
        json_object_foreach((json_t *)method, key, v) {
            char param[96];
            snprintf(param, sizeof param, "method.%.64s", key);
            if (strcmp(key, "type") == 0)
                continue;
            if (strcmp(key, name) != 0)
                return http_error_set(e, 400, "unknown_parameter", param,
                                      "%s does not belong to method.type '%.32s'", param, name);
            if (!json_is_object(v))
                return http_error_set(e, 400, "invalid_type", param,
                                      "%s must be an object {hyperparameters%s}", param,
                                      strcmp(name, "reinforcement") == 0 ? ", grader" : "");
            const char *inner;
            json_t *iv;
            json_object_foreach(v, inner, iv) {
                if (strcmp(inner, "hyperparameters") != 0 &&
                    !(strcmp(inner, "grader") == 0 && strcmp(name, "reinforcement") == 0)) {
                    snprintf(param, sizeof param, "method.%.32s.%.32s", name, inner);
                    return http_error_set(e, 400, "unknown_parameter", param,
                                          "unknown parameter %s", param);
                }
            }
            *hp = json_object_get(v, "hyperparameters");
            *grader_spec = json_object_get(v, "grader");
        }
        snprintf(c->hp_prefix, sizeof c->hp_prefix, "method.%.32s.hyperparameters", name);
    } else {
        *hp = legacy;
        snprintf(c->hp_prefix, sizeof c->hp_prefix, "hyperparameters");
    }
    size_t i = 0;
    while (i < N_METHODS && strcmp(name, methods[i].method) != 0)
        i++;
    char names[256];
    job_available_types(names, sizeof names);
    if (i == N_METHODS)
        return http_error_set(e, 400, "invalid_value", "method.type",
                              "unknown method.type '%.32s' (supervised, dpo, reinforcement)", name);
    c->method = methods[i].method;
    if ((*type = job_type_find(methods[i].job_type)) == NULL)
        return http_error_set(e, 400, "job_type_unavailable", "method.type",
                              "method '%s' runs as job type '%s', which this build's job "
                              "registry does not have (job types: %s)",
                              name, methods[i].job_type, names);
    return 1;
}

/* The native body of POST /v1/jobs for an OpenAI body, and what to store
 * beside it: 1, or 0 with e. */
static int translate(sqlite3 *db, const json_t *body, ft_create *c, json_t *native, http_error *e) {
    static const char *const keys[] = {
        "model",    "training_file", "validation_file", "suffix", "seed",
        "metadata", "method",        "hyperparameters", NULL};
    const json_t *model = json_object_get(body, "model");
    const json_t *suffix = json_object_get(body, "suffix");
    const json_t *seed = json_object_get(body, "seed");
    const json_t *metadata = json_object_get(body, "metadata");
    const job_type *type;
    const json_t *hp, *grader_spec;
    int64_t training, validation, n_rows = 0;
    char format[16];
    if (!json_check_keys(body, keys, "", e))
        return 0;
    if (model == NULL)
        return http_error_set(
            e, 400, "missing_required_parameter", "model",
            "model is required (a model id of GET /v1/models: a registered "
            "base model or a fine-tuned one; a checkpoint ftckpt-N; or \"" OPENAI_BASE_MODEL
            "\", a GPT-2 trained from scratch)");
    if (!json_is_string(model) || json_string_length(model) == 0 ||
        json_string_length(model) >= OPENAI_MODEL_NAME_BYTES)
        return http_error_set(e, 400, json_is_string(model) ? "invalid_value" : "invalid_type",
                              "model", "model must be a model name of 1 to %d bytes",
                              OPENAI_MODEL_NAME_BYTES - 1);
    if (!file_ref(body, "training_file", true, &training, e) ||
        !file_ref(body, "validation_file", false, &validation, e) || !check_suffix(suffix, e) ||
        !check_metadata(metadata, e) || !check_method(body, &type, &hp, &grader_spec, c, e))
        return 0;
    if (seed != NULL && !json_is_null(seed) && !json_is_integer(seed))
        return http_error_set(e, 400, "invalid_type", "seed", "seed must be an integer");
    if (datasets_store_info(db, training, format, &n_rows) != 1)
        n_rows = 0; /* the native create says what is wrong with the file */
    openai_model_ref(json_string_value(model), "model", native);
    json_t *native_hp = json_object();
    json_object_set_new(native, "hyperparameters", native_hp);
    if (!map_hyperparameters(hp, c, type, n_rows, native_hp, e) ||
        (strcmp(c->method, "reinforcement") == 0 &&
         !map_grader(grader_spec, c, native, native_hp, e)))
        return 0;
    if (seed != NULL && !json_is_null(seed)) {
        if (hparams_find(type->hparams, "seed") == NULL)
            return http_error_set(e, 400, "invalid_value", "seed", "%s jobs take no seed",
                                  type->name);
        json_object_set(native_hp, "seed", (json_t *)seed);
    }
    json_object_set_new(native, "type", json_string(type->name));
    json_object_set_new(native, "training_file", json_integer(training));
    if (validation > 0)
        json_object_set_new(native, "validation_file", json_integer(validation));
    c->model = json_string_value(model);
    c->suffix = json_is_string(suffix) ? json_string_value(suffix) : NULL;
    c->metadata = json_is_object(metadata) ? json_dumps(metadata, JSON_COMPACT) : NULL;
    return 1;
}

enum MHD_Result route_fine_tuning_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    ft_create c = {0};
    json_t *native = json_object();
    http_error e;
    if (!translate(r->db, body, &c, native, &e))
        replied = http_reply_http_error(r, &e);
    else {
        const job_create_view view = {ft_store, ft_reply, ft_hyperparameter_param, &c};
        replied = jobs_create(r, native, &view);
    }
    free(c.metadata);
    json_decref(native);
    json_decref(body);
    return replied;
}

/* ---- list, retrieve, cancel ----------------------------------------------------------------- */

enum MHD_Result route_fine_tuning_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page_of(r, "after", OPENAI_ID_JOB, 20, 100, &limit, &after, &replied))
        return replied;
    sqlite3_stmt *st = jobs_db_list(r->db, after, NULL, NULL, limit + 1);
    if (st == NULL)
        return http_reply_db_error(r);
    return http_reply_rows(r, st, limit, 0, openai_job_from_stmt);
}

static enum MHD_Result reply_no_job(request *r) {
    return http_reply_error(r, 404, "job_not_found", NULL, "no fine-tuning job ftjob-%lld",
                            (long long)r->path_id);
}

enum MHD_Result route_fine_tuning_get(request *r) {
    json_t *job = openai_job_load(r->db, r->path_id);
    return job ? http_reply_json(r, 200, job) : reply_no_job(r);
}

/* As POST /v1/jobs/{id}/cancel: a queued job is cancelled at once, a
 * running one is asked to stop (its status turns cancelled when its worker
 * has checkpointed); twice is not an error. */
enum MHD_Result route_fine_tuning_cancel(request *r) {
    const job_create_view view = {.reply = ft_reply};
    return jobs_cancel(r, &view);
}

/* ---- events, checkpoints --------------------------------------------------------------------- */

/* The native event object as OpenAI's fine_tuning.job.event. */
static json_t *openai_event_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    json_t *out = job_events_store_json(db, st, job_id);
    char id[32];
    openai_id_format(id, sizeof id, OPENAI_ID_EVENT, job_events_store_id(st));
    if (out != NULL) {
        json_object_set_new(out, "id", json_string(id));
        json_object_set_new(out, "object", json_string("fine_tuning.job.event"));
        json_object_del(out, "job_id");
        json_object_del(out, "code");
    }
    return out;
}

enum MHD_Result route_fine_tuning_events(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!job_require(r, &replied) ||
        !http_query_page_of(r, "after", OPENAI_ID_EVENT, 20, 100, &limit, &after, &replied))
        return replied;
    return http_reply_page(r, job_events_store_page_sql, after, limit, r->path_id,
                           openai_event_json);
}

/* The native checkpoint object as OpenAI's fine_tuning.job.checkpoint. */
static json_t *openai_checkpoint_json(sqlite3 *db, sqlite3_stmt *st, int64_t job_id) {
    json_t *native = checkpoints_store_json(db, st, job_id);
    job_row job;
    ft_extra x;
    if (native == NULL || jobs_db_get(db, job_id, &job) != 1) {
        json_decref(native);
        return NULL;
    }
    if (ft_extra_load(db, job_id, &x) != 0) {
        job_row_free(&job);
        json_decref(native);
        return NULL;
    }
    const int64_t ckpt = json_integer_value(json_object_get(native, "id"));
    char id[32], job_id_text[32], model[OPENAI_MODEL_NAME_BYTES], name[2 * OPENAI_MODEL_NAME_BYTES];
    openai_id_format(id, sizeof id, OPENAI_ID_CKPT, ckpt);
    openai_id_format(job_id_text, sizeof job_id_text, OPENAI_ID_JOB, job_id);
    models_store_base_name(db, job.refs.base_model, model, sizeof model);
    openai_model_name(name, sizeof name, model, x.suffix, job_id, ckpt);
    json_t *metrics = json_object_get(native, "metrics");
    metrics = json_is_object(metrics) ? json_copy(metrics) : json_object();
    json_object_set(metrics, "step", json_object_get(native, "step_number"));
    /* OpenAI's names for the trainers' loss and eval_loss */
    if (json_object_get(metrics, "loss") != NULL)
        json_object_set(metrics, "train_loss", json_object_get(metrics, "loss"));
    if (json_object_get(metrics, "eval_loss") != NULL)
        json_object_set(metrics, "valid_loss", json_object_get(metrics, "eval_loss"));
    json_t *out =
        json_pack("{s:s, s:s, s:O, s:s, s:s, s:o, s:O}", "id", id, "object",
                  "fine_tuning.job.checkpoint", "created_at", json_object_get(native, "created_at"),
                  "fine_tuned_model_checkpoint", name, "fine_tuning_job_id", job_id_text, "metrics",
                  metrics, "step_number", json_object_get(native, "step_number"));
    json_decref(native);
    job_row_free(&job);
    ft_extra_free(&x);
    return out;
}

enum MHD_Result route_fine_tuning_checkpoints(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!job_require(r, &replied) ||
        !http_query_page_of(r, "after", OPENAI_ID_CKPT, 10, 100, &limit, &after, &replied))
        return replied;
    return http_reply_page(r, checkpoints_store_page_sql, after, limit, r->path_id,
                           openai_checkpoint_json);
}
