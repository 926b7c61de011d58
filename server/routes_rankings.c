/* Rankings: POST /v1/comparisons/{id}/rankings (an annotator's answer),
 * GET .../rankings, and what they derive: the preference pairs
 * (GET /v1/projects/{id}/pairs) and rankings.jsonl (the pair exports are
 * routes_exports.c).
 *
 * A ranking is a full order over the comparison's candidates, best first,
 * in groups of ties, or a skip; a ranking of K candidates gives every
 * ordered pair (better, worse) of different groups as a preference pair,
 * in the same transaction.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prefs_store.h"
#include "project_access.h"
#include "routes.h"

#define RANKING_MAX_NOTE 4096

/* Validates order against the comparison's candidates (ids[0..n)): every
 * candidate exactly once, in non-empty groups. rank[i] receives the group
 * of ids[i]. 1 ok, 0 with e. */
static int check_order(const json_t *order, const int64_t *ids, size_t n, int64_t *rank,
                       http_error *e) {
    if (!json_is_array(order))
        return http_error_set(e, 400, "invalid_type", "order",
                              "order must be an array of groups of candidate ids, best "
                              "first (a group holds ties)");
    for (size_t i = 0; i < n; i++)
        rank[i] = -1;
    size_t g;
    json_t *group;
    json_array_foreach((json_t *)order, g, group) {
        char param[64];
        snprintf(param, sizeof param, "order[%zu]", g);
        if (!json_is_array(group) || json_array_size(group) == 0) {
            return http_error_set(e, 400, "invalid_type", param,
                                  "%s must be a non-empty array of candidate ids", param);
        }
        size_t j;
        json_t *idv;
        json_array_foreach(group, j, idv) {
            snprintf(param, sizeof param, "order[%zu][%zu]", g, j);
            size_t i = 0;
            while (i < n && !(json_is_integer(idv) && json_integer_value(idv) == ids[i]))
                i++;
            if (i == n) {
                return http_error_set(e, 400, "unknown_candidate", param,
                                      "%s is not a candidate id of this comparison", param);
            }
            if (rank[i] >= 0) {
                return http_error_set(e, 400, "duplicate_candidate", param,
                                      "candidate %lld appears more than once", (long long)ids[i]);
            }
            rank[i] = (int64_t)g;
        }
    }
    for (size_t i = 0; i < n; i++)
        if (rank[i] < 0) {
            return http_error_set(e, 400, "missing_candidate", "order",
                                  "order must rank every candidate; %lld is missing",
                                  (long long)ids[i]);
        }
    return 1;
}

/* What route_rankings_create validated, for its write in the writer's
 * batch (one allocation; note follows the struct). */
typedef struct ranking_write {
    int64_t ids[RANKING_MAX_K], rank[RANKING_MAX_K];
    size_t n;
    bool skip, has_note;
    char note[];
} ranking_write;

/* The transactional part, run by the group-commit writer (http_defer_write):
 * the checks that depend on other writes, then the inserts. */
static enum MHD_Result ranking_write_run(request *r) {
    const ranking_write *w = r->write_ctx;
    int64_t project_id = 0;
    const int closed = project_access_rank_state(r->db, r->path_id, &project_id);
    if (closed != PROJECT_STATE_OPEN) /* a lock committed since project_access_check */
        return closed < 0 ? http_reply_db_error(r)
                          : project_access_reply_closed(r, closed, project_id, r->path_id);
    prefs_answer_state s;
    if (prefs_answer_state_get(r->db, r->path_id, r->token.id, db_now_ms(), &s) != 0) {
        free(s.annotator);
        return http_reply_db_error(r);
    }
    char *annotator = s.annotator;
    if (s.mine > 0 || (s.ranked >= s.overlap && s.leased == 0)) {
        free(annotator);
        return s.mine > 0 ? http_reply_error(r, 409, "already_ranked", NULL,
                                             "you have already answered comparison %lld",
                                             (long long)r->path_id)
                          : http_reply_error(r, 409, "overlap_reached", NULL,
                                             "comparison %lld already has the %lld rankings its "
                                             "project asks for",
                                             (long long)r->path_id, (long long)s.overlap);
    }
    const char *note = w->has_note ? w->note : NULL;
    const int64_t created_at = db_now_s();
    int64_t n_pairs = 0;
    int64_t id = prefs_ranking_insert(r->db, r->path_id, r->token.id, w->skip, note, w->ids,
                                      w->rank, w->n, created_at, &n_pairs);
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
        prefs_ranking_json(id, r->path_id, annotator, w->skip, order, note, n_pairs, created_at);
    free(annotator);
    return ranking ? http_commit_reply(r, 200, ranking) : http_reply_db_error(r);
}

