#include "http.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "db.h"
#include "idempotency.h"
#include "prometheus.h"
#include "ratelimit.h"
#include "reply.h"
#include "route_table.h"
#include "token_cache.h"

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* 1: the caller may proceed; 0: answered with 401/403/500 in *replied. */
static int authenticate(request *r, int roles, enum MHD_Result *replied) {
    const char *header = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0 || header[7] == '\0') {
        *replied = http_reply_error(r, 401, "missing_api_key", NULL,
                                    "an API token is required: Authorization: Bearer <token>");
        return 0;
    }
    /* A cached token needs no database (server/token_cache.h); a lookup
     * acquires r->db, which the caller releases. */
    token_cache *cache = r->srv->token_cache;
    uint64_t generation = 0;
    int found = cache != NULL && token_cache_get(cache, header + 7, &r->token, &generation);
    if (!found) {
        if (r->db == NULL)
            r->db = db_pool_acquire(&r->srv->pool);
        found = auth_token_lookup(r->db, header + 7, &r->token);
        if (found > 0 && cache != NULL)
            token_cache_put(cache, header + 7, &r->token, generation);
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
    return r->route && r->route->upload ? r->srv->cfg.max_upload_bytes : r->srv->cfg.max_body_bytes;
}

static enum MHD_Result reply_too_large(request *r) {
    return http_reply_error(r, 413, "body_too_large", NULL,
                            "the request body is larger than %lld bytes", (long long)body_limit(r));
}

/* When the headers are in: route, auth, Idempotency-Key, declared size, and
 * a streaming route's begin. Answers at once on any failure, before the body
 * is read. */
static enum MHD_Result request_begin(request *r) {
    bool path_known;
    r->route = route_table_match(r->method, r->url, &r->path_id, &path_known);
    if (r->route == NULL)
        return path_known ? http_reply_error(r, 405, "method_not_allowed", NULL,
                                             "%s is not allowed on %s", r->method, r->url)
                          : http_reply_error(r, 404, "unknown_route", NULL, "no route %s %s",
                                             r->method, r->url);
    enum MHD_Result replied = MHD_YES;
    const char *cl = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Content-Length");
    if (cl != NULL && strtoll(cl, NULL, 10) > body_limit(r)) {
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

enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls) {
    (void)version;
    request *r = *con_cls;
    if (r == NULL) {
        static atomic_uint_fast64_t counter;
        static uint32_t boot;
        if (boot == 0 && getrandom(&boot, sizeof boot, 0) != sizeof boot)
            boot = 1;
        if ((r = calloc(1, sizeof *r)) == NULL)
            return MHD_NO;
        r->srv = cls;
        r->conn = conn;
        r->method = method;
        r->url = url;
        r->started_us = monotonic_us();
        sha256_init(&r->body_sha256);
        snprintf(r->request_id, sizeof r->request_id, "req_%08x%08llx", boot,
                 (unsigned long long)atomic_fetch_add(&counter, 1));
        *con_cls = r;
        return request_begin(r);
    }
    if (*upload_data_size > 0) {
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
    return r->answered ? MHD_YES : request_end(r);
}

void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    request *r = *con_cls;
    if (r == NULL)
        return;
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
