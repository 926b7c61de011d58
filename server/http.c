#include "http.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "metrics.h"
#include "db.h"
#include "ratelimit.h"
#include "read_cache.h"
#include "routes.h"
#include "writer.h"

/* ---- the route table ------------------------------------------------------ */

#define READERS    (AUTH_ROLE_ADMIN | AUTH_ROLE_VIEWER)
#define ANNOTATORS (AUTH_ROLE_ADMIN | AUTH_ROLE_ANNOTATOR)
#define EVERYONE   (AUTH_ROLE_ADMIN | AUTH_ROLE_ANNOTATOR | AUTH_ROLE_VIEWER)
#define CREATES    true /* honours Idempotency-Key */

typedef struct http_route {
    const char *method;
    const char *pattern; /* segments; "{id}" matches a positive integer */
    int roles;           /* 0: no token needed */
    enum MHD_Result (*handler)(request *r);
    bool creates;              /* a creating POST: Idempotency-Key applies */
    const http_upload *upload; /* streams its body (NULL: held whole) */
} route;

static const route routes[] = {
    {"GET", "/healthz", 0, route_healthz, false, NULL},
    {"GET", "/readyz", 0, route_readyz, false, NULL},
    {"GET", "/metrics", READERS, route_metrics, false, NULL},
    {"POST", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_create, CREATES, NULL},
    {"GET", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_list, false, NULL},
    {"POST", "/v1/tokens/{id}/revoke", AUTH_ROLE_ADMIN, route_tokens_revoke, false, NULL},
    {"POST", "/v1/jobs", AUTH_ROLE_ADMIN, route_jobs_create, CREATES, NULL},
    {"GET", "/v1/jobs", READERS, route_jobs_list, false, NULL},
    {"GET", "/v1/jobs/{id}", READERS, route_jobs_get, false, NULL},
    {"POST", "/v1/jobs/{id}/cancel", AUTH_ROLE_ADMIN, route_jobs_cancel, false, NULL},
    {"GET", "/v1/jobs/{id}/events", READERS, route_jobs_events, false, NULL},
    {"GET", "/v1/jobs/{id}/metrics", READERS, route_jobs_metrics, false, NULL},
    {"GET", "/v1/jobs/{id}/stream", READERS, route_jobs_stream, false, NULL},
    {"GET", "/v1/jobs/{id}/checkpoints", READERS, route_jobs_checkpoints, false, NULL},
    {"GET", "/v1/checkpoints/{id}/content", READERS, route_checkpoints_content, false, NULL},
    {"POST", "/v1/checkpoints/{id}/generate", READERS, route_checkpoints_generate, false, NULL},
    {"POST", "/v1/datasets", AUTH_ROLE_ADMIN, route_datasets_create, CREATES, NULL},
    {"GET", "/v1/datasets", READERS, route_datasets_list, false, NULL},
    {"GET", "/v1/datasets/{id}", READERS, route_datasets_get, false, NULL},
    {"DELETE", "/v1/datasets/{id}", AUTH_ROLE_ADMIN, route_datasets_delete, false, NULL},
    {"POST", "/v1/datasets/{id}/upload", AUTH_ROLE_ADMIN, route_datasets_upload, CREATES,
     &route_datasets_upload_stream},
    {"POST", "/v1/projects", AUTH_ROLE_ADMIN, route_projects_create, CREATES, NULL},
    {"GET", "/v1/projects", EVERYONE, route_projects_list, false, NULL},
    {"GET", "/v1/projects/{id}", EVERYONE, route_projects_get, false, NULL},
    {"POST", "/v1/projects/{id}/comparisons", AUTH_ROLE_ADMIN, route_comparisons_create, CREATES,
     NULL},
    {"GET", "/v1/projects/{id}/comparisons", EVERYONE, route_comparisons_list, false, NULL},
    {"GET", "/v1/projects/{id}/comparisons/next", ANNOTATORS, route_comparisons_next, false, NULL},
    {"GET", "/v1/projects/{id}/pairs", READERS, route_pairs_list, false, NULL},
    {"POST", "/v1/projects/{id}/comparisons/bulk", AUTH_ROLE_ADMIN, route_comparisons_bulk, CREATES,
     NULL},
    {"GET", "/v1/projects/{id}/pairs.jsonl", READERS, route_pairs_export, false, NULL},
    {"GET", "/v1/projects/{id}/rankings.jsonl", READERS, route_rankings_export, false, NULL},
    {"GET", "/v1/projects/{id}/agreement", READERS, route_projects_agreement, false, NULL},
    {"GET", "/v1/comparisons/{id}", EVERYONE, route_comparisons_get, false, NULL},
    {"POST", "/v1/comparisons/{id}/rankings", ANNOTATORS, route_rankings_create, CREATES, NULL},
    {"GET", "/v1/comparisons/{id}/rankings", READERS, route_rankings_list, false, NULL},
    {"GET", "/", 0, route_static_index, false, NULL},
    {"GET", "/assets/{path}", 0, route_static_asset, false, NULL},
};
#define N_ROUTES (sizeof routes / sizeof routes[0])

