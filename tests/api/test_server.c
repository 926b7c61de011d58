/* rlhfd end to end: a real daemon on an ephemeral loopback port with a fresh
 * SQLite file, spoken to over HTTP with libcurl, with real rlhf-train
 * workers. Nothing sleeps to wait for something that can be awaited: every
 * wait polls with a bounded deadline.
 *
 * Workers get a 1 s lease (heartbeat every 250 ms) so lease expiry and
 * crash recovery are observable in a second or two.
 */
#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ftw.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "db.h"
#include "db_job.h"
#include "db_sink.h"
#include "jobs.h"
#include "jobs_db.h"
#include "sha256.h"
#include "writer.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

/* Minutes of training: long enough to be cancelled or killed mid-way, short
 * enough that a worker orphaned by a failed test ends by itself. */
#define LONG_JOB  "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":5000000}}"
#define SHORT_JOB "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":2048}}"

static int64_t create_job(const test_daemon *d, const char *body) {
    http_reply *r = http(d, "POST", "/v1/jobs", d->admin, body, NULL);
    ck_assert_msg(r->status == 200, "create job: %ld %s", r->status, r->body);
    int64_t id = json_integer_value(json_object_get(r->json, "id"));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "queued");
    reply_free(r);
    return id;
}

/* Polls until the job has at least one metrics row. */
static void wait_metrics(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?limit=1", (long long)id);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *r = http(d, "GET", path, d->admin, NULL, NULL);
        size_t n = json_array_size(json_object_get(r->json, "data"));
        reply_free(r);
        if (n > 0)
            return;
        ck_assert_msg(now_ms() < deadline, "job %lld wrote no metrics", (long long)id);
        pause_ms(20);
    }
}

/* A job created from body, awaited until it runs and has reported metrics:
 * a worker is mid-training when this returns. */
static int64_t start_running_job(const test_daemon *d, const char *body) {
    const int64_t id = create_job(d, body);
    reply_free(wait_job(d, id, "running", 1));
    wait_metrics(d, id);
    return id;
}

/* POST /v1/jobs/{id}/cancel; returns the reply (caller frees). */
static http_reply *cancel_job(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)id);
    return http(d, "POST", path, d->admin, NULL, NULL);
}

static void wait_pid_gone(pid_t pid) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (kill(pid, 0) == 0) {
        ck_assert_msg(now_ms() < deadline, "pid %d did not exit", (int)pid);
        pause_ms(20);
    }
}

/* ---- schema and hashing (no daemon) -------------------------------------------- */

