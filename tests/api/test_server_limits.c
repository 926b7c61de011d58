/* rlhfd's limits and concurrency: the per-token write rate limit (the
 * bucket's arithmetic on a synthetic clock, and its 429 over HTTP), token
 * revocation (REST and rlhfctl, and an open event stream), IPv6 listening,
 * keep-alive, more open event streams than HTTP threads, and group-committed
 * rankings surviving kill -9 (every acknowledged ranking is in the database).
 */
#include <arpa/inet.h>
#include <curl/curl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ratelimit.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

static int64_t reply_int(http_reply *r, const char *key) {
    return json_integer_value(json_object_get(r->json, key));
}

/* ---- the token bucket on a synthetic clock ------------------------------------------ */

START_TEST(test_rate_limiter_bucket) {
    /* 2 writes/s, bursts of 3: a refill of one write takes 500 ms. */
    rate_limiter *l = rate_limiter_new(2, 3);
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rate_limiter_take(l, 7, 1000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 7, 1000), 1); /* 500 ms → Retry-After 1 */
    ck_assert_int_eq(rate_limiter_take(l, 8, 1000), 0); /* another token has its own bucket */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1499), 1); /* 0.998 of a write */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1500), 0); /* exactly one */
    ck_assert_int_eq(rate_limiter_take(l, 7, 1500), 1);
    /* a long pause refills to the burst, not beyond */
    for (int i = 0; i < 3; i++)
        ck_assert_int_eq(rate_limiter_take(l, 7, 100000), 0);
    ck_assert_int_eq(rate_limiter_take(l, 7, 100000), 1);
    /* many tokens: the table grows and keeps every bucket */
    for (int64_t t = 100; t < 1100; t++)
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
    for (int64_t t = 100; t < 1100; t++) {
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 0);
        ck_assert_int_eq(rate_limiter_take(l, t, 200000), 1);
    }
    rate_limiter_free(l);
    /* 1 write per second: an empty bucket waits a whole second */
    l = rate_limiter_new(1, 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 999), 1);
    ck_assert_int_eq(rate_limiter_take(l, 1, 1000), 0);
    rate_limiter_free(l);
    /* rate 0: unlimited */
    l = rate_limiter_new(0, 1);
    for (int i = 0; i < 100; i++)
        ck_assert_int_eq(rate_limiter_take(l, 1, 0), 0);
    rate_limiter_free(l);
}
END_TEST

/* ---- 429 over HTTP -------------------------------------------------------------------- */

START_TEST(test_rate_limit_http) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "1", "--write-burst", "3", NULL);
    char admin2[128];
    make_token(&d, "second", "admin", admin2); /* the first of root's 3 */
    /* Two more writes of root's bucket pass (a 400 still counts: the limit
     * is taken when the headers arrive). */
    for (int i = 0; i < 2; i++)
        call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{}", 400, "missing_required_parameter",
                          "type");
    /* At 1 write per second the bucket refills slowly; within a few more
     * writes one is refused (each would need 1 s to pass). */
    http_reply *r = NULL;
    for (int i = 0; i < 5; i++) {
        r = http(&d, "POST", "/v1/jobs", d.admin, "{}", NULL);
        if (r->status == 429)
            break;
        reply_free(r);
        r = NULL;
    }
    ck_assert_msg(r != NULL, "no 429 after 8 writes at 1/s with bursts of 3");
    expect_error(r, 429, "rate_limit_exceeded", NULL);
    ck_assert_str_eq(json_string_value(json_object_get(json_object_get(r->json, "error"), "type")),
                     "rate_limit_error");
    ck_assert_str_eq(r->retry_after, "1");
    reply_free(r);
    /* Reads are not limited; another token has its own bucket. */
    reply_free(expect_ok(http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL)));
    call_expect_error(&d, "POST", "/v1/jobs", admin2, "{}", 400, "missing_required_parameter",
                      "type");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- revocation ----------------------------------------------------------------------- */

/* A worker that never claims its job: the job stays queued, so its event
 * stream stays open; it exits on the scheduler's SIGTERM. */
