#include "reply.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"

enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp) {
    MHD_add_response_header(resp, "x-request-id", r->request_id);
    if (r->retry_after > 0) {
        char seconds[24];
        snprintf(seconds, sizeof seconds, "%lld", (long long)r->retry_after);
        MHD_add_response_header(resp, "Retry-After", seconds);
    }
    if (r->close_connection)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
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

/* text (malloc'ed, stolen) with the newline every reply ends in, and its
 * length into *len; NULL (text freed) without memory. */
static char *with_newline(char *text, size_t *len) {
    const size_t n = strlen(text);
    char *grown = realloc(text, n + 2);
    if (grown == NULL) {
        free(text);
        return NULL;
    }
    grown[n] = '\n', grown[n + 1] = '\0';
    *len = n + 1;
    return grown;
}

enum MHD_Result http_reply_dumped(request *r, unsigned status, char *text, bool replayed) {
    size_t len;
    char *grown = with_newline(text, &len);
    if (grown == NULL)
        return MHD_NO;
    struct MHD_Response *resp = MHD_create_response_from_buffer(len, grown, MHD_RESPMEM_MUST_FREE);
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
    return text ? http_reply_dumped(r, status, text, false) : MHD_NO;
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

/* {"error": {message, type, param, code}} of message (cleaned to UTF-8). */
static json_t *error_object(unsigned status, const char *code, const char *param,
                            const char *message) {
    /* A reply must be valid UTF-8 (json_pack refuses anything else): the
     * message may quote request bytes (jansson's parse errors do) or be cut
     * inside a character by the buffer. */
    char *clean = db_utf8_clean(message, strlen(message));
    /* param too: a check may have cut a member's name inside a character. */
    char *clean_param = param ? db_utf8_clean(param, strlen(param)) : NULL;
    json_t *err = json_pack("{s:s, s:s, s:s?, s:s}", "message", clean ? clean : "(unprintable)",
                            "type", error_type(status), "param", clean_param, "code", code);
    free(clean);
    free(clean_param);
    return err;
}

static enum MHD_Result reply_error_v(request *r, unsigned status, const char *code,
                                     const char *param, json_t *extra, const char *fmt,
                                     va_list ap) {
    char message[1024];
    vsnprintf(message, sizeof message, fmt, ap);
    char prefixed[320];
    if (param != NULL && r->error_param_prefix != NULL) {
        snprintf(prefixed, sizeof prefixed, "%s%s", r->error_param_prefix, param);
        param = prefixed;
    }
    json_t *err = error_object(status, code, param, message);
    if (extra != NULL)
        json_object_update(err, extra);
    json_decref(extra);
    return http_reply_json(r, status, json_pack("{s:o}", "error", err));
}

char *http_error_body(unsigned status, const char *code, const char *param, const char *message,
                      size_t *len) {
    json_t *body = json_pack("{s:o}", "error", error_object(status, code, param, message));
    char *text = body ? json_dumps(body, HTTP_JSON_DUMP_FLAGS) : NULL;
    json_decref(body);
    return text != NULL ? with_newline(text, len) : NULL;
}

int http_error_response_text(char *out, size_t len, unsigned status, const char *reason,
                             const char *code, const char *message, int64_t retry_after) {
    size_t body_len;
    char *body = http_error_body(status, code, NULL, message, &body_len);
    if (body == NULL)
        return -1;
    char retry[48] = "";
    if (retry_after > 0)
        snprintf(retry, sizeof retry, "Retry-After: %lld\r\n", (long long)retry_after);
    int n = snprintf(out, len,
                     "HTTP/1.1 %u %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n%s\r\n%s",
                     status, reason, body_len, retry, body);
    free(body);
    return n > 0 && (size_t)n < len ? n : -1;
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

int http_error_set(http_error *e, unsigned status, const char *code, const char *param,
                   const char *fmt, ...) {
    e->status = status;
    snprintf(e->code, sizeof e->code, "%s", code);
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return 0;
}

enum MHD_Result http_reply_http_error(request *r, const http_error *e) {
    return http_reply_error(r, e->status, e->code, e->param[0] ? e->param : NULL, "%s", e->message);
}

enum MHD_Result http_reply_db_failure(request *r, db_failure failure, const char *detail) {
    static const struct {
        unsigned status;
        const char *code, *what, *then;
        int64_t retry_after_s;
    } storage[] = {
        [DB_FAILURE_NO_SPACE] = {507, "insufficient_storage", "the database's disk is full",
                                 "retry once space is freed", HTTP_RETRY_AFTER_NO_SPACE_S},
        [DB_FAILURE_IO] = {503, "database_unavailable", "the database cannot be written right now",
                           "retry later", HTTP_RETRY_AFTER_DB_IO_S},
    };
    const char *why = detail ? detail : "the write could not be committed";
    if (!db_failure_is_storage(failure))
        return http_reply_error(r, 500, "database_error", NULL, "database error: %s", why);
    r->retry_after = storage[failure].retry_after_s;
    return http_reply_error(r, storage[failure].status, storage[failure].code, NULL,
                            "%s (%s); nothing of this request was stored: %s",
                            storage[failure].what, why, storage[failure].then);
}

enum MHD_Result http_reply_db_error(request *r) {
    return http_reply_db_failure(r, db_failure_of(r->db), sqlite3_errmsg(r->db));
}

enum MHD_Result http_reply_not_found(request *r, const char *what, int found) {
    if (found < 0)
        return http_reply_db_error(r);
    char code[64];
    snprintf(code, sizeof code, "%s_not_found", what);
    return http_reply_error(r, 404, code, NULL, "no %s %lld", what, (long long)r->path_id);
}

/* ---- lists ---------------------------------------------------------------- */

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
