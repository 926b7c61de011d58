/* common/db: the migrations (applied once, a newer database refused, schema
 * 007's rank counts backfilled and kept by triggers), waiting out another
 * connection's write lock, db_utf8_clean, and what a failure is called
 * (db_failure).
 */
#include <errno.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

START_TEST(test_schema_migrations) {
    test_daemon d;
    daemon_init(&d); /* rlhfd --create-token migrated the file */
    ck_assert_int_eq(db_int(&d, "PRAGMA user_version", 0), db_schema_version());
    ck_assert_int_ge(db_schema_version(), 1);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    /* Applying again changes nothing; WAL and foreign keys are on. */
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    ck_assert_int_eq(db_int(&d, "PRAGMA user_version", 0), db_schema_version());
    ck_assert_str_eq(sqlite3_db_filename(db, "main"), d.db);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM api_tokens", 0), 1);
    ck_assert_int_ne(db_exec(db,
                             "INSERT INTO job_events (job_id, created_at, level, type, code, "
                             "message) VALUES (12345, 0, 'info', 'message', 'x', 'y')",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "FOREIGN KEY") != NULL, "%s", err);
    /* A database from a newer program is refused, not downgraded. */
    ck_assert_int_eq(db_exec(db, "PRAGMA user_version=99", err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "99") != NULL, "%s", err);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* A database in dir (a mkdtemp template) at the schema before the
 * migration whose name contains name: the connection, and *m the number of
 * migrations applied. */
static sqlite3 *db_before_migration(char *dir, const char *name, int *m) {
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64], err[256];
    snprintf(path, sizeof path, "%s/old.db", dir);
    sqlite3 *db;
    ck_assert_int_eq(db_open(path, &db, err, sizeof err), 0);
    *m = 0;
    while (db_migrations[*m].name && strstr(db_migrations[*m].name, name) == NULL)
        ck_assert_int_eq(db_exec(db, db_migrations[(*m)++].sql, err, sizeof err), SQLITE_OK);
    ck_assert_ptr_nonnull(db_migrations[*m].name);
    return db;
}

/* Schema 007's rank counts: backfilled from the rankings a database
 * already had, then kept by triggers (insert, skip, delete, update). */
START_TEST(test_rank_count_migration) {
    char dir[] = "/tmp/rlhfd-rankcount-XXXXXX", err[256];
    int m;
    sqlite3 *db = db_before_migration(dir, "comparison_rank_counts", &m);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "PRAGMA user_version=%d; INSERT INTO api_tokens VALUES (1, 'a', 'annotator', "
             "'%064d', 0, NULL), (2, 'b', 'annotator', '%064d', 0, NULL); INSERT INTO projects "
             "VALUES (1, 'p', 2, 3, 0); INSERT INTO comparisons VALUES (1, 1, 'x', 0), (2, 1, "
             "'y', 0), (3, 1, 'z', 0); INSERT INTO rankings (comparison_id, token_id, skipped, "
             "created_at) VALUES (1, 1, 0, 0), (1, 2, 0, 0), (2, 1, 1, 0), (2, 2, 0, 0)",
             m, 1, 2);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    sqlite3_stmt *st;
    const char *counts = "SELECT group_concat(n_ranked, ',') FROM (SELECT n_ranked FROM "
                         "comparisons ORDER BY id)";
    ck_assert_int_eq(sqlite3_prepare_v2(db, counts, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "2,1,0"); /* a skip is no rank */
    sqlite3_reset(st);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO rankings (comparison_id, token_id, skipped, "
                             "created_at) VALUES (3, 1, 0, 0), (3, 2, 1, 0); UPDATE rankings "
                             "SET skipped = 0 WHERE comparison_id = 2 AND token_id = 1; DELETE "
                             "FROM rankings WHERE comparison_id = 1 AND token_id = 2",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "1,2,1");
    sqlite3_finalize(st);
    sqlite3_close(db);
    snprintf(sql, sizeof sql, "rm -rf %s", dir);
    ck_assert_int_eq(system(sql), 0);
}
END_TEST

/* The value of a one-value query on db, as text ("" for NULL). */
static void expect_text(sqlite3 *db, const char *sql, const char *want) {
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    const char *got = (const char *)sqlite3_column_text(st, 0);
    ck_assert_msg(strcmp(got ? got : "", want) == 0, "%s: got '%s', want '%s'", sql, got, want);
    sqlite3_finalize(st);
}

