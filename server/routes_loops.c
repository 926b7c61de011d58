/* Online RLHF loops: POST /v1/loops, GET /v1/loops, GET /v1/loops/{id},
 * POST /v1/loops/{id}/cancel, GET /v1/loops/{id}/rounds.
 *
 * The body is checked whole (checkpoints, project, prompts dataset, both
 * jobs' hyperparameters through the job registry) before the loop row is
 * stored; the scheduler (loops.h) then runs it. Rounds are stored as they
 * go; a cancel stops the loop where it is and asks its running job to stop.
 */
#include <math.h>
#include <string.h>

#include "checkpoints_store.h"
#include "generate.h"
#include "hparams.h"
#include "jobs.h"
#include "jobs_db.h"
#include "loop_sample.h"
#include "loops.h"
#include "prefs_store.h"
#include "routes.h"
#include "scheduler.h"
#include "selection.h"

/* A checkpoint reference (an id, or "job:N" for job N's final one) of one
 * of types: its checkpoint id (1), or 0 with e. */
static int check_checkpoint(sqlite3 *db, const json_t *v, const char *param,
                            const char *const *types, const char *what, int64_t *id,
                            http_error *e) {
    const char *s = json_string_value(v);
    bool by_job = s != NULL && strncmp(s, "job:", 4) == 0;
    char *end = NULL;
    const long long n = json_is_integer(v) ? json_integer_value(v)
                        : by_job           ? strtoll(s + 4, &end, 10)
                                           : 0;
    if (n <= 0 || (by_job && (end == s + 4 || *end != '\0')))
        return http_error_set(e, 400, "invalid_model", param,
                              "%s must be %s: a checkpoint id, or \"job:N\" for job N's final "
                              "checkpoint",
                              param, what);
    checkpoint_origin o;
    const int found = checkpoints_store_origin(db, n, by_job, &o);
    if (found < 0)
        return http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db));
    if (found == 0 || o.checkpoint_id <= 0)
        return http_error_set(e, 400, by_job ? "model_not_ready" : "checkpoint_not_found", param,
                              "%s: %s %lld has no %scheckpoint", param, by_job ? "job" : "no", n,
                              by_job ? "final " : "such ");
    if (!http_one_of(o.job_type, types))
        return http_error_set(e, 400, "invalid_model", param,
                              "%s must be %s; checkpoint %lld is of a %s job", param, what,
                              (long long)o.checkpoint_id, o.job_type);
    *id = o.checkpoint_id;
    return 1;
}

/* hp (may be NULL) as type's resolved hyperparameters into *out. 1, or 0
 * with e naming param. */
static int check_hyperparameters(const char *type_name, const json_t *hp, const char *param,
                                 json_t **out, http_error *e) {
    const job_type *type = job_type_find(type_name);
    if (hp != NULL && !json_is_object(hp))
        return http_error_set(e, 400, "invalid_type", param, "%s must be a JSON object", param);
    void *cfg = type ? calloc(1, type->hparams->config_bytes) : NULL;
    char err[512];
    if (cfg == NULL)
        return http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
    int ok = job_config_from_json(type, cfg, hp, err, sizeof err) == 0;
    if (ok)
        *out = hparams_to_json(type->hparams, cfg);
    else
        http_error_set(e, 400, "invalid_hyperparameter", param, "%s: %s", param, err);
    free(cfg);
    return ok;
}

/* The `plateau` stop rule (may be absent or null: none), resolved as
 * {metric, patience, min_delta} into *out (json null for none). 1, or 0
 * with e naming the member at fault. */
