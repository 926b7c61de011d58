/* http — request plumbing shared by every route: body accumulation with a
 * size cap, request ids, Bearer-token auth, routing, and the JSON reply and
 * error helpers. Handlers answer exactly once, through the reply helpers,
 * and return what those return.
 */
#ifndef RLHF_HTTP_H
#define RLHF_HTTP_H

#include <jansson.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdint.h>

#include "auth.h"
#include "sha256.h"
#include "server.h"

struct http_route;

typedef struct request {
    server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    char request_id[24];
    const struct http_route *route; /* NULL until matched (or if nothing matches) */
    int64_t started_us;             /* monotonic, for the latency histogram */
    unsigned status;                /* of the queued response */
    char *body;                     /* the body, unless the route streams it */
    size_t body_len, body_cap;
    uint64_t body_bytes; /* received so far (streamed or not) */
    sha256_ctx body_sha256;
    bool body_too_large;
    bool answered;               /* a response is queued */
    auth_token token;            /* who called (routes with a role) */
    int64_t path_id;             /* the {id} of the route, if it has one */
    sqlite3 *db;                 /* a pooled connection for the handler */
    const char *idempotency_key; /* the Idempotency-Key header of a creating route */
    void *upload;                /* a streaming route's state (http_upload) */
    int64_t retry_after;         /* > 0: a Retry-After header on the reply (429) */
    /* Group commit (http_defer_write): the write part runs on the writer's
     * thread, whose replies are held here until the connection resumes. */
    bool deferred;                      /* handed to the writer; r->db is not ours */
    bool in_batch;                      /* running inside the writer's batch */
    bool batch_rollback;                /* roll this write's savepoint back */
    struct MHD_Response *deferred_resp; /* the reply to queue on resume */
    enum MHD_Result (*deferred_write)(struct request *r);
    void *write_ctx; /* the handler's state for deferred_write */
} request;

/* A route that consumes its body as it arrives instead of having it held
 * whole (dataset uploads). begin runs when the headers are in and the
 * caller is authorised (r->db is held); it may answer at once (returns 0)
 * or set r->upload. data gets each piece of the body in order; it must not
 * answer (it records a failure for the handler to report). The handler
 * runs when the body is complete; free releases r->upload. */
typedef struct http_upload {
    int (*begin)(request *r, enum MHD_Result *replied);
    void (*data)(request *r, const char *bytes, size_t n);
    void (*free)(request *r);
} http_upload;

/* The route table, for /metrics and for the test that docs/api.md lists
 * every route. */
size_t http_route_count(void);
void http_route_at(size_t i, const char **method, const char **pattern);

/* JSON limits for every body and every uploaded line, beyond the body cap:
 * nesting depth, bytes per string (keys included). jansson validates UTF-8
 * (no overlongs, no surrogates, nothing above U+10FFFF) and refuses \u0000. */
#define HTTP_JSON_MAX_DEPTH  32
#define HTTP_JSON_MAX_STRING (1 << 20)
/* Parses text as one JSON value within those limits, rejecting duplicate
 * keys. NULL on failure, with err and param (the path of the offending
 * string, e.g. "candidates[1].text", or "" when no single field is at
 * fault). */
json_t *http_json_parse(const char *text, size_t len, char *err, size_t errlen, char *param,
                        size_t paramlen);

/* How every JSON reply (and stream event) is printed. Reals get 15
 * significant digits (DBL_DIG: every decimal of up to 15 digits comes back
 * unchanged from a double), so a hyperparameter sent as 0.99 reads back
 * 0.99, not jansson's default 17 digits (0.98999999999999999). A double
 * that needs 16 or 17 digits prints rounded; metrics are float32 values
 * (9 digits) and lose nothing. What the server must read back bit for bit
 * (a job's stored config) is stored with jansson's default. */
#define HTTP_JSON_DUMP_FLAGS (JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(15))

/* Replies with text (len bytes, malloc'ed, stolen; ending in the newline
 * every reply ends in) as the JSON body. */
enum MHD_Result http_reply_json_text(request *r, unsigned status, char *text, size_t len);
/* Replies with body (stolen) as JSON. */
enum MHD_Result http_reply_json(request *r, unsigned status, json_t *body);
/* Replies {"error": {message, type, param, code}}; param may be NULL. The
 * type follows from the status (400 invalid_request_error, 401
 * authentication_error, 403 permission_error, 404 not_found_error, 409
 * conflict_error, 413 invalid_request_error, 5xx server_error). */
enum MHD_Result http_reply_error(request *r, unsigned status, const char *code, const char *param,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The same with extra members merged into the error object (stolen), e.g.
 * {"line": 3} for an upload. */
enum MHD_Result http_reply_error_with(request *r, unsigned status, const char *code,
                                      const char *param, json_t *extra, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));
/* 500 database_error with SQLite's message for r->db. */
enum MHD_Result http_reply_db_error(request *r);
/* Commits the handler's open transaction (db_begin) and replies body
 * (stolen). With an Idempotency-Key the answer is stored in the same
 * transaction, so a retry replays exactly what was acknowledged; if a
 * concurrent request with the same key committed first, this one is rolled
 * back and answered as a retry. A failed commit rolls back and replies 500. */
enum MHD_Result http_commit_reply(request *r, unsigned status, json_t *body);
/* Queues an already-built response after adding x-request-id. */
enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp);

/* Runs write(r) in the group-commit writer (server/writer.h): the
 * connection is suspended, write runs inside the writer's transaction with
 * r->db = the writer's connection (it replies as usual: http_commit_reply
 * stores the idempotent answer without committing, an error reply rolls
 * its changes back), and its reply is sent after the batch's COMMIT; a
 * failed COMMIT turns it into 500. r->write_ctx (free()d with the request)
 * carries what write needs. Call as the handler's last statement. */
enum MHD_Result http_defer_write(request *r, enum MHD_Result (*write)(request *r));

/* The body as a JSON object within the limits above, or NULL after replying
 * 400 (bad JSON, too deep, string too long, not an object). */
json_t *http_body_object(request *r, enum MHD_Result *replied);
/* Whether s is one of the strings of list (NULL-terminated); false for a
 * NULL s. */
bool http_one_of(const char *s, const char *const *list);
/* Rejects keys of obj not in allowed (NULL-terminated): 1 ok, 0 replied. */
int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied);

/* name (a member "name", or NULL if absent) must be a non-empty string of
 * at most max_bytes: 1 ok, 0 replied 400. */
int http_check_name(request *r, const char *name, size_t max_bytes, enum MHD_Result *replied);

/* A query argument, or NULL. */
const char *http_query(request *r, const char *name);
/* Pagination: limit in [1, max] (default dflt) and an optional positive
 * integer cursor (cursor_name, e.g. "after", or NULL for none; 0 when
 * absent). 1 ok, 0 replied. */
int http_query_page(request *r, const char *cursor_name, int64_t dflt, int64_t max, int64_t *limit,
                    int64_t *cursor, enum MHD_Result *replied);

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

/* The MHD access handler and completion callback. */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe);

#endif
