/* rlhfd against one hostile or careless client (issue 13): a connection
 * flood, slow senders, and requests libmicrohttpd would pass on leniently
 * (NUL bytes, duplicate framing headers, out-of-range numbers). Raw sockets
 * on loopback, since curl normalises what these tests send; flood
 * connections come from other loopback addresses (127.0.0.2, ...) so that
 * the per-address limit and the total limit can be told apart. Deadlines
 * are short settings of the daemon under test; every wait is a poll with
 * DEADLINE_MS as its bound, and nothing asserts a latency.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* ---- raw connections ----------------------------------------------------- */

/* A connection to the daemon from the loopback address from. */
static int raw_connect(const test_daemon *d, const char *from) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    ck_assert_int_ge(fd, 0);
    struct sockaddr_in local = {.sin_family = AF_INET};
    inet_pton(AF_INET, from, &local.sin_addr);
    ck_assert_msg(bind(fd, (struct sockaddr *)&local, sizeof local) == 0, "bind %s: %s", from,
                  strerror(errno));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    ck_assert_msg(connect(fd, (struct sockaddr *)&a, sizeof a) == 0, "connect: %s",
                  strerror(errno));
    return fd;
}

static void send_all(int fd, const char *bytes, size_t n) {
    ck_assert_int_eq(send(fd, bytes, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* Reads what the server sends until it closes the connection (EOF or a
 * reset), into out; closes fd. Returns the bytes read. */
static size_t await_close(int fd, char *out, size_t len) {
    out[0] = '\0';
    read_to_close(fd, out, len);
    return strlen(out);
}

/* One raw request (n bytes) on a new connection from 127.0.0.1; the
 * response's status, its JSON body into *body (caller frees; NULL if none)
 * and the whole response into text. */
static int raw_request(const test_daemon *d, const char *req, size_t n, json_t **body, char *text,
                       size_t len) {
    int fd = raw_connect(d, "127.0.0.1");
    send_all(fd, req, n);
    await_close(fd, text, len);
    int status = 0;
    ck_assert_msg(sscanf(text, "HTTP/1.1 %d", &status) == 1, "no status line: '%s'", text);
    /* the body follows the last head: for a Content-Length it refuses,
     * libmicrohttpd 0.9.75 sends its status line and headers twice (a bug
     * of the library's, with its own HTML body as with rlhfd's JSON) */
    const char *json = NULL;
    for (const char *end = strstr(text, "\r\n\r\n"); end != NULL; end = strstr(end + 4, "\r\n\r\n"))
        json = end;
    *body = json ? json_loads(json + 4, 0, NULL) : NULL;
    return status;
}

/* A raw request expected to be refused with the JSON error shape: status,
 * code and param (NULL: null; a prefix ending in '*': any param so
 * beginning). */
static void expect_raw_error(const test_daemon *d, const char *req, size_t n, int status,
                             const char *code, const char *param) {
    char text[8192];
    json_t *body = NULL;
    int got = raw_request(d, req, n, &body, text, sizeof text);
    ck_assert_msg(got == status, "%d instead of %d for '%.200s': %s", got, status, req, text);
    ck_assert_msg(strstr(text, "<html>") == NULL, "an HTML body: %s", text);
    ck_assert_msg(strstr(text, "Content-Type: application/json\r\n") != NULL, "%s", text);
    json_t *err = json_object_get(body, "error");
    ck_assert_msg(json_is_object(err), "not the JSON error shape: %s", text);
    ck_assert_str_eq(json_string_value(json_object_get(err, "code")), code);
    ck_assert_ptr_nonnull(json_string_value(json_object_get(err, "message")));
    ck_assert_ptr_nonnull(json_string_value(json_object_get(err, "type")));
    json_t *p = json_object_get(err, "param");
    size_t prefix = param ? strcspn(param, "*") : 0;
    if (param == NULL)
        ck_assert_msg(json_is_null(p), "param should be null: %s", text);
    else if (param[prefix] == '*')
        ck_assert_msg(json_is_string(p) && strncmp(json_string_value(p), param, prefix) == 0, "%s",
                      text);
    else
        ck_assert_str_eq(json_string_value(p), param);
    json_decref(body);
}

/* A well-formed request on the same daemon is still served; then it stops. */
static void serves_then_stop(test_daemon *d) {
    http_reply *r = http(d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    daemon_stop(d);
    daemon_cleanup(d);
}

#define RAW(d, literal, status, code, param)                                                       \
    expect_raw_error(d, literal, sizeof literal - 1, status, code, param)

/* ---- strict HTTP ---------------------------------------------------------- */

START_TEST(test_strict_http) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char req[1024];
    int n;
    /* %00 no longer cuts the path short: this was served as /healthz */
    RAW(&d, "GET /healthz%00/../v1/tokens HTTP/1.1\r\nHost: x\r\n\r\n", 400,
        "invalid_request_target", NULL);
    RAW(&d, "GET /healthz%zz HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_target", NULL);
    RAW(&d, "GET /healthz%0a HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_target", NULL);
    RAW(&d, "GET /v1/jobs?after=1%00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_target",
        NULL);
    /* a raw NUL inside the request target */
    RAW(&d, "GET /healthz\0/x HTTP/1.1\r\nHost: x\r\n\r\n", 400, "invalid_request_target", NULL);
    /* a NUL in Authorization is refused, not read as the token before it */
    n = snprintf(req, sizeof req, "GET /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s",
                 d.admin);
    memcpy(req + n, "\0junk\r\n\r\n", 9);
    expect_raw_error(&d, req, (size_t)n + 9, 400, "invalid_header", "Authorization");
    /* ... also as the last header, and with nothing after the NUL */
    memcpy(req + n, "\0\r\nX-After: 1\r\n\r\n", 17);
    expect_raw_error(&d, req, (size_t)n + 17, 400, "invalid_header", "Authorization");
    RAW(&d,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Ctl: a\x01"
        "b\r\n\r\n",
        400, "invalid_header", "X-Ctl");
    /* (libmicrohttpd appends a folded line to the header's name: the param
     * shows what it made of it) */
    RAW(&d, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n", 400, "invalid_header",
        "X-Folded*");
    /* framing: one Content-Length, or chunked alone */
    RAW(&d,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 30\r\n\r\n{}",
        400, "invalid_header", "Content-Length");
    RAW(&d,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",
        400, "invalid_header", "Content-Length");
    RAW(&d,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nTransfer-Encoding: "
        "chunked\r\n\r\n{}",
        400, "invalid_header", "Transfer-Encoding");
    RAW(&d, "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n{}", 400,
        "invalid_header", "Transfer-Encoding");
    /* exactly one Host in HTTP/1.1 (RFC 9112 3.2); HTTP/1.0 needs none */
    RAW(&d, "GET /healthz HTTP/1.1\r\n\r\n", 400, "invalid_header", "Host");
    RAW(&d, "GET /healthz HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n", 400, "invalid_header", "Host");
    {
        char text[1024];
        json_t *body = NULL;
        ck_assert_int_eq(
            raw_request(&d, "GET /healthz HTTP/1.0\r\n\r\n", 26, &body, text, sizeof text), 200);
        json_decref(body);
    }
    /* out-of-range numbers are refused, naming the parameter, not clamped
     * (job 1 exists, finished, for the routes that look it up first) */
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) VALUES "
                 "(1, 'x', 'succeeded', '{}', 1, 0)");
    const char *bad_numbers[][2] = {
        {"/v1/jobs/9223372036854775808", "id"},
        {"/v1/jobs/99999999999999999999999", "id"},
        {"/v1/jobs?after=9223372036854775808", "after"},
        {"/v1/jobs?after=+5", "after"},
        {"/v1/jobs?after=%205", "after"},
        {"/v1/jobs?limit=18446744073709551621", "limit"},
        {"/v1/jobs/1/metrics?after_step=9223372036854775808", "after_step"},
    };
    for (size_t i = 0; i < sizeof bad_numbers / sizeof bad_numbers[0]; i++) {
        n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: "
                     "Bearer %s\r\n\r\n",
                     bad_numbers[i][0], d.admin);
        expect_raw_error(&d, req, (size_t)n, 400, "invalid_value", bad_numbers[i][1]);
    }
    n = snprintf(req, sizeof req,
                 "GET /v1/jobs/1/stream HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 "Authorization: Bearer %s\r\nLast-Event-ID: 9223372036854775808\r\n\r\n",
                 d.admin);
    expect_raw_error(&d, req, (size_t)n, 400, "invalid_value", "Last-Event-ID");
    /* the largest id is an id: looked up, not refused */
    call_expect_error(&d, "GET", "/v1/jobs/9223372036854775807", d.admin, NULL, 404,
                      "job_not_found", NULL);
    /* the auth scheme is case-insensitive (RFC 9110 11.1) */
    const char *schemes[] = {"bearer", "BEARER", "bEaReR"};
    for (size_t i = 0; i < 3; i++) {
        char header[192];
        snprintf(header, sizeof header, "Authorization: %s %s", schemes[i], d.admin);
        http_reply *r = http(&d, "GET", "/v1/tokens", NULL, NULL, header);
        ck_assert_msg(r->status == 200, "%s: %ld %s", schemes[i], r->status, r->body);
        reply_free(r);
    }
    call_expect_error(&d, "GET", "/v1/tokens", NULL, NULL, 401, "missing_api_key", NULL);
    /* oversized heads are refused in the JSON shape (by rlhfd, or past
     * its memory by libmicrohttpd, rewritten): a target over
     * max_target_bytes (8 KiB), header lines over max_header_bytes (32
     * KiB), also at 6x that limit; just under the limit is served */
    const size_t big_len = 200 * 1024;
    char *big = malloc(big_len + 256);
    ck_assert_ptr_nonnull(big);
    n = snprintf(big, 64, "GET /healthz?q=");
    memset(big + n, 'a', 8192);
    n += 8192;
    n += snprintf(big + n, 64, " HTTP/1.1\r\nHost: x\r\n\r\n");
    expect_raw_error(&d, big, (size_t)n, 414, "uri_too_long", NULL);
    const size_t header_sizes[] = {32768 - 100, 40 * 1024, big_len};
    for (size_t i = 0; i < 3; i++) {
        n = snprintf(big, 64, "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ");
        memset(big + n, 'a', header_sizes[i]);
        n += (int)header_sizes[i];
        n += snprintf(big + n, 64, "\r\nConnection: close\r\n\r\n");
        if (i == 0) { /* just under: served */
            char text[1024];
            json_t *body = NULL;
            ck_assert_int_eq(raw_request(&d, big, (size_t)n, &body, text, sizeof text), 200);
            json_decref(body);
        } else {
            expect_raw_error(&d, big, (size_t)n, 431, "headers_too_large", NULL);
        }
    }
    free(big);
    serves_then_stop(&d);
}
END_TEST

