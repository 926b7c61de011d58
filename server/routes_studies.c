/* Studies: one base job (any job type) run over a grid or a list of
 * hyperparameter variations × seeds, as ordinary jobs of the worker pool.
 *
 * POST /v1/studies validates the whole study before anything is stored:
 * every child's hyperparameters go through the job type's validator, and an
 * error names the variation and the field; the base job's other fields
 * (datasets, models, ranks...) are checked by POST /v1/jobs's own code
 * (job_create.h) with params under "base.". Then the study, its variations
 * and all its jobs are written in one transaction (the first job through
 * jobs_create, the others beside it in its view's store), so a crash leaves
 * all of them or none. Reads (studies_store.h) compute status, summary and
 * curves from the jobs and metrics tables.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_create.h"
#include "jobs.h"
#include "jobs_db.h"
#include "routes.h"
#include "scheduler.h"
#include "studies_store.h"

/* The most jobs one study may create, and the most seeds. */
enum { STUDY_MAX_JOBS = 256, STUDY_MAX_SEEDS = 100 };

/* One child job: its variation, seed and resolved configuration. */
typedef struct study_child {
    int64_t variation, seed;
    char *config; /* JSON text, as jobs.config stores it */
} study_child;

/* A validated study, ready to store. */
typedef struct study_plan {
    const job_type *type;
    const char *name, *metric, *goal;
    char *spec;            /* the body, JSON text */
    json_t *variations;    /* [{"label", "hyperparameters"}] */
    bool from_grid;        /* variations were expanded from "grid" */
    study_child *children; /* variation-major, seeds in the given order */
    int n_children;
    int64_t created_by;
    int64_t study_id; /* set by store */
} study_plan;

static void study_plan_free(study_plan *p) {
    for (int i = 0; i < p->n_children; i++)
        free(p->children[i].config);
    free(p->children);
    free(p->spec);
    json_decref(p->variations);
}

/* "clip_coef=0.1, gae_lambda=0.9" from a variation's hyperparameters. */
static json_t *label_of(const json_t *hp) {
    char label[256] = "";
    size_t used = 0;
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)hp, key, value) {
        char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (used < sizeof label)
            used += (size_t)snprintf(label + used, sizeof label - used, "%s%s=%s", used ? ", " : "",
                                     key, text ? text : "?");
        free(text);
    }
    return json_string(used ? label : "base");
}

/* ---- expanding the variations ---------------------------------------------------- */

/* grid {"k": [v...], ...} into its cartesian product, the first key varying
 * slowest: 1 ok (p->variations set), 0 replied. */
static int expand_grid(request *r, const json_t *grid, study_plan *p, enum MHD_Result *replied) {
    if (!json_is_object(grid) || json_object_size(grid) == 0) {
        *replied =
            http_reply_error(r, 400, "invalid_type", "grid",
                             "grid must be a non-empty object of {hyperparameter: [values]}");
        return 0;
    }
    size_t total = 1;
    const char *key;
    json_t *values;
    json_object_foreach((json_t *)grid, key, values) {
        char param[128];
        snprintf(param, sizeof param, "grid.%.100s", key);
        if (!json_is_array(values) || json_array_size(values) == 0) {
            *replied = http_reply_error(r, 400, "invalid_type", param,
                                        "%s must be a non-empty array of values", param);
            return 0;
        }
        if (strcmp(key, "seed") == 0) {
            *replied = http_reply_error(r, 400, "invalid_value", param,
                                        "give seeds in \"seeds\", not in the grid");
            return 0;
        }
        total *= json_array_size(values);
        if (total > STUDY_MAX_JOBS) {
            *replied = http_reply_error(r, 400, "too_many_jobs", "grid",
                                        "the grid has more than %d variations", STUDY_MAX_JOBS);
            return 0;
        }
    }
    p->variations = json_array();
    p->from_grid = true;
    for (size_t v = 0; v < total; v++) {
        json_t *hp = json_object();
        /* v in mixed radix, the last key the fastest digit */
        size_t rest = v, stride = total;
        json_object_foreach((json_t *)grid, key, values) {
            stride /= json_array_size(values);
            json_object_set(hp, key, json_array_get(values, rest / stride));
            rest %= stride;
        }
        json_array_append_new(
            p->variations, json_pack("{s:o, s:o}", "label", label_of(hp), "hyperparameters", hp));
    }
    return 1;
}

