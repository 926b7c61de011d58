/* common/jobs_db.h on a real SQLite file: every transition of a job and the
 * event it writes, the fencing that keeps a worker whose lease is gone from
 * writing, cancelling a queued and a running job, and the scheduler's
 * lost-worker paths (requeued while attempts remain, failed once they are
 * used up, cancelled when a cancel was pending). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "db.h"
#include "jobs_db.h"
#include "suites.h"

typedef struct fixture {
    char dir[64], path[96];
    sqlite3 *db;
} fixture;

static void fixture_open(fixture *f) {
    const char *tmp = getenv("TMPDIR");
    snprintf(f->dir, sizeof f->dir, "%s/jobs-db-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    ck_assert_ptr_nonnull(mkdtemp(f->dir));
    snprintf(f->path, sizeof f->path, "%s/rlhfd.db", f->dir);
    char err[256];
    ck_assert_int_eq(db_open(f->path, &f->db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(f->db, err, sizeof err), 0);
}

static void fixture_close(fixture *f) {
    sqlite3_close(f->db);
    char path[128];
    const char *suffix[] = {"", "-wal", "-shm"};
    for (int i = 0; i < 3; i++) {
        snprintf(path, sizeof path, "%s%s", f->path, suffix[i]);
        unlink(path);
    }
    rmdir(f->dir);
}

/* The one integer sql (binding ?1 = id) returns; -1 when it returns no row. */
static int64_t sql_int(sqlite3 *db, const char *sql, int64_t id) {
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    return v;
}

static void sql_exec(sqlite3 *db, const char *sql) {
    char err[256];
    ck_assert_msg(db_exec(db, sql, err, sizeof err) == SQLITE_OK, "%s: %s", sql, err);
}

/* The number of job_events of job id with code. */
static int64_t events(sqlite3 *db, int64_t id, const char *code) {
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM job_events WHERE job_id = ?1 AND "
                                        "code = ?2",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, code, -1, SQLITE_STATIC);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    int64_t n = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static void expect_status(sqlite3 *db, int64_t id, const char *status) {
    job_row job;
    ck_assert_int_eq(jobs_db_get(db, id, &job), 1);
    ck_assert_str_eq(job.status, status);
    job_row_free(&job);
    char alone[JOBS_DB_STATUS_BYTES];
    ck_assert_int_eq(jobs_db_status(db, id, alone), 1);
    ck_assert_str_eq(alone, status);
}

/* A queued job of max_attempts, inserted (and committed) through jobs_db. */
static int64_t new_job(sqlite3 *db, int64_t max_attempts) {
    const job_new j = {
        .type = "sft", .config = "{\"max_steps\":3}", .max_attempts = max_attempts, .ranks = 1};
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    int64_t id = jobs_db_insert(db, &j);
    ck_assert_int_gt(id, 0);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    return id;
}

/* Claims job id as owner: the claim must succeed. */
static void claim(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms) {
    job_row job;
    char err[256];
    ck_assert_int_eq(jobs_db_claim(db, id, owner, lease_ms, 4242, &job, err, sizeof err), 1);
    job_row_free(&job);
}

/* 1/0/-1 of jobs_db_fence in a transaction of its own (committed). */
static int fence(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms, bool *cancel) {
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    int owned = jobs_db_fence(db, id, owner, lease_ms, cancel);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    return owned;
}

/* ---- insert and read ------------------------------------------------------ */

