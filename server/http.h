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
#include "server.h"

typedef struct request {
    server *srv;
    struct MHD_Connection *conn;
    const char *method;
    const char *url;
    char request_id[24];
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    bool answered;    /* a response is queued */
    auth_token token; /* who called (routes with a role) */
    int64_t path_id;  /* the {id} of the route, if it has one */
    sqlite3 *db;      /* a pooled connection for the handler */
} request;

/* Replies with body (stolen) as JSON. */
enum MHD_Result http_reply_json(request *r, unsigned status, json_t *body);
/* Replies {"error": {message, type, param, code}}; param may be NULL. The
 * type follows from the status (400 invalid_request_error, 401
 * authentication_error, 403 permission_error, 404 not_found_error, 409
 * conflict_error, 413 invalid_request_error, 5xx server_error). */
enum MHD_Result http_reply_error(request *r, unsigned status, const char *code, const char *param,
                                 const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* Queues an already-built response after adding x-request-id. */
enum MHD_Result http_queue(request *r, unsigned status, struct MHD_Response *resp);

/* The body as a JSON object, or NULL after replying 400 (bad JSON, not an
 * object). */
json_t *http_body_object(request *r, enum MHD_Result *replied);
/* Rejects keys of obj not in allowed (NULL-terminated): 1 ok, 0 replied. */
int http_check_keys(request *r, const json_t *obj, const char *const *allowed,
                    enum MHD_Result *replied);

/* A query argument, or NULL. */
const char *http_query(request *r, const char *name);
/* Pagination: limit in [1, max] (default dflt) and an optional positive
 * integer cursor (cursor_name, e.g. "after", or NULL for none; 0 when
 * absent). 1 ok, 0 replied. */
int http_query_page(request *r, const char *cursor_name, int64_t dflt, int64_t max, int64_t *limit,
                    int64_t *cursor, enum MHD_Result *replied);

/* {"object":"list","data":data,"first_id","last_id","has_more"} (data stolen;
 * ids read from each item's "id"). */
json_t *http_list(json_t *data, bool has_more);

/* The MHD access handler and completion callback. */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe);

#endif
