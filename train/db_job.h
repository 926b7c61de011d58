/* db_job — rlhf-train running one job of an rlhfd database:
 *
 *   rlhf-train --db FILE --job ID
 *
 * Claims the job (queued → running, attempts + 1, a lease in its name),
 * loads the rows of its datasets (job_datasets) and, if an earlier attempt
 * left a checkpoint with training state, resumes from it; trains through
 * db_sink while a heartbeat thread renews the lease and watches for
 * cancellation, then records the outcome. The lease length comes
 * from RLHF_LEASE_MS (default 30000; rlhfd sets it); OpenBLAS's thread count
 * from OPENBLAS_NUM_THREADS, as rlhfd sets it for --threads-per-job.
 *
 * SIGTERM or SIGINT stop training at the next update: the job is cancelled if
 * a cancel was requested, else put back in the queue without using up an
 * attempt (rlhfd is shutting down).
 *
 * Exit codes: DB_JOB_EXIT_* (common/jobs_db.h), which rlhfd's scheduler reads.
 */
#ifndef RLHF_DB_JOB_H
#define RLHF_DB_JOB_H

#include <stdint.h>

#include "jobs_db.h"

int rlhf_train_run_db_job(const char *db_path, int64_t job_id);

/* `rlhf-train --db FILE --job ID`: parses argv and runs the job. */
int rlhf_train_db_main(int argc, char **argv);

#endif
