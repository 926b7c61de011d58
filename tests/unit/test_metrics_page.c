/* The fast metric-page paths (server/metrics_page.h, server/series_cache.h)
 * against the general jansson path, byte for byte: reals, names (unicode,
 * names JSON escapes, names listed twice, unknown names), NULL and
 * infinite values, sparse steps, every after_step and limit boundary; a
 * hand-written body anchors the shape; and the daemon's replies for a
 * finished job (served from the series cache) and a running one: schema
 * 008's epoch triggers, a running job's cached series across appends and
 * rewrites (each reply byte for byte the general path's), and a writer
 * committing beside concurrent readers. */
#include <check.h>
#include <float.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "db.h"
#include "json_text.h"
#include "metrics_page.h"
#include "reply.h"
#include "test_metrics_db.h"
#include "test_server_util.h"

/* ---- reals --------------------------------------------------------------- */

static void expect_real_like_jansson(double v) {
    json_t *real = json_real(v);
    ck_assert_ptr_nonnull(real);
    char *want = json_dumps(real, JSON_ENCODE_ANY | HTTP_JSON_DUMP_FLAGS);
    json_decref(real);
    char got[32];
    int n = json_real_text(v, got);
    ck_assert_msg(strcmp(got, want) == 0, "%.17g: got %s, jansson %s", v, got, want);
    ck_assert_int_eq(n, (int)strlen(want));
    free(want);
}

START_TEST(test_real_text) {
    const double fixed[] = {
        0.0,  -0.0,     1.0,      -3.0,    0.1,      0.99,    1e15,
        1e16, 1e17,     1e20,     1e21,    1e100,    1e-5,    1e-4,
        1e-7, 1.5e-300, 5e-324,   DBL_MAX, -DBL_MAX, DBL_MIN, 123456789012345678.0,
        0.5f, 0.1f,     1.0f / 3, 2.0 / 3, 1e-310,   4.9e-5,  12345.678};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
        expect_real_like_jansson(fixed[i]);
    /* hand-checked texts */
    char t[32];
    json_real_text(3.0, t);
    ck_assert_str_eq(t, "3.0");
    json_real_text(1e20, t);
    ck_assert_str_eq(t, "1e20");
    json_real_text(1.25e-5, t);
    ck_assert_str_eq(t, "1.25e-5");
    json_real_text(0.98999999999999999, t);
    ck_assert_str_eq(t, "0.99");
    /* random bit patterns and random float32 values */
    uint64_t x = 88172645463325252ull;
    for (int i = 0; i < 20000; i++) {
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        double d;
        memcpy(&d, &x, sizeof d);
        if (isfinite(d))
            expect_real_like_jansson(d);
        expect_real_like_jansson((float)((double)(x >> 11) / 9007199254740992.0 * 20.0 - 10.0));
    }
}
END_TEST

START_TEST(test_plain_string) {
    ck_assert(json_plain_string("loss", 4));
    ck_assert(json_plain_string("ünïcode_名_😀", strlen("ünïcode_名_😀")));
    ck_assert(json_plain_string("a/b", 3)); /* jansson leaves '/' alone */
    ck_assert(!json_plain_string("a\"b", 3));
    ck_assert(!json_plain_string("a\\b", 3));
    ck_assert(!json_plain_string("a\tb", 3));
    ck_assert(!json_plain_string("\xc3", 1));             /* truncated */
    ck_assert(!json_plain_string("\xc0\xaf", 2));         /* overlong */
    ck_assert(!json_plain_string("\xed\xa0\x80", 3));     /* surrogate */
    ck_assert(!json_plain_string("\xf4\x90\x80\x80", 4)); /* above U+10FFFF */
}
END_TEST

/* ---- pages ------------------------------------------------------------- */

/* A database with one job whose status is given; its id. */

