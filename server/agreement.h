/* agreement — inter-annotator agreement of a preference project (the math
 * only; prefs_store.c feeds it from SQLite for routes_agreement.c). See
 * agreement.c for the formulation. */
#ifndef RLHF_AGREEMENT_H
#define RLHF_AGREEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ranking_limits.h"

/* Values are midranks (1, 1.5, 2, ...) stored doubled: 2..2K. */
#define AGREEMENT_N_VALUES (2 * RANKING_MAX_K + 1)

/* One annotator's answer to one comparison: group[i] is the group of
 * candidate i, 0 best, equal groups tie. */
typedef struct agreement_ranking {
    int64_t annotator;
    int group[RANKING_MAX_K];
} agreement_ranking;

typedef struct agreement_annotator {
    int64_t annotator;
    int64_t n_ranked, n_skipped;
    int64_t n_compared;   /* (comparison, other annotator) pairs both ranked */
    double agreement_sum; /* of their pair agreements */
    /* Their part of the coincidence matrix: the ordered pairs (their
     * value, another coder's value) of the units they coded. */
    double coincidence[AGREEMENT_N_VALUES][AGREEMENT_N_VALUES];
} agreement_annotator;

typedef struct agreement {
    /* Krippendorff's coincidence matrix over doubled midranks. */
    double coincidence[AGREEMENT_N_VALUES][AGREEMENT_N_VALUES];
    int64_t n_units; /* (comparison, candidate) units with >= 2 values */
    double w_sum;    /* Kendall's W summed over comparisons where defined */
    int64_t n_w;
    agreement_annotator *annotators;
    size_t n_annotators, cap_annotators;
} agreement;

void agreement_init(agreement *a);
void agreement_free(agreement *a);
/* One comparison of n candidates (2..RANKING_MAX_K) and its m
 * non-skipped rankings (each annotator at most once). 0, or -1 on bad
 * input or out of memory. */
int agreement_add_comparison(agreement *a, int n, const agreement_ranking *rankings, size_t m);
/* An annotator skipped a comparison. 0 or -1 (out of memory). */
int agreement_add_skip(agreement *a, int64_t annotator);
/* Krippendorff's alpha (ordinal); false when undefined (no pairable
 * values, or all pairable values equal). */
bool agreement_alpha(const agreement *a, double *alpha);
/* Annotator i's alpha: 1 - D_o(i) / D_e, their observed disagreement (the
 * mean ordinal distance^2 of the pairs (their value, another's) of the
 * units they coded) over the project's expected disagreement; the
 * project's D_o is the pairable-value-weighted mean of these. false when
 * undefined (they share no unit with anyone, or D_e is 0). */
bool agreement_annotator_alpha(const agreement *a, size_t i, double *alpha);
/* Kendall's W of one comparison; false when undefined (m < 2, or every
 * ranking ties everything). */
bool agreement_kendall_w(int n, const agreement_ranking *rankings, size_t m, double *w);
/* The fraction of the n(n-1)/2 candidate pairs two rankings order the same
 * way (a tie agrees only with a tie). */
double agreement_pair(int n, const agreement_ranking *x, const agreement_ranking *y);

#endif
