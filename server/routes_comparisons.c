/* Comparisons of a project: POST /v1/projects/{id}/comparisons (one),
 * .../comparisons/bulk (many, all or nothing), GET .../comparisons,
 * GET /v1/comparisons/{id}, and GET .../comparisons/next, the annotator's
 * next comparison: one of the project they have not answered, whose
 * rankings plus other annotators' live leases are below the overlap,
 * least-ranked first (or, at the project's gold_rate, a gold comparison
 * they have not answered); it is leased to them for the project's
 * lease_seconds and shown in their own shuffled order. What annotators see
 * of a comparison, and gold answers and candidate metadata, are
 * annotation_store.h's.
 * Candidates are given, or sampled by the server from a checkpoint
 * (generate.h).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "annotation_store.h"
#include "generate.h"
#include "prefs_store.h"
#include "ranking_order.h"
#include "routes.h"

/* The project's k, or 0 after replying 404 / 500. */
static int64_t project_k(request *r, enum MHD_Result *replied) {
    int64_t k, overlap;
    int found = prefs_project_settings(r->db, r->path_id, &k, &overlap);
    if (found <= 0) {
        *replied = http_reply_not_found(r, "project", found);
        return 0;
    }
    return k;
}

/* Validates candidates[i]: 1 ok (text, checkpoint id or 0), 0 with e. */
static int check_candidate(sqlite3 *db, const json_t *cand, size_t i, const char **text,
                           int64_t *checkpoint_id, http_error *e) {
    char param[64];
    snprintf(param, sizeof param, "candidates[%zu]", i);
    if (!json_is_object(cand))
        return http_error_set(e, 400, "invalid_type", param,
                              "%s must be an object {text, source, checkpoint_id}", param);
    static const char *const keys[] = {"text", "source", "checkpoint_id", "metadata", NULL};
    size_t at = strlen(param);
    snprintf(param + at, sizeof param - at, ".");
    if (!json_check_keys(cand, keys, param, e))
        return 0;
    *text = json_string_value(json_object_get(cand, "text"));
    json_t *metadata = json_object_get(cand, "metadata");
    if (metadata != NULL && !json_is_object(metadata)) {
        snprintf(param + at, sizeof param - at, ".metadata");
        return http_error_set(e, 400, "invalid_type", param,
                              "%s must be an object (the model, sampling settings, ...)", param);
    }
    json_t *source_v = json_object_get(cand, "source");
    const char *source = source_v ? json_string_value(source_v) : "provided";
    json_t *ck = json_object_get(cand, "checkpoint_id");
    *checkpoint_id = 0;
    if (*text == NULL) { /* empty is a candidate: see SAMPLE_EMPTY_RETRIES */
        snprintf(param + at, sizeof param - at, ".text");
        return http_error_set(e, 400, "invalid_value", param, "%s must be a string", param);
    }
    if (source == NULL || (strcmp(source, "provided") != 0 && strcmp(source, "checkpoint") != 0)) {
        snprintf(param + at, sizeof param - at, ".source");
        return http_error_set(e, 400, "invalid_value", param,
                              "%s must be 'provided' or 'checkpoint'", param);
    }
    bool from_checkpoint = strcmp(source, "checkpoint") == 0;
    snprintf(param + at, sizeof param - at, ".checkpoint_id");
    if (from_checkpoint != (ck != NULL) || (ck != NULL && !json_is_integer(ck)))
        return http_error_set(e, 400, "invalid_value", param,
                              "%s is an integer given exactly when source is 'checkpoint'", param);
    if (from_checkpoint) {
        *checkpoint_id = json_integer_value(ck);
        int found = prefs_checkpoint_exists(db, *checkpoint_id);
        if (found < 0)
            return http_error_set(e, 500, "database_error", NULL, "%s", sqlite3_errmsg(db));
        if (found == 0)
            return http_error_set(e, 400, "checkpoint_not_found", param, "no checkpoint %lld",
                                  (long long)*checkpoint_id);
    }
    return 1;
}

/* An empty sample: a completion with nothing but whitespace in it (the
 * model ended at once, or said only spaces and newlines). A person cannot
 * judge it, so the server samples such a row again, up to
 * SAMPLE_EMPTY_RETRIES times with other seeds; a model that still says
 * nothing keeps its empty candidate (it is a candidate like any other, and
 * a preference dataset takes an empty response: common/dataset_format.h). */
enum { SAMPLE_EMPTY_RETRIES = 8 };

