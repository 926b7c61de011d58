#include "scheduler.h"

#include "artifact_store.h"
#include "jobs_db.h"
#include "loops.h"
#include "storage_probe.h"
#include "worker_launch.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct worker_slot {
    pid_t pid; /* 0: free */
    int64_t job_id;
    bool sent_term;
    int stop_signal; /* SIGTERM, or SIGUSR2 for an mpirun (worker_launch.h) */
    int pidfd;       /* readable when the child exits; -1 if pidfd_open failed */
    /* Reaped, but its end could not be recorded yet (the database could not
     * be written): the slot stays taken and the record is retried. */
    bool exited;
    int status;
    bool reported; /* the failure to record it is on stderr once */
} worker_slot;

/* A job whose worker could not write (DB_JOB_EXIT_STORAGE) waits before it
 * starts again: 1 s, doubling per such exit up to 60 s. In memory: a
 * restarted daemon tries at once. */
enum { SCHED_BACKOFF_SLOTS = 64, SCHED_BACKOFF_FIRST_MS = 1000, SCHED_BACKOFF_MAX_MS = 60000 };
typedef struct job_backoff {
    int64_t job_id; /* 0: free */
    int64_t not_before_ms, delay_ms;
} job_backoff;

struct scheduler {
    rlhfd_config cfg;
    sqlite3 *db;
    worker_slot *slots;
    int n_slots;
    char **envp; /* environ + OPENBLAS_NUM_THREADS + RLHF_LEASE_MS + RLHF_DATA_DIR, built once */
    int64_t next_collect_ms; /* the next artifact_store_collect (monotonic) */
    job_backoff backoff[SCHED_BACKOFF_SLOTS];
    pthread_t thread;
    int wake_pipe[2]; /* scheduler_wake writes a byte; the thread polls it with the pidfds */
    atomic_bool quit;
    atomic_int running; /* written by the scheduler thread, read by /metrics */
};

/* jobs_db_lost_worker, saying so on stderr when it cannot be recorded. */
static int lost_worker(scheduler *s, int64_t job_id, job_lost_reason why, int64_t pid,
                       const char *owner, const char *error) {
    int changed = jobs_db_lost_worker(s->db, job_id, why, pid, owner, error);
    if (changed < 0)
        fprintf(stderr, "rlhfd: job %lld: cannot record the lost worker: %s\n", (long long)job_id,
                sqlite3_errmsg(s->db));
    return changed;
}

/* ---- backoff ------------------------------------------------------------------ */

static job_backoff *backoff_find(scheduler *s, int64_t job_id) {
    for (int i = 0; i < SCHED_BACKOFF_SLOTS; i++)
        if (s->backoff[i].job_id == job_id)
            return &s->backoff[i];
    return NULL;
}

/* The job's worker could not write: it waits twice as long as last time. */
static void backoff_grow(scheduler *s, int64_t job_id) {
    job_backoff *b = backoff_find(s, job_id);
    if (b == NULL)
        b = backoff_find(s, 0);
    if (b == NULL) { /* full: the entry that frees soonest makes room */
        b = &s->backoff[0];
        for (int i = 1; i < SCHED_BACKOFF_SLOTS; i++)
            if (s->backoff[i].not_before_ms < b->not_before_ms)
                b = &s->backoff[i];
        b->job_id = 0;
    }
    if (b->job_id != job_id)
        *b = (job_backoff){.job_id = job_id, .delay_ms = SCHED_BACKOFF_FIRST_MS / 2};
    b->delay_ms = 2 * b->delay_ms < SCHED_BACKOFF_MAX_MS ? 2 * b->delay_ms : SCHED_BACKOFF_MAX_MS;
    b->not_before_ms = db_now_ms() + b->delay_ms;
}

static void backoff_clear(scheduler *s, int64_t job_id) {
    job_backoff *b = backoff_find(s, job_id);
    if (b != NULL)
        b->job_id = 0;
}

static bool backoff_waiting(scheduler *s, int64_t job_id) {
    job_backoff *b = backoff_find(s, job_id);
    return b != NULL && db_now_ms() < b->not_before_ms;
}

/* ---- children --------------------------------------------------------------- */

