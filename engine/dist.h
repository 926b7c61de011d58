/* dist — what data-parallel training asks of its process group.
 *
 * N ranks each hold a full replica of the model and of the job's data. Every
 * batch is split into N contiguous shards (dist_shard); each rank runs
 * forward and backward on its shard, weighting its loss so that the SUM of
 * the ranks' gradients is the gradient of the whole batch, then one
 * dist_allreduce_sum_f32 over the flat gradient buffer gives every rank the
 * same gradient and the identical optimizer step keeps the replicas
 * bit-identical (dist_check_replicas verifies it each step). Metrics are
 * summed with dist_allreduce_sum_f64 before rank 0 reports them; only rank 0
 * has a sink, writes checkpoints and logs samples.
 *
 * Why the engine sees an interface and not MPI: the engine stays free of MPI
 * headers and builds without them. A NULL dist_comm is the single-process
 * group (rank 0 of 1, every operation a no-op); the MPI implementation lives
 * in train/dist_mpi.c and is compiled only with `make MPI=1`. Every call is
 * collective: all ranks make the same calls in the same order.
 */
#ifndef RLHF_DIST_H
#define RLHF_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sink.h"

typedef struct dist_comm {
    int rank, size;
    void *ctx;
    /* x[0..n) ← the element-wise sum over ranks, on every rank. 0 or -1. */
    int (*allreduce_sum_f32)(void *ctx, float *x, int64_t n);
    int (*allreduce_sum_f64)(void *ctx, double *x, int64_t n);
    /* buf[0..n_bytes) of root copied to every rank. 0 or -1. */
    int (*broadcast)(void *ctx, void *buf, size_t n_bytes, int root);
    /* all[r · n_bytes ..] ← rank r's mine[0..n_bytes), on every rank. */
    int (*allgather)(void *ctx, const void *mine, void *all, size_t n_bytes);
} dist_comm;

static inline int dist_rank(const dist_comm *d) {
    return d ? d->rank : 0;
}
static inline int dist_size(const dist_comm *d) {
    return d ? d->size : 1;
}
static inline bool dist_is_root(const dist_comm *d) {
    return dist_rank(d) == 0;
}

/* The collectives; with d NULL (one process) they return 0 and leave the
 * data as it is (a sum over one rank). */
int dist_allreduce_sum_f32(const dist_comm *d, float *x, int64_t n);
int dist_allreduce_sum_f64(const dist_comm *d, double *x, int64_t n);
/* x ← mean over ranks (sum, then ÷ size). */
int dist_allreduce_mean_f32(const dist_comm *d, float *x, int64_t n);
int dist_broadcast(const dist_comm *d, void *buf, size_t n_bytes, int root);
int dist_allgather(const dist_comm *d, const void *mine, void *all, size_t n_bytes);

/* After it every rank holds all n_rows rows (row_bytes each) of buf, each
 * rank r having filled its dist_shard rows: the shards are broadcast by
 * their owners in turn. Byte-exact for any data (token ids, floats). */
int dist_allgather_rows(const dist_comm *d, void *buf, size_t row_bytes, int64_t n_rows);

/* Rank r's contiguous share [*lo, *hi) of n items: sizes differ by at most
 * one, and the shards of ranks 0..size-1 tile [0, n) in order. */
void dist_shard(int64_t n, int rank, int size, int64_t *lo, int64_t *hi);

/* The seed rank r samples with: seed + r · 2654435761 (a prime), so rank 0
 * of any group samples as a single process does. */
uint64_t dist_sample_seed(uint64_t seed, int rank);

/* Rank 0 asks its sink whether to stop and tells every rank: all ranks stop
 * at the same step. */
bool dist_should_stop(const dist_comm *d, const train_sink *sink);

/* A 64-bit checksum of the bytes of x[0..n) (Fletcher-style over 32-bit
 * words: any single changed bit changes it). */
uint64_t dist_checksum_f32(const float *x, int64_t n);

/* Checks that every rank holds the same x[0..n) (by checksum). 0 if so;
 * -1 with err naming the first rank that differs (or a failed collective). */
int dist_check_replicas(const dist_comm *d, const float *x, int64_t n, char *err, size_t errlen);

#endif
