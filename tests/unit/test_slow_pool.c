/* server/slow_pool and server/agreement_cache alone. The pool: tasks run on
 * its workers, at most workers + queue_max accepted, a per-owner limit, a
 * queued task that outlives the timeout ends EXPIRED without running, and
 * stopping ends what is queued with STOPPING. Workers are held with the
 * gate (a pipe the test writes one byte per task to), so every count is
 * looked at while tasks provably run or wait. The cache: exact keys, the
 * advance of an entry nothing invalidated, no going back, eviction. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agreement_cache.h"
#include "slow_pool.h"
#include "suites.h"
#include "test_server_util.h"

/* What happened to one task. */
typedef struct probe {
    atomic_int runs, expired, stopped;
} probe;

static void probe_fn(void *ctx, slow_pool_outcome outcome) {
    probe *p = ctx;
    atomic_fetch_add(outcome == SLOW_POOL_RUN       ? &p->runs
                     : outcome == SLOW_POOL_EXPIRED ? &p->expired
                                                    : &p->stopped,
                     1);
}

/* Polls until the pool shows running and queued tasks. */
static void await_stats(slow_pool *pool, int running, int queued, long long completed) {
    slow_pool_stats s;
    const int64_t until = now_ms() + DEADLINE_MS;
    for (;;) {
        slow_pool_get_stats(pool, &s);
        if ((s.running == running && s.queued == queued && s.completed == completed) ||
            now_ms() > until)
            break;
        pause_ms(2);
    }
    ck_assert_int_eq(s.running, running);
    ck_assert_int_eq(s.queued, queued);
    ck_assert_int_eq(s.completed, completed);
}

static void await_count(atomic_int *n, int want) {
    const int64_t until = now_ms() + DEADLINE_MS;
    while (atomic_load(n) != want && now_ms() < until)
        pause_ms(2);
    ck_assert_int_eq(atomic_load(n), want);
}

static void open_gate(int fd, int tasks) {
    for (int i = 0; i < tasks; i++)
        ck_assert_int_eq(write(fd, "x", 1), 1);
}

static slow_pool *start(int workers, int queue_max, int per_owner, int64_t timeout_ms, int gate) {
    const slow_pool_config cfg = {"test", workers, queue_max, per_owner, timeout_ms, gate};
    char err[128];
    slow_pool *p = slow_pool_start(&cfg, err, sizeof err);
    ck_assert_msg(p != NULL, "%s", err);
    return p;
}

/* A new gate (a pipe) and a pool held at it. */
static slow_pool *start_gated(int gate[2], int workers, int queue_max, int per_owner) {
    ck_assert_int_eq(pipe(gate), 0);
    return start(workers, queue_max, per_owner, 600000, gate[0]);
}

START_TEST(test_slow_pool_bounds) {
    int gate[2];
    slow_pool *pool = start_gated(gate, 2, 2, 0);
    probe probes[5];
    memset(probes, 0, sizeof probes);
    int64_t retry = 0;
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(slow_pool_submit(pool, i + 1, probe_fn, &probes[i], &retry), 0);
    await_stats(pool, 2, 2, 0); /* two held at the gate, two waiting */
    ck_assert_int_eq(slow_pool_submit(pool, 9, probe_fn, &probes[4], &retry), SLOW_POOL_QUEUE_FULL);
    ck_assert_int_ge(retry, 1);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(atomic_load(&probes[i].runs), 0);
    open_gate(gate[1], 4);
    await_stats(pool, 0, 0, 4);
    for (int i = 0; i < 4; i++)
        ck_assert_int_eq(atomic_load(&probes[i].runs), 1);
    ck_assert_int_eq(atomic_load(&probes[4].runs), 0); /* refused: never called */
    slow_pool_stats s;
    slow_pool_get_stats(pool, &s);
    ck_assert_int_eq(s.refused, 1);
    ck_assert_int_eq(s.expired, 0);
    slow_pool_stop(pool);
    slow_pool_free(pool);
    close(gate[0]), close(gate[1]);
}
END_TEST

START_TEST(test_slow_pool_per_owner) {
    int gate[2];
    slow_pool *pool = start_gated(gate, 1, 8, 2);
    probe p[4];
    memset(p, 0, sizeof p);
    int64_t retry = 0;
    ck_assert_int_eq(slow_pool_submit(pool, 7, probe_fn, &p[0], &retry), 0); /* runs */
    ck_assert_int_eq(slow_pool_submit(pool, 7, probe_fn, &p[1], &retry), 0); /* waits */
    await_stats(pool, 1, 1, 0);
    /* running and queued both count against owner 7 */
    ck_assert_int_eq(slow_pool_submit(pool, 7, probe_fn, &p[2], &retry), SLOW_POOL_OWNER_LIMIT);
    ck_assert_int_ge(retry, 1);
    ck_assert_int_eq(slow_pool_submit(pool, 8, probe_fn, &p[3], &retry), 0);
    open_gate(gate[1], 3);
    await_stats(pool, 0, 0, 3);
    ck_assert_int_eq(atomic_load(&p[2].runs), 0);
    /* owner 7's tasks are done: it may submit again */
    ck_assert_int_eq(slow_pool_submit(pool, 7, probe_fn, &p[2], &retry), 0);
    open_gate(gate[1], 1);
    await_count(&p[2].runs, 1);
    slow_pool_stop(pool);
    slow_pool_free(pool);
    close(gate[0]), close(gate[1]);
}
END_TEST

static void *stop_pool(void *pool) {
    slow_pool_stop(pool);
    return NULL;
}

