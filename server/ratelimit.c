/* Buckets live in an open-addressing table keyed by token id (tokens are
 * few and never deleted, so the table only grows). Levels are kept in
 * thousandths of a write to stay in integers. */
#include "ratelimit.h"

#include <pthread.h>
#include <stdlib.h>

typedef struct bucket {
    int64_t token_id; /* 0: empty slot */
    int64_t level;    /* thousandths of a write */
    int64_t last_ms;
} bucket;

struct rate_limiter {
    pthread_mutex_t mutex;
    int64_t rate, burst;
    bucket *slots;
    size_t cap, used;
};

rate_limiter *rate_limiter_new(int64_t rate, int64_t burst) {
    rate_limiter *l = calloc(1, sizeof *l);
    if (l == NULL)
        return NULL;
    l->rate = rate, l->burst = burst;
    l->cap = 64;
    if ((l->slots = calloc(l->cap, sizeof *l->slots)) == NULL) {
        free(l);
        return NULL;
    }
    pthread_mutex_init(&l->mutex, NULL);
    return l;
}

static bucket *find(bucket *slots, size_t cap, int64_t token_id) {
    size_t i = (size_t)((uint64_t)token_id * 0x9E3779B97F4A7C15ull) & (cap - 1);
    while (slots[i].token_id != 0 && slots[i].token_id != token_id)
        i = (i + 1) & (cap - 1);
    return &slots[i];
}

static int grow(rate_limiter *l) {
    size_t cap = l->cap * 2;
    bucket *slots = calloc(cap, sizeof *slots);
    if (slots == NULL)
        return -1;
    for (size_t i = 0; i < l->cap; i++)
        if (l->slots[i].token_id != 0)
            *find(slots, cap, l->slots[i].token_id) = l->slots[i];
    free(l->slots);
    l->slots = slots, l->cap = cap;
    return 0;
}

int64_t rate_limiter_take(rate_limiter *l, int64_t token_id, int64_t now_ms) {
    if (l == NULL || l->rate == 0)
        return 0;
    pthread_mutex_lock(&l->mutex);
    bucket *b = find(l->slots, l->cap, token_id);
    if (b->token_id == 0) {
        if ((l->used + 1) * 2 > l->cap && grow(l) == 0)
            b = find(l->slots, l->cap, token_id);
        else if (l->used + 2 >= l->cap) { /* out of memory: do not limit */
            pthread_mutex_unlock(&l->mutex);
            return 0;
        }
        b->token_id = token_id, b->level = l->burst * 1000, b->last_ms = now_ms;
        l->used++;
    }
    /* refill: rate writes per second = rate thousandths per millisecond.
     * Callers read the clock before taking the lock, so a take may come
     * stamped before the last one: it refills nothing and keeps last_ms. */
    int64_t level = b->level;
    if (now_ms > b->last_ms) {
        level += (now_ms - b->last_ms) * l->rate;
        if (level > l->burst * 1000)
            level = l->burst * 1000;
        b->last_ms = now_ms;
    }
    int64_t wait_s = 0;
    if (level >= 1000)
        level -= 1000;
    else /* ms until the bucket holds one write, rounded up to seconds */
        wait_s = ((1000 - level + l->rate - 1) / l->rate + 999) / 1000;
    b->level = level;
    pthread_mutex_unlock(&l->mutex);
    return wait_s;
}

void rate_limiter_free(rate_limiter *l) {
    if (l == NULL)
        return;
    pthread_mutex_destroy(&l->mutex);
    free(l->slots);
    free(l);
}
