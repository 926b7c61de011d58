/* Per-project access (server/project_access.h): grants, the role ×
 * project matrix over every project-scoped route of the route table, the
 * filtered project list, and what revoking or removing an annotator keeps.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

enum { ROLE_ADMIN = 1, ROLE_ANNOTATOR = 2, ROLE_VIEWER = 4 };

/* A project with one comparison of two candidates: its id, the
 * comparison's in *comparison. */
static int64_t project_with_comparison(const test_daemon *d, const char *name,
                                       int64_t *comparison) {
    char body[96], path[96];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"k\":2,\"overlap\":2}", name);
    const int64_t project = create(d, "/v1/projects", d->admin, body);
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
    *comparison = create(d, path, d->admin,
                         "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}");
    return project;
}

static int route_roles(const json_t *route) {
    static const char *const names[] = {"admin", "annotator", "viewer"};
    int roles = 0;
    size_t i;
    json_t *name;
    json_array_foreach(json_object_get(route, "roles"), i,
                       name) for (int r = 0; r < 3; r++) if (strcmp(json_string_value(name),
                                                                    names[r]) == 0) roles |= 1 << r;
    return roles;
}

/* pattern with its first {id} as first and a second as second. */
static void fill_path(const char *pattern, int64_t first, int64_t second, char *out, size_t len) {
    size_t used = 0;
    int n = 0;
    for (const char *p = pattern; *p && used + 24 < len;) {
        if (strncmp(p, "{id}", 4) == 0) {
            used += (size_t)snprintf(out + used, len - used, "%lld",
                                     (long long)(n++ == 0 ? first : second));
            p += 4;
        } else
            out[used++] = *p++;
    }
    out[used] = '\0';
}

/* Every route under /v1/projects/{id} and /v1/comparisons/{id}, for each
 * role, on a project the token was granted and one it was not: a token
 * without the route's role gets 403 insufficient_role; an admin and a
 * member get past the access check (anything but 403); a non-member gets
 * 403 project_access_denied. */
START_TEST(test_role_project_matrix) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", "--read-rate", "0", NULL);
    char annotator[128], viewer[128], spare[128];
    const int64_t annotator_id = make_token(&d, "ann", "annotator", annotator);
    const int64_t viewer_id = make_token(&d, "vic", "viewer", viewer);
    const int64_t spare_id = make_token(&d, "spare", "annotator", spare);
    int64_t comparison[2];
    const int64_t project[2] = {project_with_comparison(&d, "granted", &comparison[0]),
                                project_with_comparison(&d, "other", &comparison[1])};
    grant_project(&d, project[0], annotator_id);
    grant_project(&d, project[0], viewer_id);
    const char *const tokens[3] = {annotator, viewer, d.admin};
    const int token_roles[3] = {ROLE_ANNOTATOR, ROLE_VIEWER, ROLE_ADMIN};

    json_t *routes = rlhfd_routes();
    int checked = 0;
    size_t i;
    json_t *route;
    json_array_foreach(routes, i, route) {
        const char *method = json_string_value(json_object_get(route, "method"));
        const char *pattern = json_string_value(json_object_get(route, "path"));
        const bool of_project = strncmp(pattern, "/v1/projects/{id}", 17) == 0;
        if (!of_project && strncmp(pattern, "/v1/comparisons/{id}", 20) != 0)
            continue;
        const int roles = route_roles(route);
        checked++;
        for (int t = 0; t < 3; t++)
            for (int granted = 1; granted >= 0; granted--) {
                const int which = granted ? 0 : 1;
                char path[160];
                /* a second {id} is a token that is no member: nothing to undo */
                fill_path(pattern, of_project ? project[which] : comparison[which], spare_id, path,
                          sizeof path);
                const bool body = strcmp(method, "GET") != 0 && strcmp(method, "DELETE") != 0;
                http_reply *r = http(&d, method, path, tokens[t], body ? "{}" : NULL, NULL);
                if ((roles & token_roles[t]) == 0)
                    expect_error(r, 403, "insufficient_role", NULL);
                else if (token_roles[t] == ROLE_ADMIN || granted)
                    ck_assert_msg(r->status != 403, "%s %s as %s (granted %d): %ld %s", method,
                                  path, tokens[t], granted, r->status, r->body);
                else
                    expect_error(r, 403, "project_access_denied", NULL);
                reply_free(r);
            }
    }
    /* every project-scoped route so far, and any added later */
    ck_assert_int_ge(checked, 20);
    json_decref(routes);

    /* Lists filter: each token lists only what it was granted. */
    http_reply *r = expect_ok(http(&d, "GET", "/v1/projects", annotator, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 0), "id")),
                     project[0]);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/projects", spare, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/projects", d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Grants: who can be granted what; a viewer member cannot rank; removing
 * a member or revoking its token keeps its rankings. */