/* Schema 010 moves dataset_rows from WITHOUT ROWID to a rowid table: every
 * row and column survives, (dataset_id, line) stays unique, a long row no
 * longer spills into overflow pages, and deleting a dataset still deletes
 * its rows. */
START_TEST(test_dataset_rows_migration) {
    char dir[] = "/tmp/rlhfd-dsrows-XXXXXX", err[256], sql[2048];
    int m;
    sqlite3 *db = db_before_migration(dir, "dataset_rows_rowid", &m);
    char long_text[1201];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    snprintf(sql, sizeof sql,
             "PRAGMA user_version=%d; INSERT INTO api_tokens VALUES (1, 'a', 'admin', '%064d', "
             "0, NULL); INSERT INTO datasets (id, name, format, n_rows, created_at, created_by) "
             "VALUES (1, 's', 'sft', 2, 0, 1), (2, 'p', 'preference', 2, 0, 1); INSERT INTO "
             "dataset_rows (dataset_id, line, prompt, response, chosen, rejected, "
             "prompt_messages, responses, ranks, margin) VALUES (1, 2, '', '%s', NULL, NULL, "
             "NULL, NULL, NULL, NULL), (1, 1, 'p', 'r', NULL, NULL, NULL, NULL, NULL, NULL), "
             "(2, 1, 'q', NULL, 'c', 'd', '[{\"role\":\"user\",\"content\":\"q\"}]', NULL, "
             "NULL, 0.5), (2, 3, 'q', NULL, NULL, NULL, NULL, '[\"a\",\"b\",\"c\"]', "
             "'[1,0,1]', NULL)",
             m, 1, long_text);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    expect_text(db,
                "SELECT group_concat(dataset_id || ':' || line || ':' || prompt || ':' || "
                "ifnull(length(response), '-') || ':' || ifnull(chosen, '-') || ':' || "
                "ifnull(rejected, '-') || ':' || ifnull(prompt_messages, '-') || ':' || "
                "ifnull(responses, '-') || ':' || ifnull(ranks, '-') || ':' || ifnull(margin, "
                "'-'), ' | ') FROM (SELECT * FROM dataset_rows ORDER BY dataset_id, line)",
                "1:1:p:1:-:-:-:-:-:- | 1:2::1200:-:-:-:-:-:- | "
                "2:1:q:-:c:d:[{\"role\":\"user\",\"content\":\"q\"}]:-:-:0.5 | "
                "2:3:q:-:-:-:-:[\"a\",\"b\",\"c\"]:[1,0,1]:-");
    expect_text(db,
                "SELECT instr(sql, 'WITHOUT ROWID') FROM sqlite_schema WHERE name = "
                "'dataset_rows'",
                "0");
    ck_assert_int_ne(db_exec(db,
                             "INSERT INTO dataset_rows (dataset_id, line, prompt) VALUES (1, 1, "
                             "'again')",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "UNIQUE") != NULL, "%s", err);
    ck_assert_int_ne(db_exec(db,
                             "INSERT INTO dataset_rows (dataset_id, line, prompt, responses, "
                             "ranks) VALUES (2, 9, 'q', '[\"a\"]', '[0]')",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "CHECK") != NULL, "%s", err);
    /* The 1.2 KB row sits in its leaf page: no overflow page (dbstat). */
    expect_text(db, "SELECT sum(pagetype = 'overflow') FROM dbstat WHERE name = 'dataset_rows'",
                "0");
    ck_assert_int_eq(db_exec(db, "DELETE FROM datasets WHERE id = 1", err, sizeof err), SQLITE_OK);
    expect_text(db, "SELECT group_concat(dataset_id) FROM dataset_rows", "2,2");
    sqlite3_close(db);
    snprintf(sql, sizeof sql, "rm -rf %s", dir);
    ck_assert_int_eq(system(sql), 0);
}
END_TEST

typedef struct lock_holder {
    const char *path;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool locked;
} lock_holder;

static void *hold_write_lock(void *arg) {
    lock_holder *h = arg;
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(h->path, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (1)", err, sizeof err), SQLITE_OK);
    pthread_mutex_lock(&h->mutex);
    h->locked = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->mutex);
    pause_ms(30); /* the lock is held this long: what the other connection meets */
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    sqlite3_close(db);
    return NULL;
}

