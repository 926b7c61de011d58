/* The worker threads, the bounded FIFO and the queue timer of slow_pool.h. */
#include "slow_pool.h"

#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

typedef struct task {
    slow_pool_fn fn;
    void *ctx;
    int64_t owner;
    int64_t deadline_ms; /* monotonic: expires if still queued then */
    struct task *next;
} task;

struct slow_pool {
    slow_pool_config cfg;
    char name[32];
    pthread_mutex_t mutex;
    pthread_cond_t work;  /* a task was queued, or stopping */
    pthread_cond_t timer; /* the queue's head changed, or stopping */
    pthread_t *threads;   /* (cfg.workers) */
    pthread_t timer_thread;
    int n_started;
    task *head, *tail;
    int queued;
    int64_t *running_owner; /* (cfg.workers) the owner of each worker's task; 0: idle */
    int running;
    bool stopping;
    int64_t avg_run_ms; /* moving average of run times, for Retry-After */
    long long completed, expired, refused;
};

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Seconds until a slot is likely free for one more task: the queue ahead
 * of it, spread over the workers, at the average run time. Locked. */
static int64_t retry_after_locked(const slow_pool *p) {
    int64_t ms =
        (int64_t)(p->queued + 1) * (p->avg_run_ms > 0 ? p->avg_run_ms : 1000) / p->cfg.workers;
    int64_t s = (ms + 999) / 1000;
    return s < 1 ? 1 : s > 3600 ? 3600 : s;
}

static int owner_count_locked(const slow_pool *p, int64_t owner) {
    int n = 0;
    for (const task *t = p->head; t != NULL; t = t->next)
        n += t->owner == owner;
    for (int i = 0; i < p->cfg.workers; i++)
        n += p->running_owner[i] == owner;
    return n;
}

/* Takes the oldest task out of the queue (not empty). Locked. */
static task *pop_head_locked(slow_pool *p) {
    task *t = p->head;
    p->head = t->next;
    if (p->head == NULL)
        p->tail = NULL;
    p->queued--;
    return t;
}

