/* Issue 18's annotation controls through a real rlhfd: project guidelines,
 * label schema, lease length and gold rate; blind, shuffled presentation
 * (metadata and gold hidden from annotators); labels validated and
 * exported; editing, withdrawing and revisiting skips; gold comparisons at
 * the project's rate; the quality report (alpha per annotator against the
 * hand example of tests/lib/agreement_example.h) and the position-bias
 * report. The statistics themselves are tests/unit/test_annotation_quality.c.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement_example.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* GET next as token: the reply (caller frees), asserted 200. */
static http_reply *next_reply(const test_daemon *d, int64_t project, const char *token) {
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/next", (long long)project);
    return expect_ok(http(d, "GET", path, token, NULL, NULL));
}

static http_reply *post_ranking(const test_daemon *d, int64_t comparison, const char *token,
                                const char *body) {
    char path[96];
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)comparison);
    return http(d, "POST", path, token, body, NULL);
}

/* The i-th id of the reply's array member key. */
static int64_t nth_id(http_reply *r, const char *key, size_t i) {
    return json_integer_value(json_array_get(json_object_get(r->json, key), i));
}

START_TEST(test_labels_blind_edit_skip) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char a1[128], a2[128], viewer[128];
    make_token(&d, "ann1", "annotator", a1);
    make_token(&d, "ann2", "annotator", a2);
    make_token(&d, "vera", "viewer", viewer);

    /* Project settings: each bad one named. */
    struct {
        const char *body, *code, *param;
    } bad[] = {
        {"{\"name\":\"p\",\"lease_seconds\":5}", "invalid_value", "lease_seconds"},
        {"{\"name\":\"p\",\"gold_rate\":1.5}", "invalid_value", "gold_rate"},
        {"{\"name\":\"p\",\"guidelines\":3}", "invalid_value", "guidelines"},
        {"{\"name\":\"p\",\"label_schema\":{\"ratings\":[{\"name\":\"q\",\"min\":3,\"max\":1}]}}",
         "invalid_value", "label_schema.ratings[0].max"},
        {"{\"name\":\"p\",\"label_schema\":{\"flags\":[\"x\",\"x\"]}}", "invalid_value",
         "label_schema.flags[1]"},
        {"{\"name\":\"p\",\"label_schema\":{\"colours\":[]}}", "unknown_parameter",
         "label_schema.colours"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        call_expect_error(&d, "POST", "/v1/projects", d.admin, bad[i].body, 400, bad[i].code,
                          bad[i].param);
    http_reply *r = expect_ok(
        http(&d, "POST", "/v1/projects", d.admin,
             "{\"name\":\"helpful\",\"k\":3,\"overlap\":2,\"lease_seconds\":120,\"guidelines\":\"# "
             "Rules\\nPrefer *honest* answers.\",\"label_schema\":{\"ratings\":[{\"name\":"
             "\"overall\",\"min\":1,\"max\":7}],\"flags\":[\"harmful\",\"refusal\"]}}",
             NULL));
    int64_t project = reply_id(r);
    grant_project_all(&d, project);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "lease_seconds")), 120);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "guidelines")),
                     "# Rules\nPrefer *honest* answers.");
    json_t *schema = json_object_get(r->json, "label_schema");
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(schema, "ratings"), 0), "max")),
                     7);
    ck_assert_int_eq(json_array_size(json_object_get(schema, "flags")), 2);
    reply_free(r);
    /* Annotators read the settings from the project. */
    char path[128];
    snprintf(path, sizeof path, "/v1/projects/%lld", (long long)project);
    r = expect_ok(http(&d, "GET", path, a1, NULL, NULL));
    ck_assert_int_eq(json_real_value(json_object_get(r->json, "gold_rate")) == 0, 1);
    reply_free(r);

    /* A comparison whose candidates carry metadata. */
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
    call_expect_error(&d, "POST", path, d.admin,
                      "{\"prompt\":\"p\",\"candidates\":[{\"text\":\"a\",\"metadata\":3},"
                      "{\"text\":\"b\"}]}",
                      400, "invalid_type", "candidates[0].metadata");
    r = expect_ok(http(&d, "POST", path, d.admin,
                       "{\"prompt\":\"Name a colour.\",\"candidates\":[{\"text\":\"red\","
                       "\"metadata\":{\"model\":\"m-7b\",\"temperature\":0.7}},{\"text\":"
                       "\"blue\",\"metadata\":{\"model\":\"m-70b\"}},{\"text\":\"green\"}]}",
                       NULL));
    int64_t c = reply_id(r);
    json_t *cand0 = json_array_get(json_object_get(r->json, "candidates"), 0);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(cand0, "metadata"), "model")), "m-7b");
    int64_t ids[3];
    for (size_t i = 0; i < 3; i++)
        ids[i] = json_integer_value(
            json_object_get(json_array_get(json_object_get(r->json, "candidates"), i), "id"));
    reply_free(r);

    /* The annotator sees neither metadata nor source, in their own order. */
    r = next_reply(&d, project, a1);
    ck_assert_int_eq(reply_id(r), c);
    json_t *cands = json_object_get(r->json, "candidates");
    int64_t shown[3];
    for (size_t i = 0; i < 3; i++) {
        json_t *x = json_array_get(cands, i);
        ck_assert_ptr_null(json_object_get(x, "metadata"));
        ck_assert_ptr_null(json_object_get(x, "source"));
        ck_assert_ptr_null(json_object_get(x, "checkpoint_id"));
        shown[i] = json_integer_value(json_object_get(x, "id"));
        ck_assert_int_eq(nth_id(r, "shown_order", i), shown[i]);
    }
    ck_assert_ptr_null(json_object_get(r->json, "gold"));
    ck_assert(shown[0] + shown[1] + shown[2] == ids[0] + ids[1] + ids[2]);
    reply_free(r);
    /* The lease is the project's 120 s from the serve. */
    ck_assert_int_eq(db_int(&d,
                            "SELECT lease_expires_ms - served_ms FROM comparison_leases WHERE "
                            "comparison_id = ?1",
                            c),
                     120000);
    /* The same order again (GET by id too); asking again renews the lease
     * but keeps when it was served. */
    int64_t served =
        db_int(&d, "SELECT served_ms FROM comparison_leases WHERE comparison_id = ?1", c);
    r = next_reply(&d, project, a1);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(nth_id(r, "shown_order", i), shown[i]);
    reply_free(r);
    ck_assert_int_eq(
        db_int(&d, "SELECT served_ms FROM comparison_leases WHERE comparison_id = ?1", c), served);
    snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)c);
    r = expect_ok(http(&d, "GET", path, a1, NULL, NULL));
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(nth_id(r, "shown_order", i), shown[i]);
    reply_free(r);
    /* A viewer sees no metadata either; an admin does. */
    r = expect_ok(http(&d, "GET", path, viewer, NULL, NULL));
    ck_assert_ptr_null(
        json_object_get(json_array_get(json_object_get(r->json, "candidates"), 0), "metadata"));
    reply_free(r);

    /* Labels: validated, errors naming the field. */
    char body[512];
    struct {
        const char *labels, *code, *param;
    } bad_labels[] = {
        {"[{\"candidate_id\":%lld,\"ratings\":{\"overall\":9}}]", "invalid_value",
         "labels[0].ratings.overall"},
        {"[{\"candidate_id\":%lld,\"flags\":[\"rude\"]}]", "unknown_flag", "labels[0].flags[0]"},
        {"[{\"candidate_id\":%lld,\"ratings\":{\"style\":1}}]", "unknown_rating",
         "labels[0].ratings.style"},
        {"[{\"candidate_id\":%lld,\"stars\":1}]", "unknown_parameter", "labels[0].stars"},
    };
    for (size_t i = 0; i < sizeof bad_labels / sizeof bad_labels[0]; i++) {
        char labels[256];
        snprintf(labels, sizeof labels, bad_labels[i].labels, (long long)ids[0]);
        snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]],\"labels\":%s}",
                 (long long)ids[0], (long long)ids[1], (long long)ids[2], labels);
        r = post_ranking(&d, c, a1, body);
        expect_error(r, 400, bad_labels[i].code, bad_labels[i].param);
        reply_free(r);
    }
    r = post_ranking(&d, c, a1, "{\"order\":[[1]],\"skip_reason\":\"offensive\"}");
    expect_error(r, 400, "invalid_value", "skip_reason");
    reply_free(r);
    snprintf(body, sizeof body,
             "{\"order\":[[%lld],[%lld],[%lld]],\"labels\":[{\"candidate_id\":%lld,\"ratings\":"
             "{\"overall\":6},\"flags\":[\"refusal\"]},{\"candidate_id\":%lld,\"ratings\":{"
             "\"overall\":2}}]}",
             (long long)ids[0], (long long)ids[1], (long long)ids[2], (long long)ids[0],
             (long long)ids[2]);
    r = expect_ok(post_ranking(&d, c, a1, body));
    int64_t ranking = reply_id(r);
    json_t *label0 = json_array_get(json_object_get(r->json, "labels"), 0);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(label0, "ratings"), "overall")), 6);
    for (size_t i = 0; i < 3; i++)
        ck_assert_int_eq(nth_id(r, "shown_order", i), shown[i]);
    ck_assert(json_is_integer(json_object_get(r->json, "time_ms")));
    ck_assert(json_integer_value(json_object_get(r->json, "time_ms")) >= 0);
    /* The answer is the ranking as a read shows it (the writer builds it
     * from what it inserted, without reading it back). */
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)c);
    http_reply *listed = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    json_t *read_back = json_array_get(json_object_get(listed->json, "data"), 0);
    ck_assert_msg(json_equal(read_back, r->json), "posted %s\nread %s", r->body, listed->body);
    reply_free(listed);
    reply_free(r);

    /* The export carries the labels and the shown order. */
    snprintf(path, sizeof path, "/v1/projects/%lld/rankings.jsonl", (long long)project);
    r = expect_ok(http(&d, "GET", path, viewer, NULL, NULL));
    json_t *line = json_loadb(r->body, r->body_len, JSON_DISABLE_EOF_CHECK, NULL);
    ck_assert_ptr_nonnull(line);
    ck_assert_str_eq(
        json_string_value(json_array_get(
            json_object_get(json_array_get(json_object_get(line, "labels"), 0), "flags"), 0)),
        "refusal");
    ck_assert_int_eq(json_integer_value(json_array_get(json_object_get(line, "shown_order"), 0)),
                     shown[0]);
    json_decref(line);
    reply_free(r);

    /* Edit: only one's own; the pairs follow the new order. */
    snprintf(path, sizeof path, "/v1/rankings/%lld", (long long)ranking);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[2],
             (long long)ids[0], (long long)ids[1]);
    call_expect_error(&d, "PUT", path, a2, body, 403, "not_your_ranking", NULL);
    call_expect_error(&d, "PUT", "/v1/rankings/9999", a1, body, 404, "ranking_not_found", NULL);
    call_expect_error(&d, "PUT", path, viewer, body, 403, "insufficient_role", NULL);
    r = expect_ok(http(&d, "PUT", path, a1, body, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "order")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_pairs")), 2);
    ck_assert(json_is_integer(json_object_get(r->json, "updated_at")));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "labels")), 0);
    reply_free(r);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM preference_pairs WHERE ranking_id = ?1 AND "
                            "chosen_candidate_id = (SELECT max(id) FROM candidates)",
                            ranking),
                     2);

    /* A skip with a reason, listed among one's skips, withdrawn: then the
     * comparison comes back (revisited). */
    r = next_reply(&d, project, a2);
    ck_assert_int_eq(reply_id(r), c);
    reply_free(r);
    r = post_ranking(&d, c, a2, "{\"skip\":true,\"skip_reason\":\"too_long\"}");
    expect_error(r, 400, "invalid_value", "skip_reason");
    reply_free(r);
    r = expect_ok(post_ranking(&d, c, a2, "{\"skip\":true,\"skip_reason\":\"unclear_prompt\"}"));
    int64_t skip = reply_id(r);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "skip_reason")), "unclear_prompt");
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/me/rankings?skipped=1", a2, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "id")),
                     skip);
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/me/rankings", a1, NULL, NULL)); /* a1's history */
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "project_id")),
                     project);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/me/rankings?skipped=yes", a1, NULL, 400, "invalid_value",
                      "skipped");
    snprintf(path, sizeof path, "/v1/rankings/%lld", (long long)skip);
    r = expect_ok(http(&d, "DELETE", path, a2, NULL, NULL));
    ck_assert(json_is_true(json_object_get(r->json, "deleted")));
    reply_free(r);
    call_expect_error(&d, "DELETE", path, a2, NULL, 404, "ranking_not_found", NULL);
    r = expect_ok(http(&d, "GET", "/v1/me/rankings?skipped=1", a2, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    reply_free(r);
    r = next_reply(&d, project, a2);
    ck_assert_int_eq(reply_id(r), c);
    reply_free(r);

    /* Withdrawing a ranking: the agreement (cached) sees it go. */
    snprintf(path, sizeof path, "/v1/projects/%lld/agreement", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")), 1);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/rankings/%lld", (long long)ranking);
    reply_free(expect_ok(http(&d, "DELETE", path, a1, NULL, NULL)));
    snprintf(path, sizeof path, "/v1/projects/%lld/agreement", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")), 0);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT n_ranked FROM comparisons WHERE id = ?1", c), 0);
    daemon_cleanup(&d);
}
END_TEST