static bool sample_is_empty(const char *text) {
    for (; *text; text++)
        if (!isspace((unsigned char)*text))
            return false;
    return true;
}

/* Samples out's empty rows again (see above). 1 ok, 0 with e. */
static int resample_empty(request *r, const generate_params *p, generate_output *out,
                          http_error *e) {
    for (uint64_t attempt = 1; attempt <= SAMPLE_EMPTY_RETRIES; attempt++) {
        int empty[GENERATE_MAX_ROWS], n_empty = 0;
        for (int i = 0; i < out->n_rows; i++)
            if (sample_is_empty(out->texts[i]))
                empty[n_empty++] = i;
        if (n_empty == 0)
            return 1;
        generate_params again = *p;
        again.n = n_empty;
        again.seed = p->seed + attempt * 0x9E3779B97F4A7C15ull; /* another stream per try */
        generate_output more;
        if (generate_run_pooled(r, &again, &more, e) != 0)
            return 0;
        for (int j = 0; j < n_empty && j < more.n_rows; j++) {
            char *swap = out->texts[empty[j]];
            out->texts[empty[j]] = more.texts[j], more.texts[j] = swap;
        }
        generate_output_free(&more);
    }
    return 1;
}

/* `sample`: {checkpoint_id, n? (2..k, default k), max_tokens?, temperature?,
 * top_p?, seed?} — the server samples the n candidates from the checkpoint
 * (generate.h) before it opens the transaction; out holds their texts. 1 ok,
 * 0 with e. */
static int sample_candidates(request *r, const char *prompt, const json_t *sample, int64_t k,
                             generate_params *p, generate_output *out, http_error *e) {
    static const char *const keys[] = {"checkpoint_id", "n",    "max_tokens", "temperature",
                                       "top_p",         "seed", NULL};
    if (!json_is_object(sample))
        return http_error_set(e, 400, "invalid_type", "sample",
                              "sample must be an object {checkpoint_id, n, max_tokens, "
                              "temperature, top_p, seed}");
    if (!json_check_keys(sample, keys, "sample.", e))
        return 0;
    const json_t *ck = json_object_get(sample, "checkpoint_id");
    if (!json_is_integer(ck) || json_integer_value(ck) <= 0)
        return http_error_set(e, 400, ck ? "invalid_type" : "missing_required_parameter",
                              "sample.checkpoint_id",
                              "sample.checkpoint_id must be the id of the checkpoint to sample the "
                              "candidates from");
    *e = (http_error){0};
    *p = (generate_params){.checkpoint_id = json_integer_value(ck), .n_prompts = 1};
    p->prompts[0] = prompt;
    if (generate_parse_options(sample, "sample.", p, e) == 0 &&
        json_object_get(sample, "n") == NULL)
        p->n = (int)k;
    if (e->status == 0 && (p->n < 2 || p->n > k))
        return http_error_set(e, 400, "invalid_value", "sample.n",
                              "sample.n must be in 2..%lld (the project's k)", (long long)k);
    if (e->status == 0 && generate_run_pooled(r, p, out, e) == 0 && resample_empty(r, p, out, e))
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
    const char *texts[RANKING_MAX_K];
    int64_t checkpoints[RANKING_MAX_K];
    const json_t *metadata[RANKING_MAX_K]; /* borrowed; NULL: none */
    json_t *sampled_metadata;              /* owned: how the sampled ones were made */
    bool has_gold;
    int gold_group[RANKING_MAX_K];
    generate_output sampled;
} comparison_in;

static void comparison_in_free(comparison_in *in) {
    generate_output_free(&in->sampled);
    json_decref(in->sampled_metadata);
}

/* gold: the known answer over the candidates' positions (groups of
 * 0-based positions, best first). 1 ok, 0 with e. */
static int check_gold(const json_t *gold, comparison_in *in, http_error *e) {
    int64_t positions[RANKING_MAX_K], rank[RANKING_MAX_K];
    for (size_t i = 0; i < in->n; i++)
        positions[i] = (int64_t)i;
    if (!ranking_check_order(gold, "gold", positions, in->n, rank, e))
        return 0;
    in->has_gold = true;
    for (size_t i = 0; i < in->n; i++)
        in->gold_group[i] = (int)rank[i];
    return 1;
}

/* Validates one comparison {prompt, candidates} or {prompt, sample}
 * (sampling its candidates if asked). 1 ok, 0 with e. */
