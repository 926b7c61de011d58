/* A small array of entries searched linearly: the projects read at one time
 * are few, and a search is nothing beside one agreement computation. The
 * answer's JSON is built here too (agreement_body_text), so that what is
 * cached and what a test recomputes are one function. */
#include "agreement_cache.h"

#include <jansson.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "prefs_store.h"
#include "reply.h"

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

/* ---- the answer -------------------------------------------------------------- */

/* The reply's body (ending in a newline, as every reply does) from every
 * ranking of the project, and the snapshot's highest ranking change id. NULL on
 * a database error or out of memory. */
char *agreement_body_text(sqlite3 *db, int64_t project_id, int64_t *last, size_t *len) {
    agreement a;
    agreement_init(&a);
    prefs_agreement_counts n;
    json_t *names;
    if (prefs_agreement_read(db, project_id, false, &a, &n, &names, last) != 0) {
        agreement_free(&a);
        return NULL;
    }
    json_t *annotators = json_array();
    for (size_t i = 0; i < a.n_annotators; i++) {
        const agreement_annotator *x = &a.annotators[i];
        json_array_append_new(
            annotators,
            json_pack("{s:s, s:I, s:I, s:I, s:o}", "annotator",
                      json_string_value(json_array_get(names, i)), "n_ranked",
                      (json_int_t)x->n_ranked, "n_skipped", (json_int_t)x->n_skipped, "n_compared",
                      (json_int_t)x->n_compared, "mean_pair_agreement",
                      x->n_compared ? json_real(x->agreement_sum / (double)x->n_compared)
                                    : json_null()));
    }
    json_decref(names);
    double alpha = 0;
    bool has_alpha = agreement_alpha(&a, &alpha);
    json_t *body = json_pack(
        "{s:s, s:I, s:I, s:I, s:I, s:{s:s, s:o, s:I}, s:{s:o, s:I}, s:o}", "object", "agreement",
        "project_id", (json_int_t)project_id, "n_comparisons_ranked",
        (json_int_t)n.comparisons_ranked, "n_rankings", (json_int_t)n.rankings, "n_skipped",
        (json_int_t)n.skipped, "krippendorff_alpha", "metric", "ordinal", "value",
        has_alpha ? json_real(alpha) : json_null(), "n_units", (json_int_t)a.n_units, "kendall_w",
        "mean", a.n_w ? json_real(a.w_sum / (double)a.n_w) : json_null(), "n_comparisons",
        (json_int_t)a.n_w, "annotators", annotators);
    agreement_free(&a);
    char *text = body ? json_dumps(body, HTTP_JSON_DUMP_FLAGS) : NULL;
    json_decref(body);
    char *grown = text ? realloc(text, strlen(text) + 2) : NULL;
    if (grown == NULL) {
        free(text);
        return NULL;
    }
    *len = strlen(grown);
    grown[(*len)++] = '\n';
    return grown;
}
