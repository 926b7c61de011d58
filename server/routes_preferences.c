/* Preference collection: projects, comparisons, the annotator's `next`,
 * rankings and the preference pairs derived from them.
 *
 * A project fixes k (at most k candidates per comparison, 2..9) and an
 * overlap (how many annotators rank each comparison). An annotator asks for
 * `next`: a comparison of the project they have not answered, whose
 * rankings plus other annotators' live leases are below the overlap,
 * least-ranked first; it is leased to them for ANNOTATION_LEASE_MS. Their
 * ranking is a full order over the candidates, best first, in groups of
 * ties, or a skip; a ranking of K candidates gives every ordered pair
 * (better, worse) of different groups as a preference pair, in the same
 * transaction.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"
#include "generate.h"
#include "routes.h"

#define PROJECT_MAX_K       9
#define PROJECT_MAX_OVERLAP 100
#define RANKING_MAX_NOTE    4096
#define ANNOTATION_LEASE_MS (10 * 60 * 1000)

static enum MHD_Result reply_not_found(request *r, const char *what, int found) {
    if (found < 0)
        return http_reply_db_error(r);
    char code[64];
    snprintf(code, sizeof code, "%s_not_found", what);
    return http_reply_error(r, 404, code, NULL, "no %s %lld", what, (long long)r->path_id);
}

/* ---- projects ------------------------------------------------------------------- */

#define PROJECT_COLUMNS                                                                            \
    "id, name, k, overlap, created_at, (SELECT count(*) FROM comparisons c WHERE c.project_id = "  \
    "projects.id)"

static json_t *project_from_row(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)db, (void)scope;
    return json_pack(
        "{s:I, s:s, s:s, s:I, s:I, s:I, s:I}", "id", (json_int_t)sqlite3_column_int64(st, 0),
        "object", "project", "name", (const char *)sqlite3_column_text(st, 1), "k",
        (json_int_t)sqlite3_column_int64(st, 2), "overlap", (json_int_t)sqlite3_column_int64(st, 3),
        "n_comparisons", (json_int_t)sqlite3_column_int64(st, 5), "created_at",
        (json_int_t)sqlite3_column_int64(st, 4));
}

/* The project as JSON; NULL with *found 0 (none) or -1 (error). */
static json_t *project_load(sqlite3 *db, int64_t id, int *found) {
    return db_load_row(db, "SELECT " PROJECT_COLUMNS " FROM projects WHERE id = ?1", id,
                       project_from_row, found);
}

/* An optional integer member in [lo, hi] (dflt if absent): 1 ok, 0 replied. */
static int get_int(request *r, const json_t *obj, const char *key, int64_t dflt, int64_t lo,
                   int64_t hi, int64_t *out, enum MHD_Result *replied) {
    json_t *v = json_object_get(obj, key);
    *out = v ? json_integer_value(v) : dflt;
    if (v != NULL && (!json_is_integer(v) || *out < lo || *out > hi)) {
        *replied = http_reply_error(r, 400, json_is_integer(v) ? "invalid_value" : "invalid_type",
                                    key, "%s must be an integer in [%lld, %lld]", key,
                                    (long long)lo, (long long)hi);
        return 0;
    }
    return 1;
}

enum MHD_Result route_projects_create(request *r) {
    enum MHD_Result replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"name", "k", "overlap", NULL};
    const char *name = json_string_value(json_object_get(body, "name"));
    int64_t k, overlap;
    if (!http_check_keys(r, body, keys, &replied))
        ;
    else if (!http_check_name(r, name, 256, &replied))
        ;
    else if (!get_int(r, body, "k", 2, 2, PROJECT_MAX_K, &k, &replied) ||
             !get_int(r, body, "overlap", 1, 1, PROJECT_MAX_OVERLAP, &overlap, &replied))
        ;
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        sqlite3_stmt *st = NULL;
        int64_t id = -1;
        if (sqlite3_prepare_v2(r->db,
                               "INSERT INTO projects (name, k, overlap, created_at) VALUES (?1, "
                               "?2, ?3, ?4)",
                               -1, &st, NULL) == SQLITE_OK) {
            sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, k);
            sqlite3_bind_int64(st, 3, overlap);
            sqlite3_bind_int64(st, 4, db_now_s());
            if (sqlite3_step(st) == SQLITE_DONE)
                id = sqlite3_last_insert_rowid(r->db);
        }
        sqlite3_finalize(st);
        json_t *project = id > 0 ? project_load(r->db, id, NULL) : NULL;
        replied = project ? http_commit_reply(r, 200, project) : http_reply_db_error(r);
    }
    json_decref(body);
    return replied;
}

/* A newest-first page of sql's rows (sql binds ?1 = after, ?2 = limit + 1,
 * ?3 = scope, e.g. the project id), each made into JSON by from_row. */
static enum MHD_Result reply_page(request *r, const char *sql, int64_t scope,
                                  db_row_json from_row) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 100, &limit, &after, &replied))
        return replied;
    return http_reply_page(r, sql, after, limit, scope, from_row);
}

enum MHD_Result route_projects_list(request *r) {
    return reply_page(r,
                      "SELECT " PROJECT_COLUMNS " FROM projects WHERE (?1 = 0 OR id < ?1) AND "
                      "?3 = 0 ORDER BY id DESC LIMIT ?2",
                      0, project_from_row);
}

enum MHD_Result route_projects_get(request *r) {
    int found;
    json_t *project = project_load(r->db, r->path_id, &found);
    return project ? http_reply_json(r, 200, project) : reply_not_found(r, "project", found);
}

/* ---- comparisons ------------------------------------------------------------------ */

/* The comparison with its candidates and how many have ranked it; NULL
 * with *found 0 (none) or -1 (error). */
static json_t *comparison_load(sqlite3 *db, int64_t id, int *found) {
    sqlite3_stmt *st = NULL;
    *found = -1;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, project_id, prompt, created_at, n_ranked FROM "
                           "comparisons WHERE id = ?1",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    *found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        return NULL;
    }
    json_t *candidates = json_array();
    json_t *c = json_pack("{s:I, s:s, s:I, s:s, s:o, s:I, s:I}", "id", (json_int_t)id, "object",
                          "comparison", "project_id", (json_int_t)sqlite3_column_int64(st, 1),
                          "prompt", (const char *)sqlite3_column_text(st, 2), "candidates",
                          candidates, "n_rankings", (json_int_t)sqlite3_column_int64(st, 4),
                          "created_at", (json_int_t)sqlite3_column_int64(st, 3));
    sqlite3_finalize(st);
    if (sqlite3_prepare_v2(db,
                           "SELECT id, text, source, source_checkpoint_id FROM candidates WHERE "
                           "comparison_id = ?1 ORDER BY position",
                           -1, &st, NULL) != SQLITE_OK) {
        json_decref(c);
        *found = -1;
        return NULL;
    }
    sqlite3_bind_int64(st, 1, id);
    while (sqlite3_step(st) == SQLITE_ROW)
        json_array_append_new(candidates,
                              json_pack("{s:I, s:s, s:s, s:o}", "id",
                                        (json_int_t)sqlite3_column_int64(st, 0), "text",
                                        (const char *)sqlite3_column_text(st, 1), "source",
                                        (const char *)sqlite3_column_text(st, 2), "checkpoint_id",
                                        sqlite3_column_type(st, 3) == SQLITE_NULL
                                            ? json_null()
                                            : json_integer(sqlite3_column_int64(st, 3))));
    sqlite3_finalize(st);
    return c;
}

