/* server/writer: the group-commit writer and its WAL checkpointer. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "suites.h"
#include "test_server_util.h"
#include "writer.h"

typedef struct blob_write {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int done, committed;
} blob_write;

static int insert_blob(sqlite3 *db, void *ctx) {
    (void)ctx;
    return sqlite3_exec(db, "INSERT INTO t VALUES (randomblob(8000))", NULL, NULL, NULL) ==
           SQLITE_OK;
}

static void blob_written(void *ctx, db_failure failed) {
    const int committed = failed == DB_FAILURE_NONE;
    blob_write *b = ctx;
    pthread_mutex_lock(&b->mutex);
    b->done++, b->committed += committed;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mutex);
}

/* The group-commit writer's WAL is checkpointed by its checkpointer thread
 * (the writer connection never does it inside a COMMIT), and no write is
 * lost on the way. */
START_TEST(test_writer_checkpoints_wal) {
    test_daemon d;
    daemon_init(&d);
    sqlite3_close(db_with_table_t(&d));
    char err[256];
    writer *w = writer_start(d.db, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    /* 400 commits of three pages each (8,000 bytes: a leaf and two
     * overflow pages): the WAL passes 1,000 frames. */
    enum { N = 400 };
    blob_write b = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(writer_submit(w, insert_blob, blob_written, &b), 0);
        pthread_mutex_lock(&b.mutex); /* one at a time: one commit each */
        while (b.done <= i)
            pthread_cond_wait(&b.cond, &b.mutex);
        pthread_mutex_unlock(&b.mutex);
    }
    writer_stop(w); /* joins the checkpointer after the one it was asked for */
    long long batches, writes, checkpoints;
    writer_stats(w, &batches, &writes, &checkpoints);
    writer_free(w);
    ck_assert_int_eq(b.committed, N);
    ck_assert_int_eq(writes, N);
    ck_assert_int_ge(checkpoints, 1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM t WHERE length(x) = 8000", 0), N);
    daemon_cleanup(&d);
}
END_TEST

Suite *writer_suite(void) {
    Suite *s = suite_create("writer");
    TCase *tc = tcase_create("writer");
    tcase_add_test(tc, test_writer_checkpoints_wal);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
