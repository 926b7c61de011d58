#include "db.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
    char *msg = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
    if (rc != SQLITE_OK && err != NULL)
        snprintf(err, errlen, "%s", msg ? msg : sqlite3_errstr(rc));
    sqlite3_free(msg);
    return rc;
}

/* Waits for another connection's write lock. SQLite's own handler
 * (sqlite3_busy_timeout) sleeps 1, 2, 5, 10, 15, 20, 25 ms... between
 * tries, so a write that meets a lock held for 2 ms (one fsync'd commit)
 * sleeps 8 ms; with rlhfd's group commit and a worker writing metrics
 * beside it, those sleeps were the tail of ranking latency. Here: tries
 * every 0.1 ms for the first 2 ms, every 0.5 ms up to 20 ms, then every
 * 2 ms until DB_BUSY_TIMEOUT_MS. */
static int busy_wait(void *arg, int count) {
    (void)arg;
    int64_t sleep_us, waited_us;
    if (count < 20)
        sleep_us = 100, waited_us = (int64_t)count * 100;
    else if (count < 56)
        sleep_us = 500, waited_us = 2000 + (int64_t)(count - 20) * 500;
    else
        sleep_us = 2000, waited_us = 20000 + (int64_t)(count - 56) * 2000;
    if (waited_us >= (int64_t)DB_BUSY_TIMEOUT_MS * 1000)
        return 0;
    struct timespec ts = {0, (long)sleep_us * 1000};
    nanosleep(&ts, NULL);
    return 1;
}

/* SQLite keeps global allocation statistics (SQLITE_CONFIG_MEMSTATUS, on
 * by default) under one global mutex taken by every allocation of every
 * connection; nothing here reads them. Off, before SQLite initialises (a
 * program that opened a database some other way first keeps them: the
 * call then fails and changes nothing). */
static void sqlite_configure(void) {
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}

int db_open(const char *path, sqlite3 **out, char *err, size_t errlen) {
    static pthread_once_t configured = PTHREAD_ONCE_INIT;
    pthread_once(&configured, sqlite_configure);
    sqlite3 *db = NULL;
    int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open database %s: %s", path,
                 db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return -1;
    }
    sqlite3_busy_handler(db, busy_wait, NULL);
    sqlite3_stmt *st = NULL;
    const char *mode = NULL;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mode = (const char *)sqlite3_column_text(st, 0);
    int wal = mode != NULL && strcmp(mode, "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "cannot switch %s to WAL mode: %s", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return -1;
    }
    char msg[256];
    char pragmas[128];
    snprintf(pragmas, sizeof pragmas,
             "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=%d;",
             DB_WAL_SIZE_LIMIT_BYTES);
    if (db_exec(db, pragmas, msg, sizeof msg) != 0) {
        snprintf(err, errlen, "cannot configure %s: %s", path, msg);
        sqlite3_close(db);
        return -1;
    }
    *out = db;
    return 0;
}

int db_schema_version(void) {
    int n = 0;
    while (db_migrations[n].name != NULL)
        n++;
    return n;
}

static int user_version(sqlite3 *db) {
    sqlite3_stmt *st = NULL;
    int v = -1;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return v;
}

int db_migrate(sqlite3 *db, char *err, size_t errlen) {
    const int latest = db_schema_version();
    int rc = db_begin(db);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot start the migration: %s", sqlite3_errstr(rc));
        return -1;
    }
    /* Read inside the write transaction: two processes migrating at once
     * apply each migration once. */
    int version = user_version(db);
    if (version < 0 || version > latest) {
        snprintf(err, errlen, "database schema version %d is not one this program knows (0..%d)",
                 version, latest);
        db_rollback(db);
        return -1;
    }
    if (version == latest) { /* nothing to write: a full disk does not stop a start */
        db_rollback(db);
        return 0;
    }
    for (int i = version; i < latest; i++) {
        char msg[256];
        /* The file's number must be its position: a gap or a duplicate in
         * schema/ would otherwise renumber every later migration. */
        if (atoi(db_migrations[i].name) != i + 1) {
            snprintf(err, errlen, "migration %s is out of sequence (expected number %d)",
                     db_migrations[i].name, i + 1);
            db_rollback(db);
            return -1;
        }
        if (db_exec(db, db_migrations[i].sql, msg, sizeof msg) != SQLITE_OK) {
            snprintf(err, errlen, "migration %s failed: %s", db_migrations[i].name, msg);
            db_rollback(db);
            return -1;
        }
    }
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version=%d", latest);
    if (db_exec(db, sql, err, errlen) != SQLITE_OK || (rc = db_commit(db)) != SQLITE_OK) {
        if (rc != SQLITE_OK)
            snprintf(err, errlen, "cannot commit the migration: %s", sqlite3_errstr(rc));
        db_rollback(db);
        return -1;
    }
    return 0;
}

