/* The rlhfd test harness shared by the api suites (tests/api/) and the unit
 * tests that need a migrated database: a real daemon on an ephemeral
 * loopback port with a fresh database, and a libcurl client. */
#ifndef RLHF_TEST_SERVER_UTIL_H
#define RLHF_TEST_SERVER_UTIL_H

#include <jansson.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Every wait polls with this deadline. */
#define DEADLINE_MS 30000

int64_t now_ms(void); /* monotonic */
void pause_ms(int ms);

typedef struct test_daemon {
    char dir[64];
    char db[128];
    char admin[128]; /* the bootstrap admin token */
    pid_t pid;
    int port;
    bool ipv6; /* listening on [::1] (the http helpers follow) */
} test_daemon;

/* build/NAME */
void bin_path(const char *name, char *out, size_t len);
/* Runs argv to completion; its stdout (first line) into out. Returns the
 * exit code, or -1. */
int run_capture(char *const argv[], char *out, size_t len);
/* run_capture with the program's stderr on ours when keep_stderr (so a
 * failure's reason shows in the test log), else discarded. */
int run_output(char *const argv[], char *out, size_t len, bool keep_stderr);
/* Whether node and tests/npm's package (e.g. "openai") are installed:
 * node's path into node, else what is missing into missing (for
 * test_skip). */
bool find_node_package(const char *package, char *node, size_t len, char *missing,
                       size_t missing_len);
/* A fresh directory and database with an admin token. */
void daemon_init(test_daemon *d);
/* Starts rlhfd on 127.0.0.1:0 with extra flags (NULL-terminated; a later
 * --listen "[::1]:0" wins) and waits for the line that names its port. */
void daemon_start(test_daemon *d, ...);
/* Waits for the daemon to exit; returns its exit code (-signal if killed). */
int daemon_wait(test_daemon *d);
/* SIGTERM, and asserts exit 0. */
void daemon_stop(test_daemon *d);
/* Removes the test's directory; a failed test keeps it (and rlhfd.log). */
void daemon_cleanup(test_daemon *d);

typedef struct http_reply {
    long status;
    json_t *json; /* NULL if the body is not JSON */
    char body[1 << 18];
    size_t body_len;
    char request_id[64];
    char sha256_header[80];
    char content_type[80];
    bool replayed; /* Idempotent-Replayed: true */
    char retry_after[16];
} http_reply;

/* One request; token and body may be NULL; extra_header e.g.
 * "Last-Event-ID: 3" (a "Content-Type: ..." replaces the default
 * application/json). Caller frees with reply_free. */
http_reply *http(const test_daemon *d, const char *method, const char *path, const char *token,
                 const char *body, const char *extra_header);
/* The same with a body of len bytes (may hold anything). */
http_reply *http_bytes(const test_daemon *d, const char *method, const char *path,
                       const char *token, const char *body, size_t len, const char *extra_header);
void reply_free(http_reply *r);

/* Asserts an error reply: status, the OpenAI error shape, code and param
 * (NULL: param must be null). */
void expect_error(http_reply *r, long status, const char *code, const char *param);
void call_expect_error(const test_daemon *d, const char *method, const char *path,
                       const char *token, const char *body, long status, const char *code,
                       const char *param);

/* GET /v1/jobs/{id}, asserting 200 (caller frees). */
http_reply *get_job(const test_daemon *d, int64_t id);
const char *job_status(http_reply *job);
int64_t job_int(http_reply *job, const char *key);
/* Polls until the job has status (and, if attempts > 0, that attempt
 * count); returns the job (caller frees). */
http_reply *wait_job(const test_daemon *d, int64_t id, const char *status, int64_t attempts);
/* Does the job have an event with this code? */
int has_event(const test_daemon *d, int64_t id, const char *code);

/* One integer from the database file (read-only connection); -1 if no row. */
int64_t db_int(const test_daemon *d, const char *sql, int64_t arg);
/* Asserts a 200 (the body in the message) and returns r. */
http_reply *expect_ok(http_reply *r);
/* The reply's "id". */
int64_t reply_id(http_reply *r);
/* POSTs body to path as the token; asserts 200; returns the new id. */
int64_t create(const test_daemon *d, const char *path, const char *token, const char *body);
/* Creates an API token (as the daemon's admin) into out; returns its id. */
int64_t make_token(const test_daemon *d, const char *name, const char *role, char out[128]);
/* Holds the database's write lock at a moment when the job is running and
 * has at least min_checkpoints checkpoints; returns that connection in its
 * open transaction, with the worker's pid. The worker cannot write while the
 * lock is held, so it cannot finish first however fast it trains (no
 * sleeping: whatever the test does now happens mid-run). */
sqlite3 *hold_running_job(const test_daemon *d, int64_t job, int64_t min_checkpoints,
                          pid_t *worker);
/* Ends hold_running_job's transaction and closes its connection. */
void release_job(sqlite3 *db);
/* Runs sql on the daemon's database file (busy timeout 5 s); asserts it worked. */
void exec_sql(const test_daemon *d, const char *sql);
/* d's database with a table t (x): an open connection to it. */
sqlite3 *db_with_table_t(const test_daemon *d);

#endif
