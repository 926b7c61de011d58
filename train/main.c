/* rlhf-train — runs one training job. See cli.h for the command line.
 *
 * Built with MPI (make MPI=1) and started by mpirun, it is one rank of a
 * data-parallel group (dist_mpi.h): rank 0 runs the command line as a
 * single process would and hands the job to the other ranks, which follow
 * (dist_job.h). A rank that fails ends the whole group, so no rank waits
 * forever in a collective for one that is gone. */
#include <stdbool.h>
#include <stdio.h>

#include "blas_setup.h"
#include "cli.h"
#include "dist_job.h"
#include "dist_mpi.h"

int main(int argc, char **argv) {
    blas_ensure_fast_kernels(argv);
#ifdef RLHF_MPI
    const dist_comm *d = dist_mpi_init(&argc, &argv);
    rlhf_train_mpi_library = dist_mpi_library();
    if (dist_mpi_launched_size() > 1 && d == NULL) {
        fprintf(stderr, "rlhf-train: MPI_Init failed under mpirun\n");
        return 2;
    }
#else
    const dist_comm *d = NULL;
    if (dist_mpi_launched_size() > 1) {
        fprintf(stderr,
                "rlhf-train: started by mpirun with %d ranks, but this rlhf-train was "
                "built without MPI (build it with `make MPI=1`)\n",
                dist_mpi_launched_size());
        return 2;
    }
#endif
    rlhf_train_dist = d;
    bool failed = false;
    const int code = dist_is_root(d) ? rlhf_train_main(argc, argv) : dist_job_follow(d, &failed);
    if (dist_is_root(d)) {
        failed = code != 0 && dist_job_was_sent();
        dist_job_send_none(d, code);
    }
#ifdef RLHF_MPI
    if (failed && dist_size(d) > 1)
        dist_mpi_abort(d, code);
    dist_mpi_finalize(d);
#endif
    return code;
}
