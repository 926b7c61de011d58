#include "token_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct token_slot {
    char text[TOKEN_CACHE_MAX_LEN + 1]; /* "" = empty */
    auth_token token;
} token_slot;

struct token_cache {
    pthread_mutex_t mutex;
    uint64_t generation; /* bumped by every invalidation */
    token_slot slots[TOKEN_CACHE_SLOTS];
};

token_cache *token_cache_new(void) {
    token_cache *c = calloc(1, sizeof *c);
    if (c != NULL)
        pthread_mutex_init(&c->mutex, NULL);
    return c;
}

void token_cache_free(token_cache *c) {
    if (c == NULL)
        return;
    pthread_mutex_destroy(&c->mutex);
    free(c);
}

static size_t token_slot_of(const char *token) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const unsigned char *p = (const unsigned char *)token; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return (size_t)(h % TOKEN_CACHE_SLOTS);
}

int token_cache_get(token_cache *c, const char *token, auth_token *out, uint64_t *generation) {
    size_t i = token_slot_of(token);
    pthread_mutex_lock(&c->mutex);
    int hit = c->slots[i].text[0] != '\0' && strcmp(c->slots[i].text, token) == 0;
    if (hit)
        *out = c->slots[i].token;
    *generation = c->generation;
    pthread_mutex_unlock(&c->mutex);
    return hit;
}

void token_cache_put(token_cache *c, const char *token, const auth_token *t, uint64_t generation) {
    size_t n = strlen(token);
    if (n == 0 || n > TOKEN_CACHE_MAX_LEN)
        return;
    size_t i = token_slot_of(token);
    pthread_mutex_lock(&c->mutex);
    if (generation == c->generation) { /* no revocation since the lookup began */
        memcpy(c->slots[i].text, token, n + 1);
        c->slots[i].token = *t;
    }
    pthread_mutex_unlock(&c->mutex);
}

void token_cache_invalidate(token_cache *c) {
    pthread_mutex_lock(&c->mutex);
    c->generation++;
    memset(c->slots, 0, sizeof c->slots);
    pthread_mutex_unlock(&c->mutex);
}
