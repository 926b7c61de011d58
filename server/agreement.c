/* Inter-annotator agreement of a preference project.
 *
 * The formulation (GET /v1/projects/{id}/agreement, docs/api.md):
 *
 * - Krippendorff's alpha, ordinal metric. A unit is one candidate of one
 *   comparison; a coder is an annotator; the value a coder gives the unit
 *   is the candidate's midrank in their ranking (best = 1; a group of t
 *   tied candidates after b better ones all get b + (t + 1) / 2, the
 *   average of the positions they share — the usual treatment of ties in
 *   rank statistics). Skips and comparisons an annotator never saw are
 *   missing values; units with fewer than two values are not pairable and
 *   drop out, as in Krippendorff (2011, "Computing Krippendorff's alpha-
 *   reliability"). Why candidates and not comparisons as units: alpha
 *   needs one value per coder and unit, and a ranking is K values; the
 *   candidate-unit form keeps the ordinal metric well defined and handles
 *   missing data per comparison. Midranks of comparisons of different
 *   sizes share one value scale (rank 1 is rank 1), which is what an
 *   ordinal metric over positions means; projects mixing sizes should read
 *   alpha with that in mind.
 *     o_ck = sum over units u with m_u >= 2 of (number of ordered pairs of
 *            different coders giving c and k) / (m_u - 1)
 *     n_c  = sum_k o_ck, n = sum_c n_c
 *     delta^2_ck (ordinal) = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2
 *     alpha = 1 - (n - 1) sum o_ck delta^2_ck / sum n_c n_k delta^2_ck
 *   Undefined when n = 0 or the denominator is 0 (one value only).
 *
 * - Kendall's W per comparison, with the tie correction: m rankings of n
 *   candidates, R_i the sum of candidate i's midranks, S = sum (R_i -
 *   m(n+1)/2)^2, T_j = sum over rater j's tie groups of (t^3 - t),
 *     W = 12 S / (m^2 (n^3 - n) - m sum_j T_j),
 *   defined when m >= 2 and the denominator is positive; the project's W
 *   is the mean over the comparisons where it is defined.
 *
 * - Per annotator alpha: the coincidences split by whose value comes first,
 *   o_ck = sum_j o(j)_ck; with n_j = sum o(j)_ck the annotator's pairable
 *   values, D_o(j) = sum o(j)_ck delta^2_ck / n_j and D_e = sum n_c n_k
 *   delta^2_ck / (n (n - 1)) (the project's marginals),
 *     alpha_j = 1 - D_o(j) / D_e,
 *   so the project's D_o = sum_j n_j D_o(j) / n: how much of the project's
 *   disagreement comes from each annotator, on alpha's scale.
 *
 * - Per annotator: rankings, skips, and the mean pair agreement with the
 *   others: for every comparison they and another annotator both ranked,
 *   the fraction of candidate pairs the two order the same way (better,
 *   worse, or tied), averaged over those (comparison, other) pairs.
 */
#include "agreement.h"

#include <stdlib.h>
#include <string.h>

void agreement_init(agreement *a) {
    memset(a, 0, sizeof *a);
}

void agreement_free(agreement *a) {
    free(a->annotators);
    memset(a, 0, sizeof *a);
}

static agreement_annotator *annotator(agreement *a, int64_t id) {
    for (size_t i = 0; i < a->n_annotators; i++)
        if (a->annotators[i].annotator == id)
            return &a->annotators[i];
    if (a->n_annotators == a->cap_annotators) {
        size_t cap = a->cap_annotators ? 2 * a->cap_annotators : 8;
        agreement_annotator *grown = realloc(a->annotators, cap * sizeof *grown);
        if (grown == NULL)
            return NULL;
        a->annotators = grown, a->cap_annotators = cap;
    }
    agreement_annotator *n = &a->annotators[a->n_annotators++];
    memset(n, 0, sizeof *n);
    n->annotator = id;
    return n;
}

/* Candidate i's midrank, doubled: 2 * better + tied + 1. */
static int doubled_midrank(int n, const agreement_ranking *x, int i) {
    int better = 0, tied = 0;
    for (int j = 0; j < n; j++) {
        better += x->group[j] < x->group[i];
        tied += x->group[j] == x->group[i];
    }
    return 2 * better + tied + 1;
}

double agreement_pair(int n, const agreement_ranking *x, const agreement_ranking *y) {
    int same = 0, total = 0;
    for (int i = 0; i < n; i++)
        for (int j = i + 1; j < n; j++) {
            int sx = (x->group[i] > x->group[j]) - (x->group[i] < x->group[j]);
            int sy = (y->group[i] > y->group[j]) - (y->group[i] < y->group[j]);
            same += sx == sy;
            total++;
        }
    return total > 0 ? (double)same / total : 0.0;
}

