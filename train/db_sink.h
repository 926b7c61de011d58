/* db_sink — the train_sink of a job run under rlhfd: metrics, events and
 * checkpoints go into the SQLite database, each call one transaction.
 *
 * Every write is fenced: the transaction first renews the job's lease
 * (UPDATE jobs ... WHERE id = job AND lease_owner = us AND status =
 * 'running'); if that matches no row the lease was lost (expired and taken
 * over, or the job was finalised elsewhere), nothing is written, lost_lease
 * is set and the callback fails so training stops. So a worker that lost its
 * lease can never write into a job another worker now owns.
 */
#ifndef RLHF_DB_SINK_H
#define RLHF_DB_SINK_H

#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "sink.h"

typedef struct db_sink {
    sqlite3 *db;
    int64_t job_id;
    const char *lease_owner;
    int64_t lease_ms;
    /* Set by the heartbeat thread or a signal; should_stop reads them. */
    atomic_bool *cancel_requested;
    atomic_bool *lease_lost;
    volatile sig_atomic_t *stop_signal;
    /* The last update's metrics, attached to a checkpoint at the same step. */
    int64_t last_metrics_step;
    json_t *last_metrics; /* owned; NULL before the first update */
    int64_t last_checkpoint_id;
} db_sink;

train_sink db_sink_make(db_sink *ds);

/* Renews the lease inside the caller's open transaction: 1 still ours,
 * 0 lost, -1 SQL error. cancel (may be NULL) receives cancel_requested. */
int db_sink_fence(sqlite3 *db, int64_t job_id, const char *lease_owner, int64_t lease_ms,
                  bool *cancel);

/* Frees last_metrics. */
void db_sink_free(db_sink *ds);

#endif