/* Validation errors of one comparison (item of a bulk request or the body
 * of a single one) are collected here and replied by the route, so a bulk
 * request can name the item; item_fail fills e and is 0 (to return). */
#define item_fail(e, ...) (generate_error_set((e), __VA_ARGS__), 0)

/* Validates candidates[i]: 1 ok (text, checkpoint id or 0), 0 with e. */
static int check_candidate(request *r, const json_t *cand, size_t i, const char **text,
                           int64_t *checkpoint_id, generate_error *e) {
    char param[64];
    snprintf(param, sizeof param, "candidates[%zu]", i);
    if (!json_is_object(cand))
        return item_fail(e, 400, "invalid_type", param,
                         "%s must be an object {text, source, checkpoint_id}", param);
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)cand, key, v) {
        if (strcmp(key, "text") != 0 && strcmp(key, "source") != 0 &&
            strcmp(key, "checkpoint_id") != 0) {
            snprintf(param + strlen(param), sizeof param - strlen(param), ".%.32s", key);
            return item_fail(e, 400, "unknown_parameter", param, "unknown parameter '%s'", param);
        }
    }
    size_t at = strlen(param);
    *text = json_string_value(json_object_get(cand, "text"));
    json_t *source_v = json_object_get(cand, "source");
    const char *source = source_v ? json_string_value(source_v) : "provided";
    json_t *ck = json_object_get(cand, "checkpoint_id");
    *checkpoint_id = 0;
    if (*text == NULL || (*text)[0] == '\0') {
        snprintf(param + at, sizeof param - at, ".text");
        return item_fail(e, 400, "invalid_value", param, "%s must be a non-empty string", param);
    }
    if (source == NULL || (strcmp(source, "provided") != 0 && strcmp(source, "checkpoint") != 0)) {
        snprintf(param + at, sizeof param - at, ".source");
        return item_fail(e, 400, "invalid_value", param, "%s must be 'provided' or 'checkpoint'",
                         param);
    }
    bool from_checkpoint = strcmp(source, "checkpoint") == 0;
    snprintf(param + at, sizeof param - at, ".checkpoint_id");
    if (from_checkpoint != (ck != NULL) || (ck != NULL && !json_is_integer(ck)))
        return item_fail(e, 400, "invalid_value", param,
                         "%s is an integer given exactly when source is 'checkpoint'", param);
    if (from_checkpoint) {
        *checkpoint_id = json_integer_value(ck);
        int found = db_row_exists(r->db, "SELECT 1 FROM checkpoints WHERE id = ?1", *checkpoint_id);
        if (found < 0)
            return item_fail(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(r->db));
        if (found == 0)
            return item_fail(e, 400, "checkpoint_not_found", param, "no checkpoint %lld",
                             (long long)*checkpoint_id);
    }
    return 1;
}

/* `sample`: {checkpoint_id, n? (2..k, default k), max_tokens?, temperature?,
 * top_p?, seed?} — the server samples the n candidates from the checkpoint
 * (generate.h) before it opens the transaction; out holds their texts. 1 ok,
 * 0 with e. */
static int sample_candidates(request *r, const char *prompt, const json_t *sample, int64_t k,
                             generate_params *p, generate_output *out, generate_error *e) {
    static const char *const keys[] = {"checkpoint_id", "n",    "max_tokens", "temperature",
                                       "top_p",         "seed", NULL};
    const char *key;
    const json_t *value;
    if (!json_is_object(sample))
        return item_fail(e, 400, "invalid_type", "sample",
                         "sample must be an object {checkpoint_id, n, max_tokens, temperature, "
                         "top_p, seed}");
    json_object_foreach((json_t *)sample, key, value) {
        if (!http_one_of(key, keys)) {
            char param[96];
            snprintf(param, sizeof param, "sample.%.48s", key);
            return item_fail(e, 400, "unknown_parameter", param, "unknown parameter %s", param);
        }
    }
    const json_t *ck = json_object_get(sample, "checkpoint_id");
    if (!json_is_integer(ck) || json_integer_value(ck) <= 0)
        return item_fail(e, 400, ck ? "invalid_type" : "missing_required_parameter",
                         "sample.checkpoint_id",
                         "sample.checkpoint_id must be the id of the checkpoint to sample the "
                         "candidates from");
    *e = (generate_error){0};
    *p = (generate_params){.checkpoint_id = json_integer_value(ck), .n_prompts = 1};
    p->prompts[0] = prompt;
    if (generate_parse_options(sample, "sample.", p, e) == 0 &&
        json_object_get(sample, "n") == NULL)
        p->n = (int)k;
    if (e->status == 0 && (p->n < 2 || p->n > k))
        return item_fail(e, 400, "invalid_value", "sample.n",
                         "sample.n must be in 2..%lld (the project's k)", (long long)k);
    if (e->status == 0 && generate_run(r->srv, r->db, p, out, e) == 0)
        return 1;
    /* generate_run names its own fields; here they live under sample. */
    if (strcmp(e->code, "checkpoint_not_found") == 0) /* a reference in the body: 400 */
        e->status = 400, snprintf(e->param, sizeof e->param, "sample.checkpoint_id");
    else if (strcmp(e->param, "max_tokens") == 0)
        snprintf(e->param, sizeof e->param, "sample.max_tokens");
    else if (strcmp(e->param, "n") == 0)
        snprintf(e->param, sizeof e->param, "sample.n");
    return 0;
}

/* One comparison to insert: its prompt and candidates' texts (borrowed
 * from the request body, or from sampled). */
typedef struct comparison_in {
    const char *prompt;
    size_t n;
    const char *texts[PROJECT_MAX_K];
    int64_t checkpoints[PROJECT_MAX_K];
    generate_output sampled;
} comparison_in;

/* Validates one comparison {prompt, candidates} or {prompt, sample}
 * (sampling its candidates if asked). 1 ok, 0 with e. */
static int comparison_parse(request *r, const json_t *body, int64_t k, comparison_in *in,
                            generate_error *e) {
    static const char *const keys[] = {"prompt", "candidates", "sample", NULL};
    memset(in, 0, sizeof *in);
    if (!json_is_object(body))
        return item_fail(e, 400, "invalid_type", NULL,
                         "a comparison must be an object {prompt, candidates} or {prompt, "
                         "sample}");
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)body, key, v) {
        if (!http_one_of(key, keys))
            return item_fail(e, 400, "unknown_parameter", key, "unknown parameter '%.48s'", key);
    }
    const char *prompt = json_string_value(json_object_get(body, "prompt"));
    json_t *candidates = json_object_get(body, "candidates");
    json_t *sample = json_object_get(body, "sample");
    size_t n = json_array_size(candidates);
    in->prompt = prompt;
    if (prompt == NULL || prompt[0] == '\0')
        return item_fail(e, 400, "invalid_value", "prompt", "prompt must be a non-empty string");
    if ((sample != NULL) == (candidates != NULL))
        return item_fail(e, 400, sample ? "invalid_value" : "missing_required_parameter",
                         "candidates",
                         "give candidates (the texts) or sample (a checkpoint the server "
                         "samples them from), exactly one");
    if (sample != NULL) {
        generate_params gp;
        if (!sample_candidates(r, prompt, sample, k, &gp, &in->sampled, e))
            return 0;
        in->n = (size_t)in->sampled.n_rows;
        for (size_t i = 0; i < in->n; i++)
            in->texts[i] = in->sampled.texts[i], in->checkpoints[i] = gp.checkpoint_id;
        return 1;
    }
    if (!json_is_array(candidates) || n < 2 || n > (size_t)k)
        return item_fail(
            e, 400, json_is_array(candidates) ? "invalid_value" : "invalid_type", "candidates",
            "candidates must be an array of 2..%lld candidates (the project's k)", (long long)k);
    in->n = n;
    for (size_t i = 0; i < n; i++)
        if (!check_candidate(r, json_array_get(candidates, i), i, &in->texts[i],
                             &in->checkpoints[i], e))
            return 0;
    return 1;
}

