/* Choosing comparisons (engine/selection.c) on hand-worked cases. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "selection.h"
#include "suites.h"
#include "test_util.h"

/* Items 0, 1, 2 answer prompt 7; items 3, 4 prompt 2. */
static const int32_t groups[5] = {7, 7, 7, 2, 2};

static int choose(selection_rule rule, const double *scores, int members, int m, int cap,
                  const selection_pair *exclude, int n_exclude, uint64_t seed,
                  selection_pair *out) {
    const selection_input in = {5, groups, members, scores, exclude, n_exclude, cap};
    rng_state rng;
    rng_seed(&rng, seed, 0);
    char err[128];
    const int n = selection_choose(rule, &in, m, &rng, out, err, sizeof err);
    ck_assert_msg(n >= 0, "%s", err);
    return n;
}

static void assert_pair(selection_pair p, int a, int b) {
    ck_assert_msg(p.a == a && p.b == b, "chose (%d, %d), want (%d, %d)", p.a, p.b, a, b);
}

/* Scores 0, 0.1, 3 | 5, -5: |sigmoid(ra - rb) - 0.5| is 0.0250 for (0,1),
 * 0.4478 for (1,2), 0.4526 for (0,2), 0.49995 for (3,4). */
START_TEST(test_uncertainty_by_hand) {
    const double s[5] = {0, 0.1, 3, 5, -5};
    selection_pair out[8];
    ck_assert_int_eq(choose(SELECTION_UNCERTAINTY, s, 1, 8, 0, NULL, 0, 1, out), 4);
    assert_pair(out[0], 0, 1);
    assert_pair(out[1], 1, 2);
    assert_pair(out[2], 0, 2);
    assert_pair(out[3], 3, 4);
    /* the diversity guard: one pair per prompt */
    ck_assert_int_eq(choose(SELECTION_UNCERTAINTY, s, 1, 8, 1, NULL, 0, 1, out), 2);
    assert_pair(out[0], 0, 1);
    assert_pair(out[1], 3, 4);
    /* a labelled pair (given in either order) is never chosen again */
    const selection_pair done[] = {{1, 0}};
    ck_assert_int_eq(choose(SELECTION_UNCERTAINTY, s, 1, 2, 0, done, 1, 1, out), 2);
    assert_pair(out[0], 1, 2);
    assert_pair(out[1], 0, 2);
    /* two members: the mean score decides; (0,1) is now the surest pair */
    const double two[10] = {0, 4, 1, 0, 0, /* member 2 */ 0, 4, 1, 0, 0};
    ck_assert_int_eq(choose(SELECTION_UNCERTAINTY, two, 2, 1, 0, NULL, 0, 1, out), 1);
    ck_assert_msg((out[0].a == 3 && out[0].b == 4), "chose (%d, %d), want (3, 4)", out[0].a,
                  out[0].b);
}
END_TEST

/* Member 1 scores item 1 at 2, member 0 everything at 0: the members
 * disagree (variance 0.0362: 0.5 vs sigmoid(-2), and 0.5 vs sigmoid(2)) on
 * (0,1) and (1,2) only; those come first, then (0,2) and (3,4). */
START_TEST(test_disagreement_by_hand) {
    const double s[10] = {0, 0, 0, 0, 0, /* member 1 */ 0, 2, 0, 0, 0};
    for (uint64_t seed = 1; seed <= 40; seed++) {
        selection_pair out[4];
        ck_assert_int_eq(choose(SELECTION_DISAGREEMENT, s, 2, 4, 0, NULL, 0, seed, out), 4);
        const int top = (out[0].a == 0 && out[0].b == 1) + (out[1].a == 0 && out[1].b == 1) +
                        (out[0].a == 1 && out[0].b == 2) + (out[1].a == 1 && out[1].b == 2);
        ck_assert_int_eq(top, 2);
    }
}
END_TEST

/* Equal keys keep the random order: with every score equal, each pair of
 * prompt 7 comes first sometimes. */
START_TEST(test_ties_are_random) {
    const double s[5] = {1, 1, 1, 1, 1};
    int first[5][5] = {{0}};
    for (uint64_t seed = 1; seed <= 200; seed++) {
        selection_pair out[1];
        ck_assert_int_eq(choose(SELECTION_UNCERTAINTY, s, 1, 1, 0, NULL, 0, seed, out), 1);
        first[out[0].a][out[0].b]++;
    }
    ck_assert_int_gt(first[0][1], 20);
    ck_assert_int_gt(first[1][2], 20);
    ck_assert_int_gt(first[3][4], 20);
}
END_TEST

/* Random: every candidate comes first about equally often. */
START_TEST(test_random_is_uniform) {
    int first[5][5] = {{0}};
    for (uint64_t seed = 1; seed <= 400; seed++) {
        selection_pair out[4];
        ck_assert_int_eq(choose(SELECTION_RANDOM, NULL, 0, 4, 0, NULL, 0, seed, out), 4);
        first[out[0].a][out[0].b]++;
    }
    const int pairs[4][2] = {{0, 1}, {0, 2}, {1, 2}, {3, 4}};
    for (int i = 0; i < 4; i++)
        ck_assert_msg(first[pairs[i][0]][pairs[i][1]] > 60 && first[pairs[i][0]][pairs[i][1]] < 140,
                      "pair (%d, %d) first %d times of 400", pairs[i][0], pairs[i][1],
                      first[pairs[i][0]][pairs[i][1]]);
}
END_TEST

START_TEST(test_refusals) {
    const selection_input one = {5, groups, 1, (const double[5]){0}, NULL, 0, 0};
    const selection_input none = {5, groups, 0, NULL, NULL, 0, 0};
    selection_pair out[4];
    rng_state rng;
    rng_seed(&rng, 1, 0);
    char err[160];
    ck_assert_int_eq(selection_choose(SELECTION_DISAGREEMENT, &one, 4, &rng, out, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "at least 2"));
    ck_assert_int_eq(selection_choose(SELECTION_UNCERTAINTY, &none, 4, &rng, out, err, sizeof err),
                     -1);
    ck_assert_ptr_nonnull(strstr(err, "needs reward-model scores"));
    ck_assert_int_eq(selection_rule_from_name("uncertainty"), SELECTION_UNCERTAINTY);
    ck_assert_int_eq(selection_rule_from_name("most-fun"), -1);
}
END_TEST

Suite *selection_suite(void) {
    Suite *s = suite_create("selection");
    TCase *tc = tcase_create("selection");
    tcase_add_test(tc, test_uncertainty_by_hand);
    tcase_add_test(tc, test_disagreement_by_hand);
    tcase_add_test(tc, test_ties_are_random);
    tcase_add_test(tc, test_random_is_uniform);
    tcase_add_test(tc, test_refusals);
    suite_add_tcase(s, tc);
    return s;
}