/* What libmicrohttpd refuses before any callback of rlhfd runs comes back
 * in the JSON error shape too (server/mhd_errors.c); 0.9.75 sent HTML. */
START_TEST(test_mhd_errors_json) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    /* a request line with a fourth part, a header line without a colon */
    RAW(&d, "GET /healthz HTTP/1.1 extra\r\nHost: x\r\n\r\n", 400, "malformed_request", NULL);
    RAW(&d, "GET /healthz HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n", 400, "malformed_request",
        NULL);
    /* Content-Length: not digits; beyond 2^64 */
    RAW(&d, "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 12a\r\n\r\n", 400,
        "invalid_header", "Content-Length");
    RAW(&d,
        "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n",
        413, "content_length_too_large", "Content-Length");
    /* HTTP versions: unknown, too old */
    RAW(&d, "GET /healthz HTTP/2.5\r\nHost: x\r\n\r\n", 505, "http_version_not_supported", NULL);
    RAW(&d, "GET /healthz HTTP/0.9\r\n\r\n", 505, "http_version_not_supported", NULL);
    /* chunked bodies (the token is accepted, so libmicrohttpd reads the
     * body): a chunk size that is not hex, a chunk not ended by CRLF, a
     * chunk size beyond 2^64 */
    const char *bodies[] = {"zz\r\n", "2\r\n{}XX", "ffffffffffffffffffff\r\n"};
    const int statuses[] = {400, 400, 413};
    const char *codes[] = {"malformed_chunked_encoding", "malformed_chunked_encoding",
                           "chunk_too_large"};
    char req[512];
    for (size_t i = 0; i < 3; i++) {
        int n = snprintf(req, sizeof req,
                         "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                         "Transfer-Encoding: chunked\r\n\r\n%s",
                         d.admin, bodies[i]);
        expect_raw_error(&d, req, (size_t)n, statuses[i], codes[i], NULL);
    }
    /* header lines within --max-header-bytes (32 KiB) but so many that
     * their records outgrow libmicrohttpd's memory: its own 431 */
    const size_t lines = 4000;
    char *many = malloc(64 + lines * 6);
    ck_assert_ptr_nonnull(many);
    int n = snprintf(many, 64, "GET /healthz HTTP/1.1\r\nHost: x\r\n");
    for (size_t i = 0; i < lines; i++)
        memcpy(many + n, "a: b\r\n", 6), n += 6;
    memcpy(many + n, "\r\n", 2), n += 2;
    expect_raw_error(&d, many, (size_t)n, 431, "headers_too_large", NULL);
    free(many);
    serves_then_stop(&d);
}
END_TEST

