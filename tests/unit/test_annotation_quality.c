/* server/annotation_quality and server/label_schema: the statistics of the
 * quality and position-bias reports against hand-worked values, the
 * per-annotator shuffle, and the label schema's checks. The routes are
 * tests/api/test_annotation.c; alpha per annotator is tests/unit/
 * test_agreement.c (the hand example of agreement_example.h).
 */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "annotation_quality.h"
#include "label_schema.h"
#include "suites.h"
#include "test_util.h"

START_TEST(test_binomial_p_hand_values) {
    /* 9 of 10 at p = 1/2: outcomes as unlikely as 9 are 0, 1, 9, 10:
     * (1 + 10 + 10 + 1) / 1024. */
    ck_assert_double_eq_tol(annotation_binomial_p(9, 10, 0.5), 22.0 / 1024.0, 1e-12);
    /* 5 of 10 at 1/2: every outcome is as unlikely or less: 1. */
    ck_assert_double_eq_tol(annotation_binomial_p(5, 10, 0.5), 1.0, 1e-12);
    /* 4 of 6 at p = 1/3 (k = 3): pmf * 729 = 64, 192, 240, 160, 60, 12, 1;
     * those <= 60 are i = 4, 5, 6: 73/729. */
    ck_assert_double_eq_tol(annotation_binomial_p(4, 6, 1.0 / 3.0), 73.0 / 729.0, 1e-12);
    /* 0 of 6 at 1/3: 64/729 and everything below it: 4, 5, 6 and 0. */
    ck_assert_double_eq_tol(annotation_binomial_p(0, 6, 1.0 / 3.0), 137.0 / 729.0, 1e-12);
    ck_assert_double_eq(annotation_binomial_p(0, 0, 0.5), 1.0);
}
END_TEST

START_TEST(test_wilson_hand_values) {
    /* 9/10 at z = 1.96: center (0.9 + z^2/20) / (1 + z^2/10), half-width
     * z / (1 + z^2/10) * sqrt(0.009 + z^2/400): (0.59585, 0.98212). */
    double lo, hi, z = 1.959963984540054;
    annotation_wilson(9, 10, z, &lo, &hi);
    double z2 = z * z, denom = 1 + z2 / 10, center = (0.9 + z2 / 20) / denom;
    double half = z / denom * sqrt(0.009 + z2 / 400);
    ck_assert_double_eq_tol(lo, center - half, 1e-12);
    ck_assert_double_eq_tol(hi, center + half, 1e-12);
    ck_assert_double_eq_tol(lo, 0.59585, 1e-5);
    ck_assert_double_eq_tol(hi, 0.98212, 1e-5);
    annotation_wilson(0, 0, z, &lo, &hi);
    ck_assert(lo == 0 && hi == 1);
}
END_TEST

START_TEST(test_median) {
    int64_t odd[] = {900, 100, 500}, even[] = {40, 10, 30, 20};
    double m;
    ck_assert(annotation_median(odd, 3, &m));
    ck_assert_double_eq(m, 500);
    ck_assert(annotation_median(even, 4, &m));
    ck_assert_double_eq(m, 25);
    ck_assert(!annotation_median(even, 0, &m));
}
END_TEST

START_TEST(test_shuffle_is_a_fixed_permutation_per_annotator) {
    size_t a[RANKING_MAX_K], b[RANKING_MAX_K];
    int differs = 0, first_counts[4] = {0};
    for (int64_t token = 1; token <= 400; token++) {
        annotation_shuffle(token, 77, 4, a);
        annotation_shuffle(token, 77, 4, b);
        ck_assert_mem_eq(a, b, sizeof a[0] * 4); /* deterministic */
        int seen[4] = {0};
        for (int j = 0; j < 4; j++)
            seen[a[j]]++;
        for (int j = 0; j < 4; j++)
            ck_assert_int_eq(seen[j], 1); /* a permutation */
        first_counts[a[0]]++;
        annotation_shuffle(token, 78, 4, b);
        differs += memcmp(a, b, sizeof a[0] * 4) != 0;
    }
    /* Every position comes first for some annotators (400 draws of 1/4:
     * each count is 100 +- 4 sd at 35; the seeds are fixed, so this is a
     * fixed outcome, not a flaky one). */
    for (int j = 0; j < 4; j++)
        ck_assert_int_gt(first_counts[j], 50);
    ck_assert_int_gt(differs, 200);
}
END_TEST