START_TEST(test_slow_pool_expiry_and_stop) {
    int gate[2];
    ck_assert_int_eq(pipe(gate), 0);
    /* A 20 ms queue timeout: the task waiting behind a held one expires. */
    slow_pool *pool = start(1, 4, 0, 20, gate[0]);
    probe held, late;
    memset(&held, 0, sizeof held), memset(&late, 0, sizeof late);
    int64_t retry = 0;
    ck_assert_int_eq(slow_pool_submit(pool, 1, probe_fn, &held, &retry), 0);
    await_stats(pool, 1, 0, 0);
    ck_assert_int_eq(slow_pool_submit(pool, 2, probe_fn, &late, &retry), 0);
    await_count(&late.expired, 1);
    ck_assert_int_eq(atomic_load(&late.runs), 0);
    ck_assert_int_eq(atomic_load(&held.runs), 0); /* still at the gate */
    open_gate(gate[1], 1);
    await_count(&held.runs, 1);
    slow_pool_stats s;
    slow_pool_get_stats(pool, &s);
    ck_assert_int_eq(s.expired, 1);
    slow_pool_stop(pool);
    slow_pool_free(pool);

    /* Stopping: the queued task ends STOPPING, the running one finishes,
     * later submissions are refused. */
    pool = start(1, 4, 0, 600000, gate[0]);
    probe running, queued, after;
    memset(&running, 0, sizeof running), memset(&queued, 0, sizeof queued);
    memset(&after, 0, sizeof after);
    ck_assert_int_eq(slow_pool_submit(pool, 1, probe_fn, &running, &retry), 0);
    ck_assert_int_eq(slow_pool_submit(pool, 1, probe_fn, &queued, &retry), 0);
    await_stats(pool, 1, 1, 0);
    pthread_t stopper;
    ck_assert_int_eq(pthread_create(&stopper, NULL, stop_pool, pool), 0);
    await_count(&queued.stopped, 1); /* while the running task is held */
    ck_assert_int_eq(atomic_load(&running.runs), 0);
    open_gate(gate[1], 1); /* lets the running task end; stop joins it */
    pthread_join(stopper, NULL);
    ck_assert_int_eq(atomic_load(&running.runs), 1);
    ck_assert_int_eq(atomic_load(&queued.runs), 0);
    ck_assert_int_eq(slow_pool_submit(pool, 1, probe_fn, &after, &retry), SLOW_POOL_STOPPED);
    slow_pool_free(pool);
    close(gate[0]), close(gate[1]);
}
END_TEST

START_TEST(test_agreement_cache) {
    agreement_cache *c = agreement_cache_new(2);
    char *text;
    size_t len;
    ck_assert_int_eq(agreement_cache_last(c, 1), -1);
    ck_assert_int_eq(agreement_cache_get(c, 1, 0, &text, &len), 0);
    ck_assert_int_eq(agreement_cache_put(c, 1, 10, "one@10\n", 7), 0);
    ck_assert_int_eq(agreement_cache_get(c, 1, 11, &text, &len), 0); /* a later snapshot */
    ck_assert_int_eq(agreement_cache_get(c, 1, 10, &text, &len), 1);
    ck_assert_uint_eq(len, 7);
    ck_assert(memcmp(text, "one@10\n", 7) == 0);
    free(text);
    /* nothing of project 1 in (10, 15]: the entry answers at 15 too */
    agreement_cache_advance(c, 1, 10, 15);
    ck_assert_int_eq(agreement_cache_last(c, 1), 15);
    ck_assert_int_eq(agreement_cache_get(c, 1, 15, &text, &len), 1);
    free(text);
    agreement_cache_advance(c, 1, 10, 20); /* from an old key: no effect */
    ck_assert_int_eq(agreement_cache_last(c, 1), 15);
    /* an answer from an older snapshot never replaces a newer one */
    ck_assert_int_eq(agreement_cache_put(c, 1, 12, "one@12\n", 7), 0);
    ck_assert_int_eq(agreement_cache_last(c, 1), 15);
    ck_assert_int_eq(agreement_cache_put(c, 1, 16, "one@16\n", 7), 0);
    ck_assert_int_eq(agreement_cache_get(c, 1, 16, &text, &len), 1);
    ck_assert(memcmp(text, "one@16\n", 7) == 0);
    free(text);
    /* two entries: a third project evicts the least recently read (2) */
    ck_assert_int_eq(agreement_cache_put(c, 2, 16, "two\n", 4), 0);
    ck_assert_int_eq(agreement_cache_get(c, 1, 16, &text, &len), 1);
    free(text);
    ck_assert_int_eq(agreement_cache_put(c, 3, 16, "three\n", 6), 0);
    ck_assert_int_eq(agreement_cache_last(c, 2), -1);
    ck_assert_int_eq(agreement_cache_last(c, 1), 16);
    ck_assert_int_eq(agreement_cache_last(c, 3), 16);
    long long hits, computed;
    agreement_cache_stats(c, &hits, &computed);
    ck_assert_int_eq(hits, 4);
    ck_assert_int_eq(computed, 5); /* every put, kept or not */
    agreement_cache_free(c);
}
END_TEST

Suite *slow_pool_suite(void) {
    Suite *s = suite_create("slow_pool");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_slow_pool_bounds);
    tcase_add_test(tc, test_slow_pool_per_owner);
    tcase_add_test(tc, test_slow_pool_expiry_and_stop);
    tcase_add_test(tc, test_agreement_cache);
    suite_add_tcase(s, tc);
    return s;
}
