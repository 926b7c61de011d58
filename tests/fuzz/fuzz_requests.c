/* libFuzzer target for rlhfd's request bodies and the JSONL importer
 * (tests/fuzz/README.md).
 *
 * The real request path of server/http.c (routing, auth, body cap and
 * hashing, Idempotency-Key, the handler, group commit through the real
 * writer thread) runs against a SQLite database in /dev/shm, with the few
 * libmicrohttpd functions it calls replaced by the stubs below, so no
 * socket is involved. The scheduler is stubbed too (a created job is only
 * queued; no worker is started).
 *
 * Input: byte 0 picks the route, the rest is the body:
 *   0 POST /v1/tokens            4 POST /v1/comparisons/1/rankings
 *   1 POST /v1/jobs              5 POST /v1/datasets/N/upload, format sft
 *   2 POST /v1/datasets          6 ... format preference
 *   3 POST /v1/projects/1/comparisons   7 ... format prompts
 *   byte 0 = 0xff: POST /v1/projects/1/comparisons/bulk (JSON array or JSONL)
 * Uploads go to a fresh empty dataset each time; comparison 1 (3
 * candidates, ids 1..3) loses its rankings before each input. Everything
 * else accumulates in the database, as it would in a running daemon.
 *
 * Oracles, beyond ASan/UBSan: exactly one response is queued; its status is
 * one a client error or a success may have (never 5xx: a bad body must be
 * refused, not break the database); its body is JSON, and an error body
 * has the {"error":{message,type,param,code}} shape.
 */
#include <jansson.h>
#include <microhttpd.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "auth.h"
#include "db.h"
#include "http.h"
#include "scheduler.h"
#include "server.h"
#include "writer.h"

static void check(int ok) {
    if (!ok)
        __builtin_trap();
}

/* ---- libmicrohttpd stubs ----------------------------------------------------------- */

struct MHD_Response {
    char *data;
    size_t len;
    bool must_free;
};

struct MHD_Connection {
    const char *authorization;
    pthread_mutex_t mutex;
    pthread_cond_t resumed_cond;
    bool suspended, resumed;
    int queued;
    unsigned status;
    char *body;
    size_t body_len;
};

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer,
                                                     enum MHD_ResponseMemoryMode mode) {
    struct MHD_Response *r = calloc(1, sizeof *r);
    r->len = size;
    if (mode == MHD_RESPMEM_MUST_COPY) {
        r->data = malloc(size + 1);
        memcpy(r->data, buffer, size);
        r->must_free = true;
    } else {
        r->data = buffer;
        r->must_free = mode == MHD_RESPMEM_MUST_FREE;
    }
    return r;
}

struct MHD_Response *MHD_create_response_from_callback(uint64_t size, size_t block_size,
                                                       MHD_ContentReaderCallback crc, void *crc_cls,
                                                       MHD_ContentReaderFreeCallback crfc) {
    (void)size, (void)block_size, (void)crc;
    if (crfc)
        crfc(crc_cls);
    return calloc(1, sizeof(struct MHD_Response));
}

struct MHD_Response *MHD_create_response_from_fd(size_t size, int fd) {
    (void)size;
    close(fd);
    return calloc(1, sizeof(struct MHD_Response));
}

/* No connection info and no header list: conn_guard leaves the request
 * unguarded and the strict header scan has nothing to scan (both are
 * tested over a real socket in the hostile suite). */
const union MHD_ConnectionInfo *MHD_get_connection_info(struct MHD_Connection *c,
                                                        enum MHD_ConnectionInfoType type, ...) {
    (void)c, (void)type;
    return NULL;
}

int MHD_get_connection_values_n(struct MHD_Connection *c, enum MHD_ValueKind kind,
                                MHD_KeyValueIteratorN iterator, void *iterator_cls) {
    (void)c, (void)kind, (void)iterator, (void)iterator_cls;
    return 0;
}

struct MHD_Response *MHD_create_response_from_fd64(uint64_t size, int fd) {
    (void)size;
    close(fd);
    return calloc(1, sizeof(struct MHD_Response));
}

enum MHD_Result MHD_add_response_header(struct MHD_Response *response, const char *header,
                                        const char *content) {
    (void)response, (void)header, (void)content;
    return MHD_YES;
}

