/* /v1/tokens: creating tokens, roles on the routes, secrets never listed or
 * stored, and revocation (REST and rlhfctl; an open event stream of a
 * revoked token ends).
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

START_TEST(test_tokens_and_roles) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char viewer[128], annotator[128];
    const char *names[] = {"vera", "anna"};
    const char *roles[] = {"viewer", "annotator"};
    char *out[] = {viewer, annotator};
    for (int i = 0; i < 2; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"role\":\"%s\"}", names[i], roles[i]);
        http_reply *r = http(&d, "POST", "/v1/tokens", d.admin, body, NULL);
        ck_assert_msg(r->status == 200, "%s", r->body);
        snprintf(out[i], 128, "%s", json_string_value(json_object_get(r->json, "token")));
        reply_free(r);
    }
    /* Only hashes are stored. */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM api_tokens WHERE token_sha256 LIKE "
                            "'rlhfd_%'",
                            0),
                     0);
    http_reply *r = http(&d, "GET", "/v1/jobs", viewer, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    call_expect_error(&d, "POST", "/v1/jobs", viewer, SHORT_JOB, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", annotator, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/tokens", viewer, "{\"name\":\"x\",\"role\":\"admin\"}", 403,
                      "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"vera\",\"role\":\"viewer\"}",
                      409, "name_taken", "name");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"z\",\"role\":\"root\"}", 400,
                      "invalid_value", "role");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"role\":\"viewer\"}", 400,
                      "invalid_value", "name");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin,
                      "{\"name\":\"q\",\"role\":\"viewer\",\"admin\":true}", 400,
                      "unknown_parameter", "admin");
    /* The list shows names and roles, never secrets. */
    r = http(&d, "GET", "/v1/tokens", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 3);
    ck_assert_ptr_null(strstr(r->body, "rlhfd_"));
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_token_revocation) {
    test_daemon d;
    daemon_init(&d);
    char worker[160];
    write_idle_worker(&d, worker, sizeof worker);
    daemon_start(&d, "--train-bin", worker, NULL);
    char viewer[128], anna[128];
    int64_t viewer_id, anna_id;
    viewer_id = make_token(&d, "vera", "viewer", viewer);
    anna_id = make_token(&d, "anna", "annotator", anna);
    reply_free(expect_ok(http(&d, "GET", "/v1/projects", anna, NULL, NULL)));

    /* REST: the token object comes back with revoked_at; the next request is 401. */
    char path[96];
    snprintf(path, sizeof path, "/v1/tokens/%lld/revoke", (long long)anna_id);
    http_reply *r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "name")), "anna");
    int64_t revoked_at = reply_int(r, "revoked_at");
    ck_assert_int_gt(revoked_at, 0);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/projects", anna, NULL, 401, "invalid_api_key", NULL);
    r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)); /* again: unchanged */
    ck_assert_int_eq(reply_int(r, "revoked_at"), revoked_at);
    reply_free(r);
    call_expect_error(&d, "POST", "/v1/tokens/999/revoke", d.admin, NULL, 404, "token_not_found",
                      NULL);
    call_expect_error(&d, "POST", path, viewer, NULL, 403, "insufficient_role", NULL);
    /* root (id 1) is the only active admin */
    call_expect_error(&d, "POST", "/v1/tokens/1/revoke", d.admin, NULL, 409, "last_admin_token",
                      NULL);

    /* An open event stream of the viewer ends when the viewer is revoked. */
    http_reply *job =
        expect_ok(http(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\"}", NULL));
    char stream_path[96], text[8192];
    snprintf(stream_path, sizeof stream_path, "/v1/jobs/%lld/stream",
             (long long)reply_int(job, "id"));
    reply_free(job);
    int fd = open_stream(&d, stream_path, viewer, text, sizeof text);
    ck_assert_msg(strncmp(text, "HTTP/1.1 200", 12) == 0, "%s", text);

    /* rlhfctl tokens revoke */
    char rlhfctl[4096], url[64], id[24], out[4096];
    bin_path("rlhfctl", rlhfctl, sizeof rlhfctl);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    snprintf(id, sizeof id, "%lld", (long long)viewer_id);
    char *argv[] = {rlhfctl, "--url", url, "--token", d.admin, "tokens", "revoke", id, NULL};
    ck_assert_int_eq(run_capture(argv, out, sizeof out), 0);
    call_expect_error(&d, "GET", "/v1/jobs", viewer, NULL, 401, "invalid_api_key", NULL);
    read_to_close(fd, text, sizeof text);
    ck_assert_msg(strstr(text, "event: error\ndata: {\"error\":") != NULL &&
                      strstr(text, "\"code\":\"invalid_api_key\"") != NULL,
                  "%s", text);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL", 0),
                     2);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *tokens_suite(void) {
    Suite *s = suite_create("tokens");
    TCase *tc = tcase_create("tokens");
    tcase_add_test(tc, test_tokens_and_roles);
    tcase_add_test(tc, test_token_revocation);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