/* variations [{"label"?, "hyperparameters": {...}}]: 1 ok, 0 replied. */
static int check_variations(request *r, const json_t *list, study_plan *p,
                            enum MHD_Result *replied) {
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > STUDY_MAX_JOBS) {
        *replied = http_reply_error(r, 400, "invalid_type", "variations",
                                    "variations must be an array of 1 to %d objects "
                                    "{\"label\", \"hyperparameters\"}",
                                    STUDY_MAX_JOBS);
        return 0;
    }
    p->variations = json_array();
    size_t i;
    json_t *item;
    json_array_foreach((json_t *)list, i, item) {
        static const char *const keys[] = {"label", "hyperparameters", NULL};
        char prefix[64], param[96];
        snprintf(prefix, sizeof prefix, "variations[%zu].", i);
        json_t *label = json_object_get(item, "label");
        json_t *hp = json_object_get(item, "hyperparameters");
        http_error e;
        if (!json_is_object(item)) {
            snprintf(param, sizeof param, "variations[%zu]", i);
            *replied =
                http_reply_error(r, 400, "invalid_type", param, "%s must be an object", param);
        } else if (!json_check_keys(item, keys, prefix, &e))
            *replied = http_reply_http_error(r, &e);
        else if (!json_is_object(hp)) {
            snprintf(param, sizeof param, "%shyperparameters", prefix);
            *replied =
                http_reply_error(r, 400, "invalid_type", param, "%s must be an object", param);
        } else if (json_object_get(hp, "seed") != NULL) {
            snprintf(param, sizeof param, "%shyperparameters.seed", prefix);
            *replied = http_reply_error(r, 400, "invalid_value", param,
                                        "%s: give seeds in \"seeds\", not in a variation", param);
        } else if (label != NULL && (!json_is_string(label) || json_string_length(label) == 0 ||
                                     json_string_length(label) > 200)) {
            snprintf(param, sizeof param, "%slabel", prefix);
            *replied = http_reply_error(r, 400, "invalid_value", param,
                                        "%s must be a string of 1 to 200 bytes", param);
        } else {
            json_array_append_new(p->variations,
                                  json_pack("{s:o, s:O}", "label",
                                            label ? json_incref(label) : label_of(hp),
                                            "hyperparameters", hp));
            continue;
        }
        return 0;
    }
    return 1;
}

/* seeds: distinct integers in [0, 2^32) (default [1]) into *seeds: their
 * count, or 0 replied. */
static int check_seeds(request *r, const json_t *list, int64_t seeds[STUDY_MAX_SEEDS],
                       enum MHD_Result *replied) {
    if (list == NULL) {
        seeds[0] = 1;
        return 1;
    }
    if (!json_is_array(list) || json_array_size(list) == 0 ||
        json_array_size(list) > STUDY_MAX_SEEDS) {
        *replied = http_reply_error(r, 400, "invalid_type", "seeds",
                                    "seeds must be an array of 1 to %d integers", STUDY_MAX_SEEDS);
        return 0;
    }
    size_t i;
    json_t *s;
    json_array_foreach((json_t *)list, i, s) {
        seeds[i] = json_integer_value(s);
        bool repeated = false;
        for (size_t j = 0; j < i; j++)
            repeated |= seeds[j] == seeds[i];
        if (!json_is_integer(s) || seeds[i] < 0 || seeds[i] > 4294967295LL || repeated) {
            *replied = http_reply_error(r, 400, "invalid_value", "seeds",
                                        "seeds[%zu] must be an integer in [0, 4294967295] that "
                                        "no other seed repeats",
                                        i);
            return 0;
        }
    }
    return (int)json_array_size(list);
}

/* The field of the body that set key for variation v: the grid's or the
 * variation's when it sets key, "seeds" for the seed, else the base's. */
static void child_param(const study_plan *p, size_t v, const char *key, char *param, size_t len) {
    const json_t *hp = json_object_get(json_array_get(p->variations, v), "hyperparameters");
    if (strcmp(key, "seed") == 0)
        snprintf(param, len, "seeds");
    else if (json_object_get(hp, key) != NULL && p->from_grid)
        snprintf(param, len, "grid.%s", key);
    else if (json_object_get(hp, key) != NULL)
        snprintf(param, len, "variations[%zu].hyperparameters.%s", v, key);
    else
        snprintf(param, len, "base.hyperparameters.%s", key);
}