START_TEST(test_schema_migrations) {
    test_daemon d;
    daemon_init(&d); /* rlhfd --create-token migrated the file */
    ck_assert_int_eq(db_int(&d, "PRAGMA user_version", 0), db_schema_version());
    ck_assert_int_ge(db_schema_version(), 1);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    /* Applying again changes nothing; WAL and foreign keys are on. */
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    ck_assert_int_eq(db_int(&d, "PRAGMA user_version", 0), db_schema_version());
    ck_assert_str_eq(sqlite3_db_filename(db, "main"), d.db);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM api_tokens", 0), 1);
    ck_assert_int_ne(db_exec(db,
                             "INSERT INTO job_events (job_id, created_at, level, type, code, "
                             "message) VALUES (12345, 0, 'info', 'message', 'x', 'y')",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_msg(strstr(err, "FOREIGN KEY") != NULL, "%s", err);
    /* A database from a newer program is refused, not downgraded. */
    ck_assert_int_eq(db_exec(db, "PRAGMA user_version=99", err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "99") != NULL, "%s", err);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* Schema 007's rank counts: backfilled from the rankings a database
 * already had, then kept by triggers (insert, skip, delete, update). */
START_TEST(test_rank_count_migration) {
    char dir[] = "/tmp/rlhfd-rankcount-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[64], err[256];
    snprintf(path, sizeof path, "%s/old.db", dir);
    sqlite3 *db;
    ck_assert_int_eq(db_open(path, &db, err, sizeof err), 0);
    int m = 0;
    while (db_migrations[m].name && strstr(db_migrations[m].name, "comparison_rank_counts") == NULL)
        ck_assert_int_eq(db_exec(db, db_migrations[m++].sql, err, sizeof err), SQLITE_OK);
    ck_assert_ptr_nonnull(db_migrations[m].name);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "PRAGMA user_version=%d; INSERT INTO api_tokens VALUES (1, 'a', 'annotator', "
             "'%064d', 0, NULL), (2, 'b', 'annotator', '%064d', 0, NULL); INSERT INTO projects "
             "VALUES (1, 'p', 2, 3, 0); INSERT INTO comparisons VALUES (1, 1, 'x', 0), (2, 1, "
             "'y', 0), (3, 1, 'z', 0); INSERT INTO rankings (comparison_id, token_id, skipped, "
             "created_at) VALUES (1, 1, 0, 0), (1, 2, 0, 0), (2, 1, 1, 0), (2, 2, 0, 0)",
             m, 1, 2);
    ck_assert_int_eq(db_exec(db, sql, err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    sqlite3_stmt *st;
    const char *counts = "SELECT group_concat(n_ranked, ',') FROM (SELECT n_ranked FROM "
                         "comparisons ORDER BY id)";
    ck_assert_int_eq(sqlite3_prepare_v2(db, counts, -1, &st, NULL), SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "2,1,0"); /* a skip is no rank */
    sqlite3_reset(st);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO rankings (comparison_id, token_id, skipped, "
                             "created_at) VALUES (3, 1, 0, 0), (3, 2, 1, 0); UPDATE rankings "
                             "SET skipped = 0 WHERE comparison_id = 2 AND token_id = 1; DELETE "
                             "FROM rankings WHERE comparison_id = 1 AND token_id = 2",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
    ck_assert_str_eq((const char *)sqlite3_column_text(st, 0), "1,2,1");
    sqlite3_finalize(st);
    sqlite3_close(db);
    snprintf(sql, sizeof sql, "rm -rf %s", dir);
    ck_assert_int_eq(system(sql), 0);
}
END_TEST

START_TEST(test_sha256_vectors) {
    /* FIPS 180-4 examples (NIST CSRC), plus a multi-block input. */
    char hex[65];
    sha256_hex("", 0, hex);
    ck_assert_str_eq(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    sha256_hex("abc", 3, hex);
    ck_assert_str_eq(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    ck_assert_str_eq(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    char *million = malloc(1000000);
    memset(million, 'a', 1000000);
    sha256_hex(million, 1000000, hex);
    free(million);
    ck_assert_str_eq(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}
END_TEST

/* ---- the HTTP surface ------------------------------------------------------------ */

START_TEST(test_health_and_request_errors) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--max-body-bytes", "2048", NULL);
    http_reply *r = http(&d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "status")), "ok");
    char first_id[64];
    snprintf(first_id, sizeof first_id, "%s", r->request_id);
    reply_free(r);
    r = http(&d, "GET", "/readyz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "schema_version")),
                     db_schema_version());
    ck_assert_str_ne(r->request_id, first_id); /* ids are per request */
    reply_free(r);

    call_expect_error(&d, "GET", "/v1/nothing", d.admin, NULL, 404, "unknown_route", NULL);
    call_expect_error(&d, "DELETE", "/v1/jobs", d.admin, NULL, 405, "method_not_allowed", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", NULL, NULL, 401, "missing_api_key", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", "rlhfd_forged", NULL, 401, "invalid_api_key", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":", 400, "invalid_json", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "[1,2]", 400, "invalid_json", NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"a\":1,\"a\":2}", 400, "invalid_json",
                      NULL);
    /* jansson's message quotes the text near the error, here the middle of
     * a two-byte character (found by the request fuzzer): the reply is
     * still a JSON error */
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"a\\u0\xd0\x94\x39\"}", 400,
                      "invalid_json", NULL);
    char big[4096];
    memset(big, ' ', sizeof big - 1);
    big[0] = '{', big[sizeof big - 2] = '}', big[sizeof big - 1] = '\0';
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, big, 413, "body_too_large", NULL);
    /* the connection is still usable afterwards */
    r = http(&d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_tokens_and_roles) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char viewer[128], annotator[128];
    const char *names[] = {"vera", "anna"};
    const char *roles[] = {"viewer", "annotator"};
    char *out[] = {viewer, annotator};
    for (int i = 0; i < 2; i++) {
        char body[128];
        snprintf(body, sizeof body, "{\"name\":\"%s\",\"role\":\"%s\"}", names[i], roles[i]);
        http_reply *r = http(&d, "POST", "/v1/tokens", d.admin, body, NULL);
        ck_assert_msg(r->status == 200, "%s", r->body);
        snprintf(out[i], 128, "%s", json_string_value(json_object_get(r->json, "token")));
        reply_free(r);
    }
    /* Only hashes are stored. */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM api_tokens WHERE token_sha256 LIKE "
                            "'rlhfd_%'",
                            0),
                     0);
    http_reply *r = http(&d, "GET", "/v1/jobs", viewer, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    call_expect_error(&d, "POST", "/v1/jobs", viewer, SHORT_JOB, 403, "insufficient_role", NULL);
    call_expect_error(&d, "GET", "/v1/jobs", annotator, NULL, 403, "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/tokens", viewer, "{\"name\":\"x\",\"role\":\"admin\"}", 403,
                      "insufficient_role", NULL);
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"vera\",\"role\":\"viewer\"}",
                      409, "name_taken", "name");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"name\":\"z\",\"role\":\"root\"}", 400,
                      "invalid_value", "role");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin, "{\"role\":\"viewer\"}", 400,
                      "invalid_value", "name");
    call_expect_error(&d, "POST", "/v1/tokens", d.admin,
                      "{\"name\":\"q\",\"role\":\"viewer\",\"admin\":true}", 400,
                      "unknown_parameter", "admin");
    /* The list shows names and roles, never secrets. */
    r = http(&d, "GET", "/v1/tokens", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 3);
    ck_assert_ptr_null(strstr(r->body, "rlhfd_"));
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_job_validation) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{}", 400, "missing_required_parameter",
                      "type");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":7}", 400, "invalid_type", "type");
    /* Every type that trains on data needs its dataset
     * (tests/test_server_data.c and test_server_rlhf.c cover the rest). */
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"reward\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"sft\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"dance\"}", 400,
                      "unknown_job_type", "type");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\",\"seed\":1}", 400,
                      "unknown_parameter", "seed");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":[]}", 400, "invalid_type",
                      "hyperparameters");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"gamma\":2}}", 400,
                      "invalid_hyperparameter", "hyperparameters.gamma");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"bogus\":1}}", 400,
                      "invalid_hyperparameter", "hyperparameters.bogus");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"env\":\"Pong\"}}", 400,
                      "invalid_hyperparameter", "hyperparameters.env");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"max_attempts\":0}", 400, "invalid_value",
                      "max_attempts");
    /* Nothing was stored by any of them. */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_events", 0), 0);
    call_expect_error(&d, "GET", "/v1/jobs?limit=0", d.admin, NULL, 400, "invalid_value", "limit");
    call_expect_error(&d, "GET", "/v1/jobs?limit=101", d.admin, NULL, 400, "invalid_value",
                      "limit");
    call_expect_error(&d, "GET", "/v1/jobs?after=x", d.admin, NULL, 400, "invalid_value", "after");
    call_expect_error(&d, "GET", "/v1/jobs?status=done", d.admin, NULL, 400, "invalid_value",
                      "status");
    const char *subroutes[] = {"", "/events", "/metrics", "/checkpoints", "/stream"};
    for (int i = 0; i < 5; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/jobs/999%s", subroutes[i]);
        call_expect_error(&d, "GET", path, d.admin, NULL, 404, "job_not_found", NULL);
    }
    call_expect_error(&d, "POST", "/v1/jobs/999/cancel", d.admin, NULL, 404, "job_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/checkpoints/999/content", d.admin, NULL, 404,
                      "checkpoint_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A short job from queue to success, and everything it leaves behind. */
START_TEST(test_job_runs_to_success) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, SHORT_JOB);
    http_reply *job = wait_job(&d, id, "succeeded", 1);
    ck_assert(json_is_null(json_object_get(job->json, "error")));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(job->json, "hyperparameters"), "total_steps")),
                     2048);
    reply_free(job);
    char path[160];

    /* Metrics: 4 updates of 512 steps, paged by step, filtered by name. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=episodic_return,sps&limit=3",
             (long long)id);
    http_reply *r = http(&d, "GET", path, d.admin, NULL, NULL);
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 3);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 0), "step")), 512);
    json_t *m0 = json_object_get(json_array_get(data, 0), "metrics");
    ck_assert_int_eq(json_object_size(m0), 2);
    ck_assert(json_is_number(json_object_get(m0, "sps")));
    int64_t last_step = json_integer_value(json_object_get(r->json, "last_step"));
    ck_assert_int_eq(last_step, 1536);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?after_step=%lld", (long long)id,
             (long long)last_step);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 0), "step")), 2048);
    ck_assert_int_gt(json_object_size(json_object_get(json_array_get(data, 0), "metrics")), 5);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?after_step=1x", (long long)id);
    call_expect_error(&d, "GET", path, d.admin, NULL, 400, "invalid_value", "after_step");

    /* Events: newest first, paged with after. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=2", (long long)id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 0), "code")),
                     "succeeded");
    int64_t last_id = json_integer_value(json_object_get(r->json, "last_id"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 1), "id")), last_id);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=100&after=%lld", (long long)id,
             (long long)last_id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    /* created, started, running (inputs validated), 4 × metrics; the
     * checkpoint event was on page 1 */
    ck_assert_int_eq(json_array_size(data), 7);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 6), "code")),
                     "created");
    ck_assert_int_lt(json_integer_value(json_object_get(json_array_get(data, 0), "id")), last_id);
    reply_free(r);

    /* The final checkpoint, with metrics at its step and a verifiable digest. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/checkpoints", (long long)id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    json_t *ck = json_array_get(data, 0);
    ck_assert_str_eq(json_string_value(json_object_get(ck, "kind")), "final");
    ck_assert_int_eq(json_integer_value(json_object_get(ck, "step_number")), 2048);
    ck_assert(json_is_number(json_object_get(json_object_get(ck, "metrics"), "episodic_return")));
    char digest[65];
    snprintf(digest, sizeof digest, "%s", json_string_value(json_object_get(ck, "sha256")));
    int64_t size = json_integer_value(json_object_get(ck, "size_bytes"));
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content",
             (long long)json_integer_value(json_object_get(ck, "id")));
    reply_free(r);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int64_t)r->body_len, size);
    char got[65];
    sha256_hex(r->body, r->body_len, got);
    ck_assert_str_eq(got, digest);
    ck_assert_str_eq(r->sha256_header, digest);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_stream_and_resume) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, SHORT_JOB);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/stream", (long long)id);
    /* Opened while the job may still be queued: the stream follows it to
     * the end and closes by itself. */
    http_reply *r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_ptr_nonnull(strstr(r->body, "id: 1\nevent: message\ndata: {"));
    ck_assert_ptr_nonnull(strstr(r->body, "event: metrics\n"));
    ck_assert_ptr_nonnull(strstr(r->body, "event: end\ndata: {\"status\":\"succeeded\"}\n\n"));
    int64_t n_events = db_int(&d, "SELECT count(*) FROM job_events WHERE job_id = ?1", id);
    int ids = strncmp(r->body, "id: ", 4) == 0;
    for (const char *p = r->body; (p = strstr(p, "\nid: ")) != NULL; p++)
        ids++;
    ck_assert_int_eq(ids, n_events); /* every event exactly once */
    reply_free(r);
    /* Resume after event 3: the first event sent is 4. */
    r = http(&d, "GET", path, d.admin, NULL, "Last-Event-ID: 3");
    ck_assert_msg(strncmp(r->body, "id: 4\n", 6) == 0, "%.80s", r->body);
    ck_assert_ptr_null(strstr(r->body, "id: 3\n"));
    reply_free(r);
    char after[128];
    snprintf(after, sizeof after, "%s?after=%lld", path, (long long)n_events);
    r = http(&d, "GET", after, d.admin, NULL, NULL);
    ck_assert_str_eq(r->body, "event: end\ndata: {\"status\":\"succeeded\"}\n\n");
    reply_free(r);
    r = http(&d, "GET", path, d.admin, NULL, "Last-Event-ID: -2");
    expect_error(r, 400, "invalid_value", "Last-Event-ID");
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_job_list_pagination) {
    test_daemon d;
    daemon_init(&d);
    /* workers 1 and a long first job: the others stay queued */
    daemon_start(&d, NULL);
    int64_t ids[3];
    ids[0] = create_job(&d, LONG_JOB);
    ids[1] = create_job(&d, SHORT_JOB);
    ids[2] = create_job(&d, SHORT_JOB);
    http_reply *r = http(&d, "GET", "/v1/jobs?limit=2", d.admin, NULL, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")), "list");
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), ids[2]);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "last_id")), ids[1]);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    reply_free(r);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?limit=2&after=%lld", (long long)ids[1]);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), ids[0]);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
    http_reply *first = wait_job(&d, ids[0], "running", 1);
    reply_free(first);
    r = http(&d, "GET", "/v1/jobs?status=queued", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    reply_free(r);
    r = http(&d, "GET", "/v1/jobs?type=sft", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    ck_assert(json_is_null(json_object_get(r->json, "first_id")));
    reply_free(r);
    /* Cancelling a queued job is immediate. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)ids[2]);
    r = http(&d, "POST", path, d.admin, NULL, NULL);
    ck_assert_str_eq(job_status(r), "cancelled");
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)ids[0]);
    r = http(&d, "POST", path, d.admin, NULL, NULL);
    reply_free(r);
    reply_free(wait_job(&d, ids[0], "cancelled", 0));
    reply_free(wait_job(&d, ids[1], "succeeded", 0));
    ck_assert_int_eq(db_int(&d, "SELECT attempts FROM jobs WHERE id = ?1", ids[2]), 0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Cancel a running job: the worker stops within an update, checkpoints, and
 * records 'cancelled'. */
START_TEST(test_cancel_running_job) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, LONG_JOB);
    /* The worker runs niced (--worker-nice, default 10) below rlhfd. */
    errno = 0;
    const int own_nice = getpriority(PRIO_PROCESS, 0);
    const pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, (id_t)worker),
                     own_nice + 10 > 19 ? 19 : own_nice + 10);
    http_reply *r = cancel_job(&d, id);
    ck_assert_int_eq(r->status, 200);
    ck_assert(json_is_true(json_object_get(r->json, "cancel_requested")));
    reply_free(r);
    http_reply *job = wait_job(&d, id, "cancelled", 1);
    ck_assert(json_is_integer(json_object_get(job->json, "finished_at")));
    reply_free(job);
    ck_assert(has_event(&d, id, "cancel_requested"));
    ck_assert(has_event(&d, id, "cancelled"));
    ck_assert(has_event(&d, id, "checkpoint"));
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM jobs WHERE id = ?1 AND lease_owner IS NULL", id), 1);
    /* Again: harmless. A finished job cannot be cancelled. */
    r = cancel_job(&d, id);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    int64_t done = create_job(&d, SHORT_JOB);
    reply_free(wait_job(&d, done, "succeeded", 0));
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)done);
    call_expect_error(&d, "POST", path, d.admin, NULL, 409, "job_not_cancellable", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGKILL of a worker: its job is requeued (attempt 2) and runs again; with
 * no attempts left it fails and says why. */
START_TEST(test_worker_killed_requeues_then_fails) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, "{\"type\":\"ppo-control\",\"max_attempts\":2,"
                                       "\"hyperparameters\":{\"total_steps\":5000000}}");
    pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    ck_assert_int_gt(worker, 0);
    kill(worker, SIGKILL);
    http_reply *job = wait_job(&d, id, "running", 2);
    reply_free(job);
    ck_assert(has_event(&d, id, "requeued"));
    worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    kill(worker, SIGKILL);
    job = wait_job(&d, id, "failed", 2);
    const char *error =
        json_string_value(json_object_get(json_object_get(job->json, "error"), "message"));
    ck_assert_msg(error && strstr(error, "signal 9"), "%s", job->body);
    reply_free(job);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A job left 'running' by a worker that is gone (its lease expired while
 * no daemon was up) is requeued at start-up and completes; one with no
 * attempts left fails. */