static void insert_metric(sqlite3 *db, int64_t job, const char *name, int64_t step, double value,
                          bool null) {
    sqlite3_stmt *st = NULL;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT INTO metrics (job_id, name, step, value) "
                                        "VALUES (?1, ?2, ?3, ?4)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, job);
    sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, step);
    if (null)
        sqlite3_bind_null(st, 4);
    else
        sqlite3_bind_double(st, 4, value);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
}

#define PLAIN_NAMES 4
static const char *const plain_names[PLAIN_NAMES] = {"loss", "reward", "ünïcode_名", "kl"};

/* Job with: plain names on sparse steps 1..60 (some missing, some NULL,
 * wide range of magnitudes); "inf" with an infinite value at step 7;
 * "quo\"te" (JSON escapes it). */
static int64_t seed_series(sqlite3 *db, const char *status) {
    int64_t job = metrics_db_seed_job(db, status);
    char err[256];
    ck_assert_int_eq(db_exec(db, "BEGIN", err, sizeof err), SQLITE_OK);
    uint64_t x = 12345;
    for (int64_t step = 1; step <= 60; step++)
        for (int k = 0; k < PLAIN_NAMES; k++) {
            x = x * 6364136223846793005ull + 1442695040888963407ull;
            if ((x >> 60) == 0 && step != 1)
                continue; /* a missing row */
            double v = ((double)(x >> 11) / 9007199254740992.0 - 0.5) *
                       pow(10.0, (double)((int)(x >> 3) % 40 - 20));
            insert_metric(db, job, plain_names[k], step * 2 + k % 2, (float)v,
                          (x >> 56) == 1 /* NULL */);
        }
    insert_metric(db, job, "inf", 7, INFINITY, false);
    insert_metric(db, job, "inf", 8, 1.5, false);
    insert_metric(db, job, "quo\"te", 9, 2.5, false);
    ck_assert_int_eq(db_exec(db, "COMMIT", err, sizeof err), SQLITE_OK);
    return job;
}

static json_t *names_of(const char *csv) {
    if (csv == NULL)
        return NULL;
    json_t *names = json_array();
    for (const char *p = csv; *p;) {
        size_t n = strcspn(p, ",");
        json_array_append_new(names, json_stringn(p, n));
        p += n + (p[n] == ',');
    }
    return names;
}

typedef struct {
    int fast, series; /* rendered by each fast path */
} counts;

/* Compares every path for one query; counts which fast paths rendered. */
static void compare(sqlite3 *db, int64_t job, const char *csv, int64_t after, int64_t limit,
                    counts *c) {
    json_t *names = names_of(csv);
    char *want = NULL, *got = NULL;
    size_t want_len = 0, got_len = 0;
    ck_assert_int_eq(metrics_page_json(db, job, after, limit, names, &want, &want_len), 0);
    ck_assert_int_eq(want_len, strlen(want));
    int rc = metrics_page_fast(db, job, after, limit, names, &got, &got_len);
    ck_assert_int_ge(rc, 0);
    if (rc == 1) {
        c->fast++;
        ck_assert_msg(got_len == want_len && memcmp(got, want, want_len) == 0,
                      "names=%s after=%lld limit=%lld:\nfast    %.*s\ngeneral %s", csv,
                      (long long)after, (long long)limit, (int)got_len, got, want);
        free(got);
    }
    if (csv != NULL && strchr(csv, ',') == NULL) {
        metrics_series s;
        rc = metrics_series_load(db, job, csv, &s);
        ck_assert_int_ge(rc, 0);
        if (rc == 1) {
            c->series++;
            ck_assert_int_eq(metrics_series_page(&s, after, limit, &got, &got_len), 0);
            ck_assert_msg(got_len == want_len && memcmp(got, want, want_len) == 0,
                          "series %s after=%lld limit=%lld:\ncached  %.*s\ngeneral %s", csv,
                          (long long)after, (long long)limit, (int)got_len, got, want);
            free(got);
            metrics_series_free(&s);
        }
    }
    free(want);
    json_decref(names);
}

