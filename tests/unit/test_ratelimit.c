/* server/ratelimit: the per-token token bucket on a synthetic clock (the
 * caller passes now_ms): bursts, refill over time, per-token isolation, the
 * Retry-After value. The 429 over HTTP is tests/api/test_requests.c. */
#include <stdint.h>

#include "ratelimit.h"
#include "suites.h"

START_TEST(test_rate_limiter_bucket) {
    /* 2 writes/s, bursts of 3: a refill of one write takes 500 ms. */
    rate_limiter *l = rate_limiter_new(2, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rate_limiter_take(l, 7, 1000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 7, 1000), 1); /* 500 ms → Retry-After 1 */
    ck_assert_int_eq(rate_limiter_take(l, 8, 1000), 0); /* another token has its own bucket */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1499), 1); /* 0.998 of a write */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1500), 0); /* exactly one */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1500), 1);
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rate_limiter_take(l, 7, 100000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 7, 100000), 1);
    /* many tokens: the table grows and keeps every bucket */
    for (int64_t t = 100; t < 1100; t++)
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
    for (int64_t t = 100; t < 1100; t++) {
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 1);
    }
    rate_limiter_free(l);
    /* 1 write per second: an empty bucket waits a whole second */
    l = rate_limiter_new(1, 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 999), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1000), 0);
    rate_limiter_free(l);
    /* rate 0: unlimited */
    l = rate_limiter_new(0, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    rate_limiter_free(l);
}
END_TEST

Suite *ratelimit_suite(void) {
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("ratelimit");
    tcase_add_test(tc, test_rate_limiter_bucket);
    suite_add_tcase(s, tc);
    return s;
}
