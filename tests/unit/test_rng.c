#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "rng.h"
#include "suites.h"

/* The same (seed, stream) gives the same sequence; a different seed or
 * stream gives a different one. */
START_TEST(test_rng_reproducible) {
    rng_state a, b, c, d;
    rng_seed(&a, 42, 0);
    rng_seed(&b, 42, 0);
    rng_seed(&c, 43, 0);
    rng_seed(&d, 42, 1);
    int same_c = 0, same_d = 0;
    for (int i = 0; i < 1000; i++) {
        uint64_t x = rng_next_u64(&a);
        ck_assert_uint_eq(x, rng_next_u64(&b));
        same_c += x == rng_next_u64(&c);
        same_d += x == rng_next_u64(&d);
    }
    ck_assert_int_lt(same_c, 2);
    ck_assert_int_lt(same_d, 2);
}
END_TEST

/* xoshiro256** reference: state {1,2,3,4} gives 11520, 0, 1509978240,
 * 1215971899390074240 (from the authors' C reference implementation). */
START_TEST(test_rng_xoshiro_reference_values) {
    rng_state r = {{1, 2, 3, 4}};
    ck_assert_uint_eq(rng_next_u64(&r), 11520u);
    ck_assert_uint_eq(rng_next_u64(&r), 0u);
    ck_assert_uint_eq(rng_next_u64(&r), 1509978240u);
    ck_assert_uint_eq(rng_next_u64(&r), 1215971899390074240u);
}
END_TEST

/* Uniform draws have the right moments and range; rng_next_below hits every
 * value about equally often; normals have mean 0 and variance 1. */
START_TEST(test_rng_distributions) {
    rng_state r;
    rng_seed(&r, 7, 3);
    const int n = 200000;
    double sum = 0, sumsq = 0;
    for (int i = 0; i < n; i++) {
        double u = rng_next_double(&r);
        ck_assert(u >= 0.0 && u < 1.0);
        sum += u;
        sumsq += u * u;
    }
    ck_assert_double_eq_tol(sum / n, 0.5, 0.005);
    ck_assert_double_eq_tol(sumsq / n - 0.25, 1.0 / 12.0, 0.005);
    int counts[7] = {0};
    for (int i = 0; i < 70000; i++)
        counts[rng_next_below(&r, 7)]++;
    for (int k = 0; k < 7; k++)
        ck_assert_int_lt(abs(counts[k] - 10000), 400); /* ~4 sigma */
    sum = sumsq = 0;
    for (int i = 0; i < n; i++) {
        double z = rng_next_normal(&r);
        sum += z;
        sumsq += z * z;
    }
    ck_assert_double_eq_tol(sum / n, 0.0, 0.01);
    ck_assert_double_eq_tol(sumsq / n, 1.0, 0.02);
}
END_TEST

START_TEST(test_rng_permutation) {
    rng_state r;
    rng_seed(&r, 1, 0);
    int32_t idx[100];
    rng_permutation(&r, idx, 100);
    int seen[100] = {0};
    int fixed = 0;
    for (int i = 0; i < 100; i++) {
        ck_assert(idx[i] >= 0 && idx[i] < 100);
        seen[idx[i]]++;
        fixed += idx[i] == i;
    }
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(seen[i], 1);
    ck_assert_int_lt(fixed, 10); /* expected 1 fixed point */
}
END_TEST

Suite *rng_suite(void) {
    Suite *s = suite_create("rng");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_rng_reproducible);
    tcase_add_test(tc, test_rng_xoshiro_reference_values);
    tcase_add_test(tc, test_rng_distributions);
    tcase_add_test(tc, test_rng_permutation);
    suite_add_tcase(s, tc);
    return s;
}