START_TEST(test_position_bias_and_gold_score) {
    position_bias b = {0};
    position_bias_add(&b, 2, true);
    position_bias_add(&b, 2, false);
    position_bias_add(&b, 3, true);
    position_bias_add(&b, 12, true); /* out of range: ignored */
    ck_assert_int_eq(b.n[2], 2);
    ck_assert_int_eq(b.first_wins[2], 1);
    ck_assert_int_eq(b.n[3], 1);
    bool top;
    /* gold a > b > c; ranking b > a > c: pairs (a,b) wrong, (a,c) (b,c)
     * right: 2/3; top wrong. */
    ck_assert_double_eq_tol(annotation_gold_score(3, (int[]){0, 1, 2}, (int[]){1, 0, 2}, &top),
                            2.0 / 3.0, 1e-12);
    ck_assert(!top);
    ck_assert_double_eq_tol(annotation_gold_score(3, (int[]){0, 1, 1}, (int[]){0, 1, 2}, &top),
                            2.0 / 3.0, 1e-12);
    ck_assert(top);
}
END_TEST

START_TEST(test_label_schema_checks) {
    http_error e;
    json_t *out, *schema = json_loads("{\"ratings\": [{\"name\": \"overall\", \"min\": 1, \"max\": "
                                      "7, \"required\": true}], \"flags\": [\"harmful\", "
                                      "\"refusal\"]}",
                                      0, NULL);
    ck_assert_int_eq(label_schema_check(schema, &out, &e), 1);
    const int64_t ids[2] = {11, 12};
    json_t *ok = json_loads("[{\"candidate_id\": 11, \"ratings\": {\"overall\": 7}, \"flags\": "
                            "[\"harmful\"]}, {\"candidate_id\": 12, \"ratings\": {\"overall\": "
                            "1}}]",
                            0, NULL);
    ck_assert_int_eq(label_schema_check_labels(out, ok, ids, 2, 0, &e), 1);
    struct {
        const char *labels, *param;
    } bad[] = {
        {"[{\"candidate_id\": 11, \"ratings\": {\"overall\": 8}}, {\"candidate_id\": 12, "
         "\"ratings\": {\"overall\": 1}}]",
         "labels[0].ratings.overall"},
        {"[{\"candidate_id\": 11, \"ratings\": {\"overall\": 2, \"style\": 1}}]",
         "labels[0].ratings.style"},
        {"[{\"candidate_id\": 11, \"ratings\": {\"overall\": 2}, \"flags\": [\"rude\"]}]",
         "labels[0].flags[0]"},
        {"[{\"candidate_id\": 13, \"ratings\": {\"overall\": 2}}]", "labels[0].candidate_id"},
        {"[{\"candidate_id\": 11, \"ratings\": {\"overall\": 2}}]", "labels"}, /* 12 unrated */
        {"[{\"candidate_id\": 11}]", "labels[0].ratings.overall"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        json_t *labels = json_loads(bad[i].labels, 0, NULL);
        ck_assert_ptr_nonnull(labels);
        ck_assert_int_eq(label_schema_check_labels(out, labels, ids, 2, 0, &e), 0);
        ck_assert_int_eq(e.status, 400);
        ck_assert_str_eq(e.param, bad[i].param);
        json_decref(labels);
    }
    /* A schema's own mistakes are named too. */
    json_t *wrong =
        json_loads("{\"ratings\": [{\"name\": \"q\", \"min\": 5, \"max\": 5}]}", 0, NULL);
    json_t *out2;
    ck_assert_int_eq(label_schema_check(wrong, &out2, &e), 0);
    ck_assert_str_eq(e.param, "label_schema.ratings[0].max");
    json_decref(wrong);
    json_decref(ok), json_decref(out), json_decref(schema);
}
END_TEST

Suite *annotation_quality_suite(void) {
    Suite *s = suite_create("annotation_quality");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_binomial_p_hand_values);
    tcase_add_test(tc, test_wilson_hand_values);
    tcase_add_test(tc, test_median);
    tcase_add_test(tc, test_shuffle_is_a_fixed_permutation_per_annotator);
    tcase_add_test(tc, test_position_bias_and_gold_score);
    tcase_add_test(tc, test_label_schema_checks);
    suite_add_tcase(s, tc);
    return s;
}