size_t http_route_count(void) {
    return N_ROUTES;
}

void http_route_at(size_t i, const char **method, const char **pattern) {
    *method = routes[i].method;
    *pattern = routes[i].pattern;
}

/* Matches url against pattern; *id receives a {id} segment. */
static bool pattern_matches(const char *pattern, const char *url, int64_t *id) {
    while (*pattern && *url) {
        if (strcmp(pattern, "{path}") == 0)
            return true; /* a final {path}: the rest, checked by its handler */
        if (strncmp(pattern, "{id}", 4) == 0) {
            char *end;
            if (*url < '1' || *url > '9')
                return false;
            long long v = strtoll(url, &end, 10);
            if (v <= 0 || (*end != '/' && *end != '\0'))
                return false;
            *id = v;
            pattern += 4, url = end;
        } else if (*pattern++ != *url++) {
            return false;
        }
    }
    return *pattern == '\0' && *url == '\0';
}

/* ---- replies -------------------------------------------------------------- */

enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "x-request-id", r->request_id);
    if (r->retry_after > 0) {
        char seconds[24];
        snprintf(seconds, sizeof seconds, "%lld", (long long)r->retry_after);
        MHD_add_response_header(resp, "Retry-After", seconds);
    }
    r->status = status;
    if (r->in_batch) { /* the writer's thread: held until the connection resumes */
        if (r->deferred_resp != NULL)
            MHD_destroy_response(r->deferred_resp);
        r->deferred_resp = resp;
        return MHD_YES;
    }
    r->answered = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

/* text (malloc'ed, without a trailing newline; stolen) as the JSON reply. */
static enum MHD_Result reply_json_text(request *r, unsigned status, char *text, bool replayed) {
    size_t len = strlen(text);
    char *grown = realloc(text, len + 2);
    if (grown == NULL) {
        free(text);
        return MHD_NO;
    }
    grown[len] = '\n'; /* the reply ends in a newline */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len + 1, grown, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    if (replayed)
        MHD_add_response_header(resp, "Idempotent-Replayed", "true");
    return http_queue(r, status, resp);
}

enum MHD_Result http_reply_json_text(request *r, unsigned status, char *text, size_t len) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    if (resp == NULL) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return http_queue(r, status, resp);
}

enum MHD_Result http_reply_json(request *r, unsigned status, json_t *body) {
    char *text = json_dumps(body, HTTP_JSON_DUMP_FLAGS);
    json_decref(body);
    return text ? reply_json_text(r, status, text, false) : MHD_NO;
}

