#include "http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <time.h>

#include "conn_guard.h"
#include "db.h"
#include "idempotency.h"
#include "project_access.h"
#include "prometheus.h"
#include "ratelimit.h"
#include "reply.h"
#include "route_table.h"
#include "routes.h"
#include "token_cache.h"

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The token of "Authorization: Bearer <token>": the scheme in any case
 * (RFC 9110 11.1), one or more spaces; NULL if absent or another scheme. */
static const char *bearer_token(request *r) {
    const char *header = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (header == NULL || strncasecmp(header, "Bearer ", 7) != 0)
        return NULL;
    header += 7;
    while (*header == ' ')
        header++;
    return *header != '\0' ? header : NULL;
}

/* 1: the caller may proceed; 0: answered with 401/403/500 in *replied. */
static int authenticate(request *r, int roles, enum MHD_Result *replied) {
    const char *token = bearer_token(r);
    if (token == NULL) {
        *replied = http_reply_error(r, 401, "missing_api_key", NULL,
                                    "an API token is required: Authorization: Bearer <token>");
        return 0;
    }
    /* A cached token needs no database (server/token_cache.h); a lookup
     * acquires r->db, which the caller releases. */
    token_cache *cache = r->srv->token_cache;
    uint64_t generation = 0;
    int found = cache != NULL && token_cache_get(cache, token, &r->token, &generation);
    if (!found) {
        if (r->db == NULL)
            r->db = db_pool_acquire(&r->srv->pool);
        found = auth_token_lookup(r->db, token, &r->token);
        if (found > 0 && cache != NULL)
            token_cache_put(cache, token, &r->token, generation);
    }
    if (found <= 0) {
        *replied = found < 0
                       ? http_reply_error(r, 500, "database_error", NULL, "token lookup failed")
                       : http_reply_error(r, 401, "invalid_api_key", NULL,
                                          "the API token is not valid (unknown or revoked)");
        return 0;
    }
    if ((r->token.role & roles) == 0) {
        *replied =
            http_reply_error(r, 403, "insufficient_role", NULL, "a token with role %s cannot %s %s",
                             auth_role_name(r->token.role), r->method, r->url);
        return 0;
    }
    return 1;
}

static int64_t body_limit(const request *r) {
    if (r->route == NULL || r->route->upload == NULL)
        return r->srv->cfg.max_body_bytes;
    return r->route->upload->max_bytes ? r->route->upload->max_bytes(r)
                                       : r->srv->cfg.max_upload_bytes;
}

static enum MHD_Result reply_too_large(request *r) {
    return http_reply_error(r, 413, "body_too_large", NULL,
                            "the request body is larger than %lld bytes", (long long)body_limit(r));
}

/* ---- strict HTTP ----------------------------------------------------------
 * libmicrohttpd accepts what RFC 9112 lets a server refuse: two
 * Content-Length headers (it reads the first), Transfer-Encoding beside
 * Content-Length, any Transfer-Encoding (it then reads to the end), and it
 * keeps strings NUL-terminated, so a NUL (raw, or %00 in the target) cuts a
 * header value or the path short silently ("/healthz%00/../v1/tokens" was
 * served as /healthz). What it passes on is checked here; every refusal
 * closes the connection, since the framing of what follows is in doubt. */

static bool is_tchar(unsigned char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

static int hex_value(char c) {
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Why the raw request target (before libmicrohttpd decodes it) is refused,
 * or NULL. libmicrohttpd has already cut the line at its last space and
 * put a NUL there: the version must follow it, else a raw NUL cut the
 * target short. */
static const char *target_error(const char *uri) {
    if (uri == NULL || uri[0] != '/')
        return "the request target must be a path starting with '/'";
    size_t n = strlen(uri);
    if (strncmp(uri + n + 1, "HTTP/", 5) != 0)
        return "the request line holds a NUL byte";
    bool in_path = true;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)uri[i];
        if (c <= ' ' || c >= 0x7f)
            return "the request target holds a space, control or non-ASCII byte";
        if (c == '?')
            in_path = false;
        if (c != '%')
            continue;
        int hi = hex_value(uri[i + 1]), lo = hi < 0 ? -1 : hex_value(uri[i + 2]);
        if (hi < 0 || lo < 0)
            return "the request target holds '%' not followed by two hex digits";
        int decoded = hi * 16 + lo;
        if (decoded == 0 || (in_path && (decoded < ' ' || decoded == 0x7f)))
            return "the request target encodes a NUL or control character";
        i += 2;
    }
    return NULL;
}