static int comparison_parse(request *r, const json_t *body, int64_t k, comparison_in *in,
                            http_error *e) {
    static const char *const keys[] = {"prompt", "candidates", "sample", "gold", NULL};
    memset(in, 0, sizeof *in);
    if (!json_is_object(body))
        return http_error_set(e, 400, "invalid_type", NULL,
                              "a comparison must be an object {prompt, candidates} or {prompt, "
                              "sample}");
    if (!json_check_keys(body, keys, "", e))
        return 0;
    const char *prompt = json_string_value(json_object_get(body, "prompt"));
    json_t *candidates = json_object_get(body, "candidates");
    json_t *sample = json_object_get(body, "sample");
    size_t n = json_array_size(candidates);
    in->prompt = prompt;
    if (prompt == NULL || prompt[0] == '\0')
        return http_error_set(e, 400, "invalid_value", "prompt",
                              "prompt must be a non-empty string");
    if ((sample != NULL) == (candidates != NULL))
        return http_error_set(e, 400, sample ? "invalid_value" : "missing_required_parameter",
                              "candidates",
                              "give candidates (the texts) or sample (a checkpoint the server "
                              "samples them from), exactly one");
    if (sample != NULL) {
        generate_params gp;
        if (!sample_candidates(r, prompt, sample, k, &gp, &in->sampled, e))
            return 0;
        in->n = (size_t)in->sampled.n_rows;
        in->sampled_metadata =
            json_pack("{s:I, s:f, s:f, s:I, s:I}", "checkpoint_id", (json_int_t)gp.checkpoint_id,
                      "temperature", (double)gp.temperature, "top_p", (double)gp.top_p,
                      "max_tokens", (json_int_t)gp.max_tokens, "seed", (json_int_t)gp.seed);
        for (size_t i = 0; i < in->n; i++)
            in->texts[i] = in->sampled.texts[i], in->checkpoints[i] = gp.checkpoint_id,
            in->metadata[i] = in->sampled_metadata;
        json_t *gold = json_object_get(body, "gold");
        return gold == NULL || check_gold(gold, in, e);
    }
    if (!json_is_array(candidates) || n < 2 || n > (size_t)k)
        return http_error_set(
            e, 400, json_is_array(candidates) ? "invalid_value" : "invalid_type", "candidates",
            "candidates must be an array of 2..%lld candidates (the project's k)", (long long)k);
    in->n = n;
    for (size_t i = 0; i < n; i++) {
        if (!check_candidate(r->db, json_array_get(candidates, i), i, &in->texts[i],
                             &in->checkpoints[i], e))
            return 0;
        in->metadata[i] = json_object_get(json_array_get(candidates, i), "metadata");
    }
    json_t *gold = json_object_get(body, "gold");
    return gold == NULL || check_gold(gold, in, e);
}

/* Inserts in into the project, in the open transaction: its id, or -1. */
static int64_t insert(request *r, const comparison_in *in) {
    int64_t id =
        prefs_comparison_insert(r->db, r->path_id, in->prompt, in->n, in->texts, in->checkpoints);
    if (id > 0 && annot_comparison_set_extras(r->db, id, in->has_gold ? in->gold_group : NULL,
                                              in->metadata, in->n) != 0)
        return -1;
    return id;
}

enum MHD_Result route_comparisons_create(request *r) {
    enum MHD_Result replied = MHD_NO;
    int64_t k = project_k(r, &replied);
    if (k == 0)
        return replied;
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    comparison_in in;
    http_error e = {0};
    if (!comparison_parse(r, body, k, &in, &e))
        replied = http_reply_http_error(r, &e);
    else if (db_begin(r->db) != SQLITE_OK)
        replied = http_reply_db_error(r);
    else {
        int64_t id = insert(r, &in);
        int found;
        json_t *comparison = id > 0 ? prefs_comparison_get(r->db, id, &found) : NULL;
        if (comparison != NULL &&
            annot_comparison_view(r->db, comparison, r->token.id, true, false) != 0) {
            json_decref(comparison);
            comparison = NULL;
        }
        replied = comparison ? http_commit_reply(r, 200, comparison) : http_reply_db_error(r);
    }
    comparison_in_free(&in);
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
        comparison_in_free(&ins[i]);
    free(ins);
}

