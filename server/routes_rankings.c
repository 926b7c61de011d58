/* Rankings: POST /v1/comparisons/{id}/rankings (an annotator's answer),
 * GET .../rankings, and what they derive: the preference pairs
 * (GET /v1/projects/{id}/pairs) and the JSONL exports (pairs.jsonl,
 * rankings.jsonl).
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
#include "ranking_input.h"
#include "routes.h"

/* The transactional part, run by the group-commit writer (http_defer_write):
 * the checks that depend on other writes, then the inserts: the ranking,
 * and what it records besides its order (annotation_store.h): the order
 * the caller was shown it in, the labels, the skip reason, and the time
 * from being served it to answering. */
static enum MHD_Result ranking_write_run(request *r) {
    const ranking_write *w = r->write_ctx;
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
    int64_t n_pairs = 0;
    int64_t id = served < 0 ? -1
                            : prefs_ranking_insert(r->db, r->path_id, r->token.id, w->skip, note,
                                                   w->ids, w->rank, w->n, created_at, &n_pairs);
    size_t perm[RANKING_MAX_K];
    int64_t shown[RANKING_MAX_K];
    annotation_shuffle(r->token.id, r->path_id, w->n, perm);
    for (size_t j = 0; j < w->n; j++)
        shown[j] = w->ids[perm[j]];
    json_t *labels = ranking_write_labels(w);
    if (id > 0 && annot_ranking_set_extras(r->db, id, shown, w->n, labels,
                                           w->skip_reason[0] ? w->skip_reason : NULL,
                                           served > 0 ? now_ms - served_ms : -1, 0) != 0)
        id = -1;
    json_decref(labels);
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
    if (ranking != NULL && annot_ranking_add_extras(r->db, ranking) != 0) {
        json_decref(ranking);
        ranking = NULL;
    }
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
    textbuf buf;
    size_t off; /* sent of buf */
} export_stream;

static ssize_t export_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    export_stream *s = cls;
    while (s->off == s->buf.len) {
        if (s->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        s->off = s->buf.len = 0;
        sqlite3 *db = db_pool_acquire(&s->srv->pool);
        int rc = prefs_export_chunk(db, s->rankings, s->project_id, &s->last_id, EXPORT_CHUNK,
                                    EXPORT_CHUNK_BYTES, &s->buf, &s->ended);
        db_pool_release(&s->srv->pool, db);
        if (rc != 0)
            return MHD_CONTENT_READER_END_WITH_ERROR; /* the client sees a cut stream */
    }
    size_t n = s->buf.len - s->off < max ? s->buf.len - s->off : max;
    memcpy(out, s->buf.p + s->off, n);
    s->off += n;
    return (ssize_t)n;
}

static void export_free(void *cls) {
    export_stream *s = cls;
    free(s->buf.p);
    free(s);
}

static enum MHD_Result reply_export(request *r, bool rankings) {
    int found = prefs_project_exists(r->db, r->path_id);
    if (found <= 0)
        return http_reply_not_found(r, "project", found);
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