bool agreement_kendall_w(int n, const agreement_ranking *rankings, size_t m, double *w) {
    if (m < 2 || n < 2 || n > RANKING_MAX_K)
        return false;
    double r[RANKING_MAX_K] = {0}, ties = 0;
    for (size_t j = 0; j < m; j++) {
        for (int i = 0; i < n; i++) {
            r[i] += doubled_midrank(n, &rankings[j], i) / 2.0;
            /* Each member of a tie group of size t adds t^2 - 1: t^3 - t per group. */
            int t = 0;
            for (int k = 0; k < n; k++)
                t += rankings[j].group[k] == rankings[j].group[i];
            ties += (double)t * t - 1;
        }
    }
    double mean = m * (n + 1) / 2.0, s = 0;
    for (int i = 0; i < n; i++)
        s += (r[i] - mean) * (r[i] - mean);
    double dm = (double)m, dn = (double)n;
    double denom = dm * dm * (dn * dn * dn - dn) - dm * ties;
    if (denom <= 0)
        return false;
    *w = 12 * s / denom;
    return true;
}

int agreement_add_skip(agreement *a, int64_t id) {
    agreement_annotator *x = annotator(a, id);
    if (x == NULL)
        return -1;
    x->n_skipped++;
    return 0;
}

int agreement_add_comparison(agreement *a, int n, const agreement_ranking *rankings, size_t m) {
    if (n < 2 || n > RANKING_MAX_K)
        return -1;
    for (size_t j = 0; j < m; j++) {
        agreement_annotator *x = annotator(a, rankings[j].annotator);
        if (x == NULL)
            return -1;
        x->n_ranked++;
        for (size_t k = 0; k < m; k++)
            if (k != j) {
                x->n_compared++;
                x->agreement_sum += agreement_pair(n, &rankings[j], &rankings[k]);
            }
    }
    double w;
    if (agreement_kendall_w(n, rankings, m, &w))
        a->w_sum += w, a->n_w++;
    if (m < 2)
        return 0;
    for (int i = 0; i < n; i++) { /* unit: candidate i; m values */
        a->n_units++;
        for (size_t j = 0; j < m; j++) {
            agreement_annotator *x = annotator(a, rankings[j].annotator);
            for (size_t k = 0; k < m; k++)
                if (j != k) {
                    int vj = doubled_midrank(n, &rankings[j], i);
                    int vk = doubled_midrank(n, &rankings[k], i);
                    a->coincidence[vj][vk] += 1.0 / (double)(m - 1);
                    x->coincidence[vj][vk] += 1.0 / (double)(m - 1);
                }
        }
    }
    return 0;
}

/* The coincidence marginals n_c of a (into nc) and their sum. */
static double marginals(const agreement *a, double nc[AGREEMENT_N_VALUES]) {
    double n = 0;
    for (int c = 0; c < AGREEMENT_N_VALUES; c++) {
        nc[c] = 0;
        for (int k = 0; k < AGREEMENT_N_VALUES; k++)
            nc[c] += a->coincidence[c][k];
        n += nc[c];
    }
    return n;
}

/* The ordinal delta^2_ck over the marginals nc. */
static double ordinal_delta2(const double nc[AGREEMENT_N_VALUES], int c, int k) {
    int lo = c < k ? c : k, hi = c < k ? k : c;
    double between = 0;
    for (int g = lo; g <= hi; g++)
        between += nc[g];
    double d = between - (nc[c] + nc[k]) / 2;
    return d * d;
}

/* sum o_ck delta^2_ck of the coincidences o (into *observed, with sum
 * o_ck into *pairable) and sum n_c n_k delta^2_ck (into *expected). */
static void disagreements(const double nc[AGREEMENT_N_VALUES],
                          const double o[AGREEMENT_N_VALUES][AGREEMENT_N_VALUES], double *observed,
                          double *pairable, double *expected) {
    *observed = *pairable = *expected = 0;
    for (int c = 0; c < AGREEMENT_N_VALUES; c++)
        for (int k = 0; k < AGREEMENT_N_VALUES; k++) {
            *pairable += o[c][k];
            if (c == k || nc[c] == 0 || nc[k] == 0)
                continue;
            double d2 = ordinal_delta2(nc, c, k);
            *observed += o[c][k] * d2;
            *expected += nc[c] * nc[k] * d2;
        }
}

bool agreement_alpha(const agreement *a, double *alpha) {
    double nc[AGREEMENT_N_VALUES], observed, pairable, expected;
    double n = marginals(a, nc);
    disagreements(nc, a->coincidence, &observed, &pairable, &expected);
    if (n <= 1 || expected <= 0)
        return false;
    *alpha = 1 - (n - 1) * observed / expected;
    return true;
}

bool agreement_annotator_alpha(const agreement *a, size_t i, double *alpha) {
    double nc[AGREEMENT_N_VALUES], observed, pairable, expected, unused1, unused2;
    double n = marginals(a, nc);
    if (i >= a->n_annotators)
        return false;
    disagreements(nc, a->coincidence, &unused1, &unused2, &expected);
    disagreements(nc, a->annotators[i].coincidence, &observed, &pairable, &unused1);
    if (n <= 1 || expected <= 0 || pairable <= 0)
        return false;
    *alpha = 1 - (observed / pairable) / (expected / (n * (n - 1)));
    return true;
}
