#include "writer.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "db.h"

/* A batch larger than this waits for the next commit; bounds the time a
 * transaction holds the write lock against the training workers. */
#define WRITER_MAX_BATCH 256

typedef struct write_item {
    writer_fn fn;
    writer_done done;
    void *ctx;
    struct write_item *next;
} write_item;

struct writer {
    pthread_mutex_t mutex;
    pthread_cond_t wake;
    pthread_t thread;
    sqlite3 *db;
    write_item *head, *tail;
    bool stopping;
    long long batches, writes;
};

static int run_one(sqlite3 *db, const write_item *it) {
    if (sqlite3_exec(db, "SAVEPOINT w", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    int keep = it->fn(db, it->ctx);
    if (!keep && sqlite3_exec(db, "ROLLBACK TO w", NULL, NULL, NULL) != SQLITE_OK)
        return -1;
    return sqlite3_exec(db, "RELEASE w", NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
}

static void *writer_main(void *arg) {
    writer *w = arg;
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        while (w->head == NULL && !w->stopping)
            pthread_cond_wait(&w->wake, &w->mutex);
        if (w->head == NULL)
            break; /* stopping and drained */
        write_item *batch = w->head, *last = batch;
        int n = 1;
        while (last->next != NULL && n < WRITER_MAX_BATCH)
            last = last->next, n++;
        w->head = last->next;
        if (w->head == NULL)
            w->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&w->mutex);

        int ok = db_begin(w->db) == SQLITE_OK;
        for (write_item *it = batch; ok && it != NULL; it = it->next)
            ok = run_one(w->db, it) == 0;
        int committed = ok && db_commit(w->db) == SQLITE_OK;
        if (!committed)
            db_rollback(w->db);
        for (write_item *it = batch, *next; it != NULL; it = next) {
            next = it->next;
            it->done(it->ctx, committed);
            free(it);
        }
        pthread_mutex_lock(&w->mutex);
        if (committed)
            w->batches++, w->writes += n;
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

writer *writer_start(const char *db_path, char *err, size_t errlen) {
    writer *w = calloc(1, sizeof *w);
    if (w == NULL) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    if (db_open(db_path, &w->db, err, errlen) != 0) {
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->wake, NULL);
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        sqlite3_close(w->db);
        free(w);
        return NULL;
    }
    return w;
}

int writer_submit(writer *w, writer_fn fn, writer_done done, void *ctx) {
    write_item *it = malloc(sizeof *it);
    if (it == NULL)
        return -1;
    *it = (write_item){fn, done, ctx, NULL};
    pthread_mutex_lock(&w->mutex);
    bool stopping = w->stopping;
    if (!stopping) {
        if (w->tail)
            w->tail->next = it;
        else
            w->head = it;
        w->tail = it;
        pthread_cond_signal(&w->wake);
    }
    pthread_mutex_unlock(&w->mutex);
    if (stopping)
        free(it);
    return stopping ? -1 : 0;
}

void writer_stop(writer *w) {
    if (w == NULL || w->stopping)
        return;
    pthread_mutex_lock(&w->mutex);
    w->stopping = true;
    pthread_cond_signal(&w->wake);
    pthread_mutex_unlock(&w->mutex);
    pthread_join(w->thread, NULL);
}

void writer_free(writer *w) {
    if (w == NULL)
        return;
    db_close(w->db);
    pthread_mutex_destroy(&w->mutex);
    pthread_cond_destroy(&w->wake);
    free(w);
}

void writer_stats(writer *w, long long *batches, long long *writes) {
    pthread_mutex_lock(&w->mutex);
    *batches = w->batches, *writes = w->writes;
    pthread_mutex_unlock(&w->mutex);
}
