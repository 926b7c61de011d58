/* series_cache — what rlhfd remembers of metric series between reads, so
 * that a metric read costs no SQLite when nothing changed (issue 5):
 * pre-rendered series (metrics_series) keyed by (job, name), each
 * with the jobs.metrics_epoch of the snapshot its rows were read in, bounded
 * by bytes and entries (the oldest entry goes first). A page is one copy of
 * a run of steps, byte for byte what metrics_page_json renders.
 *
 * Finished jobs: a job that reached succeeded, failed or cancelled never
 * gets another metric row: the worker writes metrics only in a transaction
 * fenced on its lease and status IN ('validating_files', 'running')
 * (train/db_sink.c), and no state leaves those three. So a series read in
 * a snapshot that shows such a status is final, and is served with no SQL.
 *
 * Running (and queued, validating) jobs: the cached rows may be stale in
 * two ways. New steps are appended (the usual case: fenced transactions,
 * each with the updates of up to 100 ms, train/db_sink.h), and old steps
 * are rewritten: a requeued job resumes from its
 * last checkpoint and INSERT OR REPLACEs the steps after it, possibly with
 * other values (a job that restarts without a checkpoint rewrites them
 * all). The job row cannot tell the second case apart: a worker stopped by
 * a signal gives its attempt back (train/db_job.c), so the resumed run has
 * the same attempts; the lease owner (pid and nonce) and the status change
 * and change back between two reads unseen (running -> queued -> running);
 * and nothing stops one run from writing a step twice (INSERT OR REPLACE).
 * So the database says it itself: schema/008_metrics_epoch.sql's triggers
 * bump jobs.metrics_epoch in the writer's transaction on every metrics row
 * written at a step not after its series' last, and on every UPDATE and
 * DELETE of metrics, whoever the writer is. At one epoch a series only
 * grows at its end. A read then costs one indexed statement
 * (metrics_series_fetch): the job's status and epoch and the series' rows
 * after the cached last step, from ONE snapshot, so a worker committing
 * meanwhile is seen whole or not at all, never half. Same epoch: the new
 * rows (usually none) are appended and the page is copied from the cache.
 * Another epoch: the series is read again, whole, in one snapshot. A
 * status that is now final marks the series final.
 *
 * Most reads need not even that statement: nothing at all was committed
 * since the entry was last brought up to date. In WAL mode every commit,
 * by any connection of any process, rewrites the WAL-index header at the
 * start of the database's -shm file (iChange counts transactions, and
 * mxFrame, the salts and a checksum follow: sqlite.org/walformat.html),
 * and readers find their snapshot through that header. So a read of a
 * series not known final first reads the header (pread of 96 bytes: its
 * two copies, which must agree, as SQLite's own readers require, and an
 * fstat that it is still linked); an entry remembers the header read
 * BEFORE the statement that last brought it up to date (that snapshot is
 * at least as new as the header); if the header is still the same, no
 * transaction has committed since, and the entry is the database's answer
 * now. Any doubt (no -shm, copies that differ, an unknown iVersion, a
 * -shm that was unlinked) means "changed": the statement runs. This needs
 * every writer to use the shared-memory WAL index, which is SQLite's
 * default; locking_mode=EXCLUSIVE (the only way around it) cannot get its
 * lock while rlhfd's connections are open.
 *
 * Threads: several request threads may extend or reload one entry at once,
 * each from its own snapshot. A reply is always from a snapshot taken
 * during its request or a newer one (epochs only grow; at one epoch more
 * rows is newer), and an entry is only ever replaced by a newer one; an
 * entry that changed under a reader in a way it cannot merge (evicted, or
 * replaced by an older snapshot's) sends that reader to the uncached path.
 *
 * Not cacheable (remembered as such, per epoch for a running job): a
 * value that is not finite (jansson drops such keys; the general path
 * renders those), a name the fast path declines, a series over a quarter
 * of the budget. The uncached path answers those.
 *
 * Finished jobs: a job that reached succeeded, failed or cancelled never
 * gets another metric row: the worker writes metrics only in a transaction
 * fenced on its lease and status IN ('validating_files', 'running')
 * (train/db_sink.c), and no state leaves those three. So a series read in
 * a snapshot that shows such a status is final, and is served with no SQL.
 *
 * Running (and queued, validating) jobs: the cached rows may be stale in
 * two ways. New steps are appended (the usual case: fenced transactions,
 * each with the updates of up to 100 ms, train/db_sink.h), and old steps
 * are rewritten: a requeued job resumes from its
 * last checkpoint and INSERT OR REPLACEs the steps after it, possibly with
 * other values (a job that restarts without a checkpoint rewrites them
 * all). The job row cannot tell the second case apart: a worker stopped by
 * a signal gives its attempt back (train/db_job.c), so the resumed run has
 * the same attempts; the lease owner (pid and nonce) and the status change
 * and change back between two reads unseen (running -> queued -> running);
 * and nothing stops one run from writing a step twice (INSERT OR REPLACE).
 * So the database says it itself: schema/008_metrics_epoch.sql's triggers
 * bump jobs.metrics_epoch in the writer's transaction on every metrics row
 * written at a step not after its series' last, and on every UPDATE and
 * DELETE of metrics, whoever the writer is. At one epoch a series only
 * grows at its end. A read then costs one indexed statement
 * (metrics_series_fetch): the job's status and epoch and the series' rows
 * after the cached last step, from ONE snapshot, so a worker committing
 * meanwhile is seen whole or not at all, never half. Same epoch: the new
 * rows (usually none) are appended and the page is copied from the cache.
 * Another epoch: the series is read again, whole, in one snapshot. A
 * status that is now final marks the series final.
 *
 * Most reads need not even that statement: nothing at all was committed
 * since the entry was last brought up to date. In WAL mode every commit,
 * by any connection of any process, rewrites the WAL-index header at the
 * start of the database's -shm file (iChange counts transactions, and
 * mxFrame, the salts and a checksum follow: sqlite.org/walformat.html),
 * and readers find their snapshot through that header. So a read of a
 * series not known final first reads the header (pread of 96 bytes: its
 * two copies, which must agree, as SQLite's own readers require, and an
 * fstat that it is still linked); an entry remembers the header read
 * BEFORE the statement that last brought it up to date (that snapshot is
 * at least as new as the header); if the header is still the same, no
 * transaction has committed since, and the entry is the database's answer
 * now. Any doubt (no -shm, copies that differ, an unknown iVersion, a
 * -shm that was unlinked) means "changed": the statement runs. This needs
 * every writer to use the shared-memory WAL index, which is SQLite's
 * default; locking_mode=EXCLUSIVE (the only way around it) cannot get its
 * lock while rlhfd's connections are open.
 *
 * Threads: several request threads may extend or reload one entry at once,
 * each from its own snapshot. A reply is always from a snapshot taken
 * during its request or a newer one (epochs only grow; at one epoch more
 * rows is newer), and an entry is only ever replaced by a newer one; an
 * entry that changed under a reader in a way it cannot merge (evicted, or
 * replaced by an older snapshot's) sends that reader to the uncached path.
 *
 * Not cacheable (remembered as such, per epoch for a running job): a
 * value that is not finite (jansson drops such keys; the general path
 * renders those), a name the fast path declines, a series over a quarter
 * of the budget. The uncached path answers those.
 */
#ifndef RLHF_SERIES_CACHE_H
#define RLHF_SERIES_CACHE_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

typedef struct series_cache series_cache;

/* rlhfd's series budget: a 10,000-step series of one name is ~0.6 MB. */
#define SERIES_CACHE_BYTES ((size_t)64 << 20)

/* max_bytes: the budget (0: nothing is cached; every read declines). */
series_cache *series_cache_new(size_t max_bytes);
void series_cache_free(series_cache *c);

/* A page of job_id's series of name (the reply to names=name), from the
 * cache, validated against db unless the job is finished (see above): 1
 * rendered (*out, *len), 0 not served (no budget, a series or name that
 * cannot be cached, no such job, a database error: the uncached path
 * answers, and reports what was wrong), -1 out of memory. */
int series_cache_serve(series_cache *c, sqlite3 *db, int64_t job_id, const char *name,
                       int64_t after_step, int64_t limit, char **out, size_t *len);

#endif
