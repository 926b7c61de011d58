/* A small array of entries searched linearly: the projects read at one time
 * are few, and a search is nothing beside one agreement computation. */
#include "agreement_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct entry {
    int64_t project_id; /* 0: empty */
    int64_t last;
    char *text;
    size_t len;
    uint64_t used; /* the clock at its last read or write */
} entry;

struct agreement_cache {
    pthread_mutex_t mutex;
    entry *entries;
    size_t n;
    uint64_t clock;
    long long hits, computed;
};

agreement_cache *agreement_cache_new(size_t max_entries) {
    agreement_cache *c = calloc(1, sizeof *c);
    if (c == NULL || max_entries == 0 ||
        (c->entries = calloc(max_entries, sizeof *c->entries)) == NULL) {
        free(c);
        return NULL;
    }
    c->n = max_entries;
    pthread_mutex_init(&c->mutex, NULL);
    return c;
}

void agreement_cache_free(agreement_cache *c) {
    if (c == NULL)
        return;
    for (size_t i = 0; i < c->n; i++)
        free(c->entries[i].text);
    free(c->entries);
    pthread_mutex_destroy(&c->mutex);
    free(c);
}

static entry *find(agreement_cache *c, int64_t project_id) {
    for (size_t i = 0; i < c->n; i++)
        if (c->entries[i].project_id == project_id)
            return &c->entries[i];
    return NULL;
}

int64_t agreement_cache_last(agreement_cache *c, int64_t project_id) {
    pthread_mutex_lock(&c->mutex);
    const entry *e = find(c, project_id);
    const int64_t last = e ? e->last : -1;
    pthread_mutex_unlock(&c->mutex);
    return last;
}

int agreement_cache_get(agreement_cache *c, int64_t project_id, int64_t last, char **text,
                        size_t *len) {
    pthread_mutex_lock(&c->mutex);
    entry *e = find(c, project_id);
    int hit = e != NULL && e->last == last && (*text = malloc(e->len)) != NULL;
    if (hit) {
        memcpy(*text, e->text, e->len);
        *len = e->len;
        e->used = ++c->clock;
        c->hits++;
    }
    pthread_mutex_unlock(&c->mutex);
    return hit;
}

int agreement_cache_put(agreement_cache *c, int64_t project_id, int64_t last, const char *text,
                        size_t len) {
    char *copy = malloc(len);
    if (copy == NULL)
        return -1;
    memcpy(copy, text, len);
    pthread_mutex_lock(&c->mutex);
    c->computed++;
    entry *e = find(c, project_id);
    if (e != NULL && e->last > last) { /* a later answer is already in */
        pthread_mutex_unlock(&c->mutex);
        free(copy);
        return 0;
    }
    if (e == NULL) { /* an empty entry, else the least recently used */
        e = &c->entries[0];
        for (size_t i = 1; i < c->n && e->project_id != 0; i++)
            if (c->entries[i].project_id == 0 || c->entries[i].used < e->used)
                e = &c->entries[i];
    }
    free(e->text);
    *e = (entry){project_id, last, copy, len, ++c->clock};
    pthread_mutex_unlock(&c->mutex);
    return 0;
}

void agreement_cache_advance(agreement_cache *c, int64_t project_id, int64_t from, int64_t to) {
    pthread_mutex_lock(&c->mutex);
    entry *e = find(c, project_id);
    if (e != NULL && e->last == from && to > from)
        e->last = to;
    pthread_mutex_unlock(&c->mutex);
}

void agreement_cache_stats(agreement_cache *c, long long *hits, long long *computed) {
    pthread_mutex_lock(&c->mutex);
    *hits = c->hits, *computed = c->computed;
    pthread_mutex_unlock(&c->mutex);
}
