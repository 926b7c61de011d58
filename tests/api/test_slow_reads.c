/* Slow requests never hold the API (issue 13): generations run on the
 * generate pool and the agreement on the heavy-read pool, with their
 * connections suspended, behind bounded queues; per-token limits answer
 * 429/503 with Retry-After.
 *
 * The pools' workers are held with the daemon's test gate
 * (RLHFD_TEST_SLOW_GATE, a FIFO from which each worker reads one byte per
 * task), so "while generations are in flight" is a fact the test checks on
 * /metrics, not a race it hopes to win: no latency thresholds.
 */
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "agreement_cache.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* ---- helpers ---------------------------------------------------------------- */

/* Starts d (initialised) with the test gate open to it: returns the gate's
 * write end. flags as daemon_start's (at most 12). */
static int daemon_start_gated(test_daemon *d, const char *const *flags) {
    char gate[160];
    snprintf(gate, sizeof gate, "%s/gate", d->dir);
    ck_assert_int_eq(mkfifo(gate, 0600), 0);
    setenv("RLHFD_TEST_SLOW_GATE", gate, 1);
    const char *f[13] = {0};
    for (int i = 0; i < 12 && flags[i] != NULL; i++)
        f[i] = flags[i];
    daemon_start(d, f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9], f[10], f[11], NULL);
    unsetenv("RLHFD_TEST_SLOW_GATE");
    const int fd = open(gate, O_WRONLY | O_CLOEXEC); /* rlhfd holds it open for reading */
    ck_assert_int_ge(fd, 0);
    return fd;
}

static void open_gate(int fd, int tasks) {
    for (int i = 0; i < tasks; i++)
        ck_assert_int_eq(write(fd, "x", 1), 1);
}

/* A sample's value in GET /metrics (-1 if absent). */
static long long metric(const test_daemon *d, const char *name) {
    http_reply *r = http(d, "GET", "/metrics", d->admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    long long v = -1;
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *at = strstr(r->body, want);
    if (at != NULL)
        v = strtoll(at + strlen(want), NULL, 10);
    reply_free(r);
    return v;
}

/* Polls /metrics until name reads want; asserts it does. */
static void await_metric(const test_daemon *d, const char *name, long long want) {
    const int64_t until = now_ms() + DEADLINE_MS;
    long long v;
    while ((v = metric(d, name)) != want && now_ms() < until)
        pause_ms(5);
    ck_assert_msg(v == want, "%s is %lld, awaited %lld", name, v, want);
}

/* One request on its own thread. */
typedef struct call {
    const test_daemon *d;
    const char *method, *path, *token, *body;
    http_reply *reply;
    pthread_t thread;
} call;

static void *call_main(void *arg) {
    call *c = arg;
    c->reply = http(c->d, c->method, c->path, c->token, c->body, NULL);
    return NULL;
}

static void call_start(call *c) {
    ck_assert_int_eq(pthread_create(&c->thread, NULL, call_main, c), 0);
}

static http_reply *call_join(call *c) {
    pthread_join(c->thread, NULL);
    return c->reply;
}

/* An error with Retry-After of at least one second. */
static void expect_retry(http_reply *r, long status, const char *code) {
    expect_error(r, status, code, NULL);
    ck_assert_msg(atoll(r->retry_after) >= 1, "Retry-After '%s'", r->retry_after);
    reply_free(r);
}

/* A project of k 3 and the given overlap with n comparisons, granted to
 * every annotator and viewer token: its id. */
static int64_t project_with_comparisons(const test_daemon *d, int n, int overlap) {
    char body[96];
    snprintf(body, sizeof body, "{\"name\":\"p\",\"k\":3,\"overlap\":%d}", overlap);
    const int64_t project = create(d, "/v1/projects", d->admin, body);
    grant_project_all(d, project);
    size_t cap = (size_t)n * 96 + 8, at = 0;
    char *items = malloc(cap);
    at += (size_t)snprintf(items + at, cap - at, "[");
    for (int i = 0; i < n; i++)
        at += (size_t)snprintf(items + at, cap - at,
                               "%s{\"prompt\":\"q%d\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                               "\"b\"},{\"text\":\"c\"}]}",
                               i ? "," : "", i);
    snprintf(items + at, cap - at, "]");
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/bulk", (long long)project);
    reply_free(expect_ok(http(d, "POST", path, d->admin, items, NULL)));
    free(items);
    return project;
}

/* The annotator ranks the next comparison of the project (asserting 200). */
static void rank_next(const test_daemon *d, int64_t project, const char *token) {
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/comparisons/next", (long long)project);
    http_reply *r = expect_ok(http(d, "GET", path, token, NULL, NULL));
    const int64_t comparison = reply_int(r, "id");
    json_t *cands = json_object_get(r->json, "candidates");
    char body[160];
    snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld,%lld]]}",
             (long long)json_integer_value(json_object_get(json_array_get(cands, 2), "id")),
             (long long)json_integer_value(json_object_get(json_array_get(cands, 0), "id")),
             (long long)json_integer_value(json_object_get(json_array_get(cands, 1), "id")));
    reply_free(r);
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)comparison);
    reply_free(expect_ok(http(d, "POST", path, token, body, NULL)));
}