static void describe_exit(int status, char *out, size_t len) {
    if (WIFSIGNALED(status))
        snprintf(out, len, "rlhf-train was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else if (WIFEXITED(status) && WEXITSTATUS(status) == DB_JOB_EXIT_STORAGE)
        snprintf(out, len,
                 "rlhf-train could not write (exit code %d: the disk is full or an I/O error)",
                 DB_JOB_EXIT_STORAGE);
    else
        snprintf(out, len, "rlhf-train exited with code %d", WEXITSTATUS(status));
}

/* Records what the exit of slot's child (status) left behind: 0 recorded
 * (or nothing to record), -1 the database could not be written. */
static int record_exit(scheduler *s, worker_slot *slot) {
    char error[160];
    describe_exit(slot->status, error, sizeof error);
    const int code = WIFEXITED(slot->status) ? WEXITSTATUS(slot->status) : -1;
    /* Exit 0 and 1 mean the child recorded the outcome itself; 3 means
     * another worker had the job. Storage: the job goes back to the queue
     * with its attempt, unless the worker recorded that itself. Anything
     * else: see what it left behind. */
    if (code == DB_JOB_EXIT_DONE || code == DB_JOB_EXIT_FAILED || code == DB_JOB_EXIT_NOT_CLAIMED)
        return 0;
    if (code == DB_JOB_EXIT_STORAGE)
        return jobs_db_lost_worker(s->db, slot->job_id, JOB_LOST_STORAGE, slot->pid, NULL, error) <
                       0
                   ? -1
                   : 0;
    int changed = jobs_db_lost_worker(s->db, slot->job_id, JOB_LOST_EXITED, slot->pid, NULL, error);
    if (changed == 0)
        changed = jobs_db_start_failed(s->db, slot->job_id, error);
    return changed < 0 ? -1 : 0;
}

static void free_slot(scheduler *s, worker_slot *slot) {
    if (slot->pidfd >= 0)
        close(slot->pidfd);
    *slot = (worker_slot){.pidfd = -1};
    s->running--;
}

/* The child of slot exited with status: record it now, or keep the slot
 * and try again next tick. */
static void on_child_exit(scheduler *s, worker_slot *slot, int status) {
    slot->exited = true;
    slot->status = status;
    if (WIFEXITED(status) && WEXITSTATUS(status) == DB_JOB_EXIT_STORAGE)
        backoff_grow(s, slot->job_id);
    else
        backoff_clear(s, slot->job_id);
    if (record_exit(s, slot) == 0) {
        free_slot(s, slot);
        return;
    }
    if (!slot->reported)
        fprintf(stderr, "rlhfd: job %lld: cannot record its worker's end yet (%s); retrying\n",
                (long long)slot->job_id, sqlite3_errmsg(s->db));
    slot->reported = true;
}

static void reap_children(scheduler *s) {
    for (int i = 0; i < s->n_slots; i++) {
        worker_slot *slot = &s->slots[i];
        int status;
        if (slot->pid > 0 && slot->exited) {
            if (record_exit(s, slot) == 0)
                free_slot(s, slot);
        } else if (slot->pid > 0 && waitpid(slot->pid, &status, WNOHANG) == slot->pid)
            on_child_exit(s, slot, status);
    }
}

/* The worker's pid; 0 if the job cannot start (recorded in the job). */
static pid_t spawn_worker(scheduler *s, int64_t job_id, int *stop_signal) {
    char id[24], np[24], error[512];
    snprintf(id, sizeof id, "%lld", (long long)job_id);
    job_row job;
    int64_t ranks = 1;
    if (jobs_db_get(s->db, job_id, &job) == 1) {
        ranks = job.ranks;
        job_row_free(&job);
    }
    if (worker_launch_check(&s->cfg, ranks, error, sizeof error) != 0) {
        jobs_db_start_failed(s->db, job_id, error);
        return 0;
    }
    char *argv[WORKER_LAUNCH_MAX_ARGS];
    *stop_signal = worker_launch_argv(&s->cfg, ranks, id, np, argv);
    pid_t pid = fork();
    if (pid == 0) {
        /* Handlers do not survive execve, but an ignored SIGPIPE and the
         * signal mask would: give the worker the defaults. */
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        signal(SIGPIPE, SIG_DFL);
        /* Training is batch work; annotators and dashboards wait on
         * requests. A niced worker still gets every idle cycle. */
        errno = 0;
        if (nice((int)s->cfg.worker_nice) == -1 && errno != 0)
            fprintf(stderr, "rlhfd: cannot renice the worker: %s\n", strerror(errno));
        execve(argv[0], argv, s->envp);
        fprintf(stderr, "rlhfd: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* ---- the tick ----------------------------------------------------------------- */

static void signal_cancelled(scheduler *s) {
    for (int i = 0; i < s->n_slots; i++) {
        worker_slot *slot = &s->slots[i];
        if (slot->pid > 0 && !slot->exited && !slot->sent_term &&
            jobs_db_cancel_pending(s->db, slot->job_id) == 1) {
            kill(slot->pid, slot->stop_signal);
            slot->sent_term = true;
        }
    }
}

static void expire_leases(scheduler *s) {
    int64_t ids[100], pids[100];
    const int n = jobs_db_expired(s->db, db_now_ms(), ids, pids, 100);
    for (int k = 0; k < n; k++) {
        char error[96];
        snprintf(error, sizeof error, "the worker's lease expired (pid %lld stopped heartbeating)",
                 (long long)pids[k]);
        if (lost_worker(s, ids[k], JOB_LOST_LEASE_EXPIRED, 0, NULL, error) != 1)
            continue;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].pid > 0 && !s->slots[i].exited && s->slots[i].job_id == ids[k])
                kill(s->slots[i].pid, SIGKILL);
    }
}

static bool job_has_worker(const scheduler *s, int64_t job_id) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].pid > 0 && s->slots[i].job_id == job_id)
            return true;
    return false;
}

