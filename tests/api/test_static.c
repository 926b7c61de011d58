/* rlhfd's static files (server/static.c): the path rules by themselves, then
 * a real daemon serving a web root built by the test, asked with raw HTTP
 * requests so that no client library normalises the paths under test ("..",
 * percent-encoded dots and slashes). */
#include <arpa/inet.h>
#include <check.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"
#include "suites.h"
#include "test_server_util.h"

START_TEST(test_static_path_rules) {
    const char *ok[] = {"app.js", "uPlot.esm.js", "sub/deep.json", "a.b.c", "x..y", NULL};
    for (int i = 0; ok[i]; i++)
        ck_assert_msg(static_path_ok(ok[i]), "'%s' should be accepted", ok[i]);
    const char *bad[] = {"",        "..",       ".",     "../x",   "a/../b", "a/./b",
                         ".hidden", "sub/.git", "a//b",  "a/",     "/etc",   "a\\b",
                         "c:x",     "a\x01b",   "a\x7f", "sub/..", NULL};
    for (int i = 0; bad[i]; i++)
        ck_assert_msg(!static_path_ok(bad[i]), "'%s' should be refused", bad[i]);
    ck_assert(!static_path_ok(NULL));
    ck_assert_str_eq(static_content_type("index.html"), "text/html; charset=utf-8");
    ck_assert_str_eq(static_content_type("a/app.js"), "text/javascript; charset=utf-8");
    ck_assert_str_eq(static_content_type("app.css"), "text/css; charset=utf-8");
    ck_assert_str_eq(static_content_type("x.json"), "application/json");
    ck_assert_str_eq(static_content_type("dir.js/file"), "application/octet-stream");
    ck_assert_str_eq(static_content_type("README"), "application/octet-stream");
}
END_TEST

/* One request over a fresh connection, the path sent as is. The whole
 * response (head and body) into out; returns the status. */
static int raw_get(const test_daemon *d, const char *method, const char *path, const char *header,
                   char *out, size_t len) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)d->port)};
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ck_assert_int_eq(connect(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%s%sConnection: close\r\n\r\n", method,
                     path, header ? header : "", header ? "\r\n" : "");
    ck_assert_int_eq(write(fd, req, (size_t)n), n);
    size_t used = 0;
    ssize_t got;
    while (used + 1 < len && (got = read(fd, out + used, len - 1 - used)) > 0)
        used += (size_t)got;
    out[used] = '\0';
    close(fd);
    int status = 0;
    ck_assert_msg(sscanf(out, "HTTP/1.1 %d", &status) == 1, "no status line: '%.80s'", out);
    return status;
}

/* The value of a response header (case-insensitive name), or "". */
static void header_value(const char *resp, const char *name, char *out, size_t len) {
    out[0] = '\0';
    size_t n = strlen(name);
    for (const char *line = strstr(resp, "\r\n"); line && strncmp(line, "\r\n\r\n", 4) != 0;
         line = strstr(line + 2, "\r\n")) {
        if (strncasecmp(line + 2, name, n) == 0 && line[2 + n] == ':') {
            const char *v = line + 3 + n;
            while (*v == ' ')
                v++;
            snprintf(out, len, "%.*s", (int)strcspn(v, "\r\n"), v);
            return;
        }
    }
}

static const char *body_of(const char *resp) {
    const char *b = strstr(resp, "\r\n\r\n");
    return b ? b + 4 : "";
}

static void write_file(const char *dir, const char *name, const char *text) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

#define SECRET "TOP-SECRET-OUTSIDE-THE-WEB-ROOT"

