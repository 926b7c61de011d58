#include "db_job.h"

#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <unistd.h>

#include "db.h"
#include "db_sink.h"
#include "jobs.h"

static volatile sig_atomic_t stop_signal = 0;

static void on_stop_signal(int sig) {
    (void)sig;
    stop_signal = 1;
}

static int64_t lease_ms_from_env(void) {
    const char *s = getenv("RLHF_LEASE_MS");
    char *end;
    long long v = s ? strtoll(s, &end, 10) : 0;
    return s && *end == '\0' && v >= 100 ? v : 30000;
}

/* ---- heartbeat: renews the lease every lease/4 on its own connection ----- */

typedef struct heartbeat {
    sqlite3 *db;
    int64_t job_id;
    const char *lease_owner;
    int64_t lease_ms;
    atomic_bool cancel_requested;
    atomic_bool lease_lost;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool quit;
    pthread_t thread;
} heartbeat;

static void *heartbeat_main(void *arg) {
    heartbeat *hb = arg;
    pthread_mutex_lock(&hb->mutex);
    while (!hb->quit) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + (hb->lease_ms / 4) * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&hb->wake, &hb->mutex, &until);
        if (hb->quit)
            break;
        pthread_mutex_unlock(&hb->mutex);
        bool cancel = false;
        int owned = -1;
        if (db_begin(hb->db) == SQLITE_OK) {
            owned = db_sink_fence(hb->db, hb->job_id, hb->lease_owner, hb->lease_ms, &cancel);
            if (owned != 1 || db_commit(hb->db) != SQLITE_OK)
                db_rollback(hb->db);
        }
        /* A failed heartbeat (database busy) is retried next tick; only a
         * lease that is demonstrably gone stops training. */
        if (owned == 0)
            atomic_store(&hb->lease_lost, true);
        if (cancel)
            atomic_store(&hb->cancel_requested, true);
        pthread_mutex_lock(&hb->mutex);
    }
    pthread_mutex_unlock(&hb->mutex);
    return NULL;
}

/* ---- claim and finish ---------------------------------------------------- */

typedef struct claimed_job {
    char type[64];
    char *config; /* JSON text, malloc'd */
    int64_t attempts, max_attempts;
} claimed_job;

/* queued → running in our name. 1 claimed, 0 not claimable, -1 error. */
static int claim_job(sqlite3 *db, int64_t job_id, const char *owner, int64_t lease_ms,
                     claimed_job *job, char *err, size_t errlen) {
    if (db_begin(db) != SQLITE_OK) {
        snprintf(err, errlen, "cannot begin: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db,
                                "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                                "lease_owner = ?2, lease_expires_ms = ?3, worker_pid = ?4, "
                                "started_at = coalesce(started_at, ?5) "
                                "WHERE id = ?1 AND status = 'queued' AND cancel_requested = 0 "
                                "RETURNING type, config, attempts, max_attempts",
                                -1, &st, NULL);
    int claimed = -1;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_text(st, 2, owner, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, db_now_ms() + lease_ms);
        sqlite3_bind_int64(st, 4, (sqlite3_int64)getpid());
        sqlite3_bind_int64(st, 5, db_now_s());
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            snprintf(job->type, sizeof job->type, "%s", (const char *)sqlite3_column_text(st, 0));
            job->config = strdup((const char *)sqlite3_column_text(st, 1));
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
        if (db_insert_job_event(db, job_id, "info", "message", "started", message, data) != 0)
            claimed = -1;
        json_decref(data);
    }
    if (claimed == 1 && db_commit(db) != SQLITE_OK)
        claimed = -1;
    if (claimed != 1)
        db_rollback(db);
    return claimed;
}

typedef enum job_outcome {
    JOB_OUTCOME_SUCCEEDED,
    JOB_OUTCOME_FAILED,
    JOB_OUTCOME_CANCELLED,
    JOB_OUTCOME_REQUEUED, /* stopped by a signal: back in the queue */
} job_outcome;

/* Records the outcome, fenced like every other write. 0 done, -1 error or
 * lease lost. */