/* Inserts the comparison and its candidates in the open transaction: the
 * new id, or -1. */
static int64_t comparison_insert(request *r, const comparison_in *in) {
    sqlite3_stmt *st = db_cached_prepare(r->db, "INSERT INTO comparisons (project_id, prompt, "
                                                "created_at) VALUES (?1, ?2, ?3)");
    int64_t id = -1;
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_text(st, 2, in->prompt, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now_s());
    if (sqlite3_step(st) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(r->db);
    db_cached_done(st);
    st = NULL;
    int inserted = id > 0 && (st = db_cached_prepare(r->db, "INSERT INTO candidates "
                                                            "(comparison_id, position, text, "
                                                            "source, source_checkpoint_id) "
                                                            "VALUES (?1, ?2, ?3, ?4, ?5)")) != NULL;
    for (size_t i = 0; inserted && i < in->n; i++) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, (int64_t)i);
        sqlite3_bind_text(st, 3, in->texts[i], -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 4, in->checkpoints[i] ? "checkpoint" : "provided", -1, SQLITE_STATIC);
        if (in->checkpoints[i])
            sqlite3_bind_int64(st, 5, in->checkpoints[i]);
        else
            sqlite3_bind_null(st, 5);
        inserted = sqlite3_step(st) == SQLITE_DONE;
        sqlite3_reset(st);
    }
    if (st != NULL)
        db_cached_done(st);
    return inserted ? id : -1;
}

/* The project's k, or 0 after replying 404 / 500. */
static int64_t project_k(request *r, enum MHD_Result *replied) {
    int found;
    json_t *project = project_load(r->db, r->path_id, &found);
    if (project == NULL) {
        *replied = reply_not_found(r, "project", found);
        return 0;
    }
    int64_t k = json_integer_value(json_object_get(project, "k"));
    json_decref(project);
    return k;
}

/* POST /v1/projects/{id}/comparisons {prompt, candidates: [{text, source,
 * checkpoint_id}]} or {prompt, sample: {checkpoint_id, n, ...}}. */
enum MHD_Result route_comparisons_create(request *r) {
    enum MHD_Result replied;
    int64_t k = project_k(r, &replied);
    if (k == 0)
        return replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    comparison_in in;
    generate_error e = {0};
    if (!comparison_parse(r, body, k, &in, &e))
        replied =
            http_reply_error(r, e.status, e.code, e.param[0] ? e.param : NULL, "%s", e.message);
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        int64_t id = comparison_insert(r, &in);
        int found;
        json_t *comparison = id > 0 ? comparison_load(r->db, id, &found) : NULL;
        replied = comparison ? http_commit_reply(r, 200, comparison) : http_reply_db_error(r);
    }
    generate_output_free(&in.sampled);
    json_decref(body);
    return replied;
}

/* POST /v1/projects/{id}/comparisons/bulk: a JSON array of comparisons, or
 * JSONL (one per line), as the single route takes them. The body is held
 * whole (within --max-body-bytes) and at most BULK_MAX_ITEMS comparisons,
 * of which at most BULK_MAX_SAMPLED sample their candidates (generation
 * runs before the transaction, on this request's thread). Every item is
 * validated first; the first bad one is named by index (the error's
 * "index", param "[i].field") and nothing is stored; otherwise all are
 * inserted in one transaction. */
#define BULK_MAX_ITEMS   1000
#define BULK_MAX_SAMPLED 16

/* The body's items as a JSON array (JSON array or JSONL): NULL after
 * replying 400. */
