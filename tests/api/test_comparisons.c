/* Preference collection one comparison at a time: projects, comparisons
 * (provided and sampled candidates), next (leases, overlap, and distinct
 * items for concurrent annotators), rankings and the pairs they give.
 */
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "http.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* GET next as token: the comparison id, or 0 when none is left. */
static int64_t next_for(const test_daemon *d, int64_t project, const char *token) {
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/next", (long long)project);
    http_reply *r = http(d, "GET", path, token, NULL, NULL);
    int64_t id = 0;
    if (r->status == 404)
        expect_error(r, 404, "no_comparison_available", NULL);
    else {
        expect_ok(r);
        id = reply_id(r);
        ck_assert(json_is_integer(json_object_get(r->json, "lease_expires_at")));
    }
    reply_free(r);
    return id;
}

/* The candidate ids of a comparison, in position order. */
static void candidate_ids(const test_daemon *d, int64_t comparison, int64_t *ids, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)comparison);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *cands = json_object_get(r->json, "candidates");
    ck_assert_int_eq(json_array_size(cands), n);
    for (size_t i = 0; i < n; i++)
        ids[i] = json_integer_value(json_object_get(json_array_get(cands, i), "id"));
    reply_free(r);
}

START_TEST(test_preference_collection) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--max-body-bytes", "3000000", NULL);
    char a1[128], a2[128], a3[128], viewer[128];
    make_token(&d, "ann1", "annotator", a1);
    make_token(&d, "ann2", "annotator", a2);
    make_token(&d, "ann3", "annotator", a3);
    make_token(&d, "vera", "viewer", viewer);
    /* A checkpoint for a sampled candidate to point at. */
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) VALUES "
                 "(1, 'ppo-control', 'succeeded', '{}', 1, 0); INSERT INTO checkpoints (id, "
                 "job_id, step, kind, bytes, sha256, size_bytes, created_at) VALUES (5, 1, 10, "
                 "'final', x'00', printf('%064d', 0), 1, 0)");

    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"p\",\"k\":10}", 400,
                      "invalid_value", "k");
    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"p\",\"overlap\":\"2\"}",
                      400, "invalid_type", "overlap");
    call_expect_error(&d, "POST", "/v1/projects", d.admin, "{\"k\":3}", 400, "invalid_value",
                      "name");
    call_expect_error(&d, "POST", "/v1/projects", a1, "{\"name\":\"p\"}", 403, "insufficient_role",
                      NULL);
    int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"helpful\",\"k\":3,\"overlap\":2}");
    grant_project_all(&d, project);
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);

    /* Comparison validation. */
    struct {
        const char *body, *code, *param;
    } bad[] = {
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"}]}", "invalid_value", "candidates"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"},{\"text\":\"c\"},"
         "{\"text\":\"d\"}]}",
         "invalid_value", "candidates"},
        {"{\"prompt\":\"q\",\"candidates\":{}}", "invalid_type", "candidates"},
        {"{\"prompt\":\"\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", "invalid_value",
         "prompt"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":null}]}", "invalid_value",
         "candidates[1].text"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"model\":\"x\"},{\"text\":\"b\"}]}",
         "unknown_parameter", "candidates[0].model"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"checkpoint\"},"
         "{\"text\":\"b\"}]}",
         "invalid_value", "candidates[0].checkpoint_id"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"human\"},"
         "{\"text\":\"b\"}]}",
         "invalid_value", "candidates[0].source"},
        {"{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\",\"source\":\"checkpoint\","
         "\"checkpoint_id\":99},{\"text\":\"b\"}]}",
         "checkpoint_not_found", "candidates[0].checkpoint_id"},
        {"[]", "invalid_json", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        call_expect_error(&d, "POST", cpath, d.admin, bad[i].body, 400, bad[i].code, bad[i].param);
    call_expect_error(&d, "POST", "/v1/projects/99/comparisons", d.admin,
                      "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", 404,
                      "project_not_found", NULL);
    call_expect_error(&d, "POST", cpath, a1,
                      "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"b\"}]}", 403,
                      "insufficient_role", NULL);
    /* A string over the limit in a JSON body names its path. */
    size_t big_len = HTTP_JSON_MAX_STRING + 200;
    char *big = malloc(big_len);
    int n = snprintf(big, 64, "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":\"");
    memset(big + n, 'y', HTTP_JSON_MAX_STRING + 1);
    n += HTTP_JSON_MAX_STRING + 1;
    snprintf(big + n, 16, "\"}]}");
    call_expect_error(&d, "POST", cpath, d.admin, big, 400, "string_too_long",
                      "candidates[1].text");
    free(big);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons", 0), 0);

    int64_t c1 =
        create(&d, cpath, d.admin,
               "{\"prompt\":\"Explain WAL\",\"candidates\":[{\"text\":\"A log.\"},"
               "{\"text\":\"A journal.\"},{\"text\":\"Sampled.\",\"source\":\"checkpoint\","
               "\"checkpoint_id\":5}]}");
    int64_t c2 = create(&d, cpath, d.admin,
                        "{\"prompt\":\"Say hi\",\"candidates\":[{\"text\":\"hi\"},{\"text\":"
                        "\"hello\"}]}");
    int64_t ids[3];
    candidate_ids(&d, c1, ids, 3);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM candidates WHERE comparison_id = ?1 AND "
                            "source = 'checkpoint' AND source_checkpoint_id = 5",
                            c1),
                     1);

    /* next: least-ranked first, the same one until answered, and never more
     * annotators at once than the overlap (2). */
    ck_assert_int_eq(next_for(&d, project, a1), c1);
    ck_assert_int_eq(next_for(&d, project, a1), c1);
    ck_assert_int_eq(next_for(&d, project, a2), c1);
    ck_assert_int_eq(next_for(&d, project, a3), c2); /* c1 is leased twice */
    char npath[96];
    snprintf(npath, sizeof npath, "/v1/projects/%lld/comparisons/next", (long long)project);
    call_expect_error(&d, "GET", npath, viewer, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/99/comparisons/next", a1, NULL, 404,
                      "project_not_found", NULL);

    /* Ranking validation. */
    char rpath[96], body[256];
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c1);
    call_expect_error(&d, "POST", rpath, a1, "{}", 400, "missing_required_parameter", "order");
    call_expect_error(&d, "POST", rpath, a1, "{\"order\":5}", 400, "invalid_type", "order");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[]]}", (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "invalid_type", "order[1]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[0], 12345LL,
             (long long)ids[2]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "unknown_candidate", "order[1][0]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[0],
             (long long)ids[1], (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "duplicate_candidate", "order[1][1]");
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)ids[0],
             (long long)ids[1]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "missing_candidate", "order");
    snprintf(body, sizeof body, "{\"order\":[[%lld]],\"skip\":true}", (long long)ids[0]);
    call_expect_error(&d, "POST", rpath, a1, body, 400, "invalid_value", "skip");
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true,\"note\":12}", 400, "invalid_value",
                      "note");
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true,\"when\":1}", 400, "unknown_parameter",
                      "when");
    call_expect_error(&d, "POST", rpath, viewer, "{\"skip\":true}", 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/comparisons/999/rankings", a1, "{\"skip\":true}", 404,
                      "comparison_not_found", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings", 0), 0);

    /* ann1: best first, a tie for second → 2 pairs. ann2: a strict order → 3. */
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]],\"note\":\"close call\"}",
             (long long)ids[0], (long long)ids[2], (long long)ids[1]);
    http_reply *r = expect_ok(http(&d, "POST", rpath, a1, body, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 2);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "annotator")), "ann1");
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "note")), "close call");
    /* The order comes back grouped, ties in candidate position order. */
    json_t *order = json_object_get(r->json, "order");
    ck_assert_int_eq(json_array_size(order), 2);
    ck_assert_int_eq(json_integer_value(json_array_get(json_array_get(order, 1), 0)), ids[1]);
    json_t *posted1 = json_incref(r->json); /* compared with what GET reads back, below */
    reply_free(r);
    call_expect_error(&d, "POST", rpath, a1, "{\"skip\":true}", 409, "already_ranked", NULL);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)ids[2],
             (long long)ids[1], (long long)ids[0]);
    r = expect_ok(http(&d, "POST", rpath, a2, body, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 3);
    ck_assert(json_is_null(json_object_get(r->json, "note")));
    json_t *posted2 = json_incref(r->json);
    reply_free(r);
    /* c1 has its two rankings: ann3 without a lease is refused. */
    call_expect_error(&d, "POST", rpath, a3, body, 409, "overlap_reached", NULL);
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM comparison_leases WHERE comparison_id = ?1", c1), 0);

    /* c2 now: ann1 gets it (beside ann3's lease); ann3 skips it, which
     * counts as their answer but not toward the overlap, so ann2 gets it too. */
    ck_assert_int_eq(next_for(&d, project, a1), c2);
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c2);
    r = expect_ok(http(&d, "POST", rpath, a3, "{\"skip\":true,\"note\":\"unclear\"}", NULL));
    ck_assert(json_is_true(json_object_get(r->json, "skipped")));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 0);
    reply_free(r);
    ck_assert_int_eq(next_for(&d, project, a3), 0); /* answered both */
    ck_assert_int_eq(next_for(&d, project, a2), c2);
    int64_t c2ids[2];
    candidate_ids(&d, c2, c2ids, 2);
    snprintf(body, sizeof body, "{\"order\":[[%lld,%lld]]}", (long long)c2ids[0],
             (long long)c2ids[1]);
    r = expect_ok(http(&d, "POST", rpath, a2, body, NULL)); /* a full tie: no pairs */
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 0);
    reply_free(r);
    ck_assert_int_eq(next_for(&d, project, a2), 0);

    /* Pairs: 2 + 3, as training-ready text, newest first, paginated. */
    char ppath[128];
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs?limit=3", (long long)project);
    r = expect_ok(http(&d, "GET", ppath, viewer, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 3);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    json_t *p0 = json_array_get(data, 0);
    ck_assert_str_eq(json_string_value(json_object_get(p0, "annotator")), "ann2");
    ck_assert_str_eq(json_string_value(json_object_get(p0, "prompt")), "Explain WAL");
    int64_t last = json_integer_value(json_object_get(r->json, "last_id"));
    reply_free(r);
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs?after=%lld", (long long)project,
             (long long)last);
    r = expect_ok(http(&d, "GET", ppath, d.admin, NULL, NULL));
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    /* ann1 put "A log." first: it is chosen over both others. */
    for (size_t i = 0; i < 2; i++) {
        json_t *p = json_array_get(data, i);
        ck_assert_str_eq(json_string_value(json_object_get(p, "annotator")), "ann1");
        ck_assert_str_eq(json_string_value(json_object_get(p, "chosen")), "A log.");
    }
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM preference_pairs", 0), 5);
    snprintf(ppath, sizeof ppath, "/v1/projects/%lld/pairs", (long long)project);
    call_expect_error(&d, "GET", ppath, a1, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/99/pairs", d.admin, NULL, 404, "project_not_found",
                      NULL);

    /* Reads: annotators and viewers see projects and comparisons. */
    r = expect_ok(http(&d, "GET", cpath, a1, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 1), "n_rankings")),
                     2);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/projects", viewer, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "n_comparisons")),
                     2);
    reply_free(r);
    snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)c1);
    r = expect_ok(http(&d, "GET", rpath, viewer, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    /* The write's answer is built from what it wrote; it equals the read. */
    ck_assert(json_equal(json_array_get(json_object_get(r->json, "data"), 0), posted2));
    ck_assert(json_equal(json_array_get(json_object_get(r->json, "data"), 1), posted1));
    json_decref(posted1);
    json_decref(posted2);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/comparisons/999", a1, NULL, 404, "comparison_not_found",
                      NULL);
    call_expect_error(&d, "GET", "/v1/projects/999", a1, NULL, 404, "project_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/comparisons/999/rankings", d.admin, NULL, 404,
                      "comparison_not_found", NULL);

    /* Every acknowledged ranking survives a SIGKILL of the daemon. */
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings", 0), 4);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM ranking_entries", 0), 3 + 3 + 2);
    daemon_cleanup(&d);
}
END_TEST

