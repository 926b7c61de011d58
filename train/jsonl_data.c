#include "jsonl_data.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dataset_format.h"

/* ---- shared: one JSON object a line ------------------------------------------ */

/* Keeps a copy of s in the store; NULL when out of memory. */
static const char *store_keep(char ***strings, int64_t *n, int64_t *cap, const char *s) {
    if (*n == *cap) {
        const int64_t grown_cap = *cap ? 2 * *cap : 1024;
        char **grown = realloc(*strings, sizeof *grown * (size_t)grown_cap);
        if (grown == NULL)
            return NULL;
        *strings = grown;
        *cap = grown_cap;
    }
    char *copy = strdup(s);
    if (copy != NULL)
        (*strings)[(*n)++] = copy;
    return copy;
}

static void store_free(char **strings, int64_t n) {
    for (int64_t i = 0; i < n; i++)
        free(strings[i]);
    free(strings);
}

/* The item array with room for one more (reallocated when full), or NULL
 * when out of memory (items then stays valid). */
static void *grow(void *items, int64_t n, int64_t *cap, size_t item_bytes) {
    if (n < *cap)
        return items;
    const int64_t grown_cap = *cap ? 2 * *cap : 256;
    void *grown = realloc(items, item_bytes * (size_t)grown_cap);
    if (grown != NULL)
        *cap = grown_cap;
    return grown;
}

/* Reads path a line at a time, parses each non-blank line as a row of
 * format (common/dataset_format.h) and hands it to add; the first failure
 * stops the read with "path:line: why". */
typedef int (*jsonl_add_fn)(void *ctx, const dataset_row *row, char *why, size_t why_len);

static int jsonl_each(const char *path, dataset_format format, jsonl_add_fn add, void *ctx,
                      char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    char *line = NULL;
    size_t line_cap = 0;
    ssize_t len;
    int64_t number = 0;
    int rc = 0;
    while (rc == 0 && (len = getline(&line, &line_cap, f)) >= 0) {
        number++;
        size_t n = (size_t)len;
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r' || line[n - 1] == ' '))
            n--;
        if (n == 0)
            continue;
        char why[400];
        json_error_t jerr;
        dataset_row row;
        dataset_error e;
        json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL)
            snprintf(why, sizeof why, "%s", jerr.text), rc = -1;
        else if (dataset_row_parse_chat(obj, format, RANKING_MAX_K, true, &row, &e) != 0)
            snprintf(why, sizeof why, "%s", e.message), rc = -1;
        else {
            rc = add(ctx, &row, why, sizeof why);
            dataset_row_free(&row);
        }
        json_decref(obj);
        if (rc != 0)
            snprintf(err, errlen, "%s:%lld: %s", path, (long long)number, why);
    }
    free(line);
    fclose(f);
    return rc;
}

/* ---- (prompt, response) pairs --------------------------------------------------- */

void text_pairs_free(text_pairs *p) {
    store_free(p->strings, p->n_strings);
    free(p->items);
    memset(p, 0, sizeof *p);
}

typedef struct pairs_ctx {
    text_pairs *out;
    int64_t cap;
} pairs_ctx;

/* An sft row as (prompt, response); a prompts row as (prompt, answer), ""
 * without an answer. */
static int add_pair(void *ctx, const dataset_row *row, char *why, size_t why_len) {
    pairs_ctx *c = ctx;
    text_pairs *p = c->out;
    const char *ps = store_keep(&p->strings, &p->n_strings, &p->cap_strings, row->prompt);
    const char *rs =
        store_keep(&p->strings, &p->n_strings, &p->cap_strings, row->response ? row->response : "");
    const char *ms =
        row->messages ? store_keep(&p->strings, &p->n_strings, &p->cap_strings, row->messages) : "";
    text_pair *items = grow(p->items, p->n, &c->cap, sizeof *p->items);
    if (ps == NULL || rs == NULL || ms == NULL || items == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    p->items = items;
    p->items[p->n++] = (text_pair){ps, rs, row->messages ? ms : NULL, row->first_trained};
    return 0;
}

static int load_pairs(text_pairs *out, const char *path, dataset_format format, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    pairs_ctx ctx = {out, 0};
    int rc = jsonl_each(path, format, add_pair, &ctx, err, errlen);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no examples", path);
        rc = -1;
    }
    if (rc != 0)
        text_pairs_free(out);
    return rc;
}

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen) {
    return load_pairs(out, path, DATASET_FORMAT_SFT, err, errlen);
}

int prompts_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen) {
    return load_pairs(out, path, DATASET_FORMAT_PROMPTS, err, errlen);
}

/* ---- rankings ------------------------------------------------------------------ */

void ranking_set_free(ranking_set *r) {
    store_free(r->strings, r->n_strings);
    free(r->items);
    memset(r, 0, sizeof *r);
}

static const char *keep_string(ranking_set *r, const char *s) {
    return store_keep(&r->strings, &r->n_strings, &r->cap_strings, s);
}

int ranking_from_row(const dataset_row *row, ranking *rk, const char *(*keep)(void *, const char *),
                     void *keep_ctx) {
    if (row->k < 2 || row->k > RANKING_MAX_K)
        return -1;
    *rk = (ranking){.k = row->k, .margin = row->has_margin ? (float)row->margin : 0.0f};
    rk->prompt = keep(keep_ctx, row->prompt);
    if (row->prompt_messages != NULL &&
        (rk->prompt_messages = keep(keep_ctx, row->prompt_messages)) == NULL)
        return -1;
    for (int i = 0; i < row->k; i++) {
        rk->responses[i] = keep(keep_ctx, row->responses[i]);
        rk->rank[i] = row->ranks[i];
        if (rk->responses[i] == NULL)
            return -1;
    }
    return rk->prompt ? 0 : -1;
}

typedef struct rankings_ctx {
    ranking_set *out;
    int64_t cap;
} rankings_ctx;

static const char *keep_in_set(void *set, const char *s) {
    return keep_string(set, s);
}

static int add_ranking(void *ctx, const dataset_row *row, char *why, size_t why_len) {
    rankings_ctx *c = ctx;
    ranking *items = grow(c->out->items, c->out->n, &c->cap, sizeof *c->out->items);
    if (items == NULL || ranking_from_row(row, &items[c->out->n], keep_in_set, c->out) != 0) {
        if (items != NULL)
            c->out->items = items;
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    c->out->items = items;
    c->out->n++;
    return 0;
}

int rankings_load_jsonl(ranking_set *out, const char *path, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    rankings_ctx ctx = {out, 0};
    int rc = jsonl_each(path, DATASET_FORMAT_PREFERENCE, add_ranking, &ctx, err, errlen);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no rankings", path);
        rc = -1;
    }
    if (rc != 0)
        ranking_set_free(out);
    return rc;
}