/* The first failure of the current transaction on this thread's
 * connection db (see db_failure_of). */
static _Thread_local struct {
    sqlite3 *db;
    int rc, sys_errno;
} last_failure;

static int is_failure(int rc) {
    rc &= 0xff;
    return rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE;
}

/* Keeps db's current error, unless one of this transaction is kept already. */
static void remember_failure(sqlite3 *db) {
    const int rc = sqlite3_extended_errcode(db);
    if (is_failure(rc) && !(last_failure.db == db && last_failure.rc != 0)) {
        last_failure.db = db;
        last_failure.rc = rc;
        last_failure.sys_errno = sqlite3_system_errno(db);
    }
}

db_failure db_failure_classify(int extended_rc, int sys_errno) {
    if (!is_failure(extended_rc))
        return DB_FAILURE_NONE;
    switch (extended_rc & 0xff) {
        case SQLITE_FULL:
            return DB_FAILURE_NO_SPACE;
        case SQLITE_IOERR:
            if (extended_rc == SQLITE_IOERR_NOMEM)
                return DB_FAILURE_OTHER;
            return sys_errno == ENOSPC || sys_errno == EDQUOT ? DB_FAILURE_NO_SPACE : DB_FAILURE_IO;
        case SQLITE_READONLY:
        case SQLITE_CANTOPEN:
        case SQLITE_BUSY:
        case SQLITE_LOCKED:
            return DB_FAILURE_IO;
        default:
            return DB_FAILURE_OTHER;
    }
}

db_failure db_failure_of(sqlite3 *db) {
    if (last_failure.db == db && last_failure.rc != 0)
        return db_failure_classify(last_failure.rc, last_failure.sys_errno);
    return db_failure_classify(sqlite3_extended_errcode(db), sqlite3_system_errno(db));
}

int db_failure_is_storage(db_failure f) {
    return f == DB_FAILURE_NO_SPACE || f == DB_FAILURE_IO;
}

int db_errno_is_storage(int err) {
    return err == ENOSPC || err == EDQUOT || err == EIO || err == EROFS;
}

static void forget_failure(sqlite3 *db) {
    if (last_failure.db == db)
        last_failure.db = NULL, last_failure.rc = 0;
}

/* A statement without rows, kept prepared: SQLITE_OK or the error. */
static int exec_cached(sqlite3 *db, const char *sql) {
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    if (st == NULL)
        return sqlite3_errcode(db) != SQLITE_OK ? sqlite3_errcode(db) : SQLITE_ERROR;
    int rc = sqlite3_step(st);
    db_cached_done(st);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

int db_begin(sqlite3 *db) {
    forget_failure(db);
    int rc = exec_cached(db, "BEGIN IMMEDIATE");
    if (rc != SQLITE_OK)
        remember_failure(db);
    return rc;
}

int db_commit(sqlite3 *db) {
    int rc;
    /* COMMIT can meet BUSY when readers hold the WAL; the transaction stays
     * open and the commit can simply be tried again. */
    for (int tries = 0; (rc = exec_cached(db, "COMMIT")) == SQLITE_BUSY && tries < 100; tries++)
        sqlite3_sleep(10);
    if (rc != SQLITE_OK)
        remember_failure(db);
    return rc;
}

void db_rollback(sqlite3 *db) {
    remember_failure(db);
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
}

/* Bytes of a well-formed UTF-8 sequence at s (n bytes left), or 0. */
static int utf8_sequence(const unsigned char *s, size_t n) {
    if (s[0] < 0x80)
        return 1;
    int len = s[0] >= 0xC2 && s[0] <= 0xDF   ? 2
              : s[0] >= 0xE0 && s[0] <= 0xEF ? 3
              : s[0] >= 0xF0 && s[0] <= 0xF4 ? 4
                                             : 0;
    if (len == 0 || (size_t)len > n)
        return 0;
    for (int i = 1; i < len; i++)
        if ((s[i] & 0xC0) != 0x80)
            return 0;
    if ((s[0] == 0xE0 && s[1] < 0xA0) || (s[0] == 0xED && s[1] > 0x9F) ||
        (s[0] == 0xF0 && s[1] < 0x90) || (s[0] == 0xF4 && s[1] > 0x8F))
        return 0;
    return len;
}

char *db_utf8_clean(const char *bytes, size_t n) {
    char *out = malloc(3 * n + 1);
    if (out == NULL)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        int len = bytes[i] ? utf8_sequence((const unsigned char *)bytes + i, n - i) : 0;
        if (len == 0) {
            memcpy(out + o, "\xEF\xBF\xBD", 3), o += 3, i++;
        } else {
            memcpy(out + o, bytes + i, (size_t)len), o += (size_t)len, i += (size_t)len;
        }
    }
    out[o] = '\0';
    return out;
}

