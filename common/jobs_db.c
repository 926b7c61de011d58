#include "jobs_db.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "db.h"

/* ---- reading ---------------------------------------------------------------- */

void job_row_free(job_row *job) {
    free(job->config);
    free(job->error);
    job->config = job->error = NULL;
}

static char *column_strdup(sqlite3_stmt *st, int i) {
    const char *text = (const char *)sqlite3_column_text(st, i);
    return text ? strdup(text) : NULL;
}

int job_row_read(sqlite3_stmt *st, job_row *job) {
    memset(job, 0, sizeof *job);
    job->id = sqlite3_column_int64(st, 0);
    snprintf(job->type, sizeof job->type, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(job->status, sizeof job->status, "%s", (const char *)sqlite3_column_text(st, 2));
    job->config = column_strdup(st, 3);
    job->attempts = sqlite3_column_int64(st, 4);
    job->max_attempts = sqlite3_column_int64(st, 5);
    job->cancel_requested = sqlite3_column_int(st, 6) != 0;
    job->created_at = sqlite3_column_int64(st, 7);
    job->started_at = sqlite3_column_int64(st, 8);
    job->finished_at = sqlite3_column_int64(st, 9);
    job->error = column_strdup(st, 10);
    job->training_file = sqlite3_column_int64(st, 11);
    job->validation_file = sqlite3_column_int64(st, 12);
    job->refs.model = sqlite3_column_int64(st, 13);
    job->refs.reward_model = sqlite3_column_int64(st, 14);
    job->refs.project = sqlite3_column_int64(st, 15);
    job->final_checkpoint = sqlite3_column_int64(st, 16);
    job->ranks = sqlite3_column_int64(st, 17);
    job->refs.ranking_cutoff = sqlite3_column_int64(st, 18);
    job->refs.base_model = sqlite3_column_int64(st, 19);
    job->refs.ref_model = sqlite3_column_int64(st, 20);
    if (job->config == NULL || (job->error == NULL && sqlite3_column_text(st, 10) != NULL)) {
        job_row_free(job);
        return -1;
    }
    return 0;
}

int jobs_db_get(sqlite3 *db, int64_t id, job_row *job) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT " JOBS_DB_COLUMNS " FROM jobs WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    int found = rc == SQLITE_ROW    ? (job_row_read(st, job) == 0 ? 1 : -1)
                : rc == SQLITE_DONE ? 0
                                    : -1;
    sqlite3_finalize(st);
    return found;
}

int jobs_db_status(sqlite3 *db, int64_t id, char status[JOBS_DB_STATUS_BYTES]) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT status FROM jobs WHERE id = ?1", -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        snprintf(status, JOBS_DB_STATUS_BYTES, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
}

sqlite3_stmt *jobs_db_list(sqlite3 *db, int64_t after, const char *status, const char *type,
                           int64_t limit) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT " JOBS_DB_COLUMNS " FROM jobs WHERE (?1 = 0 OR id < ?1) AND "
                           "(?2 IS NULL OR status = ?2) AND (?3 IS NULL OR type = ?3) "
                           "ORDER BY id DESC LIMIT ?4",
                           -1, &st, NULL) != SQLITE_OK)
        return NULL;
    sqlite3_bind_int64(st, 1, after);
    sqlite3_bind_text(st, 2, status, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, type, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, limit);
    return st;
}

/* Runs sql (binding ?1 = arg, ?2 = max) and collects up to max rows of
 * one or two integer columns into a (and b when not NULL). The count or -1. */
static int collect(sqlite3 *db, const char *sql, int64_t arg, int64_t *a, int64_t *b, int max) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, arg);
    sqlite3_bind_int(st, 2, max);
    int n = 0, rc;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        a[n] = sqlite3_column_int64(st, 0);
        if (b != NULL)
            b[n] = sqlite3_column_int64(st, 1);
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

int jobs_db_queued(sqlite3 *db, int64_t *ids, int max) {
    return collect(db,
                   "SELECT id FROM jobs WHERE status = 'queued' AND cancel_requested = 0 "
                   "ORDER BY id LIMIT ?2",
                   0, ids, NULL, max);
}

int jobs_db_expired(sqlite3 *db, int64_t now_ms, int64_t *ids, int64_t *pids, int max) {
    return collect(db,
                   "SELECT id, worker_pid FROM jobs WHERE status IN "
                   "('validating_files', 'running') AND lease_expires_ms < ?1 LIMIT ?2",
                   now_ms, ids, pids, max);
}