static json_t *bulk_items(request *r, enum MHD_Result *replied) {
    char err[256], param[256];
    const char *p = r->body ? r->body : "";
    size_t len = r->body_len;
    size_t at = 0;
    while (at < len && (p[at] == ' ' || p[at] == '\t' || p[at] == '\r' || p[at] == '\n'))
        at++;
    if (at == len) {
        *replied = http_reply_error(r, 400, "invalid_json", NULL,
                                    "the body must be a JSON array of comparisons or JSONL");
        return NULL;
    }
    if (p[at] == '[') {
        json_t *items = http_json_parse(p, len, err, sizeof err, param, sizeof param);
        if (items == NULL || !json_is_array(items)) {
            json_decref(items);
            *replied = http_reply_error(r, 400, "invalid_json", param[0] ? param : NULL,
                                        "the request body is %s", items ? "not an array" : err);
            return NULL;
        }
        return items;
    }
    json_t *items = json_array();
    size_t line = 0;
    while (at < len) {
        const char *nl = memchr(p + at, '\n', len - at);
        size_t end = nl ? (size_t)(nl - p) : len;
        line++;
        size_t e = end;
        while (e > at && (p[e - 1] == '\r' || p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        if (e > at) {
            json_t *item = http_json_parse(p + at, e - at, err, sizeof err, param, sizeof param);
            if (item == NULL) {
                json_decref(items);
                *replied = http_reply_error_with(r, 400, "invalid_json", param[0] ? param : NULL,
                                                 json_pack("{s:I}", "line", (json_int_t)line),
                                                 "line %zu is %s", line, err);
                return NULL;
            }
            json_array_append_new(items, item);
            if (json_array_size(items) > BULK_MAX_ITEMS)
                break;
        }
        at = end + 1;
    }
    return items;
}

static void bulk_free(comparison_in *ins, size_t n) {
    for (size_t i = 0; i < n; i++)
        generate_output_free(&ins[i].sampled);
    free(ins);
}

enum MHD_Result route_comparisons_bulk(request *r) {
    enum MHD_Result replied;
    int64_t k = project_k(r, &replied);
    if (k == 0)
        return replied;
    json_t *items = bulk_items(r, &replied);
    if (items == NULL)
        return replied;
    size_t n = json_array_size(items), n_sampled = 0;
    if (n == 0 || n > BULK_MAX_ITEMS) {
        json_decref(items);
        return http_reply_error(r, n ? 413 : 400, n ? "too_many_items" : "invalid_value", NULL,
                                "a bulk request holds 1..%d comparisons", BULK_MAX_ITEMS);
    }
    for (size_t i = 0; i < n; i++)
        n_sampled += json_object_get(json_array_get(items, i), "sample") != NULL;
    if (n_sampled > BULK_MAX_SAMPLED) {
        json_decref(items);
        return http_reply_error(r, 400, "too_many_sampled", NULL,
                                "at most %d comparisons of a bulk request may sample their "
                                "candidates (%zu do)",
                                BULK_MAX_SAMPLED, n_sampled);
    }
    comparison_in *ins = calloc(n, sizeof *ins);
    if (ins == NULL) {
        json_decref(items);
        return MHD_NO;
    }
    generate_error e = {0};
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (!comparison_parse(r, json_array_get(items, i), k, &ins[i], &e))
            bad = i;
    if (bad < n) {
        char param[96];
        snprintf(param, sizeof param, "[%zu]%s%s", bad, e.param[0] ? "." : "", e.param);
        replied = http_reply_error_with(r, e.status, e.code, param,
                                        json_pack("{s:I}", "index", (json_int_t)bad),
                                        "comparison %zu: %s", bad, e.message);
    } else if (db_begin(r->db) != SQLITE_OK) {
        replied = http_reply_db_error(r);
    } else {
        json_t *ids = json_array();
        int ok = 1;
        for (size_t i = 0; ok && i < n; i++) {
            int64_t id = comparison_insert(r, &ins[i]);
            ok = id > 0 && json_array_append_new(ids, json_integer(id)) == 0;
        }
        if (!ok) {
            json_decref(ids);
            replied = http_reply_db_error(r);
            db_rollback(r->db);
        } else
            replied = http_commit_reply(
                r, 200,
                json_pack("{s:s, s:I, s:I, s:o}", "object", "comparison_bulk", "project_id",
                          (json_int_t)r->path_id, "n_comparisons", (json_int_t)n, "ids", ids));
    }
    bulk_free(ins, n);
    json_decref(items);
    return replied;
}

static json_t *comparison_item(sqlite3 *db, sqlite3_stmt *st, int64_t project_id) {
    (void)project_id;
    int found;
    return comparison_load(db, sqlite3_column_int64(st, 0), &found);
}

enum MHD_Result route_comparisons_list(request *r) {
    int found = db_row_exists(r->db, "SELECT 1 FROM projects WHERE id = ?1", r->path_id);
    if (found <= 0)
        return reply_not_found(r, "project", found);
    return reply_page(r,
                      "SELECT id FROM comparisons WHERE project_id = ?3 AND (?1 = 0 OR id < ?1) "
                      "ORDER BY id DESC LIMIT ?2",
                      r->path_id, comparison_item);
}

enum MHD_Result route_comparisons_get(request *r) {
    int found;
    json_t *c = comparison_load(r->db, r->path_id, &found);
    return c ? http_reply_json(r, 200, c) : reply_not_found(r, "comparison", found);
}

/* The pick and the lease of next, run by the group-commit writer
 * (http_defer_write) in one transaction with the other writes, so two
 * annotators never get the same last slot and concurrent calls share a
 * commit. write_ctx holds the project's overlap. */
static enum MHD_Result next_write_run(request *r) {
    const int64_t overlap = *(const int64_t *)r->write_ctx;
    const int64_t now = db_now_ms();
    /* Walks comparisons_by_rank_count in answer order (schema 007). */
    sqlite3_stmt *st = db_cached_prepare(
        r->db,
        "SELECT c.id FROM comparisons c INDEXED BY comparisons_by_rank_count WHERE "
        "c.project_id = ?1 AND c.n_ranked < ?4 AND NOT EXISTS (SELECT 1 FROM rankings k "
        "WHERE k.comparison_id = c.id AND k.token_id = ?2) AND c.n_ranked + (SELECT "
        "count(*) FROM comparison_leases l WHERE l.comparison_id = c.id AND l.token_id <> ?2 "
        "AND l.lease_expires_ms > ?3) < ?4 ORDER BY c.n_ranked, c.id LIMIT 1");
    if (st == NULL)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_int64(st, 2, r->token.id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, overlap);
    int rc = sqlite3_step(st);
    int64_t id = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_cached_done(st);
    if (rc != SQLITE_ROW)
        return rc != SQLITE_DONE ? http_reply_db_error(r)
                                 : http_reply_error(r, 404, "no_comparison_available", NULL,
                                                    "project %lld has no comparison left for "
                                                    "you to rank",
                                                    (long long)r->path_id);
    st = db_cached_prepare(r->db, "INSERT INTO comparison_leases (comparison_id, token_id, "
                                  "lease_expires_ms) VALUES (?1, ?2, ?3) ON CONFLICT DO UPDATE "
                                  "SET lease_expires_ms = excluded.lease_expires_ms");
    int ok = st != NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_int64(st, 2, r->token.id);
        sqlite3_bind_int64(st, 3, now + ANNOTATION_LEASE_MS);
        ok = sqlite3_step(st) == SQLITE_DONE;
        db_cached_done(st);
    }
    int found;
    json_t *c = ok ? comparison_load(r->db, id, &found) : NULL;
    if (c == NULL)
        return http_reply_db_error(r);
    json_object_set_new(c, "lease_expires_at",
                        json_integer((now + ANNOTATION_LEASE_MS + 999) / 1000));
    return http_commit_reply(r, 200, c);
}

/* GET /v1/projects/{id}/comparisons/next: leases the caller a comparison
 * they have not answered, below the overlap counting others' live leases,
 * least-ranked first; asking again before answering returns the same one. */
enum MHD_Result route_comparisons_next(request *r) {
    /* Only the overlap: the project's JSON counts its comparisons. */
    sqlite3_stmt *st = db_cached_prepare(r->db, "SELECT overlap FROM projects WHERE id = ?1");
    if (st == NULL)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, r->path_id);
    int rc = sqlite3_step(st);
    const int64_t overlap = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : 0;
    db_cached_done(st);
    if (rc != SQLITE_ROW)
        return reply_not_found(r, "project", rc == SQLITE_DONE ? 0 : -1);
    int64_t *ctx = malloc(sizeof *ctx);
    if (ctx == NULL)
        return MHD_NO;
    *ctx = overlap;
    r->write_ctx = ctx;
    return http_defer_write(r, next_write_run);
}

/* ---- rankings --------------------------------------------------------------------- */

/* The ranking's order: groups of candidate ids, best first. */
static json_t *ranking_order(sqlite3 *db, int64_t ranking_id) {
    sqlite3_stmt *st = db_cached_prepare(db, "SELECT e.rank, e.candidate_id FROM ranking_entries e "
                                             "JOIN candidates c ON c.id = e.candidate_id WHERE "
                                             "e.ranking_id = ?1 ORDER BY e.rank, c.position");
    if (st == NULL)
        return NULL;
    sqlite3_bind_int64(st, 1, ranking_id);
    json_t *order = json_array();
    int64_t last_rank = -1;
    while (sqlite3_step(st) == SQLITE_ROW) {
        int64_t rank = sqlite3_column_int64(st, 0);
        if (rank != last_rank)
            json_array_append_new(order, json_array());
        last_rank = rank;
        json_array_append_new(json_array_get(order, json_array_size(order) - 1),
                              json_integer(sqlite3_column_int64(st, 1)));
    }
    db_cached_done(st);
    return order;
}

#define RANKING_COLUMNS                                                                            \
    "k.id, k.comparison_id, t.name, k.skipped, k.note, k.created_at, (SELECT count(*) FROM "       \
    "preference_pairs p WHERE p.ranking_id = k.id) FROM rankings k JOIN api_tokens t ON t.id = "   \
    "k.token_id"

