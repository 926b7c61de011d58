/* defer_write — a request's write joins the group commit
 * (server/writer.h): many writes, one transaction, one fsync. */
#ifndef RLHF_DEFER_WRITE_H
#define RLHF_DEFER_WRITE_H

#include "request.h"

/* Runs write(r) in the group-commit writer: the connection is suspended,
 * write runs inside the writer's transaction with r->db = the writer's
 * connection (it replies as usual: http_commit_reply stores the idempotent
 * answer without committing, an error reply rolls its changes back), and
 * its reply is sent after the batch's COMMIT (server/http.c queues it when
 * the connection resumes); a failed COMMIT turns it into
 * http_reply_db_failure's answer (507 for a full disk, 503 for an I/O error).
 * r->write_ctx (free()d with the request) carries what write needs. Call
 * as the handler's last statement. */
enum MHD_Result http_defer_write(request *r, enum MHD_Result (*write)(request *r));

#endif
