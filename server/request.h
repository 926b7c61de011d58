/* request — one HTTP request as its handler sees it: who called, the
 * matched route and {id}, the body, a pooled database connection, and the
 * state of its reply. server/http.c fills it; handlers (routes.h) answer
 * it exactly once, through the reply helpers (reply.h), and return what
 * those return.
 */
#ifndef RLHF_REQUEST_H
#define RLHF_REQUEST_H

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
    const char *version; /* "HTTP/1.1" */
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
    bool begun;                  /* request_begin ran (the headers are in) */
    auth_token token;            /* who called (routes with a role) */
    int64_t path_id;             /* the {id} of the route, if it has one */
    int64_t path_sub_id;         /* its second {id} (/v1/projects/{id}/members/{id}) */
    sqlite3 *db;                 /* a pooled connection for the handler */
    const char *idempotency_key; /* the Idempotency-Key header of a creating route */
    void *upload;                /* a streaming route's state (http_upload) */
    int64_t retry_after;         /* > 0: a Retry-After header on the reply (429, 503) */
    bool close_connection;       /* Connection: close on the reply */
    const char *uri_error;       /* why the raw request target was refused (http.c) */
    size_t target_len;           /* the raw request target's length */
    /* Prepended to the param of every error reply while set: a handler that
     * validates a nested body with another route's code (a study's base
     * job, routes_studies.c) names the field as the caller sent it. */
    const char *error_param_prefix;
    /* Group commit (http_defer_write): the write part runs on the writer's
     * thread, whose replies are held here until the connection resumes.
     * Slow work (http_defer_slow) runs on a slow_pool worker the same way. */
    bool deferred;                      /* handed to the writer or a pool; r->db is not ours */
    bool in_batch;                      /* on the writer's or a pool's thread: replies held */
    bool batch_rollback;                /* roll this write's savepoint back */
    struct MHD_Response *deferred_resp; /* the reply to queue on resume */
    enum MHD_Result (*deferred_write)(struct request *r);
    void *write_ctx;        /* the handler's state for deferred_write */
    struct slow_pool *slow; /* the pool running deferred_write (http_defer_slow) */
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
    /* The largest body the route takes (NULL: max_upload_bytes). */
    int64_t (*max_bytes)(const request *r);
} http_upload;

#endif
