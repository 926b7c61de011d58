/* The rlhfd test harness: see test_server_util.h. */
#include "test_server_util.h"

#include <check.h>
#include <curl/curl.h>
#include <fcntl.h>
#include <ftw.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "openapi_check.h"
#include "test_util.h"

int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void pause_ms(int ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- a daemon under test ------------------------------------------------------ */

void bin_path(const char *name, char *out, size_t len) {
    snprintf(out, len, "%s/%s", test_build_dir(), name);
}

/* Runs argv to completion; its stdout (first line) into out. Returns the
 * exit code, or -1. */
int run_capture(char *const argv[], char *out, size_t len) {
    return run_output(argv, out, len, false);
}

int run_output(char *const argv[], char *out, size_t len, bool keep_stderr) {
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    pid_t pid = fork();
    if (pid == 0) {
        dup2(fds[1], 1);
        int null = open("/dev/null", O_WRONLY);
        if (!keep_stderr)
            dup2(null, 2); /* the usage texts of the failure cases */
        close(fds[0]);
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    size_t used = 0;
    ssize_t n;
    while (used + 1 < len && (n = read(fds[0], out + used, len - 1 - used)) > 0)
        used += (size_t)n;
    /* Drain the rest to EOF: closing early would kill a long writer
     * (--help) with SIGPIPE before it exits. */
    char rest[4096];
    while (read(fds[0], rest, sizeof rest) > 0)
        ;
    out[used] = '\0';
    out[strcspn(out, "\n")] = '\0';
    close(fds[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* A fresh directory and database with an admin token. */
void daemon_init(test_daemon *d) {
    memset(d, 0, sizeof *d);
    snprintf(d->dir, sizeof d->dir, "/tmp/rlhfd-test-XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(d->dir));
    snprintf(d->db, sizeof d->db, "%s/rlhfd.db", d->dir);
    char rlhfd[4096];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    char *argv[] = {rlhfd, "--db", d->db, "--create-token", "root", "--role", "admin", NULL};
    ck_assert_int_eq(run_capture(argv, d->admin, sizeof d->admin), 0);
    ck_assert_msg(strncmp(d->admin, "rlhfd_", 6) == 0, "token '%s'", d->admin);
}

/* Starts rlhfd on 127.0.0.1:0 with extra flags (NULL-terminated) and waits
 * for the line that names its port. */
void daemon_start(test_daemon *d, ...) {
    char rlhfd[4096];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    char *argv[40] = {
        rlhfd,        "--db", d->db,           "--listen", "127.0.0.1:0",         "--workers", "1",
        "--lease-ms", "1000", "--sse-poll-ms", "20",       "--shutdown-grace-ms", "20000"};
    int argc = 13;
    va_list ap;
    va_start(ap, d);
    for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 39;)
        argv[argc++] = a;
    va_end(ap);
    argv[argc] = NULL;
    int fds[2];
    ck_assert_int_eq(pipe(fds), 0);
    d->pid = fork();
    if (d->pid == 0) {
        char log[160];
        snprintf(log, sizeof log, "%s/rlhfd.log", d->dir); /* rlhfd's and workers' stderr */
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        dup2(fds[1], 1);
        dup2(fd, 2);
        close(fds[0]);
        prctl(PR_SET_PDEATHSIG, SIGKILL); /* a failed test does not leave it running */
        execv(argv[0], argv);
        _exit(127);
    }
    close(fds[1]);
    char line[256] = "";
    size_t used = 0;
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (strchr(line, '\n') == NULL && now_ms() < deadline) {
        struct pollfd p = {.fd = fds[0], .events = POLLIN};
        if (poll(&p, 1, 100) > 0) {
            ssize_t n = read(fds[0], line + used, sizeof line - 1 - used);
            if (n <= 0)
                break;
            used += (size_t)n;
            line[used] = '\0';
        }
    }
    close(fds[0]); /* rlhfd ignores SIGPIPE and prints nothing more */
    const char *at = strstr(line, "127.0.0.1:");
    const char *at6 = strstr(line, "[::1]:");
    d->ipv6 = at == NULL && at6 != NULL;
    if (at == NULL && at6 == NULL) {
        /* Say why: the end of its log, and whether it exited or hung. */
        char log[160], tail[1024] = "";
        snprintf(log, sizeof log, "%s/rlhfd.log", d->dir);
        FILE *f = fopen(log, "r");
        if (f != NULL) {
            fseek(f, 0, SEEK_END);
            long size = ftell(f);
            fseek(f, size > (long)sizeof tail - 1 ? size - (long)sizeof tail + 1 : 0, SEEK_SET);
            tail[fread(tail, 1, sizeof tail - 1, f)] = '\0';
            fclose(f);
        }
        int status = 0;
        const pid_t gone = waitpid(d->pid, &status, WNOHANG);
        ck_abort_msg("rlhfd did not start (%s; waited up to %lld ms): stdout '%s'; its log ends: %s",
                     gone == d->pid ? "exited" : "still running", (long long)DEADLINE_MS, line,
                     tail);
    }
    d->port = d->ipv6 ? atoi(at6 + 6) : atoi(at + 10);
    ck_assert_int_gt(d->port, 0);
}

/* Waits for the daemon to exit; returns its exit code (-signal if killed). */
int daemon_wait(test_daemon *d) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    int status = 0;
    while (waitpid(d->pid, &status, WNOHANG) == 0) {
        ck_assert_msg(now_ms() < deadline, "rlhfd did not exit");
        pause_ms(10);
    }
    d->pid = 0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

void daemon_stop(test_daemon *d) {
    kill(d->pid, SIGTERM);
    ck_assert_int_eq(daemon_wait(d), 0);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes the test's directory; a failed test keeps it (and rlhfd.log). */
void daemon_cleanup(test_daemon *d) {
    nftw(d->dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* name's path in $PATH into out: 1, or 0 when it is not there. */
static int find_program(const char *name, char *out, size_t len) {
    const char *path = getenv("PATH");
    for (const char *p = path ? path : "/usr/bin:/bin"; *p;) {
        size_t n = strcspn(p, ":");
        snprintf(out, len, "%.*s/%s", (int)n, p, name);
        if (n > 0 && access(out, X_OK) == 0)
            return 1;
        p += n + (p[n] == ':');
    }
    return 0;
}

bool find_node_package(const char *package, char *node, size_t len, char *missing,
                       size_t missing_len) {
    char module[4096];
    snprintf(module, sizeof module, "%s/tests/npm/node_modules/%s/package.json", test_repo_dir(),
             package);
    if (!find_program("node", node, len)) {
        snprintf(missing, missing_len, "node is not installed (make browser-deps installs it)");
        return false;
    }
    if (access(module, R_OK) != 0) {
        snprintf(missing, missing_len,
                 "no %s (make hf-tokenizer-reference runs npm ci in tests/npm)", module);
        return false;
    }
    return true;
}

/* ---- HTTP ------------------------------------------------------------------------- */

static size_t on_body(char *data, size_t size, size_t n, void *arg) {
    http_reply *r = arg;
    size_t len = size * n;
    size_t take = len < sizeof r->body - 1 - r->body_len ? len : sizeof r->body - 1 - r->body_len;
    memcpy(r->body + r->body_len, data, take);
    r->body_len += take;
    r->body[r->body_len] = '\0';
    return len;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg) {
    http_reply *r = arg;
    size_t len = size * n;
    if (len > 14 && strncasecmp(data, "x-request-id: ", 14) == 0)
        snprintf(r->request_id, sizeof r->request_id, "%.*s", (int)strcspn(data + 14, "\r\n"),
                 data + 14);
    if (len > 21 && strncasecmp(data, "x-checkpoint-sha256: ", 21) == 0)
        snprintf(r->sha256_header, sizeof r->sha256_header, "%.*s", (int)strcspn(data + 21, "\r\n"),
                 data + 21);
    if (len > 22 && strncasecmp(data, "Idempotent-Replayed: ", 21) == 0)
        r->replayed = strncmp(data + 21, "true", 4) == 0;
    if (len > 13 && strncasecmp(data, "Retry-After: ", 13) == 0)
        snprintf(r->retry_after, sizeof r->retry_after, "%.*s", (int)strcspn(data + 13, "\r\n"),
                 data + 13);
    if (len > 14 && strncasecmp(data, "Content-Type: ", 14) == 0)
        snprintf(r->content_type, sizeof r->content_type, "%.*s", (int)strcspn(data + 14, "\r\n"),
                 data + 14);
    return len;
}

/* One request; token and body may be NULL; extra_header e.g. "Last-Event-ID: 3". */
http_reply *http_bytes(const test_daemon *d, const char *method, const char *path,
                       const char *token, const char *body, size_t len, const char *extra_header) {
    static int curl_ready;
    if (!curl_ready)
        curl_global_init(CURL_GLOBAL_DEFAULT), curl_ready = 1;
    http_reply *r = calloc(1, sizeof *r);
    CURL *c = curl_easy_init();
    char url[512], auth[256];
    snprintf(url, sizeof url, "http://%s:%d%s", d->ipv6 ? "[::1]" : "127.0.0.1", d->port, path);
    struct curl_slist *headers = NULL;
    if (token) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
        headers = curl_slist_append(headers, auth);
    }
    if (extra_header)
        headers = curl_slist_append(headers, extra_header);
    if (body && (extra_header == NULL || strncasecmp(extra_header, "Content-Type:", 13) != 0))
        headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    }
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
    CURLcode rc = curl_easy_perform(c);
    ck_assert_msg(rc == CURLE_OK, "%s %s: %s", method, path, curl_easy_strerror(rc));
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    r->json = json_loadb(r->body, r->body_len, 0, NULL);
    ck_assert_msg(r->request_id[0] != '\0', "%s %s: no x-request-id", method, path);
    char why[2048];
    ck_assert_msg(openapi_reply_ok(openapi_doc(), method, path, r->status, r->content_type, r->body,
                                   r->body_len, r->json, r->body_len == sizeof r->body - 1, why,
                                   sizeof why),
                  "%s", why);
    return r;
}

http_reply *http(const test_daemon *d, const char *method, const char *path, const char *token,
                 const char *body, const char *extra_header) {
    return http_bytes(d, method, path, token, body, body ? strlen(body) : 0, extra_header);
}

void reply_free(http_reply *r) {
    json_decref(r->json);
    free(r);
}

/* Asserts an error reply: status, the OpenAI error shape, code and param
 * (NULL: param must be null). */
void expect_error(http_reply *r, long status, const char *code, const char *param) {
    ck_assert_msg(r->status == status, "status %ld, want %ld: %s", r->status, status, r->body);
    json_t *err = json_object_get(r->json, "error");
    ck_assert_msg(json_is_object(err), "no error object: %s", r->body);
    ck_assert(json_is_string(json_object_get(err, "message")));
    ck_assert(json_is_string(json_object_get(err, "type")));
    ck_assert_msg(json_object_get(err, "param") != NULL, "param missing: %s", r->body);
    ck_assert_str_eq(json_string_value(json_object_get(err, "code")), code);
    if (param)
        ck_assert_msg(json_is_string(json_object_get(err, "param")) &&
                          strcmp(json_string_value(json_object_get(err, "param")), param) == 0,
                      "param: %s, want %s", r->body, param);
    else
        ck_assert_msg(json_is_null(json_object_get(err, "param")), "param not null: %s", r->body);
}

void call_expect_error(const test_daemon *d, const char *method, const char *path,
                       const char *token, const char *body, long status, const char *code,
                       const char *param) {
    http_reply *r = http(d, method, path, token, body, NULL);
    expect_error(r, status, code, param);
    reply_free(r);
}

/* One integer from the database file (read-only connection). */
int64_t db_int(const test_daemon *d, const char *sql, int64_t arg) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, arg);
    int64_t v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* ---- jobs ------------------------------------------------------------------------- */

/* GET /v1/jobs/{id} (caller frees). */
http_reply *get_job(const test_daemon *d, int64_t id) {
    char path[64];
    snprintf(path, sizeof path, "/v1/jobs/%lld", (long long)id);
    http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    return r;
}

const char *job_status(http_reply *job) {
    return json_string_value(json_object_get(job->json, "status"));
}

int64_t job_int(http_reply *job, const char *key) {
    return json_integer_value(json_object_get(job->json, key));
}

/* Polls until the job has status (and, if attempts > 0, that attempt
 * count); returns the job. */
http_reply *wait_job(const test_daemon *d, int64_t id, const char *status, int64_t attempts) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *job = get_job(d, id);
        if (strcmp(job_status(job), status) == 0 &&
            (attempts == 0 || job_int(job, "attempts") == attempts))
            return job;
        ck_assert_msg(now_ms() < deadline, "job %lld never reached %s: %s", (long long)id, status,
                      job->body);
        reply_free(job);
        pause_ms(20);
    }
}

/* Does the job have an event with this code? */
int has_event(const test_daemon *d, int64_t id, const char *code) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=1000", (long long)id);
    http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
    size_t i;
    json_t *e;
    int found = 0;
    json_array_foreach(json_object_get(r->json, "data"), i, e) found |=
        strcmp(json_string_value(json_object_get(e, "code")), code) == 0;
    reply_free(r);
    return found;
}

http_reply *expect_ok(http_reply *r) {
    ck_assert_msg(r->status == 200, "status %ld: %s", r->status, r->body);
    return r;
}

int64_t reply_id(http_reply *r) {
    return json_integer_value(json_object_get(r->json, "id"));
}

int64_t create(const test_daemon *d, const char *path, const char *token, const char *body) {
    http_reply *r = expect_ok(http(d, "POST", path, token, body, NULL));
    int64_t id = reply_id(r);
    ck_assert_int_gt(id, 0);
    reply_free(r);
    return id;
}

int64_t make_token(const test_daemon *d, const char *name, const char *role, char out[128]) {
    char body[128];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"role\":\"%s\"}", name, role);
    http_reply *r = expect_ok(http(d, "POST", "/v1/tokens", d->admin, body, NULL));
    snprintf(out, 128, "%s", json_string_value(json_object_get(r->json, "token")));
    const int64_t id = reply_id(r);
    reply_free(r);
    return id;
}

void exec_sql(const test_daemon *d, const char *sql) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(d->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *err = NULL;
    ck_assert_msg(sqlite3_exec(db, sql, NULL, NULL, &err) == SQLITE_OK, "%s", err);
    sqlite3_close(db);
}

/* A busy handler that keeps trying every 100 µs for 10 s. SQLite's own
 * (sqlite3_busy_timeout) backs off to 100 ms sleeps, and a tiny job can run
 * to its end while the poller sleeps; this one takes the lock in the first
 * gap between two of the worker's commits. */
static int retry_every_100us(void *arg, int n_tries) {
    (void)arg;
    struct timespec ts = {0, 100000};
    nanosleep(&ts, NULL);
    return n_tries < 100000;
}

/* Holds the database's write lock at a moment when the job is running and
 * has at least min_checkpoints checkpoints; returns that connection in its
 * open transaction, with the worker's pid. The worker cannot write while
 * the lock is held, so it cannot finish first however fast it trains. */
sqlite3 *hold_running_job(const test_daemon *d, int64_t job, int64_t min_checkpoints,
                          pid_t *worker) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(d->db, &db), SQLITE_OK);
    sqlite3_busy_handler(db, retry_every_100us, NULL);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "SELECT status, worker_pid, (SELECT count(*) FROM "
                                        "checkpoints WHERE job_id = ?1) FROM jobs WHERE id = ?1",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_int64(st, 1, job);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        char status[32];
        snprintf(status, sizeof status, "%s", (const char *)sqlite3_column_text(st, 0));
        *worker = (pid_t)sqlite3_column_int64(st, 1);
        const int64_t checkpoints = sqlite3_column_int64(st, 2);
        sqlite3_reset(st);
        if (strcmp(status, "running") == 0 && checkpoints >= min_checkpoints) {
            sqlite3_finalize(st);
            return db;
        }
        ck_assert_msg(strcmp(status, "queued") == 0 || strcmp(status, "validating_files") == 0 ||
                          strcmp(status, "running") == 0,
                      "job %lld ended (%s) before it could be interrupted", (long long)job, status);
        ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        ck_assert_msg(now_ms() < deadline, "job %lld never ran with enough checkpoints",
                      (long long)job);
        pause_ms(2);
    }
}

void release_job(sqlite3 *db) {
    ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
}

/* d's database with a table t (x): an open connection to it. */
sqlite3 *db_with_table_t(const test_daemon *d) {
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d->db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db, "CREATE TABLE t (x)", err, sizeof err), SQLITE_OK);
    return db;
}