static void write_idle_worker(const test_daemon *d, char *path, size_t len) {
    snprintf(path, len, "%s/idle-worker.sh", d->dir);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs("#!/bin/sh\nexec sleep 60\n", f);
    fclose(f);
    ck_assert_int_eq(chmod(path, 0755), 0);
}

/* A raw HTTP/1.1 GET on a new connection to the daemon (IPv4); returns the
 * socket after the status line and headers were read into head. */
static int open_stream(const test_daemon *d, const char *path, const char *token, char *head,
                       size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[512];
    int n = snprintf(
        req, sizeof req,
        "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: Bearer %s\r\n\r\n", path,
        token);
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t used = 0;
    head[0] = '\0';
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (strstr(head, "\r\n\r\n") == NULL) {
        ck_assert_msg(now_ms() < deadline, "no response headers: '%s'", head);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fd, head + used, len - 1 - used);
        ck_assert_int_gt(got, 0);
        used += (size_t)got;
        head[used] = '\0';
    }
    return fd;
}

/* Reads until the server closes; the text into out. */
static void read_to_close(int fd, char *out, size_t len) {
    size_t used = strlen(out);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        ck_assert_msg(now_ms() < deadline, "the stream did not end: '%s'", out);
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) <= 0)
            continue;
        ssize_t got = read(fd, out + used, len - 1 - used);
        if (got <= 0)
            break;
        used += (size_t)got;
        out[used] = '\0';
    }
    close(fd);
}

START_TEST(test_token_revocation) {
    test_daemon d;
    daemon_init(&d);
    char worker[160];
    write_idle_worker(&d, worker, sizeof worker);
    daemon_start(&d, "--train-bin", worker, NULL);
    char viewer[128], anna[128];
    int64_t viewer_id, anna_id;
    viewer_id = make_token(&d, "vera", "viewer", viewer);
    anna_id = make_token(&d, "anna", "annotator", anna);
    reply_free(expect_ok(http(&d, "GET", "/v1/projects", anna, NULL, NULL)));

    /* REST: the token object comes back with revoked_at; the next request is 401. */
    char path[96];
    snprintf(path, sizeof path, "/v1/tokens/%lld/revoke", (long long)anna_id);
    http_reply *r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "name")), "anna");
    int64_t revoked_at = reply_int(r, "revoked_at");
    ck_assert_int_gt(revoked_at, 0);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/projects", anna, NULL, 401, "invalid_api_key", NULL);
    r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)); /* again: unchanged */
    ck_assert_int_eq(reply_int(r, "revoked_at"), revoked_at);
    reply_free(r);
    call_expect_error(&d, "POST", "/v1/tokens/999/revoke", d.admin, NULL, 404, "token_not_found",
                      NULL);
    call_expect_error(&d, "POST", path, viewer, NULL, 403, "insufficient_role", NULL);
    /* root (id 1) is the only active admin */
    call_expect_error(&d, "POST", "/v1/tokens/1/revoke", d.admin, NULL, 409, "last_admin_token",
                      NULL);

    /* An open event stream of the viewer ends when the viewer is revoked. */
    http_reply *job =
        expect_ok(http(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\"}", NULL));
    char stream_path[96], text[8192];
    snprintf(stream_path, sizeof stream_path, "/v1/jobs/%lld/stream",
             (long long)reply_int(job, "id"));
    reply_free(job);
    int fd = open_stream(&d, stream_path, viewer, text, sizeof text);
    ck_assert_msg(strncmp(text, "HTTP/1.1 200", 12) == 0, "%s", text);

    /* rlhfctl tokens revoke */
    char rlhfctl[4096], url[64], id[24], out[4096];
    bin_path("rlhfctl", rlhfctl, sizeof rlhfctl);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    snprintf(id, sizeof id, "%lld", (long long)viewer_id);
    char *argv[] = {rlhfctl, "--url", url, "--token", d.admin, "tokens", "revoke", id, NULL};
    ck_assert_int_eq(run_capture(argv, out, sizeof out), 0);
    call_expect_error(&d, "GET", "/v1/jobs", viewer, NULL, 401, "invalid_api_key", NULL);
    read_to_close(fd, text, sizeof text);
    ck_assert_msg(strstr(text, "event: error\ndata: {\"error\":") != NULL &&
                      strstr(text, "\"code\":\"invalid_api_key\"") != NULL,
                  "%s", text);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM api_tokens WHERE revoked_at IS NOT NULL", 0),
                     2);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- threads, keep-alive, IPv6 ------------------------------------------------------- */