/* A ranking as the API shows it (order taken; note NULL: none). */
static json_t *ranking_json(int64_t id, int64_t comparison_id, const char *annotator, bool skipped,
                            json_t *order, const char *note, int64_t n_pairs, int64_t created_at) {
    return json_pack("{s:I, s:s, s:I, s:s, s:b, s:o, s:o, s:I, s:I}", "id", (json_int_t)id,
                     "object", "ranking", "comparison_id", (json_int_t)comparison_id, "annotator",
                     annotator, "skipped", skipped, "order", order, "note",
                     note ? json_string(note) : json_null(), "n_pairs", (json_int_t)n_pairs,
                     "created_at", (json_int_t)created_at);
}

static json_t *ranking_item(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    json_t *order = ranking_order(db, sqlite3_column_int64(st, 0));
    if (order == NULL)
        return NULL;
    return ranking_json(sqlite3_column_int64(st, 0), sqlite3_column_int64(st, 1),
                        (const char *)sqlite3_column_text(st, 2), sqlite3_column_int(st, 3) != 0,
                        order, (const char *)sqlite3_column_text(st, 4),
                        sqlite3_column_int64(st, 6), sqlite3_column_int64(st, 5));
}

/* Validates order against the comparison's candidates (ids[0..n)): every
 * candidate exactly once, in non-empty groups. rank[i] receives the group
 * of ids[i]. 1 ok, 0 replied. */
static int check_order(request *r, const json_t *order, const int64_t *ids, size_t n, int64_t *rank,
                       enum MHD_Result *replied) {
    if (!json_is_array(order)) {
        *replied = http_reply_error(r, 400, "invalid_type", "order",
                                    "order must be an array of groups of candidate ids, best "
                                    "first (a group holds ties)");
        return 0;
    }
    for (size_t i = 0; i < n; i++)
        rank[i] = -1;
    size_t g;
    json_t *group;
    json_array_foreach((json_t *)order, g, group) {
        char param[64];
        snprintf(param, sizeof param, "order[%zu]", g);
        if (!json_is_array(group) || json_array_size(group) == 0) {
            *replied = http_reply_error(r, 400, "invalid_type", param,
                                        "%s must be a non-empty array of candidate ids", param);
            return 0;
        }
        size_t j;
        json_t *idv;
        json_array_foreach(group, j, idv) {
            snprintf(param, sizeof param, "order[%zu][%zu]", g, j);
            size_t i = 0;
            while (i < n && !(json_is_integer(idv) && json_integer_value(idv) == ids[i]))
                i++;
            if (i == n) {
                *replied = http_reply_error(r, 400, "unknown_candidate", param,
                                            "%s is not a candidate id of this comparison", param);
                return 0;
            }
            if (rank[i] >= 0) {
                *replied =
                    http_reply_error(r, 400, "duplicate_candidate", param,
                                     "candidate %lld appears more than once", (long long)ids[i]);
                return 0;
            }
            rank[i] = (int64_t)g;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (rank[i] < 0) {
            *replied = http_reply_error(r, 400, "missing_candidate", "order",
                                        "order must rank every candidate; %lld is missing",
                                        (long long)ids[i]);
            return 0;
        }
    return 1;
}

/* Steps "INSERT INTO table (cols) VALUES (?, ?, ?), ..." with rows rows of
 * three values (v[3 * i ..]): one statement for the whole ranking instead
 * of one per row. 1 done, 0 failed. */
static int insert_rows(sqlite3 *db, const char *head, const int64_t *v, size_t rows) {
    static const char values[] = " VALUES (?, ?, ?)", more[] = ", (?, ?, ?)";
    char sql[128 + PROJECT_MAX_K * (PROJECT_MAX_K - 1) / 2 * (sizeof more - 1)];
    const size_t head_len = strlen(head);
    if (rows == 0 || head_len + sizeof values + (rows - 1) * (sizeof more - 1) > sizeof sql)
        return 0;
    memcpy(sql, head, head_len);
    char *end = memcpy(sql + head_len, values, sizeof values - 1);
    end += sizeof values - 1;
    for (size_t i = 1; i < rows; i++, end += sizeof more - 1)
        memcpy(end, more, sizeof more - 1);
    *end = '\0';
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    if (st == NULL)
        return 0;
    for (size_t i = 0; i < 3 * rows; i++)
        sqlite3_bind_int64(st, (int)i + 1, v[i]);
    int ok = sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    return ok;
}

/* Inserts the ranking, its entries and its pairs (every (better, worse)
 * pair of different ranks: K-wise -> pairwise) in the open transaction,
 * and ends the caller's lease. The new ranking id (and *n_pairs), or -1. */
static int64_t ranking_insert(request *r, bool skip, const char *note, const int64_t *ids,
                              const int64_t *rank, size_t n, int64_t created_at, int64_t *n_pairs) {
    int64_t id = -1;
    sqlite3_stmt *st = db_cached_prepare(r->db, "INSERT INTO rankings (comparison_id, token_id, "
                                                "skipped, note, created_at) VALUES (?1, ?2, ?3, "
                                                "?4, ?5)");
    if (st == NULL)
        return -1;
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_int64(st, 2, r->token.id);
    sqlite3_bind_int(st, 3, skip);
    sqlite3_bind_text(st, 4, note, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, created_at);
    if (sqlite3_step(st) == SQLITE_DONE)
        id = sqlite3_last_insert_rowid(r->db);
    db_cached_done(st);
    int ok = id > 0;
    size_t pairs = 0;
    if (ok && !skip) {
        int64_t v[3 * PROJECT_MAX_K * (PROJECT_MAX_K - 1) / 2] = {0};
        for (size_t i = 0; i < n; i++)
            v[3 * i] = id, v[3 * i + 1] = ids[i], v[3 * i + 2] = rank[i];
        ok = insert_rows(r->db, "INSERT INTO ranking_entries (ranking_id, candidate_id, rank)", v,
                         n);
        for (size_t a = 0; a < n; a++)
            for (size_t b = 0; b < n; b++)
                if (rank[a] < rank[b])
                    v[3 * pairs] = id, v[3 * pairs + 1] = ids[a], v[3 * pairs + 2] = ids[b],
                          pairs++;
        ok = ok && (pairs == 0 ||
                    insert_rows(r->db,
                                "INSERT INTO preference_pairs (ranking_id, chosen_candidate_id, "
                                "rejected_candidate_id)",
                                v, pairs));
    }
    ok = ok && (st = db_cached_prepare(r->db, "DELETE FROM comparison_leases WHERE "
                                              "comparison_id = ?1 AND token_id = ?2")) != NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, r->path_id);
        sqlite3_bind_int64(st, 2, r->token.id);
        ok = sqlite3_step(st) == SQLITE_DONE;
        db_cached_done(st);
    }
    *n_pairs = (int64_t)pairs;
    return ok ? id : -1;
}

/* Whether the caller may still answer: 1 yes (*annotator: the caller's
 * token name, malloc'd); 0 after replying 409 (they did already, or the
 * overlap is reached and they hold no lease). */
