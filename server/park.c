#include "park.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

struct park {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_t thread;
    struct MHD_Connection **conns;
    size_t n, cap;
    int64_t tick_ms;
    bool stopping;
};

/* Resumes the connections taken out of the list (outside the lock: a
 * suspended connection cannot be closed before it is resumed, and
 * park_stop joins this thread before MHD is stopped). */
static void resume_all(struct MHD_Connection **conns, size_t n) {
    for (size_t i = 0; i < n; i++)
        MHD_resume_connection(conns[i]);
}

static void *ticker(void *arg) {
    park *p = arg;
    pthread_mutex_lock(&p->mutex);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += p->tick_ms / 1000;
        until.tv_nsec += (p->tick_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000)
            until.tv_sec++, until.tv_nsec -= 1000000000;
        while (!p->stopping && pthread_cond_timedwait(&p->wake, &p->mutex, &until) == 0)
            ;
        /* Take the list: what parks while we resume waits for the next tick. */
        struct MHD_Connection **conns = p->conns;
        size_t n = p->n;
        p->conns = NULL, p->n = p->cap = 0;
        bool stop = p->stopping;
        pthread_mutex_unlock(&p->mutex);
        resume_all(conns, n);
        free(conns);
        if (stop)
            return NULL;
        pthread_mutex_lock(&p->mutex);
    }
}

park *park_start(int64_t tick_ms, char *err, size_t errlen) {
    park *p = calloc(1, sizeof *p);
    if (p == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->tick_ms = tick_ms;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (pthread_create(&p->thread, NULL, ticker, p) != 0) {
        snprintf(err, errlen, "cannot start the stream ticker thread");
        free(p);
        return NULL;
    }
    return p;
}

int park_suspend(park *p, struct MHD_Connection *conn) {
    pthread_mutex_lock(&p->mutex);
    int ok = !p->stopping;
    if (ok && p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 16;
        struct MHD_Connection **grown = realloc(p->conns, cap * sizeof *grown);
        ok = grown != NULL;
        if (ok)
            p->conns = grown, p->cap = cap;
    }
    if (ok) {
        /* Under the lock: the ticker cannot resume it before it is suspended. */
        MHD_suspend_connection(conn);
        p->conns[p->n++] = conn;
    }
    pthread_mutex_unlock(&p->mutex);
    return ok ? 0 : -1;
}

void park_stop(park *p) {
    if (p == NULL)
        return;
    pthread_mutex_lock(&p->mutex);
    p->stopping = true;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    pthread_join(p->thread, NULL);
    free(p->conns);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    free(p);
}