/* Two HTTP threads, six open event streams (parked, not holding a thread):
 * the daemon still answers, and SIGTERM ends the streams and exits 0. */
START_TEST(test_streams_do_not_hold_threads) {
    test_daemon d;
    daemon_init(&d);
    char worker[160];
    write_idle_worker(&d, worker, sizeof worker);
    daemon_start(&d, "--train-bin", worker, "--http-threads", "2", NULL);
    http_reply *job =
        expect_ok(http(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\"}", NULL));
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/stream", (long long)reply_int(job, "id"));
    reply_free(job);
    enum { N_STREAMS = 6 };
    int fds[N_STREAMS];
    char text[N_STREAMS][4096];
    for (int i = 0; i < N_STREAMS; i++) {
        fds[i] = open_stream(&d, path, d.admin, text[i], sizeof text[i]);
        ck_assert_msg(strncmp(text[i], "HTTP/1.1 200", 12) == 0, "%s", text[i]);
    }
    /* Keep-alive: two requests on one libcurl handle share one connection. */
    CURL *c = curl_easy_init();
    char url[96];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/healthz", d.port);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, fwrite);
    FILE *null = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, null);
    long connects = -1, status = 0;
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(curl_easy_perform(c), CURLE_OK);
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(c, CURLINFO_NUM_CONNECTS, &connects);
        ck_assert_int_eq(status, 200);
    }
    ck_assert_int_eq(connects, 0); /* the second request opened no connection */
    curl_easy_cleanup(c);
    fclose(null);
    reply_free(expect_ok(http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL)));
    kill(d.pid, SIGTERM);
    for (int i = 0; i < N_STREAMS; i++)
        read_to_close(fds[i], text[i], sizeof text[i]);
    ck_assert_int_eq(daemon_wait(&d), 0);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_ipv6_listen) {
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 a = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    int have_ipv6 = probe >= 0 && bind(probe, (struct sockaddr *)&a, sizeof a) == 0;
    if (probe >= 0)
        close(probe);
    if (!have_ipv6) {
        test_skip("no ::1 on this machine");
        return;
    }
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--listen", "[::1]:0", NULL);
    ck_assert(d.ipv6);
    http_reply *r = expect_ok(http(&d, "GET", "/v1/tokens", d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);
    daemon_stop(&d);
    char rlhfd[4096], out[256];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    const char *bad[] = {"[::1]", "::1:80", "[::g]:80", "[::1]:70000", "[]:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {rlhfd, "--db", d.db, "--listen", (char *)bad[i], NULL};
        ck_assert_msg(run_capture(argv, out, sizeof out) == 2, "--listen %s accepted", bad[i]);
    }
    daemon_cleanup(&d);
}
END_TEST

/* --listen takes a host name, resolved at start: localhost means 127.0.0.1
 * (the first IPv4 address) even where it also means ::1. */
START_TEST(test_hostname_listen) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--listen", "localhost:0", NULL);
    ck_assert(!d.ipv6);
    reply_free(expect_ok(http(&d, "GET", "/v1/tokens", d.admin, NULL, NULL)));
    daemon_stop(&d);
    char rlhfd[4096], out[256];
    bin_path("rlhfd", rlhfd, sizeof rlhfd);
    const char *bad[] = {":80", "localhost:", "localhost:x", "local:host:80"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {rlhfd, "--db", d.db, "--listen", (char *)bad[i], NULL};
        ck_assert_msg(run_capture(argv, out, sizeof out) == 2, "--listen %s accepted", bad[i]);
    }
    daemon_cleanup(&d);
}
END_TEST

/* ---- next under concurrency -------------------------------------------------------------- */

enum { N_NEXT = 8 };

typedef struct next_client {
    const test_daemon *d;
    char path[128], token[128];
    pthread_barrier_t *start;
    long status;
    int64_t id;
} next_client;

/* A daemon without a write rate limit and a project (k 2, overlap 1): its
 * id, and its comparisons' path in cpath. */