/* A connection that meets another's write lock waits for it (db_open's
 * busy handler) instead of failing with SQLITE_BUSY. */
/* Schema 017's comparison counts per project: backfilled, then kept by
 * triggers (insert, delete, a comparison moved to another project). */
START_TEST(test_project_comparison_count_migration) {
    char dir[] = "/tmp/rlhfd-compcount-XXXXXX", err[256];
    int m;
    sqlite3 *db = db_before_migration(dir, "project_comparison_counts", &m);
    char sql[512];
    snprintf(sql, sizeof sql,
             "PRAGMA user_version=%d; INSERT INTO projects (id, name, k, overlap, created_at) "
             "VALUES (1, 'p', 2, 1, 0), (2, 'q', 2, 1, 0), (3, 'r', 2, 1, 0); INSERT INTO "
             "comparisons (id, project_id, prompt, created_at) VALUES (1, 1, 'x', 0), (2, 1, "
             "'y', 0), (3, 2, 'z', 0)",
             m);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    const char *counts = "SELECT group_concat(n_comparisons, ',') FROM (SELECT n_comparisons "
                         "FROM projects ORDER BY id)";
    expect_text(db, counts, "2,1,0");
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO comparisons (project_id, prompt, created_at) VALUES "
                             "(3, 'a', 0), (3, 'b', 0), (2, 'c', 0); DELETE FROM comparisons "
                             "WHERE id = 1; UPDATE comparisons SET project_id = 3 WHERE id = 3",
                             err, sizeof err),
                     SQLITE_OK);
    expect_text(db, counts, "1,1,3");
    sqlite3_close(db);
    snprintf(sql, sizeof sql, "rm -rf %s", dir);
    ck_assert_int_eq(system(sql), 0);
}
END_TEST

/* Schema 020's loop reward ensembles: every round that had a reward job
 * before becomes its member 0, checkpoint included. */
START_TEST(test_loop_reward_members_migration) {
    char dir[] = "/tmp/rlhfd-members-XXXXXX", err[256];
    int m;
    sqlite3 *db = db_before_migration(dir, "loop_reward_members", &m);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "PRAGMA user_version=%d; PRAGMA foreign_keys=OFF; INSERT INTO loops (id, status, "
             "phase, round, config, project_id, prompts_dataset_id, sft_checkpoint_id, "
             "policy_checkpoint_id, created_at) VALUES (1, 'running', 'reward', 2, '{}', 1, 1, "
             "1, 1, 0); INSERT INTO loop_rounds (loop_id, round, selection, "
             "policy_checkpoint_id, samples, comparisons, deadline_ms, reward_job_id, "
             "reward_checkpoint_id, created_at) VALUES (1, 1, 'random', 1, 6, 4, 0, 7, 70, 0), "
             "(1, 2, 'uncertainty', 1, 6, 4, 0, 9, NULL, 0), (1, 3, 'uncertainty', 1, 6, 4, 0, "
             "NULL, NULL, 0)",
             m);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    expect_text(db,
                "SELECT group_concat(round || ':' || member || ':' || job_id || ':' || "
                "coalesce(checkpoint_id, '-'), ',') FROM (SELECT * FROM loop_reward_members "
                "ORDER BY round, member)",
                "1:0:7:70,2:0:9:-");
    sqlite3_close(db);
    snprintf(sql, sizeof sql, "rm -rf %s", dir);
    ck_assert_int_eq(system(sql), 0);
}
END_TEST

START_TEST(test_db_waits_for_write_lock) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db = db_with_table_t(&d);
    char err[256];
    lock_holder h = {
        .path = d.db, .mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, hold_write_lock, &h), 0);
    pthread_mutex_lock(&h.mutex);
    while (!h.locked)
        pthread_cond_wait(&h.cond, &h.mutex);
    pthread_mutex_unlock(&h.mutex);
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (2)", err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    pthread_join(thread, NULL);
    sqlite3_close(db);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM t", 0), 2);
    daemon_cleanup(&d);
}
END_TEST

/* Event messages quote model samples, which can be any bytes; the API
 * serves them as JSON, so they are stored as UTF-8. */