void MHD_destroy_response(struct MHD_Response *r) {
    if (r->must_free)
        free(r->data);
    free(r);
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *c, unsigned int status,
                                   struct MHD_Response *r) {
    c->queued++;
    c->status = status;
    free(c->body);
    c->body = malloc(r->len + 1);
    memcpy(c->body, r->data, r->len);
    c->body[r->len] = '\0';
    c->body_len = r->len;
    return MHD_YES;
}

const char *MHD_lookup_connection_value(struct MHD_Connection *c, enum MHD_ValueKind kind,
                                        const char *key) {
    (void)kind;
    return strcmp(key, "Authorization") == 0 ? c->authorization : NULL;
}

/* POST /v1/files parses its multipart body with libmicrohttpd's post
 * processor; no request here has a multipart Content-Type (the lookup above
 * gives none), so the route answers 400 before it would make one. */
struct MHD_PostProcessor *MHD_create_post_processor(struct MHD_Connection *c, size_t buffer_size,
                                                    MHD_PostDataIterator iter, void *iter_cls) {
    (void)c, (void)buffer_size, (void)iter, (void)iter_cls;
    return NULL;
}

enum MHD_Result MHD_post_process(struct MHD_PostProcessor *pp, const char *data, size_t size) {
    (void)pp, (void)data, (void)size;
    return MHD_NO;
}

enum MHD_Result MHD_destroy_post_processor(struct MHD_PostProcessor *pp) {
    (void)pp;
    return MHD_NO;
}

void MHD_suspend_connection(struct MHD_Connection *c) {
    pthread_mutex_lock(&c->mutex);
    c->suspended = true;
    pthread_mutex_unlock(&c->mutex);
}

void MHD_resume_connection(struct MHD_Connection *c) {
    pthread_mutex_lock(&c->mutex);
    c->resumed = true;
    pthread_cond_signal(&c->resumed_cond);
    pthread_mutex_unlock(&c->mutex);
}

/* ---- scheduler stubs ----------------------------------------------------------------- */

void scheduler_wake(scheduler *s) {
    (void)s;
}

int scheduler_running(scheduler *s) {
    (void)s;
    return 0;
}

/* ---- the harness ------------------------------------------------------------------------ */

static server srv;
static char authorization[128];
static int64_t next_upload;

static void exec_or_die(sqlite3 *db, const char *sql) {
    char err[256];
    if (db_exec(db, sql, err, sizeof err) != SQLITE_OK) {
        fprintf(stderr, "fuzz_requests: %s: %s\n", sql, err);
        abort();
    }
}

static void setup(void) {
    char path[64], err[256];
    snprintf(path, sizeof path, "/dev/shm/fuzz-requests-%d.db", (int)getpid());
    unlink(path);
    snprintf(srv.cfg.db_path, sizeof srv.cfg.db_path, "%s", path);
    srv.cfg.max_body_bytes = 1 << 20;
    srv.cfg.max_upload_bytes = 1 << 24;
    srv.cfg.max_attempts = 3;
    sqlite3 *db;
    if (db_open(path, &db, err, sizeof err) != 0 || db_migrate(db, err, sizeof err) != 0) {
        fprintf(stderr, "fuzz_requests: %s\n", err);
        abort();
    }
    char token[AUTH_TOKEN_BYTES];
    check(auth_token_create(db, "root", AUTH_ROLE_ADMIN, token, err, sizeof err) == 1);
    snprintf(authorization, sizeof authorization, "Bearer %s", token);
    exec_or_die(db, "PRAGMA synchronous=OFF"); /* /dev/shm: nothing to sync */
    exec_or_die(db, "INSERT INTO projects (id, name, k, overlap, created_at) VALUES "
                    "(1, 'p', 3, 2, 0); INSERT INTO comparisons (id, project_id, prompt, "
                    "created_at) VALUES (1, 1, 'q', 0); INSERT INTO candidates (id, "
                    "comparison_id, position, text, source) VALUES (1, 1, 0, 'a', 'provided'), "
                    "(2, 1, 1, 'b', 'provided'), (3, 1, 2, 'c', 'provided')");
    sqlite3_close(db);
    check(db_pool_init(&srv.pool, path, 1, err, sizeof err) == 0);
    check((srv.writer = writer_start(path, err, sizeof err)) != NULL);
    srv.rate_limiter = NULL; /* unlimited */
}

