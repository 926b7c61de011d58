/* slow_pool — worker threads for work that takes more than milliseconds
 * (sampling from a checkpoint, a project's agreement), so that none of it
 * runs on an HTTP thread.
 *
 * A pool has `workers` threads and a FIFO queue of at most `queue_max`
 * tasks. A task is submitted with the id of its owner (the API token);
 * an owner may have at most `per_owner` tasks queued or running. Every
 * accepted task's function is called exactly once, on a pool thread, with
 * how it ends:
 * - SLOW_POOL_RUN: a worker took it; do the work now;
 * - SLOW_POOL_EXPIRED: it waited in the queue longer than queue_timeout_ms
 *   (called from the pool's timer thread; the work must not be done);
 * - SLOW_POOL_STOPPING: the pool stops with it still queued.
 * A refused submission calls nothing and says why (queue full, owner
 * limit, stopping) with a Retry-After estimate in seconds.
 *
 * The HTTP side (server/defer_slow.h) suspends the connection when it
 * submits and resumes it from the task function with the reply. A test
 * hook: with a gate file descriptor, each worker reads one byte from it
 * before running a task, so a test can hold tasks running for as long as
 * it wants (the daemon's RLHFD_TEST_SLOW_GATE, a FIFO).
 */
#ifndef RLHF_SLOW_POOL_H
#define RLHF_SLOW_POOL_H

#include <stddef.h>
#include <stdint.h>

typedef struct slow_pool slow_pool;

typedef enum slow_pool_outcome {
    SLOW_POOL_RUN,
    SLOW_POOL_EXPIRED,
    SLOW_POOL_STOPPING,
} slow_pool_outcome;

typedef void (*slow_pool_fn)(void *ctx, slow_pool_outcome outcome);

typedef enum slow_pool_refusal {
    SLOW_POOL_QUEUE_FULL = 1, /* workers busy and queue_max tasks waiting */
    SLOW_POOL_OWNER_LIMIT,    /* the owner has per_owner tasks queued or running */
    SLOW_POOL_STOPPED,
    SLOW_POOL_NO_MEMORY,
} slow_pool_refusal;

typedef struct slow_pool_config {
    const char *name;         /* for thread names and messages: "generate" */
    int workers;              /* >= 1 */
    int queue_max;            /* >= 0 tasks waiting beyond the running ones */
    int per_owner;            /* 0: no limit */
    int64_t queue_timeout_ms; /* > 0 */
    int gate_fd;              /* test hook (see above); -1: none */
} slow_pool_config;

/* NULL with err on failure. */
slow_pool *slow_pool_start(const slow_pool_config *cfg, char *err, size_t errlen);
/* Queues fn(ctx, …) for owner. 0 accepted (fn will be called exactly
 * once); else the refusal, with *retry_after_s (>= 1) set. */
int slow_pool_submit(slow_pool *p, int64_t owner, slow_pool_fn fn, void *ctx,
                     int64_t *retry_after_s);
/* Ends every queued task with SLOW_POOL_STOPPING, refuses new ones, waits
 * for the running ones, joins the threads. slow_pool_free afterwards. */
void slow_pool_stop(slow_pool *p);
void slow_pool_free(slow_pool *p);

/* Counts since start and gauges now (for /metrics and tests). */
typedef struct slow_pool_stats {
    int running, queued;
    long long completed, expired, refused;
} slow_pool_stats;
void slow_pool_get_stats(slow_pool *p, slow_pool_stats *s);
const char *slow_pool_name(const slow_pool *p);
/* The Retry-After (seconds, >= 1) for one more task now. */
int64_t slow_pool_retry_after(slow_pool *p);
/* The human words for a refusal ("all 2 generate workers are busy and 8
 * requests wait"), for an error message. */
void slow_pool_refusal_text(const slow_pool *p, int refusal, char *out, size_t len);

#endif
