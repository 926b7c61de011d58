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

#include "annotation_store.h"
#include "prefs_store.h"
#include "project_access.h"
#include "ranking_input.h"
#include "routes.h"

/* The transactional part, run by the group-commit writer (http_defer_write):
 * the checks that depend on other writes, then the inserts: the ranking,
 * and what it records besides its order (annotation_store.h): the order
 * the caller was shown it in, the labels, the skip reason, and the time
 * from being served it to answering. */
static enum MHD_Result ranking_write_run(request *r) {
    const ranking_write *w = r->write_ctx;
    int64_t project_id = 0;
    const int closed = project_access_rank_state(r->db, r->path_id, &project_id);
    if (closed != PROJECT_STATE_OPEN) /* a lock committed since project_access_check */
        return closed < 0 ? http_reply_db_error(r)
                          : project_access_reply_closed(r, closed, project_id, r->path_id);
    const int64_t now_ms = db_now_ms();
    prefs_answer_state s;
    if (prefs_answer_state_get(r->db, r->path_id, r->token.id, now_ms, &s) != 0) {
        free(s.annotator);
        return http_reply_db_error(r);
    }
    char *annotator = s.annotator;
    if (s.mine > 0 || (s.ranked >= s.overlap && s.leased == 0)) {
        free(annotator);
        return s.mine > 0 ? http_reply_error(r, 409, "already_ranked", NULL,
                                             "you have already answered comparison %lld (edit "
                                             "it with PUT /v1/rankings/{id})",
                                             (long long)r->path_id)
                          : http_reply_error(r, 409, "overlap_reached", NULL,
                                             "comparison %lld already has the %lld rankings its "
                                             "project asks for",
                                             (long long)r->path_id, (long long)s.overlap);
    }
    int64_t served_ms = 0;
    const int served = annot_lease_served_ms(r->db, r->path_id, r->token.id, &served_ms);
    const char *note = ranking_write_note(w);
    const int64_t created_at = db_now_s();
    /* The extras go into the ranking's own row, and the answer is built
     * from them (annot_ranking_put_extras, as a read shows them). */
    size_t perm[RANKING_MAX_K];
    json_t *shown = json_array();
    annotation_shuffle(r->token.id, r->path_id, w->n, perm);
    for (size_t j = 0; j < w->n; j++)
        json_array_append_new(shown, json_integer(w->ids[perm[j]]));
    json_t *labels = ranking_write_labels(w);
    char *shown_text = w->n > 0 ? json_dumps(shown, JSON_COMPACT) : NULL;
    char *labels_text = labels ? json_dumps(labels, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    json_decref(shown), json_decref(labels);
    const prefs_ranking_extras extras = {shown_text, labels_text,
                                         w->skip_reason[0] ? w->skip_reason : NULL,
                                         served > 0 ? now_ms - served_ms : -1};
    int64_t n_pairs = 0;
    const bool texts = (w->n == 0 || shown_text) && (!w->has_labels || labels_text);
    int64_t id = served < 0 || !texts
                     ? -1
                     : prefs_ranking_insert(r->db, r->path_id, r->token.id, w->skip, note, w->ids,
                                            w->rank, w->n, &extras, created_at, &n_pairs);
    if (id <= 0) {
        free(annotator), free(shown_text), free(labels_text);
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
    if (ranking != NULL)
        annot_ranking_put_extras(ranking, &extras, project_id);
    free(shown_text), free(labels_text);
    return ranking ? http_commit_reply(r, 200, ranking) : http_reply_db_error(r);
}

/* POST /v1/comparisons/{id}/rankings {order: [[id, ...], ...], note,
 * labels} or {skip: true, skip_reason, note} (ranking_input.h). The
 * annotator is the caller's token. Validation runs here; the write joins
 * the writer's next group commit. */
enum MHD_Result route_rankings_create(request *r) {
    int64_t project_id = 0;
    int found = prefs_comparison_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "comparison", found);
    if (annot_comparison_project(r->db, r->path_id, &project_id) != 0)
        return http_reply_db_error(r);
    return ranking_input_defer(r, r->path_id, project_id, ranking_write_run);
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