enum MHD_Result route_comparisons_bulk(request *r) {
    enum MHD_Result replied = MHD_NO;
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
    http_error e = {0};
    size_t bad = n;
    for (size_t i = 0; i < n && bad == n; i++)
        if (!comparison_parse(r, json_array_get(items, i), k, &ins[i], &e))
            bad = i;
    if (bad < n) {
        char param[sizeof e.param + 32];
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
            int64_t id = insert(r, &ins[i]);
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

/* What the caller may see of a comparison: admins everything, viewers
 * no gold or metadata, annotators also no source and their own order. */
static json_t *comparison_for(request *r, int64_t id, int *found) {
    json_t *c = prefs_comparison_get(r->db, id, found);
    const bool admin = r->token.role == AUTH_ROLE_ADMIN;
    if (c != NULL && annot_comparison_view(r->db, c, r->token.id, admin,
                                           r->token.role == AUTH_ROLE_ANNOTATOR) != 0) {
        json_decref(c);
        *found = -1;
        return NULL;
    }
    return c;
}

/* The list's rows as admins and as the others see them (the list keeps
 * the stored order; `next` and GET /v1/comparisons/{id} shuffle). */
static json_t *comparison_row(sqlite3 *db, sqlite3_stmt *st, bool admin) {
    int found;
    json_t *c = prefs_comparison_get(db, sqlite3_column_int64(st, 0), &found);
    if (c != NULL && annot_comparison_view(db, c, 0, admin, false) != 0) {
        json_decref(c);
        return NULL;
    }
    return c;
}

static json_t *comparison_row_admin(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    return comparison_row(db, st, true);
}

static json_t *comparison_row_blind(sqlite3 *db, sqlite3_stmt *st, int64_t scope) {
    (void)scope;
    return comparison_row(db, st, false);
}

enum MHD_Result route_comparisons_list(request *r) {
    return http_reply_list_of(
        r, "project", prefs_project_exists(r->db, r->path_id), prefs_comparisons.sql,
        r->token.role == AUTH_ROLE_ADMIN ? comparison_row_admin : comparison_row_blind);
}

enum MHD_Result route_comparisons_get(request *r) {
    int found;
    json_t *c = comparison_for(r, r->path_id, &found);
    return c ? http_reply_json(r, 200, c) : http_reply_not_found(r, "comparison", found);
}

/* The pick and the lease of next, run by the group-commit writer
 * (http_defer_write) in one transaction with the other writes, so two
 * annotators never get the same last slot and concurrent calls share a
 * commit. write_ctx holds the project's overlap. */
static enum MHD_Result next_write_run(request *r) {
    const annot_project *p = r->write_ctx;
    const int64_t now = db_now_ms(), lease_ms = p->lease_seconds * 1000;
    int64_t id = 0, answered = 0;
    int leased = 0;
    /* Gold at the project's rate: the draw is fixed by how many the caller
     * has answered, so asking again before answering gives the same kind. */
    if (p->gold_rate > 0) {
        leased = annot_answered_count(r->db, r->path_id, r->token.id, &answered) == 0 ? 0 : -1;
        if (leased == 0 && annotation_gold_draw(r->token.id, r->path_id, answered) < p->gold_rate)
            leased = annot_gold_pick(r->db, r->path_id, r->token.id, &id);
        if (leased > 0)
            leased = prefs_comparison_lease(r->db, id, r->token.id, now, lease_ms) == 0 ? 1 : -1;
    }
    if (leased == 0)
        leased = prefs_comparison_lease_next(r->db, r->path_id, r->token.id, p->overlap, now,
                                             lease_ms, &id);
    if (leased <= 0)
        return leased < 0 ? http_reply_db_error(r)
                          : http_reply_error(r, 404, "no_comparison_available", NULL,
                                             "project %lld has no comparison left for you to rank",
                                             (long long)r->path_id);
    int found;
    json_t *c = prefs_comparison_get(r->db, id, &found);
    if (c == NULL ||
        annot_comparison_view(r->db, c, r->token.id, r->token.role == AUTH_ROLE_ADMIN, true) != 0) {
        json_decref(c);
        return http_reply_db_error(r);
    }
    json_object_set_new(c, "lease_expires_at", json_integer((now + lease_ms + 999) / 1000));
    return http_commit_reply(r, 200, c);
}

/* GET /v1/projects/{id}/comparisons/next: leases the caller a comparison
 * they have not answered, below the overlap counting others' live leases,
 * least-ranked first; asking again before answering returns the same one. */
enum MHD_Result route_comparisons_next(request *r) {
    annot_project *p = malloc(sizeof *p);
    if (p == NULL)
        return MHD_NO;
    int found = annot_project_load(r->db, r->path_id, p);
    annot_project_free(p); /* next needs the numbers only */
    if (found <= 0) {
        free(p);
        return http_reply_not_found(r, "project", found);
    }
    r->write_ctx = p;
    return http_defer_write(r, next_write_run);
}