static void *worker_main(void *arg) {
    slow_pool *p = arg;
    pthread_mutex_lock(&p->mutex);
    const int me = p->n_started++;
    for (;;) {
        while (p->head == NULL && !p->stopping)
            pthread_cond_wait(&p->work, &p->mutex);
        if (p->head == NULL)
            break; /* stopping: slow_pool_stop ended what was queued */
        task *t = pop_head_locked(p);
        p->running++;
        p->running_owner[me] = t->owner;
        pthread_cond_signal(&p->timer);
        pthread_mutex_unlock(&p->mutex);
        if (p->cfg.gate_fd >= 0) { /* the test hook: one byte per task */
            char byte;
            while (read(p->cfg.gate_fd, &byte, 1) < 0 && errno == EINTR)
                ;
        }
        const int64_t started = monotonic_ms();
        t->fn(t->ctx, SLOW_POOL_RUN);
        const int64_t took = monotonic_ms() - started;
        free(t);
        pthread_mutex_lock(&p->mutex);
        p->avg_run_ms = p->avg_run_ms == 0 ? took + 1 : (7 * p->avg_run_ms + took + 1) / 8;
        p->running--;
        p->running_owner[me] = 0;
        p->completed++;
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

/* Ends the tasks whose deadline has passed; sleeps until the head's. The
 * queue is FIFO with one timeout, so the head expires first. */
static void *timer_main(void *arg) {
    slow_pool *p = arg;
    pthread_mutex_lock(&p->mutex);
    while (!p->stopping) {
        if (p->head == NULL) {
            pthread_cond_wait(&p->timer, &p->mutex);
            continue;
        }
        const int64_t now = monotonic_ms();
        if (p->head->deadline_ms > now) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until); /* the condition variable's clock */
            const int64_t wait_ms = p->head->deadline_ms - now;
            until.tv_sec += wait_ms / 1000;
            until.tv_nsec += (wait_ms % 1000) * 1000000L;
            until.tv_sec += until.tv_nsec / 1000000000L;
            until.tv_nsec %= 1000000000L;
            pthread_cond_timedwait(&p->timer, &p->mutex, &until);
            continue;
        }
        task *t = pop_head_locked(p);
        p->expired++;
        pthread_mutex_unlock(&p->mutex);
        t->fn(t->ctx, SLOW_POOL_EXPIRED);
        free(t);
        pthread_mutex_lock(&p->mutex);
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

static void stop_threads(slow_pool *p) {
    pthread_mutex_lock(&p->mutex);
    p->stopping = true;
    task *queued = p->head;
    p->head = p->tail = NULL;
    p->queued = 0;
    pthread_cond_broadcast(&p->work);
    pthread_cond_signal(&p->timer);
    const int started = p->n_started;
    pthread_mutex_unlock(&p->mutex);
    for (task *t = queued, *next; t != NULL; t = next) {
        next = t->next;
        t->fn(t->ctx, SLOW_POOL_STOPPING);
        free(t);
    }
    for (int i = 0; i < started; i++)
        pthread_join(p->threads[i], NULL);
    pthread_join(p->timer_thread, NULL);
}

slow_pool *slow_pool_start(const slow_pool_config *cfg, char *err, size_t errlen) {
    slow_pool *p = calloc(1, sizeof *p);
    if (p == NULL || cfg->workers < 1 || cfg->queue_max < 0 || cfg->queue_timeout_ms <= 0) {
        snprintf(err, errlen, "%s",
                 p ? "a slow pool needs workers >= 1, queue >= 0, a timeout > 0" : "out of memory");
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->timer, NULL);
    p->cfg = *cfg;
    snprintf(p->name, sizeof p->name, "%s", cfg->name ? cfg->name : "slow");
    p->cfg.name = p->name;
    p->threads = calloc((size_t)cfg->workers, sizeof *p->threads);
    p->running_owner = calloc((size_t)cfg->workers, sizeof *p->running_owner);
    if (p->threads == NULL || p->running_owner == NULL) {
        snprintf(err, errlen, "out of memory");
        slow_pool_free(p);
        return NULL;
    }
    if (pthread_create(&p->timer_thread, NULL, timer_main, p) != 0) {
        snprintf(err, errlen, "cannot start the %s pool's timer thread", p->name);
        slow_pool_free(p);
        return NULL;
    }
    for (int i = 0; i < cfg->workers; i++)
        if (pthread_create(&p->threads[i], NULL, worker_main, p) != 0) {
            snprintf(err, errlen, "cannot start the %s pool's worker %d", p->name, i);
            /* The threads started count themselves in n_started when they
             * run; wait for them to have, so stop joins all of them. */
            for (;;) {
                pthread_mutex_lock(&p->mutex);
                const int n = p->n_started;
                pthread_mutex_unlock(&p->mutex);
                if (n == i)
                    break;
                sched_yield();
            }
            stop_threads(p);
            slow_pool_free(p);
            return NULL;
        }
    return p;
}

int slow_pool_submit(slow_pool *p, int64_t owner, slow_pool_fn fn, void *ctx,
                     int64_t *retry_after_s) {
    task *t = malloc(sizeof *t);
    pthread_mutex_lock(&p->mutex);
    int refusal = 0;
    if (p->stopping)
        refusal = SLOW_POOL_STOPPED;
    else if (t == NULL)
        refusal = SLOW_POOL_NO_MEMORY;
    else if (p->cfg.per_owner > 0 && owner_count_locked(p, owner) >= p->cfg.per_owner)
        refusal = SLOW_POOL_OWNER_LIMIT;
    else if (p->running + p->queued >= p->cfg.workers + p->cfg.queue_max)
        refusal = SLOW_POOL_QUEUE_FULL;
    if (refusal != 0) {
        p->refused++;
        *retry_after_s = retry_after_locked(p);
        pthread_mutex_unlock(&p->mutex);
        free(t);
        return refusal;
    }
    *t = (task){fn, ctx, owner, monotonic_ms() + p->cfg.queue_timeout_ms, NULL};
    if (p->tail)
        p->tail->next = t;
    else
        p->head = t;
    p->tail = t;
    p->queued++;
    pthread_cond_signal(&p->work);
    pthread_cond_signal(&p->timer);
    pthread_mutex_unlock(&p->mutex);
    return 0;
}

void slow_pool_stop(slow_pool *p) {
    if (p != NULL && !p->stopping)
        stop_threads(p);
}

void slow_pool_free(slow_pool *p) {
    if (p == NULL)
        return;
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->timer);
    free(p->threads);
    free(p->running_owner);
    free(p);
}

void slow_pool_get_stats(slow_pool *p, slow_pool_stats *s) {
    pthread_mutex_lock(&p->mutex);
    *s = (slow_pool_stats){p->running, p->queued, p->completed, p->expired, p->refused};
    pthread_mutex_unlock(&p->mutex);
}

int64_t slow_pool_retry_after(slow_pool *p) {
    pthread_mutex_lock(&p->mutex);
    const int64_t s = retry_after_locked(p);
    pthread_mutex_unlock(&p->mutex);
    return s;
}

const char *slow_pool_name(const slow_pool *p) {
    return p->name;
}

void slow_pool_refusal_text(const slow_pool *p, int refusal, char *out, size_t len) {
    switch (refusal) {
        case SLOW_POOL_OWNER_LIMIT:
            snprintf(out, len, "this token already has %d %s requests queued or running",
                     p->cfg.per_owner, p->name);
            break;
        case SLOW_POOL_QUEUE_FULL:
            snprintf(out, len, "all %d %s workers are busy and %d requests wait", p->cfg.workers,
                     p->name, p->cfg.queue_max);
            break;
        case SLOW_POOL_STOPPED:
            snprintf(out, len, "rlhfd is shutting down");
            break;
        default:
            snprintf(out, len, "out of memory");
    }
}
