/* GET /metrics: the Prometheus text rlhfd serves — request counters and
 * latency histograms by route, the job queue, the database files.
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* The value of the sample line that starts with prefix (then a space), or -1. */
static double sample(const char *text, const char *prefix) {
    size_t n = strlen(prefix);
    for (const char *p = text; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL)
        if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
            return atof(p + n + 1);
    return -1;
}

/* Scrapes /metrics until the sample has the value; returns that scrape. */
static http_reply *wait_sample(const test_daemon *d, const char *token, const char *prefix,
                               double want) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *r = expect_ok(http(d, "GET", "/metrics", token, NULL, NULL));
        double got = sample(r->body, prefix);
        if (got == want)
            return r;
        ck_assert_msg(now_ms() < deadline, "%s is %g, want %g", prefix, got, want);
        reply_free(r);
        pause_ms(5);
    }
}

START_TEST(test_prometheus_metrics) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    for (int i = 0; i < 3; i++)
        reply_free(http(&d, "GET", "/healthz", NULL, NULL, NULL));
    call_expect_error(&d, "GET", "/nowhere", NULL, NULL, 404, "unknown_route", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", NULL, NULL, 401, "missing_api_key", NULL);
    char viewer[128], annotator[128];
    make_token(&d, "vera", "viewer", viewer);
    make_token(&d, "anna", "annotator", annotator);
    call_expect_error(&d, "GET", "/metrics", annotator, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/metrics", NULL, NULL, 401, "missing_api_key", NULL);
    /* A request is counted when its response has been sent, which the
     * client may see first: wait for the last one. */
    http_reply *r = wait_sample(&d, viewer,
                                "rlhfd_http_requests_total{route=\"POST /v1/tokens\","
                                "status=\"200\"}",
                                2);
    ck_assert_msg(strncmp(r->content_type, "text/plain; version=0.0.4", 25) == 0, "%s",
                  r->content_type);
    const char *t = r->body;
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"GET /healthz\",status=\"200\"}"),
                     3);
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"unmatched\",status=\"404\"}"), 1);
    ck_assert_int_eq(sample(t, "rlhfd_http_requests_total{route=\"GET /v1/jobs\",status=\"401\"}"),
                     1);
    ck_assert_int_eq(
        sample(t, "rlhfd_http_requests_total{route=\"POST /v1/tokens\",status=\"200\"}"), 2);
    ck_assert_int_eq(
        sample(t, "rlhfd_http_request_duration_seconds_bucket{route=\"GET /healthz\",le=\"+Inf\"}"),
        3);
    ck_assert_int_eq(sample(t, "rlhfd_http_request_duration_seconds_count{route=\"GET /healthz\"}"),
                     3);
    ck_assert(sample(t, "rlhfd_http_request_duration_seconds_sum{route=\"GET /healthz\"}") >= 0);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE rlhfd_http_request_duration_seconds histogram\n"));
    ck_assert_int_eq(sample(t, "rlhfd_jobs_queued"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_jobs_running"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_workers_running"), 0);
    ck_assert_int_gt(sample(t, "rlhfd_database_bytes"), 4096);
    ck_assert(sample(t, "rlhfd_database_wal_bytes") >= 0);
    reply_free(r);
    /* Queue depth follows the jobs table. */
    exec_sql(&d, "INSERT INTO jobs (type, status, config, max_attempts, created_at) VALUES "
                 "('x', 'queued', '{}', 1, 0), ('x', 'queued', '{}', 1, 0)");
    r = expect_ok(http(&d, "GET", "/metrics", d.admin, NULL, NULL));
    ck_assert_int_eq(sample(r->body, "rlhfd_jobs_queued"), 2);
    ck_assert_int_ge(sample(r->body, "rlhfd_http_requests_total{route=\"GET /metrics\",status="
                                     "\"200\"}"),
                     1);
    reply_free(r);
    kill(d.pid, SIGKILL); /* the fake jobs would fail to start; nothing to keep */
    daemon_wait(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *prometheus_suite(void) {
    Suite *s = suite_create("prometheus");
    TCase *tc = tcase_create("prometheus");
    tcase_add_test(tc, test_prometheus_metrics);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