static int check_can_answer(request *r, char **annotator, enum MHD_Result *replied) {
    sqlite3_stmt *st = db_cached_prepare(
        r->db,
        "SELECT (SELECT count(*) FROM rankings WHERE comparison_id = ?1 AND token_id = ?2), "
        "(SELECT count(*) FROM rankings WHERE comparison_id = ?1 AND skipped = 0), "
        "(SELECT count(*) FROM comparison_leases WHERE comparison_id = ?1 AND token_id = ?2 "
        "AND lease_expires_ms > ?3), (SELECT p.overlap FROM comparisons c JOIN projects p ON "
        "p.id = c.project_id WHERE c.id = ?1), (SELECT name FROM api_tokens WHERE id = ?2)");
    if (st == NULL) {
        *replied = http_reply_db_error(r);
        return 0;
    }
    sqlite3_bind_int64(st, 1, r->path_id);
    sqlite3_bind_int64(st, 2, r->token.id);
    sqlite3_bind_int64(st, 3, db_now_ms());
    int ok = sqlite3_step(st) == SQLITE_ROW && sqlite3_column_type(st, 4) == SQLITE_TEXT;
    int64_t mine = sqlite3_column_int64(st, 0), ranked = sqlite3_column_int64(st, 1);
    int64_t leased = sqlite3_column_int64(st, 2), overlap = sqlite3_column_int64(st, 3);
    *annotator = ok ? strdup((const char *)sqlite3_column_text(st, 4)) : NULL;
    ok = ok && *annotator != NULL;
    db_cached_done(st);
    if (!ok)
        *replied = http_reply_db_error(r);
    else if (mine > 0)
        *replied =
            http_reply_error(r, 409, "already_ranked", NULL,
                             "you have already answered comparison %lld", (long long)r->path_id);
    else if (ranked >= overlap && leased == 0)
        *replied = http_reply_error(r, 409, "overlap_reached", NULL,
                                    "comparison %lld already has the %lld rankings its project "
                                    "asks for",
                                    (long long)r->path_id, (long long)overlap);
    ok = ok && mine == 0 && (ranked < overlap || leased > 0);
    if (!ok) {
        free(*annotator);
        *annotator = NULL;
    }
    return ok;
}

/* What route_rankings_create validated, for its write in the writer's
 * batch (one allocation; note follows the struct). */
typedef struct ranking_write {
    int64_t ids[PROJECT_MAX_K], rank[PROJECT_MAX_K];
    size_t n;
    bool skip, has_note;
    char note[];
} ranking_write;

/* The transactional part, run by the group-commit writer (http_defer_write):
 * the checks that depend on other writes, then the inserts. */
static enum MHD_Result ranking_write_run(request *r) {
    const ranking_write *w = r->write_ctx;
    enum MHD_Result replied = MHD_NO;
    char *annotator = NULL;
    if (!check_can_answer(r, &annotator, &replied))
        return replied;
    const char *note = w->has_note ? w->note : NULL;
    const int64_t created_at = db_now_s();
    int64_t n_pairs = 0;
    int64_t id = ranking_insert(r, w->skip, note, w->ids, w->rank, w->n, created_at, &n_pairs);
    if (id <= 0) {
        free(annotator);
        return http_reply_db_error(r);
    }
    /* The answer from what was written (GET reads the same back): groups
     * in rank order, candidates within a group in position order. */
    json_t *order = json_array();
    for (int64_t g = 0; !w->skip; g++) {
        json_t *group = json_array();
        for (size_t i = 0; i < w->n; i++)
            if (w->rank[i] == g)
                json_array_append_new(group, json_integer(w->ids[i]));
        if (json_array_size(group) == 0) {
            json_decref(group);
            break;
        }
        json_array_append_new(order, group);
    }
    json_t *ranking =
        ranking_json(id, r->path_id, annotator, w->skip, order, note, n_pairs, created_at);
    free(annotator);
    return ranking ? http_commit_reply(r, 200, ranking) : http_reply_db_error(r);
}

/* POST /v1/comparisons/{id}/rankings {order: [[id, ...], ...], note} or
 * {skip: true, note}. The annotator is the caller's token. Validation runs
 * here; the write joins the writer's next group commit. */
enum MHD_Result route_rankings_create(request *r) {
    enum MHD_Result replied;
    int64_t ids[PROJECT_MAX_K] = {0}, rank[PROJECT_MAX_K] = {0};
    size_t n = 0;
    /* Only the candidate ids, in position order (a comparison has 2..k). */
    sqlite3_stmt *st = db_cached_prepare(r->db, "SELECT id FROM candidates WHERE comparison_id = "
                                                "?1 ORDER BY position");
    if (st == NULL)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, r->path_id);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if (n < PROJECT_MAX_K)
            ids[n++] = sqlite3_column_int64(st, 0);
    db_cached_done(st);
    if (rc != SQLITE_DONE)
        return http_reply_db_error(r);
    if (n == 0)
        return reply_not_found(r, "comparison", 0);
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    static const char *const keys[] = {"order", "skip", "note", NULL};
    json_t *order = json_object_get(body, "order");
    json_t *skip_v = json_object_get(body, "skip");
    json_t *note_v = json_object_get(body, "note");
    bool skip = json_is_true(skip_v);
    int ok = http_check_keys(r, body, keys, &replied);
    if (ok && skip_v != NULL && (!json_is_boolean(skip_v) || (skip && order != NULL))) {
        replied = http_reply_error(r, 400, "invalid_value", "skip",
                                   "skip must be a boolean, and true only without order");
        ok = 0;
    } else if (ok && !skip && order == NULL) {
        replied = http_reply_error(r, 400, "missing_required_parameter", "order",
                                   "order is required (or skip: true)");
        ok = 0;
    } else if (ok && note_v != NULL && !json_is_null(note_v) &&
               (!json_is_string(note_v) || json_string_length(note_v) > RANKING_MAX_NOTE)) {
        replied = http_reply_error(r, 400, "invalid_value", "note",
                                   "note must be a string of at most %d bytes", RANKING_MAX_NOTE);
        ok = 0;
    }
    ok = ok && (skip || check_order(r, order, ids, n, rank, &replied));
    ranking_write *w = NULL;
    if (ok) {
        const char *note = json_string_value(note_v);
        size_t note_len = note ? strlen(note) : 0;
        if ((w = calloc(1, sizeof *w + note_len + 1)) == NULL) {
            json_decref(body);
            return MHD_NO;
        }
        memcpy(w->ids, ids, sizeof ids);
        memcpy(w->rank, rank, sizeof rank);
        w->n = n, w->skip = skip, w->has_note = note != NULL;
        if (note)
            memcpy(w->note, note, note_len + 1);
    }
    json_decref(body);
    if (!ok)
        return replied;
    r->write_ctx = w;
    return http_defer_write(r, ranking_write_run);
}

/* GET /v1/comparisons/{id}/rankings: the raw rankings, newest first. */
enum MHD_Result route_rankings_list(request *r) {
    int found = db_row_exists(r->db, "SELECT 1 FROM comparisons WHERE id = ?1", r->path_id);
    if (found <= 0)
        return reply_not_found(r, "comparison", found);
    return reply_page(r,
                      "SELECT " RANKING_COLUMNS " WHERE k.comparison_id = ?3 AND (?1 = 0 OR "
                      "k.id < ?1) ORDER BY k.id DESC LIMIT ?2",
                      r->path_id, ranking_item);
}

/* ---- GET /v1/projects/{id}/pairs ------------------------------------------------- */

