/* What every route of rlhfd shares: the health probes and the request
 * errors (unknown routes and methods, missing or forged tokens, bad JSON, the
 * body cap), Idempotency-Key replay, and the per-token write rate limit over
 * HTTP (the bucket's arithmetic is tests/unit/test_ratelimit.c). A real
 * daemon on loopback with a fresh database per test (test_server_util.h).
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

START_TEST(test_health_and_request_errors) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--max-body-bytes", "2048", NULL);
    http_reply *r = http(&d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "ok");
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", r->request_id);
    reply_free(r);
    r = http(&d, "GET", "/readyz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "schema_version")),
                     db_schema_version());
    ck_assert_str_ne(r->request_id, first_id); /* ids are per request */
    reply_free(r);

    call_expect_error(&d, "GET", "/v1/nothing", d.admin, NULL, 404, "unknown_route", NULL);
    call_expect_error(&d, "DELETE", "/v1/jobs", d.admin, NULL, 405, "method_not_allowed", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", NULL, NULL, 401, "missing_api_key", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", "rlhfd_forged", NULL, 401, "invalid_api_key", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":", 400, "invalid_json", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "[1,2]", 400, "invalid_json", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"a\":1,\"a\":2}", 400, "invalid_json",
                      NULL);
    /* jansson's message quotes the text near the error, here the middle of
     * a two-byte character (found by the request fuzzer): the reply is
     * still a JSON error */
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"a\\u0\xd0\x94\x39\"}", 400,
                      "invalid_json", NULL);
    char big[4096];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{', big[sizeof big - 2] = '}', big[sizeof big - 1] = '\0';
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, big, 413, "body_too_large", NULL);
    /* the connection is still usable afterwards */
    r = http(&d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_idempotency_keys) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const char *body = "{\"name\":\"once\",\"format\":\"prompts\"}";
    http_reply *r =
        expect_ok(http(&d, "POST", "/v1/datasets", d.admin, body, "Idempotency-Key: k1"));
    int64_t id = reply_id(r);
    ck_assert(!r->replayed);
    char *first = strdup(r->body);
    reply_free(r);
    r = expect_ok(http(&d, "POST", "/v1/datasets", d.admin, body, "Idempotency-Key: k1"));
    ck_assert(r->replayed);
    ck_assert_str_eq(r->body, first); /* byte for byte */
    free(first);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM datasets", 0), 1);
    /* Same key, different body or path: refused. */
    r = http(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"twice\",\"format\":\"prompts\"}",
             "Idempotency-Key: k1");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    r = http(&d, "POST", "/v1/projects", d.admin, body, "Idempotency-Key: k1");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    char key[300] = "Idempotency-Key: ";
    memset(key + strlen(key), 'a', 256);
    r = http(&d, "POST", "/v1/datasets", d.admin, body, key);
    expect_error(r, 400, "invalid_value", "Idempotency-Key");
    reply_free(r);
    /* Keys are per token: another admin's k1 is a new request. */
    char other[128];
    make_token(&d, "root2", "admin", other);
    r = expect_ok(http(&d, "POST", "/v1/datasets", other, body, "Idempotency-Key: k1"));
    ck_assert(!r->replayed);
    ck_assert_int_ne(reply_id(r), id);
    reply_free(r);
    /* A failed request stores nothing under its key. */
    r = http(&d, "POST", "/v1/datasets", d.admin, "{\"name\":\"\"}", "Idempotency-Key: k2");
    expect_error(r, 400, "invalid_value", "name");
    reply_free(r);
    reply_free(expect_ok(http(&d, "POST", "/v1/datasets", d.admin,
                              "{\"name\":\"fixed\",\"format\":\"sft\"}", "Idempotency-Key: k2")));

    /* An upload retried after it succeeded replays, though the dataset is full. */
    const char *file = "{\"prompt\":\"a\"}\n";
    r = expect_ok(upload_dataset(&d, id, file, strlen(file), "Idempotency-Key: up"));
    reply_free(r);
    r = expect_ok(upload_dataset(&d, id, file, strlen(file), "Idempotency-Key: up"));
    ck_assert(r->replayed);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rows")), 1);
    reply_free(r);
    r = upload_dataset(&d, id, "{\"prompt\":\"b\"}\n", 15, "Idempotency-Key: up");
    expect_error(r, 409, "idempotency_key_reused", "Idempotency-Key");
    reply_free(r);
    r = upload_dataset(&d, id, file, strlen(file), "Idempotency-Key: up2");
    expect_error(r, 409, "dataset_not_empty", NULL);
    reply_free(r);

    /* Rankings and jobs too; and the keys survive a restart. */
    int64_t project = create(&d, "/v1/projects", d.admin, "{\"name\":\"p\"}");
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);
    const char *cbody = "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}";
    r = expect_ok(http(&d, "POST", cpath, d.admin, cbody, "Idempotency-Key: c"));
    int64_t c = reply_id(r);
    reply_free(r);
    const char *job = "{\"type\":\"ppo-control\",\"max_attempts\":1,\"hyperparameters\":"
                      "{\"total_steps\":1024}}";
    r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, job, "Idempotency-Key: j"));
    int64_t job_id = reply_id(r);
    reply_free(r);
    daemon_stop(&d);
    daemon_start(&d, NULL);
    r = expect_ok(http(&d, "POST", cpath, d.admin, cbody, "Idempotency-Key: c"));
    ck_assert(r->replayed);
    ck_assert_int_eq(reply_id(r), c);
    reply_free(r);
    r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, job, "Idempotency-Key: j"));
    ck_assert(r->replayed);
    ck_assert_int_eq(reply_id(r), job_id);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons", 0), 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_rate_limit_http) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "1", "--write-burst", "3", NULL);
    char admin2[128];
    make_token(&d, "second", "admin", admin2); /* the first of root's 3 */
    /* Two more writes of root's bucket pass (a 400 still counts: the limit
     * is taken when the headers arrive). */
    for (int i = 0; i < 2; i++)
        call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{}", 400, "missing_required_parameter",
                          "type");
    /* At 1 write per second the bucket refills slowly; within a few more
     * writes one is refused (each would need 1 s to pass). */
    http_reply *r = NULL;
    for (int i = 0; i < 5; i++) {
        r = http(&d, "POST", "/v1/jobs", d.admin, "{}", NULL);
        if (r->status == 429)
            break;
        reply_free(r);
        r = NULL;
    }
    ck_assert_msg(r != NULL, "no 429 after 8 writes at 1/s with bursts of 3");
    expect_error(r, 429, "rate_limit_exceeded", NULL);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r->json, "error"), "type")),
                     "rate_limit_error");
    ck_assert_str_eq(r->retry_after, "1");
    reply_free(r);
    /* Reads are not limited; another token has its own bucket. */
    reply_free(expect_ok(http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL)));
    call_expect_error(&d, "POST", "/v1/jobs", admin2, "{}", 400, "missing_required_parameter",
                      "type");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *requests_suite(void) {
    Suite *s = suite_create("requests");
    TCase *tc = tcase_create("requests");
    tcase_add_test(tc, test_health_and_request_errors);
    tcase_add_test(tc, test_idempotency_keys);
    tcase_add_test(tc, test_rate_limit_http);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
