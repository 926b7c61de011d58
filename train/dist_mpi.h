/* dist_mpi — rlhf-train's process group: Open MPI when built with
 * `make MPI=1` (train/dist_mpi.c), otherwise a single process.
 *
 * Under mpirun every rank runs rlhf-train with the same arguments. Rank 0
 * does everything a single process does (parses the command line, reads the
 * files or the database job, reports, writes checkpoints) and, just before
 * training, broadcasts the job — its type, configuration, thread count and
 * inputs, files included — to the other ranks, which only follow
 * (dist_job.h). So only rank 0's machine needs the data, the checkpoints
 * and the database.
 */
#ifndef RLHF_DIST_MPI_H
#define RLHF_DIST_MPI_H

#include <stdlib.h>

#include "dist.h"

/* How many ranks the launcher (mpirun) started, from its environment; 0 if
 * rlhf-train was not started by a launcher. */
static inline int dist_mpi_launched_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (s == NULL)
        s = getenv("PMI_SIZE");
    return s ? atoi(s) : 0;
}

#ifdef RLHF_MPI
/* MPI_Init when started by mpirun, and the world communicator; NULL when
 * run as a plain process (or if MPI_Init failed). */
const dist_comm *dist_mpi_init(int *argc, char ***argv);
void dist_mpi_finalize(const dist_comm *d);
/* Ends every rank (a rank that failed cannot leave the others waiting in a
 * collective). */
void dist_mpi_abort(const dist_comm *d, int exit_code);
/* "Open MPI v4.1.4" */
const char *dist_mpi_library(void);
#endif

#endif