/* ---- slow senders --------------------------------------------------------- */

/* Sends one byte of a header line whenever the server has said nothing for
 * 100 ms, until it answers or closes; then reads to the close. */
static size_t drip_until_closed(int fd, char *out, size_t len) {
    static const char drip[] =
        "X-Drip: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    size_t sent = 0;
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        ck_assert_msg(now_ms() < deadline, "a slow sender was never cut");
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 100) > 0)
            break;
        if (send(fd, drip + sent % (sizeof drip - 1), 1, MSG_NOSIGNAL) != 1)
            break; /* already closed */
        sent++;
    }
    return await_close(fd, out, len);
}

START_TEST(test_slow_senders_cut) {
    test_daemon d;
    daemon_init(&d);
    /* The idle timeout (60 s) never fires for a dripping sender; the
     * header deadline must. */
    daemon_start(&d, "--header-timeout-ms", "500", "--body-timeout-ms", "500", NULL);
    char out[4096];
    int fd = raw_connect(&d, "127.0.0.1");
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n", 32);
    size_t got = drip_until_closed(fd, out, sizeof out);
    if (got > 0) { /* a reset may beat the answer to the client */
        ck_assert_msg(strncmp(out, "HTTP/1.1 408", 12) == 0, "%s", out);
        ck_assert_ptr_nonnull(strstr(out, "\"code\":\"request_timeout\""));
    }
    /* a body that stops arriving */
    char req[512];
    int n = snprintf(req, sizeof req,
                     "POST /v1/tokens HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"name\":",
                     d.admin);
    fd = raw_connect(&d, "127.0.0.1");
    send_all(fd, req, (size_t)n);
    got = await_close(fd, out, sizeof out);
    ck_assert_msg(got > 0 && strncmp(out, "HTTP/1.1 408", 12) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "no part of the request body arrived"));
    /* an idle keep-alive connection is a connection that sends no headers */
    fd = raw_connect(&d, "127.0.0.1");
    send_all(fd, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 35);
    got = await_close(fd, out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "HTTP/1.1 408"));
    /* nothing was created by the cut request */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM api_tokens", 0), 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- a connection flood --------------------------------------------------- */

