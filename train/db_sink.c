#include "db_sink.h"

#include <math.h>
#include <stdlib.h>
#include <stdio.h>

#include "db.h"
#include "sha256.h"

int db_sink_fence(sqlite3 *db, int64_t job_id, const char *lease_owner, int64_t lease_ms,
                  bool *cancel) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET lease_expires_ms = ?3 WHERE id = ?1 AND "
                                "lease_owner = ?2 AND status IN ('validating_files', 'running') "
                                "RETURNING cancel_requested",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_text(st, 2, lease_owner, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, db_now_ms() + lease_ms);
    rc = sqlite3_step(st);
    int owned = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    if (owned == 1 && cancel != NULL)
        *cancel = sqlite3_column_int(st, 0) != 0;
    if (owned == 1 && sqlite3_step(st) != SQLITE_DONE)
        owned = -1;
    sqlite3_finalize(st);
    return owned;
}

/* Opens a fenced transaction: 0 ready, -1 failed (transaction closed). */
static int fenced_begin(db_sink *ds) {
    if (db_begin(ds->db) != SQLITE_OK)
        return -1;
    bool cancel = false;
    int owned = db_sink_fence(ds->db, ds->job_id, ds->lease_owner, ds->lease_ms, &cancel);
    if (owned != 1) {
        if (owned == 0)
            atomic_store(ds->lease_lost, true);
        fprintf(stderr, "rlhf-train: job %lld: %s\n", (long long)ds->job_id,
                owned == 0 ? "lease lost; stopping without writing" : sqlite3_errmsg(ds->db));
        db_rollback(ds->db);
        return -1;
    }
    if (cancel)
        atomic_store(ds->cancel_requested, true);
    return 0;
}

static int fenced_commit(db_sink *ds, int ok) {
    if (ok && db_commit(ds->db) == SQLITE_OK)
        return 0;
    fprintf(stderr, "rlhf-train: job %lld: write failed: %s\n", (long long)ds->job_id,
            sqlite3_errmsg(ds->db));
    db_rollback(ds->db);
    return -1;
}

static json_t *pairs_to_json(const sink_metric *m, int n) {
    json_t *obj = json_object();
    for (int i = 0; i < n; i++)
        json_object_set_new(obj, m[i].name,
                            isfinite(m[i].value) ? json_real(m[i].value) : json_null());
    return obj;
}

/* One update: its metrics rows and one 'metrics' event, in one commit. A
 * rerun of the job (after a lost worker) overwrites the same steps. */
static int db_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    db_sink *ds = ctx;
    if (fenced_begin(ds) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ds->db,
                                "INSERT OR REPLACE INTO metrics (job_id, name, step, value) "
                                "VALUES (?1, ?2, ?3, ?4)",
                                -1, &st, NULL) == SQLITE_OK;
    for (int i = 0; ok && i < n; i++) {
        sqlite3_bind_int64(st, 1, ds->job_id);
        sqlite3_bind_text(st, 2, m[i].name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, step);
        if (isfinite(m[i].value))
            sqlite3_bind_double(st, 4, m[i].value);
        else
            sqlite3_bind_null(st, 4);
        ok = sqlite3_step(st) == SQLITE_DONE && sqlite3_reset(st) == SQLITE_OK;
    }
    sqlite3_finalize(st);
    json_t *values = pairs_to_json(m, n);
    json_t *data = json_pack("{s:I, s:O}", "step", (json_int_t)step, "metrics", values);
    char message[64];
    snprintf(message, sizeof message, "step %lld", (long long)step);
    ok = ok &&
         db_insert_job_event(ds->db, ds->job_id, "info", "metrics", "metrics", message, data) == 0;
    json_decref(data);
    json_decref(ds->last_metrics);
    ds->last_metrics = values;
    ds->last_metrics_step = step;
    return fenced_commit(ds, ok);
}

static const char *level_name(sink_level level) {
    return level == SINK_LEVEL_ERROR ? "error" : level == SINK_LEVEL_WARN ? "warn" : "info";
}

static int db_event(void *ctx, sink_level level, const char *code, const char *message,
                    const sink_metric *data, int n_data) {
    db_sink *ds = ctx;
    if (fenced_begin(ds) != 0)
        return -1;
    json_t *obj = n_data > 0 ? pairs_to_json(data, n_data) : NULL;
    int ok = db_insert_job_event(ds->db, ds->job_id, level_name(level), "message", code, message,
                                 obj) == 0;
    json_decref(obj);
    return fenced_commit(ds, ok);
}

/* Checkpoints are stored in the database as 'periodic'; the job's last one
 * becomes 'final' when the job succeeds (db_job.c). */
static int db_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n_bytes) {
    db_sink *ds = ctx;
    char digest[65];
    sha256_hex(bytes, n_bytes, digest);
    if (fenced_begin(ds) != 0)
        return -1;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(ds->db,
                                "INSERT INTO checkpoints (job_id, step, kind, bytes, sha256, "
                                "size_bytes, metrics, created_at) "
                                "VALUES (?1, ?2, 'periodic', ?3, ?4, ?5, ?6, ?7)",
                                -1, &st, NULL) == SQLITE_OK;
    char *metrics = ds->last_metrics && ds->last_metrics_step == step
                        ? json_dumps(ds->last_metrics, JSON_COMPACT | JSON_PRESERVE_ORDER)
                        : NULL;
    if (ok) {
        sqlite3_bind_int64(st, 1, ds->job_id);
        sqlite3_bind_int64(st, 2, step);
        sqlite3_bind_blob64(st, 3, bytes, n_bytes, SQLITE_STATIC);
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
    return fenced_commit(ds, ok);
}

static bool db_should_stop(void *ctx) {
    db_sink *ds = ctx;
    return atomic_load(ds->cancel_requested) || atomic_load(ds->lease_lost) ||
           (ds->stop_signal != NULL && *ds->stop_signal != 0);
}

train_sink db_sink_make(db_sink *ds) {
    return (train_sink){ds, db_metrics, db_event, db_checkpoint, db_should_stop};
}

void db_sink_free(db_sink *ds) {
    json_decref(ds->last_metrics);
    ds->last_metrics = NULL;
}
