/* db — the SQLite connection settings, migrations and transactions shared by
 * rlhfd and rlhf-train.
 *
 * Durability: WAL with synchronous=FULL. A commit fsyncs the WAL before it
 * returns, so a write rlhfd has acknowledged survives a crash of the process
 * AND of the machine (power loss). synchronous=NORMAL would survive the
 * process being killed but could lose the last commits on power loss, which
 * breaks "every acknowledged write is durable"; we pay one fsync per commit
 * and batch what belongs together (one update's metrics are one commit).
 */
#ifndef RLHF_DB_H
#define RLHF_DB_H

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

/* schema/NNN_name.sql, compiled in by make (build/server/schema_sql.c), in
 * order, terminated by {NULL, NULL}. Migration i (from 0) takes the database
 * from user_version i to i + 1. */
typedef struct db_migration {
    const char *name; /* "001_init.sql" */
    const char *sql;
} db_migration;
extern const db_migration db_migrations[];

/* How long a statement waits for another connection's write lock before it
 * gives up with SQLITE_BUSY. */
#define DB_BUSY_TIMEOUT_MS 10000

/* PRAGMA journal_size_limit of every connection: when a checkpoint has
 * copied the whole WAL back and the next writer starts it over from the
 * top, SQLite truncates the -wal file to this size. Without it the file
 * keeps the size of the largest transaction it ever held (a 62 MB dataset
 * upload left a 287 MB WAL for good). 16 MiB is four times what the 1000-
 * frame checkpoint threshold lets the WAL reach in steady state (4 MiB of
 * 4 KiB pages), so ordinary traffic never pays to regrow the file. */
#define DB_WAL_SIZE_LIMIT_BYTES (16 * 1024 * 1024)

/* Opens (creating if needed) the database at path with WAL, FULL sync,
 * foreign keys, the busy timeout and the WAL size limit. Returns 0, or -1 with err. */
int db_open(const char *path, sqlite3 **out, char *err, size_t errlen);

/* Applies the migrations the database has not seen, in one IMMEDIATE
 * transaction, and sets PRAGMA user_version. Refuses a database newer than
 * the program. Returns 0, or -1 with err. */
int db_migrate(sqlite3 *db, char *err, size_t errlen);

/* The number of compiled-in migrations: the user_version of a current database. */
int db_schema_version(void);

/* BEGIN IMMEDIATE (takes the write lock up front, so a transaction never
 * fails half-way with BUSY on its first write), COMMIT, ROLLBACK. begin and
 * commit return an SQLite result code; commit retries while BUSY. */
int db_begin(sqlite3 *db);
int db_commit(sqlite3 *db);
void db_rollback(sqlite3 *db);

/* Why a database call failed, which decides what the caller answers:
 * DB_FAILURE_NO_SPACE: the disk (or the database's max_page_count) is full
 *   — SQLITE_FULL, or an I/O error whose errno is ENOSPC or EDQUOT. The
 *   same write succeeds once space is freed.
 * DB_FAILURE_IO: another I/O-level failure — SQLITE_IOERR (EIO, ...),
 *   SQLITE_READONLY, SQLITE_CANTOPEN, or the lock still SQLITE_BUSY after
 *   DB_BUSY_TIMEOUT_MS. Nothing is wrong with the request; retry later.
 * DB_FAILURE_OTHER: anything else (a bug, corruption, out of memory).
 * rlhfd answers them 507, 503 and 500 (server/reply.h); rlhf-train exits
 * DB_JOB_EXIT_STORAGE for the first two (common/jobs_db.h). */
typedef enum db_failure {
    DB_FAILURE_NONE, /* the call did not fail */
    DB_FAILURE_NO_SPACE,
    DB_FAILURE_IO,
    DB_FAILURE_OTHER,
} db_failure;

/* An extended result code with the errno SQLite saw (sqlite3_system_errno). */
db_failure db_failure_classify(int extended_rc, int sys_errno);
/* The failure of db's last failed call on this thread: what db_commit or
 * db_rollback found when a transaction failed (the ROLLBACK would
 * otherwise overwrite it; db_begin forgets it), else db's current error.
 * DB_FAILURE_NONE when db has no error to report. */
db_failure db_failure_of(sqlite3 *db);
/* 1 for DB_FAILURE_NO_SPACE and DB_FAILURE_IO: a write that could not be
 * stored for reasons outside the request or the job. */
int db_failure_is_storage(db_failure f);
/* The same for a file operation's errno (the artifact store, temporary
 * files): 1 for ENOSPC, EDQUOT, EIO and EROFS. */
int db_errno_is_storage(int err);

/* One statement, with the error message copied into err. SQLITE_OK or the code. */
int db_exec(sqlite3 *db, const char *sql, char *err, size_t errlen);

/* bytes[0..n) as valid UTF-8 (malloc'd, NUL-terminated): each byte that
 * starts no well-formed sequence, and NUL, becomes U+FFFD. NULL when out
 * of memory. */
char *db_utf8_clean(const char *bytes, size_t n);

/* Inserts one row of job_events in the caller's transaction. level: info |
 * warn | error; type: message | metrics; data: a JSON object or NULL. The
 * message is stored as db_utf8_clean makes it. 0 or -1. */
int db_insert_job_event(sqlite3 *db, int64_t job_id, const char *level, const char *type,
                        const char *code, const char *message, const json_t *data);

/* Makes the current row of st into JSON; scope is what the rows belong to
 * (the job of an event, the id of a loaded row), for the fields the row
 * does not hold. NULL on failure. */
typedef json_t *(*db_row_json)(sqlite3 *db, sqlite3_stmt *st, int64_t scope);

/* The row of sql (which binds ?1 = id) made into JSON by from_row. NULL
 * with *found 0 (no such row) or -1 (error); *found is 1 when the row
 * exists, even if from_row failed. found may be NULL; so may from_row
 * (only *found is wanted). sql must be a literal: it is kept prepared per
 * connection (db_cached_prepare). */
json_t *db_load_row(sqlite3 *db, const char *sql, int64_t id, db_row_json from_row, int *found);
/* 1 if sql (which binds ?1 = id) has a row, 0 if not, -1 on error. */
int db_row_exists(sqlite3 *db, const char *sql, int64_t id);

/* A prepared-statement cache for the hot paths of long-lived connections
 * (rlhfd's pool and group-commit writer): compiling SQL was a third of a
 * ranking write's CPU. db_cached_prepare returns sql prepared on db (reset,
 * no bindings), from the cache when it holds an idle one, else freshly
 * prepared; NULL on error. Give it back with db_cached_done (reset and
 * kept, or finalized if it was not cached), never sqlite3_finalize. A
 * connection that used it must be closed with db_close. */
sqlite3_stmt *db_cached_prepare(sqlite3 *db, const char *sql);
void db_cached_done(sqlite3_stmt *st);
/* Finalizes db's cached statements, then closes it. */
void db_close(sqlite3 *db);

int64_t db_now_ms(void);
int64_t db_now_s(void);

/* A fixed set of connections shared by threads: acquire blocks until one is
 * free. rlhfd's request threads use it; the scheduler has its own. */
typedef struct db_pool {
    pthread_mutex_t mutex;
    pthread_cond_t freed;
    sqlite3 **conns;
    int *in_use;
    int n;
} db_pool;

int db_pool_init(db_pool *pool, const char *path, int n, char *err, size_t errlen);
sqlite3 *db_pool_acquire(db_pool *pool);
void db_pool_release(db_pool *pool, sqlite3 *db);
void db_pool_free(db_pool *pool);

#endif