enum { FLOOD_ADDRESSES = 4, PER_ADDRESS = 6 };

START_TEST(test_connection_flood) {
    test_daemon d;
    daemon_init(&d);
    /* 8 connections served, at most 4 from one address, 4 spare ones for
     * health probes and refusals; flood connections get 1 s for headers */
    daemon_start(&d, "--max-connections", "8", "--max-connections-per-ip", "4",
                 "--spare-connections", "4", "--header-timeout-ms", "1000", NULL);
    /* 24 connections from 127.0.0.2-5, each with an unfinished request */
    int flood[FLOOD_ADDRESSES * PER_ADDRESS];
    for (int a = 0; a < FLOOD_ADDRESSES; a++)
        for (int i = 0; i < PER_ADDRESS; i++) {
            char from[24];
            snprintf(from, sizeof from, "127.0.0.%d", 2 + a);
            int fd = raw_connect(&d, from);
            send_all(fd, "GET /v1/jobs HTTP/1.1\r\n", 23);
            flood[a * PER_ADDRESS + i] = fd;
        }
    /* a health probe is answered during the flood */
    http_reply *r = http(&d, "GET", "/healthz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    r = http(&d, "GET", "/readyz", NULL, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    /* any other request is served or refused at once with 503 + Retry-After */
    r = http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL);
    ck_assert_msg(r->status == 200 || r->status == 503, "%ld %s", r->status, r->body);
    if (r->status == 503) {
        expect_error(r, 503, "too_many_connections", NULL);
        ck_assert_str_eq(r->retry_after, "1");
    }
    reply_free(r);
    /* every flood connection is closed: pushed out with 503 or cut with 408
     * at its header deadline (each sends a header byte now and then) */
    int refused = 0, cut = 0;
    for (int i = 0; i < FLOOD_ADDRESSES * PER_ADDRESS; i++) {
        char out[4096];
        if (drip_until_closed(flood[i], out, sizeof out) == 0)
            continue; /* reset before the answer arrived */
        ck_assert_msg(strstr(out, "\"code\":\"too_many_connections\"") != NULL ||
                          strstr(out, "\"code\":\"request_timeout\"") != NULL,
                      "%s", out);
        if (strncmp(out, "HTTP/1.1 503", 12) == 0) {
            ck_assert_ptr_nonnull(strstr(out, "Retry-After: 1\r\n"));
            refused++;
        }
        cut += strncmp(out, "HTTP/1.1 408", 12) == 0;
    }
    /* 8 were admitted and 4 held spare: the rest were pushed out (503),
     * and those that stayed were cut at their deadline (408) */
    ck_assert_int_ge(cut, 1);
    ck_assert_int_ge(refused, 1);
    /* once the flood is gone, requests are served again (the daemon counts
     * a connection out when libmicrohttpd has closed it: poll for that) */
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        r = http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL);
        long status = r->status;
        reply_free(r);
        if (status == 200)
            break;
        ck_assert_msg(status == 503 && now_ms() < deadline, "status %ld after the flood", status);
        pause_ms(20);
    }
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* One address over its share gets 429 (others are not affected). */
START_TEST(test_per_address_limit) {
    test_daemon d;
    daemon_init(&d);
    /* held connections stay for the whole test (the flood test sees them cut) */
    daemon_start(&d, "--max-connections-per-ip", "2", "--header-timeout-ms", "30000", NULL);
    int held[2];
    for (int i = 0; i < 2; i++) {
        held[i] = raw_connect(&d, "127.0.0.2");
        send_all(held[i], "GET /v1/jobs HTTP/1.1\r\n", 23);
    }
    /* the third from 127.0.0.2 asks for a route: refused with 429 */
    char req[512], out[4096];
    int n =
        snprintf(req, sizeof req,
                 "GET /v1/jobs HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n", d.admin);
    /* a health probe from the same address is still answered (and once it
     * is, the daemon has accepted the two before it) */
    int probe = raw_connect(&d, "127.0.0.2");
    send_all(probe, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 53);
    await_close(probe, out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 200", 12) == 0, "%s", out);
    int third = raw_connect(&d, "127.0.0.2");
    send_all(third, req, (size_t)n);
    await_close(third, out, sizeof out);
    ck_assert_msg(strncmp(out, "HTTP/1.1 429", 12) == 0, "%s", out);
    ck_assert_ptr_nonnull(strstr(out, "Retry-After: 1\r\n"));
    ck_assert_ptr_nonnull(strstr(out, "\"code\":\"too_many_connections\""));
    /* 127.0.0.1 is not affected */
    http_reply *r = http(&d, "GET", "/v1/jobs", d.admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    for (int i = 0; i < 2; i++)
        close(held[i]);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *hostile_suite(void) {
    Suite *s = suite_create("hostile");
    TCase *tc = tcase_create("hostile");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_strict_http);
    tcase_add_test(tc, test_mhd_errors_json);
    tcase_add_test(tc, test_slow_senders_cut);
    tcase_add_test(tc, test_connection_flood);
    tcase_add_test(tc, test_per_address_limit);
    suite_add_tcase(s, tc);
    return s;
}
