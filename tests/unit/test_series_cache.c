/* The series cache (server/series_cache.h) on its own, against a real
 * database: every page it serves is byte for byte what the general path
 * (metrics_page_json) reads from the database at that moment, except for
 * a finished job, whose series it serves without reading again (shown by
 * changing the rows behind its back); appends are merged, rewrites (a new
 * metrics_epoch) and deletions re-read; what cannot be cached is declined;
 * the byte budget evicts the oldest series and refuses one that would take
 * over a quarter of it. */
#include <check.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "metrics_page.h"
#include "series_cache.h"
#include "suites.h"
#include "test_metrics_db.h"

#define BUDGET ((size_t)16 << 20)

/* The cache's page, or NULL when it declines. */
static char *cached_page(series_cache *c, sqlite3 *db, int64_t job, const char *name, int64_t after,
                         int64_t limit) {
    char *text = NULL;
    size_t len = 0;
    int rc = series_cache_serve(c, db, job, name, after, limit, &text, &len);
    ck_assert_int_ge(rc, 0);
    if (rc == 0)
        return NULL;
    ck_assert_uint_eq(strlen(text), len);
    return text;
}

/* The general path's page, from the database now. */
static char *general_page(sqlite3 *db, int64_t job, const char *name, int64_t after,
                          int64_t limit) {
    json_t *names = json_pack("[s]", name);
    char *text = NULL;
    size_t len = 0;
    ck_assert_int_eq(metrics_page_json(db, job, after, limit, names, &text, &len), 0);
    json_decref(names);
    return text;
}

/* Pages of name around the boundaries, each the database's answer now. */
static void expect_current(series_cache *c, sqlite3 *db, int64_t job, const char *name) {
    const int64_t afters[] = {INT64_MIN, 0, 1, 4, 9, 10, 14, 15, 100};
    const int64_t limits[] = {1, 3, 100};
    for (size_t a = 0; a < sizeof afters / sizeof afters[0]; a++)
        for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++) {
            char *got = cached_page(c, db, job, name, afters[a], limits[l]);
            char *want = general_page(db, job, name, afters[a], limits[l]);
            ck_assert_msg(got != NULL, "declined %s after %lld", name, (long long)afters[a]);
            ck_assert_str_eq(got, want);
            free(got);
            free(want);
        }
}