/* Workers that are not our children — orphans of a daemon that was killed
 * and restarted, still training under their lease — cannot be reaped, so
 * their death would otherwise show only at lease expiry. Their lease owner
 * names their pid and start time (jobs_db_owner_name): one that no longer
 * runs is recorded as lost now. */
static void check_orphans(scheduler *s) {
    int64_t ids[100], pids[100];
    char owners[100][JOBS_DB_OWNER_BYTES];
    const int n = jobs_db_claimed(s->db, ids, pids, owners, 100);
    for (int k = 0; k < n; k++) {
        if (job_has_worker(s, ids[k]) || jobs_db_owner_alive(owners[k]) != 0)
            continue;
        char error[160];
        snprintf(error, sizeof error,
                 "its worker (pid %lld, started by an earlier rlhfd) is no longer running",
                 (long long)pids[k]);
        lost_worker(s, ids[k], JOB_LOST_ORPHAN, pids[k], owners[k], error);
    }
}

static void start_queued(scheduler *s) {
    if (s->running >= s->n_slots)
        return;
    /* Jobs we started whose child has not claimed them yet are still
     * 'queued': skip them. */
    int64_t ids[512];
    const int max = 2 * s->n_slots < 512 ? 2 * s->n_slots : 512;
    const int n = jobs_db_queued(s->db, ids, max);
    /* A worker could not even write its claim or first checkpoint: wait
     * for space (the probe is cached, and only asked when a job waits). */
    char why[256];
    if (n <= 0 || !storage_probe(s->cfg.db_path, why, sizeof why))
        return;
    for (int k = 0; k < n && s->running < s->n_slots; k++) {
        if (job_has_worker(s, ids[k]) || backoff_waiting(s, ids[k]))
            continue;
        for (int i = 0; i < s->n_slots; i++) {
            if (s->slots[i].pid != 0)
                continue;
            int stop_signal = SIGTERM;
            pid_t pid = spawn_worker(s, ids[k], &stop_signal);
            if (pid < 0) {
                fprintf(stderr, "rlhfd: fork failed: %s\n", strerror(errno));
                return;
            }
            if (pid == 0)
                break;
            s->slots[i] = (worker_slot){.pid = pid,
                                        .job_id = ids[k],
                                        .stop_signal = stop_signal,
                                        .pidfd = (int)syscall(SYS_pidfd_open, pid, 0)};
            s->running++;
            break;
        }
    }
}

/* Unreferenced artifacts go every ARTIFACT_COLLECT_MS (and at start-up,
 * main.c). */
#define ARTIFACT_COLLECT_MS (10 * 60 * 1000)

static void collect_artifacts(scheduler *s) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    const int64_t now_ms = (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
    if (now_ms < s->next_collect_ms)
        return;
    s->next_collect_ms = now_ms + ARTIFACT_COLLECT_MS;
    char err[512];
    if (artifact_store_collect(s->db, s->cfg.data_dir, s->cfg.artifact_grace_s, err, sizeof err) <
        0)
        fprintf(stderr, "rlhfd: collecting artifacts: %s\n", err);
}

/* Waits up to tick_ms for scheduler_wake or a child's exit (its pidfd
 * turns readable), so a dead worker is recorded at once. */
static void wait_tick(scheduler *s, int64_t tick_ms) {
    struct pollfd fds[1 + 256];
    int n = 0;
    fds[n++] = (struct pollfd){.fd = s->wake_pipe[0], .events = POLLIN};
    for (int i = 0; i < s->n_slots && n < (int)(sizeof fds / sizeof fds[0]); i++)
        if (s->slots[i].pid > 0 && !s->slots[i].exited && s->slots[i].pidfd >= 0)
            fds[n++] = (struct pollfd){.fd = s->slots[i].pidfd, .events = POLLIN};
    if (poll(fds, (nfds_t)n, (int)tick_ms) > 0 && (fds[0].revents & POLLIN)) {
        char drain[64];
        while (read(s->wake_pipe[0], drain, sizeof drain) > 0)
            ;
    }
}