START_TEST(test_static_files_served) {
    test_daemon d;
    daemon_init(&d);
    char root[128], sub[160], flag[200];
    snprintf(root, sizeof root, "%s/web", d.dir);
    snprintf(sub, sizeof sub, "%s/sub", root);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(sub, 0755), 0);
    write_file(root, "index.html", "<!doctype html><title>t</title>");
    write_file(root, "app.js", "export const x = 1;\n");
    write_file(root, "app.css", "body{}\n");
    write_file(root, ".secret", SECRET);
    write_file(sub, "deep.json", "{\"deep\":true}");
    write_file(d.dir, "outside.txt", SECRET);
    char link[200];
    snprintf(link, sizeof link, "%s/escape.txt", root);
    ck_assert_int_eq(symlink("../outside.txt", link), 0);
    snprintf(link, sizeof link, "%s/sub/escape", root);
    ck_assert_int_eq(symlink("/etc", link), 0);
    snprintf(link, sizeof link, "%s/alias.js", root);
    ck_assert_int_eq(symlink("app.js", link), 0); /* inside: fine */
    snprintf(flag, sizeof flag, "%s", root);
    daemon_start(&d, "--web-root", flag, NULL);

    static char resp[1 << 16];
    char v[512];
    ck_assert_int_eq(raw_get(&d, "GET", "/", NULL, resp, sizeof resp), 200);
    header_value(resp, "Content-Type", v, sizeof v);
    ck_assert_str_eq(v, "text/html; charset=utf-8");
    ck_assert_str_eq(body_of(resp), "<!doctype html><title>t</title>");
    header_value(resp, "Cache-Control", v, sizeof v);
    ck_assert_str_eq(v, "no-cache");
    header_value(resp, "Content-Security-Policy", v, sizeof v);
    ck_assert_msg(strstr(v, "script-src 'self'") != NULL, "CSP '%s'", v);
    header_value(resp, "X-Content-Type-Options", v, sizeof v);
    ck_assert_str_eq(v, "nosniff");

    struct {
        const char *path, *type, *body;
    } files[] = {
        {"/assets/app.js", "text/javascript; charset=utf-8", "export const x = 1;\n"},
        {"/assets/app.css", "text/css; charset=utf-8", "body{}\n"},
        {"/assets/sub/deep.json", "application/json", "{\"deep\":true}"},
        {"/assets/alias.js", "text/javascript; charset=utf-8", "export const x = 1;\n"},
        {"/assets/app.js?v=2", "text/javascript; charset=utf-8", "export const x = 1;\n"},
    };
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        ck_assert_int_eq(raw_get(&d, "GET", files[i].path, NULL, resp, sizeof resp), 200);
        header_value(resp, "Content-Type", v, sizeof v);
        ck_assert_str_eq(v, files[i].type);
        ck_assert_str_eq(body_of(resp), files[i].body);
        header_value(resp, "Content-Security-Policy", v, sizeof v);
        ck_assert_str_eq(v, ""); /* only pages carry it */
    }

    /* ETag: 304 while unchanged, 200 with another tag, a new tag when the
     * file changes. */
    char etag[128], cond[200];
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/app.js", NULL, resp, sizeof resp), 200);
    header_value(resp, "ETag", etag, sizeof etag);
    ck_assert_msg(etag[0] == '"' && strlen(etag) > 2, "ETag '%s'", etag);
    snprintf(cond, sizeof cond, "If-None-Match: %s", etag);
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/app.js", cond, resp, sizeof resp), 304);
    ck_assert_str_eq(body_of(resp), "");
    header_value(resp, "ETag", v, sizeof v);
    ck_assert_str_eq(v, etag);
    snprintf(cond, sizeof cond, "If-None-Match: \"other\", %s", etag);
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/app.js", cond, resp, sizeof resp), 304);
    ck_assert_int_eq(
        raw_get(&d, "GET", "/assets/app.js", "If-None-Match: \"other\"", resp, sizeof resp), 200);
    write_file(root, "app.js", "export const x = 22;\n");
    snprintf(cond, sizeof cond, "If-None-Match: %s", etag);
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/app.js", cond, resp, sizeof resp), 200);
    ck_assert_str_eq(body_of(resp), "export const x = 22;\n");
    header_value(resp, "ETag", v, sizeof v);
    ck_assert_str_ne(v, etag);

    /* Nothing outside the root, nothing hidden, no directories. */
    const char *refused[] = {"/assets/../outside.txt",
                             "/assets/..%2foutside.txt",
                             "/assets/%2e%2e/outside.txt",
                             "/assets/%2E%2E%2Foutside.txt",
                             "/assets/sub/../../outside.txt",
                             "/assets/sub/..%2f..%2foutside.txt",
                             "/assets/./app.js",
                             "/assets//etc/passwd",
                             "/assets/%2fetc%2fpasswd",
                             "/assets/sub/escape/passwd",
                             "/assets/escape.txt",
                             "/assets/.secret",
                             "/assets/%2esecret",
                             "/assets/sub",
                             "/assets/sub/",
                             "/assets/",
                             "/assets/nonexistent.js",
                             "/../outside.txt",
                             "/index.html"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        int status = raw_get(&d, "GET", refused[i], NULL, resp, sizeof resp);
        ck_assert_msg(status == 404 || status == 400, "%s: status %d", refused[i], status);
        ck_assert_msg(strstr(resp, SECRET) == NULL && strstr(resp, "root:") == NULL,
                      "%s leaked a file", refused[i]);
    }
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/.secret", NULL, resp, sizeof resp), 404);
    ck_assert_msg(strstr(body_of(resp), "\"file_not_found\"") != NULL, "%s", resp);
    ck_assert_int_eq(raw_get(&d, "POST", "/", NULL, resp, sizeof resp), 405);
    ck_assert_int_eq(raw_get(&d, "GET", "/healthz", NULL, resp, sizeof resp), 200);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Without a built client the daemon runs, and / says how to build it. */
START_TEST(test_static_client_not_built) {
    test_daemon d;
    daemon_init(&d);
    char root[160];
    snprintf(root, sizeof root, "%s/no-such-dir", d.dir);
    daemon_start(&d, "--web-root", root, NULL);
    static char resp[1 << 16];
    char v[256];
    ck_assert_int_eq(raw_get(&d, "GET", "/", NULL, resp, sizeof resp), 404);
    header_value(resp, "Content-Type", v, sizeof v);
    ck_assert_str_eq(v, "text/plain; charset=utf-8");
    ck_assert_msg(strstr(body_of(resp), "make web") != NULL && strstr(body_of(resp), root) != NULL,
                  "%s", resp);
    ck_assert_int_eq(raw_get(&d, "GET", "/assets/app.js", NULL, resp, sizeof resp), 404);
    ck_assert_int_eq(raw_get(&d, "GET", "/readyz", NULL, resp, sizeof resp), 200);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *static_suite(void) {
    Suite *s = suite_create("static");
    TCase *tc = tcase_create("static");
    tcase_add_test(tc, test_static_path_rules);
    tcase_add_test(tc, test_static_files_served);
    tcase_add_test(tc, test_static_client_not_built);
    suite_add_tcase(s, tc);
    return s;
}