int jobs_db_claimed(sqlite3 *db, int64_t *ids, int64_t *pids, char (*owners)[JOBS_DB_OWNER_BYTES],
                    int max) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(
            db,
            "SELECT id, coalesce(worker_pid, 0), coalesce(lease_owner, '') FROM jobs "
            "WHERE status IN ('validating_files', 'running') ORDER BY id LIMIT ?1",
            -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int(st, 1, max);
    int n = 0, rc;
    while (n < max && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        ids[n] = sqlite3_column_int64(st, 0);
        pids[n] = sqlite3_column_int64(st, 1);
        snprintf(owners[n], JOBS_DB_OWNER_BYTES, "%s", (const char *)sqlite3_column_text(st, 2));
        n++;
    }
    sqlite3_finalize(st);
    return n;
}

/* ---- the lease owner ------------------------------------------------------------ */

/* Field 22 of /proc/PID/stat (starttime, clock ticks after boot); 0 if
 * there is no such process or it is a zombie (dead, not yet reaped). The
 * command name (field 2) may hold spaces and parentheses, so the fields
 * are counted after its last ')'. */
static unsigned long long process_start_ticks(long pid) {
    char path[64], buf[1024];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    unsigned long long ticks = 0;
    char state = 0;
    /* after ")": state (3), then fields 4..21, then starttime (22) */
    if (p == NULL || sscanf(p + 1,
                            " %c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d "
                            "%*d %*d %*d %llu",
                            &state, &ticks) != 2)
        return 0;
    return state == 'Z' || state == 'X' ? 0 : ticks;
}

void jobs_db_owner_name(char owner[JOBS_DB_OWNER_BYTES]) {
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        nonce = (uint64_t)db_now_ms();
    const long pid = (long)getpid();
    snprintf(owner, JOBS_DB_OWNER_BYTES, "pid:%ld:start:%llu:%016" PRIx64, pid,
             process_start_ticks(pid), nonce);
}

int jobs_db_owner_alive(const char *owner) {
    long pid;
    unsigned long long start;
    if (sscanf(owner, "pid:%ld:start:%llu:", &pid, &start) != 2 || pid <= 0 || start == 0)
        return -1;
    if (kill((pid_t)pid, 0) != 0 && errno == ESRCH)
        return 0;
    const unsigned long long now = process_start_ticks(pid);
    return now == 0 ? 0 : now == start;
}

int jobs_db_cancel_pending(sqlite3 *db, int64_t id) {
    return db_row_exists(db,
                         "SELECT 1 FROM jobs WHERE id = ?1 AND cancel_requested = 1 AND "
                         "status IN ('validating_files', 'running')",
                         id);
}

/* ---- writing ------------------------------------------------------------------ */

/* Commits when ok, else rolls back; returns ok. */
static int commit_if(sqlite3 *db, int ok) {
    if (ok && db_commit(db) == SQLITE_OK)
        return 1;
    db_rollback(db);
    return 0;
}

/* Binds v to parameter i, or NULL when v is 0 (no reference). */
static void bind_ref(sqlite3_stmt *st, int i, int64_t v) {
    if (v > 0)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

int64_t jobs_db_insert(sqlite3 *db, const job_new *job) {
    sqlite3_stmt *st = NULL;
    int64_t id = -1;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO jobs (type, status, config, max_attempts, created_by, "
                           "created_at, parent_checkpoint_id, reward_checkpoint_id, "
                           "training_project_id, training_ranking_cutoff, ranks, base_model_id, "
                           "ref_checkpoint_id) "
                           "VALUES (?1, 'queued', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                           -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_text(st, 1, job->type, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, job->config, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, job->max_attempts);
        bind_ref(st, 4, job->created_by);
        sqlite3_bind_int64(st, 5, db_now_s());
        bind_ref(st, 6, job->refs.model);
        bind_ref(st, 7, job->refs.reward_model);
        bind_ref(st, 8, job->refs.project);
        if (job->refs.project > 0)
            sqlite3_bind_int64(st, 9, job->refs.ranking_cutoff);
        sqlite3_bind_int64(st, 10, job->ranks);
        bind_ref(st, 11, job->refs.base_model);
        bind_ref(st, 12, job->refs.ref_model);
        if (sqlite3_step(st) == SQLITE_DONE)
            id = sqlite3_last_insert_rowid(db);
    }
    sqlite3_finalize(st);
    char message[128];
    snprintf(message, sizeof message, "%s job created and queued", job->type);
    if (id > 0 && db_insert_job_event(db, id, "info", "message", "created", message, NULL) != 0)
        id = -1;
    return id;
}

int jobs_db_add_reward_model(sqlite3 *db, int64_t id, int position, int64_t checkpoint) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO job_reward_models (job_id, position, checkpoint_id) "
                           "VALUES (?1, ?2, ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_int(st, 2, position);
    sqlite3_bind_int64(st, 3, checkpoint);
    const int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int jobs_db_list_reward_models(sqlite3 *db, int64_t id, int64_t *ids, int max) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT checkpoint_id FROM job_reward_models WHERE job_id = ?1 ORDER "
                           "BY position",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW && n < max)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : -1;
}

