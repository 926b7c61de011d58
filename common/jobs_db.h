/* jobs_db — the one owner of the jobs table: every row it inserts and every
 * status change, for rlhfd (server/) and rlhf-train (train/) alike.
 *
 * The life of a job (schema/001_init.sql):
 *
 *   queued ──claim──▶ validating_files ──mark_running──▶ running
 *     │                     │                               │
 *     │ cancel              └──── finish / lost_worker ─────┴──▶ succeeded |
 *     ▼                                                         failed | cancelled
 *   cancelled                                                   (or queued again)
 *
 * A worker claims a queued job in its name (lease_owner) with a lease that
 * expires at lease_expires_ms; every later write of the worker is fenced:
 * inside its transaction it first renews the lease with jobs_db_fence, which
 * matches no row once the lease is lost (expired and taken over, or the job
 * ended elsewhere), so a stale worker can never write into a job. rlhfd's
 * scheduler ends a job whose worker died or stopped renewing
 * (jobs_db_lost_worker): queued again while attempts remain, else failed.
 *
 * Plain ids and an sqlite3 handle in; no server or train types. Each
 * transition writes its job_events row in the same transaction. Functions
 * that say "in the caller's transaction" expect one to be open; the others
 * open and commit their own (db_begin: BEGIN IMMEDIATE).
 */
#ifndef RLHF_JOBS_DB_H
#define RLHF_JOBS_DB_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What a job names besides its hyperparameters (jobs columns of 004);
 * 0 where it names nothing. */
typedef struct job_refs {
    int64_t model;          /* parent_checkpoint_id: the checkpoint it starts from */
    int64_t reward_model;   /* reward_checkpoint_id */
    int64_t project;        /* training_project_id */
    int64_t ranking_cutoff; /* training_ranking_cutoff: the project's newest ranking then */
    int64_t base_model;     /* base_model_id (011): the registered model its lineage starts from */
    int64_t ref_model;      /* ref_checkpoint_id (013): ppo/grpo's KL reference when it is not
                             * model (an online loop's original SFT model) */
} job_refs;

/* Room for the longest status, 'validating_files', and its NUL. */
#define JOBS_DB_STATUS_BYTES 20

/* One row of jobs, with what the API shows beside it. Times are Unix
 * seconds, 0 where NULL. */
typedef struct job_row {
    int64_t id;
    char type[64];
    char status[JOBS_DB_STATUS_BYTES];
    char *config; /* the resolved hyperparameters (JSON text), malloc'd */
    int64_t attempts, max_attempts;
    bool cancel_requested;
    int64_t created_at, started_at, finished_at;
    char *error; /* malloc'd; NULL if none */
    job_refs refs;
    int64_t ranks;
    int64_t training_file, validation_file; /* job_datasets; 0 if none */
    int64_t final_checkpoint;               /* its newest 'final' checkpoint; 0 if none */
} job_row;

void job_row_free(job_row *job);

/* The columns job_row_read reads, in its order, for a SELECT ... FROM jobs
 * (lists filter and page it themselves). */
#define JOBS_DB_COLUMNS                                                                            \
    "id, type, status, config, attempts, max_attempts, cancel_requested, created_at, "             \
    "started_at, finished_at, error, "                                                             \
    "(SELECT dataset_id FROM job_datasets WHERE job_id = jobs.id AND purpose = 'training'), "      \
    "(SELECT dataset_id FROM job_datasets WHERE job_id = jobs.id AND purpose = 'validation'), "    \
    "parent_checkpoint_id, reward_checkpoint_id, training_project_id, "                            \
    "(SELECT max(id) FROM checkpoints WHERE job_id = jobs.id AND kind = 'final'), ranks, "         \
    "training_ranking_cutoff, base_model_id, ref_checkpoint_id"

/* The current row of st (a SELECT JOBS_DB_COLUMNS) into job. 0, or -1 out
 * of memory (job then holds nothing to free). */
int job_row_read(sqlite3_stmt *st, job_row *job);

/* Job id into job: 1 found, 0 no such job, -1 error. */
int jobs_db_get(sqlite3 *db, int64_t id, job_row *job);

/* Job id's status into status: 1 found, 0 no such job, -1 error. */
int jobs_db_status(sqlite3 *db, int64_t id, char status[JOBS_DB_STATUS_BYTES]);

/* A page of GET /v1/jobs, newest first: ids below after (0: from the
 * newest), with status and type when not NULL (bound as given: the caller
 * keeps them alive), at most limit rows. The prepared statement (rows as
 * JOBS_DB_COLUMNS), or NULL. */