enum { N_NEXT = 8 };

typedef struct next_client {
    const test_daemon *d;
    char path[128], token[128];
    pthread_barrier_t *start;
    long status;
    int64_t id;
} next_client;

static void *call_next(void *arg) {
    next_client *c = arg;
    pthread_barrier_wait(c->start);
    http_reply *r = http(c->d, "GET", c->path, c->token, NULL, NULL);
    c->status = r->status;
    c->id = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    return NULL;
}

/* N annotators ask for the next item at once in a project of N items with
 * overlap 1: every one gets a different item (the pick and the lease are
 * one transaction of the group-commit writer), asking again returns the
 * same one, and one more annotator finds nothing left. */
START_TEST(test_next_concurrent_distinct) {
    test_daemon d;
    char path[96];
    const int64_t project = daemon_with_project(&d, path);
    http_reply *r;
    for (int i = 0; i < N_NEXT; i++)
        reply_free(expect_ok(http(&d, "POST", path, d.admin,
                                  "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                                  "\"b\"}]}",
                                  NULL)));
    static next_client clients[N_NEXT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_NEXT);
    pthread_t threads[N_NEXT];
    for (int i = 0; i < N_NEXT; i++) {
        char name[32];
        snprintf(name, sizeof name, "annotator%d", i);
        clients[i] = (next_client){.d = &d, .start = &start};
        make_token(&d, name, "annotator", clients[i].token);
        snprintf(clients[i].path, sizeof clients[i].path, "%s/next", path);
    }
    grant_project_all(&d, project);
    for (int i = 0; i < N_NEXT; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, call_next, &clients[i]), 0);
    for (int i = 0; i < N_NEXT; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N_NEXT; i++) {
        ck_assert_int_eq(clients[i].status, 200);
        for (int j = 0; j < i; j++)
            ck_assert_msg(clients[i].id != clients[j].id, "annotators %d and %d both got %lld", i,
                          j, (long long)clients[i].id);
        r = expect_ok(http(&d, "GET", clients[i].path, clients[i].token, NULL, NULL));
        ck_assert_int_eq(reply_int(r, "id"), clients[i].id);
        reply_free(r);
    }
    char late[128];
    grant_project(&d, project, make_token(&d, "late", "annotator", late));
    call_expect_error(&d, "GET", clients[0].path, late, NULL, 404, "no_comparison_available", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparison_leases", 0), N_NEXT);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *comparisons_suite(void) {
    Suite *s = suite_create("comparisons");
    TCase *tc = tcase_create("comparisons");
    tcase_add_test(tc, test_preference_collection);
    tcase_add_test(tc, test_next_concurrent_distinct);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