START_TEST(test_expired_lease_requeued_on_start) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, attempts, max_attempts, "
                             "lease_owner, lease_expires_ms, worker_pid, created_at) VALUES "
                             "(1, 'ppo-control', 'running', '{\"total_steps\":1024}', 1, 3, "
                             "'pid:1:gone', 1000, 999999, 0), "
                             "(2, 'ppo-control', 'running', '{\"total_steps\":1024}', 3, 3, "
                             "'pid:1:gone', 1000, 999999, 0)",
                             err, sizeof err),
                     SQLITE_OK);
    sqlite3_close(db);
    daemon_start(&d, NULL);
    http_reply *job = wait_job(&d, 1, "succeeded", 2);
    reply_free(job);
    ck_assert(has_event(&d, 1, "requeued"));
    job = wait_job(&d, 2, "failed", 3);
    const char *error =
        json_string_value(json_object_get(json_object_get(job->json, "error"), "message"));
    ck_assert_msg(error && strstr(error, "lease expired"), "%s", job->body);
    reply_free(job);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGKILL of the daemon: the worker keeps its lease and keeps training; a
 * restarted daemon neither starts a second worker nor loses acknowledged
 * writes, and can still cancel the job through the database. */
START_TEST(test_daemon_killed_and_restarted) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, LONG_JOB);
    int64_t queued = create_job(&d, SHORT_JOB);
    reply_free(wait_job(&d, id, "running", 1));
    wait_metrics(&d, id);
    pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    daemon_start(&d, NULL);
    /* Acknowledged writes are all there; the orphan still owns the job. */
    http_reply *job = get_job(&d, queued);
    reply_free(job);
    job = get_job(&d, id);
    ck_assert_str_eq(job_status(job), "running");
    ck_assert_int_eq(job_int(job, "attempts"), 1);
    reply_free(job);
    ck_assert_int_eq(db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id), worker);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)id);
    reply_free(http(&d, "POST", path, d.admin, NULL, NULL));
    /* The orphan learns of the cancel from its heartbeat. */
    reply_free(wait_job(&d, id, "cancelled", 1));
    wait_pid_gone(worker);
    reply_free(wait_job(&d, queued, "succeeded", 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGTERM: workers checkpoint and put their job back without using up an
 * attempt; the daemon exits 0; the next daemon runs the job again. */
START_TEST(test_graceful_shutdown_requeues) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, LONG_JOB);
    daemon_stop(&d);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = ?1 AND status = 'queued' "
                            "AND attempts = 0 AND lease_owner IS NULL",
                            id),
                     1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", id), 1);
    daemon_start(&d, NULL);
    reply_free(wait_job(&d, id, "running", 1));
    reply_free(cancel_job(&d, id));
    reply_free(wait_job(&d, id, "cancelled", 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The worker side without a daemon: exit codes and lease fencing. */
START_TEST(test_worker_claims_and_fences) {
    test_daemon d;
    daemon_init(&d);
    char train[4096];
    bin_path("rlhf-train", train, sizeof train);
    char out[64];
    char *usage[] = {train, "--db", d.db, "--job", "x", NULL};
    ck_assert_int_eq(run_capture(usage, out, sizeof out), DB_JOB_EXIT_USAGE);
    char *missing[] = {train, "--db", d.db, "--job", "42", NULL};
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_NOT_CLAIMED);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at) VALUES (42, 'ppo-control', 'queued', "
                             "'{\"total_steps\":1024}', 1, 0), (43, 'ppo-control', 'queued', "
                             "'{\"num_minibatches\":7}', 1, 0)",
                             err, sizeof err),
                     SQLITE_OK);
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_DONE);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = 42 AND status = "
                            "'succeeded' AND attempts = 1",
                            0),
                     1);
    ck_assert_int_eq(run_capture(missing, out, sizeof out), DB_JOB_EXIT_NOT_CLAIMED);
    /* A configuration the engine rejects fails the job with the engine's words. */
    char *bad[] = {train, "--db", d.db, "--job", "43", NULL};
    ck_assert_int_eq(run_capture(bad, out, sizeof out), DB_JOB_EXIT_FAILED);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = 43 AND status = 'failed' "
                            "AND error LIKE '%num_minibatches%'",
                            0),
                     1);
    /* Fencing: only the lease owner of a running job may write. */
    ck_assert_int_eq(db_exec(db,
                             "UPDATE jobs SET status = 'running', lease_owner = 'me', "
                             "lease_expires_ms = 0 WHERE id = 42",
                             err, sizeof err),
                     SQLITE_OK);
    bool cancel = true;
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(jobs_db_fence(db, 42, "someone-else", 1000, &cancel), 0);
    ck_assert_int_eq(jobs_db_fence(db, 42, "me", 1000, &cancel), 1);
    ck_assert(!cancel);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    ck_assert_int_gt(db_int(&d, "SELECT lease_expires_ms FROM jobs WHERE id = 42", 0), 0);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* The worker's metrics wait (flush_ms) and are committed together: by a
 * flush, or before an event or checkpoint of the training thread, in the
 * order training reported them; a flush without the lease writes nothing
 * and keeps them. */