START_TEST(test_fast_equals_general) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t job = seed_series(db, "succeeded");
    const char *queries[] = {"loss",
                             "kl",
                             "ünïcode_名",
                             "reward,loss",
                             "loss,kl,reward,ünïcode_名",
                             "loss,loss",
                             "kl,loss,kl",
                             "nothing",
                             "nothing,kl",
                             "inf",
                             "inf,loss",
                             "quo\"te",
                             "quo\"te,kl",
                             "",
                             NULL};
    const int64_t afters[] = {INT64_MIN, -5, 0, 1, 2, 3, 57, 100, 119, 120, 121, 1000};
    const int64_t limits[] = {1, 2, 3, 7, 59, 60, 61, 100, 10000};
    counts c = {0, 0};
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
        for (size_t a = 0; a < sizeof afters / sizeof afters[0]; a++)
            for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
                compare(db, job, queries[q], afters[a], limits[l], &c);
    /* The fast paths took the plain queries ("" too: an empty list), and
     * inf and inf,loss on pages past the infinite value at step 7; they
     * declined quo"te, every name, and pages that hold the infinity. */
    const size_t per_query =
        (sizeof afters / sizeof afters[0]) * (sizeof limits / sizeof limits[0]);
    ck_assert_int_gt(c.fast, (int)(10 * per_query));
    ck_assert_int_lt(c.fast, (int)(12 * per_query));
    ck_assert_int_eq(c.series, (int)(5 * per_query)); /* loss, kl, ünïcode_名, nothing, "" */
    const char *declined[] = {"inf", "inf,loss", "quo\"te", "quo\"te,kl", NULL};
    for (size_t q = 0; q < sizeof declined / sizeof declined[0]; q++) {
        json_t *names = names_of(declined[q]);
        char *text = NULL;
        size_t len;
        ck_assert_int_eq(metrics_page_fast(db, job, 0, 100, names, &text, &len), 0);
        json_decref(names);
    }
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* The shape, written out by hand. */
START_TEST(test_page_text) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t job = metrics_db_seed_job(db, "succeeded");
    insert_metric(db, job, "loss", 3, 0.5, false);
    insert_metric(db, job, "kl", 3, 0, true);
    insert_metric(db, job, "loss", 5, 1e20, false);
    insert_metric(db, job, "loss", 9, -0.1, false);
    json_t *names = names_of("loss,kl");
    char *text;
    size_t len;
    ck_assert_int_eq(metrics_page_fast(db, job, 0, 2, names, &text, &len), 1);
    ck_assert_str_eq(text, "{\"object\":\"list\",\"data\":[{\"step\":3,\"metrics\":{\"kl\":null,"
                           "\"loss\":0.5}},{\"step\":5,\"metrics\":{\"loss\":1e20}}],"
                           "\"first_step\":3,\"last_step\":5,\"has_more\":true}\n");
    free(text);
    ck_assert_int_eq(metrics_page_fast(db, job, 9, 2, names, &text, &len), 1);
    ck_assert_str_eq(text, "{\"object\":\"list\",\"data\":[],\"first_step\":null,"
                           "\"last_step\":null,\"has_more\":false}\n");
    free(text);
    json_decref(names);
    metrics_series s;
    ck_assert_int_eq(metrics_series_load(db, job, "loss", &s), 1);
    ck_assert_int_eq(metrics_series_page(&s, 4, 100, &text, &len), 0);
    ck_assert_str_eq(text,
                     "{\"object\":\"list\",\"data\":[{\"step\":5,\"metrics\":{\"loss\":1e20}},"
                     "{\"step\":9,\"metrics\":{\"loss\":-0.1}}],\"first_step\":5,"
                     "\"last_step\":9,\"has_more\":false}\n");
    free(text);
    metrics_series_free(&s);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* ---- through the daemon --------------------------------------------------- */

