/* A job's events (GET /v1/jobs/{id}/events, newest first with `after` = the
 * last id of the previous page), the rollouts its training kept
 * (GET /v1/jobs/{id}/rollouts, paged the same way), its training metrics by step
 * (GET /v1/jobs/{id}/metrics, oldest first with `after_step`) and its live
 * stream of events (GET /v1/jobs/{id}/stream, Server-Sent Events).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "job_events_store.h"
#include "job_json.h"
#include "metrics_page.h"
#include "park.h"
#include "series_cache.h"
#include "routes.h"

/* ---- GET /v1/jobs/{id}/events ------------------------------------------------- */

enum MHD_Result route_jobs_events(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 20, 1000, &limit, &after, &replied) ||
        !job_require(r, &replied))
        return replied;
    return http_reply_page(r, job_events_store_page_sql, after, limit, r->path_id,
                           job_events_store_json);
}

/* ---- GET /v1/jobs/{id}/rollouts ----------------------------------------------- */

enum MHD_Result route_jobs_rollouts(request *r) {
    enum MHD_Result replied;
    int64_t limit, after;
    if (!http_query_page(r, "after", 10, 100, &limit, &after, &replied) ||
        !job_require(r, &replied))
        return replied;
    return http_reply_page(r, job_events_store_rollouts_sql, after, limit, r->path_id,
                           job_events_store_rollout_json);
}

/* ---- GET /v1/jobs/{id}/metrics?names=a,b&after_step=S&limit=N ---------------- */

/* Pages are whole steps: data is [{step, metrics: {name: value}}], oldest
 * first, at most limit steps; the next page starts after last_step.
 *
 * Three ways to the same bytes (server/metrics_page.h): a series of one
 * name from the read cache (no SQL once a finished job's series is cached;
 * one indexed statement for a running job's, which appends what is new:
 * server/series_cache.h); other named queries from the fast serializer; the
 * rest (every name, or what the fast path declines) from jansson. */
enum MHD_Result route_jobs_metrics(request *r) {
    enum MHD_Result replied;
    int64_t limit, unused;
    if (!http_query_page(r, NULL, 100, 10000, &limit, &unused, &replied))
        return replied;
    const char *after_text = http_query(r, "after_step");
    int64_t after_step = INT64_MIN;
    bool after_ok = after_text == NULL || http_parse_int64(after_text, strlen(after_text),
                                                           INT64_MIN, INT64_MAX, &after_step);
    const char *names_text = http_query(r, "names");
    bool one_name = names_text != NULL && names_text[0] != '\0' && strlen(names_text) <= 64 &&
                    strchr(names_text, ',') == NULL;
    series_cache *cache = r->srv->series_cache;
    char *text = NULL;
    size_t len = 0;
    int cached = 0;
    if (cache != NULL && after_ok && one_name &&
        (cached = series_cache_serve(cache, r->db, r->path_id, names_text, after_step, limit, &text,
                                     &len)) == 1)
        return http_reply_json_text(r, 200, text, len);
    if (cached < 0)
        return MHD_NO;
    if (!job_require(r, &replied))
        return replied;
    if (!after_ok)
        return http_reply_error(r, 400, "invalid_value", "after_step",
                                "after_step must be an integer in [%lld, %lld]",
                                (long long)INT64_MIN, (long long)INT64_MAX);
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
    sqlite3_stmt *st =
        ok && !revoked ? job_events_store_after(db, s->job_id, s->last_id, 200) : NULL;
    ok = ok && (revoked || st != NULL);
    int n_events = 0;
    while (ok && st != NULL && sqlite3_step(st) == SQLITE_ROW) {
        json_t *event = job_events_store_json(db, st, s->job_id);
        char *text = json_dumps(event, HTTP_JSON_DUMP_FLAGS);
        char head[96];
        int hn = snprintf(head, sizeof head,
                          "id: %lld\nevent: %s\ndata: ", (long long)job_events_store_id(st),
                          job_events_store_type(st));
        ok = text && sse_append(s, head, (size_t)hn) == 0 &&
             sse_append(s, text, strlen(text)) == 0 && sse_append(s, "\n\n", 2) == 0;
        s->last_id = job_events_store_id(st);
        n_events++;
        free(text);
        json_decref(event);
    }
    sqlite3_finalize(st);
    if (revoked) {
        static const char gone[] =
            "event: error\ndata: {\"error\":{\"message\":\"the API token was revoked\","
            "\"type\":\"authentication_error\",\"param\":null,\"code\":\"invalid_api_key\"}}\n\n";
        ok = sse_append(s, gone, sizeof gone - 1) == 0;
        s->ended = true;
    } else if (ok && n_events == 0) {
        char status[JOBS_DB_STATUS_BYTES] = "deleted";
        ok = jobs_db_status(db, s->job_id, status) >= 0;
        if (ok && (strcmp(status, "succeeded") == 0 || strcmp(status, "failed") == 0 ||
                   strcmp(status, "cancelled") == 0 || strcmp(status, "deleted") == 0)) {
            char end[96];
            int en = snprintf(end, sizeof end, "event: end\ndata: {\"status\":\"%s\"}\n\n", status);
            ok = sse_append(s, end, (size_t)en) == 0;
            s->ended = true;
        }
    }
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
    if (!job_require(r, &replied))
        return replied;
    const char *resume = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    const char *param = resume ? "Last-Event-ID" : "after";
    if (resume == NULL)
        resume = http_query(r, "after");
    int64_t last_id = 0;
    if (resume != NULL && !http_parse_int64(resume, strlen(resume), 0, INT64_MAX, &last_id))
        return http_reply_error(r, 400, "invalid_value", param,
                                "%s must be an event id in [0, %lld]", param, (long long)INT64_MAX);
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
