/* worker_launch — the command rlhfd starts a job's worker with.
 *
 * A job of one rank runs as `rlhf-train --db FILE --job ID`. A job that asks
 * for `ranks: N` (N > 1) runs data parallel (README, "Data parallelism") as
 *
 *   mpirun -np N --hostfile FILE [--allow-run-as-root] -x OPENBLAS_NUM_THREADS
 *          -x RLHF_LEASE_MS rlhf-train --db FILE --job ID
 *
 * which needs rlhf-train built with MPI (make MPI=1; this file is compiled
 * with RLHF_MPI then) and rlhfd's `hostfile` setting. The hostfile's first
 * machine must be this one: rank 0 opens the SQLite database. Without
 * either, a job with ranks > 1 is refused when it is created, with a message
 * saying what is missing (worker_launch_check).
 *
 * Stopping: mpirun answers SIGTERM by killing every rank within seconds, too
 * soon for a checkpoint, but forwards SIGUSR2 to all ranks; rlhf-train's rank
 * 0 treats SIGUSR2 as SIGTERM (stop at the next step, checkpoint, requeue)
 * and decides for all. So the stop signal of an mpirun worker is SIGUSR2.
 */
#ifndef RLHF_WORKER_LAUNCH_H
#define RLHF_WORKER_LAUNCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sqlite3.h>

#include "server.h"

enum { WORKER_LAUNCH_MAX_RANKS = 1024, WORKER_LAUNCH_MAX_ARGS = 24 };

/* Whether rlhf-train was built with MPI (the same `make` built rlhfd). */
bool worker_launch_mpi_built(void);

/* 0 if a job of `ranks` ranks can be started with cfg; -1 with err saying
 * what is missing (MPI, the hostfile) or why ranks is out of range. */
int worker_launch_check(const rlhfd_config *cfg, int64_t ranks, char *err, size_t errlen);

/* jobs.ranks of job_id (1 if it cannot be read). */
int64_t worker_launch_job_ranks(sqlite3 *db, int64_t job_id);
/* Records ranks for job_id, inside the caller's transaction. 0 or -1. */
int worker_launch_set_job_ranks(sqlite3 *db, int64_t job_id, int64_t ranks);

/* The worker's argv (NULL-terminated, at most WORKER_LAUNCH_MAX_ARGS) for
 * job_id_text with ranks; np_text is storage for the rank count's digits.
 * Returns the signal that asks the worker to stop cleanly (SIGTERM, or
 * SIGUSR2 for mpirun). */
int worker_launch_argv(const rlhfd_config *cfg, int64_t ranks, const char *job_id_text,
                       char np_text[24], char **argv);

#endif
