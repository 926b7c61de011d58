/* A project's data going out: bulk comparisons in, the JSONL exports (pairs
 * → a preference dataset round trip; raw rankings; pages of the stream) and
 * the inter-annotator agreement route (its math is tests/unit/test_agreement.c).
 */
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agreement_example.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

static void rank(const test_daemon *d, int64_t comparison, const char *token, const char *body) {
    char path[64];
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)comparison);
    reply_free(expect_ok(http(d, "POST", path, token, body, NULL)));
}

static size_t count_lines(const char *s, size_t len) {
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += s[i] == '\n';
    return n;
}

START_TEST(test_bulk_export_agreement) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char p[128], q[128], rr[128], viewer[128];
    make_token(&d, "P", "annotator", p);
    make_token(&d, "Q", "annotator", q);
    make_token(&d, "R", "annotator", rr);
    make_token(&d, "V", "viewer", viewer);
    http_reply *r = expect_ok(
        http(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"h\",\"k\":3,\"overlap\":3}", NULL));
    int64_t project = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    grant_project_all(&d, project);
    char bulk[96], path[128];
    snprintf(bulk, sizeof bulk, "/v1/projects/%lld/comparisons/bulk", (long long)project);

    /* All or nothing: item 2 has 4 candidates (k = 3); item 1 is fine. */
    r = http(&d, "POST", bulk, d.admin,
             "[{\"prompt\":\"x\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"}]},"
             "{\"prompt\":\"y\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"}]},"
             "{\"prompt\":\"z\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"},{\"text\":"
             "\"3\"},{\"text\":\"4\"}]}]",
             NULL);
    expect_error(r, 400, "invalid_value", "[2].candidates");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r->json, "error"), "index")), 2);
    reply_free(r);
    /* JSONL: the bad item is the second line's text that is no string. */
    r = http(&d, "POST", bulk, d.admin,
             "{\"prompt\":\"x\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"}]}\n"
             "{\"prompt\":\"y\",\"candidates\":[{\"text\":\"1\"},{\"text\":3}]}\n",
             NULL);
    expect_error(r, 400, "invalid_value", "[1].candidates[1].text");
    reply_free(r);
    call_expect_error(&d, "POST", bulk, d.admin, "[]", 400, "invalid_value", NULL);
    /* Sampled items: checked like the single route, under their index;
     * at most 16 per request. */
    call_expect_error(&d, "POST", bulk, d.admin,
                      "[{\"prompt\":\"x\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"}]},"
                      "{\"prompt\":\"y\",\"sample\":{\"checkpoint_id\":999}}]",
                      400, "checkpoint_not_found", "[1].sample.checkpoint_id");
    char sampled[17 * 64] = "[";
    for (int i = 0; i < 17; i++)
        strcat(sampled, i ? ",{\"prompt\":\"p\",\"sample\":{\"checkpoint_id\":1}}"
                          : "{\"prompt\":\"p\",\"sample\":{\"checkpoint_id\":1}}");
    strcat(sampled, "]");
    call_expect_error(&d, "POST", bulk, d.admin, sampled, 400, "too_many_sampled", NULL);
    call_expect_error(&d, "POST", bulk, d.admin, "{\"prompt\":\"x\",\"bogus\":1}\n", 400,
                      "unknown_parameter", "[0].bogus");
    call_expect_error(&d, "POST", bulk, d.admin, "{\"prompt\":\n", 400, "invalid_json", NULL);
    call_expect_error(&d, "POST", bulk, p, "[]", 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/projects/999/comparisons/bulk", d.admin, "[]", 404,
                      "project_not_found", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons WHERE ?1 > 0", 1), 0);
    /* Over the item bound: 1001 items. */
    size_t big_len = 1001 * 64 + 8, at = 0;
    char *big = malloc(big_len);
    at += (size_t)snprintf(big + at, big_len - at, "[");
    for (int i = 0; i < 1001; i++)
        at += (size_t)snprintf(big + at, big_len - at,
                               "%s{\"prompt\":\"p\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                               "\"b\"}]}",
                               i ? "," : "");
    snprintf(big + at, big_len - at, "]");
    call_expect_error(&d, "POST", bulk, d.admin, big, 413, "too_many_items", NULL);
    free(big);

    /* The hand example's two comparisons, once, under an Idempotency-Key. */
    const char *good = "[{\"prompt\":\"Name a colour.\",\"candidates\":[{\"text\":\"a\"},"
                       "{\"text\":\"b\"},{\"text\":\"c\"}]},"
                       "{\"prompt\":\"Say hi.\",\"candidates\":[{\"text\":\"d\"},{\"text\":"
                       "\"e\"}]}]";
    r = expect_ok(http(&d, "POST", bulk, d.admin, good, "Idempotency-Key: bulk-1"));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_comparisons")), 2);
    int64_t c1 = json_integer_value(json_array_get(json_object_get(r->json, "ids"), 0));
    int64_t c2 = json_integer_value(json_array_get(json_object_get(r->json, "ids"), 1));
    reply_free(r);
    r = expect_ok(http(&d, "POST", bulk, d.admin, good, "Idempotency-Key: bulk-1"));
    ck_assert(r->replayed);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons WHERE project_id = ?1", project),
                     2);
    /* Candidate ids are consecutive in insertion order. */
    int64_t a = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c1);
    int64_t dd = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c2);
    char body[256];
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)a,
             (long long)a + 1, (long long)a + 2);
    rank(&d, c1, p, body);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)a + 1,
             (long long)a, (long long)a + 2);
    rank(&d, c1, q, body);
    snprintf(body, sizeof body, "{\"order\":[[%lld,%lld],[%lld]],\"note\":\"a = b\"}", (long long)a,
             (long long)a + 1, (long long)a + 2);
    rank(&d, c1, rr, body);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)dd, (long long)dd + 1);
    rank(&d, c2, p, body);
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)dd + 1, (long long)dd);
    rank(&d, c2, q, body);
    rank(&d, c2, rr, "{\"skip\":true,\"note\":\"unsure\"}");

    /* Agreement: the hand-worked numbers above. */
    snprintf(path, sizeof path, "/v1/projects/%lld/agreement", (long long)project);
    r = expect_ok(http(&d, "GET", path, viewer, NULL, NULL));
    json_t *alpha = json_object_get(r->json, "krippendorff_alpha");
    ck_assert_str_eq(json_string_value(json_object_get(alpha, "metric")), "ordinal");
    ck_assert_double_eq_tol(json_real_value(json_object_get(alpha, "value")), HAND_ALPHA, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(alpha, "n_units")), 5);
    json_t *w = json_object_get(r->json, "kendall_w");
    ck_assert_double_eq_tol(json_real_value(json_object_get(w, "mean")), HAND_W, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")), 5);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_skipped")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_comparisons_ranked")), 2);
    json_t *anns = json_object_get(r->json, "annotators");
    ck_assert_int_eq(json_array_size(anns), 3);
    size_t i;
    json_t *x;
    json_array_foreach(anns, i, x) {
        const char *name = json_string_value(json_object_get(x, "annotator"));
        double mean = json_real_value(json_object_get(x, "mean_pair_agreement"));
        int64_t ranked = json_integer_value(json_object_get(x, "n_ranked"));
        int64_t skipped = json_integer_value(json_object_get(x, "n_skipped"));
        if (strcmp(name, "R") == 0) {
            ck_assert_int_eq(ranked, 1);
            ck_assert_int_eq(skipped, 1);
            ck_assert_double_eq_tol(mean, 2.0 / 3.0, 1e-12);
        } else {
            ck_assert_int_eq(ranked, 2);
            ck_assert_int_eq(skipped, 0);
            ck_assert_double_eq_tol(mean, 4.0 / 9.0, 1e-12);
        }
    }
    reply_free(r);
    call_expect_error(&d, "GET", path, p, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/projects/999/agreement", d.admin, NULL, 404,
                      "project_not_found", NULL);

    /* pairs.jsonl: 3 (P) + 3 (Q) + 2 (R: a = b > c) + 1 + 1 pairs, in the
     * order they were made, each exactly {prompt, chosen, rejected}. */
    snprintf(path, sizeof path, "/v1/projects/%lld/pairs.jsonl", (long long)project);
    r = expect_ok(http(&d, "GET", path, viewer, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/x-ndjson");
    ck_assert_int_eq(count_lines(r->body, r->body_len), 10);
    ck_assert_msg(strncmp(r->body,
                          "{\"prompt\":\"Name a colour.\",\"chosen\":\"a\",\"rejected\":\"b\"}\n",
                          56) == 0,
                  "%s", r->body);
    ck_assert_ptr_nonnull(
        strstr(r->body, "{\"prompt\":\"Say hi.\",\"chosen\":\"e\",\"rejected\":\"d\"}\n"));
    /* The round trip: the export uploads as a preference dataset. */
    http_reply *ds = expect_ok(http(&d, "POST", "/v1/datasets", d.admin,
                                    "{\"name\":\"exported\",\"format\":\"preference\"}", NULL));
    char upath[64];
    snprintf(upath, sizeof upath, "/v1/datasets/%lld/upload",
             (long long)json_integer_value(json_object_get(ds->json, "id")));
    reply_free(ds);
    ds = expect_ok(http_bytes(&d, "POST", upath, d.admin, r->body, r->body_len, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(ds->json, "n_rows")), 10);
    reply_free(ds);
    reply_free(r);

    /* rankings.jsonl: every ranking with texts, order (ties grouped), skip, note. */
    snprintf(path, sizeof path, "/v1/projects/%lld/rankings.jsonl", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/x-ndjson");
    ck_assert_int_eq(count_lines(r->body, r->body_len), 6);
    char *line = r->body, *end;
    int n_lines = 0;
    while ((end = strchr(line, '\n')) != NULL) {
        json_t *row = json_loadb(line, (size_t)(end - line), 0, NULL);
        ck_assert_ptr_nonnull(row);
        const char *who = json_string_value(json_object_get(row, "annotator"));
        int64_t cmp = json_integer_value(json_object_get(row, "comparison_id"));
        json_t *order = json_object_get(row, "order");
        if (strcmp(who, "R") == 0 && cmp == c1) {
            ck_assert_int_eq(json_array_size(order), 2);
            ck_assert_int_eq(json_array_size(json_array_get(order, 0)), 2);
            ck_assert_str_eq(json_string_value(json_object_get(row, "note")), "a = b");
            ck_assert_str_eq(json_string_value(json_object_get(
                                 json_array_get(json_object_get(row, "candidates"), 2), "text")),
                             "c");
        }
        if (strcmp(who, "R") == 0 && cmp == c2) {
            ck_assert(json_is_true(json_object_get(row, "skipped")));
            ck_assert_int_eq(json_array_size(order), 0);
        }
        ck_assert_str_eq(json_string_value(json_object_get(row, "prompt")),
                         cmp == c1 ? "Name a colour." : "Say hi.");
        json_decref(row);
        line = end + 1, n_lines++;
    }
    ck_assert_int_eq(n_lines, 6);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/projects/999/pairs.jsonl", d.admin, NULL, 404,
                      "project_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* An export longer than one read chunk (256 rows): 100 comparisons of 3
 * candidates, each ranked strictly by one annotator, give 300 pairs; every
 * one comes exactly once, in order. */
START_TEST(test_export_spans_chunks) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    http_reply *r =
        expect_ok(http(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"c\",\"k\":3}", NULL));
    int64_t project = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    char path[96], *body = malloc(100 * 96 + 4);
    size_t at = 0;
    for (int i = 0; i < 100; i++)
        at += (size_t)sprintf(body + at,
                              "{\"prompt\":\"p%d\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                              "\"b\"},{\"text\":\"c\"}]}\n",
                              i);
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/bulk", (long long)project);
    r = expect_ok(http(&d, "POST", path, d.admin, body, NULL));
    json_t *ids = json_incref(json_object_get(r->json, "ids"));
    reply_free(r);
    ck_assert_int_eq(json_array_size(ids), 100);
    for (size_t i = 0; i < 100; i++) {
        int64_t c = json_integer_value(json_array_get(ids, i));
        int64_t a = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c);
        char order[96];
        snprintf(order, sizeof order, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)a,
                 (long long)a + 1, (long long)a + 2);
        rank(&d, c, d.admin, order);
    }
    json_decref(ids);
    snprintf(path, sizeof path, "/v1/projects/%lld/pairs.jsonl", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(count_lines(r->body, r->body_len), 300);
    /* Line 3i..3i+2 are comparison i's a>b, a>c, b>c. */
    char *line = r->body;
    for (int i = 0; i < 300; i++) {
        char want[96];
        static const char *const pairs[3][2] = {{"a", "b"}, {"a", "c"}, {"b", "c"}};
        int n = snprintf(want, sizeof want,
                         "{\"prompt\":\"p%d\",\"chosen\":\"%s\",\"rejected\":\"%s\"}\n", i / 3,
                         pairs[i % 3][0], pairs[i % 3][1]);
        ck_assert_msg(strncmp(line, want, (size_t)n) == 0, "line %d: %.80s, want %s", i, line,
                      want);
        line += n;
    }
    reply_free(r);
    free(body);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Nothing but whitespace: what the server calls an empty sample. */
static bool blank(const char *s) {
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
            return false;
    return true;
}

/* Empty candidates: a model trained to answer " " half the time (and
 * "Yes." otherwise) has its empty samples drawn again when the server
 * samples a comparison (the rows /generate draws non-empty with the same
 * seed are kept as they were); a client may post empty candidates; the
 * pairs.jsonl export of both uploads back as a preference dataset, and a
 * reward model trains on it. */
START_TEST(test_empty_candidates_round_trip) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char *rows = malloc(64 * 64), body[1024], path[128];
    size_t at = 0;
    for (int i = 0; i < 64; i++)
        at += (size_t)sprintf(rows + at, "{\"prompt\":\"Say it.\",\"response\":\"%s\"}\n",
                              i % 2 ? " " : "Yes.");
    const int64_t data = create_dataset(&d, "sft", rows);
    free(rows);
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":" SAMPLING_SFT "}",
             (long long)data);
    const int64_t job = create_job(&d, body);
    reply_free(wait_job(&d, job, "succeeded", 1));
    const int64_t ck = final_checkpoint(&d, job, NULL);

    /* A seed whose 4 samples from /generate hold an empty one and a
     * non-empty one. */
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/generate", (long long)ck);
    int seed = 0;
    json_t *drawn = NULL;
    for (int s = 1; s <= 64 && drawn == NULL; s++) {
        snprintf(body, sizeof body, "{\"prompt\":\"Say it.\",\"n\":4,\"seed\":%d,\"max_tokens\":6}",
                 s);
        http_reply *r = expect_ok(http(&d, "POST", path, d.admin, body, NULL));
        json_t *choices = json_object_get(r->json, "choices");
        int n_blank = 0;
        for (size_t i = 0; i < 4; i++)
            n_blank +=
                blank(json_string_value(json_object_get(json_array_get(choices, i), "text")));
        if (n_blank > 0 && n_blank < 4)
            drawn = json_incref(choices), seed = s;
        reply_free(r);
    }
    ck_assert_msg(drawn != NULL, "no seed in 1..64 samples both an empty and a non-empty answer");

    http_reply *r =
        expect_ok(http(&d, "POST", "/v1/projects", d.admin, "{\"name\":\"e\",\"k\":4}", NULL));
    const int64_t project = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);
    snprintf(body, sizeof body,
             "{\"prompt\":\"Say it.\",\"sample\":{\"checkpoint_id\":%lld,\"n\":4,\"seed\":%d,"
             "\"max_tokens\":6}}",
             (long long)ck, seed);
    r = expect_ok(http(&d, "POST", cpath, d.admin, body, NULL));
    const int64_t sampled = json_integer_value(json_object_get(r->json, "id"));
    json_t *cands = json_object_get(r->json, "candidates");
    ck_assert_int_eq(json_array_size(cands), 4);
    for (size_t i = 0; i < 4; i++) {
        const char *got = json_string_value(json_object_get(json_array_get(cands, i), "text"));
        const char *first = json_string_value(json_object_get(json_array_get(drawn, i), "text"));
        ck_assert_msg(!blank(got), "candidate %zu is empty: '%s'", i, got);
        if (!blank(first))
            ck_assert_str_eq(got, first);
    }
    reply_free(r);
    json_decref(drawn);

    /* A client's comparison with an empty and a blank candidate. */
    r = expect_ok(http(&d, "POST", cpath, d.admin,
                       "{\"prompt\":\"Pick one.\",\"candidates\":[{\"text\":\"Something.\"},"
                       "{\"text\":\"\"},{\"text\":\" \\n\"}]}",
                       NULL));
    const int64_t posted = json_integer_value(json_object_get(r->json, "id"));
    ck_assert_str_eq(json_string_value(json_object_get(
                         json_array_get(json_object_get(r->json, "candidates"), 1), "text")),
                     "");
    reply_free(r);
    /* Ranked in position order: 6 pairs of the sampled one, 3 of the posted. */
    const int64_t ids[2] = {sampled, posted};
    for (int c = 0; c < 2; c++) {
        const int64_t a =
            db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", ids[c]);
        snprintf(body, sizeof body,
                 c == 0 ? "{\"order\":[[%lld],[%lld],[%lld],[%lld]]}"
                        : "{\"order\":[[%lld],[%lld],[%lld]]}",
                 (long long)a, (long long)a + 1, (long long)a + 2, (long long)a + 3);
        rank(&d, ids[c], d.admin, body);
    }
    snprintf(path, sizeof path, "/v1/projects/%lld/pairs.jsonl", (long long)project);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(count_lines(r->body, r->body_len), 9);
    ck_assert_ptr_nonnull(strstr(
        r->body, "{\"prompt\":\"Pick one.\",\"chosen\":\"Something.\",\"rejected\":\"\"}\n"));
    ck_assert_ptr_nonnull(
        strstr(r->body, "{\"prompt\":\"Pick one.\",\"chosen\":\"\",\"rejected\":\" \\n\"}\n"));
    /* The export uploads as a preference dataset, every line a row ... */
    http_reply *ds = expect_ok(http(&d, "POST", "/v1/datasets", d.admin,
                                    "{\"name\":\"empty\",\"format\":\"preference\"}", NULL));
    const int64_t pref = json_integer_value(json_object_get(ds->json, "id"));
    reply_free(ds);
    ds = upload_dataset(&d, pref, r->body, r->body_len, NULL);
    ck_assert_msg(ds->status == 200, "%s", ds->body);
    ck_assert_int_eq(json_integer_value(json_object_get(ds->json, "n_rows")), 9);
    reply_free(ds);
    reply_free(r);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND "
                            "(chosen = '' OR rejected = '')",
                            pref),
                     2);
    /* ... and a reward model trains on it. */
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld,"
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)pref, (long long)ck);
    reply_free(wait_job(&d, create_job(&d, body), "succeeded", 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *exports_suite(void) {
    Suite *s = suite_create("exports");
    TCase *tc = tcase_create("exports");
    tcase_add_test(tc, test_bulk_export_agreement);
    tcase_add_test(tc, test_export_spans_chunks);
    tcase_add_test(tc, test_empty_candidates_round_trip);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
