/* dist_mpi — engine/dist.h over Open MPI (MPI_COMM_WORLD). Compiled only
 * with `make MPI=1`; nothing else in the project includes mpi.h.
 *
 * MPI counts are int: buffers are sent in pieces of at most 2^30 elements,
 * so a model of any size reduces correctly. Every operation is blocking;
 * an MPI error returns -1 (MPI_ERRORS_RETURN) so the caller can name it.
 */
#include "dist_mpi.h"

#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

enum { PIECE = 1 << 30 };

static int allreduce_sum_f32(void *ctx, float *x, int64_t n) {
    (void)ctx;
    for (int64_t at = 0; at < n; at += PIECE) {
        const int k = (int)(n - at < PIECE ? n - at : PIECE);
        if (MPI_Allreduce(MPI_IN_PLACE, x + at, k, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return -1;
    }
    return 0;
}

static int allreduce_sum_f64(void *ctx, double *x, int64_t n) {
    (void)ctx;
    for (int64_t at = 0; at < n; at += PIECE) {
        const int k = (int)(n - at < PIECE ? n - at : PIECE);
        if (MPI_Allreduce(MPI_IN_PLACE, x + at, k, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD) !=
            MPI_SUCCESS)
            return -1;
    }
    return 0;
}

static int broadcast(void *ctx, void *buf, size_t n_bytes, int root) {
    (void)ctx;
    for (size_t at = 0; at < n_bytes; at += PIECE) {
        const int k = (int)(n_bytes - at < PIECE ? n_bytes - at : PIECE);
        if (MPI_Bcast((char *)buf + at, k, MPI_BYTE, root, MPI_COMM_WORLD) != MPI_SUCCESS)
            return -1;
    }
    return 0;
}

static int allgather(void *ctx, const void *mine, void *all, size_t n_bytes) {
    (void)ctx;
    if (n_bytes > PIECE)
        return -1; /* used for per-rank states of a few hundred bytes */
    return MPI_Allgather(mine, (int)n_bytes, MPI_BYTE, all, (int)n_bytes, MPI_BYTE,
                         MPI_COMM_WORLD) == MPI_SUCCESS
               ? 0
               : -1;
}

static dist_comm world;

const dist_comm *dist_mpi_init(int *argc, char ***argv) {
    if (dist_mpi_launched_size() < 1)
        return NULL; /* not started by mpirun: a single process, no MPI */
    if (MPI_Init(argc, argv) != MPI_SUCCESS)
        return NULL;
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    world = (dist_comm){.allreduce_sum_f32 = allreduce_sum_f32,
                        .allreduce_sum_f64 = allreduce_sum_f64,
                        .broadcast = broadcast,
                        .allgather = allgather};
    MPI_Comm_rank(MPI_COMM_WORLD, &world.rank);
    MPI_Comm_size(MPI_COMM_WORLD, &world.size);
    return &world;
}

void dist_mpi_finalize(const dist_comm *d) {
    if (d != NULL)
        MPI_Finalize();
}

void dist_mpi_abort(const dist_comm *d, int exit_code) {
    if (d != NULL)
        MPI_Abort(MPI_COMM_WORLD, exit_code);
}

const char *dist_mpi_library(void) {
    static char version[MPI_MAX_LIBRARY_VERSION_STRING];
    int len = 0;
    MPI_Get_library_version(version, &len);
    for (int i = 0; i < len; i++)
        if (version[i] == ',' || version[i] == '\n') {
            version[i] = '\0';
            break;
        }
    return version;
}
