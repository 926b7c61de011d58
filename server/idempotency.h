/* idempotency — the Idempotency-Key of creating POSTs (a route with
 * `creates` in route_table.c). A key binds one token to one request
 * (method, path and the body's SHA-256) and its answer, for 24 hours: a
 * retry with the same request gets the stored answer replayed (with
 * Idempotent-Replayed: true), a different request with the key gets 409.
 * The answer is stored in the transaction of the write it acknowledges
 * (http_commit_reply), so a replay is exactly what was committed.
 */
#ifndef RLHF_IDEMPOTENCY_H
#define RLHF_IDEMPOTENCY_H

#include <jansson.h>

#include "request.h"

/* Whether key is acceptable: 1..255 printable ASCII characters. */
int idempotency_key_valid(const char *key);

/* Before the handler of a request with r->idempotency_key: if the key was
 * used, replays the stored answer (same request) or replies 409 (a
 * different one) and returns 1; 0 if the key is new; -1 after replying
 * 500. */
int idempotency_replay(request *r, enum MHD_Result *replied);

/* Commits the handler's open transaction (db_begin) and replies body
 * (stolen). With an Idempotency-Key the answer is stored in the same
 * transaction, so a retry replays exactly what was acknowledged; if a
 * concurrent request with the same key committed first, this one is rolled
 * back and answered as a retry. A failed commit rolls back and replies 500.
 * Inside the group-commit writer (http_defer_write) it stores the answer
 * and leaves the commit to the writer. */
enum MHD_Result http_commit_reply(request *r, unsigned status, json_t *body);

#endif
