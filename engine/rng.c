#include "rng.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x) {
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void rng_seed(rng_state *rng, uint64_t seed, uint64_t stream) {
    /* Mix the stream id through one splitmix round first so that
     * (seed, stream) and (seed + 1, stream - 1) do not collide. */
    uint64_t x = stream;
    uint64_t mixed = seed ^ splitmix64(&x);
    for (int i = 0; i < 4; i++)
        rng->s[i] = splitmix64(&mixed);
}

static inline uint64_t rotl(uint64_t x, int k) {
    return (x << k) | (x >> (64 - k));
}

uint64_t rng_next_u64(rng_state *rng) {
    uint64_t *s = rng->s;
    uint64_t result = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

uint32_t rng_next_below(rng_state *rng, uint32_t n) {
    uint64_t m = (uint64_t)(uint32_t)(rng_next_u64(rng) >> 32) * n;
    uint32_t low = (uint32_t)m;
    if (low < n) {
        uint32_t threshold = (uint32_t)(-n) % n;
        while (low < threshold) {
            m = (uint64_t)(uint32_t)(rng_next_u64(rng) >> 32) * n;
            low = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

double rng_next_double(rng_state *rng) {
    return (double)(rng_next_u64(rng) >> 11) * 0x1.0p-53;
}

float rng_next_float(rng_state *rng) {
    return (float)(rng_next_u64(rng) >> 40) * 0x1.0p-24f;
}

double rng_next_uniform(rng_state *rng, double lo, double hi) {
    return lo + (hi - lo) * rng_next_double(rng);
}

double rng_next_normal(rng_state *rng) {
    /* 1 - u lies in (0, 1], so the log is finite. */
    double u1 = 1.0 - rng_next_double(rng);
    double u2 = rng_next_double(rng);
    return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}

void rng_permutation(rng_state *rng, int32_t *idx, int32_t n) {
    for (int32_t i = 0; i < n; i++)
        idx[i] = i;
    for (int32_t i = n - 1; i > 0; i--) {
        int32_t j = (int32_t)rng_next_below(rng, (uint32_t)i + 1);
        int32_t tmp = idx[i];
        idx[i] = idx[j];
        idx[j] = tmp;
    }
}