static int check_plateau(const json_t *v, bool gold, json_t **out, http_error *e) {
    static const char *const keys[] = {"metric", "patience", "min_delta", NULL};
    static const char *const metrics[] = {"gold", "proxy", NULL};
    *out = NULL;
    if (v == NULL || json_is_null(v)) {
        *out = json_null();
        return 1;
    }
    if (!json_is_object(v))
        return http_error_set(e, 400, "invalid_type", "plateau",
                              "plateau must be an object {\"metric\": \"gold\" | \"proxy\", "
                              "\"patience\": N, \"min_delta\": d}, or null");
    if (!json_check_keys(v, keys, "plateau.", e))
        return 0;
    const json_t *metric = json_object_get(v, "metric"), *patience = json_object_get(v, "patience"),
                 *delta = json_object_get(v, "min_delta");
    if (metric == NULL)
        return http_error_set(e, 400, "missing_required_parameter", "plateau.metric",
                              "plateau.metric is required: \"gold\" or \"proxy\"");
    if (!http_one_of(json_string_value(metric), metrics))
        return http_error_set(e, 400, "invalid_value", "plateau.metric",
                              "plateau.metric must be \"gold\" or \"proxy\"");
    if (strcmp(json_string_value(metric), "gold") == 0 && !gold)
        return http_error_set(e, 400, "invalid_value", "plateau.metric",
                              "plateau.metric \"gold\" needs \"gold\": true (the gold score is "
                              "measured only then)");
    if (patience != NULL && (!json_is_integer(patience) || json_integer_value(patience) < 1 ||
                             json_integer_value(patience) > 100))
        return http_error_set(e, 400, json_is_integer(patience) ? "invalid_value" : "invalid_type",
                              "plateau.patience",
                              "plateau.patience must be an integer in [1, 100]: the rounds in a "
                              "row without improvement that stop the loop");
    const double min_delta = delta ? json_number_value(delta) : 0.0;
    if (delta != NULL && (!json_is_number(delta) || !(min_delta >= 0) || !isfinite(min_delta)))
        return http_error_set(e, 400, json_is_number(delta) ? "invalid_value" : "invalid_type",
                              "plateau.min_delta",
                              "plateau.min_delta must be a number >= 0: how much a round must "
                              "beat the best before it by to count as an improvement");
    *out = json_pack("{s:s, s:I, s:f}", "metric", json_string_value(metric), "patience",
                     (json_int_t)(patience ? json_integer_value(patience) : 2), "min_delta",
                     min_delta);
    return *out != NULL ? 1 : http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
}

/* The loop's whole configuration, resolved with its defaults, into *config
 * and its references: 1, or 0 with e. */
typedef struct loop_refs {
    int64_t model, reward_model, project, prompts;
} loop_refs;

