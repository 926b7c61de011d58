#include "writer.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

#include "db.h"

/* A batch larger than this waits for the next commit; bounds the time a
 * transaction holds the write lock against the training workers. */
#define WRITER_MAX_BATCH 256

/* WAL frames after which the checkpointer copies the WAL back into the
 * database (SQLite's own default for wal_autocheckpoint). */
#define WRITER_CHECKPOINT_FRAMES 1000

/* How often the checkpointer looks at the -wal file's size when no commit
 * woke it: big transactions also come from the HTTP threads' connections
 * (a dataset upload) and the training workers, which the writer's WAL hook
 * does not see. One stat() a second. */
#define WRITER_WAL_CHECK_MS 1000

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
    /* The checkpointer: its own thread and connection (see writer.h). */
    pthread_t ckpt_thread;
    sqlite3 *ckpt_db;
    bool ckpt_wanted;
    pthread_cond_t ckpt_wake;
    long long checkpoints;
};

/* Called by SQLite after each of the writer's commits with the WAL's size.
 * Registering it turns the writer connection's autocheckpoint off. */
static int on_wal_commit(void *arg, sqlite3 *db, const char *name, int frames) {
    (void)db, (void)name;
    writer *w = arg;
    if (frames >= WRITER_CHECKPOINT_FRAMES) {
        pthread_mutex_lock(&w->mutex);
        w->ckpt_wanted = true;
        pthread_cond_signal(&w->ckpt_wake);
        pthread_mutex_unlock(&w->mutex);
    }
    return SQLITE_OK;
}

static int64_t wal_file_bytes(sqlite3 *db) {
    const char *wal = sqlite3_filename_wal(sqlite3_db_filename(db, "main"));
    struct stat st;
    return wal != NULL && stat(wal, &st) == 0 ? (int64_t)st.st_size : 0;
}

/* Runs the checkpoints a wake-up calls for; returns how many succeeded.
 *
 * PASSIVE copies what no reader still needs, never waits for a lock and
 * never blocks a writer; the rest goes next time. It never makes the -wal
 * file smaller, though: SQLite only truncates it (to journal_size_limit,
 * common/db.h) when a writer starts the WAL over after a complete
 * checkpoint, so after a big transaction on an idle daemon the file kept
 * its size for good. So when the file is over the limit, a TRUNCATE
 * checkpoint follows the PASSIVE one. TRUNCATE takes the WAL's write lock;
 * this connection has no busy handler, so it gives up at once (SQLITE_BUSY)
 * if a writer holds the lock or a reader still needs the old frames, and it
 * is tried again a second later. Because PASSIVE has just copied nearly
 * everything, the lock is held for the last few frames, the database
 * file's fsync and the truncation: milliseconds, and only after a
 * transaction that grew the WAL past the limit, not on the ranking path. */
static int checkpoint_wal(writer *w, bool wanted) {
    bool too_big = wal_file_bytes(w->ckpt_db) > DB_WAL_SIZE_LIMIT_BYTES;
    int done = 0;
    if (wanted || too_big)
        done += sqlite3_wal_checkpoint_v2(w->ckpt_db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL,
                                          NULL) == SQLITE_OK;
    if (too_big)
        done += sqlite3_wal_checkpoint_v2(w->ckpt_db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL,
                                          NULL) == SQLITE_OK;
    return done;
}

static void *checkpointer_main(void *arg) {
    writer *w = arg;
    pthread_mutex_lock(&w->mutex);
    for (;;) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until); /* the condition variable's clock */
        until.tv_nsec += (WRITER_WAL_CHECK_MS % 1000) * 1000000L;
        until.tv_sec += WRITER_WAL_CHECK_MS / 1000 + until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        int waited = 0;
        while (!w->ckpt_wanted && !w->stopping && waited != ETIMEDOUT)
            waited = pthread_cond_timedwait(&w->ckpt_wake, &w->mutex, &until);
        if (w->stopping && !w->ckpt_wanted)
            break; /* one that was asked for runs first */
        bool wanted = w->ckpt_wanted;
        w->ckpt_wanted = false;
        pthread_mutex_unlock(&w->mutex);
        int done = checkpoint_wal(w, wanted);
        pthread_mutex_lock(&w->mutex);
        w->checkpoints += done;
    }
    pthread_mutex_unlock(&w->mutex);
    return NULL;
}

