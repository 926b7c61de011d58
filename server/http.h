/* http — rlhfd's libmicrohttpd glue: the life of a request. When the
 * headers are in: a request id, the route (route_table.h), the declared
 * size against the body cap, the Bearer token (token_cache.h, auth.h), the
 * write rate limit, the Idempotency-Key, a streaming route's begin. Then
 * the body, accumulated (with its SHA-256) or streamed. Then the handler,
 * on a pooled connection, unless the key replays a stored answer. A
 * deferred write's reply is queued when the writer resumes the connection
 * (defer_write.h). At completion, the request is counted (prometheus.h).
 *
 * Handlers include routes.h, which brings what they use: request.h,
 * reply.h, json_checks.h, query_params.h, idempotency.h, defer_write.h.
 * This header includes those and route_table.h too, for files that still
 * include only http.h.
 */
#ifndef RLHF_HTTP_H
#define RLHF_HTTP_H

#include <microhttpd.h>

#include "defer_write.h"
#include "idempotency.h"
#include "json_checks.h"
#include "query_params.h"
#include "reply.h"
#include "request.h"
#include "route_table.h"
#include "server.h"

/* MHD_OPTION_URI_LOG_CALLBACK (cls: the server): a request begins with
 * its raw target, before libmicrohttpd decodes it (strict checks in
 * http.c); returns the request, which MHD hands to http_handle. */
void *http_request_start(void *cls, const char *uri, struct MHD_Connection *conn);
/* The MHD access handler and completion callback (cls: the server). */
enum MHD_Result http_handle(void *cls, struct MHD_Connection *conn, const char *url,
                            const char *method, const char *version, const char *upload_data,
                            size_t *upload_data_size, void **con_cls);
void http_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                    enum MHD_RequestTerminationCode toe);

/* MHD_OPTION_CONNECTION_MEMORY_LIMIT: each connection's libmicrohttpd
 * memory, sized from cfg's head limits (why: http.c). */
size_t http_mhd_memory_limit(const rlhfd_config *cfg);

#endif