START_TEST(test_db_sink_coalesces_metrics) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db, *other;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_migrate(db, err, sizeof err), 0);
    ck_assert_int_eq(db_open(d.db, &other, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, max_attempts, "
                             "created_at, lease_owner, lease_expires_ms) VALUES (7, "
                             "'ppo-control', 'running', '{}', 1, 0, 'me', 0)",
                             err, sizeof err),
                     SQLITE_OK);
    atomic_bool cancel, lost;
    atomic_init(&cancel, false);
    atomic_init(&lost, false);
    db_sink ds = {.db = db,
                  .job_id = 7,
                  .lease_owner = "me",
                  .lease_ms = 60000,
                  .cancel_requested = &cancel,
                  .lease_lost = &lost,
                  .flush_ms = 60000};
    train_sink sink = db_sink_make(&ds);
    const sink_metric m1[] = {{"loss", 0.5}, {"reward", NAN}};
    const sink_metric m2[] = {{"loss", 0.25}, {"reward", 2.0}};
    ck_assert_int_eq(sink_metrics(&sink, 1, m1, 2), 0);
    ck_assert_int_eq(sink_metrics(&sink, 2, m2, 2), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 0);
    /* Not stale yet: a stale-only flush (the heartbeat's) leaves them. */
    ck_assert_int_eq(db_sink_flush(&ds, other, true), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 0);
    /* An event commits them first, in order. */
    ck_assert_int_eq(sink_event(&sink, SINK_LEVEL_INFO, "note", "after two updates", NULL, 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1", 7), 4);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = 'reward' "
                            "AND step = 1 AND value IS NULL",
                            7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = 'loss' "
                            "AND step = 2 AND value = 0.25",
                            7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT (SELECT group_concat(code || ':' || message, ',') FROM (SELECT "
                            "code, message FROM job_events WHERE job_id = ?1 ORDER BY id)) = "
                            "'metrics:step 1,metrics:step 2,note:after two updates'",
                            7),
                     1);
    /* A checkpoint too, with the metrics of its own step. */
    const sink_metric m3[] = {{"loss", 0.125}};
    ck_assert_int_eq(sink_metrics(&sink, 3, m3, 1), 0);
    ck_assert_int_eq(sink_checkpoint(&sink, 3, "bytes", 5), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 3", 7),
                     1);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM checkpoints WHERE job_id = ?1 AND step = 3 AND "
                            "metrics = '{\"loss\":0.125}'",
                            7),
                     1);
    /* The heartbeat's connection flushes whatever waits. */
    ck_assert_int_eq(sink_metrics(&sink, 4, m3, 1), 0);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 4", 7),
                     1);
    /* Without the lease nothing is written and the update keeps waiting. */
    ck_assert_int_eq(sink_metrics(&sink, 5, m3, 1), 0);
    ck_assert_int_eq(
        db_exec(other, "UPDATE jobs SET lease_owner = 'thief' WHERE id = 7", err, sizeof err),
        SQLITE_OK);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), -1);
    ck_assert(atomic_load(&lost));
    ck_assert_int_eq(
        db_exec(other, "UPDATE jobs SET lease_owner = 'me' WHERE id = 7", err, sizeof err),
        SQLITE_OK);
    ck_assert_int_eq(db_sink_flush(&ds, other, false), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 5", 7),
                     1);
    /* flush_ms 0: every update commits at once. */
    ds.flush_ms = 0;
    ck_assert_int_eq(sink_metrics(&sink, 6, m3, 1), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND step = 6", 7),
                     1);
    db_sink_free(&ds);
    sqlite3_close(other);
    sqlite3_close(db);
    daemon_cleanup(&d);
}
END_TEST