/* query: names as in the URL, csv: as they are. */
static void expect_http_body(const test_daemon *d, sqlite3 *db, int64_t job, const char *query,
                             const char *csv, int64_t after, int64_t limit) {
    char path[256];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=%s&after_step=%lld&limit=%lld",
             (long long)job, query, (long long)after, (long long)limit);
    json_t *names = names_of(csv);
    char *want;
    size_t want_len;
    ck_assert_int_eq(metrics_page_json(db, job, after, limit, names, &want, &want_len), 0);
    json_decref(names);
    for (int i = 0; i < 2; i++) { /* the first read fills the cache, the second uses it */
        http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
        ck_assert_int_eq(r->status, 200);
        ck_assert_str_eq(r->content_type, "application/json");
        ck_assert_msg(r->body_len == want_len && memcmp(r->body, want, want_len) == 0,
                      "%s:\nhttp    %.*s\ngeneral %s", path, (int)r->body_len, r->body, want);
        reply_free(r);
    }
    free(want);
}

START_TEST(test_daemon_pages) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t done = seed_series(db, "succeeded");
    int64_t running = seed_series(db, "running");
    /* reads as fast as it can: no expensive-read budget */
    daemon_start(&d, "--train-bin", "/bin/false", "--read-rate", "0", NULL);
    for (int64_t job = done; job <= running; job++) {
        expect_http_body(&d, db, job, "loss", "loss", 0, 5);
        expect_http_body(&d, db, job, "loss", "loss", 110, 100);
        expect_http_body(&d, db, job, "%C3%BCn%C3%AFcode_%E5%90%8D", "ünïcode_名", 3, 7);
        expect_http_body(&d, db, job, "loss,kl", "loss,kl", 10, 3);
        expect_http_body(&d, db, job, "inf", "inf", 0, 3);
        expect_http_body(&d, db, job, "quo%22te", "quo\"te", 0, 3);
    }
    /* errors keep their order: limit, then the job, then after_step */
    call_expect_error(&d, "GET", "/v1/jobs/999/metrics?names=loss&limit=0", d.admin, NULL, 400,
                      "invalid_value", "limit");
    call_expect_error(&d, "GET", "/v1/jobs/999/metrics?names=loss&after_step=x", d.admin, NULL, 404,
                      "job_not_found", NULL);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=loss&after_step=x", (long long)done);
    call_expect_error(&d, "GET", path, d.admin, NULL, 400, "invalid_value", "after_step");
    /* a name that is not UTF-8 (it used to be a 500) */
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=%%C3", (long long)done);
    call_expect_error(&d, "GET", path, d.admin, NULL, 400, "invalid_value", "names");
    daemon_stop(&d);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* ---- a running job's series (series_cache.h: cached, validated by epoch) ---- */

__attribute__((format(printf, 2, 3))) static void run_sql(sqlite3 *db, const char *fmt, ...) {
    char sql[512], err[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(sql, sizeof sql, fmt, ap);
    va_end(ap);
    ck_assert_int_lt(n, (int)sizeof sql);
    ck_assert_msg(db_exec(db, sql, err, sizeof err) == SQLITE_OK, "%s: %s", sql, err);
}

/* Every page of loss, kl and loss,kl around steps 0..60 (pages that end
 * before, at and after the cached last step), each compared with the
 * general path reading the database now. */
static void expect_running_pages(const test_daemon *d, sqlite3 *db, int64_t job) {
    const char *queries[] = {"loss", "kl", "loss,kl"};
    const int64_t afters[] = {INT64_MIN, 0, 9, 19, 49, 50, 52, 53, 54, 55, 1000};
    const int64_t limits[] = {1, 3, 100};
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++)
        for (size_t a = 0; a < sizeof afters / sizeof afters[0]; a++)
            for (size_t l = 0; l < sizeof limits / sizeof limits[0]; l++)
                expect_http_body(d, db, job, queries[q], queries[q], afters[a], limits[l]);
}