int db_insert_job_event(sqlite3 *db, int64_t job_id, const char *level, const char *type,
                        const char *code, const char *message, const json_t *data) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db,
                           "INSERT INTO job_events (job_id, created_at, level, type, code, "
                           "message, data) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                           -1, &st, NULL) != SQLITE_OK)
        return -1;
    char *text = data ? json_dumps(data, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    /* Messages may quote model samples, which can be any bytes; the API
     * serves them as JSON strings, which must be UTF-8. */
    char *clean = db_utf8_clean(message, strlen(message));
    if (clean == NULL) {
        free(text);
        sqlite3_finalize(st);
        return -1;
    }
    sqlite3_bind_int64(st, 1, job_id);
    sqlite3_bind_int64(st, 2, db_now_s());
    sqlite3_bind_text(st, 3, level, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 4, type, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 5, code, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 6, clean, -1, free);
    if (text)
        sqlite3_bind_text(st, 7, text, -1, free);
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int64_t clock_ms(clockid_t id) {
    struct timespec ts;
    clock_gettime(id, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

json_t *db_load_row(sqlite3 *db, const char *sql, int64_t id, db_row_json from_row, int *found) {
    /* Callers pass literal SQL, so the statement cache holds one each:
     * compiling "SELECT 1 FROM comparisons WHERE id = ?1" was 7% of an
     * HTTP thread's CPU on the ranking path. */
    sqlite3_stmt *st = db_cached_prepare(db, sql);
    int rc = st != NULL ? SQLITE_OK : SQLITE_ERROR;
    if (rc == SQLITE_OK) {
        sqlite3_bind_int64(st, 1, id);
        rc = sqlite3_step(st);
    }
    json_t *row = rc == SQLITE_ROW && from_row != NULL ? from_row(db, st, id) : NULL;
    if (found != NULL)
        *found = rc == SQLITE_ROW ? 1 : rc == SQLITE_DONE ? 0 : -1;
    db_cached_done(st);
    return row;
}

int db_row_exists(sqlite3 *db, const char *sql, int64_t id) {
    int found;
    db_load_row(db, sql, id, NULL, &found);
    return found;
}

int64_t db_now_ms(void) {
    return clock_ms(CLOCK_REALTIME);
}

int64_t db_now_s(void) {
    return db_now_ms() / 1000;
}

/* ---- statement cache ----------------------------------------------------- */

/* Open addressing on (connection, SQL text); a slot is taken for good (a
 * statement is only ever removed by db_close, which empties the slot and
 * leaves a tombstone).
 *
 * The table is split in stripes by connection, each with its own mutex:
 * a connection is used by one thread at a time, so two threads meet on a
 * mutex only when their connections share a stripe. One mutex for the whole
 * table was taken twice per statement by the writer and every HTTP thread
 * at once (perf under bench/bench_server.py's write load). A stripe's 256
 * slots hold the ~60 statements of up to four connections; a statement
 * that finds its stripe full is prepared and finalized each time. */
#define STMT_STRIPES      32
#define STMT_STRIPE_SLOTS 256
static struct stmt_stripe {
    pthread_mutex_t mutex;
    struct {
        sqlite3 *db; /* NULL: empty; TOMBSTONE: freed */
        uint64_t hash;
        sqlite3_stmt *st;
    } slot[STMT_STRIPE_SLOTS];
} stmt_cache[STMT_STRIPES] = {[0 ... STMT_STRIPES - 1] = {.mutex = PTHREAD_MUTEX_INITIALIZER}};
#define TOMBSTONE ((sqlite3 *)1)

static struct stmt_stripe *stripe_of(sqlite3 *db) {
    const uint64_t h = ((uint64_t)(uintptr_t)db >> 4) * 0x9E3779B97F4A7C15ull;
    return &stmt_cache[h >> 59]; /* the top 5 bits: STMT_STRIPES = 32 */
}

static uint64_t stmt_hash(sqlite3 *db, const char *sql) {
    uint64_t h = 1469598103934665603ull ^ (uint64_t)(uintptr_t)db;
    for (const unsigned char *p = (const unsigned char *)sql; *p; p++)
        h = (h ^ *p) * 1099511628211ull;
    return h;
}

/* The slot of (db, sql) in its stripe, or of where it would go (-1: the
 * stripe is full). */
static int stmt_slot(struct stmt_stripe *c, sqlite3 *db, const char *sql, uint64_t h) {
    int free_slot = -1;
    for (size_t k = 0; k < STMT_STRIPE_SLOTS; k++) {
        size_t i = (h + k) & (STMT_STRIPE_SLOTS - 1);
        if (c->slot[i].db == NULL)
            return free_slot >= 0 ? free_slot : (int)i;
        if (c->slot[i].db == TOMBSTONE) {
            if (free_slot < 0)
                free_slot = (int)i;
        } else if (c->slot[i].db == db && c->slot[i].hash == h &&
                   strcmp(sqlite3_sql(c->slot[i].st), sql) == 0)
            return (int)i;
    }
    return free_slot;
}

sqlite3_stmt *db_cached_prepare(sqlite3 *db, const char *sql) {
    uint64_t h = stmt_hash(db, sql);
    struct stmt_stripe *c = stripe_of(db);
    pthread_mutex_lock(&c->mutex);
    int i = stmt_slot(c, db, sql, h);
    sqlite3_stmt *st = NULL;
    /* A connection is used by one thread at a time; busy means this very
     * statement is still stepping further up the stack: use a fresh one. */
    if (i >= 0 && c->slot[i].db == db && !sqlite3_stmt_busy(c->slot[i].st))
        st = c->slot[i].st;
    bool cache = i >= 0 && c->slot[i].db != db;
    pthread_mutex_unlock(&c->mutex);
    if (st != NULL)
        return st;
    if (sqlite3_prepare_v3(db, sql, -1, cache ? SQLITE_PREPARE_PERSISTENT : 0, &st, NULL) !=
        SQLITE_OK) {
        sqlite3_finalize(st);
        return NULL;
    }
    if (cache) {
        pthread_mutex_lock(&c->mutex);
        i = stmt_slot(c, db, sql, h);
        if (i >= 0 && c->slot[i].db != db)
            c->slot[i].db = db, c->slot[i].hash = h, c->slot[i].st = st;
        pthread_mutex_unlock(&c->mutex);
    }
    return st;
}

void db_cached_done(sqlite3_stmt *st) {
    if (st == NULL)
        return;
    sqlite3 *db = sqlite3_db_handle(st);
    const char *sql = sqlite3_sql(st);
    struct stmt_stripe *c = stripe_of(db);
    pthread_mutex_lock(&c->mutex);
    int i = stmt_slot(c, db, sql, stmt_hash(db, sql));
    bool cached = i >= 0 && c->slot[i].db == db && c->slot[i].st == st;
    pthread_mutex_unlock(&c->mutex);
    if (cached) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    } else
        sqlite3_finalize(st);
}

void db_close(sqlite3 *db) {
    if (db == NULL)
        return;
    struct stmt_stripe *c = stripe_of(db);
    pthread_mutex_lock(&c->mutex);
    for (size_t i = 0; i < STMT_STRIPE_SLOTS; i++)
        if (c->slot[i].db == db) {
            sqlite3_finalize(c->slot[i].st);
            c->slot[i].db = TOMBSTONE, c->slot[i].st = NULL;
        }
    pthread_mutex_unlock(&c->mutex);
    sqlite3_close(db);
}

/* ---- connection pool ----------------------------------------------------- */

int db_pool_init(db_pool *pool, const char *path, int n, char *err, size_t errlen) {
    memset(pool, 0, sizeof *pool);
    pool->conns = calloc((size_t)n, sizeof *pool->conns);
    pool->in_use = calloc((size_t)n, sizeof *pool->in_use);
    if (pool->conns == NULL || pool->in_use == NULL) {
        snprintf(err, errlen, "out of memory");
        free(pool->conns);
        free(pool->in_use);
        return -1;
    }
    pthread_mutex_init(&pool->mutex, NULL);
    pthread_cond_init(&pool->freed, NULL);
    for (pool->n = 0; pool->n < n; pool->n++)
        if (db_open(path, &pool->conns[pool->n], err, errlen) != 0) {
            db_pool_free(pool);
            return -1;
        }
    return 0;
}

sqlite3 *db_pool_acquire(db_pool *pool) {
    pthread_mutex_lock(&pool->mutex);
    for (;;) {
        for (int i = 0; i < pool->n; i++)
            if (!pool->in_use[i]) {
                pool->in_use[i] = 1;
                pthread_mutex_unlock(&pool->mutex);
                return pool->conns[i];
            }
        pthread_cond_wait(&pool->freed, &pool->mutex);
    }
}

void db_pool_release(db_pool *pool, sqlite3 *db) {
    db_rollback(db); /* a handler that bailed out mid-transaction */
    forget_failure(db);
    pthread_mutex_lock(&pool->mutex);
    for (int i = 0; i < pool->n; i++)
        if (pool->conns[i] == db)
            pool->in_use[i] = 0;
    pthread_cond_signal(&pool->freed);
    pthread_mutex_unlock(&pool->mutex);
}

void db_pool_free(db_pool *pool) {
    for (int i = 0; i < pool->n; i++)
        db_close(pool->conns[i]);
    free(pool->conns);
    free(pool->in_use);
    pthread_mutex_destroy(&pool->mutex);
    pthread_cond_destroy(&pool->freed);
    memset(pool, 0, sizeof *pool);
}