START_TEST(test_utf8_clean) {
    const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "plain"},
        {"a\xff"
         "b",
         3,
         "a\xEF\xBF\xBD"
         "b"},
        {"\xc3\xa9", 2, "\xc3\xa9"},                                 /* é */
        {"\xc3", 1, "\xEF\xBF\xBD"},                                 /* cut short */
        {"\xc0\xaf", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},                 /* U+1F600 */
        {"\xf4\x90\x80\x80", 4,
         "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
        {"x\0y", 3, "x\xEF\xBF\xBDy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = db_utf8_clean(cases[i].in, cases[i].n);
        ck_assert_str_eq(got, cases[i].want);
        free(got);
    }
}
END_TEST

/* Why a call failed, as rlhfd answers it and rlhf-train exits: a full
 * database (SQLITE_FULL, or an I/O error with ENOSPC) is "no space",
 * another I/O-level failure "I/O", the rest "other". */
START_TEST(test_failure_classify) {
    ck_assert_int_eq(db_failure_classify(SQLITE_OK, 0), DB_FAILURE_NONE);
    ck_assert_int_eq(db_failure_classify(SQLITE_DONE, 0), DB_FAILURE_NONE);
    ck_assert_int_eq(db_failure_classify(SQLITE_FULL, 0), DB_FAILURE_NO_SPACE);
    ck_assert_int_eq(db_failure_classify(SQLITE_IOERR_WRITE, ENOSPC), DB_FAILURE_NO_SPACE);
    ck_assert_int_eq(db_failure_classify(SQLITE_IOERR_FSYNC, EDQUOT), DB_FAILURE_NO_SPACE);
    ck_assert_int_eq(db_failure_classify(SQLITE_IOERR_FSYNC, EIO), DB_FAILURE_IO);
    ck_assert_int_eq(db_failure_classify(SQLITE_IOERR_WRITE, EIO), DB_FAILURE_IO);
    ck_assert_int_eq(db_failure_classify(SQLITE_READONLY, EROFS), DB_FAILURE_IO);
    ck_assert_int_eq(db_failure_classify(SQLITE_BUSY, 0), DB_FAILURE_IO);
    ck_assert_int_eq(db_failure_classify(SQLITE_IOERR_NOMEM, 0), DB_FAILURE_OTHER);
    ck_assert_int_eq(db_failure_classify(SQLITE_CONSTRAINT_UNIQUE, 0), DB_FAILURE_OTHER);
    ck_assert_int_eq(db_failure_classify(SQLITE_CORRUPT, 0), DB_FAILURE_OTHER);
    for (db_failure f = DB_FAILURE_NONE; f <= DB_FAILURE_OTHER; f++)
        ck_assert_int_eq(db_failure_is_storage(f), f == DB_FAILURE_NO_SPACE || f == DB_FAILURE_IO);
}
END_TEST

/* A real SQLITE_FULL on any filesystem: the database may not grow past
 * max_page_count. The failure is still known after the ROLLBACK that
 * follows it (which would overwrite SQLite's own error), and forgotten by
 * the next transaction. */
START_TEST(test_failure_of_full_database) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db, "CREATE TABLE t (x BLOB)", err, sizeof err), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, "PRAGMA page_count", -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    char pragma[64];
    snprintf(pragma, sizeof pragma, "PRAGMA max_page_count = %d", sqlite3_column_int(st, 0));
    sqlite3_finalize(st);
    ck_assert_int_eq(db_exec(db, pragma, err, sizeof err), SQLITE_OK);

    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (randomblob(200000))", err, sizeof err),
                     SQLITE_FULL);
    db_rollback(db);
    ck_assert_int_eq(db_failure_of(db), DB_FAILURE_NO_SPACE);
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_failure_of(db), DB_FAILURE_NONE);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (1)", err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    db_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *db_suite(void) {
    Suite *s = suite_create("db");
    TCase *tc = tcase_create("db");
    tcase_add_test(tc, test_schema_migrations);
    tcase_add_test(tc, test_rank_count_migration);
    tcase_add_test(tc, test_dataset_rows_migration);
    tcase_add_test(tc, test_project_comparison_count_migration);
    tcase_add_test(tc, test_loop_reward_members_migration);
    tcase_add_test(tc, test_db_waits_for_write_lock);
    tcase_add_test(tc, test_utf8_clean);
    tcase_add_test(tc, test_failure_classify);
    tcase_add_test(tc, test_failure_of_full_database);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