START_TEST(test_insert_carries_refs_and_ranks) {
    fixture f;
    fixture_open(&f);
    /* What the new job names: a checkpoint of an earlier job, a reward
     * checkpoint, a project, two datasets. */
    sql_exec(f.db, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) VALUES "
                   "(1, 'sft', 'succeeded', '{}', 1, 5)");
    sql_exec(f.db, "INSERT INTO checkpoints (id, job_id, step, kind, bytes, sha256, size_bytes, "
                   "created_at) VALUES (10, 1, 3, 'final', x'00', printf('%064d', 0), 1, 5), "
                   "(11, 1, 4, 'periodic', x'00', printf('%064d', 0), 1, 5)");
    sql_exec(f.db, "INSERT INTO projects (id, name, k, overlap, created_at) VALUES "
                   "(3, 'p', 2, 1, 5)");
    sql_exec(f.db, "INSERT INTO datasets (id, name, format, n_rows, created_at) VALUES "
                   "(7, 'a', 'preference', 1, 5), (8, 'b', 'preference', 1, 5)");
    const job_new j = {
        .type = "reward",
        .config = "{\"seed\":1}",
        .max_attempts = 3,
        .refs = {.model = 10, .reward_model = 11, .project = 3, .ranking_cutoff = 99},
        .ranks = 4};
    ck_assert_int_eq(db_begin(f.db), SQLITE_OK);
    int64_t id = jobs_db_insert(f.db, &j);
    ck_assert_int_eq(id, 2);
    ck_assert_int_eq(jobs_db_link_dataset(f.db, id, "training", 7), 0);
    ck_assert_int_eq(jobs_db_link_dataset(f.db, id, "validation", 8), 0);
    ck_assert_int_eq(db_commit(f.db), SQLITE_OK);

    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.type, "reward");
    ck_assert_str_eq(job.status, "queued");
    ck_assert_str_eq(job.config, "{\"seed\":1}");
    ck_assert_int_eq(job.attempts, 0);
    ck_assert_int_eq(job.max_attempts, 3);
    ck_assert(!job.cancel_requested);
    ck_assert_int_gt(job.created_at, 1700000000);
    ck_assert_int_eq(job.started_at, 0);
    ck_assert_int_eq(job.finished_at, 0);
    ck_assert_ptr_null(job.error);
    ck_assert_int_eq(job.refs.model, 10);
    ck_assert_int_eq(job.refs.reward_model, 11);
    ck_assert_int_eq(job.refs.project, 3);
    ck_assert_int_eq(job.refs.ranking_cutoff, 99);
    ck_assert_int_eq(job.ranks, 4);
    ck_assert_int_eq(job.training_file, 7);
    ck_assert_int_eq(job.validation_file, 8);
    ck_assert_int_eq(job.final_checkpoint, 0);
    job_row_free(&job);
    ck_assert_int_eq(events(f.db, id, "created"), 1);
    /* The earlier job's final checkpoint is read beside it. */
    ck_assert_int_eq(jobs_db_get(f.db, 1, &job), 1);
    ck_assert_int_eq(job.final_checkpoint, 10);
    ck_assert_int_eq(job.ranks, 1);
    job_row_free(&job);
    ck_assert_int_eq(jobs_db_get(f.db, 99, &job), 0);
    char status[JOBS_DB_STATUS_BYTES];
    ck_assert_int_eq(jobs_db_status(f.db, 99, status), 0);
    /* No refs: NULL columns, not 0s (they are foreign keys). */
    int64_t plain = new_job(f.db, 1);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM jobs WHERE id = ?1 AND parent_checkpoint_id IS "
                             "NULL AND training_project_id IS NULL AND training_ranking_cutoff "
                             "IS NULL AND created_by IS NULL",
                             plain),
                     1);
    /* A ref to nothing breaks a foreign key: nothing is inserted. */
    const job_new dangling = {
        .type = "sft", .config = "{}", .max_attempts = 1, .refs = {.model = 555}, .ranks = 1};
    ck_assert_int_eq(db_begin(f.db), SQLITE_OK);
    ck_assert_int_eq(jobs_db_insert(f.db, &dangling), -1);
    db_rollback(f.db);
    ck_assert_int_eq(sql_int(f.db, "SELECT count(*) FROM jobs WHERE id > ?1", plain), 0);
    fixture_close(&f);
}
END_TEST

/* ---- the worker's path ------------------------------------------------------ */