static json_t *pair_item(sqlite3 *db, sqlite3_stmt *st, int64_t project_id) {
    (void)db, (void)project_id;
    return json_pack("{s:I, s:s, s:I, s:I, s:s, s:s, s:s, s:s, s:I, s:I, s:I}", "id",
                     (json_int_t)sqlite3_column_int64(st, 0), "object", "preference_pair",
                     "comparison_id", (json_int_t)sqlite3_column_int64(st, 1), "ranking_id",
                     (json_int_t)sqlite3_column_int64(st, 2), "annotator",
                     (const char *)sqlite3_column_text(st, 3), "prompt",
                     (const char *)sqlite3_column_text(st, 4), "chosen",
                     (const char *)sqlite3_column_text(st, 5), "rejected",
                     (const char *)sqlite3_column_text(st, 6), "chosen_candidate_id",
                     (json_int_t)sqlite3_column_int64(st, 7), "rejected_candidate_id",
                     (json_int_t)sqlite3_column_int64(st, 8), "created_at",
                     (json_int_t)sqlite3_column_int64(st, 9));
}

/* Training-ready pairs of the project: {prompt, chosen, rejected} as TRL
 * reads them, with where they came from. */
enum MHD_Result route_pairs_list(request *r) {
    int found = db_row_exists(r->db, "SELECT 1 FROM projects WHERE id = ?1", r->path_id);
    if (found <= 0)
        return reply_not_found(r, "project", found);
    return reply_page(r,
                      "SELECT p.id, k.comparison_id, p.ranking_id, t.name, c.prompt, ch.text, "
                      "rj.text, p.chosen_candidate_id, p.rejected_candidate_id, k.created_at "
                      "FROM preference_pairs p JOIN rankings k ON k.id = p.ranking_id "
                      "JOIN comparisons c ON c.id = k.comparison_id "
                      "JOIN api_tokens t ON t.id = k.token_id "
                      "JOIN candidates ch ON ch.id = p.chosen_candidate_id "
                      "JOIN candidates rj ON rj.id = p.rejected_candidate_id "
                      "WHERE c.project_id = ?3 AND (?1 = 0 OR p.id < ?1) "
                      "ORDER BY p.id DESC LIMIT ?2",
                      r->path_id, pair_item);
}

/* ---- JSONL exports: GET /v1/projects/{id}/pairs.jsonl, rankings.jsonl ------------ */

/* The export is streamed: each time MHD wants bytes, the next EXPORT_CHUNK
 * rows after the last id sent are read on a pooled connection (held only
 * for that read, like the job event stream; at most EXPORT_CHUNK_BYTES of
 * lines plus one row are held), so neither the whole export
 * nor a connection is held while a slow client reads. Rows come in id
 * order, each exactly once; rows committed while the export runs appear if
 * their id is above the ones already sent. */
#define EXPORT_CHUNK       256
#define EXPORT_CHUNK_BYTES (1 << 20)

typedef struct export_stream {
    server *srv;
    bool rankings; /* rankings.jsonl; else pairs.jsonl */
    bool ended;
    int64_t project_id, last_id;
    char *buf;
    size_t len, off, cap;
} export_stream;

static int export_append(export_stream *s, const char *text, size_t n) {
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 65536;
        while (cap < s->len + n)
            cap *= 2;
        char *grown = realloc(s->buf, cap);
        if (grown == NULL)
            return -1;
        s->buf = grown, s->cap = cap;
    }
    memcpy(s->buf + s->len, text, n);
    s->len += n;
    return 0;
}

static int export_line(export_stream *s, json_t *line) {
    char *text = line ? json_dumps(line, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(line);
    int ok =
        text != NULL && export_append(s, text, strlen(text)) == 0 && export_append(s, "\n", 1) == 0;
    free(text);
    return ok ? 0 : -1;
}

/* A ranking's line: the comparison, its candidates' texts, who, the order
 * (groups of candidate ids, best first; [] for a skip), skip and note. */
static json_t *export_ranking(sqlite3 *db, sqlite3_stmt *st) {
    int64_t id = sqlite3_column_int64(st, 0), comparison = sqlite3_column_int64(st, 1);
    json_t *order = ranking_order(db, id);
    json_t *candidates = json_array();
    sqlite3_stmt *cs = db_cached_prepare(db, "SELECT id, text FROM candidates WHERE "
                                             "comparison_id = ?1 ORDER BY position");
    if (order == NULL || cs == NULL) {
        json_decref(order), json_decref(candidates);
        if (cs)
            db_cached_done(cs);
        return NULL;
    }
    sqlite3_bind_int64(cs, 1, comparison);
    while (sqlite3_step(cs) == SQLITE_ROW)
        json_array_append_new(candidates,
                              json_pack("{s:I, s:s}", "id", (json_int_t)sqlite3_column_int64(cs, 0),
                                        "text", (const char *)sqlite3_column_text(cs, 1)));
    db_cached_done(cs);
    return json_pack("{s:I, s:I, s:s, s:o, s:s, s:o, s:b, s:o, s:I}", "ranking_id", (json_int_t)id,
                     "comparison_id", (json_int_t)comparison, "prompt",
                     (const char *)sqlite3_column_text(st, 2), "candidates", candidates,
                     "annotator", (const char *)sqlite3_column_text(st, 3), "order", order,
                     "skipped", sqlite3_column_int(st, 4) != 0, "note",
                     sqlite3_column_type(st, 5) == SQLITE_NULL
                         ? json_null()
                         : json_string((const char *)sqlite3_column_text(st, 5)),
                     "created_at", (json_int_t)sqlite3_column_int64(st, 6));
}

/* The next chunk into s->buf; s->ended when it was the last. 0 or -1. */
static int export_fill(export_stream *s) {
    sqlite3 *db = db_pool_acquire(&s->srv->pool);
    sqlite3_stmt *st = db_cached_prepare(
        db, s->rankings
                ? "SELECT k.id, k.comparison_id, c.prompt, t.name, k.skipped, k.note, "
                  "k.created_at FROM rankings k JOIN comparisons c ON c.id = k.comparison_id "
                  "JOIN api_tokens t ON t.id = k.token_id WHERE c.project_id = ?1 AND k.id > ?2 "
                  "ORDER BY k.id LIMIT ?3"
                : "SELECT p.id, c.prompt, ch.text, rj.text FROM preference_pairs p "
                  "JOIN rankings k ON k.id = p.ranking_id "
                  "JOIN comparisons c ON c.id = k.comparison_id "
                  "JOIN candidates ch ON ch.id = p.chosen_candidate_id "
                  "JOIN candidates rj ON rj.id = p.rejected_candidate_id "
                  "WHERE c.project_id = ?1 AND p.id > ?2 ORDER BY p.id LIMIT ?3");
    int ok = st != NULL && sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) == SQLITE_OK;
    int rc = SQLITE_DONE, n = 0;
    if (ok) {
        sqlite3_bind_int64(st, 1, s->project_id);
        sqlite3_bind_int64(st, 2, s->last_id);
        sqlite3_bind_int(st, 3, EXPORT_CHUNK);
        /* A chunk ends after EXPORT_CHUNK rows or EXPORT_CHUNK_BYTES of
         * lines (texts may be up to 1 MiB each), whichever comes first. */
        while (ok && s->len < EXPORT_CHUNK_BYTES && (rc = sqlite3_step(st)) == SQLITE_ROW) {
            s->last_id = sqlite3_column_int64(st, 0);
            n++;
            ok =
                export_line(s, s->rankings
                                   ? export_ranking(db, st)
                                   : json_pack("{s:s, s:s, s:s}", "prompt",
                                               (const char *)sqlite3_column_text(st, 1), "chosen",
                                               (const char *)sqlite3_column_text(st, 2), "rejected",
                                               (const char *)sqlite3_column_text(st, 3))) == 0;
        }
        ok = ok && (rc == SQLITE_DONE || rc == SQLITE_ROW);
    }
    if (st)
        db_cached_done(st);
    sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
    db_pool_release(&s->srv->pool, db);
    s->ended = n < EXPORT_CHUNK && rc == SQLITE_DONE;
    return ok ? 0 : -1;
}