sqlite3_stmt *jobs_db_list(sqlite3 *db, int64_t after, const char *status, const char *type,
                           int64_t limit);

/* ---- creating ------------------------------------------------------------- */

/* The largest `ranks` (data-parallel processes) a job may ask for; the
 * schema's CHECK on jobs.ranks says the same (005_job_ranks.sql). */
enum { JOBS_DB_MAX_RANKS = 1024 };

/* What a new job is made of. */
typedef struct job_new {
    const char *type;
    const char *config; /* resolved hyperparameters, JSON text */
    int64_t max_attempts;
    int64_t created_by; /* api_tokens id; 0 for none */
    job_refs refs;
    int64_t ranks; /* 1..JOBS_DB_MAX_RANKS */
} job_new;

/* Inserts a queued job with its refs and ranks and its 'created' event in
 * the caller's transaction. The new id, or -1. */
int64_t jobs_db_insert(sqlite3 *db, const job_new *job);

/* Links dataset_id to job id for purpose ("training" | "validation";
 * job_datasets, 003) in the caller's transaction. 0 or -1. */
int jobs_db_link_dataset(sqlite3 *db, int64_t id, const char *purpose, int64_t dataset_id);

/* The reward models job id scores with after its reward_model
 * (job_reward_models, 017: a loop-sample job's ensemble). add: checkpoint
 * as member position (1, 2, ...) in the caller's transaction, 0 or -1.
 * list: up to max of them, in order, into ids; how many, or -1. */
int jobs_db_add_reward_model(sqlite3 *db, int64_t id, int position, int64_t checkpoint);
int jobs_db_list_reward_models(sqlite3 *db, int64_t id, int64_t *ids, int max);

/* ---- the worker ------------------------------------------------------------- */

/* The exit status of `rlhf-train --db FILE --job ID` (train/db_job.h), which
 * rlhfd's scheduler reads to know what is left for it to record. */
enum {
    DB_JOB_EXIT_DONE = 0,        /* an end is recorded: succeeded, cancelled, or requeued on
                                  * a signal */
    DB_JOB_EXIT_FAILED = 1,      /* training failed; recorded in the job, attempt used */
    DB_JOB_EXIT_USAGE = 2,       /* bad command line, or a database it cannot open */
    DB_JOB_EXIT_NOT_CLAIMED = 3, /* the job was not queued: nothing to claim */
    DB_JOB_EXIT_LEASE_LOST = 4,  /* the lease was lost while training; nothing more written */
    DB_JOB_EXIT_STORAGE = 5,     /* could not write (disk full, I/O error: db_failure_is_storage,
                                  * or ENOSPC/EIO on a file): not the job's fault. The job is
                                  * queued again without using up the attempt — recorded by
                                  * the worker when it still could (JOB_OUTCOME_STORAGE), else
                                  * by rlhfd (JOB_LOST_STORAGE), which also backs off */
};

/* queued (and not cancelled) → validating_files in owner's name: attempts
 * + 1, a lease until now + lease_ms, worker_pid = pid (the process rlhfd
 * started), started_at if unset, and a 'started' event naming the calling
 * process. 1 claimed (job filled: type, config, attempts,
 * max_attempts), 0 not claimable, -1 error (err). */
int jobs_db_claim(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms, int64_t pid,
                  job_row *job, char *err, size_t errlen);

/* Renews owner's lease to now + lease_ms in the caller's transaction: 1
 * still ours, 0 lost (nothing may be written), -1 SQL error. cancel (may
 * be NULL) receives cancel_requested. */
int jobs_db_fence(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms, bool *cancel);

/* Replaces the job's configuration (jobs.config: what the API shows as
 * hyperparameters) with config_json, the one the worker resolved and runs
 * with (engine/jobs.h job_config_from_model), fenced by owner's lease. 0,
 * or -1 (lease lost or database error). */
int jobs_db_set_config(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms,
                       const char *config_json);

/* validating_files → running, fenced, with a 'running' event (message,
 * data: may be NULL). 0, or -1 (lease lost or database error). */
int jobs_db_mark_running(sqlite3 *db, int64_t id, const char *owner, int64_t lease_ms,
                         const char *message, const json_t *data);

typedef enum job_outcome {
    JOB_OUTCOME_SUCCEEDED,
    JOB_OUTCOME_FAILED,
    JOB_OUTCOME_CANCELLED,
    JOB_OUTCOME_REQUEUED, /* stopped by a signal: back in the queue, the attempt not counted */
    JOB_OUTCOME_STORAGE,  /* could not write (disk full, I/O error): the same, so it resumes
                           * from its last checkpoint when space returns */
} job_outcome;