START_TEST(test_claim_run_finish) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 2);
    job_row job;
    char err[256];
    int64_t before = db_now_ms();
    ck_assert_int_eq(jobs_db_claim(f.db, id, "w1", 60000, 4242, &job, err, sizeof err), 1);
    ck_assert_str_eq(job.type, "sft");
    ck_assert_str_eq(job.config, "{\"max_steps\":3}");
    ck_assert_int_eq(job.attempts, 1);
    ck_assert_int_eq(job.max_attempts, 2);
    job_row_free(&job);
    expect_status(f.db, id, "validating_files");
    ck_assert_int_eq(sql_int(f.db, "SELECT worker_pid FROM jobs WHERE id = ?1", id), 4242);
    int64_t lease = sql_int(f.db, "SELECT lease_expires_ms FROM jobs WHERE id = ?1", id);
    ck_assert_int_ge(lease, before + 60000);
    ck_assert_int_le(lease, db_now_ms() + 60000);
    ck_assert_int_gt(sql_int(f.db, "SELECT started_at FROM jobs WHERE id = ?1", id), 0);
    ck_assert_int_eq(events(f.db, id, "started"), 1);
    /* Claimed once: a second worker gets nothing. */
    ck_assert_int_eq(jobs_db_claim(f.db, id, "w2", 60000, 1, &job, err, sizeof err), 0);
    ck_assert_int_eq(jobs_db_claim(f.db, 777, "w2", 60000, 1, &job, err, sizeof err), 0);

    ck_assert_int_eq(jobs_db_mark_running(f.db, id, "w1", 60000, "inputs ok", NULL), 0);
    expect_status(f.db, id, "running");
    ck_assert_int_eq(events(f.db, id, "running"), 1);

    /* Two checkpoints; success makes the newest the final one. */
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO checkpoints (id, job_id, step, kind, bytes, sha256, size_bytes, "
             "created_at) VALUES (1, %lld, 1, 'periodic', x'00', printf('%%064d', 0), 1, 5), "
             "(2, %lld, 2, 'periodic', x'00', printf('%%064d', 0), 1, 5)",
             (long long)id, (long long)id);
    sql_exec(f.db, sql);
    ck_assert_int_eq(jobs_db_finish(f.db, id, "w1", JOB_OUTCOME_SUCCEEDED, NULL), 0);
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "succeeded");
    ck_assert_int_gt(job.finished_at, 0);
    ck_assert_int_eq(job.final_checkpoint, 2);
    ck_assert_int_eq(job.attempts, 1);
    job_row_free(&job);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM jobs WHERE id = ?1 AND lease_owner IS NULL "
                             "AND lease_expires_ms IS NULL AND worker_pid IS NULL",
                             id),
                     1);
    ck_assert_int_eq(events(f.db, id, "succeeded"), 1);
    /* Ended: the worker's lease is gone. */
    ck_assert_int_eq(fence(f.db, id, "w1", 1000, NULL), 0);
    fixture_close(&f);
}
END_TEST

START_TEST(test_finish_failed_and_requeued) {
    fixture f;
    fixture_open(&f);
    int64_t failed = new_job(f.db, 3);
    claim(f.db, failed, "w", 60000);
    ck_assert_int_eq(jobs_db_finish(f.db, failed, "w", JOB_OUTCOME_FAILED, "loss is NaN"), 0);
    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, failed, &job), 1);
    ck_assert_str_eq(job.status, "failed");
    ck_assert_str_eq(job.error, "loss is NaN");
    ck_assert_int_gt(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM job_events WHERE job_id = ?1 AND level = "
                             "'error' AND message = 'job failed: loss is NaN'",
                             failed),
                     1);

    /* Stopped by a signal: queued again, the attempt not counted. */
    int64_t stopped = new_job(f.db, 3);
    claim(f.db, stopped, "w", 60000);
    ck_assert_int_eq(jobs_db_finish(f.db, stopped, "w", JOB_OUTCOME_REQUEUED, NULL), 0);
    ck_assert_int_eq(jobs_db_get(f.db, stopped, &job), 1);
    ck_assert_str_eq(job.status, "queued");
    ck_assert_int_eq(job.attempts, 0);
    ck_assert_int_eq(job.finished_at, 0);
    ck_assert_int_gt(job.started_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(events(f.db, stopped, "queued"), 1);
    /* and claimable again */
    claim(f.db, stopped, "w2", 60000);
    ck_assert_int_eq(sql_int(f.db, "SELECT attempts FROM jobs WHERE id = ?1", stopped), 1);
    fixture_close(&f);
}
END_TEST

/* ---- fencing ---------------------------------------------------------------- */

