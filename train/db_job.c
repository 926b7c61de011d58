#include "db_job.h"

#include <cblas.h>
#include <errno.h>
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
#include "dist_job.h"
#include "jobs.h"
#include "safetensors.h"

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
        /* under mpirun rlhfd's child is mpirun, rank 0's parent */
        sqlite3_bind_int64(st, 4,
                           (sqlite3_int64)(dist_size(rlhf_train_dist) > 1 ? getppid() : getpid()));
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

/* ---- what the job trains on: its datasets ---------------------------------- */

/* The (prompt, response) rows of one dataset; every string is owned. */
typedef struct job_pairs {
    text_pair *items;
    int64_t n, cap;
} job_pairs;

static void job_pairs_free(job_pairs *p) {
    for (int64_t i = 0; i < p->n; i++) {
        free((char *)p->items[i].prompt);
        free((char *)p->items[i].response);
    }
    free(p->items);
    memset(p, 0, sizeof *p);
}

static int job_pairs_add(job_pairs *p, const char *prompt, const char *response) {
    if (p->n == p->cap) {
        int64_t cap = p->cap ? 2 * p->cap : 256;
        text_pair *items = realloc(p->items, sizeof *items * (size_t)cap);
        if (items == NULL)
            return -1;
        p->items = items, p->cap = cap;
    }
    char *ps = strdup(prompt), *rs = strdup(response);
    if (ps == NULL || rs == NULL) {
        free(ps), free(rs);
        return -1;
    }
    p->items[p->n++] = (text_pair){ps, rs};
    return 0;
}

/* Reads the job's dataset for purpose ("training" | "validation", as
 * POST /v1/jobs linked it in job_datasets) in upload order. rlhfd checked
 * the dataset's format against the job type when the job was created;
 * the format says which job_inputs field its rows become, and only sft
 * ((prompt, response) pairs) is read so far. A job with no dataset for
 * purpose leaves out empty. 0, or -1 with err. */
static int load_job_pairs(sqlite3 *db, int64_t job_id, const char *purpose, job_pairs *out,
                          char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT d.id, d.format, r.prompt, r.response FROM job_datasets j "
                           "JOIN datasets d ON d.id = j.dataset_id "
                           "JOIN dataset_rows r ON r.dataset_id = d.id "
                           "WHERE j.job_id = ?1 AND j.purpose = ?2 ORDER BY r.line",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read the %s dataset: %s", purpose, sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_text(st, 2, purpose, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *format = (const char *)sqlite3_column_text(st, 1);
        const char *response = (const char *)sqlite3_column_text(st, 3);
        if (strcmp(format, "sft") != 0 || response == NULL) {
            snprintf(err, errlen,
                     "the %s dataset %lld has format %s; this worker reads sft "
                     "datasets only",
                     purpose, (long long)sqlite3_column_int64(st, 0), format);
            break;
        }
        if (job_pairs_add(out, (const char *)sqlite3_column_text(st, 2), response) != 0) {
            snprintf(err, errlen, "out of memory reading the %s dataset", purpose);
            break;
        }
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        snprintf(err, errlen, "cannot read the %s dataset: %s", purpose, sqlite3_errmsg(db));
    sqlite3_finalize(st);
    if (rc == SQLITE_DONE)
        return 0;
    job_pairs_free(out);
    return -1;
}

/* ---- resuming: the job's last checkpoint with training state ------------------ */

/* Whether a stored checkpoint carries training state: its safetensors
 * header has `training_state.*` metadata (sft.h). Reads the header only. */
static bool blob_has_training_state(sqlite3_blob *blob) {
    const int64_t size = sqlite3_blob_bytes(blob);
    unsigned char len_le[8];
    if (size < 8 || sqlite3_blob_read(blob, len_le, 8, 0) != SQLITE_OK)
        return false;
    uint64_t header_bytes = 0;
    for (int i = 7; i >= 0; i--)
        header_bytes = header_bytes << 8 | len_le[i];
    if (header_bytes > SAFETENSORS_MAX_HEADER_BYTES || header_bytes > (uint64_t)(size - 8))
        return false;
    char *header = malloc(header_bytes + 1);
    bool found = false;
    if (header && sqlite3_blob_read(blob, header, (int)header_bytes, 8) == SQLITE_OK) {
        json_t *h = json_loadb(header, header_bytes, 0, NULL);
        const char *key;
        json_t *value;
        json_object_foreach(json_object_get(h, "__metadata__"), key, value) found |=
            strncmp(key, "training_state.", 15) == 0;
        json_decref(h);
    }
    free(header);
    return found;
}

/* Copies the blob into an unlinked temporary file (so a killed worker
 * leaves nothing behind) and returns its descriptor, or -1 with err. The
 * engine opens it as /proc/self/fd/N. */