typedef struct header_scan {
    const char *end;      /* of the request line and headers in MHD's buffer */
    const char *prev_end; /* where the previous header's value ended */
    const char *bad;      /* the first offending header's name */
    const char *why;      /* what is wrong with it */
    int content_length, transfer_encoding, host;
    bool chunked;
} header_scan;

/* A header line sits in libmicrohttpd's read buffer as NAME\0 [spaces]
 * VALUE\0\0 (CR and LF overwritten): between the end of a value and the
 * next line only those one or two terminators may lie (the last header
 * also has the blank line's). Anything else there is what a NUL hid. A
 * folded (obs-fold) line is moved out of the buffer and fails this too,
 * which RFC 9112 5.2 allows (400). Why the bytes from a value's end
 * (from) to the next line or the end of the headers (to; at most `most`
 * terminators) are refused, or NULL; *moved when to is nowhere near. */
static const char *line_end_error(const char *from, const char *to, ptrdiff_t most, bool *moved) {
    *moved = to < from || to - from > 4096;
    if (*moved)
        return "is folded over lines (obs-fold)";
    if (to - from > most)
        return "holds a NUL byte";
    for (const char *p = from; p < to; p++)
        if (*p != '\0')
            return "holds a NUL byte";
    return NULL;
}

static enum MHD_Result scan_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                   size_t key_size, const char *value, size_t value_size) {
    (void)kind;
    header_scan *h = cls;
    bool moved;
    if (h->prev_end != NULL && (h->why = line_end_error(h->prev_end, key, 2, &moved)) != NULL) {
        if (moved) /* this line was folded; else the previous one hid bytes behind a NUL */
            h->bad = key;
        return MHD_NO;
    }
    h->bad = key;
    for (size_t i = 0; i < key_size; i++)
        if (!is_tchar((unsigned char)key[i])) {
            h->why = "has a name with a character other than a token's";
            return MHD_NO;
        }
    for (size_t i = 0; i < value_size; i++) {
        unsigned char c = (unsigned char)value[i];
        if ((c < ' ' && c != '\t') || c == 0x7f) {
            h->why = "holds a control character";
            return MHD_NO;
        }
    }
    h->prev_end = value + value_size;
    if (strcasecmp(key, MHD_HTTP_HEADER_CONTENT_LENGTH) == 0)
        h->content_length++;
    if (strcasecmp(key, MHD_HTTP_HEADER_HOST) == 0)
        h->host++;
    if (strcasecmp(key, MHD_HTTP_HEADER_TRANSFER_ENCODING) == 0) {
        h->transfer_encoding++;
        h->chunked = strcasecmp(value, "chunked") == 0;
    }
    return MHD_YES;
}

/* libmicrohttpd reads a request head into its per-connection memory pool:
 * the first read buffer is half the pool, growing into the rest as a head
 * needs it; each header line also takes a small record from the pool's
 * end. A head within rlhfd's limits (target + header lines) must fit, so
 * that request_strict, not libmicrohttpd, decides: the limits plus 16 KiB
 * for those records and the reply's header lines (a few hundred headers).
 * A head with thousands of tiny headers outgrows it first and gets
 * libmicrohttpd's 431, in JSON too (mhd_errors.c).
 *
 * Not more: after every request on a kept-alive connection libmicrohttpd
 * 0.9.75 zeroes the whole pool (MHD_pool_reset). At 8 x the limits (320
 * KiB, the setting before libmicrohttpd's own errors were answered in
 * JSON) that memset was 7% of all CPU under bench/bench_server.py's write
 * load (perf), for nothing. */