static int finish_job(sqlite3 *db, int64_t job_id, const char *owner, job_outcome outcome,
                      const char *error) {
    static const char *const status[] = {"succeeded", "failed", "cancelled", "queued"};
    if (db_begin(db) != SQLITE_OK)
        return -1;
    int ok = db_sink_fence(db, job_id, owner, 0, NULL) == 1;
    sqlite3_stmt *st = NULL;
    ok = ok && sqlite3_prepare_v2(db,
                                  "UPDATE jobs SET status = ?2, error = ?3, lease_owner = NULL, "
                                  "lease_expires_ms = NULL, worker_pid = NULL, "
                                  "attempts = attempts - (?2 = 'queued'), "
                                  "finished_at = CASE WHEN ?2 = 'queued' THEN NULL ELSE ?4 END "
                                  "WHERE id = ?1",
                                  -1, &st, NULL) == SQLITE_OK;
    if (ok) {
        sqlite3_bind_int64(st, 1, job_id);
        sqlite3_bind_text(st, 2, status[outcome], -1, SQLITE_STATIC);
        if (error)
            sqlite3_bind_text(st, 3, error, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, db_now_s());
        ok = sqlite3_step(st) == SQLITE_DONE;
    }
    sqlite3_finalize(st);
    if (ok && outcome == JOB_OUTCOME_SUCCEEDED) {
        ok = sqlite3_prepare_v2(db,
                                "UPDATE checkpoints SET kind = 'final' WHERE id = "
                                "(SELECT max(id) FROM checkpoints WHERE job_id = ?1)",
                                -1, &st, NULL) == SQLITE_OK;
        if (ok) {
            sqlite3_bind_int64(st, 1, job_id);
            ok = sqlite3_step(st) == SQLITE_DONE;
        }
        sqlite3_finalize(st);
    }
    char message[600];
    const char *level = outcome == JOB_OUTCOME_FAILED ? "error" : "info";
    if (outcome == JOB_OUTCOME_FAILED)
        snprintf(message, sizeof message, "job failed: %s", error ? error : "unknown error");
    else if (outcome == JOB_OUTCOME_REQUEUED)
        snprintf(message, sizeof message, "stopped by a signal; the job is queued again");
    else
        snprintf(message, sizeof message, "job %s", status[outcome]);
    ok = ok &&
         db_insert_job_event(db, job_id, level, "message", status[outcome], message, NULL) == 0;
    if (ok && db_commit(db) == SQLITE_OK)
        return 0;
    db_rollback(db);
    return -1;
}

/* ---- the job ------------------------------------------------------------- */

