/* Preference collection beyond one-at-a-time: bulk comparisons, the JSONL
 * exports (pairs → a preference dataset round trip; raw rankings) and
 * inter-annotator agreement — the math of server/agreement.c against a
 * hand-worked example and an independent numpy computation
 * (tests/reference/agreement_reference.py → tests/fixtures/agreement.json),
 * and the routes on a real daemon (test_server_util.h).
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

/* ---- the hand-worked example ------------------------------------------------------
 *
 * Annotators P, Q, R. Comparison 1 has candidates a, b, c; comparison 2 has
 * d, e.
 *   c1: P a > b > c (midranks 1, 2, 3); Q b > a > c (2, 1, 3);
 *       R a = b > c (1.5, 1.5, 3)
 *   c2: P d > e (1, 2); Q e > d (2, 1); R skips.
 *
 * Krippendorff's alpha, ordinal. Units a, b, c (3 values each), d, e (2):
 * 13 pairable values. Coincidences (an ordered pair of a unit with m values
 * weighs 1/(m-1)): a and b each give every ordered pair of {1, 2, 1.5}
 * 1/2, together o(1,2) = o(1,1.5) = o(2,1.5) = 1 (and symmetric); c gives
 * o(3,3) = 6 * 1/2 = 3; d and e give o(1,2) += 2 → o(1,2) = o(2,1) = 3.
 * Marginals n_1 = 4, n_1.5 = 2, n_2 = 4, n_3 = 3, n = 13.
 * Ordinal distances (sum of n_g from c to k minus (n_c + n_k)/2, squared):
 *   (1,1.5): 6-3 = 3 → 9        (1,2): 10-4 = 6 → 36     (1,3): 13-3.5 → 90.25
 *   (1.5,2): 6-3 = 3 → 9        (1.5,3): 9-2.5 → 42.25   (2,3): 7-3.5 → 12.25
 * Observed sum o*d2 = 2*(3*36 + 1*9 + 1*9) = 252.
 * Expected sum n_c n_k d2 = 2*(8*9 + 16*36 + 12*90.25 + 8*9 + 6*42.25 + 12*12.25)
 *                        = 2*2203.5 = 4407.
 * alpha = 1 - 12 * 252 / 4407 = 1383 / 4407 = 0.31381892...
 *
 * Kendall's W. c1: m = 3, n = 3; rank sums a 4.5, b 4.5, c 9; mean 6;
 * S = 2.25 + 2.25 + 9 = 13.5; ties: R's {a,b} gives 2^3 - 2 = 6;
 * W = 12 * 13.5 / (9 * 24 - 3 * 6) = 162 / 198 = 9/11.
 * c2: m = 2, n = 2; rank sums 3, 3 → S = 0 → W = 0. Mean W = 9/22.
 *
 * Pair agreement (same order of a candidate pair; a tie agrees only with a
 * tie). c1: P-Q agree on (a,c), (b,c) but not (a,b): 2/3; P-R 2/3 (R ties
 * a,b); Q-R 2/3. c2: P-Q 0. P: (2/3 + 2/3 + 0)/3 = 4/9 over 3; Q: 4/9
 * over 3; R: 2/3 over 2 (ranked 1, skipped 1).
 */
#define HAND_ALPHA (1383.0 / 4407.0)
#define HAND_W     (9.0 / 22.0)

static agreement_ranking ranking_of(int64_t who, const int *groups, int n) {
    agreement_ranking x = {.annotator = who};
    for (int i = 0; i < n; i++)
        x.group[i] = groups[i];
    return x;
}

static const agreement_annotator *find_annotator(const agreement *a, int64_t who) {
    for (size_t i = 0; i < a->n_annotators; i++)
        if (a->annotators[i].annotator == who)
            return &a->annotators[i];
    ck_abort_msg("no annotator %lld", (long long)who);
    return NULL;
}

