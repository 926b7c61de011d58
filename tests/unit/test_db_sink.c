/* train/db_sink: how a worker's metrics, events and checkpoints reach the
 * database (coalesced metrics, committed in order, nothing written without
 * the lease). */
#include <math.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "db_sink.h"
#include "suites.h"
#include "test_server_util.h"

/* The worker's metrics wait (flush_ms) and are committed together: by a
 * flush, or before an event or checkpoint of the training thread, in the
 * order training reported them; a flush without the lease writes nothing
 * and keeps them. */
START_TEST(test_db_sink_coalesces_metrics) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db, *other;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    ck_assert_int_eq(db_open(d.db, &other, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at, lease_owner, lease_expires_ms) VALUES (7, "
                             "'ppo-control', 'running', '{}', 1, 0, 'me', 0)",
                             err, sizeof err),
                     SQLITE_OK);
    atomic_bool cancel, lost;
    atomic_init(&cancel, false);
    atomic_init(&lost, false);
    db_sink ds = {.db = db,
                  .job_id = 7,
                  .lease_owner = "me",
                  .lease_ms = 60000,
                  .cancel_requested = &cancel,
                  .lease_lost = &lost,
                  .flush_ms = 60000};
    train_sink sink = db_sink_make(&ds);
    const sink_metric m1[] = {{"loss", 0.5}, {"reward", NAN}};
    const sink_metric m2[] = {{"loss", 0.25}, {"reward", 2.0}};
    ck_assert_int_eq(sink_metrics(&sink, 1, m1, 2), 0);
    ck_assert_int_eq(sink_metrics(&sink, 2, m2, 2), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 0);
    /* Not stale yet: a stale-only flush (the heartbeat's) leaves them. */
    ck_assert_int_eq(db_sink_flush(&ds, other, true), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 0);
    /* An event commits them first, in order. */
    ck_assert_int_eq(sink_event(&sink, SINK_LEVEL_INFO, "note", "after two updates", NULL, 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 4);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = 'reward' "
                            "AND step = 1 AND value IS NULL",
                            7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = 'loss' "
                            "AND step = 2 AND value = 0.25",
                            7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT (SELECT group_concat(code || ':' || message, ',') FROM (SELECT "
                            "code, message FROM job_events WHERE job_id = ?1 ORDER BY id)) = "
                            "'metrics:step 1,metrics:step 2,note:after two updates'",
                            7),
                     1);
    /* A checkpoint too, with the metrics of its own step. */
    const sink_metric m3[] = {{"loss", 0.125}};
    ck_assert_int_eq(sink_metrics(&sink, 3, m3, 1), 0);
    ck_assert_int_eq(sink_checkpoint(&sink, 3, "bytes", 5), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 3", 7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM checkpoints WHERE job_id = ?1 AND step = 3 AND "
                            "metrics = '{\"loss\":0.125}'",
                            7),
                     1);
    /* The heartbeat's connection flushes whatever waits. */
    ck_assert_int_eq(sink_metrics(&sink, 4, m3, 1), 0);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 4", 7),
                     1);
    /* Without the lease nothing is written and the update keeps waiting. */
    ck_assert_int_eq(sink_metrics(&sink, 5, m3, 1), 0);
    ck_assert_int_eq(
        db_exec(other, "UPDATE jobs SET lease_owner = 'thief' WHERE id = 7", err, sizeof err),
        SQLITE_OK);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), -1);
    ck_assert(atomic_load(&lost));
    ck_assert_int_eq(
        db_exec(other, "UPDATE jobs SET lease_owner = 'me' WHERE id = 7", err, sizeof err),
        SQLITE_OK);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 5", 7),
                     1);
    /* flush_ms 0: every update commits at once. */
    ds.flush_ms = 0;
    ck_assert_int_eq(sink_metrics(&sink, 6, m3, 1), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 6", 7),
                     1);
    db_sink_free(&ds);
    sqlite3_close(other);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *db_sink_suite(void) {
    Suite *s = suite_create("db_sink");
    TCase *tc = tcase_create("db_sink");
    tcase_add_test(tc, test_db_sink_coalesces_metrics);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
