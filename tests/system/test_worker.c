/* rlhf-train as rlhfd runs it (--db FILE --job ID), without a daemon: its
 * exit codes for a bad id, a missing job, a finished one and a configuration
 * the engine rejects; and lease fencing (only the lease owner writes). */
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_job.h"
#include "db_sink.h"
#include "jobs_db.h"
#include "suites.h"
#include "test_server_util.h"

/* The worker side without a daemon: exit codes and lease fencing. */
START_TEST(test_worker_claims_and_fences) {
    test_daemon d;
    daemon_init(&d);
    char train[4096];
    bin_path("rlhf-train", train, sizeof train);
    char out[64];
    char *usage[] = {train, "--db", d.db, "--job", "x", NULL};
    ck_assert_int_eq(run_capture(usage, out, sizeof out), DB_JOB_EXIT_USAGE);
    char *missing[] = {train, "--db", d.db, "--job", "42", NULL};
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_NOT_CLAIMED);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at) VALUES (42, 'ppo-control', 'queued', "
                             "'{\"total_steps\":1024}', 1, 0), (43, 'ppo-control', 'queued', "
                             "'{\"num_minibatches\":7}', 1, 0)",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_DONE);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = 42 AND status = "
                            "'succeeded' AND attempts = 1",
                            0),
                     1);
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_NOT_CLAIMED);
    /* A configuration the engine rejects fails the job with the engine's words. */
    char *bad[] = {train, "--db", d.db, "--job", "43", NULL};
    ck_assert_int_eq(run_capture(bad, out, sizeof out), DB_JOB_EXIT_FAILED);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = 43 AND status = 'failed' "
                            "AND error LIKE '%num_minibatches%'",
                            0),
                     1);
    /* Fencing: only the lease owner of a running job may write. */
    ck_assert_int_eq(db_exec(db,
                             "UPDATE jobs SET status = 'running', lease_owner = 'me', "
                             "lease_expires_ms = 0 WHERE id = 42",
                             err, sizeof err),
                     SQLITE_OK);
    bool cancel = true;
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(jobs_db_fence(db, 42, "someone-else", 1000, &cancel), 0);
    ck_assert_int_eq(jobs_db_fence(db, 42, "me", 1000, &cancel), 1);
    ck_assert(!cancel);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    ck_assert_int_gt(db_int(&d, "SELECT lease_expires_ms FROM jobs WHERE id = 42", 0), 0);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *worker_suite(void) {
    Suite *s = suite_create("worker");
    TCase *tc = tcase_create("worker");
    tcase_add_test(tc, test_worker_claims_and_fences);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