/* The text of one step's loss as the daemon answers it now. */
static void loss_at(const test_daemon *d, int64_t job, int64_t step, char *out, size_t n) {
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=loss&after_step=%lld&limit=1",
             (long long)job, (long long)step - 1);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *item = json_array_get(json_object_get(r->json, "data"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(item, "step")), step);
    json_t *v = json_object_get(json_object_get(item, "metrics"), "loss");
    char *text = json_dumps(v, JSON_ENCODE_ANY | HTTP_JSON_DUMP_FLAGS);
    snprintf(out, n, "%s", text);
    free(text);
    reply_free(r);
}

/* schema/008's triggers: jobs.metrics_epoch moves on every write that could
 * change a row a reader has seen, and not on an append. */
START_TEST(test_metrics_epoch) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t job = metrics_db_seed_job(db, "running"), other = metrics_db_seed_job(db, "running");
    const char *epoch = "SELECT metrics_epoch FROM jobs WHERE id = ?1";
    metrics_db_put_rows(db, job, "loss", 1, 10, 0); /* appends */
    metrics_db_put_rows(db, job, "kl", 1, 3, 0);
    metrics_db_put_rows(db, other, "loss", 1, 20, 0);
    ck_assert_int_eq(db_int(&d, epoch, job), 0);
    metrics_db_put_rows(db, job, "loss", 11, 11, 0);
    ck_assert_int_eq(db_int(&d, epoch, job), 0);
    metrics_db_put_rows(db, job, "loss", 11, 11, 1); /* the last step again */
    int64_t e = db_int(&d, epoch, job);
    ck_assert_int_gt(e, 0);
    metrics_db_put_rows(db, job, "kl", 2, 2, 1); /* an earlier step of another name */
    ck_assert_int_gt(db_int(&d, epoch, job), e);
    e = db_int(&d, epoch, job);
    metrics_db_put_rows(db, job, "kl", 4, 4, 1); /* an append to kl */
    ck_assert_int_eq(db_int(&d, epoch, job), e);
    run_sql(db, "UPDATE metrics SET value = 2 WHERE job_id = %lld AND step = 5", (long long)job);
    ck_assert_int_gt(db_int(&d, epoch, job), e);
    e = db_int(&d, epoch, job);
    run_sql(db, "DELETE FROM metrics WHERE job_id = %lld AND step = 11", (long long)job);
    ck_assert_int_gt(db_int(&d, epoch, job), e);
    e = db_int(&d, epoch, job);
    metrics_db_put_rows(db, job, "loss", 11, 11, 0); /* after the deletion, 11 is an append again */
    ck_assert_int_eq(db_int(&d, epoch, job), e);
    ck_assert_int_eq(db_int(&d, epoch, other), 0); /* the other job saw none of it */
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_daemon_running_series) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t job =
        metrics_db_seed_job(db, "running"); /* no worker, no lease: only the test writes */
    metrics_db_put_rows(db, job, "loss", 1, 50, 0);
    metrics_db_put_rows(db, job, "kl", 1, 50, 100);
    /* reads as fast as it can: no expensive-read budget */
    daemon_start(&d, "--train-bin", "/bin/false", "--read-rate", "0", NULL);
    expect_running_pages(&d, db, job); /* fills the cache */
    /* steps appended after the cached end, then pages across it */
    metrics_db_put_rows(db, job, "loss", 51, 53, 0);
    metrics_db_put_rows(db, job, "kl", 51, 51, 100);
    expect_running_pages(&d, db, job);
    /* a resumed rerun rewrites steps 20..53 with other values and appends
     * 54: nothing in the job row changes (same attempt, same status) */
    char before[64], after[64];
    loss_at(&d, job, 20, before, sizeof before);
    metrics_db_put_rows(db, job, "loss", 20, 54, 1000);
    loss_at(&d, job, 20, after, sizeof after);
    ck_assert_str_eq(before, "2.85714285714286");
    ck_assert_str_eq(after, "1002.85714285714");
    expect_running_pages(&d, db, job);
    /* the last step alone rewritten; one value changed by UPDATE; a step
     * deleted; the gap filled again; a step before the first */
    metrics_db_put_rows(db, job, "loss", 54, 54, 5000);
    expect_running_pages(&d, db, job);
    run_sql(db,
            "UPDATE metrics SET value = -1.5 WHERE job_id = %lld AND name = 'loss' AND step = 10",
            (long long)job);
    expect_running_pages(&d, db, job);
    run_sql(db, "DELETE FROM metrics WHERE job_id = %lld AND name = 'loss' AND step = 11",
            (long long)job);
    expect_running_pages(&d, db, job);
    metrics_db_put_rows(db, job, "loss", 11, 11, 7);
    metrics_db_put_rows(db, job, "loss", 0, 0, 7);
    expect_running_pages(&d, db, job);
    /* a value that is not finite (jansson drops it: the general path
     * answers), then rewritten to a finite one, then appended after */
    run_sql(db, "INSERT INTO metrics (job_id, name, step, value) VALUES (%lld, 'loss', 55, 9e999)",
            (long long)job);
    expect_running_pages(&d, db, job);
    metrics_db_put_rows(db, job, "loss", 55, 55, 0);
    expect_running_pages(&d, db, job);
    metrics_db_put_rows(db, job, "loss", 56, 60, 0);
    expect_running_pages(&d, db, job);
    /* The control: with the trigger that reports rewrites gone, a rewrite
     * is NOT seen, so the pages above came from the cache. */
    loss_at(&d, job, 30, before, sizeof before);
    run_sql(db, "DROP TRIGGER metrics_epoch_insert");
    metrics_db_put_rows(db, job, "loss", 30, 30, 9);
    loss_at(&d, job, 30, after, sizeof after);
    ck_assert_str_eq(after, before);
    ck_assert_str_eq(before, "1004.28571428571");
    /* the job finishes (its series is final from now on) */
    run_sql(db, "UPDATE jobs SET status = 'succeeded' WHERE id = %lld", (long long)job);
    metrics_db_put_rows(db, job, "loss", 31, 31, 9); /* cannot happen (fenced): its last rewrite */
    run_sql(db, "UPDATE jobs SET metrics_epoch = metrics_epoch + 1 WHERE id = %lld",
            (long long)job);
    loss_at(&d, job, 30, after, sizeof after);
    ck_assert_str_eq(after, "13.2857142857143"); /* read again: another epoch */
    run_sql(db, "UPDATE metrics SET value = 0"); /* no longer read: the series is final */
    loss_at(&d, job, 31, after, sizeof after);
    ck_assert_str_eq(after, "13.4285714285714");
    daemon_stop(&d);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* A writer beside the readers: every committed state of its series has
 * steps 1..n all with one value (an append keeps the value, a rewrite
 * changes every step's in one transaction), so a reply that mixes two
 * values, or misses a step, is a stale or half-seen cache. */
typedef struct concurrent_writer {
    const char *path;
    int64_t job;
    int transactions;
    volatile int done;
} concurrent_writer;

static void *concurrent_write(void *arg) {
    concurrent_writer *w = arg;
    sqlite3 *db = NULL;
    char err[256];
    if (db_open(w->path, &db, err, sizeof err) != 0)
        abort();
    db_exec(db, "PRAGMA synchronous=OFF", err, sizeof err);
    int64_t n = 1, generation = 1;
    sqlite3_stmt *st = NULL;
    sqlite3_prepare_v2(db,
                       "INSERT OR REPLACE INTO metrics (job_id, name, step, value) "
                       "VALUES (?1, 'loss', ?2, ?3)",
                       -1, &st, NULL);
    for (int i = 0; i < w->transactions; i++) {
        if (db_begin(db) != SQLITE_OK)
            abort();
        int64_t from = n + 1, to = n + 1; /* append one step */
        if (i % 8 == 7)                   /* or rewrite them all with another value */
            from = 1, to = n, generation++;
        for (int64_t step = from; step <= to; step++) {
            sqlite3_bind_int64(st, 1, w->job);
            sqlite3_bind_int64(st, 2, step);
            sqlite3_bind_double(st, 3, (double)generation / 3);
            if (sqlite3_step(st) != SQLITE_DONE)
                abort();
            sqlite3_reset(st);
        }
        n = to > n ? to : n;
        if (db_commit(db) != SQLITE_OK)
            abort();
    }
    sqlite3_finalize(st);
    db_close(db);
    w->done = 1;
    return NULL;
}

/* One read of a page; why is "" if it holds the invariant, else what is
 * wrong. */
static void check_one_value(const test_daemon *d, int64_t job, int64_t after, char *why, size_t n) {
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=loss&after_step=%lld&limit=10000",
             (long long)job, (long long)after);
    http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
    why[0] = '\0';
    json_t *data = json_object_get(r->json, "data");
    if (r->status != 200 || !json_is_array(data)) {
        snprintf(why, n, "%s: status %ld", path, r->status);
    } else {
        double first = 0;
        for (size_t i = 0; i < json_array_size(data) && !why[0]; i++) {
            json_t *item = json_array_get(data, i);
            int64_t step = json_integer_value(json_object_get(item, "step"));
            double v = json_real_value(json_object_get(json_object_get(item, "metrics"), "loss"));
            if (i == 0)
                first = v;
            if (step != after + 1 + (int64_t)i || v != first)
                snprintf(why, n, "%s: item %zu is step %lld = %.17g (first %.17g)", path, i,
                         (long long)step, v, first);
        }
    }
    reply_free(r);
}