START_TEST(test_agreement_hand_example) {
    agreement a;
    agreement_init(&a);
    agreement_ranking c1[3] = {ranking_of(1, (int[]){0, 1, 2}, 3),
                               ranking_of(2, (int[]){1, 0, 2}, 3),
                               ranking_of(3, (int[]){0, 0, 1}, 3)};
    agreement_ranking c2[2] = {ranking_of(1, (int[]){0, 1}, 2), ranking_of(2, (int[]){1, 0}, 2)};
    double w;
    ck_assert(agreement_kendall_w(3, c1, 3, &w));
    ck_assert_double_eq_tol(w, 9.0 / 11.0, 1e-12);
    ck_assert(agreement_kendall_w(2, c2, 2, &w));
    ck_assert_double_eq_tol(w, 0.0, 1e-12);
    ck_assert_int_eq(agreement_add_comparison(&a, 3, c1, 3), 0);
    ck_assert_int_eq(agreement_add_comparison(&a, 2, c2, 2), 0);
    ck_assert_int_eq(agreement_add_skip(&a, 3), 0);
    double alpha;
    ck_assert(agreement_alpha(&a, &alpha));
    ck_assert_double_eq_tol(alpha, HAND_ALPHA, 1e-12);
    ck_assert_int_eq(a.n_units, 5);
    ck_assert_int_eq(a.n_w, 2);
    ck_assert_double_eq_tol(a.w_sum / a.n_w, HAND_W, 1e-12);
    const agreement_annotator *p = find_annotator(&a, 1), *r = find_annotator(&a, 3);
    ck_assert_int_eq(p->n_ranked, 2);
    ck_assert_int_eq(p->n_compared, 3);
    ck_assert_double_eq_tol(p->agreement_sum / p->n_compared, 4.0 / 9.0, 1e-12);
    ck_assert_int_eq(r->n_ranked, 1);
    ck_assert_int_eq(r->n_skipped, 1);
    ck_assert_double_eq_tol(r->agreement_sum / r->n_compared, 2.0 / 3.0, 1e-12);
    agreement_free(&a);

    /* Perfect agreement: alpha 1, W 1. Two rankers a > b > c. */
    agreement_init(&a);
    agreement_ranking same[2] = {ranking_of(1, (int[]){0, 1, 2}, 3),
                                 ranking_of(2, (int[]){0, 1, 2}, 3)};
    ck_assert_int_eq(agreement_add_comparison(&a, 3, same, 2), 0);
    ck_assert(agreement_alpha(&a, &alpha));
    ck_assert_double_eq_tol(alpha, 1.0, 1e-12);
    ck_assert_double_eq_tol(a.w_sum, 1.0, 1e-12);
    agreement_free(&a);

    /* Undefined: one ranker (nothing pairable, no W); everyone ties
     * everything (one value only, W's denominator 9*6 - 3*(6+6+6)... = 0). */
    agreement_init(&a);
    ck_assert_int_eq(agreement_add_comparison(&a, 3, same, 1), 0);
    ck_assert(!agreement_alpha(&a, &alpha));
    ck_assert_int_eq(a.n_w, 0);
    agreement_free(&a);
    agreement_init(&a);
    agreement_ranking ties[3] = {ranking_of(1, (int[]){0, 0, 0}, 3),
                                 ranking_of(2, (int[]){0, 0, 0}, 3),
                                 ranking_of(3, (int[]){0, 0, 0}, 3)};
    ck_assert_int_eq(agreement_add_comparison(&a, 3, ties, 3), 0);
    ck_assert(!agreement_alpha(&a, &alpha));
    ck_assert(!agreement_kendall_w(3, ties, 3, &w));
    ck_assert_double_eq_tol(agreement_pair(3, &ties[0], &ties[1]), 1.0, 1e-12);
    agreement_free(&a);
}
END_TEST

/* The numpy reference's cases (random projects with ties, skips and
 * missing annotators, plus the hand example). */