static const char *choice_text(http_reply *r, size_t i) {
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r->json, "choices"), i), "text"));
}

/* A trained checkpoint and its greedy continuation of prompt (12 tokens),
 * computed here from the checkpoint's bytes. */
static int64_t checkpoint_with_reference(const test_daemon *d, const char *prompt, char *want,
                                         size_t cap) {
    const int64_t job = demo_sft_job(d, SAMPLING_SFT, NULL);
    reply_free(wait_job(d, job, "succeeded", 1));
    const int64_t ck = final_checkpoint(d, job, NULL);
    tokenizer tok;
    ck_assert_int_eq(tokenizer_load_bytes(&tok, NULL, 0), 0);
    gpt2_model m;
    checkpoint_model(d, ck, &m);
    checkpoint_greedy(&m, &tok, prompt, 12, want, cap);
    gpt2_free(&m);
    tokenizer_free(&tok);
    return ck;
}

/* A gated daemon (flags as daemon_start_gated's) with a trained
 * checkpoint: the gate's write end; *ck, and the greedy continuation of
 * "Describe the river." into want. */
static int gated_daemon_with_checkpoint(test_daemon *d, const char *const *flags, int64_t *ck,
                                        char *want, size_t cap) {
    daemon_init(d);
    const int gate = daemon_start_gated(d, flags);
    *ck = checkpoint_with_reference(d, "Describe the river.", want, cap);
    return gate;
}

#define GREEDY_BODY "{\"prompt\":\"Describe the river.\",\"max_tokens\":12,\"temperature\":0}"

/* ---- generation ----------------------------------------------------------- */

/* 2 workers, 2 waiting: 4 generations held in flight; 3 more are refused
 * with 503 + Retry-After; 30 ranking posts and /healthz answer meanwhile;
 * released, the 4 answer what the model greedily says. */
