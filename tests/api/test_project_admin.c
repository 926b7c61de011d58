/* Updating a project (PATCH /v1/projects/{id}), locking and archiving it,
 * and retiring a comparison (server/routes_project_admin.c).
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

static http_reply *patch(const test_daemon *d, const char *path, const char *body) {
    return expect_ok(http(d, "PATCH", path, d->admin, body, NULL));
}

/* {"order": [[first], [second]]} over the comparison's two candidates in
 * stored order (first: 0 or 1), from next's reply: next shows them in the
 * annotator's shuffled order, and ids ascend with the stored position. */
static void order_of(http_reply *next, int first, char *out, size_t len) {
    json_t *cands = json_object_get(next->json, "candidates");
    int64_t a = json_integer_value(json_object_get(json_array_get(cands, 0), "id"));
    int64_t b = json_integer_value(json_object_get(json_array_get(cands, 1), "id"));
    int64_t lo = a < b ? a : b, hi = a < b ? b : a;
    snprintf(out, len, "{\"order\":[[%lld],[%lld]]}", (long long)(first ? hi : lo),
             (long long)(first ? lo : hi));
}

START_TEST(test_patch_project) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    const int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"before\",\"k\":3,\"overlap\":1}");
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld", (long long)project);
    http_reply *r = patch(&d, path,
                          "{\"name\":\"after\",\"description\":\"rank for helpfulness\","
                          "\"overlap\":3}");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "name")), "after");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "description")),
                     "rank for helpfulness");
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "overlap")), 3);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "k")), 3);
    ck_assert(json_is_false(json_object_get(r->json, "locked")));
    reply_free(r);
    /* read back, and stored */
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "name")), "after");
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT overlap FROM projects WHERE id = ?1", project), 3);
    /* Bad fields: named, nothing changed. */
    call_expect_error(&d, "PATCH", path, d.admin, "{\"k\":2}", 400, "unknown_parameter", "k");
    call_expect_error(&d, "PATCH", path, d.admin, "{\"name\":\"x\",\"overlap\":0}", 400,
                      "invalid_value", "overlap");
    call_expect_error(&d, "PATCH", path, d.admin, "{\"name\":\"\"}", 400, "invalid_value", "name");
    call_expect_error(&d, "PATCH", path, d.admin, "{\"locked\":1}", 400, "invalid_type", "locked");
    call_expect_error(&d, "PATCH", path, d.admin, "{}", 400, "missing_required_parameter", NULL);
    call_expect_error(&d, "PATCH", "/v1/projects/999", d.admin, "{\"name\":\"x\"}", 404,
                      "project_not_found", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT overlap FROM projects WHERE id = ?1", project), 3);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Locked: no rankings and no next (409 project_locked), reads go on;
 * unlocked: ranking again. Archived: hidden from the list unless
 * include_archived=1, every write 409 project_archived, reads go on. */
START_TEST(test_lock_and_archive) {
    test_daemon d;
    char cpath[96];
    const int64_t project = daemon_with_project(&d, cpath);
    char ann[128];
    grant_project(&d, project, make_token(&d, "ann", "annotator", ann));
    const int64_t comparison =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    char path[96], next[128], rankings[128];
    snprintf(path, sizeof path, "/v1/projects/%lld", (long long)project);
    snprintf(next, sizeof next, "%s/next", cpath);
    snprintf(rankings, sizeof rankings, "/v1/comparisons/%lld/rankings", (long long)comparison);
    http_reply *r = expect_ok(http(&d, "GET", next, ann, NULL, NULL));
    char order[96];
    order_of(r, 0, order, sizeof order);
    reply_free(r);

    reply_free(patch(&d, path, "{\"locked\":true}"));
    call_expect_error(&d, "POST", rankings, ann, order, 409, "project_locked", NULL);
    call_expect_error(&d, "GET", next, ann, NULL, 409, "project_locked", NULL);
    reply_free(expect_ok(http(&d, "GET", cpath, ann, NULL, NULL)));
    /* still locked after another change; the lock's time is kept */
    const int64_t locked_at = db_int(&d, "SELECT locked_at FROM projects WHERE id = ?1", project);
    r = patch(&d, path, "{\"locked\":true,\"name\":\"p2\"}");
    ck_assert(json_is_true(json_object_get(r->json, "locked")));
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT locked_at FROM projects WHERE id = ?1", project),
                     locked_at);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings", 0), 0);
    reply_free(patch(&d, path, "{\"locked\":false}"));
    reply_free(expect_ok(http(&d, "POST", rankings, ann, order, NULL)));

    reply_free(patch(&d, path, "{\"archived\":true}"));
    r = expect_ok(http(&d, "GET", "/v1/projects", d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/projects?include_archived=1", ann, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert(json_is_true(
        json_object_get(json_array_get(json_object_get(r->json, "data"), 0), "archived")));
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/projects?include_archived=yes", d.admin, NULL, 400,
                      "invalid_value", "include_archived");
    call_expect_error(&d, "GET", next, ann, NULL, 409, "project_archived", NULL);
    call_expect_error(&d, "POST", cpath, d.admin,
                      "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", 409,
                      "project_archived", NULL);
    snprintf(rankings, sizeof rankings, "/v1/comparisons/%lld/retire", (long long)comparison);
    call_expect_error(&d, "POST", rankings, d.admin, NULL, 409, "project_archived", NULL);
    reply_free(expect_ok(http(&d, "GET", path, ann, NULL, NULL)));
    snprintf(rankings, sizeof rankings, "%s/pairs.jsonl", path);
    r = expect_ok(http(&d, "GET", rankings, d.admin, NULL, NULL));
    ck_assert_str_eq(r->body, "{\"prompt\":\"q\",\"chosen\":\"a\",\"rejected\":\"b\"}\n");
    reply_free(r);
    reply_free(patch(&d, path, "{\"archived\":false}"));
    r = expect_ok(http(&d, "GET", "/v1/projects", ann, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A retired comparison is not handed out, takes no ranking, keeps the
 * ones it has. */
START_TEST(test_retire_comparison) {
    test_daemon d;
    char cpath[96];
    const int64_t project = daemon_with_project(&d, cpath);
    char ann[128], ann2[128];
    grant_project(&d, project, make_token(&d, "ann", "annotator", ann));
    grant_project(&d, project, make_token(&d, "ann2", "annotator", ann2));
    const int64_t first =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"one\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    const int64_t second =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"two\",\"candidates\":[{\"text\":\"c\"},{\"text\":\"d\"}]}");
    char next[128], path[96];
    snprintf(next, sizeof next, "%s/next", cpath);
    /* ann holds a lease on the first; retiring ends it */
    http_reply *r = expect_ok(http(&d, "GET", next, ann, NULL, NULL));
    ck_assert_int_eq(reply_id(r), first);
    char order[96];
    order_of(r, 0, order, sizeof order);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/comparisons/%lld/retire", (long long)first);
    r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    ck_assert(json_is_true(json_object_get(r->json, "retired")));
    reply_free(r);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL))); /* twice: the same */
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM comparison_leases WHERE comparison_id = ?1", first), 0);
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)first);
    call_expect_error(&d, "POST", path, ann, order, 409, "comparison_retired", NULL);
    r = expect_ok(http(&d, "GET", next, ann2, NULL, NULL));
    ck_assert_int_eq(reply_id(r), second);
    reply_free(r);
    call_expect_error(&d, "POST", "/v1/comparisons/999/retire", d.admin, NULL, 404,
                      "comparison_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *project_admin_suite(void) {
    Suite *s = suite_create("project_admin");
    TCase *tc = tcase_create("project_admin");
    tcase_add_test(tc, test_patch_project);
    tcase_add_test(tc, test_lock_and_archive);
    tcase_add_test(tc, test_retire_comparison);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