int jobs_db_link_dataset(sqlite3 *db, int64_t id, const char *purpose, int64_t dataset_id) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO job_datasets (job_id, purpose, dataset_id) "
                           "VALUES (?1, ?2, ?3)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, dataset_id);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

int jobs_db_claim(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms, int64_t pid,
                  job_row *job, char *err, size_t errlen) {
    if (db_begin(db) != SQLITE_OK) {
        snprintf(err, errlen, "cannot begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    memset(job, 0, sizeof *job);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET status = 'validating_files', "
                                "attempts = attempts + 1, "
                                "lease_owner = ?2, lease_expires_ms = ?3, worker_pid = ?4, "
                                "started_at = coalesce(started_at, ?5) "
                                "WHERE id = ?1 AND status = 'queued' AND cancel_requested = 0 "
                                "RETURNING type, config, attempts, max_attempts",
                                -1, &st, NULL);
    int claimed = -1;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, db_now_ms() + lease_ms);
        sqlite3_bind_int64(st, 4, pid);
        sqlite3_bind_int64(st, 5, db_now_s());
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            job->id = id;
            snprintf(job->type, sizeof job->type, "%s", (const char *)sqlite3_column_text(st, 0));
            snprintf(job->status, sizeof job->status, "validating_files");
            job->config = column_strdup(st, 1);
            job->attempts = sqlite3_column_int64(st, 2);
            job->max_attempts = sqlite3_column_int64(st, 3);
            claimed = sqlite3_step(st) == SQLITE_DONE && job->config ? 1 : -1;
        } else if (rc == SQLITE_DONE) {
            claimed = 0;
        }
    }
    if (claimed < 0)
        snprintf(err, errlen, "cannot claim: %s", sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (claimed == 1) {
        char message[128];
        snprintf(message, sizeof message, "attempt %lld of %lld started (pid %d)",
                 (long long)job->attempts, (long long)job->max_attempts, (int)getpid());
        json_t *data =
            json_pack("{s:I, s:i}", "attempt", (json_int_t)job->attempts, "pid", (int)getpid());
        if (db_insert_job_event(db, id, "info", "message", "started", message, data) != 0)
            claimed = -1;
        json_decref(data);
    }
    if (claimed == 1 && db_commit(db) != SQLITE_OK)
        claimed = -1;
    if (claimed != 1) {
        db_rollback(db);
        job_row_free(job);
    }
    return claimed;
}

int jobs_db_fence(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms, bool *cancel) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET lease_expires_ms = ?3 WHERE id = ?1 AND "
                                "lease_owner = ?2 AND status IN ('validating_files', 'running') "
                                "RETURNING cancel_requested",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return -1;
    sqlite3_bind_int64(st, 1, id);
    sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
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

/* Runs sql (binding ?1 = id) to completion: 1 done, 0 error. */
static int exec_on_job(sqlite3 *db, const char *sql, int64_t id) {
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return ok;
}

int jobs_db_set_config(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms,
                       const char *config_json) {
    if (db_begin(db) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st = NULL;
    int ok = jobs_db_fence(db, id, owner, lease_ms, NULL) == 1 &&
             sqlite3_prepare_v2(db, "UPDATE jobs SET config = ?2 WHERE id = ?1", -1, &st, NULL) ==
                 SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, config_json, -1, SQLITE_STATIC);
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    return commit_if(db, ok) ? 0 : -1;
}

int jobs_db_mark_running(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms,
                         const char *message, const json_t *data) {
    if (db_begin(db) != SQLITE_OK)
        return -1;
    int ok = jobs_db_fence(db, id, owner, lease_ms, NULL) == 1 &&
             exec_on_job(db,
                         "UPDATE jobs SET status = 'running' WHERE id = ?1 AND "
                         "status = 'validating_files'",
                         id) &&
             db_insert_job_event(db, id, "info", "message", "running", message, data) == 0;
    return commit_if(db, ok) ? 0 : -1;
}