__attribute__((format(printf, 2, 3))) static void sql(sqlite3 *db, const char *fmt, ...) {
    char text[512], err[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    ck_assert_msg(db_exec(db, text, err, sizeof err) == SQLITE_OK, "%s: %s", text, err);
}

/* A database with one job of status, its loss at steps 1..last, and a
 * cache that has served every page of it once. */
typedef struct fixture {
    test_daemon d;
    sqlite3 *db;
    int64_t job;
    series_cache *c;
} fixture;

static void fixture_start(fixture *f, const char *status, int64_t last) {
    f->db = metrics_db_open(&f->d);
    f->job = metrics_db_seed_job(f->db, status);
    metrics_db_put_rows(f->db, f->job, "loss", 1, last, 0);
    f->c = series_cache_new(BUDGET);
    expect_current(f->c, f->db, f->job, "loss");
}

static void fixture_end(fixture *f) {
    series_cache_free(f->c);
    sqlite3_close(f->db);
    daemon_cleanup(&f->d);
}

START_TEST(test_finished_job_is_not_read_again) {
    fixture f;
    fixture_start(&f, "succeeded", 20);
    char *before = general_page(f.db, f.job, "loss", 0, 100);
    /* Nothing may change a finished job's metrics; if something did, the
     * cache would not see it: proof that it answers without reading. */
    sql(f.db, "UPDATE metrics SET value = 100 WHERE job_id = %lld", (long long)f.job);
    char *now = general_page(f.db, f.job, "loss", 0, 100);
    ck_assert_str_ne(before, now);
    char *got = cached_page(f.c, f.db, f.job, "loss", 0, 100);
    ck_assert_ptr_nonnull(got);
    ck_assert_str_eq(got, before);
    free(got), free(before), free(now);
    fixture_end(&f);
}
END_TEST

START_TEST(test_running_job_appends) {
    fixture f;
    fixture_start(&f, "running", 10);
    sqlite3 *db = f.db;
    series_cache *c = f.c;
    const int64_t job = f.job;
    metrics_db_put_rows(db, job, "loss", 11, 15, 0); /* appended: the same epoch */
    metrics_db_put_rows(db, job, "kl", 1, 20, 0);    /* another name */
    expect_current(c, db, job, "loss");
    char *got = cached_page(c, db, job, "loss", 14, 100);
    ck_assert_ptr_nonnull(strstr(got, "\"step\":15"));
    free(got);
    expect_current(c, db, job, "kl");
    fixture_end(&f);
}
END_TEST

START_TEST(test_running_job_rewrites) {
    fixture f;
    fixture_start(&f, "running", 10);
    sqlite3 *db = f.db;
    series_cache *c = f.c;
    const int64_t job = f.job;
    char *first = cached_page(c, db, job, "loss", 0, 100);
    /* a resumed run writes steps again with other values (a new epoch) */
    metrics_db_put_rows(db, job, "loss", 5, 12, 1);
    expect_current(c, db, job, "loss");
    char *second = cached_page(c, db, job, "loss", 0, 100);
    ck_assert_str_ne(first, second);
    /* the last step again, then rows deleted: the series shrinks */
    metrics_db_put_rows(db, job, "loss", 12, 12, 2);
    expect_current(c, db, job, "loss");
    sql(db, "DELETE FROM metrics WHERE job_id = %lld AND step > 8", (long long)job);
    expect_current(c, db, job, "loss");
    metrics_db_put_rows(db, job, "loss", 9, 9, 3); /* and grows again */
    expect_current(c, db, job, "loss");
    free(first), free(second);
    fixture_end(&f);
}
END_TEST

START_TEST(test_job_that_finishes) {
    fixture f;
    fixture_start(&f, "running", 10);
    sqlite3 *db = f.db;
    series_cache *c = f.c;
    const int64_t job = f.job;
    metrics_db_put_rows(db, job, "loss", 11, 11, 0);
    sql(db, "UPDATE jobs SET status = 'succeeded' WHERE id = %lld", (long long)job);
    expect_current(c, db, job, "loss"); /* read once more: now final */
    char *final = general_page(db, job, "loss", 0, 100);
    sql(db, "UPDATE metrics SET value = 100 WHERE job_id = %lld", (long long)job);
    char *got = cached_page(c, db, job, "loss", 0, 100);
    ck_assert_str_eq(got, final);
    free(got), free(final);
    fixture_end(&f);
}
END_TEST

START_TEST(test_declines) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t done = metrics_db_seed_job(db, "succeeded"),
            running = metrics_db_seed_job(db, "running");
    for (int64_t job = done; job <= running; job++) {
        metrics_db_put_rows(db, job, "quo\"te", 1, 3, 0);
        metrics_db_put_rows(db, job, "inf", 1, 3, 0);
        sql(db,
            "UPDATE metrics SET value = 9e999 WHERE job_id = %lld AND name = 'inf' AND "
            "step = 2",
            (long long)job);
    }
    series_cache *c = series_cache_new(BUDGET);
    for (int64_t job = done; job <= running; job++)
        for (int i = 0; i < 2; i++) { /* the first read and a second one */
            ck_assert_ptr_null(cached_page(c, db, job, "quo\"te", 0, 10)); /* JSON escapes it */
            ck_assert_ptr_null(cached_page(c, db, job, "inf", 0, 10));     /* jansson drops it */
        }
    ck_assert_ptr_null(cached_page(c, db, 999, "loss", 0, 10)); /* no such job */
    series_cache_free(c);
    /* no budget: nothing is served */
    metrics_db_put_rows(db, done, "loss", 1, 3, 0);
    c = series_cache_new(0);
    ck_assert_ptr_null(cached_page(c, db, done, "loss", 0, 10));
    series_cache_free(c);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* What job's loss series takes in memory. */
static size_t series_bytes(sqlite3 *db, int64_t job) {
    metrics_series s;
    ck_assert_int_eq(metrics_series_load(db, job, "loss", &s), 1);
    size_t bytes = s.bytes;
    metrics_series_free(&s);
    return bytes;
}

/* Five finished jobs with the same series; a budget for four: the first
 * one read is evicted when the fifth comes in. A budget where one series
 * is over a quarter keeps none. */
START_TEST(test_budget) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t jobs[5];
    for (int i = 0; i < 5; i++) {
        jobs[i] = metrics_db_seed_job(db, "succeeded");
        metrics_db_put_rows(db, jobs[i], "loss", 1, 200, 0);
    }
    size_t one = series_bytes(db, jobs[0]);
    char *old = general_page(db, jobs[0], "loss", 0, 300);

    series_cache *c = series_cache_new(one * 9 / 2);
    for (int i = 0; i < 5; i++)
        free(cached_page(c, db, jobs[i], "loss", 0, 300));
    sql(db, "UPDATE metrics SET value = 100");
    char *now = general_page(db, jobs[0], "loss", 0, 300);
    ck_assert_str_ne(old, now);
    char *got = cached_page(c, db, jobs[4], "loss", 0, 300); /* kept */
    ck_assert_str_eq(got, old);
    free(got);
    got = cached_page(c, db, jobs[0], "loss", 0, 300); /* evicted: read again */
    ck_assert_str_eq(got, now);
    free(got);
    series_cache_free(c);

    one = series_bytes(db, jobs[0]); /* other values, other lengths */
    c = series_cache_new(one * 3);
    got = cached_page(c, db, jobs[0], "loss", 0, 300); /* answered from what it read ... */
    ck_assert_str_eq(got, now);
    free(got);
    ck_assert_ptr_null(cached_page(c, db, jobs[0], "loss", 0, 300)); /* ... but not kept */
    series_cache_free(c);
    free(old), free(now);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *series_cache_suite(void) {
    Suite *s = suite_create("series_cache");
    TCase *tc = tcase_create("series_cache");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_finished_job_is_not_read_again);
    tcase_add_test(tc, test_running_job_appends);
    tcase_add_test(tc, test_running_job_rewrites);
    tcase_add_test(tc, test_job_that_finishes);
    tcase_add_test(tc, test_declines);
    tcase_add_test(tc, test_budget);
    suite_add_tcase(s, tc);
    return s;
}
