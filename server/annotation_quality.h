/* annotation_quality — the statistics of issue 18's quality controls (the
 * math only; annotation_store.c feeds it, routes_annotation.c serves it):
 * the per-annotator shuffle of the candidates, the position-bias test, and
 * the small helpers of the quality report (median, gold scoring).
 */
#ifndef RLHF_ANNOTATION_QUALITY_H
#define RLHF_ANNOTATION_QUALITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ranking_limits.h"

/* The order annotator `token_id` sees comparison `comparison_id`'s n
 * candidates in: perm[j] is the position (0..n-1, as stored) of the
 * candidate shown j-th. A Fisher-Yates shuffle driven by splitmix64 of
 * (token, comparison): the same for every call, different per annotator. */
void annotation_shuffle(int64_t token_id, int64_t comparison_id, size_t n, size_t *perm);

/* A number in [0, 1) from (token, project, draw): whether `next` serves
 * a gold comparison (draw < gold_rate) for the annotator's draw-th answer
 * in the project. */
double annotation_gold_draw(int64_t token_id, int64_t project_id, int64_t draw);

/* Where gold comparison `comparison_id` comes in annotator `token_id`'s
 * order (lowest first): a hash of the two, so each annotator meets the
 * project's gold comparisons in an order of their own, not all in id
 * order (where the first one everybody is served would be known gold). */
uint64_t annotation_gold_rank(int64_t token_id, int64_t comparison_id);

/* Exact two-sided binomial test: the probability under Binomial(n, p) of
 * an outcome no more likely than x (the sum of pmf(i) over i with pmf(i) <=
 * pmf(x)). 1 when n = 0. */
double annotation_binomial_p(int64_t x, int64_t n, double p);

/* Wilson score interval of x successes in n trials at z (1.96: 95%). */
void annotation_wilson(int64_t x, int64_t n, double z, double *lo, double *hi);

/* The median of v[0..n) (sorts v; the mean of the middle two for an even
 * n); false when n = 0. */
bool annotation_median(int64_t *v, size_t n, double *median);

/* Position bias: rankings with one best candidate (no tie at the top), by
 * the number of candidates k, and how often the best was the one shown
 * first. Under no bias the first-shown wins with probability 1/k. */
typedef struct position_bias {
    int64_t n[RANKING_MAX_K + 1], first_wins[RANKING_MAX_K + 1];
    int64_t top_ties; /* rankings left out: a tie at the top */
} position_bias;
void position_bias_add(position_bias *b, int k, bool first_won);

/* Gold scoring of one ranking of n candidates against the known answer
 * (groups, 0 best): *top_correct whether the ranking's best group is the
 * gold best group exactly; returns the fraction of candidate pairs ordered
 * as gold orders them (agreement_pair). */
double annotation_gold_score(int n, const int *gold_group, const int *group, bool *top_correct);

#endif