static int64_t daemon_with_project(test_daemon *d, char cpath[96]) {
    daemon_init(d);
    daemon_start(d, "--write-rate", "0", NULL);
    http_reply *r = expect_ok(
        http(d, "POST", "/v1/projects", d->admin, "{\"name\":\"p\",\"k\":2,\"overlap\":1}", NULL));
    const int64_t project = reply_int(r, "id");
    reply_free(r);
    snprintf(cpath, 96, "/v1/projects/%lld/comparisons", (long long)project);
    return project;
}

static void *call_next(void *arg) {
    next_client *c = arg;
    pthread_barrier_wait(c->start);
    http_reply *r = http(c->d, "GET", c->path, c->token, NULL, NULL);
    c->status = r->status;
    c->id = json_integer_value(json_object_get(r->json, "id"));
    reply_free(r);
    return NULL;
}

/* N annotators ask for the next item at once in a project of N items with
 * overlap 1: every one gets a different item (the pick and the lease are
 * one transaction of the group-commit writer), asking again returns the
 * same one, and one more annotator finds nothing left. */
START_TEST(test_next_concurrent_distinct) {
    test_daemon d;
    char path[96];
    daemon_with_project(&d, path);
    http_reply *r;
    for (int i = 0; i < N_NEXT; i++)
        reply_free(expect_ok(http(&d, "POST", path, d.admin,
                                  "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                                  "\"b\"}]}",
                                  NULL)));
    static next_client clients[N_NEXT];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, N_NEXT);
    pthread_t threads[N_NEXT];
    for (int i = 0; i < N_NEXT; i++) {
        char name[32];
        snprintf(name, sizeof name, "annotator%d", i);
        clients[i] = (next_client){.d = &d, .start = &start};
        make_token(&d, name, "annotator", clients[i].token);
        snprintf(clients[i].path, sizeof clients[i].path, "%s/next", path);
    }
    for (int i = 0; i < N_NEXT; i++)
        ck_assert_int_eq(pthread_create(&threads[i], NULL, call_next, &clients[i]), 0);
    for (int i = 0; i < N_NEXT; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N_NEXT; i++) {
        ck_assert_int_eq(clients[i].status, 200);
        for (int j = 0; j < i; j++)
            ck_assert_msg(clients[i].id != clients[j].id, "annotators %d and %d both got %lld", i,
                          j, (long long)clients[i].id);
        r = expect_ok(http(&d, "GET", clients[i].path, clients[i].token, NULL, NULL));
        ck_assert_int_eq(reply_int(r, "id"), clients[i].id);
        reply_free(r);
    }
    char late[128];
    make_token(&d, "late", "annotator", late);
    call_expect_error(&d, "GET", clients[0].path, late, NULL, 404, "no_comparison_available", NULL);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparison_leases", 0), N_NEXT);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- group commit and kill -9 ------------------------------------------------------------ */

enum { N_WRITERS = 8, PER_WRITER = 40 };

typedef struct ranking_client {
    const test_daemon *d;
    const char *token;
    int64_t comparisons[PER_WRITER][3]; /* comparison id, better, worse candidate */
    int64_t acked[PER_WRITER];          /* ranking ids answered 200 */
    int n_acked;
    atomic_int *total_acked;
} ranking_client;

static size_t keep_body(char *data, size_t size, size_t n, void *arg) {
    char *buf = arg;
    size_t used = strlen(buf), len = size * n;
    size_t take = len < 4095 - used ? len : 4095 - used;
    memcpy(buf + used, data, take);
    buf[used + take] = '\0';
    return len;
}

/* Posts its rankings on one keep-alive connection until done or the daemon
 * is gone; records what was acknowledged. No assertions here (a thread). */
static void *post_rankings(void *arg) {
    ranking_client *c = arg;
    CURL *curl = curl_easy_init();
    char auth[192];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    for (int i = 0; i < PER_WRITER; i++) {
        char url[128], body[128], reply[4096] = "";
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/comparisons/%lld/rankings", c->d->port,
                 (long long)c->comparisons[i][0]);
        snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)c->comparisons[i][1],
                 (long long)c->comparisons[i][2]);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
        if (curl_easy_perform(curl) != CURLE_OK)
            break; /* killed */
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        json_t *j = json_loads(reply, 0, NULL);
        if (status == 200)
            c->acked[c->n_acked++] = json_integer_value(json_object_get(j, "id"));
        json_decref(j);
        if (status != 200)
            break;
        atomic_fetch_add(c->total_acked, 1);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return NULL;
}