static const char *error_type(unsigned status) {
    switch (status) {
        case 401:
            return "authentication_error";
        case 403:
            return "permission_error";
        case 404:
            return "not_found_error";
        case 409:
            return "conflict_error";
        case 429:
            return "rate_limit_error";
        default:
            return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

static enum MHD_Result reply_error_v(request *r, unsigned status, const char *code,
                                     const char *param, json_t *extra, const char *fmt,
                                     va_list ap) {
    char message[1024];
    vsnprintf(message, sizeof message, fmt, ap);
    /* A reply must be valid UTF-8 (json_pack refuses anything else): the
     * message may quote request bytes (jansson's parse errors do) or be cut
     * inside a character by the buffer. */
    char *clean = db_utf8_clean(message, strlen(message));
    json_t *err = json_pack("{s:s, s:s, s:s?, s:s}", "message", clean ? clean : "(unprintable)",
                            "type", error_type(status), "param", param, "code", code);
    free(clean);
    if (extra != NULL)
        json_object_update(err, extra);
    json_decref(extra);
    return http_reply_json(r, status, json_pack("{s:o}", "error", err));
}

enum MHD_Result http_reply_error(request *r, unsigned status, const char *code, const char *param,
                                 const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = reply_error_v(r, status, code, param, NULL, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result http_reply_error_with(request *r, unsigned status, const char *code,
                                      const char *param, json_t *extra, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    enum MHD_Result ret = reply_error_v(r, status, code, param, extra, fmt, ap);
    va_end(ap);
    return ret;
}

enum MHD_Result http_reply_db_error(request *r) {
    return http_reply_error(r, 500, "database_error", NULL, "database error: %s",
                            sqlite3_errmsg(r->db));
}

/* ---- Idempotency-Key ------------------------------------------------------- */

#define IDEMPOTENCY_KEEP_S (24 * 3600)

/* What a key is bound to: method, path and the body's digest. */
static void request_fingerprint(request *r, char hex[65]) {
    sha256_ctx body = r->body_sha256, all;
    uint8_t digest[32];
    sha256_final(&body, digest);
    sha256_init(&all);
    sha256_update(&all, r->method, strlen(r->method));
    sha256_update(&all, " ", 1);
    sha256_update(&all, r->url, strlen(r->url));
    sha256_update(&all, "\n", 1);
    sha256_update(&all, digest, sizeof digest);
    sha256_final(&all, digest);
    for (int i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

/* If the key was used: replays the stored answer (same request) or replies
 * 409 (a different one) and returns 1; 0 if the key is new; -1 after
 * replying 500. */
static int idempotency_replay(request *r, enum MHD_Result *replied) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db,
                           "SELECT request_sha256, status, response FROM idempotency_keys "
                           "WHERE token_id = ?1 AND key = ?2 AND created_at >= ?3",
                           -1, &st, NULL) != SQLITE_OK) {
        *replied = http_reply_error(r, 500, "database_error", NULL, "%s", sqlite3_errmsg(r->db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, r->token.id);
    sqlite3_bind_text(st, 2, r->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now_s() - IDEMPOTENCY_KEEP_S);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        sqlite3_finalize(st);
        if (rc == SQLITE_DONE)
            return 0;
        *replied = http_reply_error(r, 500, "database_error", NULL, "%s", sqlite3_errmsg(r->db));
        return -1;
    }
    char fingerprint[65];
    request_fingerprint(r, fingerprint);
    if (strcmp(fingerprint, (const char *)sqlite3_column_text(st, 0)) != 0)
        *replied = http_reply_error(
            r, 409, "idempotency_key_reused", "Idempotency-Key",
            "Idempotency-Key '%.64s' was already used for a different request (method, path or "
            "body differ); use a new key for a new request",
            r->idempotency_key);
    else {
        char *text = strdup((const char *)sqlite3_column_text(st, 2));
        *replied =
            text ? reply_json_text(r, (unsigned)sqlite3_column_int(st, 1), text, true) : MHD_NO;
    }
    sqlite3_finalize(st);
    return 1;
}

/* Records the answer in the open transaction: 1 stored, 0 the key was taken
 * meanwhile, -1 error. */
static int idempotency_store(request *r, unsigned status, const char *text) {
    char fingerprint[65];
    request_fingerprint(r, fingerprint);
    sqlite3_stmt *st = NULL;
    int64_t now = db_now_s();
    if (sqlite3_prepare_v2(r->db, "DELETE FROM idempotency_keys WHERE created_at < ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, now - IDEMPOTENCY_KEEP_S);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE ||
        sqlite3_prepare_v2(r->db,
                           "INSERT INTO idempotency_keys (token_id, key, request_sha256, status, "
                           "response, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6) "
                           "ON CONFLICT DO NOTHING",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, r->token.id);
    sqlite3_bind_text(st, 2, r->idempotency_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, fingerprint, -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 4, (int)status);
    sqlite3_bind_text(st, 5, text, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, now);
    rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc != SQLITE_DONE ? -1 : sqlite3_changes(r->db) == 1;
}

enum MHD_Result http_commit_reply(request *r, unsigned status, json_t *body) {
    char *text = json_dumps(body, HTTP_JSON_DUMP_FLAGS);
    json_decref(body);
    int stored = text == NULL ? -1 : r->idempotency_key ? idempotency_store(r, status, text) : 1;
    if (stored == 1 && (r->in_batch || db_commit(r->db) == SQLITE_OK))
        return reply_json_text(r, status, text, false); /* in a batch: the writer commits */
    free(text);
    if (r->in_batch)
        r->batch_rollback = true; /* only this write's savepoint */
    else
        db_rollback(r->db);
    enum MHD_Result replied;
    if (stored == 0 && idempotency_replay(r, &replied) == 1)
        return replied; /* a concurrent request with this key won */
    return http_reply_error(r, 500, "database_error", NULL, "the write could not be committed");
}

/* ---- JSON within limits ----------------------------------------------------- */

/* Nesting depth of the text, outside strings, so a deep document is refused
 * before the parser recurses into it. */
static int json_depth_exceeds(const char *text, size_t len, int max_depth) {
    int depth = 0;
    bool in_string = false;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (in_string) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_string = false;
        } else if (c == '"')
            in_string = true;
        else if (c == '[' || c == '{') {
            if (++depth > max_depth)
                return 1;
        } else if (c == ']' || c == '}')
            depth--;
    }
    return 0;
}

/* Finds a string (value or key) longer than the limit; its path into param. */
static int json_string_too_long(const json_t *v, char *param, size_t paramlen) {
    size_t used = strlen(param);
    if (json_is_string(v))
        return json_string_length(v) > HTTP_JSON_MAX_STRING;
    if (json_is_array(v)) {
        size_t i;
        json_t *item;
        json_array_foreach((json_t *)v, i, item) {
            snprintf(param + used, paramlen - used, "[%zu]", i);
            if (json_string_too_long(item, param, paramlen))
                return 1;
        }
    } else if (json_is_object(v)) {
        const char *key;
        json_t *item;
        json_object_foreach((json_t *)v, key, item) {
            snprintf(param + used, paramlen - used, "%s%.64s", used ? "." : "", key);
            if (strlen(key) > HTTP_JSON_MAX_STRING || json_string_too_long(item, param, paramlen))
                return 1;
        }
    }
    param[used] = '\0';
    return 0;
}

json_t *http_json_parse(const char *text, size_t len, char *err, size_t errlen, char *param,
                        size_t paramlen) {
    param[0] = '\0';
    if (json_depth_exceeds(text, len, HTTP_JSON_MAX_DEPTH)) {
        snprintf(err, errlen, "JSON nested deeper than %d levels", HTTP_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
    if (v == NULL) {
        snprintf(err, errlen, "not valid JSON: %s (column %d)", jerr.text, jerr.column);
        return NULL;
    }
    if (json_string_too_long(v, param, paramlen)) {
        snprintf(err, errlen, "%s is longer than %d bytes", param[0] ? param : "a string",
                 HTTP_JSON_MAX_STRING);
        json_decref(v);
        return NULL;
    }
    return v;
}

/* ---- request helpers ------------------------------------------------------ */

json_t *http_body_object(request *r, enum MHD_Result *replied) {
    char err[256], param[256];
    json_t *obj = r->body_len > 0
                      ? http_json_parse(r->body, r->body_len, err, sizeof err, param, sizeof param)
                      : NULL;
    if (obj == NULL) {
        *replied =
            r->body_len == 0 ? http_reply_error(r, 400, "invalid_json", NULL,
                                                "the request body must be a JSON object")
            : param[0]
                ? http_reply_error(r, 400, "string_too_long", param, "the request body: %s", err)
                : http_reply_error(r, 400, "invalid_json", NULL, "the request body is %s", err);
        return NULL;
    }
    if (!json_is_object(obj)) {
        json_decref(obj);
        *replied = http_reply_error(r, 400, "invalid_json", NULL,
                                    "the request body must be a JSON object");
        return NULL;
    }
    return obj;
}

bool http_one_of(const char *s, const char *const *list) {
    while (s != NULL && *list != NULL && strcmp(*list, s) != 0)
        list++;
    return s != NULL && *list != NULL;
}

int http_check_name(request *r, const char *name, size_t max_bytes, enum MHD_Result *replied) {
    if (name != NULL && name[0] != '\0' && strlen(name) <= max_bytes)
        return 1;
    *replied = http_reply_error(r, 400, "invalid_value", "name",
                                "name must be a non-empty string of at most %zu bytes", max_bytes);
    return 0;
}

int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        if (!http_one_of(key, allowed)) {
            *replied = http_reply_error(r, 400, "unknown_parameter", key,
                                        "unknown parameter '%.64s'", key);
            return 0;
        }
    }
    return 1;
}

const char *http_query(request *r, const char *name) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
}

static int parse_positive(const char *s, int64_t *out) {
    char *end;
    if (s == NULL || *s < '0' || *s > '9')
        return 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || v <= 0)
        return 0;
    *out = v;
    return 1;
}

int http_query_page(request *r, const char *cursor_name, int64_t dflt, int64_t max, int64_t *limit,
                    int64_t *cursor, enum MHD_Result *replied) {
    const char *l = http_query(r, "limit");
    const char *c = cursor_name ? http_query(r, cursor_name) : NULL;
    *limit = dflt;
    *cursor = 0;
    if (l != NULL && (!parse_positive(l, limit) || *limit > max)) {
        *replied = http_reply_error(r, 400, "invalid_value", "limit",
                                    "limit must be an integer in [1, %lld]", (long long)max);
        return 0;
    }
    if (c != NULL && !parse_positive(c, cursor)) {
        *replied = http_reply_error(r, 400, "invalid_value", cursor_name,
                                    "%s must be a positive integer id", cursor_name);
        return 0;
    }
    return 1;
}

json_t *http_list(json_t *data, bool has_more, const char *by) {
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), by) : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), by) : NULL;
    char first_key[32], last_key[32];
    snprintf(first_key, sizeof first_key, "first_%s", by);
    snprintf(last_key, sizeof last_key, "last_%s", by);
    return json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list", "data", data, first_key,
                     first, last_key, last, "has_more", has_more);
}