/* Drives one request through http_handle like MHD does. */
static void run_request(const char *url, const char *body, size_t len) {
    struct MHD_Connection c = {.authorization = authorization};
    pthread_mutex_init(&c.mutex, NULL);
    pthread_cond_init(&c.resumed_cond, NULL);
    void *con_cls = http_request_start(&srv, url, &c); /* MHD's URI log callback */
    size_t zero = 0;
    enum MHD_Result ret = http_handle(&srv, &c, url, "POST", "HTTP/1.1", NULL, &zero, &con_cls);
    if (ret == MHD_YES && c.queued == 0) {
        /* the body in pieces, as a socket would deliver it */
        for (size_t off = 0; off < len && ret == MHD_YES;) {
            size_t n = len - off < 700 ? len - off : 700, left = n;
            ret = http_handle(&srv, &c, url, "POST", "HTTP/1.1", body + off, &left, &con_cls);
            check(left == 0);
            off += n;
        }
        zero = 0;
        if (ret == MHD_YES)
            ret = http_handle(&srv, &c, url, "POST", "HTTP/1.1", NULL, &zero, &con_cls);
        if (c.suspended) { /* group commit: wait for the writer, then flush */
            pthread_mutex_lock(&c.mutex);
            while (!c.resumed)
                pthread_cond_wait(&c.resumed_cond, &c.mutex);
            pthread_mutex_unlock(&c.mutex);
            zero = 0;
            ret = http_handle(&srv, &c, url, "POST", "HTTP/1.1", NULL, &zero, &con_cls);
        }
    }
    check(ret == MHD_YES);
    check(c.queued == 1);
    http_completed(&srv, &c, &con_cls, MHD_REQUEST_TERMINATED_COMPLETED_OK);
    check(c.status == 200 || (c.status >= 400 && c.status < 500 && c.status != 401 &&
                              c.status != 403 && c.status != 405));
    json_t *reply = json_loadb(c.body, c.body_len, 0, NULL);
    check(reply != NULL);
    if (c.status != 200) {
        json_t *err = json_object_get(reply, "error");
        check(json_is_string(json_object_get(err, "message")) &&
              json_is_string(json_object_get(err, "type")) &&
              json_is_string(json_object_get(err, "code")) &&
              json_object_get(err, "param") != NULL);
    }
    json_decref(reply);
    free(c.body);
    pthread_mutex_destroy(&c.mutex);
    pthread_cond_destroy(&c.resumed_cond);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bool ready;
    if (!ready) {
        setup();
        ready = true;
    }
    if (size < 1)
        return 0;
    static const char *const formats[] = {"sft", "preference", "prompts"};
    char url[96];
    sqlite3 *db = db_pool_acquire(&srv.pool);
    switch (data[0] == 0xff ? 8 : data[0] % 8) {
        case 8:
            snprintf(url, sizeof url, "/v1/projects/1/comparisons/bulk");
            break;
        case 0:
            snprintf(url, sizeof url, "/v1/tokens");
            break;
        case 1:
            snprintf(url, sizeof url, "/v1/jobs");
            break;
        case 2:
            snprintf(url, sizeof url, "/v1/datasets");
            break;
        case 3:
            snprintf(url, sizeof url, "/v1/projects/1/comparisons");
            break;
        case 4:
            snprintf(url, sizeof url, "/v1/comparisons/1/rankings");
            exec_or_die(db, "DELETE FROM rankings WHERE comparison_id = 1");
            break;
        default: {
            char sql[160];
            snprintf(sql, sizeof sql,
                     "INSERT INTO datasets (name, format, n_rows, created_at) VALUES "
                     "('fuzz upload %lld', '%s', 0, 0)",
                     (long long)next_upload++, formats[data[0] % 8 - 5]);
            exec_or_die(db, sql);
            snprintf(url, sizeof url, "/v1/datasets/%lld/upload",
                     (long long)sqlite3_last_insert_rowid(db));
        }
    }
    db_pool_release(&srv.pool, db);
    run_request(url, (const char *)data + 1, size - 1);
    return 0;
}