/* d's database with a table t (x): an open connection to it. */
static sqlite3 *db_with_table_t(const test_daemon *d) {
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d->db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db, "CREATE TABLE t (x)", err, sizeof err), SQLITE_OK);
    return db;
}

typedef struct lock_holder {
    const char *path;
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    bool locked;
} lock_holder;

static void *hold_write_lock(void *arg) {
    lock_holder *h = arg;
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(h->path, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (1)", err, sizeof err), SQLITE_OK);
    pthread_mutex_lock(&h->mutex);
    h->locked = true;
    pthread_cond_signal(&h->cond);
    pthread_mutex_unlock(&h->mutex);
    pause_ms(30); /* the lock is held this long: what the other connection meets */
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    sqlite3_close(db);
    return NULL;
}

/* A connection that meets another's write lock waits for it (db_open's
 * busy handler) instead of failing with SQLITE_BUSY. */
START_TEST(test_db_waits_for_write_lock) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db = db_with_table_t(&d);
    char err[256];
    lock_holder h = {
        .path = d.db, .mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    pthread_t thread;
    ck_assert_int_eq(pthread_create(&thread, NULL, hold_write_lock, &h), 0);
    pthread_mutex_lock(&h.mutex);
    while (!h.locked)
        pthread_cond_wait(&h.cond, &h.mutex);
    pthread_mutex_unlock(&h.mutex);
    ck_assert_int_eq(db_begin(db), SQLITE_OK);
    ck_assert_int_eq(db_exec(db, "INSERT INTO t VALUES (2)", err, sizeof err), SQLITE_OK);
    ck_assert_int_eq(db_commit(db), SQLITE_OK);
    pthread_join(thread, NULL);
    sqlite3_close(db);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM t", 0), 2);
    daemon_cleanup(&d);
}
END_TEST

typedef struct blob_write {
    pthread_mutex_t mutex;
    pthread_cond_t cond;
    int done, committed;
} blob_write;

static int insert_blob(sqlite3 *db, void *ctx) {
    (void)ctx;
    return sqlite3_exec(db, "INSERT INTO t VALUES (randomblob(8000))", NULL, NULL, NULL) ==
           SQLITE_OK;
}

static void blob_written(void *ctx, int committed) {
    blob_write *b = ctx;
    pthread_mutex_lock(&b->mutex);
    b->done++, b->committed += committed;
    pthread_cond_signal(&b->cond);
    pthread_mutex_unlock(&b->mutex);
}

/* The group-commit writer's WAL is checkpointed by its checkpointer thread
 * (the writer connection never does it inside a COMMIT), and no write is
 * lost on the way. */
START_TEST(test_writer_checkpoints_wal) {
    test_daemon d;
    daemon_init(&d);
    sqlite3_close(db_with_table_t(&d));
    char err[256];
    writer *w = writer_start(d.db, err, sizeof err);
    ck_assert_ptr_nonnull(w);
    /* 400 commits of three pages each (8,000 bytes: a leaf and two
     * overflow pages): the WAL passes 1,000 frames. */
    enum { N = 400 };
    blob_write b = {.mutex = PTHREAD_MUTEX_INITIALIZER, .cond = PTHREAD_COND_INITIALIZER};
    for (int i = 0; i < N; i++) {
        ck_assert_int_eq(writer_submit(w, insert_blob, blob_written, &b), 0);
        pthread_mutex_lock(&b.mutex); /* one at a time: one commit each */
        while (b.done <= i)
            pthread_cond_wait(&b.cond, &b.mutex);
        pthread_mutex_unlock(&b.mutex);
    }
    writer_stop(w); /* joins the checkpointer after the one it was asked for */
    long long batches, writes, checkpoints;
    writer_stats(w, &batches, &writes, &checkpoints);
    writer_free(w);
    ck_assert_int_eq(b.committed, N);
    ck_assert_int_eq(writes, N);
    ck_assert_int_ge(checkpoints, 1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM t WHERE length(x) = 8000", 0), N);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_config_sources) {
    test_daemon d;
    daemon_init(&d);
    char rlhfd[4096], out[256];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    char *help[] = {rlhfd, "--help", NULL};
    ck_assert_int_eq(run_capture(help, out, sizeof out), 0);
    char *bad_flag[] = {rlhfd, "--db", d.db, "--workers", "0", NULL};
    ck_assert_int_eq(run_capture(bad_flag, out, sizeof out), 2);
    char *unknown[] = {rlhfd, "--db", d.db, "--wrokers", "2", NULL};
    ck_assert_int_eq(run_capture(unknown, out, sizeof out), 2);
    char *bad_listen[] = {rlhfd, "--db", d.db, "--listen", "localhost", NULL};
    ck_assert_int_eq(run_capture(bad_listen, out, sizeof out), 2);
    char *bad_role[] = {rlhfd, "--db", d.db, "--create-token", "x", "--role", "god", NULL};
    ck_assert_int_eq(run_capture(bad_role, out, sizeof out), 2);
    char *taken[] = {rlhfd, "--db", d.db, "--create-token", "root", "--role", "viewer", NULL};
    ck_assert_int_eq(run_capture(taken, out, sizeof out), 1);
    char file[160];
    snprintf(file, sizeof file, "%s/rlhfd.json", d.dir);
    FILE *f = fopen(file, "w");
    fputs("{\"workers\": 2, \"wrokers\": 3}", f);
    fclose(f);
    char *bad_file[] = {rlhfd, "--config", file, "--db", d.db, NULL};
    ck_assert_int_eq(run_capture(bad_file, out, sizeof out), 2);
    /* A good file and the environment: the daemon serves with them. */
    f = fopen(file, "w");
    fprintf(f, "{\"max_body_bytes\": 1024, \"workers\": 1}");
    fclose(f);
    setenv("RLHFD_MAX_BODY_BYTES", "1500", 1);
    daemon_start(&d, "--config", file, NULL);
    unsetenv("RLHFD_MAX_BODY_BYTES");
    char body[1400];
    memset(body, ' ', sizeof body - 1);
    body[0] = '{', body[sizeof body - 2] = '}', body[sizeof body - 1] = '\0';
    /* 1399 bytes: over the file's 1024, under the environment's 1500 */
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, "missing_required_parameter",
                      "type");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *server_suite(void) {
    Suite *s = suite_create("server");
    TCase *unit = tcase_create("unit");
    tcase_add_test(unit, test_schema_migrations);
    tcase_add_test(unit, test_rank_count_migration);
    tcase_add_test(unit, test_sha256_vectors);
    tcase_add_test(unit, test_worker_claims_and_fences);
    tcase_add_test(unit, test_db_sink_coalesces_metrics);
    tcase_add_test(unit, test_db_waits_for_write_lock);
    tcase_add_test(unit, test_writer_checkpoints_wal);
    tcase_set_timeout(unit, 60);
    suite_add_tcase(s, unit);
    TCase *http_tc = tcase_create("http");
    tcase_add_test(http_tc, test_health_and_request_errors);
    tcase_add_test(http_tc, test_tokens_and_roles);
    tcase_add_test(http_tc, test_job_validation);
    tcase_add_test(http_tc, test_config_sources);
    tcase_set_timeout(http_tc, 60);
    suite_add_tcase(s, http_tc);
    TCase *jobs = tcase_create("jobs");
    tcase_add_test(jobs, test_job_runs_to_success);
    tcase_add_test(jobs, test_stream_and_resume);
    tcase_add_test(jobs, test_job_list_pagination);
    tcase_add_test(jobs, test_cancel_running_job);
    tcase_add_test(jobs, test_worker_killed_requeues_then_fails);
    tcase_add_test(jobs, test_expired_lease_requeued_on_start);
    tcase_add_test(jobs, test_daemon_killed_and_restarted);
    tcase_add_test(jobs, test_graceful_shutdown_requeues);
    tcase_set_timeout(jobs, 120);
    suite_add_tcase(s, jobs);
    return s;
}