/* The hyperparameters of variation v with seed (base's, then the
 * variation's over them, then the seed). */
static json_t *child_hyperparameters(const json_t *base_hp, const study_plan *p, size_t v,
                                     int64_t seed, bool with_seed) {
    json_t *hp = base_hp ? json_deep_copy(base_hp) : json_object();
    json_object_update(hp, json_object_get(json_array_get(p->variations, v), "hyperparameters"));
    if (with_seed)
        json_object_set_new(hp, "seed", json_integer(seed));
    return hp;
}

/* Every child's hyperparameters through the type's validator, resolved into
 * p->children: 1 ok, 0 replied. */
static int check_children(request *r, const json_t *base_hp, const int64_t *seeds, int n_seeds,
                          study_plan *p, enum MHD_Result *replied) {
    const size_t n_var = json_array_size(p->variations);
    const bool has_seed = hparams_find(p->type->hparams, "seed") != NULL;
    if (!has_seed && n_seeds > 1) {
        *replied = http_reply_error(r, 400, "invalid_value", "seeds",
                                    "%s jobs take no seed; give at most one seed", p->type->name);
        return 0;
    }
    if (n_var * (size_t)n_seeds > STUDY_MAX_JOBS) {
        *replied = http_reply_error(r, 400, "too_many_jobs", NULL,
                                    "%zu variations x %d seeds is %zu jobs; a study may have at "
                                    "most %d",
                                    n_var, n_seeds, n_var * (size_t)n_seeds, STUDY_MAX_JOBS);
        return 0;
    }
    p->children = calloc(n_var * (size_t)n_seeds, sizeof *p->children);
    void *cfg = calloc(1, p->type->hparams->config_bytes);
    int ok = p->children != NULL && cfg != NULL;
    if (!ok)
        *replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    for (size_t v = 0; ok && v < n_var; v++)
        for (int s = 0; ok && s < n_seeds; s++) {
            json_t *hp = child_hyperparameters(base_hp, p, v, seeds[s], has_seed);
            char err[512], key[64], param[160];
            if (job_config_from_json(p->type, cfg, hp, err, sizeof err) != 0) {
                if (job_error_key(err, key, sizeof key))
                    child_param(p, v, key, param, sizeof param);
                else
                    snprintf(param, sizeof param, "base.hyperparameters");
                *replied = http_reply_error(
                    r, 400, "invalid_hyperparameter", param, "variation %zu (%s), seed %lld: %s", v,
                    json_string_value(json_object_get(json_array_get(p->variations, v), "label")),
                    (long long)seeds[s], err);
                ok = 0;
            } else {
                json_t *resolved = hparams_to_json(p->type->hparams, cfg);
                study_child *c = &p->children[p->n_children++];
                c->variation = (int64_t)v, c->seed = seeds[s];
                /* full precision, as job_store stores a job's config */
                c->config = json_dumps(resolved, JSON_COMPACT | JSON_PRESERVE_ORDER);
                json_decref(resolved);
                if (c->config == NULL) {
                    *replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
                    ok = 0;
                }
            }
            json_decref(hp);
        }
    free(cfg);
    return ok;
}

/* ---- storing: jobs_create's view ---------------------------------------------------- */

/* In the first job's transaction: the study, its variations, and every
 * other child job with the first one's references and datasets. */
static int study_store(sqlite3 *db, int64_t first_job, void *ctx) {
    study_plan *p = ctx;
    const study_new study = {.name = p->name,
                             .job_type = p->type->name,
                             .metric = p->metric,
                             .goal = p->goal,
                             .spec = p->spec,
                             .created_by = p->created_by};
    if ((p->study_id = studies_store_insert(db, &study)) < 0)
        return 0;
    size_t v;
    json_t *var;
    json_array_foreach(p->variations, v, var) {
        char *hp =
            json_dumps(json_object_get(var, "hyperparameters"), JSON_COMPACT | JSON_PRESERVE_ORDER);
        int rc =
            hp ? studies_store_add_variation(db, p->study_id, (int64_t)v,
                                             json_string_value(json_object_get(var, "label")), hp)
               : -1;
        free(hp);
        if (rc != 0)
            return 0;
    }
    job_row first;
    if (jobs_db_get(db, first_job, &first) != 1)
        return 0;
    int ok = studies_store_add_job(db, p->study_id, p->children[0].variation, p->children[0].seed,
                                   first_job) == 0;
    for (int i = 1; ok && i < p->n_children; i++) {
        const job_new job = {.type = first.type,
                             .config = p->children[i].config,
                             .max_attempts = first.max_attempts,
                             .created_by = p->created_by,
                             .refs = first.refs,
                             .ranks = first.ranks};
        const int64_t id = jobs_db_insert(db, &job);
        ok = id > 0 &&
             (first.training_file == 0 ||
              jobs_db_link_dataset(db, id, "training", first.training_file) == 0) &&
             (first.validation_file == 0 ||
              jobs_db_link_dataset(db, id, "validation", first.validation_file) == 0) &&
             studies_store_add_job(db, p->study_id, p->children[i].variation, p->children[i].seed,
                                   id) == 0;
    }
    job_row_free(&first);
    return ok;
}