static ssize_t export_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    export_stream *s = cls;
    while (s->off == s->len) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->off = s->len = 0;
        if (export_fill(s) != 0)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the client sees a cut stream */
    }
    size_t n = s->len - s->off < max ? s->len - s->off : max;
    memcpy(out, s->buf + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void export_free(void *cls) {
    export_stream *s = cls;
    free(s->buf);
    free(s);
}

static enum MHD_Result reply_export(request *r, bool rankings) {
    int found = db_row_exists(r->db, "SELECT 1 FROM projects WHERE id = ?1", r->path_id);
    if (found <= 0)
        return reply_not_found(r, "project", found);
    export_stream *s = calloc(1, sizeof *s);
    if (s == NULL)
        return MHD_NO;
    s->srv = r->srv, s->rankings = rankings, s->project_id = r->path_id;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, export_read, s, export_free);
    if (resp == NULL) {
        export_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/x-ndjson");
    return http_queue(r, 200, resp);
}

/* Training-ready pairs, one {"prompt","chosen","rejected"} line per derived
 * pair: exactly a preference dataset's upload format. */
enum MHD_Result route_pairs_export(request *r) {
    return reply_export(r, false);
}

enum MHD_Result route_rankings_export(request *r) {
    return reply_export(r, true);
}

/* ---- GET /v1/projects/{id}/agreement (server/agreement.c) ------------------------ */

enum MHD_Result route_projects_agreement(request *r) {
    int found = db_row_exists(r->db, "SELECT 1 FROM projects WHERE id = ?1", r->path_id);
    if (found <= 0)
        return reply_not_found(r, "project", found);
    /* Every ranking entry of the project, comparison by comparison; a skip
     * is one row with a NULL position. A read transaction: one snapshot. */
    sqlite3_stmt *st = NULL;
    if (sqlite3_exec(r->db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(r->db,
                           "SELECT c.id, (SELECT count(*) FROM candidates x WHERE "
                           "x.comparison_id = c.id), k.id, k.token_id, k.skipped, cd.position, "
                           "e.rank FROM comparisons c JOIN rankings k ON k.comparison_id = c.id "
                           "LEFT JOIN ranking_entries e ON e.ranking_id = k.id LEFT JOIN "
                           "candidates cd ON cd.id = e.candidate_id WHERE c.project_id = ?1 "
                           "ORDER BY c.id, k.id",
                           -1, &st, NULL) != SQLITE_OK) {
        enum MHD_Result replied = http_reply_db_error(r);
        db_rollback(r->db);
        return replied;
    }
    sqlite3_bind_int64(st, 1, r->path_id);
    agreement a;
    agreement_init(&a);
    agreement_ranking *rk = NULL;
    size_t m = 0, cap = 0;
    int64_t comparison = 0, ranking = 0, n_rankings = 0, n_skipped = 0, n_compared = 0;
    int n = 0, ok = 1, rc;
    while (ok && (rc = sqlite3_step(st)) != SQLITE_DONE) {
        int64_t c = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        if (rc != SQLITE_ROW) {
            ok = 0;
            break;
        }
        if (c != comparison) { /* the previous comparison is complete */
            if (m > 0)
                ok = agreement_add_comparison(&a, n, rk, m) == 0;
            n_compared += m > 0;
            m = 0, comparison = c, n = sqlite3_column_int(st, 1);
        }
        int64_t k = sqlite3_column_int64(st, 2), token = sqlite3_column_int64(st, 3);
        if (sqlite3_column_int(st, 4)) {
            ok = ok && agreement_add_skip(&a, token) == 0;
            n_skipped++;
            continue;
        }
        if (k != ranking) {
            if (m == cap) {
                cap = cap ? 2 * cap : 16;
                agreement_ranking *grown = realloc(rk, cap * sizeof *rk);
                if (grown == NULL) {
                    ok = 0;
                    break;
                }
                rk = grown;
            }
            memset(&rk[m], 0, sizeof rk[m]);
            rk[m++].annotator = token;
            ranking = k;
            n_rankings++;
        }
        int pos = sqlite3_column_int(st, 5);
        if (pos >= 0 && pos < AGREEMENT_MAX_K)
            rk[m - 1].group[pos] = sqlite3_column_int(st, 6);
    }
    if (ok && m > 0)
        ok = agreement_add_comparison(&a, n, rk, m) == 0;
    n_compared += m > 0;
    sqlite3_finalize(st);
    free(rk);
    json_t *annotators = json_array();
    sqlite3_stmt *names = NULL;
    if (ok && sqlite3_prepare_v2(r->db, "SELECT name FROM api_tokens WHERE id = ?1", -1, &names,
                                 NULL) != SQLITE_OK)
        ok = 0;
    for (size_t i = 0; ok && i < a.n_annotators; i++) {
        const agreement_annotator *x = &a.annotators[i];
        sqlite3_bind_int64(names, 1, x->annotator);
        const char *name =
            sqlite3_step(names) == SQLITE_ROW ? (const char *)sqlite3_column_text(names, 0) : "";
        json_array_append_new(
            annotators,
            json_pack("{s:s, s:I, s:I, s:I, s:o}", "annotator", name, "n_ranked",
                      (json_int_t)x->n_ranked, "n_skipped", (json_int_t)x->n_skipped, "n_compared",
                      (json_int_t)x->n_compared, "mean_pair_agreement",
                      x->n_compared ? json_real(x->agreement_sum / (double)x->n_compared)
                                    : json_null()));
        sqlite3_reset(names);
    }
    sqlite3_finalize(names);
    db_rollback(r->db);
    if (!ok) {
        agreement_free(&a);
        json_decref(annotators);
        return http_reply_db_error(r);
    }
    double alpha = 0;
    bool has_alpha = agreement_alpha(&a, &alpha);
    json_t *body =
        json_pack("{s:s, s:I, s:I, s:I, s:I, s:{s:s, s:o, s:I}, s:{s:o, s:I}, s:o}", "object",
                  "agreement", "project_id", (json_int_t)r->path_id, "n_comparisons_ranked",
                  (json_int_t)n_compared, "n_rankings", (json_int_t)n_rankings, "n_skipped",
                  (json_int_t)n_skipped, "krippendorff_alpha", "metric", "ordinal", "value",
                  has_alpha ? json_real(alpha) : json_null(), "n_units", (json_int_t)a.n_units,
                  "kendall_w", "mean", a.n_w ? json_real(a.w_sum / (double)a.n_w) : json_null(),
                  "n_comparisons", (json_int_t)a.n_w, "annotators", annotators);
    agreement_free(&a);
    return http_reply_json(r, 200, body);
}