int jobs_db_finish(sqlite3 *db, int64_t id, const char *owner, job_outcome outcome,
                   const char *error) {
    static const char *const status[] = {"succeeded", "failed", "cancelled", "queued", "queued"};
    if (db_begin(db) != SQLITE_OK)
        return -1;
    int ok = jobs_db_fence(db, id, owner, 0, NULL) == 1;
    sqlite3_stmt *st = NULL;
    ok = ok && sqlite3_prepare_v2(db,
                                  "UPDATE jobs SET status = ?2, error = ?3, lease_owner = NULL, "
                                  "lease_expires_ms = NULL, worker_pid = NULL, "
                                  "attempts = attempts - (?2 = 'queued'), "
                                  "finished_at = CASE WHEN ?2 = 'queued' THEN NULL ELSE ?4 END "
                                  "WHERE id = ?1",
                                  -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, status[outcome], -1, SQLITE_STATIC);
        if (error)
            sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, db_now_s());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (ok && outcome == JOB_OUTCOME_SUCCEEDED)
        ok = exec_on_job(db,
                         "UPDATE checkpoints SET kind = 'final' WHERE id = "
                         "(SELECT max(id) FROM checkpoints WHERE job_id = ?1)",
                         id);
    char message[600];
    const char *level = outcome == JOB_OUTCOME_FAILED ? "error" : "info";
    if (outcome == JOB_OUTCOME_FAILED)
        snprintf(message, sizeof message, "job failed: %s", error ? error : "unknown error");
    else if (outcome == JOB_OUTCOME_REQUEUED)
        snprintf(message, sizeof message, "stopped by a signal; the job is queued again");
    else if (outcome == JOB_OUTCOME_STORAGE)
        snprintf(message, sizeof message,
                 "could not write (%.400s); queued again without using up the attempt",
                 error ? error : "storage error");
    else
        snprintf(message, sizeof message, "job %s", status[outcome]);
    const char *code = outcome == JOB_OUTCOME_STORAGE ? "requeued" : status[outcome];
    if (outcome == JOB_OUTCOME_STORAGE)
        level = "warn";
    ok = ok && db_insert_job_event(db, id, level, "message", code, message, NULL) == 0;
    return commit_if(db, ok) ? 0 : -1;
}

int jobs_db_lost_worker(sqlite3 *db, int64_t id, job_lost_reason why, int64_t pid,
                        const char *owner, const char *error) {
    static const char *const condition[] = {
        [JOB_LOST_EXITED] = "worker_pid = ?4",
        [JOB_LOST_LEASE_EXPIRED] = "lease_expires_ms < ?4",
        [JOB_LOST_STORAGE] = "worker_pid = ?4",
        [JOB_LOST_ORPHAN] = "lease_owner = ?5",
    };
    /* ?6: a storage failure, which gives the attempt back */
    char sql[900];
    snprintf(sql, sizeof sql,
             "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' "
             "WHEN ?6 OR attempts < max_attempts THEN 'queued' ELSE 'failed' END, "
             "attempts = attempts - (?6 AND NOT cancel_requested), "
             "error = ?2, lease_owner = NULL, lease_expires_ms = NULL, worker_pid = NULL, "
             "finished_at = CASE WHEN cancel_requested OR (NOT ?6 AND attempts >= max_attempts) "
             "THEN ?3 END "
             "WHERE id = ?1 AND status IN ('validating_files', 'running') AND %s "
             "RETURNING status, attempts, max_attempts",
             condition[why]);
    const bool storage = why == JOB_LOST_STORAGE;
    if (db_begin(db) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st = NULL;
    int changed = -1;
    char status[JOBS_DB_STATUS_BYTES] = "";
    int64_t attempts = 0, max_attempts = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, db_now_s());
        sqlite3_bind_int64(st, 4, why == JOB_LOST_LEASE_EXPIRED ? db_now_ms() : pid);
        sqlite3_bind_text(st, 5, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 6, storage);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
            attempts = sqlite3_column_int64(st, 1);
            max_attempts = sqlite3_column_int64(st, 2);
            changed = sqlite3_step(st) == SQLITE_DONE ? 1 : -1;
        } else if (rc == SQLITE_DONE) {
            changed = 0;
        }
    }
    sqlite3_finalize(st);
    if (changed == 1) {
        const bool queued = strcmp(status, "queued") == 0;
        char message[800];
        if (queued && storage)
            snprintf(message, sizeof message,
                     "attempt %lld of %lld could not write: %s; queued again without using up "
                     "the attempt",
                     (long long)attempts + 1, (long long)max_attempts, error);
        else if (queued)
            snprintf(message, sizeof message,
                     "attempt %lld of %lld lost its worker: %s; queued again", (long long)attempts,
                     (long long)max_attempts, error);
        else if (strcmp(status, "failed") == 0)
            snprintf(message, sizeof message, "job failed after %lld attempts: %s",
                     (long long)attempts, error);
        else
            snprintf(message, sizeof message, "job cancelled (its worker ended: %s)", error);
        json_t *data = json_pack("{s:I, s:I}", "attempt", (json_int_t)attempts, "max_attempts",
                                 (json_int_t)max_attempts);
        if (db_insert_job_event(db, id, queued ? "warn" : "error", "message",
                                queued ? "requeued" : status, message, data) != 0)
            changed = -1;
        json_decref(data);
    }
    return commit_if(db, changed >= 0) ? changed : -1;
}