static int check_loop(sqlite3 *db, const json_t *body, json_t **config, loop_refs *refs,
                      http_error *e) {
    static const char *const keys[] = {"name",
                                       "model",
                                       "reward_model",
                                       "project",
                                       "prompts",
                                       "optimizer",
                                       "selection",
                                       "rounds",
                                       "prompts_per_round",
                                       "samples_per_prompt",
                                       "rankings_per_round",
                                       "deadline_seconds",
                                       "max_tokens",
                                       "temperature",
                                       "seed",
                                       "eval_prompts",
                                       "eval_samples",
                                       "ensemble",
                                       "gold",
                                       "plateau",
                                       "reward_hyperparameters",
                                       "policy_hyperparameters",
                                       NULL};
    static const char *const policy_types[] = {"sft", "ppo", "dpo", "grpo", "rloo", NULL};
    static const char *const reward_types[] = {"reward", NULL};
    static const char *const optimizers[] = {"ppo", "grpo", "dpo", NULL};
    const json_t *name = json_object_get(body, "name");
    const char *optimizer = json_string_value(json_object_get(body, "optimizer"));
    const char *selection = json_string_value(json_object_get(body, "selection"));
    const json_t *temp_v = json_object_get(body, "temperature");
    const json_t *gold_v = json_object_get(body, "gold");
    int64_t rounds, P, K, wanted, deadline, max_tokens, seed, eval_prompts, eval_samples, ensemble,
        project, prompts;
    json_t *reward_hp = NULL, *policy_hp = NULL;
    *refs = (loop_refs){0};
    if (!json_check_keys(body, keys, "", e))
        return 0;
    if (name != NULL && !json_check_name(json_string_value(name), 256, e))
        return 0;
    if (json_object_get(body, "model") == NULL)
        return http_error_set(e, 400, "missing_required_parameter", "model",
                              "model is required: the starting policy (an sft checkpoint id, "
                              "or \"job:N\")");
    if (!check_checkpoint(db, json_object_get(body, "model"), "model", policy_types,
                          "a policy (a checkpoint of an sft, ppo, dpo, grpo or rloo job)",
                          &refs->model, e))
        return 0;
    if (json_object_get(body, "reward_model") != NULL &&
        !check_checkpoint(db, json_object_get(body, "reward_model"), "reward_model", reward_types,
                          "a reward model (a checkpoint of a reward job)", &refs->reward_model, e))
        return 0;
    optimizer = optimizer ? optimizer : json_object_get(body, "optimizer") ? "" : "ppo";
    selection = selection ? selection : json_object_get(body, "selection") ? "" : "uncertainty";
    if (!http_one_of(optimizer, optimizers))
        return http_error_set(e, 400, "invalid_value", "optimizer",
                              "optimizer must be one of ppo, grpo, dpo");
    if (selection_rule_from_name(selection) < 0)
        return http_error_set(e, 400, "invalid_value", "selection",
                              "selection must be one of random, uncertainty, disagreement");
    if (!json_check_int(body, "project", 0, 1, INT64_MAX, &project, e) ||
        !json_check_int(body, "prompts", 0, 1, INT64_MAX, &prompts, e) ||
        !json_check_int(body, "rounds", 3, 1, 100, &rounds, e) ||
        !json_check_int(body, "prompts_per_round", 4, 1, GENERATE_MAX_PROMPTS, &P, e) ||
        !json_check_int(body, "samples_per_prompt", 4, 2, GENERATE_MAX_N, &K, e) ||
        !json_check_int(body, "rankings_per_round", 8, 1, 1000, &wanted, e) ||
        !json_check_int(body, "deadline_seconds", 3600, 1, 7 * 24 * 3600, &deadline, e) ||
        !json_check_int(body, "max_tokens", 24, 1, 256, &max_tokens, e) ||
        !json_check_int(body, "seed", 1, 0, INT32_MAX, &seed, e) ||
        !json_check_int(body, "eval_prompts", 8, 1, GENERATE_MAX_PROMPTS, &eval_prompts, e) ||
        !json_check_int(body, "eval_samples", 4, 1, LOOP_SAMPLE_MAX_K, &eval_samples, e) ||
        !json_check_int(body, "ensemble",
                        selection_rule_from_name(selection) == SELECTION_DISAGREEMENT ? 3 : 1, 1,
                        LOOP_SAMPLE_MAX_MODELS, &ensemble, e))
        return 0;
    if (project == 0)
        return http_error_set(e, 400, "missing_required_parameter", "project",
                              "project is required: the annotation project the loop posts its "
                              "comparisons to");
    if (prompts == 0)
        return http_error_set(e, 400, "missing_required_parameter", "prompts",
                              "prompts is required: a dataset of format prompts");
    const double temperature = temp_v ? json_number_value(temp_v) : 1.0;
    if (temp_v != NULL && (!json_is_number(temp_v) || !(temperature > 0) || temperature > 10))
        return http_error_set(e, 400, "invalid_value", "temperature",
                              "temperature must be a number in (0, 10]");
    if (gold_v != NULL && !json_is_boolean(gold_v))
        return http_error_set(e, 400, "invalid_type", "gold",
                              "gold must be true or false (score rounds by the demo task's gold "
                              "function)");
    const int found = prefs_project_exists(db, project);
    if (found <= 0)
        return found < 0 ? http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db))
                         : http_error_set(e, 400, "project_not_found", "project",
                                          "project: no project %lld", (long long)project);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT format, n_rows FROM datasets WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db));
    sqlite3_bind_int64(st, 1, prompts);
    const bool have = sqlite3_step(st) == SQLITE_ROW;
    const bool fits = have && strcmp((const char *)sqlite3_column_text(st, 0), "prompts") == 0 &&
                      sqlite3_column_int64(st, 1) > 0;
    sqlite3_finalize(st);
    if (!fits)
        return http_error_set(e, 400, have ? "invalid_dataset" : "dataset_not_found", "prompts",
                              have ? "prompts: dataset %lld is not a non-empty dataset of format "
                                     "prompts"
                                   : "prompts: no dataset %lld",
                              (long long)prompts);
    json_t *plateau = NULL;
    if (!check_plateau(json_object_get(body, "plateau"), json_is_true(gold_v), &plateau, e))
        return 0;
    if (!check_hyperparameters("reward", json_object_get(body, "reward_hyperparameters"),
                               "reward_hyperparameters", &reward_hp, e)) {
        json_decref(plateau);
        return 0;
    }
    if (!check_hyperparameters(optimizer, json_object_get(body, "policy_hyperparameters"),
                               "policy_hyperparameters", &policy_hp, e)) {
        json_decref(plateau);
        json_decref(reward_hp);
        return 0;
    }
    refs->project = project, refs->prompts = prompts;
    *config = json_pack(
        "{s:I, s:I, s:I, s:I, s:I, s:s, s:s, s:I, s:f, s:I, s:I, s:I, s:I, s:b, "
        "s:o, s:o, s:o}",
        "rounds", (json_int_t)rounds, "prompts_per_round", (json_int_t)P, "samples_per_prompt",
        (json_int_t)K, "rankings_per_round", (json_int_t)wanted, "deadline_seconds",
        (json_int_t)deadline, "selection", selection, "optimizer", optimizer, "max_tokens",
        (json_int_t)max_tokens, "temperature", temperature, "seed", (json_int_t)seed,
        "eval_prompts", (json_int_t)eval_prompts, "eval_samples", (json_int_t)eval_samples,
        "ensemble", (json_int_t)ensemble, "gold", json_is_true(gold_v), "plateau", plateau,
        "reward_hyperparameters", reward_hp, "policy_hyperparameters", policy_hp);
    return *config != NULL ? 1 : http_error_set(e, 500, "out_of_memory", NULL, "out of memory");
}