START_TEST(test_agreement_matches_reference) {
    char path[4096];
    snprintf(path, sizeof path, "%s/tests/fixtures/agreement.json", test_repo_dir());
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_msg(root != NULL, "%s: %s", path, jerr.text);
    json_t *cases = json_object_get(root, "cases");
    ck_assert_int_ge(json_array_size(cases), 4);
    size_t ci;
    json_t *c;
    json_array_foreach(cases, ci, c) {
        agreement a;
        agreement_init(&a);
        size_t i;
        json_t *cmp;
        json_array_foreach(json_object_get(c, "comparisons"), i, cmp) {
            int n = (int)json_integer_value(json_object_get(cmp, "n"));
            agreement_ranking rk[16];
            size_t m = 0, j;
            json_t *r;
            json_array_foreach(json_object_get(cmp, "rankings"), j, r) {
                int64_t who = json_integer_value(json_object_get(r, "annotator"));
                if (json_is_true(json_object_get(r, "skip"))) {
                    ck_assert_int_eq(agreement_add_skip(&a, who), 0);
                    continue;
                }
                rk[m] = (agreement_ranking){.annotator = who};
                for (int x = 0; x < n; x++)
                    rk[m].group[x] = (int)json_integer_value(
                        json_array_get(json_object_get(r, "groups"), (size_t)x));
                m++;
            }
            ck_assert_int_eq(agreement_add_comparison(&a, n, rk, m), 0);
        }
        json_t *want = json_object_get(c, "expected");
        const char *name = json_string_value(json_object_get(c, "name"));
        double alpha;
        ck_assert_msg(agreement_alpha(&a, &alpha) == json_is_real(json_object_get(want, "alpha")),
                      "%s: alpha defined?", name);
        ck_assert_msg(fabs(alpha - json_real_value(json_object_get(want, "alpha"))) < 1e-9,
                      "%s: alpha %.12f", name, alpha);
        ck_assert_int_eq(a.n_w, json_integer_value(json_object_get(want, "n_w")));
        ck_assert_msg(
            fabs(a.w_sum / a.n_w - json_real_value(json_object_get(want, "kendall_w_mean"))) < 1e-9,
            "%s: W", name);
        const char *key;
        json_t *x;
        json_object_foreach(json_object_get(want, "annotators"), key, x) {
            const agreement_annotator *got = find_annotator(&a, strtoll(key, NULL, 10));
            ck_assert_int_eq(got->n_ranked, json_integer_value(json_object_get(x, "n_ranked")));
            ck_assert_int_eq(got->n_skipped, json_integer_value(json_object_get(x, "n_skipped")));
            ck_assert_int_eq(got->n_compared, json_integer_value(json_object_get(x, "n_compared")));
            if (got->n_compared)
                ck_assert_msg(fabs(got->agreement_sum / got->n_compared -
                                   json_real_value(json_object_get(x, "mean"))) < 1e-9,
                              "%s: annotator %s", name, key);
        }
        agreement_free(&a);
    }
    json_decref(root);
}
END_TEST

/* ---- the routes ------------------------------------------------------------------ */

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
    /* JSONL: the bad item is the second line's empty text. */
    r = http(&d, "POST", bulk, d.admin,
             "{\"prompt\":\"x\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"2\"}]}\n"
             "{\"prompt\":\"y\",\"candidates\":[{\"text\":\"1\"},{\"text\":\"\"}]}\n",
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

Suite *server_prefs_suite(void) {
    Suite *s = suite_create("server_prefs");
    TCase *tc = tcase_create("agreement");
    tcase_add_test(tc, test_agreement_hand_example);
    tcase_add_test(tc, test_agreement_matches_reference);
    suite_add_tcase(s, tc);
    TCase *routes = tcase_create("routes");
    tcase_add_test(routes, test_bulk_export_agreement);
    tcase_add_test(routes, test_export_spans_chunks);
    tcase_set_timeout(routes, 60);
    suite_add_tcase(s, routes);
    return s;
}