int jobs_db_start_failed(sqlite3 *db, int64_t id, const char *error) {
    if (db_begin(db) != SQLITE_OK)
        return -1;
    sqlite3_stmt *st = NULL;
    int ok = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET attempts = attempts + 1, error = ?2, "
                                "status = CASE WHEN attempts + 1 >= max_attempts THEN 'failed' "
                                "ELSE status END, "
                                "finished_at = CASE WHEN attempts + 1 >= max_attempts THEN ?3 END "
                                "WHERE id = ?1 AND status = 'queued'",
                                -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, db_now_s());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    const bool changed = ok && sqlite3_changes(db) > 0;
    sqlite3_finalize(st);
    if (changed)
        ok = db_insert_job_event(db, id, "error", "message", "start_failed", error, NULL) == 0;
    if (!commit_if(db, ok))
        return -1;
    return changed ? 1 : 0;
}

job_cancel_result jobs_db_request_cancel(sqlite3 *db, int64_t id,
                                         char status[JOBS_DB_STATUS_BYTES]) {
    status[0] = '\0';
    if (db_begin(db) != SQLITE_OK)
        return JOB_CANCEL_ERROR;
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, "SELECT status, cancel_requested FROM jobs WHERE id = ?1", -1, &st,
                           NULL) != SQLITE_OK) {
        db_rollback(db);
        return JOB_CANCEL_ERROR;
    }
    sqlite3_bind_int64(st, 1, id);
    int already = 0;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        snprintf(status, JOBS_DB_STATUS_BYTES, "%s", (const char *)sqlite3_column_text(st, 0));
        already = sqlite3_column_int(st, 1);
    }
    sqlite3_finalize(st);
    /* validating_files: a worker has claimed the job and checks its inputs. */
    const bool waiting = strcmp(status, "queued") == 0;
    const bool running = strcmp(status, "running") == 0 || strcmp(status, "validating_files") == 0;
    if (rc != SQLITE_ROW || (!waiting && !running)) {
        db_rollback(db);
        return rc == SQLITE_DONE                  ? JOB_CANCEL_NO_JOB
               : rc != SQLITE_ROW                 ? JOB_CANCEL_ERROR
               : strcmp(status, "cancelled") == 0 ? JOB_CANCEL_ALREADY
                                                  : JOB_CANCEL_TOO_LATE;
    }
    int ok = 1;
    if (!already) {
        ok = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET cancel_requested = 1, "
                                "status = CASE WHEN ?2 THEN 'cancelled' ELSE status END, "
                                "finished_at = CASE WHEN ?2 THEN ?3 ELSE finished_at END "
                                "WHERE id = ?1",
                                -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(st, 1, id);
            sqlite3_bind_int(st, 2, waiting);
            sqlite3_bind_int64(st, 3, db_now_s());
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        sqlite3_finalize(st);
        ok = ok && db_insert_job_event(db, id, "info", "message",
                                       waiting ? "cancelled" : "cancel_requested",
                                       waiting ? "job cancelled before it started"
                                               : "cancellation requested; the worker will "
                                                 "checkpoint and stop",
                                       NULL) == 0;
    }
    if (!commit_if(db, ok))
        return JOB_CANCEL_ERROR;
    return waiting ? JOB_CANCEL_DONE : JOB_CANCEL_ASKED;
}