START_TEST(test_generate_flood_beside_rankings) {
    test_daemon d;
    daemon_init(&d);
    const char *flags[] = {"--generate-slots",
                           "2",
                           "--generate-queue",
                           "2",
                           "--write-rate",
                           "0",
                           "--read-rate",
                           "0",
                           "--generate-per-token",
                           "0",
                           NULL};
    char want[512];
    int64_t ck;
    const int gate = gated_daemon_with_checkpoint(&d, flags, &ck, want, sizeof want);
    char viewer[128], annotator[128], path[96];
    make_token(&d, "V", "viewer", viewer);
    make_token(&d, "A", "annotator", annotator);
    const int64_t project = project_with_comparisons(&d, 30, 1);
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/generate", (long long)ck);

    call gens[4];
    for (int i = 0; i < 4; i++) {
        gens[i] = (call){&d, "POST", path, viewer, GREEDY_BODY, NULL, 0};
        call_start(&gens[i]);
    }
    await_metric(&d, "rlhfd_generate_running", 2);
    await_metric(&d, "rlhfd_generate_queued", 2);
    for (int i = 0; i < 3; i++) /* beyond slots + queue */
        expect_retry(http(&d, "POST", path, viewer, GREEDY_BODY, NULL), 503, "server_busy");
    for (int i = 0; i < 30; i++)
        rank_next(&d, project, annotator);
    reply_free(expect_ok(http(&d, "GET", "/healthz", NULL, NULL, NULL)));
    /* the four were in flight the whole time */
    ck_assert_int_eq(metric(&d, "rlhfd_generate_running"), 2);
    ck_assert_int_eq(metric(&d, "rlhfd_generate_queued"), 2);
    ck_assert_int_eq(metric(&d, "rlhfd_generate_completed_total"), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings WHERE ?1 > 0", 1), 30);
    ck_assert_int_eq(metric(&d, "rlhfd_generate_refused_total"), 3);

    open_gate(gate, 4);
    for (int i = 0; i < 4; i++) {
        http_reply *r = expect_ok(call_join(&gens[i]));
        ck_assert_str_eq(choice_text(r, 0), want);
        reply_free(r);
    }
    /* awaited: a worker counts its task after the reply is queued */
    await_metric(&d, "rlhfd_generate_completed_total", 4);
    close(gate);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* One slot, one waiting place, one generation per token, a 300 ms queue
 * timeout, 3 expensive reads per token at once. */
START_TEST(test_generate_limits) {
    test_daemon d;
    daemon_init(&d);
    const char *flags[] = {"--generate-slots",
                           "1",
                           "--generate-queue",
                           "1",
                           "--generate-per-token",
                           "1",
                           "--queue-timeout-ms",
                           "300",
                           "--read-rate",
                           "1",
                           "--read-burst",
                           "3",
                           NULL};
    char want[512];
    int64_t ck;
    const int gate = gated_daemon_with_checkpoint(&d, flags, &ck, want, sizeof want);
    char a[128], b[128], c[128], path[96];
    make_token(&d, "A", "viewer", a);
    make_token(&d, "B", "viewer", b);
    make_token(&d, "C", "viewer", c);
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/generate", (long long)ck);

    call held = {&d, "POST", path, a, GREEDY_BODY, NULL, 0};
    call_start(&held);
    await_metric(&d, "rlhfd_generate_running", 1);
    /* the same token again: its one generation is in flight */
    expect_retry(http(&d, "POST", path, a, GREEDY_BODY, NULL), 429, "concurrency_limit_exceeded");
    /* another token waits, and gives up after the queue timeout */
    expect_retry(http(&d, "POST", path, b, GREEDY_BODY, NULL), 503, "queue_timeout");
    ck_assert_int_eq(metric(&d, "rlhfd_generate_expired_total"), 1);
    /* a bad body never waits in the queue */
    call_expect_error(&d, "POST", path, c, "{\"prompt\":\"x\",\"n\":0}", 400, "invalid_value", "n");
    open_gate(gate, 1);
    http_reply *r = expect_ok(call_join(&held));
    ck_assert_str_eq(choice_text(r, 0), want);
    reply_free(r);

    /* Expensive reads have a budget per token (C has spent 1 of 3 above);
     * cheap reads do not count against it. */
    char agreement[96];
    const int64_t project = project_with_comparisons(&d, 1, 1);
    snprintf(agreement, sizeof agreement, "/v1/projects/%lld/agreement", (long long)project);
    int limited = 0;
    for (int i = 0; i < 10 && !limited; i++) {
        open_gate(gate, 1); /* a read that misses the cache goes through a worker */
        http_reply *x = http(&d, "GET", agreement, c, NULL, NULL);
        if (x->status == 429) {
            limited = 1;
            expect_retry(x, 429, "rate_limit_exceeded");
        } else {
            reply_free(expect_ok(x));
        }
    }
    ck_assert(limited);
    reply_free(expect_ok(http(&d, "GET", "/v1/projects", c, NULL, NULL)));
    close(gate);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- agreement ------------------------------------------------------------------ */

/* The agreement as computed now from every ranking, on our own connection. */
static char *agreement_now(const test_daemon *d, int64_t project, size_t *len) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    int64_t last;
    char *text = agreement_body_text(db, project, &last, len);
    ck_assert_ptr_nonnull(text);
    sqlite3_close(db);
    return text;
}

static void expect_body(http_reply *r, const char *text, size_t len) {
    ck_assert_int_eq(r->status, 200);
    ck_assert_msg(r->body_len == len && memcmp(r->body, text, len) == 0, "got %.*s\nwant %.*s",
                  (int)r->body_len, r->body, (int)len, text);
}

enum { N_READERS = 12, N_COMPARISONS = 300, N_ANNOTATORS = 6 };

/* 1,800 rankings; 12 parallel reads held on the two heavy-read workers
 * while /healthz and a ranking post answer; all get the same bytes as the
 * uncached computation, computed at most twice; a ranking in another
 * project leaves the answer cached; one in this project changes it. */
START_TEST(test_agreement_flood_and_cache) {
    test_daemon d;
    daemon_init(&d);
    const char *flags[] = {"--read-workers",
                           "2",
                           "--read-per-token",
                           "0",
                           "--read-rate",
                           "0",
                           "--write-rate",
                           "0",
                           NULL};
    const int gate = daemon_start_gated(&d, flags);
    char viewer[128], late[128], other[128];
    make_token(&d, "V", "viewer", viewer);
    for (int i = 0; i < N_ANNOTATORS; i++) {
        char name[32], token[128];
        snprintf(name, sizeof name, "ann%d", i);
        make_token(&d, name, "annotator", token);
    }
    make_token(&d, "late", "annotator", late);
    make_token(&d, "other", "annotator", other);
    const int64_t project = project_with_comparisons(&d, N_COMPARISONS, N_ANNOTATORS + 1);
    const int64_t elsewhere = project_with_comparisons(&d, 5, 1);
    /* Every annotator ranks every comparison (some skip): rankings with
     * pseudo-random orders and ties, written straight into the database. */
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO rankings (comparison_id, token_id, skipped, created_at) "
             "SELECT c.id, t.id, (c.id * 7 + t.id * 3) %% 11 = 0, 0 FROM comparisons c, "
             "api_tokens t WHERE c.project_id = %lld AND t.name LIKE 'ann%%' ORDER BY c.id, t.id;"
             "INSERT INTO ranking_entries (ranking_id, candidate_id, rank) SELECT k.id, cd.id, "
             "((k.id * 2654435761 + cd.position * 40503) %% 7) %% 3 FROM rankings k JOIN "
             "candidates cd ON cd.comparison_id = k.comparison_id WHERE k.skipped = 0;",
             (long long)project);
    exec_sql(&d, sql);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM rankings WHERE ?1 > 0", 1),
                     N_COMPARISONS * N_ANNOTATORS);
    size_t want_len;
    char *want = agreement_now(&d, project, &want_len);

    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%lld/agreement", (long long)project);
    call readers[N_READERS];
    for (int i = 0; i < N_READERS; i++) {
        readers[i] = (call){&d, "GET", path, viewer, NULL, NULL, 0};
        call_start(&readers[i]);
    }
    await_metric(&d, "rlhfd_heavy_read_running", 2);
    await_metric(&d, "rlhfd_heavy_read_queued", N_READERS - 2);
    for (int i = 0; i < 5; i++)
        reply_free(expect_ok(http(&d, "GET", "/healthz", NULL, NULL, NULL)));
    rank_next(&d, elsewhere, other); /* another project's ranking */
    ck_assert_int_eq(metric(&d, "rlhfd_heavy_read_running"), 2);
    ck_assert_int_eq(metric(&d, "rlhfd_heavy_read_queued"), N_READERS - 2);
    open_gate(gate, N_READERS);
    for (int i = 0; i < N_READERS; i++) {
        http_reply *r = call_join(&readers[i]);
        expect_body(r, want, want_len);
        reply_free(r);
    }
    /* each worker computed at most once; the others found the answer */
    const long long computed = metric(&d, "rlhfd_agreement_computed_total");
    ck_assert_int_ge(computed, 1);
    ck_assert_int_le(computed, 2);

    /* Cached: answered on the request thread, no worker, no computation. */
    http_reply *r = http(&d, "GET", path, viewer, NULL, NULL);
    expect_body(r, want, want_len);
    reply_free(r);
    ck_assert_int_eq(metric(&d, "rlhfd_agreement_computed_total"), computed);
    /* A ranking elsewhere: a worker finds nothing of this project since,
     * and answers from the cache. */
    rank_next(&d, elsewhere, other);
    open_gate(gate, 1);
    r = http(&d, "GET", path, viewer, NULL, NULL);
    expect_body(r, want, want_len);
    reply_free(r);
    ck_assert_int_eq(metric(&d, "rlhfd_agreement_computed_total"), computed);
    /* A ranking here: a new answer, the uncached one. */
    rank_next(&d, project, late);
    size_t now_len;
    char *now = agreement_now(&d, project, &now_len);
    ck_assert(now_len != want_len || memcmp(now, want, now_len) != 0);
    open_gate(gate, 1);
    r = http(&d, "GET", path, viewer, NULL, NULL);
    expect_body(r, now, now_len);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "n_rankings")),
                     db_int(&d,
                            "SELECT count(*) FROM rankings k JOIN comparisons c ON c.id = "
                            "k.comparison_id WHERE c.project_id = ?1 AND k.skipped = 0",
                            project));
    reply_free(r);
    ck_assert_int_eq(metric(&d, "rlhfd_agreement_computed_total"), computed + 1);
    free(want);
    free(now);
    close(gate);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Streamed completions do not hold an HTTP thread: with one HTTP thread
 * and one generate worker held by the gate, two streams are open (one
 * running, one queued) while /healthz and a list answer; a third is refused
 * before its stream starts (503 server_busy, Retry-After); released, each
 * stream's pieces add up to the model's greedy text and end with [DONE]. */