START_TEST(test_fence_stale_owner_cannot_write) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 3);
    claim(f.db, id, "old", 60000);
    bool cancel = true;
    ck_assert_int_eq(fence(f.db, id, "old", 120000, &cancel), 1);
    ck_assert(!cancel);
    int64_t lease = sql_int(f.db, "SELECT lease_expires_ms FROM jobs WHERE id = ?1", id);
    ck_assert_int_ge(lease, db_now_ms() + 100000);
    /* Another name: no row, nothing renewed. */
    ck_assert_int_eq(fence(f.db, id, "someone-else", 999999999, NULL), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT lease_expires_ms FROM jobs WHERE id = ?1", id), lease);

    /* The old worker stops renewing; its lease runs out; the scheduler
     * requeues the job and a new worker claims it. */
    ck_assert_int_eq(fence(f.db, id, "old", -1000, NULL), 1);
    ck_assert_int_eq(
        jobs_db_lost_worker(f.db, id, JOB_LOST_LEASE_EXPIRED, 0, NULL, "lease expired"), 1);
    claim(f.db, id, "new", 60000);
    /* The old worker wakes up: every write of it is refused, and changes
     * nothing. */
    ck_assert_int_eq(fence(f.db, id, "old", 60000, NULL), 0);
    ck_assert_int_eq(jobs_db_mark_running(f.db, id, "old", 60000, "stale", NULL), -1);
    expect_status(f.db, id, "validating_files");
    ck_assert_int_eq(jobs_db_finish(f.db, id, "old", JOB_OUTCOME_SUCCEEDED, NULL), -1);
    ck_assert_int_eq(jobs_db_finish(f.db, id, "old", JOB_OUTCOME_FAILED, "stale"), -1);
    expect_status(f.db, id, "validating_files");
    ck_assert_int_eq(events(f.db, id, "succeeded") + events(f.db, id, "failed"), 0);
    ck_assert_int_eq(events(f.db, id, "running"), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT attempts FROM jobs WHERE id = ?1", id), 2);
    /* The new owner writes as usual. */
    ck_assert_int_eq(jobs_db_mark_running(f.db, id, "new", 60000, "ok", NULL), 0);
    ck_assert_int_eq(jobs_db_finish(f.db, id, "new", JOB_OUTCOME_SUCCEEDED, NULL), 0);
    expect_status(f.db, id, "succeeded");
    fixture_close(&f);
}
END_TEST

/* ---- cancelling ------------------------------------------------------------------ */

START_TEST(test_cancel_queued_and_running) {
    fixture f;
    fixture_open(&f);
    char status[JOBS_DB_STATUS_BYTES];
    int64_t queued = new_job(f.db, 1);
    ck_assert_int_eq(jobs_db_request_cancel(f.db, queued, status), JOB_CANCEL_DONE);
    ck_assert_str_eq(status, "queued");
    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, queued, &job), 1);
    ck_assert_str_eq(job.status, "cancelled");
    ck_assert(job.cancel_requested);
    ck_assert_int_gt(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(jobs_db_request_cancel(f.db, queued, status), JOB_CANCEL_ALREADY);
    ck_assert_int_eq(events(f.db, queued, "cancelled"), 1);
    char err[256];
    ck_assert_int_eq(jobs_db_claim(f.db, queued, "w", 60000, 1, &job, err, sizeof err), 0);

    /* Running: marked; the worker learns it from its next fence, stops and
     * records the cancel. Asking twice writes one event. */
    int64_t running = new_job(f.db, 1);
    claim(f.db, running, "w", 60000);
    ck_assert_int_eq(jobs_db_mark_running(f.db, running, "w", 60000, "ok", NULL), 0);
    ck_assert_int_eq(jobs_db_request_cancel(f.db, running, status), JOB_CANCEL_ASKED);
    ck_assert_str_eq(status, "running");
    ck_assert_int_eq(jobs_db_request_cancel(f.db, running, status), JOB_CANCEL_ASKED);
    ck_assert_int_eq(events(f.db, running, "cancel_requested"), 1);
    expect_status(f.db, running, "running");
    bool cancel = false;
    ck_assert_int_eq(fence(f.db, running, "w", 60000, &cancel), 1);
    ck_assert(cancel);
    ck_assert_int_eq(jobs_db_finish(f.db, running, "w", JOB_OUTCOME_CANCELLED, NULL), 0);
    expect_status(f.db, running, "cancelled");

    /* Ended jobs cannot be cancelled; unknown ones are not found. */
    int64_t done = new_job(f.db, 1);
    claim(f.db, done, "w", 60000);
    ck_assert_int_eq(jobs_db_finish(f.db, done, "w", JOB_OUTCOME_SUCCEEDED, NULL), 0);
    ck_assert_int_eq(jobs_db_request_cancel(f.db, done, status), JOB_CANCEL_TOO_LATE);
    ck_assert_str_eq(status, "succeeded");
    expect_status(f.db, done, "succeeded");
    ck_assert_int_eq(jobs_db_request_cancel(f.db, 999, status), JOB_CANCEL_NO_JOB);
    fixture_close(&f);
}
END_TEST

