#include "defer_write.h"

#include "db.h"
#include "reply.h"
#include "writer.h"

static int deferred_run(sqlite3 *db, void *ctx) {
    request *r = ctx;
    r->db = db;
    r->in_batch = true;
    r->deferred_write(r);
    r->in_batch = false;
    r->db = NULL;
    return !r->batch_rollback && r->deferred_resp != NULL && r->status < 300;
}

static void deferred_done(void *ctx, db_failure failed) {
    request *r = ctx;
    if (failed != DB_FAILURE_NONE || r->deferred_resp == NULL) {
        r->in_batch = true; /* replace whatever it answered: nothing was stored */
        http_reply_db_failure(r, failed, "the write could not be committed");
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