size_t http_mhd_memory_limit(const rlhfd_config *cfg) {
    const size_t heads = (size_t)(cfg->max_target_bytes + cfg->max_header_bytes) + 16 * 1024;
    return heads > 32 * 1024 ? heads : 32 * 1024; /* libmicrohttpd's default */
}

/* 1 if the request line and headers are acceptable, else 0 with a 400 in
 * *replied. */
static int request_strict(request *r, enum MHD_Result *replied) {
    if (r->uri_error != NULL) {
        *replied = http_reply_error(r, 400, "invalid_request_target", NULL, "%s", r->uri_error);
        return 0;
    }
    const union MHD_ConnectionInfo *size =
        MHD_get_connection_info(r->conn, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    /* libmicrohttpd's memory holds a head within these limits
     * (http_mhd_memory_limit), so up to there the refusal is ours */
    const rlhfd_config *cfg = &r->srv->cfg;
    if ((int64_t)r->target_len > cfg->max_target_bytes) {
        *replied = http_reply_error(r, 414, "uri_too_long", NULL,
                                    "the request target is %zu bytes; at most %lld are accepted",
                                    r->target_len, (long long)cfg->max_target_bytes);
        return 0;
    }
    /* the request line: METHOD SP target SP version CRLF */
    const size_t line = strlen(r->method) + 1 + r->target_len + 1 + strlen(r->version) + 2;
    if (size != NULL && size->header_size > line &&
        (int64_t)(size->header_size - line) > cfg->max_header_bytes) {
        *replied = http_reply_error(r, 431, "headers_too_large", NULL,
                                    "the request's header lines are %zu bytes; at most %lld are "
                                    "accepted",
                                    size->header_size - line, (long long)cfg->max_header_bytes);
        return 0;
    }
    header_scan h = {.end = size != NULL ? r->method + size->header_size : NULL};
    MHD_get_connection_values_n(r->conn, MHD_HEADER_KIND, scan_header, &h);
    /* after the last header: its terminators and the blank line's */
    bool moved;
    if (h.why == NULL && h.prev_end != NULL)
        h.why = h.end == NULL ? "cannot be checked" : line_end_error(h.prev_end, h.end, 4, &moved);
    const char *param = h.bad;
    if (h.why == NULL && h.content_length > 1)
        h.why = "appears more than once", param = MHD_HTTP_HEADER_CONTENT_LENGTH;
    else if (h.why == NULL && h.host != 1 && strcmp(r->version, MHD_HTTP_VERSION_1_1) == 0)
        /* RFC 9112 3.2: exactly one Host in an HTTP/1.1 request */
        h.why = h.host == 0 ? "is required in HTTP/1.1" : "appears more than once",
        param = MHD_HTTP_HEADER_HOST;
    else if (h.why == NULL && h.transfer_encoding > 0 && h.content_length > 0)
        h.why = "comes with Content-Length", param = MHD_HTTP_HEADER_TRANSFER_ENCODING;
    else if (h.why == NULL && h.transfer_encoding > 0 && (h.transfer_encoding > 1 || !h.chunked))
        h.why = "must be exactly 'chunked'", param = MHD_HTTP_HEADER_TRANSFER_ENCODING;
    if (h.why == NULL)
        return 1;
    *replied =
        http_reply_error(r, 400, "invalid_header", param, "the header %.64s %s", param, h.why);
    return 0;
}

static bool is_health_route(const http_route *route) {
    return route->handler == route_healthz || route->handler == route_readyz;
}

/* 1 if the connection may make this request; else 0 with 503 (the server
 * holds max_connections) or 429 (this address holds its share) in *replied.
 * The health probes are always answered. */
static int request_admitted(request *r, enum MHD_Result *replied) {
    conn_admission a = conn_guard_admission(r->conn);
    if (a == CONN_ADMISSION_ADMITTED || is_health_route(r->route))
        return 1;
    r->retry_after = CONN_GUARD_RETRY_AFTER_S;
    *replied =
        a == CONN_ADMISSION_OVER_IP
            ? http_reply_error(r, 429, "too_many_connections", NULL,
                               "this address holds %lld connections, as many as it may; "
                               "retry after %d s",
                               (long long)r->srv->cfg.max_connections_per_ip,
                               CONN_GUARD_RETRY_AFTER_S)
            : http_reply_error(r, 503, "too_many_connections", NULL,
                               "the server holds %lld connections, as many as it may; "
                               "retry after %d s",
                               (long long)r->srv->cfg.max_connections, CONN_GUARD_RETRY_AFTER_S);
    return 0;
}

/* When the headers are in: strict HTTP, route, connection admission, auth,
 * Idempotency-Key, declared size, and a streaming route's begin. Answers at
 * once on any failure, before the body is read. */
static enum MHD_Result request_begin(request *r) {
    enum MHD_Result replied = MHD_YES;
    r->close_connection = true; /* until the request proves well framed */
    if (!request_strict(r, &replied))
        return replied;
    r->close_connection = false;
    bool path_known;
    r->route = route_table_match(r->method, r->url, &r->path_id, &r->path_sub_id, &path_known);
    if (r->route == NULL)
        return path_known ? http_reply_error(r, 405, "method_not_allowed", NULL,
                                             "%s is not allowed on %s", r->method, r->url)
                          : http_reply_error(r, 404, "unknown_route", NULL, "no route %s %s",
                                             r->method, r->url);
    if (r->path_id < 0 || r->path_sub_id < 0)
        return http_reply_error(r, 400, "invalid_value", "id",
                                "the id in the path must be an integer in [1, %lld]",
                                (long long)INT64_MAX);
    if (!request_admitted(r, &replied)) {
        r->close_connection = true;
        return replied;
    }
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    int64_t declared;
    if (cl != NULL &&
        (!http_parse_int64(cl, strlen(cl), 0, INT64_MAX, &declared) || declared > body_limit(r))) {
        r->body_too_large = true;
        return reply_too_large(r);
    }
    if (r->route->roles == 0)
        return MHD_YES;
    int ok = authenticate(r, r->route->roles, &replied);
    /* Expensive reads have their own budget; other GETs have none. */
    const bool expensive = route_table_expensive(r->route);
    if (ok && (expensive || strcmp(r->method, "GET") != 0) &&
        (r->retry_after = rate_limiter_take(expensive ? r->srv->read_limiter : r->srv->rate_limiter,
                                            r->token.id, monotonic_ms())) > 0) {
        replied = http_reply_error(
            r, 429, "rate_limit_exceeded", NULL,
            "too many %s with this token: at most %lld per second (bursts of %lld); retry after "
            "%lld s",
            expensive ? "expensive reads (generate, agreement, exports, metric pages)" : "writes",
            (long long)(expensive ? r->srv->cfg.read_rate : r->srv->cfg.write_rate),
            (long long)(expensive ? r->srv->cfg.read_burst : r->srv->cfg.write_burst),
            (long long)r->retry_after);
        ok = 0;
    }
    if (ok && r->route->creates) {
        r->idempotency_key =
            MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Idempotency-Key");
        if (r->idempotency_key != NULL && !idempotency_key_valid(r->idempotency_key)) {
            replied = http_reply_error(r, 400, "invalid_value", "Idempotency-Key",
                                       "Idempotency-Key must be 1..255 printable ASCII characters");
            ok = 0;
        }
    }
    if (ok)
        ok = project_access_check(r, &replied);
    if (ok && r->route->upload) {
        if (r->db == NULL)
            r->db = db_pool_acquire(&r->srv->pool);
        r->route->upload->begin(r, &replied);
    }
    if (r->db != NULL)
        db_pool_release(&r->srv->pool, r->db);
    r->db = NULL;
    return replied;
}

static void request_body(request *r, const char *data, size_t n) {
    if (r->answered)
        return; /* answered early: the rest of the body is discarded */
    if (r->body_too_large || r->body_bytes + n > (uint64_t)body_limit(r)) {
        r->body_too_large = true;
        free(r->body);
        r->body = NULL;
        r->body_len = 0;
        return;
    }
    r->body_bytes += n;
    sha256_update(&r->body_sha256, data, n);
    if (r->route->upload) {
        r->route->upload->data(r, data, n);
        return;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = (r->body_len + n + 1) * 2;
        char *grown = realloc(r->body, cap);
        if (grown == NULL) {
            r->body_too_large = true; /* reported as 413: we cannot hold it */
            return;
        }
        r->body = grown, r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = '\0';
}

static enum MHD_Result request_end(request *r) {
    if (r->body_too_large)
        return reply_too_large(r);
    r->db = db_pool_acquire(&r->srv->pool);
    enum MHD_Result ret = MHD_YES;
    if (r->idempotency_key == NULL || idempotency_replay(r, &ret) == 0)
        ret = r->route->handler(r);
    if (r->deferred)
        return ret; /* http_defer_write released the connection; r->db is the writer's now */
    db_pool_release(&r->srv->pool, r->db);
    r->db = NULL;
    return ret;
}

static int64_t monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void *http_request_start(void *cls, const char *uri, struct MHD_Connection *conn) {
    static atomic_uint_fast64_t counter;
    static uint32_t boot;
    if (boot == 0 && getrandom(&boot, sizeof boot, 0) != sizeof boot)
        boot = 1;
    request *r = calloc(1, sizeof *r);
    if (r == NULL)
        return NULL; /* http_handle refuses the request */
    r->srv = cls;
    r->conn = conn;
    r->uri_error = target_error(uri);
    r->target_len = uri != NULL ? strlen(uri) : 0;
    r->started_us = monotonic_us();
    sha256_init(&r->body_sha256);
    snprintf(r->request_id, sizeof r->request_id, "req_%08x%08llx", boot,
             (unsigned long long)atomic_fetch_add(&counter, 1));
    return r;
}

enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls) {
    (void)cls;
    request *r = *con_cls;
    if (r == NULL)
        return MHD_NO; /* http_request_start ran out of memory */
    if (!r->begun) {
        r->begun = true;
        r->method = method;
        r->version = version;
        r->url = url;
        conn_guard_expect(conn, CONN_STAGE_BODY);
        enum MHD_Result ret = request_begin(r);
        if (r->answered)
            conn_guard_expect(conn, CONN_STAGE_REPLY);
        return ret;
    }
    if (*upload_data_size > 0) {
        conn_guard_expect(conn, CONN_STAGE_BODY); /* each piece has its own deadline */
        request_body(r, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (r->deferred_resp != NULL) { /* resumed after the group commit */
        struct MHD_Response *resp = r->deferred_resp;
        r->deferred_resp = NULL;
        r->answered = true;
        enum MHD_Result ret = MHD_queue_response(conn, r->status, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    if (r->deferred)
        return MHD_YES; /* called again before the writer resumed it */
    conn_guard_expect(conn, CONN_STAGE_REPLY);
    return r->answered ? MHD_YES : request_end(r);
}

void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)toe;
    conn_guard_expect(conn, CONN_STAGE_HEADERS); /* the next request on this connection */
    request *r = *con_cls;
    if (r == NULL)
        return;
    if (r->status != 0) /* 0: libmicrohttpd answered (or dropped) it itself */
        prometheus_record_request(r->route ? (int)route_table_index(r->route) : -1, r->status,
                                  monotonic_us() - r->started_us);
    if (r->route && r->route->upload)
        r->route->upload->free(r);
    if (r->deferred_resp != NULL)
        MHD_destroy_response(r->deferred_resp);
    free(r->write_ctx);
    free(r->body);
    free(r);
    *con_cls = NULL;
}
