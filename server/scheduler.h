/* scheduler — runs queued jobs as rlhf-train child processes.
 *
 * One thread. Every tick (lease/4, at most 1 s, or at once when woken) it:
 *   1. reaps children that exited; a job still 'running' in the name of a
 *      dead child is requeued (attempts < max_attempts) or failed, with the
 *      exit code or signal as the error;
 *   2. sends SIGTERM to children whose job has cancel_requested;
 *   3. expires leases: a 'running' job whose lease_expires_ms has passed is
 *      requeued or failed the same way, and if its worker is our child it is
 *      killed (its writes are fenced and would fail anyway);
 *   4. starts `rlhf-train --db FILE --job ID` for queued jobs while fewer
 *      than `workers` children run.
 * The child claims the job itself (queued → running) in one UPDATE, so two
 * schedulers (a restarted rlhfd and an orphan) never run a job twice.
 */
#ifndef RLHF_SCHEDULER_H
#define RLHF_SCHEDULER_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

typedef struct scheduler scheduler;

scheduler *scheduler_start(const rlhfd_config *cfg, char *err, size_t errlen);
/* Something changed (a job queued or cancelled): tick now. */
void scheduler_wake(scheduler *s);
/* SIGTERM to every child, wait up to grace_ms for them (they checkpoint and
 * requeue their jobs), SIGKILL the rest, then stop the thread and free. */
void scheduler_stop(scheduler *s, int64_t grace_ms);
/* The number of children running now. */
int scheduler_running(scheduler *s);

#endif
