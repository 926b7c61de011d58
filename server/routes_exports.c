/* Exports of a project: GET /v1/projects/{id}/export?format=... (TRL,
 * OpenAI DPO, CSV; filters in docs/api.md), and the streaming every
 * export shares, pairs.jsonl and rankings.jsonl included (routes_rankings.c).
 *
 * An export is streamed: each time MHD wants bytes, the next EXPORT_CHUNK
 * rows after the last id sent are read on a pooled connection (held only
 * for that read, like the job event stream; at most EXPORT_CHUNK_BYTES of
 * lines plus one row are held), so neither the whole export nor a
 * connection is held while a slow client reads. Rows come in id order,
 * each exactly once; rows committed while the export runs appear if their
 * id is above the ones already sent.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "export_store.h"
#include "prefs_store.h"
#include "routes.h"

#define EXPORT_CHUNK       256
#define EXPORT_CHUNK_BYTES (1 << 20)

typedef struct export_stream {
    server *srv;
    export_chunk_fn chunk;
    void *ctx; /* the chunk's, freed with the stream */
    bool ended;
    int64_t last_id;
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
        int rc =
            s->chunk(db, s->ctx, &s->last_id, EXPORT_CHUNK, EXPORT_CHUNK_BYTES, &s->buf, &s->ended);
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
    free(s->ctx);
    free(s->buf.p);
    free(s);
}

enum MHD_Result export_stream_reply(request *r, const char *content_type, const char *header,
                                    export_chunk_fn chunk, void *ctx) {
    export_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        free(ctx);
        return MHD_NO;
    }
    s->srv = r->srv, s->chunk = chunk, s->ctx = ctx;
    if (header != NULL)
        textbuf_puts(&s->buf, header);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 65536, export_read, s, export_free);
    if (resp == NULL || s->buf.failed) {
        if (resp != NULL)
            MHD_destroy_response(resp);
        else
            export_free(s);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", content_type);
    return http_queue(r, 200, resp);
}

/* ---- GET /v1/projects/{id}/export ------------------------------------------------- */

/* The filter and the strings it points into, in one allocation. */
typedef struct export_request {
    export_filter f;
    char annotators[2048], exclude_annotators[2048];
} export_request;

static int pairs_chunk(sqlite3 *db, const void *ctx, int64_t *last_id, int max_rows,
                       size_t max_bytes, textbuf *out, bool *ended) {
    return export_chunk(db, &((const export_request *)ctx)->f, last_id, max_rows, max_bytes, out,
                        ended);
}

/* ?name, a comma-separated list of token ids, as a JSON array into out
 * (NULL when absent): 1, or 0 with e. */
static int parse_ids(request *r, const char *name, char *out, size_t len, const char **json,
                     http_error *e) {
    const char *v = http_query(r, name);
    *json = NULL;
    if (v == NULL)
        return 1;
    size_t at = (size_t)snprintf(out, len, "[");
    for (const char *p = v;;) {
        size_t n = strcspn(p, ",");
        int64_t id;
        if (!http_parse_int64(p, n, 1, INT64_MAX, &id) || at + 24 > len)
            return http_error_set(e, 400, "invalid_value", name,
                                  "%s must be a comma-separated list of token ids (at most 64)",
                                  name);
        at += (size_t)snprintf(out + at, len - at, "%s%lld", at > 1 ? "," : "", (long long)id);
        if (p[n] == '\0')
            break;
        p += n + 1;
    }
    snprintf(out + at, len - at, "]");
    *json = out;
    return 1;
}

/* ?name as 0 or 1 into *out (false when absent): 1, or 0 with e. */
static int parse_flag(request *r, const char *name, bool *out, http_error *e) {
    const char *v = http_query(r, name);
    *out = v != NULL && strcmp(v, "1") == 0;
    if (v == NULL || strcmp(v, "0") == 0 || *out)
        return 1;
    return http_error_set(e, 400, "invalid_value", name, "%s must be 0 or 1", name);
}

/* ?name as Unix seconds (0 when absent): 1, or 0 with e. */
static int parse_time(request *r, const char *name, int64_t *out, http_error *e) {
    const char *v = http_query(r, name);
    *out = 0;
    if (v == NULL || http_parse_int64(v, strlen(v), 1, INT64_MAX, out))
        return 1;
    return http_error_set(e, 400, "invalid_value", name,
                          "%s must be a positive integer (Unix seconds)", name);
}

static int parse_format(request *r, export_format *format, http_error *e) {
    static const char *const names[] = {"trl", "trl_conversational", "openai", "csv", NULL};
    const char *v = http_query(r, "format");
    if (v == NULL)
        v = "trl";
    for (int i = 0; names[i] != NULL; i++)
        if (strcmp(v, names[i]) == 0) {
            *format = (export_format)i;
            return 1;
        }
    return http_error_set(e, 400, "invalid_value", "format",
                          "format must be trl, trl_conversational, openai or csv");
}

static int parse_agreement(request *r, export_filter *f, http_error *e) {
    const char *v = http_query(r, "min_agreement");
    f->has_min_agreement = v != NULL;
    if (v == NULL)
        return 1;
    char *end;
    errno = 0;
    f->min_agreement = strtod(v, &end);
    if (end == v || *end != '\0' || errno != 0 || !(f->min_agreement >= 0.0) ||
        f->min_agreement > 1.0)
        return http_error_set(e, 400, "invalid_value", "min_agreement",
                              "min_agreement must be a number in [0, 1]");
    return 1;
}

/* A TRL export of r's project without filters, or NULL after replying 404
 * or 500 (or out of memory: *replied MHD_NO). */
static export_request *export_request_new(request *r, enum MHD_Result *replied) {
    int found = prefs_project_exists(r->db, r->path_id);
    export_request *x = found > 0 ? calloc(1, sizeof *x) : NULL;
    *replied = found <= 0 ? http_reply_not_found(r, "project", found) : MHD_NO;
    if (x != NULL)
        x->f.project_id = r->path_id, x->f.format = EXPORT_FORMAT_TRL;
    return x;
}

enum MHD_Result route_projects_export(request *r) {
    enum MHD_Result replied;
    export_request *x = export_request_new(r, &replied);
    if (x == NULL)
        return replied;
    export_filter *f = &x->f;
    http_error e = {0};
    if (!parse_format(r, &f->format, &e) ||
        !parse_ids(r, "annotators", x->annotators, sizeof x->annotators, &f->annotators, &e) ||
        !parse_ids(r, "exclude_annotators", x->exclude_annotators, sizeof x->exclude_annotators,
                   &f->exclude_annotators, &e) ||
        !parse_time(r, "since", &f->since, &e) || !parse_time(r, "until", &f->until, &e) ||
        !parse_agreement(r, f, &e) || !parse_flag(r, "exclude_retired", &f->exclude_retired, &e) ||
        !parse_flag(r, "exclude_gold", &f->exclude_gold, &e)) {
        free(x);
        return http_reply_http_error(r, &e);
    }
    const bool csv = f->format == EXPORT_FORMAT_CSV;
    return export_stream_reply(r, csv ? "text/csv; charset=utf-8" : "application/x-ndjson",
                               export_header(f->format), pairs_chunk, x);
}

/* GET /v1/projects/{id}/pairs.jsonl: the TRL export without filters. */
enum MHD_Result route_pairs_export(request *r) {
    enum MHD_Result replied;
    export_request *x = export_request_new(r, &replied);
    if (x == NULL)
        return replied;
    return export_stream_reply(r, "application/x-ndjson", NULL, pairs_chunk, x);
}
