/* train/db_sink: how a worker's metrics, events and checkpoints reach the
 * database (coalesced metrics, committed in order, nothing written without
 * the lease; checkpoints streamed into the artifact store, the same file as
 * in memory, and nothing left by a failed one). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "artifact_store.h"
#include "db.h"
#include "db_sink.h"
#include "lm_policy.h"
#include "model.h"
#include "sha256.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

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

/* Job 7, running under lease 'me', in d's database (opened into *db). */
static db_sink running_job(test_daemon *d, sqlite3 **db, atomic_bool *cancel, atomic_bool *lost) {
    char err[256];
    daemon_init(d);
    ck_assert_int_eq(db_open(d->db, db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(*db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(*db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at, lease_owner, lease_expires_ms) VALUES (7, "
                             "'sft', 'running', '{}', 1, 0, 'me', 0)",
                             err, sizeof err),
                     SQLITE_OK);
    atomic_init(cancel, false);
    atomic_init(lost, false);
    return (db_sink){.db = *db,
                     .job_id = 7,
                     .lease_owner = "me",
                     .lease_ms = 60000,
                     .cancel_requested = cancel,
                     .lease_lost = lost};
}

/* running_job whose sink streams checkpoints into the daemon's artifact
 * store (data gets its directory, created). */
static db_sink running_job_with_store(test_daemon *d, sqlite3 **db, atomic_bool *cancel,
                                      atomic_bool *lost, char *data, size_t cap) {
    char err[512];
    db_sink ds = running_job(d, db, cancel, lost);
    artifact_store_default_dir(d->db, data, cap);
    ck_assert_msg(artifact_store_init(data, err, sizeof err) == 0, "%s", err);
    ds.data_dir = data;
    return ds;
}

/* A checkpoint streamed into the artifact store (a LoRA Qwen3's, as a
 * daemon job writes it) is the same file, bytes and digest, as the
 * in-memory serialisation of the same model: handed to the same sink as
 * bytes, and stored in the row by a sink without a data directory. */
START_TEST(test_db_sink_streams_checkpoints) {
    test_daemon d;
    sqlite3 *db;
    atomic_bool cancel, lost;
    char data[160], err[512], qwen[4200];
    db_sink ds = running_job_with_store(&d, &db, &cancel, &lost, data, sizeof data);
    train_sink sink = db_sink_make(&ds);
    ck_assert_ptr_nonnull(sink.checkpoint_stream);
    train_sink bytes_sink = sink;
    bytes_sink.checkpoint_stream = NULL;

    snprintf(qwen, sizeof qwen, "%s/tests/fixtures/llama/qwen3", test_repo_dir());
    const lm_lora_spec spec = {2, 4.0, "all", 7};
    model m;
    ck_assert_msg(lm_open_model(&m, qwen, false, LM_LORA_FRESH, &spec, 3, NULL, err, sizeof err) ==
                      0,
                  "%s", err);
    ck_assert_int_eq(model_sink_checkpoint(&sink, 1, &m, NULL, 0, NULL, 0), 0);
    ck_assert_int_eq(model_sink_checkpoint(&bytes_sink, 2, &m, NULL, 0, NULL, 0), 0);
    ds.data_dir = NULL;
    ck_assert_int_eq(model_sink_checkpoint(&sink, 3, &m, NULL, 0, NULL, 0), 0);
    ds.data_dir = data;
    model_free(&m);

    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1 AND path IS NOT NULL", 7),
        2);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(DISTINCT sha256) = 1 AND count(DISTINCT size_bytes) = 1 "
                            "FROM checkpoints WHERE job_id = ?1",
                            7),
                     1);
    ck_assert_int_eq(test_count_files(data, "objects"), 1);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT bytes, sha256, size_bytes FROM checkpoints "
                                        "WHERE job_id = 7 AND step = 3",
                                        -1, &st, NULL),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const size_t n = (size_t)sqlite3_column_bytes(st, 0);
    const char *sha = (const char *)sqlite3_column_text(st, 1);
    char want[65];
    sha256_hex(sqlite3_column_blob(st, 0), n, want);
    ck_assert_str_eq(sha, want);
    ck_assert_int_eq(sqlite3_column_int64(st, 2), (int64_t)n);
    const int fd = artifact_store_open(data, sha, (int64_t)n, err, sizeof err);
    ck_assert_msg(fd >= 0, "%s", err);
    char *file = malloc(n);
    ck_assert_int_eq(pread(fd, file, n, 0), (ssize_t)n);
    ck_assert_int_eq(memcmp(file, sqlite3_column_blob(st, 0), n), 0);
    free(file);
    close(fd);
    sqlite3_finalize(st);
    db_sink_free(&ds);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* A checkpoint writer for the failure tests: `n` bytes, then fails if
 * asked to. */
typedef struct filler {
    size_t n;
    bool fail;
} filler;

static int write_filler(void *wctx, FILE *out, size_t *n_bytes) {
    const filler *fl = wctx;
    for (size_t i = 0; i < fl->n; i++)
        if (fputc('w', out) == EOF)
            return -1;
    *n_bytes = fl->n;
    return fl->fail ? -1 : 0;
}

/* A streamed checkpoint that fails leaves no row and no file: the writer's
 * own failure (not the storage's), and a full disk (a 1 MiB tmpfs over the
 * store's tmp/, root only), which sets storage_failed. */
START_TEST(test_db_sink_failed_stream_leaves_nothing) {
    test_daemon d;
    sqlite3 *db;
    atomic_bool cancel, lost;
    char data[160], tmp[200];
    db_sink ds = running_job_with_store(&d, &db, &cancel, &lost, data, sizeof data);
    train_sink sink = db_sink_make(&ds);
    filler half = {2 * 1048576 + 3, true};
    ck_assert_int_eq(sink.checkpoint_stream(sink.ctx, 1, write_filler, &half), -1);
    ck_assert(!ds.storage_failed);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", 7), 0);
    ck_assert_int_eq(test_count_files(data, "tmp"), 0);
    ck_assert_int_eq(test_count_files(data, "objects"), 0);

    snprintf(tmp, sizeof tmp, "%s/tmp", data);
    if (unshare(CLONE_NEWNS) != 0 || mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) != 0 ||
        mount("tmpfs", tmp, "tmpfs", 0, "size=1m") != 0) {
        fprintf(stderr, "SKIPPED the full-disk half: cannot mount a tmpfs: %s\n", strerror(errno));
    } else {
        filler big = {3 * 1048576, false};
        ck_assert_int_eq(sink.checkpoint_stream(sink.ctx, 2, write_filler, &big), -1);
        ck_assert(ds.storage_failed);
        ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", 7), 0);
        ck_assert_int_eq(test_count_files(data, "tmp"), 0);
        ck_assert_int_eq(test_count_files(data, "objects"), 0);
        ck_assert_int_eq(umount2(tmp, MNT_DETACH), 0);
    }
    db_sink_free(&ds);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *db_sink_suite(void) {
    Suite *s = suite_create("db_sink");
    TCase *tc = tcase_create("db_sink");
    tcase_add_test(tc, test_db_sink_coalesces_metrics);
    tcase_add_test(tc, test_db_sink_streams_checkpoints);
    tcase_add_test(tc, test_db_sink_failed_stream_leaves_nothing);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