/* Gold comparisons come in an order of each annotator's own: every one
 * exactly once, the orders of two annotators differ, and not all in id
 * order (then the first comparison everybody is served would be known to
 * be gold). */
START_TEST(test_gold_order_per_annotator) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char tokens[2][128];
    make_token(&d, "P", "annotator", tokens[0]);
    make_token(&d, "Q", "annotator", tokens[1]);
    int64_t project = create(&d, "/v1/projects", d.admin,
                             "{\"name\":\"golds\",\"k\":2,\"overlap\":2,\"gold_rate\":1}");
    grant_project_all(&d, project);
    char path[128];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
    enum { N_GOLD = 6 };
    int64_t gold[N_GOLD];
    for (int i = 0; i < N_GOLD; i++) {
        char body[160];
        snprintf(body, sizeof body,
                 "{\"prompt\":\"g%d\",\"candidates\":[{\"text\":\"x\"},{\"text\":\"y\"}],"
                 "\"gold\":[[0],[1]]}",
                 i);
        gold[i] = create(&d, path, d.admin, body);
    }
    int64_t served[2][N_GOLD];
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < N_GOLD; i++) {
            http_reply *r = next_reply(&d, project, tokens[t]);
            served[t][i] = reply_id(r);
            reply_free(r);
            reply_free(expect_ok(post_ranking(&d, served[t][i], tokens[t], "{\"skip\":true}")));
        }
    bool differ = false, sorted[2] = {true, true};
    for (int t = 0; t < 2; t++)
        for (int i = 0; i < N_GOLD; i++) {
            int seen = 0;
            for (int j = 0; j < N_GOLD; j++)
                seen += served[t][j] == gold[i];
            ck_assert_msg(seen == 1, "annotator %d was served gold %lld %d times", t,
                          (long long)gold[i], seen);
            differ |= served[0][i] != served[1][i];
            sorted[t] &= i == 0 || served[t][i] > served[t][i - 1];
        }
    ck_assert_msg(differ, "both annotators met the gold comparisons in the same order");
    ck_assert_msg(!sorted[0] || !sorted[1], "gold served in id order");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_gold_quality_and_bias) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char p[128], q[128], rr[128];
    make_token(&d, "P", "annotator", p);
    make_token(&d, "Q", "annotator", q);
    make_token(&d, "R", "annotator", rr);
    int64_t project = create(&d, "/v1/projects", d.admin,
                             "{\"name\":\"gold\",\"k\":3,\"overlap\":3,\"gold_rate\":1}");
    grant_project_all(&d, project);
    char path[128], body[256];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
    call_expect_error(&d, "POST", path, d.admin,
                      "{\"prompt\":\"g\",\"candidates\":[{\"text\":\"x\"},{\"text\":\"y\"}],"
                      "\"gold\":[[0],[2]]}",
                      400, "unknown_candidate", "gold[1][0]");
    /* The hand example's comparisons, then a gold one: y better than x. */
    int64_t c1 = create(&d, path, d.admin,
                        "{\"prompt\":\"Name a colour.\",\"candidates\":[{\"text\":\"a\"},"
                        "{\"text\":\"b\"},{\"text\":\"c\"}]}");
    int64_t c2 = create(&d, path, d.admin,
                        "{\"prompt\":\"Say hi.\",\"candidates\":[{\"text\":\"d\"},{\"text\":"
                        "\"e\"}]}");
    http_reply *r = expect_ok(http(&d, "POST", path, d.admin,
                                   "{\"prompt\":\"2+2?\",\"candidates\":[{\"text\":\"5\"},"
                                   "{\"text\":\"4\"}],\"gold\":[[1],[0]]}",
                                   NULL));
    int64_t g = reply_id(r);
    int64_t g0 = json_integer_value(
        json_object_get(json_array_get(json_object_get(r->json, "candidates"), 0), "id"));
    ck_assert_int_eq(
        json_integer_value(json_array_get(json_array_get(json_object_get(r->json, "gold"), 0), 0)),
        g0 + 1);
    reply_free(r);
    /* gold_rate 1: everyone is served the gold comparison first, whatever
     * the overlap; the annotator is not told it is gold. */
    const char *tokens[3] = {p, q, rr};
    for (int i = 0; i < 3; i++) {
        r = next_reply(&d, project, tokens[i]);
        ck_assert_int_eq(reply_id(r), g);
        ck_assert_ptr_null(json_object_get(r->json, "gold"));
        reply_free(r);
    }
    /* P and Q answer it right, R wrong. */
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)g0 + 1, (long long)g0);
    reply_free(expect_ok(post_ranking(&d, g, p, body)));
    reply_free(expect_ok(post_ranking(&d, g, q, body)));
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)g0, (long long)g0 + 1);
    reply_free(expect_ok(post_ranking(&d, g, rr, body)));
    /* No gold left: the ordinary queue. */
    r = next_reply(&d, project, p);
    ck_assert_int_eq(reply_id(r), c1);
    reply_free(r);

    /* The hand example of agreement_example.h. */
    int64_t a = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c1);
    int64_t dd = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c2);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)a,
             (long long)a + 1, (long long)a + 2);
    reply_free(expect_ok(post_ranking(&d, c1, p, body)));
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)a + 1,
             (long long)a, (long long)a + 2);
    reply_free(expect_ok(post_ranking(&d, c1, q, body)));
    snprintf(body, sizeof body, "{\"order\":[[%lld,%lld],[%lld]]}", (long long)a, (long long)a + 1,
             (long long)a + 2);
    reply_free(expect_ok(post_ranking(&d, c1, rr, body)));
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)dd, (long long)dd + 1);
    reply_free(expect_ok(post_ranking(&d, c2, p, body)));
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)dd + 1, (long long)dd);
    reply_free(expect_ok(post_ranking(&d, c2, q, body)));
    reply_free(expect_ok(post_ranking(&d, c2, rr, "{\"skip\":true}")));

    snprintf(path, sizeof path, "/v1/projects/%lld/quality", (long long)project);
    call_expect_error(&d, "GET", path, p, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/999/quality", d.admin, NULL, 404,
                      "project_not_found", NULL);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    json_t *anns = json_object_get(r->json, "annotators");
    ck_assert_int_eq(json_array_size(anns), 3);
    size_t i;
    json_t *x;
    json_array_foreach(anns, i, x) {
        const char *name = json_string_value(json_object_get(x, "annotator"));
        json_t *gold = json_object_get(x, "gold");
        ck_assert_int_eq(json_integer_value(json_object_get(gold, "n")), 1);
        if (strcmp(name, "R") == 0) {
            ck_assert_int_eq(json_integer_value(json_object_get(gold, "top_correct")), 0);
            ck_assert_double_eq(json_real_value(json_object_get(gold, "pair_accuracy")), 0);
        } else {
            ck_assert_int_eq(json_integer_value(json_object_get(gold, "top_correct")), 1);
            ck_assert_double_eq(json_real_value(json_object_get(gold, "pair_accuracy")), 1);
        }
        /* Served by next, then ranked: a time; c2 was not served to P by
         * next, so P has 2 timed rankings (gold, c1) of 3. */
        ck_assert(json_is_real(json_object_get(x, "median_time_ms")));
        ck_assert_int_eq(json_integer_value(json_object_get(x, "n_timed")),
                         strcmp(name, "P") == 0 ? 2 : 1);
    }
    reply_free(r);

    /* Without the gold comparison's rankings the report's alpha per
     * annotator is the hand example's (withdrawn: a ranking can go). */
    const char *names[3] = {"P", "Q", "R"};
    for (int k = 0; k < 3; k++) {
        char sql[256];
        snprintf(sql, sizeof sql,
                 "SELECT k.id FROM rankings k JOIN api_tokens t ON t.id = k.token_id WHERE "
                 "k.comparison_id = ?1 AND t.name = '%s'",
                 names[k]);
        int64_t id = db_int(&d, sql, g);
        snprintf(path, sizeof path, "/v1/rankings/%lld", (long long)id);
        reply_free(expect_ok(http(&d, "DELETE", path, tokens[k], NULL, NULL)));
    }
    snprintf(path, sizeof path, "/v1/projects/%lld/quality", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_double_eq_tol(json_real_value(json_object_get(r->json, "alpha")), HAND_ALPHA, 1e-12);
    anns = json_object_get(r->json, "annotators");
    json_array_foreach(anns, i, x) {
        const char *name = json_string_value(json_object_get(x, "annotator"));
        double alpha = json_real_value(json_object_get(x, "alpha"));
        ck_assert_double_eq_tol(alpha, strcmp(name, "R") == 0 ? HAND_ALPHA_R : HAND_ALPHA_P, 1e-12);
        ck_assert_double_eq_tol(json_real_value(json_object_get(x, "pairwise_agreement")),
                                strcmp(name, "R") == 0 ? 2.0 / 3.0 : 4.0 / 9.0, 1e-12);
        ck_assert(json_is_null(json_object_get(json_object_get(x, "gold"), "top_accuracy")));
    }
    reply_free(r);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_position_bias_report) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char a1[128], viewer[128];
    make_token(&d, "ann1", "annotator", a1);
    make_token(&d, "vera", "viewer", viewer);
    int64_t project = create(&d, "/v1/projects", d.admin, "{\"name\":\"b\",\"k\":2}");
    grant_project_all(&d, project);
    char path[128], body[128];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
    for (int i = 0; i < 6; i++)
        create(&d, path, d.admin,
               "{\"prompt\":\"p\",\"candidates\":[{\"text\":\"x\"},{\"text\":\"y\"}]}");
    /* A careless annotator who always picks what is shown first: 6 of 6,
     * p = 2 * 0.5^6 = 1/32 (the exact two-sided binomial test). */
    for (int i = 0; i < 6; i++) {
        http_reply *r = next_reply(&d, project, a1);
        int64_t c = reply_id(r);
        snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}",
                 (long long)nth_id(r, "shown_order", 0), (long long)nth_id(r, "shown_order", 1));
        reply_free(r);
        reply_free(expect_ok(post_ranking(&d, c, a1, body)));
    }
    snprintf(path, sizeof path, "/v1/projects/%lld/position_bias", (long long)project);
    call_expect_error(&d, "GET", path, a1, NULL, 403, "insufficient_role", NULL);
    http_reply *r = expect_ok(http(&d, "GET", path, viewer, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_wins")), 6);
    ck_assert_double_eq_tol(json_real_value(json_object_get(r->json, "expected_first_wins")), 3,
                            1e-12);
    json_t *k2 = json_array_get(json_object_get(r->json, "by_k"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(k2, "k")), 2);
    ck_assert_double_eq_tol(json_real_value(json_object_get(k2, "p_value")), 1.0 / 32.0, 1e-12);
    ck_assert_double_eq_tol(json_real_value(json_object_get(k2, "expected_rate")), 0.5, 1e-12);
    reply_free(r);
    daemon_cleanup(&d);
}
END_TEST

Suite *annotation_suite(void) {
    Suite *s = suite_create("annotation");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_labels_blind_edit_skip);
    tcase_add_test(tc, test_gold_quality_and_bias);
    tcase_add_test(tc, test_gold_order_per_annotator);
    tcase_add_test(tc, test_position_bias_report);
    suite_add_tcase(s, tc);
    return s;
}