enum MHD_Result http_reply_rows(request *r, sqlite3_stmt *st, int64_t limit, int64_t scope,
                                db_row_json from_row) {
    json_t *data = json_array();
    bool has_more = false;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if ((int64_t)json_array_size(data) == limit) {
            has_more = true;
            break;
        }
        json_t *item = from_row(r->db, st, scope);
        if (item == NULL) {
            rc = SQLITE_ERROR;
            break;
        }
        json_array_append_new(data, item);
    }
    sqlite3_finalize(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        json_decref(data);
        return http_reply_db_error(r);
    }
    return http_reply_json(r, 200, http_list(data, has_more, "id"));
}

enum MHD_Result http_reply_page(request *r, const char *sql, int64_t after, int64_t limit,
                                int64_t scope, db_row_json from_row) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(r->db, sql, -1, &st, NULL) != SQLITE_OK)
        return http_reply_db_error(r);
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_int64(st, 2, limit + 1);
    sqlite3_bind_int64(st, 3, scope);
    return http_reply_rows(r, st, limit, scope, from_row);
}

/* ---- the access handler ----------------------------------------------------- */

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
    /* A cached token needs no database (server/read_cache.h); a lookup
     * acquires r->db, which the caller releases. */
    read_cache *cache = r->srv->read_cache;
    uint64_t generation = 0;
    int found = cache != NULL && read_cache_token_get(cache, header + 7, &r->token, &generation);
    if (!found) {
        if (r->db == NULL)
            r->db = db_pool_acquire(&r->srv->pool);
        found = auth_token_lookup(r->db, header + 7, &r->token);
        if (found > 0 && cache != NULL)
            read_cache_token_put(cache, header + 7, &r->token, generation);
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

/* An Idempotency-Key is 1..255 printable ASCII characters. */
static int idempotency_key_valid(const char *key) {
    size_t n = strlen(key);
    for (size_t i = 0; i < n; i++)
        if (key[i] < 0x21 || key[i] > 0x7e)
            return 0;
    return n >= 1 && n <= 255;
}

/* When the headers are in: route, auth, Idempotency-Key, declared size, and
 * a streaming route's begin. Answers at once on any failure, before the body
 * is read. */
static enum MHD_Result request_begin(request *r) {
    bool path_known = false;
    for (size_t i = 0; i < N_ROUTES && r->route == NULL; i++) {
        int64_t id = 0;
        if (!pattern_matches(routes[i].pattern, r->url, &id))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, r->method) == 0)
            r->route = &routes[i], r->path_id = id;
    }
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
    if (ok && strcmp(r->method, "GET") != 0 &&
        (r->retry_after = rate_limiter_take(r->srv->rate_limiter, r->token.id, monotonic_ms())) >
            0) {
        replied = http_reply_error(r, 429, "rate_limit_exceeded", NULL,
                                   "too many writes with this token: at most %lld per second "
                                   "(bursts of %lld); retry after %lld s",
                                   (long long)r->srv->cfg.write_rate,
                                   (long long)r->srv->cfg.write_burst, (long long)r->retry_after);
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

/* ---- group commit -------------------------------------------------------------- */

static int deferred_run(sqlite3 *db, void *ctx) {
    request *r = ctx;
    r->db = db;
    r->in_batch = true;
    r->deferred_write(r);
    r->in_batch = false;
    r->db = NULL;
    return !r->batch_rollback && r->deferred_resp != NULL && r->status < 300;
}

static void deferred_done(void *ctx, int committed) {
    request *r = ctx;
    if (!committed || r->deferred_resp == NULL) {
        r->in_batch = true; /* replace whatever it answered: nothing was stored */
        http_reply_error(r, 500, "database_error", NULL, "the write could not be committed");
        r->in_batch = false;
    }
    MHD_resume_connection(r->conn);
}

enum MHD_Result http_defer_write(request *r, enum MHD_Result (*write)(request *r)) {
    r->deferred_write = write;
    r->deferred = true;
    db_pool_release(&r->srv->pool, r->db);
    r->db = NULL;
    /* Suspended before it is queued, so the writer's resume always finds
     * it suspended. */
    MHD_suspend_connection(r->conn);
    if (writer_submit(r->srv->writer, deferred_run, deferred_done, r) != 0) {
        r->in_batch = true;
        http_reply_error(r, 503, "shutting_down", NULL, "rlhfd is shutting down; retry");
        r->in_batch = false;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
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
    metrics_record_request(r->route ? (int)(r->route - routes) : -1, r->status,
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