static void *scheduler_main(void *arg) {
    scheduler *s = arg;
    const int64_t tick_ms = s->cfg.lease_ms / 4 < 1000 ? s->cfg.lease_ms / 4 : 1000;
    while (!atomic_load(&s->quit)) {
        reap_children(s);
        signal_cancelled(s);
        expire_leases(s);
        check_orphans(s);
        loops_tick(s->db, &s->cfg); /* online loops insert their jobs (loops.h) */
        start_queued(s);
        collect_artifacts(s);
        wait_tick(s, tick_ms);
    }
    return NULL;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static char **build_envp(const rlhfd_config *cfg) {
    size_t n = 0;
    while (environ[n])
        n++;
    char **envp = calloc(n + 4, sizeof *envp);
    if (envp == NULL)
        return NULL;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "OPENBLAS_NUM_THREADS=", 21) != 0 &&
            strncmp(environ[i], "RLHF_LEASE_MS=", 14) != 0 &&
            strncmp(environ[i], "RLHF_DATA_DIR=", 14) != 0)
            envp[k++] = strdup(environ[i]);
    char buf[64];
    snprintf(buf, sizeof buf, "OPENBLAS_NUM_THREADS=%lld", (long long)cfg->threads_per_job);
    envp[k++] = strdup(buf);
    snprintf(buf, sizeof buf, "RLHF_LEASE_MS=%lld", (long long)cfg->lease_ms);
    envp[k++] = strdup(buf);
    char dir[sizeof cfg->data_dir + 16];
    snprintf(dir, sizeof dir, "RLHF_DATA_DIR=%s", cfg->data_dir);
    envp[k++] = strdup(dir);
    return envp;
}

static void free_envp(char **envp) {
    for (char **e = envp; e && *e; e++)
        free(*e);
    free(envp);
}

scheduler *scheduler_start(const rlhfd_config *cfg, char *err, size_t errlen) {
    scheduler *s = calloc(1, sizeof *s);
    if (s == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->cfg = *cfg;
    s->n_slots = (int)cfg->workers;
    s->slots = calloc((size_t)s->n_slots, sizeof *s->slots);
    for (int i = 0; s->slots != NULL && i < s->n_slots; i++)
        s->slots[i].pidfd = -1;
    s->envp = build_envp(cfg);
    if (s->slots == NULL || s->envp == NULL || db_open(cfg->db_path, &s->db, err, errlen) != 0) {
        if (s->slots == NULL || s->envp == NULL)
            snprintf(err, errlen, "out of memory");
        free(s->slots);
        free_envp(s->envp);
        free(s);
        return NULL;
    }
    if (pipe2(s->wake_pipe, O_CLOEXEC | O_NONBLOCK) != 0 ||
        pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
        snprintf(err, errlen, "cannot start the scheduler thread");
        sqlite3_close(s->db);
        free(s->slots);
        free_envp(s->envp);
        free(s);
        return NULL;
    }
    return s;
}

void scheduler_wake(scheduler *s) {
    /* full pipe: a wake-up is pending anyway */
    if (write(s->wake_pipe[1], "w", 1) < 0 && errno != EAGAIN)
        fprintf(stderr, "rlhfd: cannot wake the scheduler: %s\n", strerror(errno));
}

int scheduler_running(scheduler *s) {
    return atomic_load(&s->running);
}

void scheduler_stop(scheduler *s, int64_t grace_ms) {
    atomic_store(&s->quit, true);
    scheduler_wake(s);
    pthread_join(s->thread, NULL);
    /* The thread is gone: the slots are ours alone now. Each worker stops
     * at its next update, checkpoints and puts its job back in the queue. */
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].pid > 0 && !s->slots[i].exited)
            kill(s->slots[i].pid, s->slots[i].stop_signal);
    const int64_t deadline = db_now_ms() + grace_ms;
    while (s->running > 0) {
        reap_children(s);
        if (s->running == 0)
            break;
        if (db_now_ms() >= deadline) {
            for (int i = 0; i < s->n_slots; i++)
                if (s->slots[i].pid > 0 && !s->slots[i].exited)
                    kill(s->slots[i].pid, SIGKILL);
            for (int i = 0; i < s->n_slots; i++) {
                int status;
                if (s->slots[i].pid > 0 && !s->slots[i].exited &&
                    waitpid(s->slots[i].pid, &status, 0) > 0)
                    on_child_exit(s, &s->slots[i], status);
            }
            break; /* what cannot be recorded now is left to the lease */
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].pidfd >= 0)
            close(s->slots[i].pidfd);
    close(s->wake_pipe[0]);
    close(s->wake_pipe[1]);
    sqlite3_close(s->db);
    free(s->slots);
    free_envp(s->envp);
    free(s);
}
