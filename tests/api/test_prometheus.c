/* GET /metrics: the Prometheus text rlhfd serves — request counters and
 * latency histograms by route, the job queue, the database files.
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <math.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
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

static int64_t now_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* A POST whose body arrives pause_ms after its headers (a raw connection, so
 * the pause is the client's): the daemon's latency for it is at least
 * pause_ms. Returns the HTTP status; *elapsed_us is the whole exchange as
 * the client saw it, from before the headers to the closed connection. */
static int slow_post(const test_daemon *d, const char *path, const char *token, const char *body,
                     int pause, int64_t *elapsed_us) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char head[512], reply[4096];
    int n = snprintf(head, sizeof head,
                     "POST %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
                     "Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n",
                     path, token, strlen(body));
    const int64_t start = now_us();
    ck_assert_int_eq(write(fd, head, (size_t)n), n);
    pause_ms(pause);
    ck_assert_int_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    reply[0] = '\0';
    read_to_close(fd, reply, sizeof reply);
    *elapsed_us = now_us() - start;
    int status = 0;
    ck_assert_msg(sscanf(reply, "HTTP/1.1 %d", &status) == 1, "%s", reply);
    return status;
}

/* Counters and histograms against what the test did: request counts by
 * route and status, histogram count = +Inf bucket = requests made, the
 * latency sum between the known minimum (a body sent after a pause) and
 * what the client measured; queue depth; the database and WAL sizes as
 * the files are (the WAL holds whole frames after a write). */
START_TEST(test_prometheus_metrics) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t healthz_us = 0;
    for (int i = 0; i < 3; i++) {
        const int64_t t0 = now_us();
        reply_free(http(&d, "GET", "/healthz", NULL, NULL, NULL));
        healthz_us += now_us() - t0;
    }
    enum { PAUSE_MS = 150 };
    int64_t slow_us;
    ck_assert_int_eq(
        slow_post(&d, "/v1/projects", d.admin, "{\"name\":\"slow\"}", PAUSE_MS, &slow_us), 200);
    call_expect_error(&d, "GET", "/nowhere", NULL, NULL, 404, "unknown_route", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", NULL, NULL, 401, "missing_api_key", NULL);
    char viewer[128], annotator[128];
    make_token(&d, "vera", "viewer", viewer);
    make_token(&d, "anna", "annotator", annotator);
    call_expect_error(&d, "GET", "/metrics", annotator, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/metrics", NULL, NULL, 401, "missing_api_key", NULL);
    /* A request is counted when its response has been sent, which the
     * client may see first: wait for the slow one and the last one. */
    reply_free(wait_sample(
        &d, viewer, "rlhfd_http_request_duration_seconds_count{route=\"POST /v1/projects\"}", 1));
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
    /* Each request's server time is within what the client measured. */
    const double healthz_sum =
        sample(t, "rlhfd_http_request_duration_seconds_sum{route=\"GET /healthz\"}");
    ck_assert_msg(healthz_sum > 0 && healthz_sum <= healthz_us / 1e6,
                  "GET /healthz: sum %.6f s, the client measured %.6f s", healthz_sum,
                  healthz_us / 1e6);
    /* The slow request: one count, in no bucket below its pause, and a sum
     * between the pause and the client's time. */
    const char *slow = "rlhfd_http_request_duration_seconds_%s{route=\"POST /v1/projects\"%s}";
    char name[160];
    snprintf(name, sizeof name, slow, "count", "");
    ck_assert_int_eq(sample(t, name), 1);
    snprintf(name, sizeof name, slow, "bucket", ",le=\"0.1\"");
    ck_assert_int_eq(sample(t, name), 0);
    snprintf(name, sizeof name, slow, "bucket", ",le=\"+Inf\"");
    ck_assert_int_eq(sample(t, name), 1);
    snprintf(name, sizeof name, slow, "sum", "");
    const double slow_sum = sample(t, name);
    ck_assert_msg(slow_sum >= PAUSE_MS / 1e3 && slow_sum <= slow_us / 1e6,
                  "POST /v1/projects: sum %.6f s, paused %d ms, the client measured %.6f s",
                  slow_sum, PAUSE_MS, slow_us / 1e6);
    ck_assert_int_eq(
        sample(t, "rlhfd_http_requests_total{route=\"POST /v1/projects\",status=\"200\"}"), 1);
    ck_assert_ptr_nonnull(strstr(t, "# TYPE rlhfd_http_request_duration_seconds histogram\n"));
    ck_assert_int_eq(sample(t, "rlhfd_jobs_queued"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_jobs_running"), 0);
    ck_assert_int_eq(sample(t, "rlhfd_workers_running"), 0);
    /* The sizes of the files as they are: nothing writes while no job runs. */
    const int64_t page = db_int(&d, "PRAGMA page_size", 0);
    ck_assert_int_eq(sample(t, "rlhfd_database_bytes"), db_int(&d, "PRAGMA page_count", 0) * page);
    ck_assert_int_gt(sample(t, "rlhfd_database_bytes"), 4096);
    /* The writes above are in the WAL (PASSIVE checkpoints never truncate
     * it): its 32-byte header and whole frames of 24 bytes + a page. */
    const double wal = sample(t, "rlhfd_database_wal_bytes");
    ck_assert_msg(wal >= 32 + 24 + page && fmod(wal - 32, 24 + page) == 0, "WAL of %.0f bytes",
                  wal);
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
