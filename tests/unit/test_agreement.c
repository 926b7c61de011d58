/* server/agreement: inter-annotator agreement (Krippendorff's alpha, ordinal;
 * Kendall's W; per-annotator pair agreement) against a hand-worked example
 * and an independent numpy computation (tests/reference/agreement_reference.py
 * → tests/fixtures/agreement.json). The route is tests/api/test_exports.c.
 */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agreement.h"
#include "agreement_example.h"
#include "suites.h"
#include "test_util.h"

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
    for (size_t i = 0; i < a.n_annotators; i++) { /* alpha per annotator */
        double own;
        ck_assert(agreement_annotator_alpha(&a, i, &own));
        ck_assert_double_eq_tol(own, a.annotators[i].annotator == 3 ? HAND_ALPHA_R : HAND_ALPHA_P,
                                1e-12);
    }
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

/* The edges: sizes out of range are refused without counting anything;
 * pair agreement with partial ties and with group labels that are not
 * 0, 1, 2...; two opposite rankings (by hand: units a {1,2} and b {2,1}
 * give o(1,2) = o(2,1) = 2, n_1 = n_2 = 2, n = 4, delta^2 = (4 - 2)^2 = 4;
 * observed 2 * 2 * 4 = 16, expected 2 * (2 * 2 * 4) = 32, so alpha =
 * 1 - 3 * 16 / 32 = -1/2); the largest K, whose midranks reach the top
 * of the value scale; an annotator who only skips. */
START_TEST(test_agreement_edge_cases) {
    agreement a;
    agreement_init(&a);
    agreement_ranking two[2] = {ranking_of(1, (int[]){0, 1}, 2), ranking_of(2, (int[]){1, 0}, 2)};
    ck_assert_int_eq(agreement_add_comparison(&a, 1, two, 2), -1);
    ck_assert_int_eq(agreement_add_comparison(&a, RANKING_MAX_K + 1, two, 2), -1);
    ck_assert_int_eq(a.n_annotators, 0);
    ck_assert_int_eq(a.n_units, 0);
    double alpha, w;
    ck_assert(!agreement_alpha(&a, &alpha));
    ck_assert(!agreement_kendall_w(2, two, 1, &w)); /* one ranking: no W */

    /* a > b = c against a = b > c: only (a, c) is ordered the same way. */
    const agreement_ranking x = ranking_of(1, (int[]){0, 1, 1}, 3);
    const agreement_ranking y = ranking_of(2, (int[]){0, 0, 1}, 3);
    ck_assert_double_eq_tol(agreement_pair(3, &x, &y), 1.0 / 3.0, 1e-12);
    /* group labels only order: {0, 5, 9} is {0, 1, 2} */
    agreement_ranking spaced[2] = {ranking_of(1, (int[]){0, 5, 9}, 3),
                                   ranking_of(2, (int[]){0, 1, 2}, 3)};
    ck_assert_double_eq_tol(agreement_pair(3, &spaced[0], &spaced[1]), 1.0, 1e-12);
    ck_assert(agreement_kendall_w(3, spaced, 2, &w));
    ck_assert_double_eq_tol(w, 1.0, 1e-12);

    /* Two opposite rankings. */
    ck_assert_int_eq(agreement_add_comparison(&a, 2, two, 2), 0);
    ck_assert(agreement_alpha(&a, &alpha));
    ck_assert_double_eq_tol(alpha, -0.5, 1e-12);
    ck_assert_double_eq_tol(a.w_sum, 0.0, 1e-12);
    ck_assert_int_eq(a.n_w, 1);
    ck_assert_double_eq_tol(agreement_pair(2, &two[0], &two[1]), 0.0, 1e-12);
    agreement_free(&a);

    /* The largest K: agreeing rankers give alpha 1 and W 1; reversed ones
     * W 0 (every rank sum is K + 1) and pair agreement 0. */
    agreement_ranking big[2] = {{.annotator = 1}, {.annotator = 2}}, rev[2];
    for (int i = 0; i < RANKING_MAX_K; i++)
        big[0].group[i] = big[1].group[i] = i;
    rev[0] = big[0], rev[1] = big[1];
    for (int i = 0; i < RANKING_MAX_K; i++)
        rev[1].group[i] = RANKING_MAX_K - 1 - i;
    agreement_init(&a);
    ck_assert_int_eq(agreement_add_comparison(&a, RANKING_MAX_K, big, 2), 0);
    ck_assert(agreement_alpha(&a, &alpha));
    ck_assert_double_eq_tol(alpha, 1.0, 1e-12);
    ck_assert_double_eq_tol(a.w_sum, 1.0, 1e-12);
    ck_assert_int_eq(a.n_units, RANKING_MAX_K);
    ck_assert(agreement_kendall_w(RANKING_MAX_K, rev, 2, &w));
    ck_assert_double_eq_tol(w, 0.0, 1e-12);
    ck_assert_double_eq_tol(agreement_pair(RANKING_MAX_K, &rev[0], &rev[1]), 0.0, 1e-12);

    /* Skips only: counted, compared with nobody. */
    ck_assert_int_eq(agreement_add_skip(&a, 9), 0);
    ck_assert_int_eq(agreement_add_skip(&a, 9), 0);
    const agreement_annotator *skipper = find_annotator(&a, 9);
    ck_assert_int_eq(skipper->n_skipped, 2);
    ck_assert_int_eq(skipper->n_ranked, 0);
    ck_assert_int_eq(skipper->n_compared, 0);
    ck_assert_int_eq(find_annotator(&a, 1)->n_compared, 1);
    agreement_free(&a);
}
END_TEST

Suite *agreement_suite(void) {
    Suite *s = suite_create("agreement");
    TCase *tc = tcase_create("agreement");
    tcase_add_test(tc, test_agreement_hand_example);
    tcase_add_test(tc, test_agreement_matches_reference);
    tcase_add_test(tc, test_agreement_edge_cases);
    suite_add_tcase(s, tc);
    return s;
}
