/* dist_job — how rank 0 hands a job to the other ranks of an mpirun.
 *
 * Rank 0 runs rlhf-train exactly as a single process does (command line or
 * database job). Just before training it calls dist_job_send: one broadcast
 * of a packet with the job type, the configuration, the BLAS thread count
 * and every input — the examples or rankings themselves, and the bytes of
 * the init, resume and reward checkpoints and of the tokenizer files. The
 * other ranks wait in dist_job_follow from the start: they rebuild the
 * inputs (files as unlinked temporary files, /proc/self/fd/N; the
 * tokenizer in a temporary directory), run the same job with no sink, and
 * exit. If rank 0 ends without a job (a usage error, `describe`, a job that
 * was not claimable) it sends dist_job_send_none and the followers exit with
 * its code. Neither the config nor the data have to exist on the other
 * machines.
 */
#ifndef RLHF_DIST_JOB_H
#define RLHF_DIST_JOB_H

#include <stdbool.h>
#include <stddef.h>

#include "dist.h"
#include "jobs.h"

/* The process group rlhf-train runs in (NULL: a single process); set once by
 * main before anything else. */
extern const dist_comm *rlhf_train_dist;
/* "Open MPI v4.1.4" when rlhf-train was built with MPI, else NULL. */
extern const char *rlhf_train_mpi_library;

/* Rank 0: sends the job to the other ranks (nothing when there are none).
 * 0, or -1 with err (a file that cannot be read, a failed broadcast); on
 * -1 nothing was sent. */
int dist_job_send(const dist_comm *d, const job_type *type, const void *cfg, int threads,
                  const job_inputs *in, char *err, size_t errlen);
/* Rank 0: tells the other ranks there is no job; they exit with exit_code.
 * Does nothing if a job was already sent or there are no other ranks. */
void dist_job_send_none(const dist_comm *d, int exit_code);
/* Whether dist_job_send has sent a job. */
bool dist_job_was_sent(void);

/* Ranks 1..N-1: waits for rank 0's packet and runs the job. Returns the
 * process's exit code; *failed says this rank failed (rather than rank 0
 * sending no job), so the group must be ended. */
int dist_job_follow(const dist_comm *d, bool *failed);

/* The packet codec, exposed for tests: a job's parts as bytes and back.
 * dist_job_decode fills the outputs from bytes; *in's strings and file
 * paths stay valid until dist_job_decoded_free. */
typedef struct dist_job_decoded dist_job_decoded;
int dist_job_encode(const job_type *type, const void *cfg, int threads, const job_inputs *in,
                    unsigned char **bytes, size_t *n_bytes, char *err, size_t errlen);
dist_job_decoded *dist_job_decode(const unsigned char *bytes, size_t n_bytes, const job_type **type,
                                  void **cfg, int *threads, job_inputs *in, char *err,
                                  size_t errlen);
void dist_job_decoded_free(dist_job_decoded *d);

#endif
