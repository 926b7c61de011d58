/* reply — how a handler answers: JSON bodies, the uniform error object,
 * lists and pages of rows. Every reply carries x-request-id; every JSON
 * reply ends in a newline. Handlers answer exactly once and return what
 * these return.
 */
#ifndef RLHF_REPLY_H
#define RLHF_REPLY_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "db.h"
#include "request.h"

/* How every JSON reply (and stream event) is printed. Reals get 15
 * significant digits (DBL_DIG: every decimal of up to 15 digits comes back
 * unchanged from a double), so a hyperparameter sent as 0.99 reads back
 * 0.99, not jansson's default 17 digits (0.98999999999999999). A double
 * that needs 16 or 17 digits prints rounded; metrics are float32 values
 * (9 digits) and lose nothing. What the server must read back bit for bit
 * (a job's stored config) is stored with jansson's default. json_real_text
 * (common/json_text.h) writes reals exactly as these flags do. */
#define HTTP_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* Queues an already-built response after adding x-request-id (and
 * Retry-After when r->retry_after is set). */
enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp);
/* Replies body (stolen) as JSON. */
enum MHD_Result http_reply_json(request *r, unsigned status, json_t *body);
/* Replies with text (len bytes, malloc'ed, stolen; ending in the newline
 * every reply ends in) as the JSON body. */
enum MHD_Result http_reply_json_text(request *r, unsigned status, char *text, size_t len);
/* Replies with text as json_dumps wrote it (malloc'ed, stolen, no trailing
 * newline: one is added); replayed adds Idempotent-Replayed: true. */
enum MHD_Result http_reply_dumped(request *r, unsigned status, char *text, bool replayed);

/* The JSON error body {"error": {message, type, param, code}} with its
 * closing newline (malloc'ed; *len its length), for answers built outside
 * a request (mhd_errors.c); param may be NULL. */
char *http_error_body(unsigned status, const char *code, const char *param, const char *message,
                      size_t *len);
/* A whole HTTP/1.1 response (status line, headers with Connection: close
 * and Retry-After when retry_after > 0, and the JSON error body) into out,
 * for answers written to a socket outside libmicrohttpd (conn_guard.h).
 * Its length, or -1 if it does not fit. */
int http_error_response_text(char *out, size_t len, unsigned status, const char *reason,
                             const char *code, const char *message, int64_t retry_after);

/* Replies {"error": {message, type, param, code}}; param may be NULL. The
 * type follows from the status (400 invalid_request_error, 401
 * authentication_error, 403 permission_error, 404 not_found_error, 409
 * conflict_error, 413 invalid_request_error, 429 rate_limit_error, 5xx
 * server_error). */
enum MHD_Result http_reply_error(request *r, unsigned status, const char *code, const char *param,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with extra members merged into the error object (stolen), e.g.
 * {"line": 3} for an upload. */
enum MHD_Result http_reply_error_with(request *r, unsigned status, const char *code,
                                      const char *param, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* Seconds a client is told to wait (Retry-After) before it retries a
 * write refused because the disk is full (507) or the database cannot be
 * written right now (503). */
#define HTTP_RETRY_AFTER_NO_SPACE_S 30
#define HTTP_RETRY_AFTER_DB_IO_S    5

/* A database failure (common/db.h) as the client should see it, detail
 * (may be NULL) naming what failed: DB_FAILURE_NO_SPACE 507
 * insufficient_storage, DB_FAILURE_IO 503 database_unavailable, both with
 * Retry-After and saying nothing of the request was stored; anything else
 * 500 database_error. */
enum MHD_Result http_reply_db_failure(request *r, db_failure failure, const char *detail);
/* http_reply_db_failure for r->db's failure (db_failure_of) with SQLite's message. */
enum MHD_Result http_reply_db_error(request *r);
/* What a lookup of r's {id} found short of a row: 404 <what>_not_found
 * ("no <what> <id>") when found is 0, the database error when it is < 0. */
enum MHD_Result http_reply_not_found(request *r, const char *what, int found);

/* An error found by a check that does not reply itself, so that its caller
 * decides how to answer (a bulk request names the item at fault): what
 * http_reply_error would say. param "" is none. */
typedef struct http_error {
    unsigned status;
    char code[48];
    char param[256];
    char message[512];
} http_error;
/* Fills e (param NULL: none) and returns 0, so a check can
 * `return http_error_set(e, ...);`. */
int http_error_set(http_error *e, unsigned status, const char *code, const char *param,
                   const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Replies e. */
enum MHD_Result http_reply_http_error(request *r, const http_error *e);

/* {"object":"list","data":data,"first_<by>","last_<by>","has_more"} (data
 * stolen), first and last read from member by (e.g. "id") of the first and
 * last item. */
json_t *http_list(json_t *data, bool has_more, const char *by);
/* Replies one page of a list query: st (prepared with LIMIT limit + 1, and
 * finalized here) gives the rows, from_row (with scope) makes each into
 * JSON, and the reply is their http_list by "id". A failed step or a row
 * from_row fails on replies 500. */
enum MHD_Result http_reply_rows(request *r, sqlite3_stmt *st, int64_t limit, int64_t scope,
                                db_row_json from_row);
/* http_reply_rows for sql, which binds ?1 = after (0 for the first page),
 * ?2 = limit + 1 and ?3 = scope (e.g. the job id; sql may ignore it). */
enum MHD_Result http_reply_page(request *r, const char *sql, int64_t after, int64_t limit,
                                int64_t scope, db_row_json from_row);

#endif