static json_t *study_reply(sqlite3 *db, int64_t first_job, void *ctx) {
    (void)first_job;
    int found;
    return studies_store_load(db, ((study_plan *)ctx)->study_id, &found);
}

/* The base's hyperparameter errors: the prefix "base." is added by the
 * request (error_param_prefix). */
static void study_hyperparameter_param(const char *err, char *param, size_t len, void *ctx) {
    (void)ctx;
    char key[64];
    if (job_error_key(err, key, sizeof key))
        snprintf(param, len, "hyperparameters.%s", key);
    else
        snprintf(param, len, "hyperparameters");
}

/* ---- POST /v1/studies ------------------------------------------------------------- */

/* The study body's own fields: 1 ok (p's name, metric, goal, type set),
 * 0 replied. */
static int check_study_fields(request *r, const json_t *body, study_plan *p,
                              enum MHD_Result *replied) {
    static const char *const keys[] = {"name",  "base",   "grid", "variations",
                                       "seeds", "metric", "goal", NULL};
    static const char *const goals[] = {"max", "min", NULL};
    const json_t *base = json_object_get(body, "base");
    const json_t *metric = json_object_get(body, "metric");
    const json_t *goal = json_object_get(body, "goal");
    const json_t *name = json_object_get(body, "name");
    if (!http_check_keys(r, body, keys, replied) ||
        !http_check_name(r, json_string_value(name), 200, replied))
        return 0;
    if (!json_is_object(base))
        *replied =
            http_reply_error(r, 400, base ? "invalid_type" : "missing_required_parameter", "base",
                             "base is required: the job every variation runs, as POST "
                             "/v1/jobs takes it");
    else if (!json_is_string(json_object_get(base, "type")))
        *replied = http_reply_error(r, 400, "missing_required_parameter", "base.type",
                                    "base.type is required: the job type of the study");
    else if (!json_is_string(metric) || json_string_length(metric) == 0 ||
             json_string_length(metric) > 64)
        *replied = http_reply_error(r, 400, metric ? "invalid_value" : "missing_required_parameter",
                                    "metric",
                                    "metric is required: the name of the metric the summary "
                                    "compares (e.g. eval_return), 1 to 64 bytes");
    else if (goal != NULL && !http_one_of(json_string_value(goal), goals))
        *replied = http_reply_error(r, 400, "invalid_value", "goal",
                                    "goal must be \"max\" or \"min\": which value of the metric "
                                    "is the best");
    else if (json_object_get(body, "grid") != NULL && json_object_get(body, "variations") != NULL)
        *replied = http_reply_error(r, 400, "invalid_value", "variations",
                                    "give grid or variations, not both");
    else {
        p->name = json_string_value(name);
        p->metric = json_string_value(metric);
        p->goal = goal ? json_string_value(goal) : "max";
        p->type = job_type_find(json_string_value(json_object_get(base, "type")));
        return 1;
    }
    return 0;
}