/* ---- the scheduler's paths -------------------------------------------------------- */

START_TEST(test_lost_worker_requeue_then_fail) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 2);
    claim(f.db, id, "w1", 60000); /* worker_pid 4242 */
    /* Another pid, or a live lease: not this worker's loss. */
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_EXITED, 1111, NULL, "exit 9"), 0);
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_LEASE_EXPIRED, 0, NULL, "expired"), 0);
    expect_status(f.db, id, "validating_files");

    /* Attempt 1 of 2 died: queued again. */
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_EXITED, 4242, NULL, "killed by 9"), 1);
    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "queued");
    ck_assert_int_eq(job.attempts, 1);
    ck_assert_str_eq(job.error, "killed by 9");
    ck_assert_int_eq(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM job_events WHERE job_id = ?1 AND code = "
                             "'requeued' AND level = 'warn' AND message = 'attempt 1 of 2 lost "
                             "its worker: killed by 9; queued again'",
                             id),
                     1);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM jobs WHERE id = ?1 AND lease_owner IS NULL "
                             "AND worker_pid IS NULL",
                             id),
                     1);
    /* Attempt 2 of 2: its lease runs out; the attempts are used up. */
    claim(f.db, id, "w2", -1);
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_LEASE_EXPIRED, 0, NULL, "expired"), 1);
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "failed");
    ck_assert_int_eq(job.attempts, 2);
    ck_assert_int_gt(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(events(f.db, id, "failed"), 1);
    /* Once ended, nothing more happens to it. */
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_LEASE_EXPIRED, 0, NULL, "expired"), 0);

    /* A pending cancel wins over a requeue. */
    int64_t cancelled = new_job(f.db, 5);
    claim(f.db, cancelled, "w", 60000);
    char status[JOBS_DB_STATUS_BYTES];
    ck_assert_int_eq(jobs_db_request_cancel(f.db, cancelled, status), JOB_CANCEL_ASKED);
    ck_assert_int_eq(jobs_db_lost_worker(f.db, cancelled, JOB_LOST_EXITED, 4242, NULL, "gone"), 1);
    expect_status(f.db, cancelled, "cancelled");
    fixture_close(&f);
}
END_TEST

/* A worker that could not write (DB_JOB_EXIT_STORAGE): its job goes back
 * to the queue with the attempt given back, even when it was the last one
 * (a job of max_attempts 1 would otherwise fail), whether rlhfd records it
 * (JOB_LOST_STORAGE) or the worker still could (JOB_OUTCOME_STORAGE); a
 * pending cancel still wins. */
