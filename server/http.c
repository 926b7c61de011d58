#include "http.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "routes.h"

/* ---- the route table ------------------------------------------------------ */

#define READERS (AUTH_ROLE_ADMIN | AUTH_ROLE_VIEWER)

typedef struct route {
    const char *method;
    const char *pattern; /* segments; "{id}" matches a positive integer */
    int roles;           /* 0: no token needed */
    enum MHD_Result (*handler)(request *r);
} route;

static const route routes[] = {
    {"GET", "/healthz", 0, route_healthz},
    {"GET", "/readyz", 0, route_readyz},
    {"POST", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_create},
    {"GET", "/v1/tokens", AUTH_ROLE_ADMIN, route_tokens_list},
    {"POST", "/v1/jobs", AUTH_ROLE_ADMIN, route_jobs_create},
    {"GET", "/v1/jobs", READERS, route_jobs_list},
    {"GET", "/v1/jobs/{id}", READERS, route_jobs_get},
    {"POST", "/v1/jobs/{id}/cancel", AUTH_ROLE_ADMIN, route_jobs_cancel},
    {"GET", "/v1/jobs/{id}/events", READERS, route_jobs_events},
    {"GET", "/v1/jobs/{id}/metrics", READERS, route_jobs_metrics},
    {"GET", "/v1/jobs/{id}/stream", READERS, route_jobs_stream},
    {"GET", "/v1/jobs/{id}/checkpoints", READERS, route_jobs_checkpoints},
    {"GET", "/v1/checkpoints/{id}/content", READERS, route_checkpoints_content},
};

/* Matches url against pattern; *id receives a {id} segment. */
static bool pattern_matches(const char *pattern, const char *url, int64_t *id) {
    while (*pattern && *url) {
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
    r->answered = true;
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    return ret;
}

enum MHD_Result http_reply_json(request *r, unsigned status, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (text == NULL)
        return MHD_NO;
    size_t len = strlen(text);
    text[len] = '\n'; /* replaces the NUL: the reply ends in a newline */
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(len + 1, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return http_queue(r, status, resp);
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
        default:
            return status >= 500 ? "server_error" : "invalid_request_error";
    }
}

enum MHD_Result http_reply_error(request *r, unsigned status, const char *code, const char *param,
                                 const char *fmt, ...) {
    char message[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, sizeof message, fmt, ap);
    va_end(ap);
    json_t *err = json_pack("{s:{s:s, s:s, s:s?, s:s}}", "error", "message", message, "type",
                            error_type(status), "param", param, "code", code);
    return http_reply_json(r, status, err);
}

/* ---- request helpers ------------------------------------------------------ */

json_t *http_body_object(request *r, enum MHD_Result *replied) {
    json_error_t jerr;
    json_t *obj =
        r->body_len > 0 ? json_loadb(r->body, r->body_len, JSON_REJECT_DUPLICATES, &jerr) : NULL;
    if (obj == NULL) {
        *replied = r->body_len == 0
                       ? http_reply_error(r, 400, "invalid_json", NULL,
                                          "the request body must be a JSON object")
                       : http_reply_error(r, 400, "invalid_json", NULL,
                                          "the request body is not valid JSON: %s (line %d, "
                                          "column %d)",
                                          jerr.text, jerr.line, jerr.column);
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

int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied) {
    const char *key;
    json_t *value;
    json_object_foreach((json_t *)obj, key, value) {
        const char *const *a = allowed;
        while (*a && strcmp(*a, key) != 0)
            a++;
        if (*a == NULL) {
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

json_t *http_list(json_t *data, bool has_more) {
    size_t n = json_array_size(data);
    json_t *first = n ? json_object_get(json_array_get(data, 0), "id") : NULL;
    json_t *last = n ? json_object_get(json_array_get(data, n - 1), "id") : NULL;
    return json_pack("{s:s, s:o, s:O?, s:O?, s:b}", "object", "list", "data", data, "first_id",
                     first, "last_id", last, "has_more", has_more);
}

/* ---- the access handler ----------------------------------------------------- */

/* 1: the caller may proceed; 0: answered with 401/403/500 in *replied. */
static int authenticate(request *r, int roles, enum MHD_Result *replied) {
    const char *header = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Authorization");
    if (header == NULL || strncmp(header, "Bearer ", 7) != 0 || header[7] == '\0') {
        *replied = http_reply_error(r, 401, "missing_api_key", NULL,
                                    "an API token is required: Authorization: Bearer <token>");
        return 0;
    }
    int found = auth_token_lookup(r->db, header + 7, &r->token);
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

static enum MHD_Result dispatch(request *r) {
    const route *found = NULL;
    bool path_known = false;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0] && found == NULL; i++) {
        int64_t id = 0;
        if (!pattern_matches(routes[i].pattern, r->url, &id))
            continue;
        path_known = true;
        if (strcmp(routes[i].method, r->method) == 0)
            found = &routes[i], r->path_id = id;
    }
    if (found == NULL)
        return path_known ? http_reply_error(r, 405, "method_not_allowed", NULL,
                                             "%s is not allowed on %s", r->method, r->url)
                          : http_reply_error(r, 404, "unknown_route", NULL, "no route %s %s",
                                             r->method, r->url);
    r->db = db_pool_acquire(&r->srv->pool);
    enum MHD_Result ret = MHD_YES;
    if (found->roles == 0 || authenticate(r, found->roles, &ret))
        ret = found->handler(r);
    db_pool_release(&r->srv->pool, r->db);
    r->db = NULL;
    return ret;
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
        snprintf(r->request_id, sizeof r->request_id, "req_%08x%08llx", boot,
                 (unsigned long long)atomic_fetch_add(&counter, 1));
        *con_cls = r;
        /* Refuse a declared oversized body before reading it. */
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl != NULL && strtoll(cl, NULL, 10) > r->srv->cfg.max_body_bytes) {
            r->body_too_large = true;
            return http_reply_error(r, 413, "body_too_large", NULL,
                                    "the request body is larger than %lld bytes",
                                    (long long)r->srv->cfg.max_body_bytes);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->body_too_large || r->body_len + n > (size_t)r->srv->cfg.max_body_bytes) {
            r->body_too_large = true;
            free(r->body);
            r->body = NULL;
            r->body_len = 0;
            return MHD_YES;
        }
        if (r->body_len + n + 1 > r->body_cap) {
            size_t cap = (r->body_len + n + 1) * 2;
            char *grown = realloc(r->body, cap);
            if (grown == NULL)
                return MHD_NO;
            r->body = grown, r->body_cap = cap;
        }
        memcpy(r->body + r->body_len, upload_data, n);
        r->body_len += n;
        r->body[r->body_len] = '\0';
        return MHD_YES;
    }
    if (r->answered)
        return MHD_YES;
    if (r->body_too_large)
        return http_reply_error(r, 413, "body_too_large", NULL,
                                "the request body is larger than %lld bytes",
                                (long long)r->srv->cfg.max_body_bytes);
    return dispatch(r);
}

void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe) {
    (void)cls, (void)conn, (void)toe;
    request *r = *con_cls;
    if (r != NULL) {
        free(r->body);
        free(r);
        *con_cls = NULL;
    }
}
