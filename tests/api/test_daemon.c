/* rlhfd as a program: where its settings come from (flags, a JSON file, the
 * environment; a bad one exits 2 before serving), and what it listens on
 * (IPv6 loopback, a host name).
 */
#include <arpa/inet.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

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

Suite *daemon_suite(void) {
    Suite *s = suite_create("daemon");
    TCase *tc = tcase_create("daemon");
    tcase_add_test(tc, test_config_sources);
    tcase_add_test(tc, test_ipv6_listen);
    tcase_add_test(tc, test_hostname_listen);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