enum MHD_Result route_loops_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    json_t *config = NULL;
    loop_refs refs;
    http_error e;
    char *text = NULL;
    if (db_begin(r->db) != SQLITE_OK) {
        json_decref(body);
        return http_reply_db_error(r);
    }
    if (!check_loop(r->db, body, &config, &refs, &e)) {
        db_rollback(r->db);
        replied = http_reply_http_error(r, &e);
    } else if ((text = json_dumps(config, JSON_COMPACT | JSON_PRESERVE_ORDER)) == NULL) {
        db_rollback(r->db);
        replied = http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    } else {
        sqlite3_stmt *st = NULL;
        int rc = sqlite3_prepare_v2(
            r->db,
            "INSERT INTO loops (name, status, phase, round, config, project_id, "
            "prompts_dataset_id, sft_checkpoint_id, policy_checkpoint_id, reward_checkpoint_id, "
            "created_by, created_at) VALUES (?1, 'running', 'sampling', 1, ?2, ?3, ?4, ?5, ?5, "
            "nullif(?6, 0), nullif(?7, 0), ?8)",
            -1, &st, NULL);
        if (rc == SQLITE_OK) {
            const char *name = json_string_value(json_object_get(body, "name"));
            if (name != NULL)
                sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, text, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, refs.project);
            sqlite3_bind_int64(st, 4, refs.prompts);
            sqlite3_bind_int64(st, 5, refs.model);
            sqlite3_bind_int64(st, 6, refs.reward_model);
            sqlite3_bind_int64(st, 7, r->token.id);
            sqlite3_bind_int64(st, 8, db_now_s());
            rc = sqlite3_step(st);
            sqlite3_finalize(st);
        }
        json_t *loop =
            rc == SQLITE_DONE ? loops_get(r->db, sqlite3_last_insert_rowid(r->db), NULL) : NULL;
        if (loop == NULL) {
            replied = http_reply_db_error(r);
            db_rollback(r->db);
        } else {
            replied = http_commit_reply(r, 200, loop);
            scheduler_wake(r->srv->scheduler);
        }
    }
    free(text);
    json_decref(config);
    json_decref(body);
    return replied;
}

enum MHD_Result route_loops_list(request *r) {
    return http_reply_list(r, loops_list_sql, 0, loops_row_json);
}

enum MHD_Result route_loops_get(request *r) {
    int found;
    json_t *loop = loops_get(r->db, r->path_id, &found);
    return loop ? http_reply_json(r, 200, loop) : http_reply_not_found(r, "loop", found);
}

enum MHD_Result route_loops_rounds(request *r) {
    const int found = db_row_exists(r->db, "SELECT 1 FROM loops WHERE id = ?1", r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "loop", found);
    return http_reply_list(r, loops_rounds_sql, r->path_id, loops_round_json);
}

/* A running loop is cancelled at once (the tick moves only running loops);
 * the job its round runs, if any, is asked to stop. Cancelling twice is
 * not an error; an ended loop answers 409. */
enum MHD_Result route_loops_cancel(request *r) {
    int64_t jobs[LOOPS_MAX_ROUND_JOBS];
    char status[JOBS_DB_STATUS_BYTES];
    switch (loops_cancel(r->db, r->path_id, jobs)) {
        case LOOP_CANCEL_NO_LOOP:
            return http_reply_not_found(r, "loop", 0);
        case LOOP_CANCEL_ENDED:
            return http_reply_error(r, 409, "loop_not_cancellable", NULL,
                                    "loop %lld has already ended", (long long)r->path_id);
        case LOOP_CANCEL_DONE:
            for (int i = 0; i < LOOPS_MAX_ROUND_JOBS && jobs[i] > 0; i++)
                if (jobs_db_request_cancel(r->db, jobs[i], status) != JOB_CANCEL_ERROR)
                    scheduler_wake(r->srv->scheduler);
            /* fall through */
        case LOOP_CANCEL_ALREADY: {
            json_t *loop = loops_get(r->db, r->path_id, NULL);
            return loop ? http_reply_json(r, 200, loop) : http_reply_db_error(r);
        }
        case LOOP_CANCEL_ERROR:
            break;
    }
    return http_reply_db_error(r);
}
