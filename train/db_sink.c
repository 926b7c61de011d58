#include "db_sink.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "artifact_store.h"
#include "db.h"
#include "jobs_db.h"
#include "sha256.h"

/* One update waiting to be committed: its step and metrics (name -> value,
 * null for a non-finite one), the object its 'metrics' event carries. */
typedef struct db_sink_update {
    int64_t step;
    json_t *values;
} db_sink_update;

/* Updates that wait longer than this are committed by the training thread
 * itself, whatever flush_ms says (the heartbeat may be failing). */
#define DB_SINK_MAX_PENDING 4096

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Notes a failed write of db that was the storage's fault. Caller holds mutex. */
static void note_failure(db_sink *ds, sqlite3 *db) {
    if (db_failure_is_storage(db_failure_of(db)))
        ds->storage_failed = true;
}

/* Opens a fenced transaction on db: 0 ready, -1 failed (transaction closed). */
static int fenced_begin(db_sink *ds, sqlite3 *db) {
    if (db_begin(db) != SQLITE_OK) {
        note_failure(ds, db);
        fprintf(stderr, "rlhf-train: job %lld: cannot begin a write: %s\n", (long long)ds->job_id,
                sqlite3_errmsg(db));
        return -1;
    }
    bool cancel = false;
    int owned = jobs_db_fence(db, ds->job_id, ds->lease_owner, ds->lease_ms, &cancel);
    if (owned != 1) {
        if (owned == 0)
            atomic_store(ds->lease_lost, true);
        fprintf(stderr, "rlhf-train: job %lld: %s\n", (long long)ds->job_id,
                owned == 0 ? "lease lost; stopping without writing" : sqlite3_errmsg(db));
        db_rollback(db);
        note_failure(ds, db);
        return -1;
    }
    if (cancel)
        atomic_store(ds->cancel_requested, true);
    return 0;
}

/* Commits (ok) or rolls back; after a commit the waiting updates, which
 * the transaction wrote (write_pending), are done. Caller holds mutex. */
static int fenced_commit(db_sink *ds, sqlite3 *db, int ok) {
    if (ok && db_commit(db) == SQLITE_OK) {
        for (size_t i = 0; i < ds->n_pending; i++)
            json_decref(ds->pending[i].values);
        ds->n_pending = 0;
        return 0;
    }
    fprintf(stderr, "rlhf-train: job %lld: write failed: %s\n", (long long)ds->job_id,
            sqlite3_errmsg(db));
    db_rollback(db);
    note_failure(ds, db);
    return -1;
}

static json_t *pairs_to_json(const sink_metric *m, int n) {
    json_t *obj = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(obj, m[i].name,
                            isfinite(m[i].value) ? json_real(m[i].value) : json_null());
    return obj;
}

/* The waiting updates' metric rows and 'metrics' events, in the open
 * transaction on db. A rerun of the job (after a lost worker) overwrites
 * the same steps. Caller holds mutex. */
static int write_pending(db_sink *ds, sqlite3 *db) {
    if (ds->n_pending == 0)
        return 1;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db,
                                "INSERT OR REPLACE INTO metrics (job_id, name, step, value) "
                                "VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL) == SQLITE_OK;
    for (size_t u = 0; ok && u < ds->n_pending; u++) {
        const db_sink_update *up = &ds->pending[u];
        const char *name;
        json_t *v;
        json_object_foreach(up->values, name, v) {
            sqlite3_bind_int64(st, 1, ds->job_id);
            sqlite3_bind_text(st, 2, name, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, up->step);
            if (json_is_real(v))
                sqlite3_bind_double(st, 4, json_real_value(v));
            else
                sqlite3_bind_null(st, 4);
            ok = ok && sqlite3_step(st) == SQLITE_DONE && sqlite3_reset(st) == SQLITE_OK;
        }
        json_t *data = json_pack("{s:I, s:O}", "step", (json_int_t)up->step, "metrics", up->values);
        char message[64];
        snprintf(message, sizeof message, "step %lld", (long long)up->step);
        ok = ok && data != NULL &&
             db_insert_job_event(db, ds->job_id, "info", "metrics", "metrics", message, data) == 0;
        json_decref(data);
    }
    sqlite3_finalize(st);
    return ok;
}

static int flush_locked(db_sink *ds, sqlite3 *db) {
    if (ds->n_pending == 0)
        return 0;
    if (fenced_begin(ds, db) != 0)
        return -1;
    return fenced_commit(ds, db, write_pending(ds, db));
}

int db_sink_flush(db_sink *ds, sqlite3 *db, bool stale_only) {
    pthread_mutex_lock(&ds->mutex);
    int rc = 0;
    if (ds->n_pending > 0 && (!stale_only || monotonic_ms() - ds->first_pending_ms >= ds->flush_ms))
        rc = flush_locked(ds, db);
    pthread_mutex_unlock(&ds->mutex);
    return rc;
}

