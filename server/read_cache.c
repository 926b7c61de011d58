#include "read_cache.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define TOKEN_SLOTS   256
#define SERIES_SLOTS  64
#define TOKEN_MAX_LEN 128

typedef struct token_slot {
    char text[TOKEN_MAX_LEN + 1]; /* "" = empty */
    auth_token token;
} token_slot;

typedef struct series_slot {
    bool used, cacheable;
    uint64_t inserted; /* order, for eviction */
    metrics_series s;
} series_slot;

struct read_cache {
    pthread_mutex_t token_mutex;
    uint64_t token_generation;
    token_slot tokens[TOKEN_SLOTS];
    pthread_rwlock_t series_lock;
    size_t series_max, series_bytes;
    uint64_t series_inserted;
    series_slot series[SERIES_SLOTS];
};

read_cache *read_cache_new(size_t series_max_bytes) {
    read_cache *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    pthread_mutex_init(&c->token_mutex, NULL);
    pthread_rwlock_init(&c->series_lock, NULL);
    c->series_max = series_max_bytes;
    return c;
}

void read_cache_free(read_cache *c) {
    if (c == NULL)
        return;
    for (int i = 0; i < SERIES_SLOTS; i++)
        metrics_series_free(&c->series[i].s);
    pthread_mutex_destroy(&c->token_mutex);
    pthread_rwlock_destroy(&c->series_lock);
    free(c);
}

/* ---- tokens ---------------------------------------------------------------- */

static size_t token_slot_of(const char *token) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)token; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % TOKEN_SLOTS);
}

int read_cache_token_get(read_cache *c, const char *token, auth_token *out, uint64_t *generation) {
    size_t i = token_slot_of(token);
    pthread_mutex_lock(&c->token_mutex);
    int hit = c->tokens[i].text[0] != '\0' && strcmp(c->tokens[i].text, token) == 0;
    if (hit)
        *out = c->tokens[i].token;
    *generation = c->token_generation;
    pthread_mutex_unlock(&c->token_mutex);
    return hit;
}

void read_cache_token_put(read_cache *c, const char *token, const auth_token *t,
                          uint64_t generation) {
    size_t n = strlen(token);
    if (n == 0 || n > TOKEN_MAX_LEN)
        return;
    size_t i = token_slot_of(token);
    pthread_mutex_lock(&c->token_mutex);
    if (generation == c->token_generation) { /* no revocation since the lookup began */
        memcpy(c->tokens[i].text, token, n + 1);
        c->tokens[i].token = *t;
    }
    pthread_mutex_unlock(&c->token_mutex);
}

void read_cache_tokens_invalidate(read_cache *c) {
    pthread_mutex_lock(&c->token_mutex);
    c->token_generation++;
    memset(c->tokens, 0, sizeof c->tokens);
    pthread_mutex_unlock(&c->token_mutex);
}

/* ---- series ---------------------------------------------------------------- */

static series_slot *series_find(read_cache *c, int64_t job_id, const char *name) {
    for (int i = 0; i < SERIES_SLOTS; i++)
        if (c->series[i].used && c->series[i].s.job_id == job_id &&
            strcmp(c->series[i].s.name, name) == 0)
            return &c->series[i];
    return NULL;
}

int read_cache_series_page(read_cache *c, int64_t job_id, const char *name, int64_t after_step,
                           int64_t limit, char **out, size_t *len) {
    if (c->series_max == 0)
        return 2;
    pthread_rwlock_rdlock(&c->series_lock);
    series_slot *slot = series_find(c, job_id, name);
    int rc = slot == NULL                                                      ? 0
             : !slot->cacheable                                                ? 2
             : metrics_series_page(&slot->s, after_step, limit, out, len) == 0 ? 1
                                                                               : -1;
    pthread_rwlock_unlock(&c->series_lock);
    return rc;
}

void read_cache_series_put(read_cache *c, metrics_series *s, int cacheable) {
    if (cacheable && s->bytes > c->series_max / 4) { /* one series may not take it all */
        cacheable = 0;
        char *name = s->name;
        s->name = NULL;
        int64_t job_id = s->job_id;
        metrics_series_free(s);
        s->name = name, s->job_id = job_id;
    }
    pthread_rwlock_wrlock(&c->series_lock);
    if (s->name == NULL || series_find(c, s->job_id, s->name) != NULL) {
        pthread_rwlock_unlock(&c->series_lock);
        metrics_series_free(s); /* another thread was first */
        return;
    }
    for (;;) { /* room: a free slot within the budget, evicting the oldest */
        series_slot *free_slot = NULL, *oldest = NULL;
        for (int i = 0; i < SERIES_SLOTS; i++) {
            series_slot *x = &c->series[i];
            if (!x->used)
                free_slot = free_slot ? free_slot : x;
            else if (oldest == NULL || x->inserted < oldest->inserted)
                oldest = x;
        }
        if (free_slot != NULL && c->series_bytes + s->bytes <= c->series_max) {
            free_slot->used = true;
            free_slot->cacheable = cacheable != 0;
            free_slot->inserted = ++c->series_inserted;
            free_slot->s = *s;
            c->series_bytes += s->bytes;
            break;
        }
        if (oldest == NULL) { /* cannot happen: s->bytes <= series_max / 4 */
            metrics_series_free(s);
            break;
        }
        c->series_bytes -= oldest->s.bytes;
        metrics_series_free(&oldest->s);
        oldest->used = false;
    }
    pthread_rwlock_unlock(&c->series_lock);
    memset(s, 0, sizeof *s);
}
