/* rng — the engine's only source of randomness.
 *
 * xoshiro256** (Blackman & Vigna 2018) seeded through splitmix64. Every
 * consumer (environment resets, action sampling, minibatch shuffles,
 * initialisation) owns its own rng_state derived from (seed, stream), so
 * adding a consumer never shifts the numbers another one sees, and a run is
 * reproducible bit for bit from its seed. The state is 32 plain bytes, so it
 * goes into checkpoints as is.
 */
#ifndef RLHF_RNG_H
#define RLHF_RNG_H

#include <stdint.h>

typedef struct rng_state {
    uint64_t s[4];
} rng_state;

/* Derives an independent stream from (seed, stream): the same pair always
 * gives the same sequence; different pairs give unrelated sequences. */
void rng_seed(rng_state *rng, uint64_t seed, uint64_t stream);

uint64_t rng_next_u64(rng_state *rng);
/* Uniform integer in [0, n), unbiased (Lemire 2019 rejection). n > 0. */
uint32_t rng_next_below(rng_state *rng, uint32_t n);
/* Uniform double in [0, 1) with 53 random bits. */
double rng_next_double(rng_state *rng);
/* Uniform float in [0, 1) with 24 random bits. */
float rng_next_float(rng_state *rng);
/* Uniform double in [lo, hi). */
double rng_next_uniform(rng_state *rng, double lo, double hi);
/* Standard normal (Box–Muller; one draw per call, no cached spare so the
 * state alone determines the sequence). */
double rng_next_normal(rng_state *rng);
/* Writes a uniformly random permutation of 0..n-1 into idx (Fisher–Yates). */
void rng_permutation(rng_state *rng, int32_t *idx, int32_t n);

#endif