START_TEST(test_members) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    char ann[128], view[128], admin2[128];
    const int64_t ann_id = make_token(&d, "ann", "annotator", ann);
    const int64_t view_id = make_token(&d, "view", "viewer", view);
    const int64_t admin_id = make_token(&d, "root2", "admin", admin2);
    int64_t comparison;
    const int64_t project = project_with_comparison(&d, "p", &comparison);
    char members[96], body[96], path[128];
    snprintf(members, sizeof members, "/v1/projects/%lld/members", (long long)project);

    snprintf(body, sizeof body, "{\"token_id\":%lld,\"role\":\"annotator\"}", (long long)view_id);
    call_expect_error(&d, "POST", members, d.admin, body, 400, "invalid_value", "role");
    snprintf(body, sizeof body, "{\"token_id\":%lld}", (long long)admin_id);
    call_expect_error(&d, "POST", members, d.admin, body, 400, "invalid_value", "token_id");
    call_expect_error(&d, "POST", members, d.admin, "{\"token_id\":999}", 400, "token_not_found",
                      "token_id");
    call_expect_error(&d, "POST", members, d.admin, "{}", 400, "missing_required_parameter",
                      "token_id");
    snprintf(body, sizeof body, "{\"token_id\":%lld,\"role\":\"owner\"}", (long long)ann_id);
    call_expect_error(&d, "POST", members, d.admin, body, 400, "invalid_value", "role");

    /* An annotator granted as a viewer sees the project but cannot rank. */
    snprintf(body, sizeof body, "{\"token_id\":%lld,\"role\":\"viewer\"}", (long long)ann_id);
    http_reply *r = expect_ok(http(&d, "POST", members, d.admin, body, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "role")), "viewer");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "token_role")), "annotator");
    reply_free(r);
    snprintf(path, sizeof path, "/v1/projects/%lld", (long long)project);
    reply_free(expect_ok(http(&d, "GET", path, ann, NULL, NULL)));
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/next", (long long)project);
    call_expect_error(&d, "GET", path, ann, NULL, 403, "project_access_denied", NULL);
    /* Granted again as an annotator (the role changes, one membership). */
    grant_project(&d, project, ann_id);
    grant_project(&d, project, view_id);
    r = expect_ok(http(&d, "GET", members, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    reply_free(r);
    r = expect_ok(http(&d, "GET", path, ann, NULL, NULL));
    json_t *cands = json_object_get(r->json, "candidates");
    /* the second stored candidate (b) best: next shows them shuffled, ids
     * ascend with the stored position */
    const int64_t c0 = json_integer_value(json_object_get(json_array_get(cands, 0), "id"));
    const int64_t c1 = json_integer_value(json_object_get(json_array_get(cands, 1), "id"));
    char order[96];
    snprintf(order, sizeof order, "{\"order\":[[%lld],[%lld]]}", (long long)(c0 > c1 ? c0 : c1),
             (long long)(c0 > c1 ? c1 : c0));
    reply_free(r);
    char rankings[96];
    snprintf(rankings, sizeof rankings, "/v1/comparisons/%lld/rankings", (long long)comparison);
    reply_free(expect_ok(http(&d, "POST", rankings, ann, order, NULL)));

    /* Removed: no access, the ranking stays (in the list and the export). */
    snprintf(path, sizeof path, "%s/%lld", members, (long long)ann_id);
    reply_free(expect_ok(http(&d, "DELETE", path, d.admin, NULL, NULL)));
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 404, "member_not_found", NULL);
    snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)comparison);
    call_expect_error(&d, "GET", path, ann, NULL, 403, "project_access_denied", NULL);
    r = expect_ok(http(&d, "GET", rankings, view, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);
    /* Revoked (deactivated): still its rankings, in the export too. */
    snprintf(path, sizeof path, "/v1/tokens/%lld/revoke", (long long)ann_id);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)));
    r = expect_ok(http(&d, "GET", rankings, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "annotator")),
                     "ann");
    reply_free(r);
    snprintf(path, sizeof path, "/v1/projects/%lld/export", (long long)project);
    r = expect_ok(http(&d, "GET", path, view, NULL, NULL));
    ck_assert_str_eq(r->body, "{\"prompt\":\"q\",\"chosen\":\"b\",\"rejected\":\"a\"}\n");
    reply_free(r);
    /* A revoked token cannot be granted again. */
    snprintf(body, sizeof body, "{\"token_id\":%lld}", (long long)ann_id);
    call_expect_error(&d, "POST", members, d.admin, body, 400, "token_not_found", "token_id");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A database from before schema 015: its annotator and viewer tokens are
 * members of its projects after the upgrade (the migration's grants);
 * newer tokens are not. */
START_TEST(test_existing_tokens_keep_access) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char ann[128], late[128];
    const int64_t ann_id = make_token(&d, "ann", "annotator", ann);
    int64_t comparison;
    const int64_t project = project_with_comparison(&d, "old", &comparison);
    daemon_stop(&d);
    /* What 015 does on an old database, replayed: no member rows, then the
     * migration's grant. */
    exec_sql(&d, "DELETE FROM project_members");
    char sql[1024];
    FILE *f;
    char path[4096];
    snprintf(path, sizeof path, "%s/schema/015_project_access.sql", test_repo_dir());
    ck_assert_ptr_nonnull(f = fopen(path, "r"));
    char *migration = calloc(1, 1 << 16);
    ck_assert_uint_gt(fread(migration, 1, (1 << 16) - 1, f), 0);
    fclose(f);
    const char *insert = strstr(migration, "INSERT INTO project_members");
    ck_assert_ptr_nonnull(insert);
    const char *end = strchr(insert, ';');
    snprintf(sql, sizeof sql, "%.*s;", (int)(end - insert), insert);
    free(migration);
    exec_sql(&d, sql);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM project_members WHERE token_id = ?1", ann_id),
                     1);
    daemon_start(&d, NULL);
    const int64_t late_id = make_token(&d, "late", "annotator", late);
    snprintf(path, sizeof path, "/v1/projects/%lld", (long long)project);
    reply_free(expect_ok(http(&d, "GET", path, ann, NULL, NULL)));
    call_expect_error(&d, "GET", path, late, NULL, 403, "project_access_denied", NULL);
    ck_assert_int_gt(late_id, ann_id);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *project_access_suite(void) {
    Suite *s = suite_create("project_access");
    TCase *tc = tcase_create("project_access");
    tcase_add_test(tc, test_role_project_matrix);
    tcase_add_test(tc, test_members);
    tcase_add_test(tc, test_existing_tokens_keep_access);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