START_TEST(test_completion_streams_hold_no_http_thread) {
    test_daemon d;
    const char *flags[] = {"--http-threads",
                           "1",
                           "--generate-slots",
                           "1",
                           "--generate-queue",
                           "1",
                           "--generate-per-token",
                           "0",
                           "--read-rate",
                           "0",
                           NULL};
    char want[512], body[256];
    int64_t ck;
    const int gate = gated_daemon_with_checkpoint(&d, flags, &ck, want, sizeof want);
    const int64_t job = db_int(&d, "SELECT job_id FROM checkpoints WHERE id = ?1", ck);
    snprintf(body, sizeof body,
             "{\"model\":\"ft:scratch::ftjob-%lld\",\"prompt\":\"Describe the river.\","
             "\"max_tokens\":12,\"temperature\":0,\"stream\":true}",
             (long long)job);
    call streams[2];
    for (int i = 0; i < 2; i++) {
        streams[i] = (call){&d, "POST", "/v1/completions", d.admin, body, NULL, 0};
        call_start(&streams[i]);
    }
    await_metric(&d, "rlhfd_generate_running", 1);
    await_metric(&d, "rlhfd_generate_queued", 1);
    expect_retry(http(&d, "POST", "/v1/completions", d.admin, body, NULL), 503, "server_busy");
    reply_free(expect_ok(http(&d, "GET", "/healthz", NULL, NULL, NULL)));
    reply_free(expect_ok(http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL)));
    ck_assert_int_eq(metric(&d, "rlhfd_generate_completed_total"), 0);
    open_gate(gate, 2);
    for (int i = 0; i < 2; i++) {
        http_reply *r = expect_ok(call_join(&streams[i]));
        ck_assert_str_eq(r->content_type, "text/event-stream");
        char text[512] = "";
        for (const char *p = r->body; (p = strstr(p, "data: {")) != NULL; p++) {
            const char *end = strstr(p, "\n\n");
            ck_assert_ptr_nonnull(end);
            json_t *chunk = json_loadb(p + 6, (size_t)(end - p - 6), 0, NULL);
            ck_assert_ptr_nonnull(chunk);
            const char *piece = json_string_value(
                json_object_get(json_array_get(json_object_get(chunk, "choices"), 0), "text"));
            if (piece != NULL)
                strncat(text, piece, sizeof text - strlen(text) - 1);
            json_decref(chunk);
        }
        ck_assert_str_eq(text, want);
        ck_assert_msg(strstr(r->body, "data: [DONE]\n\n") != NULL, "%s", r->body);
        reply_free(r);
    }
    close(gate);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *slow_reads_suite(void) {
    Suite *s = suite_create("slow_reads");
    TCase *tc = tcase_create("slow_reads");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_generate_flood_beside_rankings);
    tcase_add_test(tc, test_generate_limits);
    tcase_add_test(tc, test_completion_streams_hold_no_http_thread);
    tcase_add_test(tc, test_agreement_flood_and_cache);
    suite_add_tcase(s, tc);
    return s;
}