static int blob_to_temp_file(sqlite3_blob *blob, char *err, size_t errlen) {
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/rlhf-train-resume-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(err, errlen, "cannot create a temporary file %.256s: %s", path, strerror(errno));
        return -1;
    }
    unlink(path);
    enum { CHUNK_BYTES = 1 << 20 };
    char *buf = malloc(CHUNK_BYTES);
    const int size = sqlite3_blob_bytes(blob);
    int ok = buf != NULL;
    for (int off = 0; ok && off < size; off += CHUNK_BYTES) {
        int n = size - off < CHUNK_BYTES ? size - off : CHUNK_BYTES;
        ok = sqlite3_blob_read(blob, buf, n, off) == SQLITE_OK && write(fd, buf, (size_t)n) == n;
    }
    free(buf);
    if (!ok) {
        snprintf(err, errlen, "cannot copy the checkpoint to a temporary file: %s",
                 strerror(errno));
        close(fd);
        return -1;
    }
    return fd;
}

/* The checkpoint a requeued job resumes from: the newest one of the job
 * with training state (sft writes one every checkpoint_interval steps and
 * when asked to stop, e.g. by rlhfd's shutdown). Returns 1 with *fd, *id
 * and *step set, 0 if there is none (the job starts over), -1 with err. */
static int find_resume_checkpoint(sqlite3 *db, int64_t job_id, int *fd, int64_t *id, int64_t *step,
                                  char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "SELECT id, step FROM checkpoints WHERE job_id = ?1 AND bytes IS NOT "
                           "NULL ORDER BY id DESC",
                           -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot list checkpoints: %s", sqlite3_errmsg(db));
        return -1;
    }
    sqlite3_bind_int64(st, 1, job_id);
    int found = 0;
    while (found == 0 && sqlite3_step(st) == SQLITE_ROW) {
        sqlite3_blob *blob = NULL;
        *id = sqlite3_column_int64(st, 0);
        *step = sqlite3_column_int64(st, 1);
        if (sqlite3_blob_open(db, "main", "checkpoints", "bytes", *id, 0, &blob) != SQLITE_OK) {
            snprintf(err, errlen, "cannot read checkpoint %lld: %s", (long long)*id,
                     sqlite3_errmsg(db));
            found = -1;
        } else if (blob_has_training_state(blob)) {
            *fd = blob_to_temp_file(blob, err, errlen);
            found = *fd >= 0 ? 1 : -1;
        }
        sqlite3_blob_close(blob);
    }
    sqlite3_finalize(st);
    return found;
}

/* ---- the job ------------------------------------------------------------- */

/* Loads what the job trains on (its datasets; the checkpoint to resume
 * from, if an earlier attempt left one) and runs it. 0, or -1 with err. */
static int run_with_inputs(sqlite3 *db, int64_t job_id, const job_type *type, const void *cfg,
                           const train_sink *sink, char *err, size_t errlen) {
    job_pairs train = {0}, eval = {0};
    int resume_fd = -1;
    int64_t resume_id = 0, resume_step = 0;
    char resume_path[64] = "";
    int rc = -1;
    if (load_job_pairs(db, job_id, "training", &train, err, errlen) != 0 ||
        load_job_pairs(db, job_id, "validation", &eval, err, errlen) != 0)
        goto done;
    if (type->needs_train_data && train.n == 0) {
        snprintf(err, errlen, "%s jobs need training data; this job names no dataset with rows",
                 type->name);
        goto done;
    }
    int found =
        find_resume_checkpoint(db, job_id, &resume_fd, &resume_id, &resume_step, err, errlen);
    if (found < 0)
        goto done;
    if (found == 1) {
        snprintf(resume_path, sizeof resume_path, "/proc/self/fd/%d", resume_fd);
        char message[128];
        snprintf(message, sizeof message, "resuming from checkpoint %lld at step %lld",
                 (long long)resume_id, (long long)resume_step);
        const sink_metric data[] = {{"checkpoint_id", (double)resume_id},
                                    {"step", (double)resume_step}};
        if (sink_event(sink, SINK_LEVEL_INFO, "resumed", message, data, 2) != 0) {
            snprintf(err, errlen, "cannot record the resume");
            goto done;
        }
    }
    const job_inputs inputs = {.train = train.items,
                               .n_train = train.n,
                               .eval = eval.n > 0 ? eval.items : NULL,
                               .n_eval = eval.n,
                               .resume_checkpoint = found == 1 ? resume_path : NULL,
                               .dist = rlhf_train_dist};
    /* under mpirun the other ranks get the job, data included (dist_job.h) */
    if (dist_job_send(rlhf_train_dist, type, cfg, openblas_get_num_threads(), &inputs, err,
                      errlen) == 0)
        rc = type->run(cfg, &inputs, sink, err, errlen);
done:
    if (resume_fd >= 0)
        close(resume_fd);
    job_pairs_free(&train);
    job_pairs_free(&eval);
    return rc;
}

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
    sigaction(SIGUSR2, &sa, NULL); /* what mpirun forwards (server/worker_launch.h) */

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
        rc = run_with_inputs(db, job_id, type, cfg, &sink, err, sizeof err);
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
