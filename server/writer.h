/* writer — group commit: one thread and one connection that run the write
 * part of concurrent requests in one transaction.
 *
 * With synchronous=FULL every COMMIT is an fsync of the WAL (~0.6 ms on the
 * development VM), so one transaction per ranking caps durable writes near
 * 1/fsync and queues everything behind the write lock. The writer takes
 * every write queued while the previous batch was committing, runs each in
 * its own SAVEPOINT (a write that fails or answers an error is rolled back
 * alone), COMMITs once, and only then calls each write's done(committed):
 * a request is acknowledged only after the fsync of the commit that holds
 * it, so every acknowledged write survives kill -9 and power loss. A failed
 * COMMIT fails the whole batch (done(…, why) for every write in it).
 *
 * The writer's connection never checkpoints the WAL itself: SQLite's
 * autocheckpoint runs inside the COMMIT that crosses 1000 frames, so the
 * batch in that commit would wait for the copy into the database file and
 * its fsync (tens of ms: the p99 of ranking writes). A checkpointer thread
 * with its own connection runs a PASSIVE checkpoint when a commit reports
 * a WAL that long; writes go on meanwhile. Once a second it also looks at
 * the -wal file: past DB_WAL_SIZE_LIMIT_BYTES (a big transaction from any
 * connection, e.g. a dataset upload) it follows with a TRUNCATE checkpoint
 * that gives up at once if it would have to wait (writer.c says why).
 */
#ifndef RLHF_WRITER_H
#define RLHF_WRITER_H

#include <sqlite3.h>
#include <stddef.h>

#include "db.h"

typedef struct writer writer;

/* Runs inside the batch's transaction, in a savepoint: returns 1 to keep
 * its changes, 0 to roll them back. */
typedef int (*writer_fn)(sqlite3 *db, void *ctx);
/* After the batch: failed DB_FAILURE_NONE if the COMMIT succeeded (and fn
 * kept or rolled back its changes as it said), else why nothing of the
 * batch was stored (fn may not have run): a full disk, an I/O error, ...
 * (common/db.h). */
typedef void (*writer_done)(void *ctx, db_failure failed);

writer *writer_start(const char *db_path, char *err, size_t errlen);
/* Queues a write. 0 queued (done will be called exactly once); -1 the
 * writer is stopping (nothing will be called). */
int writer_submit(writer *w, writer_fn fn, writer_done done, void *ctx);
/* Runs what is queued, refuses new writes (submit returns -1 from then
 * on), joins the thread. writer_free releases it afterwards. */
void writer_stop(writer *w);
void writer_free(writer *w);

/* How many batches and writes it has committed, and how many checkpoints
 * the checkpointer ran (for /metrics and tests). */
void writer_stats(writer *w, long long *batches, long long *writes, long long *checkpoints);

#endif
