#include "scheduler.h"

#include "artifact_store.h"
#include "jobs_db.h"
#include "worker_launch.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

typedef struct worker_slot {
    pid_t pid; /* 0: free */
    int64_t job_id;
    bool sent_term;
    int stop_signal; /* SIGTERM, or SIGUSR2 for an mpirun (worker_launch.h) */
} worker_slot;

struct scheduler {
    rlhfd_config cfg;
    sqlite3 *db;
    worker_slot *slots;
    int n_slots;
    char **envp; /* environ + OPENBLAS_NUM_THREADS + RLHF_LEASE_MS + RLHF_DATA_DIR, built once */
    int64_t next_collect_ms; /* the next artifact_store_collect (monotonic) */
    pthread_t thread;
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    bool woken, quit;
    atomic_int running; /* written by the scheduler thread, read by /metrics */
};

/* jobs_db_lost_worker, saying so on stderr when it cannot be recorded. */
static int lost_worker(scheduler *s, int64_t job_id, job_lost_reason why, int64_t pid,
                       const char *error) {
    int changed = jobs_db_lost_worker(s->db, job_id, why, pid, error);
    if (changed < 0)
        fprintf(stderr, "rlhfd: job %lld: cannot record the lost worker: %s\n", (long long)job_id,
                sqlite3_errmsg(s->db));
    return changed;
}

/* ---- children --------------------------------------------------------------- */

static void describe_exit(int status, char *out, size_t len) {
    if (WIFSIGNALED(status))
        snprintf(out, len, "rlhf-train was killed by signal %d (%s)", WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
    else
        snprintf(out, len, "rlhf-train exited with code %d", WEXITSTATUS(status));
}

static void on_child_exit(scheduler *s, worker_slot *slot, int status) {
    char error[160];
    describe_exit(status, error, sizeof error);
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    /* Exit 0 and 1 mean the child recorded the outcome itself; 3 means
     * another worker had the job. Anything else: see what it left behind. */
    if (code != 0 && code != 1 && code != 3) {
        if (lost_worker(s, slot->job_id, JOB_LOST_EXITED, slot->pid, error) == 0)
            jobs_db_start_failed(s->db, slot->job_id, error);
    }
    slot->pid = 0;
    slot->sent_term = false;
    s->running--;
}

static void reap_children(scheduler *s) {
    for (int i = 0; i < s->n_slots; i++) {
        int status;
        if (s->slots[i].pid > 0 && waitpid(s->slots[i].pid, &status, WNOHANG) == s->slots[i].pid)
            on_child_exit(s, &s->slots[i], status);
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
        if (slot->pid > 0 && !slot->sent_term && jobs_db_cancel_pending(s->db, slot->job_id) == 1) {
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
        if (lost_worker(s, ids[k], JOB_LOST_LEASE_EXPIRED, 0, error) != 1)
            continue;
        for (int i = 0; i < s->n_slots; i++)
            if (s->slots[i].pid > 0 && s->slots[i].job_id == ids[k])
                kill(s->slots[i].pid, SIGKILL);
    }
}

static bool job_has_worker(const scheduler *s, int64_t job_id) {
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].pid > 0 && s->slots[i].job_id == job_id)
            return true;
    return false;
}

static void start_queued(scheduler *s) {
    if (s->running >= s->n_slots)
        return;
    /* Jobs we started whose child has not claimed them yet are still
     * 'queued': skip them. */
    int64_t ids[512];
    const int max = 2 * s->n_slots < 512 ? 2 * s->n_slots : 512;
    const int n = jobs_db_queued(s->db, ids, max);
    for (int k = 0; k < n && s->running < s->n_slots; k++) {
        if (job_has_worker(s, ids[k]))
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
            s->slots[i] = (worker_slot){.pid = pid, .job_id = ids[k], .stop_signal = stop_signal};
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

static void *scheduler_main(void *arg) {
    scheduler *s = arg;
    const int64_t tick_ms = s->cfg.lease_ms / 4 < 1000 ? s->cfg.lease_ms / 4 : 1000;
    pthread_mutex_lock(&s->mutex);
    while (!s->quit) {
        s->woken = false;
        pthread_mutex_unlock(&s->mutex);
        reap_children(s);
        signal_cancelled(s);
        expire_leases(s);
        start_queued(s);
        collect_artifacts(s);
        pthread_mutex_lock(&s->mutex);
        if (s->woken || s->quit)
            continue;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        int64_t ns = until.tv_nsec + tick_ms * 1000000;
        until.tv_sec += ns / 1000000000;
        until.tv_nsec = ns % 1000000000;
        pthread_cond_timedwait(&s->wake, &s->mutex, &until);
    }
    pthread_mutex_unlock(&s->mutex);
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
    s->envp = build_envp(cfg);
    if (s->slots == NULL || s->envp == NULL || db_open(cfg->db_path, &s->db, err, errlen) != 0) {
        if (s->slots == NULL || s->envp == NULL)
            snprintf(err, errlen, "out of memory");
        free(s->slots);
        free_envp(s->envp);
        free(s);
        return NULL;
    }
    pthread_mutex_init(&s->mutex, NULL);
    pthread_cond_init(&s->wake, NULL);
    if (pthread_create(&s->thread, NULL, scheduler_main, s) != 0) {
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
    pthread_mutex_lock(&s->mutex);
    s->woken = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
}

int scheduler_running(scheduler *s) {
    return atomic_load(&s->running);
}

void scheduler_stop(scheduler *s, int64_t grace_ms) {
    pthread_mutex_lock(&s->mutex);
    s->quit = true;
    pthread_cond_signal(&s->wake);
    pthread_mutex_unlock(&s->mutex);
    pthread_join(s->thread, NULL);
    /* The thread is gone: the slots are ours alone now. Each worker stops
     * at its next update, checkpoints and puts its job back in the queue. */
    for (int i = 0; i < s->n_slots; i++)
        if (s->slots[i].pid > 0)
            kill(s->slots[i].pid, s->slots[i].stop_signal);
    const int64_t deadline = db_now_ms() + grace_ms;
    while (s->running > 0) {
        reap_children(s);
        if (s->running == 0)
            break;
        if (db_now_ms() >= deadline) {
            for (int i = 0; i < s->n_slots; i++)
                if (s->slots[i].pid > 0)
                    kill(s->slots[i].pid, SIGKILL);
            for (int i = 0; i < s->n_slots; i++) {
                int status;
                if (s->slots[i].pid > 0 && waitpid(s->slots[i].pid, &status, 0) > 0)
                    on_child_exit(s, &s->slots[i], status);
            }
            break;
        }
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
    }
    sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mutex);
    pthread_cond_destroy(&s->wake);
    free(s->slots);
    free_envp(s->envp);
    free(s);
}