START_TEST(test_storage_failure_requeues_without_attempt) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 1);
    claim(f.db, id, "w1", 60000); /* attempt 1 of 1, worker_pid 4242 */
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_STORAGE, 1111, NULL, "disk full"), 0);
    ck_assert_int_eq(jobs_db_lost_worker(f.db, id, JOB_LOST_STORAGE, 4242, NULL, "disk full"), 1);
    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "queued");
    ck_assert_int_eq(job.attempts, 0);
    ck_assert_int_eq(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(sql_int(f.db,
                             "SELECT count(*) FROM job_events WHERE job_id = ?1 AND code = "
                             "'requeued' AND message = 'attempt 1 of 1 could not write: disk "
                             "full; queued again without using up the attempt'",
                             id),
                     1);

    /* The worker recorded it itself. */
    claim(f.db, id, "w2", 60000);
    ck_assert_int_eq(jobs_db_finish(f.db, id, "w2", JOB_OUTCOME_STORAGE, "checkpoint: disk full"),
                     0);
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "queued");
    ck_assert_int_eq(job.attempts, 0);
    job_row_free(&job);
    ck_assert_int_eq(events(f.db, id, "requeued"), 2);

    /* Then it runs to the end on its one attempt. */
    claim(f.db, id, "w3", 60000);
    ck_assert_int_eq(jobs_db_finish(f.db, id, "w3", JOB_OUTCOME_SUCCEEDED, NULL), 0);
    ck_assert_int_eq(sql_int(f.db, "SELECT attempts FROM jobs WHERE id = ?1", id), 1);

    int64_t cancelled = new_job(f.db, 3);
    claim(f.db, cancelled, "w", 60000);
    char status[JOBS_DB_STATUS_BYTES];
    ck_assert_int_eq(jobs_db_request_cancel(f.db, cancelled, status), JOB_CANCEL_ASKED);
    ck_assert_int_eq(
        jobs_db_lost_worker(f.db, cancelled, JOB_LOST_STORAGE, 4242, NULL, "disk full"), 1);
    expect_status(f.db, cancelled, "cancelled");
    fixture_close(&f);
}
END_TEST

/* An orphan's job is lost only while its lease owner is still the one
 * found dead: a job claimed again meanwhile is left alone. */
START_TEST(test_orphan_lost_by_owner) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 3);
    claim(f.db, id, "pid:1:start:5:ab", 60000);
    int64_t ids[4], pids[4];
    char owners[4][JOBS_DB_OWNER_BYTES];
    ck_assert_int_eq(jobs_db_claimed(f.db, ids, pids, owners, 4), 1);
    ck_assert_int_eq(ids[0], id);
    ck_assert_int_eq(pids[0], 4242);
    ck_assert_str_eq(owners[0], "pid:1:start:5:ab");
    ck_assert_int_eq(
        jobs_db_lost_worker(f.db, id, JOB_LOST_ORPHAN, 4242, "pid:1:start:5:cd", "gone"), 0);
    ck_assert_int_eq(
        jobs_db_lost_worker(f.db, id, JOB_LOST_ORPHAN, 4242, "pid:1:start:5:ab", "gone"), 1);
    ck_assert_int_eq(sql_int(f.db, "SELECT attempts FROM jobs WHERE id = ?1", id), 1);
    expect_status(f.db, id, "queued");
    ck_assert_int_eq(jobs_db_claimed(f.db, ids, pids, owners, 4), 0);
    fixture_close(&f);
}
END_TEST

/* Owner names tell a live process from a dead one and from a reused pid. */
START_TEST(test_owner_alive) {
    char me[JOBS_DB_OWNER_BYTES];
    jobs_db_owner_name(me);
    ck_assert_int_eq(jobs_db_owner_alive(me), 1);
    long pid;
    unsigned long long start;
    ck_assert_int_eq(sscanf(me, "pid:%ld:start:%llu:", &pid, &start), 2);
    ck_assert_int_eq(pid, (long)getpid());
    char reused[JOBS_DB_OWNER_BYTES];
    snprintf(reused, sizeof reused, "pid:%ld:start:%llu:00", pid, start + 1);
    ck_assert_int_eq(jobs_db_owner_alive(reused), 0);
    ck_assert_int_eq(jobs_db_owner_alive("pid:1:gone"), -1);

    /* A child names itself, exits and is reaped: gone. Before it is
     * reaped it is a zombie, which is gone as well. */
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t child = fork();
    if (child == 0) {
        char name[JOBS_DB_OWNER_BYTES];
        jobs_db_owner_name(name);
        _exit(write(fds[1], name, sizeof name) == (ssize_t)sizeof name ? 0 : 1);
    }
    char name[JOBS_DB_OWNER_BYTES];
    ck_assert_int_eq(read(fds[0], name, sizeof name), (ssize_t)sizeof name);
    close(fds[0]);
    close(fds[1]);
    siginfo_t info;
    ck_assert_int_eq(waitid(P_PID, (id_t)child, &info, WEXITED | WNOWAIT), 0);
    ck_assert_int_eq(jobs_db_owner_alive(name), 0); /* a zombie */
    int status;
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_int_eq(jobs_db_owner_alive(name), 0);
}
END_TEST