/* One update: waits with the others for the next commit (see db_sink.h). */
static int db_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    db_sink *ds = ctx;
    json_t *values = pairs_to_json(m, n);
    if (values == NULL)
        return -1;
    pthread_mutex_lock(&ds->mutex);
    int rc = 0;
    if (ds->n_pending == ds->cap_pending) {
        size_t cap = ds->cap_pending ? 2 * ds->cap_pending : 16;
        db_sink_update *grown = realloc(ds->pending, cap * sizeof *grown);
        if (grown == NULL)
            rc = -1;
        else
            ds->pending = grown, ds->cap_pending = cap;
    }
    if (rc == 0) {
        if (ds->n_pending == 0)
            ds->first_pending_ms = monotonic_ms();
        ds->pending[ds->n_pending++] = (db_sink_update){step, json_incref(values)};
        json_decref(ds->last_metrics);
        ds->last_metrics = json_incref(values);
        ds->last_metrics_step = step;
        if (ds->flush_ms <= 0 || ds->n_pending >= DB_SINK_MAX_PENDING)
            rc = flush_locked(ds, ds->db);
    }
    pthread_mutex_unlock(&ds->mutex);
    json_decref(values);
    return rc;
}

static const char *level_name(sink_level level) {
    return level == SINK_LEVEL_ERROR ? "error" : level == SINK_LEVEL_WARN ? "warn" : "info";
}

static int db_event(void *ctx, sink_level level, const char *code, const char *message,
                    const sink_metric *data, int n_data) {
    db_sink *ds = ctx;
    pthread_mutex_lock(&ds->mutex);
    int rc = -1;
    if (fenced_begin(ds, ds->db) == 0) {
        json_t *obj = n_data > 0 ? pairs_to_json(data, n_data) : NULL;
        int ok =
            write_pending(ds, ds->db) && db_insert_job_event(ds->db, ds->job_id, level_name(level),
                                                             "message", code, message, obj) == 0;
        json_decref(obj);
        rc = fenced_commit(ds, ds->db, ok);
    }
    pthread_mutex_unlock(&ds->mutex);
    return rc;
}

/* Checkpoints are stored as 'periodic'; the job's last one becomes 'final'
 * when the job succeeds (db_job.c). With a data directory the bytes go to
 * the artifact store first (durable before the row that names them is
 * committed), else into the row. */
/* The checkpoint row and its event, in the open transaction (bytes only
 * without a data directory). */
static int write_checkpoint(db_sink *ds, int64_t step, const void *bytes, size_t n_bytes,
                            const char *digest) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ds->db,
                                "INSERT INTO checkpoints (job_id, step, kind, bytes, path, sha256, "
                                "size_bytes, metrics, created_at) "
                                "VALUES (?1, ?2, 'periodic', ?3, ?8, ?4, ?5, ?6, ?7)",
                                -1, &st, NULL) == SQLITE_OK;
    char *metrics = ds->last_metrics && ds->last_metrics_step == step
                        ? json_dumps(ds->last_metrics, JSON_COMPACT | JSON_PRESERVE_ORDER)
                        : NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, ds->job_id);
        sqlite3_bind_int64(st, 2, step);
        char rel[128];
        if (ds->data_dir != NULL) {
            artifact_store_rel_path(digest, rel, sizeof rel);
            sqlite3_bind_text(st, 8, rel, -1, SQLITE_TRANSIENT);
        } else {
            sqlite3_bind_blob64(st, 3, bytes, n_bytes, SQLITE_STATIC);
        }
        sqlite3_bind_text(st, 4, digest, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 5, (sqlite3_int64)n_bytes);
        if (metrics)
            sqlite3_bind_text(st, 6, metrics, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 7, db_now_s());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    free(metrics);
    ds->last_checkpoint_id = ok ? sqlite3_last_insert_rowid(ds->db) : 0;
    char message[96];
    snprintf(message, sizeof message, "checkpoint %lld saved at step %lld",
             (long long)ds->last_checkpoint_id, (long long)step);
    json_t *data = json_pack("{s:I, s:I, s:I}", "checkpoint_id", (json_int_t)ds->last_checkpoint_id,
                             "step", (json_int_t)step, "size_bytes", (json_int_t)n_bytes);
    ok = ok && db_insert_job_event(ds->db, ds->job_id, "info", "message", "checkpoint", message,
                                   data) == 0;
    json_decref(data);
    return ok;
}

/* The checkpoint's row (bytes NULL: its file is objects/<digest>), in a
 * fenced transaction with the waiting updates. */