START_TEST(test_group_commit_survives_kill9) {
    test_daemon d;
    char cpath[96];
    daemon_with_project(&d, cpath);
    http_reply *r;
    static ranking_client clients[N_WRITERS];
    char tokens[N_WRITERS][128];
    atomic_int total = 0;
    for (int w = 0; w < N_WRITERS; w++) {
        char name[32];
        snprintf(name, sizeof name, "annotator%d", w);
        make_token(&d, name, "annotator", tokens[w]);
        clients[w] = (ranking_client){.d = &d, .token = tokens[w], .total_acked = &total};
        for (int i = 0; i < PER_WRITER; i++) {
            r = expect_ok(http(&d, "POST", cpath, d.admin,
                               "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                               "\"b\"}]}",
                               NULL));
            json_t *cands = json_object_get(r->json, "candidates");
            clients[w].comparisons[i][0] = reply_int(r, "id");
            /* better = the second candidate, so the order is not positional */
            clients[w].comparisons[i][1] =
                json_integer_value(json_object_get(json_array_get(cands, 1), "id"));
            clients[w].comparisons[i][2] =
                json_integer_value(json_object_get(json_array_get(cands, 0), "id"));
            reply_free(r);
        }
    }
    pthread_t threads[N_WRITERS];
    for (int w = 0; w < N_WRITERS; w++)
        ck_assert_int_eq(pthread_create(&threads[w], NULL, post_rankings, &clients[w]), 0);
    /* Kill -9 in the middle of the stream of writes. */
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (atomic_load(&total) < N_WRITERS * PER_WRITER / 3) {
        ck_assert_msg(now_ms() < deadline, "only %d rankings acknowledged", atomic_load(&total));
        pause_ms(1);
    }
    kill(d.pid, SIGKILL);
    for (int w = 0; w < N_WRITERS; w++)
        pthread_join(threads[w], NULL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    /* Every acknowledged ranking is stored, with its pair (better, worse). */
    int acked = 0;
    for (int w = 0; w < N_WRITERS; w++)
        for (int i = 0; i < clients[w].n_acked; i++, acked++) {
            int64_t id = clients[w].acked[i];
            ck_assert_int_eq(db_int(&d,
                                    "SELECT count(*) FROM rankings k JOIN comparisons c ON c.id = "
                                    "k.comparison_id WHERE k.id = ?1 AND k.skipped = 0",
                                    id),
                             1);
            ck_assert_int_eq(db_int(&d,
                                    "SELECT chosen_candidate_id FROM preference_pairs WHERE "
                                    "ranking_id = ?1",
                                    id),
                             clients[w].comparisons[i][1]);
        }
    ck_assert_int_ge(acked, N_WRITERS * PER_WRITER / 3);
    ck_assert_int_ge(db_int(&d, "SELECT count(*) FROM rankings", 0), acked);
    /* The restarted daemon serves them. */
    daemon_start(&d, NULL);
    char path[96];
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings",
             (long long)clients[0].comparisons[0][0]);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *server_limits_suite(void) {
    Suite *s = suite_create("server_limits");
    TCase *unit = tcase_create("unit");
    tcase_add_test(unit, test_rate_limiter_bucket);
    suite_add_tcase(s, unit);
    TCase *http_tc = tcase_create("http");
    tcase_add_test(http_tc, test_rate_limit_http);
    tcase_add_test(http_tc, test_token_revocation);
    tcase_add_test(http_tc, test_streams_do_not_hold_threads);
    tcase_add_test(http_tc, test_ipv6_listen);
    tcase_add_test(http_tc, test_hostname_listen);
    tcase_add_test(http_tc, test_group_commit_survives_kill9);
    tcase_add_test(http_tc, test_next_concurrent_distinct);
    tcase_set_timeout(http_tc, 120);
    suite_add_tcase(s, http_tc);
    return s;
}