START_TEST(test_start_failed_counts_attempts) {
    fixture f;
    fixture_open(&f);
    int64_t id = new_job(f.db, 2);
    ck_assert_int_eq(jobs_db_start_failed(f.db, id, "no rlhf-train"), 1);
    job_row job;
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "queued");
    ck_assert_int_eq(job.attempts, 1);
    ck_assert_str_eq(job.error, "no rlhf-train");
    job_row_free(&job);
    ck_assert_int_eq(jobs_db_start_failed(f.db, id, "no rlhf-train"), 1);
    ck_assert_int_eq(jobs_db_get(f.db, id, &job), 1);
    ck_assert_str_eq(job.status, "failed");
    ck_assert_int_eq(job.attempts, 2);
    ck_assert_int_gt(job.finished_at, 0);
    job_row_free(&job);
    ck_assert_int_eq(events(f.db, id, "start_failed"), 2);
    /* Only a queued job: a failed (or running) one is left alone. */
    ck_assert_int_eq(jobs_db_start_failed(f.db, id, "again"), 0);
    ck_assert_int_eq(events(f.db, id, "start_failed"), 2);
    fixture_close(&f);
}
END_TEST

/* What the scheduler and GET /v1/jobs read: the queue, expired leases,
 * pending cancels, a filtered page. */
START_TEST(test_queue_reads) {
    fixture f;
    fixture_open(&f);
    const int64_t a = new_job(f.db, 1), b = new_job(f.db, 1), c = new_job(f.db, 1);
    const int64_t d = new_job(f.db, 1);
    char status[JOBS_DB_STATUS_BYTES];
    ck_assert_int_eq(jobs_db_request_cancel(f.db, b, status), JOB_CANCEL_DONE);
    claim(f.db, c, "live", 60000);
    claim(f.db, d, "dead", -1);
    int64_t ids[8], pids[8];
    ck_assert_int_eq(jobs_db_queued(f.db, ids, 8), 1);
    ck_assert_int_eq(ids[0], a);
    ck_assert_int_eq(jobs_db_expired(f.db, db_now_ms(), ids, pids, 8), 1);
    ck_assert_int_eq(ids[0], d);
    ck_assert_int_eq(pids[0], 4242);
    ck_assert_int_eq(jobs_db_cancel_pending(f.db, c), 0);
    ck_assert_int_eq(jobs_db_request_cancel(f.db, c, status), JOB_CANCEL_ASKED);
    ck_assert_int_eq(jobs_db_cancel_pending(f.db, c), 1);
    ck_assert_int_eq(jobs_db_cancel_pending(f.db, b), 0); /* cancelled, not claimed */
    /* A page: newest first, below after, filtered by status. */
    sqlite3_stmt *st = jobs_db_list(f.db, d, "validating_files", NULL, 10);
    ck_assert_ptr_nonnull(st);
    job_row job;
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_int_eq(job_row_read(st, &job), 0);
    ck_assert_int_eq(job.id, c);
    ck_assert(job.cancel_requested);
    job_row_free(&job);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    st = jobs_db_list(f.db, 0, NULL, "sft", 2);
    int n = 0;
    while (sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    ck_assert_int_eq(n, 2);
    ck_assert_int_eq(ids[0], d);
    ck_assert_int_eq(ids[1], c);
    fixture_close(&f);
}
END_TEST

Suite *jobs_db_suite(void) {
    Suite *s = suite_create("jobs_db");
    TCase *tc = tcase_create("transitions");
    tcase_add_test(tc, test_insert_carries_refs_and_ranks);
    tcase_add_test(tc, test_claim_run_finish);
    tcase_add_test(tc, test_finish_failed_and_requeued);
    tcase_add_test(tc, test_fence_stale_owner_cannot_write);
    tcase_add_test(tc, test_cancel_queued_and_running);
    tcase_add_test(tc, test_lost_worker_requeue_then_fail);
    tcase_add_test(tc, test_storage_failure_requeues_without_attempt);
    tcase_add_test(tc, test_orphan_lost_by_owner);
    tcase_add_test(tc, test_owner_alive);
    tcase_add_test(tc, test_start_failed_counts_attempts);
    tcase_add_test(tc, test_queue_reads);
    suite_add_tcase(s, tc);
    return s;
}
