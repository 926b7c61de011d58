/* selection — which comparisons to show annotators, so their time counts.
 *
 * Items are sampled responses grouped by prompt (group[i]); the candidate
 * comparisons are the pairs of items of the same group. A rule orders the
 * candidates and the first m are taken, at most max_per_group from one
 * group (the diversity guard: one prompt cannot take every slot), never a
 * pair in `exclude` (already labelled):
 *
 *   random       uniformly shuffled: the baseline.
 *   uncertainty  the reward model's predicted preference closest to 0.5:
 *                |sigmoid(r_a - r_b) - 0.5| ascending, r = the mean score
 *                over the members (Christiano et al. 2017 pick by ensemble
 *                variance; a single model's margin is the cheap variant).
 *   disagreement the members' predicted preferences sigmoid(r_a^e - r_b^e)
 *                varying the most across members (population variance),
 *                descending: an ensemble of reward models trained with
 *                different seeds, as Christiano et al. 2017.
 *
 * Ties keep the random order, so equal keys are not taken in index order.
 * Pure functions over arrays: the bench (bench/selection_study.c) and the
 * online loop choose through the same code.
 */
#ifndef RLHF_SELECTION_H
#define RLHF_SELECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef enum selection_rule {
    SELECTION_RANDOM = 0,
    SELECTION_UNCERTAINTY,
    SELECTION_DISAGREEMENT,
} selection_rule;

/* "random" | "uncertainty" | "disagreement", or -1. */
int selection_rule_from_name(const char *name);
const char *selection_rule_name(selection_rule rule);

typedef struct selection_pair {
    int32_t a, b; /* item indices, a < b */
} selection_pair;

typedef struct selection_input {
    int n_items;
    const int32_t *group;          /* (n_items) the prompt of each item */
    int n_members;                 /* reward models scoring (>= 1; disagreement needs >= 2) */
    const double *scores;          /* (n_members, n_items) each member's score of each item */
    const selection_pair *exclude; /* pairs never to choose (either order) */
    int n_exclude;
    int max_per_group; /* 0: no cap */
} selection_input;

/* Chooses up to m pairs into out (capacity m) by rule; returns how many
 * (fewer when the candidates run out), or -1 with err (bad input: a rule
 * needing scores without them, disagreement with one member, out of
 * memory). rng shuffles (every rule draws from it the same way). */
int selection_choose(selection_rule rule, const selection_input *in, int m, rng_state *rng,
                     selection_pair *out, char *err, size_t errlen);

#endif
