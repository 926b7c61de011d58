/* See annotation_quality.h. */
#include "annotation_quality.h"

#include <math.h>
#include <stdlib.h>

#include "agreement.h"

/* splitmix64 (Steele, Lea, Flood 2014): a well-mixed 64-bit stream from
 * any seed. */
static uint64_t splitmix64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t seed_of(int64_t a, int64_t b, uint64_t salt) {
    uint64_t s = (uint64_t)a * 0xD6E8FEB86659FD93ull ^ salt;
    splitmix64(&s);
    s ^= (uint64_t)b;
    return splitmix64(&s);
}

void annotation_shuffle(int64_t token_id, int64_t comparison_id, size_t n, size_t *perm) {
    uint64_t s = seed_of(token_id, comparison_id, 0x5348554646ull);
    for (size_t i = 0; i < n; i++)
        perm[i] = i;
    for (size_t i = n; i > 1; i--) { /* Fisher-Yates: perm[i-1] from the first i */
        size_t j = (size_t)(splitmix64(&s) % i);
        size_t t = perm[i - 1];
        perm[i - 1] = perm[j], perm[j] = t;
    }
}

double annotation_gold_draw(int64_t token_id, int64_t project_id, int64_t draw) {
    uint64_t s = seed_of(token_id, project_id, (uint64_t)draw * 0x2545F4914F6CDD1Dull + 1);
    return (double)(splitmix64(&s) >> 11) / 9007199254740992.0; /* 53 bits */
}

uint64_t annotation_gold_rank(int64_t token_id, int64_t comparison_id) {
    uint64_t s = seed_of(token_id, comparison_id, 0x474F4C44ull); /* "GOLD" */
    return splitmix64(&s);
}

static double log_pmf(int64_t i, int64_t n, double p) {
    double lc = lgamma((double)n + 1) - lgamma((double)i + 1) - lgamma((double)(n - i) + 1);
    return lc + (i > 0 ? (double)i * log(p) : 0) + (n - i > 0 ? (double)(n - i) * log1p(-p) : 0);
}

double annotation_binomial_p(int64_t x, int64_t n, double p) {
    if (n <= 0 || p <= 0 || p >= 1)
        return 1;
    /* The usual relative tolerance (R's binom.test) so ties in pmf count. */
    const double at_x = log_pmf(x, n, p) + log1p(1e-7);
    double sum = 0;
    for (int64_t i = 0; i <= n; i++) {
        double l = log_pmf(i, n, p);
        if (l <= at_x)
            sum += exp(l);
    }
    return sum < 1 ? sum : 1;
}

void annotation_wilson(int64_t x, int64_t n, double z, double *lo, double *hi) {
    if (n <= 0) {
        *lo = 0, *hi = 1;
        return;
    }
    const double dn = (double)n, ph = (double)x / dn, z2 = z * z;
    const double denom = 1 + z2 / dn;
    const double center = (ph + z2 / (2 * dn)) / denom;
    const double half = z / denom * sqrt(ph * (1 - ph) / dn + z2 / (4 * dn * dn));
    *lo = center - half > 0 ? center - half : 0;
    *hi = center + half < 1 ? center + half : 1;
}

static int cmp_int64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

bool annotation_median(int64_t *v, size_t n, double *median) {
    if (n == 0)
        return false;
    qsort(v, n, sizeof *v, cmp_int64);
    *median = n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
    return true;
}

void position_bias_add(position_bias *b, int k, bool first_won) {
    if (k < 2 || k > RANKING_MAX_K)
        return;
    b->n[k]++;
    b->first_wins[k] += first_won;
}

double annotation_gold_score(int n, const int *gold_group, const int *group, bool *top_correct) {
    agreement_ranking g = {0}, x = {0};
    int gold_best = gold_group[0], best = group[0];
    for (int i = 0; i < n; i++) {
        g.group[i] = gold_group[i], x.group[i] = group[i];
        gold_best = gold_group[i] < gold_best ? gold_group[i] : gold_best;
        best = group[i] < best ? group[i] : best;
    }
    *top_correct = true;
    for (int i = 0; i < n; i++)
        if ((gold_group[i] == gold_best) != (group[i] == best))
            *top_correct = false;
    return agreement_pair(n, &g, &x);
}
