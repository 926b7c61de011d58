/* See selection.h. */
#include "selection.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const rule_names[] = {"random", "uncertainty", "disagreement"};

int selection_rule_from_name(const char *name) {
    for (int i = 0; i < 3; i++)
        if (strcmp(name, rule_names[i]) == 0)
            return i;
    return -1;
}

const char *selection_rule_name(selection_rule rule) {
    return (unsigned)rule < 3 ? rule_names[rule] : "?";
}

typedef struct candidate {
    selection_pair pair;
    int32_t run;   /* which group (index of its run of items) */
    int32_t order; /* position after the shuffle: breaks ties */
    double key;    /* ascending */
} candidate;

static int by_key(const void *x, const void *y) {
    const candidate *a = x, *b = y;
    if (a->key != b->key)
        return a->key < b->key ? -1 : 1;
    return (a->order > b->order) - (a->order < b->order);
}

static int by_group(const void *x, const void *y, void *group_v) {
    const int32_t *group = group_v, a = *(const int32_t *)x, b = *(const int32_t *)y;
    if (group[a] != group[b])
        return group[a] < group[b] ? -1 : 1;
    return (a > b) - (a < b);
}

static int cmp_i64(const void *x, const void *y) {
    const int64_t a = *(const int64_t *)x, b = *(const int64_t *)y;
    return (a > b) - (a < b);
}

static double sigmoid(double x) {
    return 1.0 / (1.0 + exp(-x));
}

/* The rule's sort key of pair (a, b): smaller is chosen first. */
static double pair_key(selection_rule rule, const selection_input *in, int32_t a, int32_t b) {
    const int E = in->n_members, n = in->n_items;
    if (rule == SELECTION_UNCERTAINTY) {
        double ra = 0.0, rb = 0.0;
        for (int e = 0; e < E; e++)
            ra += in->scores[(int64_t)e * n + a], rb += in->scores[(int64_t)e * n + b];
        return fabs(sigmoid((ra - rb) / E) - 0.5);
    }
    if (rule == SELECTION_DISAGREEMENT) {
        double sum = 0.0, sum2 = 0.0;
        for (int e = 0; e < E; e++) {
            const double p =
                sigmoid(in->scores[(int64_t)e * n + a] - in->scores[(int64_t)e * n + b]);
            sum += p, sum2 += p * p;
        }
        const double mean = sum / E;
        return -(sum2 / E - mean * mean);
    }
    return 0.0;
}

int selection_choose(selection_rule rule, const selection_input *in, int m, rng_state *rng,
                     selection_pair *out, char *err, size_t errlen) {
    if ((unsigned)rule > SELECTION_DISAGREEMENT) {
        snprintf(err, errlen, "unknown selection rule %d", (int)rule);
        return -1;
    }
    if (in->n_items < 0 || m < 0 || in->max_per_group < 0) {
        snprintf(err, errlen, "selection: negative n_items, m or max_per_group");
        return -1;
    }
    if (rule != SELECTION_RANDOM && (in->scores == NULL || in->n_members < 1)) {
        snprintf(err, errlen, "selection rule %s needs reward-model scores",
                 selection_rule_name(rule));
        return -1;
    }
    if (rule == SELECTION_DISAGREEMENT && in->n_members < 2) {
        snprintf(err, errlen,
                 "selection rule disagreement needs an ensemble of at least 2 reward models, "
                 "got %d",
                 in->n_members);
        return -1;
    }
    const int n = in->n_items;
    int32_t *items = malloc(sizeof(int32_t) * (size_t)(n > 0 ? n : 1));
    int64_t *excluded = malloc(sizeof(int64_t) * (size_t)(in->n_exclude > 0 ? in->n_exclude : 1));
    if (items == NULL || excluded == NULL) {
        free(items), free(excluded);
        snprintf(err, errlen, "selection: out of memory");
        return -1;
    }
    for (int i = 0; i < n; i++)
        items[i] = i;
    qsort_r(items, (size_t)n, sizeof *items, by_group, (void *)in->group);
    for (int i = 0; i < in->n_exclude; i++) {
        const int32_t a = in->exclude[i].a, b = in->exclude[i].b;
        excluded[i] = a < b ? (int64_t)a * n + b : (int64_t)b * n + a;
    }
    qsort(excluded, (size_t)in->n_exclude, sizeof *excluded, cmp_i64);
    /* every pair within a run of equal groups */
    int64_t n_cand = 0;
    for (int s = 0, e; s < n; s = e) {
        for (e = s + 1; e < n && in->group[items[e]] == in->group[items[s]]; e++)
            ;
        n_cand += (int64_t)(e - s) * (e - s - 1) / 2;
    }
    candidate *cand = malloc(sizeof(candidate) * (size_t)(n_cand > 0 ? n_cand : 1));
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)(n_cand > 0 ? n_cand : 1));
    int32_t *taken = calloc((size_t)(n > 0 ? n : 1), sizeof(int32_t)); /* per run */
    if (cand == NULL || perm == NULL || taken == NULL || n_cand > INT32_MAX) {
        free(items), free(excluded), free(cand), free(perm), free(taken);
        snprintf(err, errlen, "selection: out of memory (%lld candidate pairs)", (long long)n_cand);
        return -1;
    }
    int64_t c = 0;
    int32_t run = 0;
    for (int s = 0, e; s < n; s = e, run++) {
        for (e = s + 1; e < n && in->group[items[e]] == in->group[items[s]]; e++)
            ;
        for (int i = s; i < e; i++)
            for (int j = i + 1; j < e; j++) {
                const int32_t a = items[i] < items[j] ? items[i] : items[j];
                const int32_t b = items[i] < items[j] ? items[j] : items[i];
                const int64_t k = (int64_t)a * n + b;
                if (bsearch(&k, excluded, (size_t)in->n_exclude, sizeof k, cmp_i64) != NULL)
                    continue;
                cand[c++] = (candidate){{a, b}, run, 0, pair_key(rule, in, a, b)};
            }
    }
    rng_permutation(rng, perm, (int32_t)c);
    for (int64_t i = 0; i < c; i++)
        cand[perm[i]].order = (int32_t)i;
    qsort(cand, (size_t)c, sizeof *cand, by_key);
    int chosen = 0;
    for (int64_t i = 0; i < c && chosen < m; i++) {
        if (in->max_per_group > 0 && taken[cand[i].run] >= in->max_per_group)
            continue;
        taken[cand[i].run]++;
        out[chosen++] = cand[i].pair;
    }
    free(items), free(excluded), free(cand), free(perm), free(taken);
    return chosen;
}