/* Validates the whole study, then stores it through jobs_create. */
static enum MHD_Result study_create(request *r, const json_t *body) {
    enum MHD_Result replied;
    study_plan p = {.created_by = r->token.id};
    int64_t seeds[STUDY_MAX_SEEDS];
    int n_seeds = 0;
    const json_t *base = json_object_get(body, "base");
    const json_t *grid = json_object_get(body, "grid");
    const json_t *list = json_object_get(body, "variations");
    if (!check_study_fields(r, body, &p, &replied))
        return replied;
    const json_t *base_hp = json_object_get(base, "hyperparameters");
    if (p.type == NULL || (base_hp != NULL && !json_is_object(base_hp))) {
        /* POST /v1/jobs's code says what is wrong with the base */
        r->error_param_prefix = "base.";
        replied = jobs_create(r, base, NULL);
        r->error_param_prefix = NULL;
        return replied;
    }
    int ok = grid   ? expand_grid(r, grid, &p, &replied)
             : list ? check_variations(r, list, &p, &replied)
                    : (p.variations =
                           json_pack("[{s:s, s:{}}]", "label", "base", "hyperparameters")) != NULL;
    ok = ok && (n_seeds = check_seeds(r, json_object_get(body, "seeds"), seeds, &replied)) > 0 &&
         check_children(r, base_hp, seeds, n_seeds, &p, &replied);
    if (ok && (p.spec = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
        ok = 0;
    }
    if (ok) {
        /* the first child as the base job: POST /v1/jobs's checks of its
         * datasets and models, and its transaction, which study_store joins */
        json_t *first = json_deep_copy(base);
        json_object_set_new(first, "hyperparameters",
                            child_hyperparameters(base_hp, &p, 0, seeds[0],
                                                  hparams_find(p.type->hparams, "seed") != NULL));
        const job_create_view view = {study_store, study_reply, study_hyperparameter_param, &p};
        r->error_param_prefix = "base.";
        replied = jobs_create(r, first, &view);
        r->error_param_prefix = NULL;
        json_decref(first);
    }
    study_plan_free(&p);
    return replied;
}

enum MHD_Result route_studies_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    replied = study_create(r, body);
    json_decref(body);
    return replied;
}

/* ---- GET /v1/studies, GET /v1/studies/{id}, curves ------------------------------------ */

enum MHD_Result route_studies_list(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    return http_reply_page(r,
                           "SELECT " STUDIES_STORE_COLUMNS " FROM studies WHERE ?1 = 0 OR id < ?1 "
                           "ORDER BY id DESC LIMIT ?2",
                           after, limit, 0, studies_store_row_json);
}

enum MHD_Result route_studies_get(request *r) {
    int found;
    json_t *study = studies_store_load(r->db, r->path_id, &found);
    return study ? http_reply_json(r, 200, study) : http_reply_not_found(r, "study", found);
}

enum MHD_Result route_studies_curves(request *r) {
    int found = db_row_exists(r->db, "SELECT 1 FROM studies WHERE id = ?1", r->path_id);
    if (found != 1)
        return http_reply_not_found(r, "study", found);
    const char *metric = http_query(r, "metric");
    char stored[72] = "";
    if (metric == NULL) {
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(r->db, "SELECT metric FROM studies WHERE id = ?1", -1, &st, NULL) ==
            SQLITE_OK) {
            sqlite3_bind_int64(st, 1, r->path_id);
            if (sqlite3_step(st) == SQLITE_ROW)
                snprintf(stored, sizeof stored, "%s", (const char *)sqlite3_column_text(st, 0));
        }
        sqlite3_finalize(st);
        metric = stored;
    } else if (*metric == '\0' || strlen(metric) > 64)
        return http_reply_error(r, 400, "invalid_value", "metric",
                                "metric must be a metric name of 1 to 64 bytes");
    json_t *curves = studies_store_curves(r->db, r->path_id, metric);
    return curves ? http_reply_json(r, 200, curves) : http_reply_db_error(r);
}

/* ---- POST /v1/studies/{id}/cancel ------------------------------------------------------ */

/* Cancels every unfinished job of the study (a queued one at once, a
 * running one through its worker, as POST /v1/jobs/{id}/cancel does);
 * finished jobs are left as they are. */
enum MHD_Result route_studies_cancel(request *r) {
    int64_t *ids = NULL;
    int n = studies_store_job_ids(r->db, r->path_id, &ids);
    if (n <= 0) { /* a study has at least one job */
        free(ids);
        return http_reply_not_found(r, "study", n < 0 ? -1 : 0);
    }
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char status[JOBS_DB_STATUS_BYTES];
        failed |= jobs_db_request_cancel(r->db, ids[i], status) == JOB_CANCEL_ERROR;
    }
    free(ids);
    scheduler_wake(r->srv->scheduler);
    if (failed)
        return http_reply_db_error(r);
    return route_studies_get(r);
}
