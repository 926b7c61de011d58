/* allreduce_bench — the time of one MPI_Allreduce (sum, in place) of a float
 * buffer of N floats, as rlhf-train does once per step for the gradients:
 * median of R repetitions, each after a barrier, so rank imbalance is not
 * counted. Built and run by bench/bench_dist.py:
 *     mpicc -O2 bench/allreduce_bench.c -o build/allreduce-bench
 *     mpirun -np 2 build/allreduce-bench N R
 * Prints one JSON line from rank 0: {"floats":N,"bytes":4N,"median_s":...}. */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

static int by_value(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    const long n = argc > 1 ? atol(argv[1]) : 1 << 20;
    const int reps = argc > 2 ? atoi(argv[2]) : 20;
    int rank;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    float *x = malloc(sizeof(float) * (size_t)n);
    double *t = malloc(sizeof(double) * (size_t)reps);
    for (long i = 0; i < n; i++)
        x[i] = (float)(i % 97) * 1e-3f;
    for (int r = 0; r < reps; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        const double t0 = MPI_Wtime();
        MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        t[r] = MPI_Wtime() - t0;
    }
    qsort(t, (size_t)reps, sizeof *t, by_value);
    if (rank == 0)
        printf("{\"floats\":%ld,\"bytes\":%ld,\"median_s\":%.6f}\n", n, 4 * n, t[reps / 2]);
    free(x), free(t);
    MPI_Finalize();
    return 0;
}
