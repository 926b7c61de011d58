#include "jsonl_data.h"

#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

/* Reads path a line at a time and hands each non-blank line's JSON to
 * add; the first failure stops the read with "path:line: why". */
typedef int (*jsonl_add_fn)(void *ctx, json_t *obj, char *why, size_t why_len);

static int jsonl_each(const char *path, jsonl_add_fn add, void *ctx, char *err, size_t errlen) {
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
        char why[320];
        json_error_t jerr;
        json_t *obj = json_loadb(line, n, JSON_REJECT_DUPLICATES, &jerr);
        if (obj == NULL)
            snprintf(why, sizeof why, "%s", jerr.text), rc = -1;
        else
            rc = add(ctx, obj, why, sizeof why);
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
    bool prompt_only;
} pairs_ctx;

static int add_pair(void *ctx, json_t *obj, char *why, size_t why_len) {
    pairs_ctx *c = ctx;
    text_pairs *p = c->out;
    if (!json_is_object(obj)) {
        snprintf(why, why_len, "expected a JSON object");
        return -1;
    }
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (strcmp(key, "prompt") != 0 && strcmp(key, "response") != 0 &&
            strcmp(key, "text") != 0) {
            snprintf(why, why_len, "unknown field '%.64s' (expected prompt and response, or text)",
                     key);
            return -1;
        }
        if (!json_is_string(v)) {
            snprintf(why, why_len, "field '%s' must be a string", key);
            return -1;
        }
    }
    json_t *text = json_object_get(obj, "text");
    json_t *prompt = json_object_get(obj, "prompt"), *response = json_object_get(obj, "response");
    if (text != NULL && (prompt != NULL || response != NULL)) {
        snprintf(why, why_len, "give either text, or prompt and response");
        return -1;
    }
    if (c->prompt_only && text == NULL && prompt != NULL && response == NULL)
        response = prompt; /* placeholder: a prompts file has no responses */
    if (text == NULL && (prompt == NULL || response == NULL)) {
        snprintf(why, why_len, "missing field '%s'", prompt == NULL ? "prompt" : "response");
        return -1;
    }
    const char *ps =
        text ? ""
             : store_keep(&p->strings, &p->n_strings, &p->cap_strings, json_string_value(prompt));
    const char *rs = store_keep(&p->strings, &p->n_strings, &p->cap_strings,
                                json_string_value(text ? text : response));
    text_pair *items = grow(p->items, p->n, &c->cap, sizeof *p->items);
    if (ps == NULL || rs == NULL || items == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    p->items = items;
    p->items[p->n++] = (text_pair){ps, rs};
    return 0;
}

static int load_pairs(text_pairs *out, const char *path, bool prompt_only, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    pairs_ctx ctx = {out, 0, prompt_only};
    int rc = jsonl_each(path, add_pair, &ctx, err, errlen);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no examples", path);
        rc = -1;
    }
    if (rc != 0)
        text_pairs_free(out);
    return rc;
}

int text_pairs_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen) {
    return load_pairs(out, path, false, err, errlen);
}

int prompts_load_jsonl(text_pairs *out, const char *path, char *err, size_t errlen) {
    return load_pairs(out, path, true, err, errlen);
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

/* Fills rk from one parsed line; returns 0 or -1 with a message (no path). */
static int parse_ranking(ranking_set *set, ranking *rk, json_t *obj, char *err, size_t errlen) {
    if (!json_is_object(obj)) {
        snprintf(err, errlen, "expected a JSON object");
        return -1;
    }
    static const char *const known[] = {"prompt", "chosen", "rejected", "responses",
                                        "ranks",  "margin", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        int ok = 0;
        for (const char *const *k = known; *k; k++)
            ok |= strcmp(*k, key) == 0;
        if (!ok) {
            snprintf(err, errlen, "unknown field '%.64s'", key);
            return -1;
        }
    }
    memset(rk, 0, sizeof *rk);
    json_t *prompt = json_object_get(obj, "prompt");
    if (!json_is_string(prompt)) {
        snprintf(err, errlen, "field 'prompt' must be a string");
        return -1;
    }
    rk->prompt = keep_string(set, json_string_value(prompt));
    json_t *margin = json_object_get(obj, "margin");
    if (margin != NULL && !json_is_number(margin)) {
        snprintf(err, errlen, "field 'margin' must be a number");
        return -1;
    }
    rk->margin = margin ? (float)json_number_value(margin) : 0.0f;
    json_t *chosen = json_object_get(obj, "chosen"), *rejected = json_object_get(obj, "rejected");
    json_t *responses = json_object_get(obj, "responses"), *ranks = json_object_get(obj, "ranks");
    if ((chosen || rejected) && (responses || ranks)) {
        snprintf(err, errlen, "give chosen and rejected, or responses and ranks, not both");
        return -1;
    }
    if (chosen || rejected) {
        if (!json_is_string(chosen) || !json_is_string(rejected)) {
            snprintf(err, errlen, "fields 'chosen' and 'rejected' must both be strings");
            return -1;
        }
        rk->k = 2;
        rk->responses[0] = keep_string(set, json_string_value(chosen));
        rk->responses[1] = keep_string(set, json_string_value(rejected));
        rk->rank[0] = 0, rk->rank[1] = 1;
    } else {
        if (!json_is_array(responses) || !json_is_array(ranks)) {
            snprintf(err, errlen, "missing field '%s'",
                     !json_is_array(responses) ? "responses (or chosen/rejected)" : "ranks");
            return -1;
        }
        const size_t k = json_array_size(responses);
        if (k < 2 || k > RANKING_MAX_K || json_array_size(ranks) != k) {
            snprintf(err, errlen,
                     "'responses' needs 2 to %d entries and 'ranks' as many (got %zu "
                     "and %zu)",
                     RANKING_MAX_K, k, json_array_size(ranks));
            return -1;
        }
        rk->k = (int)k;
        for (size_t i = 0; i < k; i++) {
            json_t *resp = json_array_get(responses, i), *rank = json_array_get(ranks, i);
            if (!json_is_string(resp) || !json_is_integer(rank)) {
                snprintf(err, errlen, "responses[%zu] must be a string and ranks[%zu] an integer",
                         i, i);
                return -1;
            }
            rk->responses[i] = keep_string(set, json_string_value(resp));
            rk->rank[i] = (int)json_integer_value(rank);
        }
    }
    for (int i = 0; i < rk->k; i++)
        if (rk->responses[i] == NULL || rk->prompt == NULL) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    return ranking_validate(rk, err, errlen);
}

typedef struct rankings_ctx {
    ranking_set *out;
    int64_t cap;
} rankings_ctx;

static int add_ranking(void *ctx, json_t *obj, char *why, size_t why_len) {
    rankings_ctx *c = ctx;
    ranking *items = grow(c->out->items, c->out->n, &c->cap, sizeof *c->out->items);
    if (items == NULL) {
        snprintf(why, why_len, "out of memory");
        return -1;
    }
    c->out->items = items;
    if (parse_ranking(c->out, &c->out->items[c->out->n], obj, why, why_len) != 0)
        return -1;
    c->out->n++;
    return 0;
}

int rankings_load_jsonl(ranking_set *out, const char *path, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    rankings_ctx ctx = {out, 0};
    int rc = jsonl_each(path, add_ranking, &ctx, err, errlen);
    if (rc == 0 && out->n == 0) {
        snprintf(err, errlen, "%s: no rankings", path);
        rc = -1;
    }
    if (rc != 0)
        ranking_set_free(out);
    return rc;
}