static int commit_checkpoint(db_sink *ds, int64_t step, const void *bytes, size_t n_bytes,
                             const char *digest) {
    pthread_mutex_lock(&ds->mutex);
    int rc = -1;
    if (fenced_begin(ds, ds->db) == 0)
        rc = fenced_commit(ds, ds->db,
                           write_pending(ds, ds->db) &&
                               write_checkpoint(ds, step, bytes, n_bytes, digest));
    pthread_mutex_unlock(&ds->mutex);
    if (rc == 0)
        artifact_crash_point("committed");
    return rc;
}

/* A checkpoint written straight into the artifact store (outside the lock
 * and the transaction: the file may be large), then its row. Without a data
 * directory the checkpoint goes into the row, so it is built in memory. */
static int db_checkpoint_stream(void *ctx, int64_t step, sink_checkpoint_writer write, void *wctx) {
    db_sink *ds = ctx;
    if (ds->data_dir == NULL) {
        char *bytes = NULL;
        size_t n = 0, reported = 0;
        FILE *mem = open_memstream(&bytes, &n);
        int ok = mem != NULL && write(wctx, mem, &reported) == 0;
        ok = (mem == NULL || fclose(mem) == 0) && ok && reported == n;
        char digest[65];
        if (ok)
            sha256_hex(bytes, n, digest);
        const int rc = ok ? commit_checkpoint(ds, step, bytes, n, digest) : -1;
        free(bytes);
        return rc;
    }
    char digest[65], err[512];
    uint64_t n_bytes = 0;
    if (artifact_store_put_stream(ds->data_dir, write, wctx, digest, &n_bytes, err, sizeof err) !=
        0) {
        const int failed_errno = errno;
        pthread_mutex_lock(&ds->mutex);
        if (db_errno_is_storage(failed_errno))
            ds->storage_failed = true;
        pthread_mutex_unlock(&ds->mutex);
        fprintf(stderr, "rlhf-train: job %lld: checkpoint: %s\n", (long long)ds->job_id, err);
        return -1;
    }
    return commit_checkpoint(ds, step, NULL, (size_t)n_bytes, digest);
}

static int db_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n_bytes) {
    db_sink *ds = ctx;
    if (ds->data_dir != NULL) {
        artifact_bytes b = {bytes, n_bytes};
        return db_checkpoint_stream(ctx, step, artifact_write_bytes, &b);
    }
    char digest[65];
    sha256_hex(bytes, n_bytes, digest);
    return commit_checkpoint(ds, step, bytes, n_bytes, digest);
}

/* At most this many rollouts per job are stored (a kept update every
 * rollout_interval; the rest are dropped): the job's events stay small. */
#define DB_SINK_MAX_ROLLOUTS 500

static json_t *finite_or_null(const float *x, int t) {
    return x != NULL && isfinite(x[t]) ? json_real(x[t]) : json_null();
}

static json_t *clean_string(const char *s) {
    char *clean = db_utf8_clean(s, strlen(s)); /* one token may be half a character */
    json_t *j = clean ? json_string(clean) : NULL;
    free(clean);
    return j;
}

json_t *db_sink_rollout_json(int64_t step, const sink_rollout *r) {
    json_t *tokens = json_array();
    for (int t = 0; tokens && t < r->n_tokens; t++)
        json_array_append_new(
            tokens,
            json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "text", clean_string(r->token_text[t]),
                      "logprob", finite_or_null(r->logprob, t), "ref_logprob",
                      finite_or_null(r->ref_logprob, t), "kl", finite_or_null(r->kl, t), "value",
                      finite_or_null(r->value, t), "reward", finite_or_null(r->reward, t),
                      "advantage", finite_or_null(r->advantage, t)));
    return json_pack("{s:I, s:i, s:o, s:o, s:o, s:o}", "step", (json_int_t)step, "sample",
                     r->sample, "prompt", clean_string(r->prompt), "response",
                     clean_string(r->response), "score",
                     isfinite(r->score) ? json_real(r->score) : json_null(), "tokens", tokens);
}

/* A rollout is a job event of code 'rollout' (its numbers in data), which
 * GET /v1/jobs/{id}/rollouts serves and the events list leaves out. */