/* The body {order, note} or {skip: true, note} against the comparison's
 * candidates ids[0..n): 1 ok (*skip, rank, *note), 0 with e. */
static int check_ranking(const json_t *body, const int64_t *ids, size_t n, bool *skip,
                         int64_t *rank, const char **note, http_error *e) {
    static const char *const keys[] = {"order", "skip", "note", NULL};
    json_t *order = json_object_get(body, "order");
    json_t *skip_v = json_object_get(body, "skip");
    json_t *note_v = json_object_get(body, "note");
    *skip = json_is_true(skip_v);
    *note = json_string_value(note_v);
    if (!json_check_keys(body, keys, "", e))
        return 0;
    if (skip_v != NULL && (!json_is_boolean(skip_v) || (*skip && order != NULL)))
        return http_error_set(e, 400, "invalid_value", "skip",
                              "skip must be a boolean, and true only without order");
    if (!*skip && order == NULL)
        return http_error_set(e, 400, "missing_required_parameter", "order",
                              "order is required (or skip: true)");
    if (note_v != NULL && !json_is_null(note_v) &&
        (!json_is_string(note_v) || json_string_length(note_v) > RANKING_MAX_NOTE))
        return http_error_set(e, 400, "invalid_value", "note",
                              "note must be a string of at most %d bytes", RANKING_MAX_NOTE);
    return *skip || check_order(order, ids, n, rank, e);
}

/* POST /v1/comparisons/{id}/rankings {order: [[id, ...], ...], note} or
 * {skip: true, note}. The annotator is the caller's token. Validation runs
 * here; the write joins the writer's next group commit. */
enum MHD_Result route_rankings_create(request *r) {
    enum MHD_Result replied;
    int64_t ids[RANKING_MAX_K] = {0}, rank[RANKING_MAX_K] = {0};
    size_t n = 0;
    if (prefs_candidate_ids(r->db, r->path_id, ids, &n) != 0)
        return http_reply_db_error(r);
    if (n == 0)
        return http_reply_not_found(r, "comparison", 0);
    json_t *body = http_body_object(r, &replied);
    if (body == NULL)
        return replied;
    bool skip;
    const char *note;
    http_error e;
    if (!check_ranking(body, ids, n, &skip, rank, &note, &e)) {
        json_decref(body);
        return http_reply_http_error(r, &e);
    }
    size_t note_len = note ? strlen(note) : 0;
    ranking_write *w = calloc(1, sizeof *w + note_len + 1);
    if (w == NULL) {
        json_decref(body);
        return MHD_NO;
    }
    memcpy(w->ids, ids, sizeof ids);
    memcpy(w->rank, rank, sizeof rank);
    w->n = n, w->skip = skip, w->has_note = note != NULL;
    if (note)
        memcpy(w->note, note, note_len + 1);
    json_decref(body);
    r->write_ctx = w;
    return http_defer_write(r, ranking_write_run);
}

/* GET /v1/comparisons/{id}/rankings: the raw rankings, newest first. */
enum MHD_Result route_rankings_list(request *r) {
    return http_reply_list_of(r, "comparison", prefs_comparison_exists(r->db, r->path_id),
                              prefs_rankings.sql, prefs_rankings.row);
}

/* ---- GET /v1/projects/{id}/pairs ------------------------------------------------- */

/* Training-ready pairs of the project: {prompt, chosen, rejected} as TRL
 * reads them, with where they came from. */
enum MHD_Result route_pairs_list(request *r) {
    return http_reply_list_of(r, "project", prefs_project_exists(r->db, r->path_id),
                              prefs_pairs.sql, prefs_pairs.row);
}

/* ---- GET /v1/projects/{id}/rankings.jsonl ----------------------------------------- */

/* pairs.jsonl is the TRL export (routes_exports.c); both stream the same way. */
static int rankings_chunk(sqlite3 *db, const void *ctx, int64_t *last_id, int max_rows,
                          size_t max_bytes, textbuf *out, bool *ended) {
    return prefs_export_chunk(db, *(const int64_t *)ctx, last_id, max_rows, max_bytes, out, ended);
}

enum MHD_Result route_rankings_export(request *r) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
    int64_t *project_id = malloc(sizeof *project_id);
    if (project_id == NULL)
        return MHD_NO;
    *project_id = r->path_id;
    return export_stream_reply(r, "application/x-ndjson", NULL, rankings_chunk, project_id);
}
