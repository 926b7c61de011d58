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

/* Refill in thousandths of a write: at 3 writes/s a write takes 333.3 ms, so
 * an empty bucket holds 0.999 of one at 333 ms and 1.002 at 334 ms. Refused
 * takes cost nothing: asking every millisecond does not push the next
 * write back. */
START_TEST(test_rate_limiter_refill_partial) {
    rate_limiter *l = rate_limiter_new(3, 2);
    ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    for (int64_t t = 0; t <= 333; t++)
        ck_assert_int_eq(rate_limiter_take(l, 1, t), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 334), 0);
    /* what was left over (0.002) counts toward the next write: 333 ms more
     * give 1.001 */
    ck_assert_int_eq(rate_limiter_take(l, 1, 666), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 667), 0);
    /* a pause of exactly the burst's worth (2 writes = 666.7 ms) refills
     * both, a third waits */
    ck_assert_int_eq(rate_limiter_take(l, 1, 667 + 667), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 667 + 667), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 667 + 667), 1);
    rate_limiter_free(l);
}
END_TEST

/* Retry-After is the time until the bucket holds one write again, in whole
 * seconds rounded up: refused just before that time, allowed at it; and
 * asking that many seconds later is allowed. At every rate and from any
 * start. */
START_TEST(test_rate_limiter_retry_after_is_kept) {
    const int64_t rates[] = {1, 2, 3, 7, 100, 999, 1000, 5000};
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        rate_limiter *l = rate_limiter_new(rates[i], 1);
        const int64_t refill_ms = (1000 + rates[i] - 1) / rates[i]; /* one write's worth */
        for (int64_t start = 0; start < 1000; start += 37) {
            const int64_t a = 2 * start + 1, b = 2 * start + 2; /* fresh (full) buckets */
            ck_assert_int_eq(rate_limiter_take(l, a, start), 0);
            ck_assert_int_eq(rate_limiter_take(l, a, start), (refill_ms + 999) / 1000);
            ck_assert_int_eq(rate_limiter_take(l, a, start + refill_ms - 1), 1);
            ck_assert_int_eq(rate_limiter_take(l, a, start + refill_ms), 0);
            ck_assert_int_eq(rate_limiter_take(l, b, start), 0);
            const int64_t wait_s = rate_limiter_take(l, b, start);
            ck_assert_int_eq(rate_limiter_take(l, b, start + wait_s * 1000), 0);
        }
        rate_limiter_free(l);
    }
}
END_TEST

/* One token using its whole bucket leaves every other token's untouched,
 * before and after the table grows past its first 64 slots. */
START_TEST(test_rate_limiter_tokens_isolated) {
    rate_limiter *l = rate_limiter_new(1, 2);
    for (int64_t t = 1; t <= 200; t++) {
        ck_assert_int_eq(rate_limiter_take(l, 7000, 0) != 0, t > 2); /* only 2 for 7000 */
        ck_assert_int_eq(rate_limiter_take(l, t, 0), 0);             /* t's own first write */
    }
    for (int64_t t = 1; t <= 200; t++) {
        ck_assert_int_eq(rate_limiter_take(l, t, 0), 0); /* its second */
        ck_assert_int_eq(rate_limiter_take(l, t, 0), 1); /* its bucket, not 7000's, is empty */
    }
    ck_assert_int_eq(rate_limiter_take(l, 7000, 999), 1);
    ck_assert_int_eq(rate_limiter_take(l, 7000, 1000), 0);
    rate_limiter_free(l);
}
END_TEST

/* HTTP threads read the clock before they take the limiter's lock, so takes
 * can arrive stamped slightly out of order: an earlier stamp must not drain
 * the bucket (nor refill it twice later). */
START_TEST(test_rate_limiter_out_of_order_clock) {
    rate_limiter *l = rate_limiter_new(2, 3);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 990), 0); /* the third of the burst */
    ck_assert_int_eq(rate_limiter_take(l, 1, 995), 1);
    /* refill counts from the latest stamp seen (1000): one write at 1500 */
    ck_assert_int_eq(rate_limiter_take(l, 1, 1499), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1500), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1500), 1);
    rate_limiter_free(l);
}
END_TEST

Suite *ratelimit_suite(void) {
    Suite *s = suite_create("ratelimit");
    TCase *tc = tcase_create("ratelimit");
    tcase_add_test(tc, test_rate_limiter_bucket);
    tcase_add_test(tc, test_rate_limiter_refill_partial);
    tcase_add_test(tc, test_rate_limiter_retry_after_is_kept);
    tcase_add_test(tc, test_rate_limiter_tokens_isolated);
    tcase_add_test(tc, test_rate_limiter_out_of_order_clock);
    suite_add_tcase(s, tc);
    return s;
}
