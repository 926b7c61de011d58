/* GET /v1/jobs/{id}/stream: Server-Sent Events that follow a job to its end,
 * resume after Last-Event-ID, and are parked rather than holding one of the
 * daemon's HTTP threads.
 */
#include <curl/curl.h>
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

START_TEST(test_stream_and_resume) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, SHORT_JOB);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/stream", (long long)id);
    /* Opened while the job may still be queued: the stream follows it to
     * the end and closes by itself. */
    http_reply *r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(strstr(r->body, "id: 1\nevent: message\ndata: {"));
    ck_assert_ptr_nonnull(strstr(r->body, "event: metrics\n"));
    ck_assert_ptr_nonnull(strstr(r->body, "event: end\ndata: {\"status\":\"succeeded\"}\n\n"));
    int64_t n_events = db_int(&d, "SELECT count(*) FROM job_events WHERE job_id = ?1", id);
    int ids = strncmp(r->body, "id: ", 4) == 0;
    for (const char *p = r->body; (p = strstr(p, "\nid: ")) != NULL; p++)
        ids++;
    ck_assert_int_eq(ids, n_events); /* every event exactly once */
    reply_free(r);
    /* Resume after event 3: the first event sent is 4. */
    r = http(&d, "GET", path, d.admin, NULL, "Last-Event-ID: 3");
    ck_assert_msg(strncmp(r->body, "id: 4\n", 6) == 0, "%.80s", r->body);
    ck_assert_ptr_null(strstr(r->body, "id: 3\n"));
    reply_free(r);
    char after[128];
    snprintf(after, sizeof after, "%s?after=%lld", path, (long long)n_events);
    r = http(&d, "GET", after, d.admin, NULL, NULL);
    ck_assert_str_eq(r->body, "event: end\ndata: {\"status\":\"succeeded\"}\n\n");
    reply_free(r);
    r = http(&d, "GET", path, d.admin, NULL, "Last-Event-ID: -2");
    expect_error(r, 400, "invalid_value", "Last-Event-ID");
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Two HTTP threads, six open event streams (parked, not holding a thread):
 * the daemon still answers, and SIGTERM ends the streams and exits 0. */
START_TEST(test_streams_do_not_hold_threads) {
    test_daemon d;
    daemon_init(&d);
    char worker[160];
    write_idle_worker(&d, worker, sizeof worker);
    daemon_start(&d, "--train-bin", worker, "--http-threads", "2", NULL);
    http_reply *job =
        expect_ok(http(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\"}", NULL));
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/stream", (long long)reply_int(job, "id"));
    reply_free(job);
    enum { N_STREAMS = 6 };
    int fds[N_STREAMS];
    char text[N_STREAMS][4096];
    for (int i = 0; i < N_STREAMS; i++) {
        fds[i] = open_stream(&d, path, d.admin, text[i], sizeof text[i]);
        ck_assert_msg(strncmp(text[i], "HTTP/1.1 200", 12) == 0, "%s", text[i]);
    }
    /* Keep-alive: two requests on one libcurl handle share one connection. */
    CURL *c = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", d.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *null = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
    long connects = -1, status = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
        ck_assert_int_eq(status, 200);
    }
    ck_assert_int_eq(connects, 0); /* the second request opened no connection */
    curl_easy_cleanup(c);
    fclose(null);
    reply_free(expect_ok(http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL)));
    kill(d.pid, SIGTERM);
    for (int i = 0; i < N_STREAMS; i++)
        read_to_close(fds[i], text[i], sizeof text[i]);
    ck_assert_int_eq(daemon_wait(&d), 0);
    daemon_cleanup(&d);
}
END_TEST

Suite *job_stream_suite(void) {
    Suite *s = suite_create("job_stream");
    TCase *tc = tcase_create("job_stream");
    tcase_add_test(tc, test_stream_and_resume);
    tcase_add_test(tc, test_streams_do_not_hold_threads);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