typedef struct concurrent_reader {
    const test_daemon *d;
    int64_t job;
    concurrent_writer *w;
    int reads;
    char why[256];
} concurrent_reader;

static void *concurrent_read(void *arg) {
    concurrent_reader *rd = arg;
    for (int64_t i = 0; !rd->w->done && !rd->why[0]; i++, rd->reads++)
        check_one_value(rd->d, rd->job, i % 3 == 0 ? 0 : i % 7, rd->why, sizeof rd->why);
    return NULL;
}

START_TEST(test_daemon_running_series_concurrent) {
    test_daemon d;
    sqlite3 *db = metrics_db_open(&d);
    int64_t job = metrics_db_seed_job(db, "running");
    metrics_db_put_rows(db, job, "loss", 1, 1, 1.0 / 3 - 1.0 / 7); /* step 1 = generation 1 */
    /* reads as fast as it can: no expensive-read budget */
    daemon_start(&d, "--train-bin", "/bin/false", "--read-rate", "0", NULL);
    concurrent_writer w = {d.db, job, 600, 0};
    concurrent_reader readers[2] = {{&d, job, &w, 0, ""}, {&d, job, &w, 0, ""}};
    pthread_t writer, reader;
    ck_assert_int_eq(pthread_create(&writer, NULL, concurrent_write, &w), 0);
    ck_assert_int_eq(pthread_create(&reader, NULL, concurrent_read, &readers[1]), 0);
    concurrent_read(&readers[0]);
    pthread_join(writer, NULL);
    pthread_join(reader, NULL);
    ck_assert_msg(readers[0].why[0] == '\0', "%s", readers[0].why);
    ck_assert_msg(readers[1].why[0] == '\0', "%s", readers[1].why);
    ck_assert_int_gt(readers[0].reads + readers[1].reads, 10);
    /* and the last state, exactly */
    expect_http_body(&d, db, job, "loss", "loss", INT64_MIN, 10000);
    daemon_stop(&d);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

Suite *metrics_page_suite(void) {
    Suite *s = suite_create("metrics_page");
    TCase *tc = tcase_create("metrics_page");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_real_text);
    tcase_add_test(tc, test_plain_string);
    tcase_add_test(tc, test_fast_equals_general);
    tcase_add_test(tc, test_page_text);
    tcase_add_test(tc, test_daemon_pages);
    tcase_add_test(tc, test_metrics_epoch);
    tcase_add_test(tc, test_daemon_running_series);
    tcase_add_test(tc, test_daemon_running_series_concurrent);
    suite_add_tcase(s, tc);
    return s;
}
