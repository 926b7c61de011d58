#include "test_metrics_db.h"

#include <check.h>
#include <stdio.h>

#include "db.h"

sqlite3 *metrics_db_open(test_daemon *d) {
    daemon_init(d);
    sqlite3 *db = NULL;
    char err[256];
    ck_assert_int_eq(db_open(d->db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    return db;
}

int64_t metrics_db_seed_job(sqlite3 *db, const char *status) {
    char sql[256];
    snprintf(sql, sizeof sql,
             "INSERT INTO jobs (type, status, config, max_attempts, created_at) "
             "VALUES ('ppo-control', '%s', '{}', 1, 1)",
             status);
    char err[256];
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    return sqlite3_last_insert_rowid(db);
}

void metrics_db_put_rows(sqlite3 *db, int64_t job, const char *name, int64_t from, int64_t to,
                         double base) {
    char err[256];
    ck_assert_int_eq(db_exec(db, "BEGIN IMMEDIATE", err, sizeof err), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT OR REPLACE INTO metrics (job_id, name, step, "
                                        "value) VALUES (?1, ?2, ?3, ?4)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    for (int64_t step = from; step <= to; step++) {
        sqlite3_bind_int64(st, 1, job);
        sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, step);
        sqlite3_bind_double(st, 4, base + (double)step / 7);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
        sqlite3_reset(st);
    }
    sqlite3_finalize(st);
    ck_assert_int_eq(db_exec(db, "COMMIT", err, sizeof err), SQLITE_OK);
}
