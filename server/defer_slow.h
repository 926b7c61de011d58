/* defer_slow — a request's slow part runs on a slow_pool worker
 * (server/slow_pool.h) while its connection is suspended, so no HTTP
 * thread waits for it. */
#ifndef RLHF_DEFER_SLOW_H
#define RLHF_DEFER_SLOW_H

#include "request.h"
#include "slow_pool.h"

/* Runs work(r) on one of pool's workers, queued under the caller's token:
 * the connection is suspended, work runs with r->db = a pooled connection
 * and replies as usual (the reply is held and sent when the connection
 * resumes, server/http.c). r->write_ctx (free()d with the request) carries
 * what work needs. If the pool refuses, the caller gets 429
 * concurrency_limit_exceeded (the token's own limit), 503 server_busy
 * (queue full) or 503 shutting_down; a request still queued after the
 * pool's timeout gets 503 queue_timeout; each with Retry-After. Call as
 * the handler's last statement. */
enum MHD_Result http_defer_slow(request *r, slow_pool *pool, enum MHD_Result (*work)(request *r));

/* The reply for a refusal or an end without running (outcome EXPIRED or
 * STOPPING), through the reply helpers, with Retry-After. */
enum MHD_Result http_reply_slow_refused(request *r, slow_pool *pool, int refusal,
                                        int64_t retry_after_s);
enum MHD_Result http_reply_slow_unrun(request *r, slow_pool *pool, slow_pool_outcome outcome);

#endif
