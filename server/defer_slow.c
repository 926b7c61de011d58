#include "defer_slow.h"

#include "db.h"
#include "reply.h"

enum MHD_Result http_reply_slow_refused(request *r, slow_pool *pool, int refusal,
                                        int64_t retry_after_s) {
    char why[160];
    slow_pool_refusal_text(pool, refusal, why, sizeof why);
    r->retry_after = retry_after_s;
    if (refusal == SLOW_POOL_OWNER_LIMIT)
        return http_reply_error(r, 429, "concurrency_limit_exceeded", NULL,
                                "%s; retry after %lld s", why, (long long)retry_after_s);
    return http_reply_error(r, 503, refusal == SLOW_POOL_STOPPED ? "shutting_down" : "server_busy",
                            NULL, "%s; retry after %lld s", why, (long long)retry_after_s);
}

enum MHD_Result http_reply_slow_unrun(request *r, slow_pool *pool, slow_pool_outcome outcome) {
    if (outcome == SLOW_POOL_STOPPING)
        return http_reply_slow_refused(r, pool, SLOW_POOL_STOPPED, 1);
    r->retry_after = slow_pool_retry_after(pool);
    return http_reply_error(r, 503, "queue_timeout", NULL,
                            "the request waited too long for a %s worker; retry after %lld s",
                            slow_pool_name(pool), (long long)r->retry_after);
}

/* On a pool thread: the work, or the reply saying why it did not run;
 * then the connection resumes with it. */
static void slow_run(void *ctx, slow_pool_outcome outcome) {
    request *r = ctx;
    r->in_batch = true; /* replies are held until the connection resumes */
    if (outcome == SLOW_POOL_RUN) {
        r->db = db_pool_acquire(&r->srv->pool);
        r->deferred_write(r);
        db_pool_release(&r->srv->pool, r->db);
        r->db = NULL;
        if (r->deferred_resp == NULL)
            http_reply_error(r, 500, "server_error", NULL, "the request could not be answered");
    } else {
        http_reply_slow_unrun(r, r->slow, outcome);
    }
    r->in_batch = false;
    MHD_resume_connection(r->conn);
}

enum MHD_Result http_defer_slow(request *r, slow_pool *pool, enum MHD_Result (*work)(request *r)) {
    r->deferred_write = work;
    r->slow = pool;
    r->deferred = true;
    db_pool_release(&r->srv->pool, r->db);
    r->db = NULL;
    /* Suspended before it is queued, so the worker's resume always finds
     * it suspended. */
    MHD_suspend_connection(r->conn);
    int64_t retry_after = 0;
    const int refusal = slow_pool_submit(pool, r->token.id, slow_run, r, &retry_after);
    if (refusal != 0) {
        r->in_batch = true;
        http_reply_slow_refused(r, pool, refusal, retry_after);
        r->in_batch = false;
        MHD_resume_connection(r->conn);
    }
    return MHD_YES;
}