/* Records the worker's outcome, fenced, with its event; a succeeded job's
 * newest checkpoint becomes its 'final' one. error (may be NULL) is the
 * failure's message. 0, or -1 (lease lost or database error). */
int jobs_db_finish(sqlite3 *db, int64_t id, const char *owner, job_outcome outcome,
                   const char *error);

/* ---- the scheduler ------------------------------------------------------------ */

/* Up to max queued jobs without a cancel request, oldest first, into ids:
 * their count, or -1. */
int jobs_db_queued(sqlite3 *db, int64_t *ids, int max);

/* Up to max claimed jobs (validating_files, running) whose lease expired
 * before now_ms, with their worker's pid: their count, or -1. */
int jobs_db_expired(sqlite3 *db, int64_t now_ms, int64_t *ids, int64_t *pids, int max);

/* ---- the lease owner ----------------------------------------------------------- */

/* Room for a lease owner's name and its NUL. */
#define JOBS_DB_OWNER_BYTES 80

/* The lease owner name of the calling process, "pid:PID:start:TICKS:NONCE":
 * its pid, its start time (/proc/PID/stat field 22, clock ticks since boot)
 * and a random nonce, so the name is unique even across pid reuse and
 * tells whether the process still lives (jobs_db_owner_alive). */
void jobs_db_owner_name(char owner[JOBS_DB_OWNER_BYTES]);

/* Whether the process that named itself owner (jobs_db_owner_name, on this
 * machine) still runs: 1 yes, 0 no (no process has its pid, or one that
 * started at another time: the pid was reused), -1 cannot tell (a name of
 * another form). */
int jobs_db_owner_alive(const char *owner);

/* Up to max claimed jobs (validating_files, running) with their worker's
 * pid and lease owner: their count, or -1. rlhfd looks among them for
 * orphans of an earlier daemon whose worker has died. */
int jobs_db_claimed(sqlite3 *db, int64_t *ids, int64_t *pids, char (*owners)[JOBS_DB_OWNER_BYTES],
                    int max);

/* 1 if job id is claimed (validating_files, running) and asked to cancel,
 * so its worker should be told; 0 if not, -1 on error. */
int jobs_db_cancel_pending(sqlite3 *db, int64_t id);

typedef enum job_lost_reason {
    JOB_LOST_EXITED,        /* the worker (pid) died while the job was running in its name */
    JOB_LOST_LEASE_EXPIRED, /* nobody renewed the lease in time */
    JOB_LOST_STORAGE,       /* the worker (pid) exited because it could not write */
    JOB_LOST_ORPHAN,        /* the lease owner (owner), not our child, is no longer alive */
} job_lost_reason;

/* A running job lost its worker: queued again while attempts remain, else
 * failed; cancelled if a cancel was pending; with its event. For
 * JOB_LOST_STORAGE it is queued again without using up the attempt (a full
 * disk is not the job's fault). Conditional on the situation still holding
 * (worker_pid = pid, the lease still expired, or lease_owner = owner, which
 * is read for JOB_LOST_ORPHAN only and may be NULL otherwise), so it cannot
 * race a heartbeat or a new claim. 1 changed, 0 not, -1 error. */
int jobs_db_lost_worker(sqlite3 *db, int64_t id, job_lost_reason why, int64_t pid,
                        const char *owner, const char *error);

/* A worker could not start (or exited without claiming): counts an attempt
 * of a queued job, failing it once attempts are used up, with a
 * 'start_failed' event. 1 changed, 0 not queued, -1 error. */
int jobs_db_start_failed(sqlite3 *db, int64_t id, const char *error);

/* ---- cancelling ------------------------------------------------------------------ */

typedef enum job_cancel_result {
    JOB_CANCEL_ERROR = -1,
    JOB_CANCEL_NO_JOB,   /* no such job */
    JOB_CANCEL_DONE,     /* was queued: cancelled now */
    JOB_CANCEL_ALREADY,  /* was cancelled already: nothing changed */
    JOB_CANCEL_ASKED,    /* validating_files or running: cancel_requested set */
    JOB_CANCEL_TOO_LATE, /* succeeded or failed: *status says which */
} job_cancel_result;

/* Asks job id to stop, in one transaction: a job not yet running is
 * cancelled at once; a running one gets cancel_requested, which its
 * worker's next fence reports. Asking twice changes nothing. status
 * receives the status before the request. */
job_cancel_result jobs_db_request_cancel(sqlite3 *db, int64_t id,
                                         char status[JOBS_DB_STATUS_BYTES]);

#endif