/* One statement of the savepoint dance, prepared once (sqlite3_exec would
 * compile it for every write). */
static int step_cached(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    int ok = st != NULL && sqlite3_step(st) == SQLITE_DONE;
    db_cached_done(st);
    return ok;
}

static int run_one(sqlite3 *db, const write_item *it) {
    if (!step_cached(db, "SAVEPOINT w"))
        return -1;
    int keep = it->fn(db, it->ctx);
    if (!keep && !step_cached(db, "ROLLBACK TO w"))
        return -1;
    return step_cached(db, "RELEASE w") ? 0 : -1;
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
        db_failure failed = DB_FAILURE_NONE;
        if (!committed) {
            db_rollback(w->db);
            failed = db_failure_of(w->db);
            if (failed == DB_FAILURE_NONE)
                failed = DB_FAILURE_OTHER;
        }
        for (write_item *it = batch, *next; it != NULL; it = next) {
            next = it->next;
            it->done(it->ctx, failed);
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
    /* Every write runs in its own SAVEPOINT, whose undo pages go to a
     * statement journal; SQLite keeps it in memory only up to 64 KiB and
     * then spills it to a file in /var/tmp that it never truncates again,
     * so every later savepoint of the connection's life wrote its pages
     * there: ~17 pwrite()s to disk per ranking, a third of the writer's
     * CPU (perf + strace under bench/bench_server.py's load). In memory,
     * a RELEASE frees them. The writer's journal holds one write's pages
     * at a time (tens of KiB). */
    if (db_exec(w->db, "PRAGMA temp_store=MEMORY", err, errlen) != 0) {
        sqlite3_close(w->db);
        free(w);
        return NULL;
    }
    if (db_open(db_path, &w->ckpt_db, err, errlen) != 0) {
        sqlite3_close(w->db);
        free(w);
        return NULL;
    }
    pthread_mutex_init(&w->mutex, NULL);
    pthread_cond_init(&w->wake, NULL);
    pthread_cond_init(&w->ckpt_wake, NULL);
    sqlite3_wal_hook(w->db, on_wal_commit, w);
    sqlite3_busy_handler(w->ckpt_db, NULL, NULL); /* see checkpoint_wal */
    if (pthread_create(&w->ckpt_thread, NULL, checkpointer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the checkpointer thread");
        sqlite3_close(w->ckpt_db);
        sqlite3_close(w->db);
        free(w);
        return NULL;
    }
    if (pthread_create(&w->thread, NULL, writer_main, w) != 0) {
        snprintf(err, errlen, "cannot start the writer thread");
        pthread_mutex_lock(&w->mutex);
        w->stopping = true;
        pthread_cond_signal(&w->ckpt_wake);
        pthread_mutex_unlock(&w->mutex);
        pthread_join(w->ckpt_thread, NULL);
        sqlite3_close(w->ckpt_db);
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
    pthread_cond_signal(&w->ckpt_wake);
    pthread_mutex_unlock(&w->mutex);
    pthread_join(w->thread, NULL);
    pthread_join(w->ckpt_thread, NULL);
}

void writer_free(writer *w) {
    if (w == NULL)
        return;
    db_close(w->db);
    db_close(w->ckpt_db);
    pthread_mutex_destroy(&w->mutex);
    pthread_cond_destroy(&w->wake);
    pthread_cond_destroy(&w->ckpt_wake);
    free(w);
}

void writer_stats(writer *w, long long *batches, long long *writes, long long *checkpoints) {
    pthread_mutex_lock(&w->mutex);
    *batches = w->batches, *writes = w->writes, *checkpoints = w->checkpoints;
    pthread_mutex_unlock(&w->mutex);
}