int rlhf_train_run_db_job(const char *db_path, int64_t job_id) {
    char err[512] = "";
    sqlite3 *db = NULL, *hb_db = NULL;
    if (db_open(db_path, &db, err, sizeof err) != 0 || db_migrate(db, err, sizeof err) != 0 ||
        db_open(db_path, &hb_db, err, sizeof err) != 0) {
        fprintf(stderr, "rlhf-train: %s\n", err);
        sqlite3_close(db);
        return DB_JOB_EXIT_USAGE;
    }
    /* The owner names this process uniquely, even across pid reuse. */
    uint64_t nonce = 0;
    if (getrandom(&nonce, sizeof nonce, 0) != (ssize_t)sizeof nonce)
        nonce = (uint64_t)db_now_ms();
    char owner[64];
    snprintf(owner, sizeof owner, "pid:%d:%016" PRIx64, (int)getpid(), nonce);
    const int64_t lease_ms = lease_ms_from_env();

    claimed_job job = {0};
    int claimed = claim_job(db, job_id, owner, lease_ms, &job, err, sizeof err);
    if (claimed != 1) {
        if (claimed == 0)
            fprintf(stderr, "rlhf-train: job %lld is not queued; nothing to run\n",
                    (long long)job_id);
        else
            fprintf(stderr, "rlhf-train: job %lld: %s\n", (long long)job_id, err);
        sqlite3_close(hb_db);
        sqlite3_close(db);
        return claimed == 0 ? DB_JOB_EXIT_NOT_CLAIMED : DB_JOB_EXIT_USAGE;
    }

    struct sigaction sa = {0};
    sa.sa_handler = on_stop_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    heartbeat hb = {.db = hb_db, .job_id = job_id, .lease_owner = owner, .lease_ms = lease_ms};
    atomic_init(&hb.cancel_requested, false);
    atomic_init(&hb.lease_lost, false);
    pthread_mutex_init(&hb.mutex, NULL);
    pthread_cond_init(&hb.wake, NULL);
    int hb_started = pthread_create(&hb.thread, NULL, heartbeat_main, &hb) == 0;

    /* The config was validated when the job was created; validate again,
     * because the engine's tables may have changed since. */
    const job_type *type = job_type_find(job.type);
    void *cfg = type ? calloc(1, type->hparams->config_bytes) : NULL;
    json_error_t jerr;
    json_t *config = json_loads(job.config, 0, &jerr);
    int rc = -1;
    if (type == NULL)
        snprintf(err, sizeof err, "unknown job type '%s'", job.type);
    else if (cfg == NULL || config == NULL)
        snprintf(err, sizeof err, "cannot load the job's configuration: %s",
                 config ? "out of memory" : jerr.text);
    else if (job_config_from_json(type, cfg, config, err, sizeof err) == 0) {
        db_sink ds = {.db = db,
                      .job_id = job_id,
                      .lease_owner = owner,
                      .lease_ms = lease_ms,
                      .cancel_requested = &hb.cancel_requested,
                      .lease_lost = &hb.lease_lost,
                      .stop_signal = &stop_signal};
        train_sink sink = db_sink_make(&ds);
        const job_inputs no_inputs = {0};
        if (type->needs_train_data) {
            snprintf(err, sizeof err, "%s jobs need a dataset, and the daemon cannot attach one "
                     "to a job yet", type->name);
            rc = -1;
        } else
            rc = type->run(cfg, &no_inputs, &sink, err, sizeof err);
        db_sink_free(&ds);
    }
    json_decref(config);
    free(cfg);
    free(job.config);

    if (hb_started) {
        pthread_mutex_lock(&hb.mutex);
        hb.quit = true;
        pthread_cond_signal(&hb.wake);
        pthread_mutex_unlock(&hb.mutex);
        pthread_join(hb.thread, NULL);
    }
    pthread_mutex_destroy(&hb.mutex);
    pthread_cond_destroy(&hb.wake);

    int exit_code;
    if (atomic_load(&hb.lease_lost)) {
        fprintf(stderr, "rlhf-train: job %lld: lease lost; another worker owns the job now\n",
                (long long)job_id);
        exit_code = DB_JOB_EXIT_LEASE_LOST;
    } else {
        /* A cancel may have been requested after the last heartbeat; the
         * fence in finish_job cannot see it, so ask once more. */
        bool cancel = atomic_load(&hb.cancel_requested);
        if (!cancel && db_begin(db) == SQLITE_OK) {
            db_sink_fence(db, job_id, owner, lease_ms, &cancel);
            db_commit(db);
        }
        job_outcome outcome = rc != 0       ? JOB_OUTCOME_FAILED
                              : cancel      ? JOB_OUTCOME_CANCELLED
                              : stop_signal ? JOB_OUTCOME_REQUEUED
                                            : JOB_OUTCOME_SUCCEEDED;
        if (finish_job(db, job_id, owner, outcome, rc != 0 ? err : NULL) != 0) {
            fprintf(stderr, "rlhf-train: job %lld: cannot record the outcome: %s\n",
                    (long long)job_id, sqlite3_errmsg(db));
            exit_code = DB_JOB_EXIT_LEASE_LOST;
        } else {
            if (rc != 0)
                fprintf(stderr, "rlhf-train: job %lld failed: %s\n", (long long)job_id, err);
            exit_code = rc != 0 ? DB_JOB_EXIT_FAILED : DB_JOB_EXIT_DONE;
        }
    }
    sqlite3_close(hb_db);
    sqlite3_close(db);
    return exit_code;
}

int rlhf_train_db_main(int argc, char **argv) {
    char *end = NULL;
    long long id = argc == 5 && strcmp(argv[3], "--job") == 0 ? strtoll(argv[4], &end, 10) : 0;
    if (argc != 5 || strcmp(argv[1], "--db") != 0 || end == NULL || *end != '\0' || id <= 0) {
        fprintf(stderr, "usage: rlhf-train --db FILE --job ID   (ID a positive integer)\n");
        return DB_JOB_EXIT_USAGE;
    }
    return rlhf_train_run_db_job(argv[2], (int64_t)id);
}