static int db_rollout(void *ctx, int64_t step, const sink_rollout *r) {
    db_sink *ds = ctx;
    json_t *data = db_sink_rollout_json(step, r);
    if (data == NULL)
        return -1;
    pthread_mutex_lock(&ds->mutex);
    int rc = -1;
    if (fenced_begin(ds, ds->db) == 0) {
        sqlite3_stmt *st = NULL;
        int ok = sqlite3_prepare_v2(ds->db,
                                    "SELECT count(*) FROM job_events WHERE job_id = ?1 AND "
                                    "code = 'rollout'",
                                    -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(st, 1, ds->job_id);
            ok = sqlite3_step(st) == SQLITE_ROW;
        }
        const bool room = ok && sqlite3_column_int64(st, 0) < DB_SINK_MAX_ROLLOUTS;
        sqlite3_finalize(st);
        char message[96];
        snprintf(message, sizeof message, "rollout at step %lld (sample %d)", (long long)step,
                 r->sample);
        ok = ok && write_pending(ds, ds->db) &&
             (!room || db_insert_job_event(ds->db, ds->job_id, "info", "message", "rollout",
                                           message, data) == 0);
        rc = fenced_commit(ds, ds->db, ok);
    }
    pthread_mutex_unlock(&ds->mutex);
    json_decref(data);
    return rc;
}

/* One sample as its job_samples row (ins's ?2..?7). 0 or -1. */
static int bind_sample(sqlite3_stmt *ins, int idx, const sink_sample *r) {
    char *prompt = db_utf8_clean(r->prompt, strlen(r->prompt));
    char *response = db_utf8_clean(r->response, strlen(r->response));
    json_t *scores = json_array();
    for (int e = 0; scores && e < r->n_scores; e++)
        json_array_append_new(scores,
                              isfinite(r->scores[e]) ? json_real(r->scores[e]) : json_null());
    char *scores_text = scores ? json_dumps(scores, JSON_COMPACT) : NULL;
    int rc = prompt && response && scores_text ? 0 : -1;
    if (rc == 0) {
        sqlite3_bind_int(ins, 2, idx);
        sqlite3_bind_int(ins, 3, r->prompt_index);
        sqlite3_bind_text(ins, 4, prompt, -1, SQLITE_TRANSIENT);
        sqlite3_bind_text(ins, 5, response, -1, SQLITE_TRANSIENT);
        if (isfinite(r->gold))
            sqlite3_bind_double(ins, 6, r->gold);
        else
            sqlite3_bind_null(ins, 6);
        sqlite3_bind_text(ins, 7, scores_text, -1, SQLITE_TRANSIENT);
        rc = sqlite3_step(ins) == SQLITE_DONE ? 0 : -1;
        sqlite3_reset(ins);
    }
    free(prompt), free(response), free(scores_text);
    json_decref(scores);
    return rc;
}

/* A loop-sample job's samples (job_samples, schema 019): an earlier attempt's
 * rows out and these in, in one fenced transaction. */
static int db_samples(void *ctx, const sink_sample *rows, int n) {
    db_sink *ds = ctx;
    pthread_mutex_lock(&ds->mutex);
    int rc = -1;
    if (fenced_begin(ds, ds->db) == 0) {
        sqlite3_stmt *del = NULL, *ins = NULL;
        int ok = write_pending(ds, ds->db) &&
                 sqlite3_prepare_v2(ds->db, "DELETE FROM job_samples WHERE job_id = ?1", -1, &del,
                                    NULL) == SQLITE_OK &&
                 sqlite3_prepare_v2(ds->db,
                                    "INSERT INTO job_samples (job_id, idx, prompt_index, prompt, "
                                    "response, gold, scores) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                                    -1, &ins, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(del, 1, ds->job_id);
            sqlite3_bind_int64(ins, 1, ds->job_id);
            ok = sqlite3_step(del) == SQLITE_DONE;
        }
        for (int i = 0; ok && i < n; i++)
            ok = bind_sample(ins, i, &rows[i]) == 0;
        sqlite3_finalize(del);
        sqlite3_finalize(ins);
        rc = fenced_commit(ds, ds->db, ok);
    }
    pthread_mutex_unlock(&ds->mutex);
    return rc;
}

static bool db_should_stop(void *ctx) {
    db_sink *ds = ctx;
    return atomic_load(ds->cancel_requested) || atomic_load(ds->lease_lost) ||
           (ds->stop_signal != NULL && *ds->stop_signal != 0);
}

train_sink db_sink_make(db_sink *ds) {
    pthread_mutex_init(&ds->mutex, NULL);
    ds->pending = NULL, ds->n_pending = ds->cap_pending = 0;
    ds->storage_failed = false;
    return (train_sink){
        ds,         db_metrics,          db_event, db_checkpoint, db_should_stop, db_rollout,
        db_samples, db_checkpoint_stream};
}

void db_sink_free(db_sink *ds) {
    for (size_t i = 0; i < ds->n_pending; i++)
        json_decref(ds->pending[i].values);
    free(ds->pending);
    ds->pending = NULL, ds->n_pending = ds->cap_pending = 0;
    pthread_mutex_destroy(&ds->mutex);
    json_decref(ds->last_metrics);
    ds->last_metrics = NULL;
}
