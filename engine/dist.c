#include "dist.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int dist_allreduce_sum_f32(const dist_comm *d, float *x, int64_t n) {
    return d && d->size > 1 ? d->allreduce_sum_f32(d->ctx, x, n) : 0;
}

int dist_allreduce_sum_f64(const dist_comm *d, double *x, int64_t n) {
    return d && d->size > 1 ? d->allreduce_sum_f64(d->ctx, x, n) : 0;
}

int dist_allreduce_mean_f32(const dist_comm *d, float *x, int64_t n) {
    if (dist_allreduce_sum_f32(d, x, n) != 0)
        return -1;
    const float inv = 1.0f / (float)dist_size(d);
    if (dist_size(d) > 1)
        for (int64_t i = 0; i < n; i++)
            x[i] *= inv;
    return 0;
}

int dist_broadcast(const dist_comm *d, void *buf, size_t n_bytes, int root) {
    return d && d->size > 1 ? d->broadcast(d->ctx, buf, n_bytes, root) : 0;
}

int dist_allgather(const dist_comm *d, const void *mine, void *all, size_t n_bytes) {
    if (d && d->size > 1)
        return d->allgather(d->ctx, mine, all, n_bytes);
    memmove(all, mine, n_bytes);
    return 0;
}

int dist_allgather_rows(const dist_comm *d, void *buf, size_t row_bytes, int64_t n_rows) {
    for (int r = 0; r < dist_size(d) && dist_size(d) > 1; r++) {
        int64_t lo, hi;
        dist_shard(n_rows, r, d->size, &lo, &hi);
        if (hi > lo && dist_broadcast(d, (char *)buf + (size_t)lo * row_bytes,
                                      (size_t)(hi - lo) * row_bytes, r) != 0)
            return -1;
    }
    return 0;
}

void dist_shard(int64_t n, int rank, int size, int64_t *lo, int64_t *hi) {
    *lo = n * rank / size;
    *hi = n * (rank + 1) / size;
}

uint64_t dist_sample_seed(uint64_t seed, int rank) {
    return seed + (uint64_t)rank * 2654435761u;
}

bool dist_should_stop(const dist_comm *d, const train_sink *sink) {
    unsigned char stop = dist_is_root(d) && sink_should_stop(sink);
    /* a failed broadcast cannot be told apart from "stop": stop */
    if (dist_broadcast(d, &stop, 1, 0) != 0)
        return true;
    return stop != 0;
}

uint64_t dist_checksum_f32(const float *x, int64_t n) {
    uint64_t a = 0, b = 0;
    const unsigned char *bytes = (const unsigned char *)x;
    for (int64_t i = 0; i < n; i++) {
        uint32_t w;
        memcpy(&w, bytes + 4 * i, 4);
        a += w; /* exact below 2^32 words: a changed word always changes a */
        b += a; /* mod 2^64: weighs each word by its distance from the end */
    }
    return b ^ (a * 0x9E3779B97F4A7C15u);
}

int dist_check_replicas(const dist_comm *d, const float *x, int64_t n, char *err, size_t errlen) {
    if (dist_size(d) < 2)
        return 0;
    const uint64_t mine = dist_checksum_f32(x, n);
    uint64_t *all = malloc(sizeof(uint64_t) * (size_t)d->size);
    if (all == NULL || dist_allgather(d, &mine, all, sizeof mine) != 0) {
        free(all);
        snprintf(err, errlen, "comparing the replicas' parameters failed");
        return -1;
    }
    int differs = 0;
    for (int r = 1; r < d->size && differs == 0; r++)
        differs = all[r] != all[0] ? r : 0;
    if (differs)
        snprintf(err, errlen,
                 "the replicas diverged: rank %d's parameters (checksum %016llx) differ from "
                 "rank 0's (%016llx)",
                 differs, (unsigned long long)all[differs], (unsigned long long)all[0]);
    free(all);
    return differs ? -1 : 0;
}
