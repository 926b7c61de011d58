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

#include "jobs_db.h"
#include "server.h"

enum { WORKER_LAUNCH_MAX_ARGS = 24 };

/* Whether rlhf-train was built with MPI (the same `make` built rlhfd). */
bool worker_launch_mpi_built(void);

/* 0 if a job of `ranks` ranks can be started with cfg; -1 with err saying
 * what is missing (MPI, the hostfile) or why ranks is out of range
 * (1..JOBS_DB_MAX_RANKS). POST /v1/jobs checks a job's ranks with it, and
 * the scheduler again when it starts the job (the settings may have
 * changed since). */
int worker_launch_check(const rlhfd_config *cfg, int64_t ranks, char *err, size_t errlen);

/* The worker's argv (NULL-terminated, at most WORKER_LAUNCH_MAX_ARGS) for
 * job_id_text with ranks; np_text is storage for the rank count's digits.
 * Returns the signal that asks the worker to stop cleanly (SIGTERM, or
 * SIGUSR2 for mpirun). */
int worker_launch_argv(const rlhfd_config *cfg, int64_t ranks, const char *job_id_text,
                       char np_text[24], char **argv);

#endif
