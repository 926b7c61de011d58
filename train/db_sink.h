/* db_sink — the train_sink of a job run under rlhfd: metrics, events and
 * checkpoints go into the SQLite database.
 *
 * Every write is fenced: the transaction first renews the job's lease
 * (jobs_db_fence, common/jobs_db.h); if that matches no row the lease was lost (expired and taken
 * over, or the job was finalised elsewhere), nothing is written, lost_lease
 * is set and the callback fails so training stops. So a worker that lost its
 * lease can never write into a job another worker now owns.
 *
 * Metrics are coalesced: an update's metrics wait in memory (at most
 * flush_ms, default 100 ms: RLHF_METRICS_FLUSH_MS) and are committed
 * together — by the worker's heartbeat thread on its own connection
 * (db_sink_flush), or before any event or checkpoint of the training thread,
 * so job_events keep the order in which training reported them. Why: a fast
 * job (control PPO makes ~160 updates/s) committed, and fsync'd, once per
 * update, and each of those commits took SQLite's single write lock away
 * from rlhfd's group commit of annotators' rankings (issue 5). Nothing is
 * lost by waiting: the metrics of a worker killed before a flush belong to
 * steps after its last checkpoint, and the job resumes from that
 * checkpoint and writes them again (bit-identical resume).
 */
#ifndef RLHF_DB_SINK_H
#define RLHF_DB_SINK_H

#include <jansson.h>
#include <pthread.h>
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
    /* How long an update's metrics may wait before they are committed
     * (0: each update commits at once). */
    int64_t flush_ms;
    /* The artifact store checkpoints go to (common/artifact_store.h); NULL:
     * into the checkpoints row. */
    const char *data_dir;
    /* Updates reported but not committed yet; under mutex. */
    pthread_mutex_t mutex;
    struct db_sink_update *pending;
    size_t n_pending, cap_pending;
    int64_t first_pending_ms;
    /* A write failed because the database could not take it (a full disk,
     * an I/O error: db_failure_is_storage), not because of the job; under
     * mutex. rlhf-train then exits DB_JOB_EXIT_STORAGE. */
    bool storage_failed;
} db_sink;

/* Initialises the buffer and mutex of ds (its other fields set by the
 * caller) and returns its sink. */
/* A rollout as the JSON object stored in its event's data (and printed by
 * the CLI): step, sample, prompt, response, score and tokens [{text,
 * logprob, ref_logprob, kl, value, reward, advantage}], null for a number
 * the algorithm does not have. NULL when out of memory. */
json_t *db_sink_rollout_json(int64_t step, const sink_rollout *r);

train_sink db_sink_make(db_sink *ds);

/* Commits the waiting metrics on db (the caller's own connection: the
 * heartbeat passes its own). stale_only: only if the oldest has waited
 * flush_ms. 0 written or nothing to write, -1 failed (they stay waiting; a
 * lost lease also sets lease_lost). */
int db_sink_flush(db_sink *ds, sqlite3 *db, bool stale_only);

/* Frees last_metrics and whatever still waits (flush first). */
void db_sink_free(db_sink *ds);

#endif
