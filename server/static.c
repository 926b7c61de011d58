/* static — the web client's files (clients/web, built into build/web by
 * `make web`), served without a token: GET / is index.html, GET
 * /assets/{path} any file below the web root (--web-root / RLHFD_WEB_ROOT;
 * default web/ beside the rlhfd binary, i.e. build/web for build/rlhfd).
 *
 * Why these choices:
 * - Paths are refused by their text first (static_path_ok: no "..", ".",
 *   empty or hidden segments, no backslashes or control bytes; libmicrohttpd
 *   has already percent-decoded the URL, so "%2e%2e" arrives as ".."), and the
 *   resolved file (realpath, which follows symlinks) must still lie inside the
 *   resolved root and be a regular file. Either check alone would do for the
 *   build's own tree; both keep a symlink or an odd name from ever reaching
 *   outside it.
 * - Caching: every file is sent with a strong ETag (size, mtime, inode) and
 *   "Cache-Control: no-cache", so browsers revalidate and get 304 while the
 *   file is unchanged. The assets are not fingerprinted (no bundler), so a
 *   long max-age would serve stale code after a rebuild.
 * - The token lives in the page's sessionStorage and the JavaScript sends it
 *   as a header, so an injected script could steal it: pages carry a
 *   Content-Security-Policy that allows scripts and styles from this origin
 *   only, no inline code (the client itself writes all server text with
 *   textContent; the CSP is the second line). uPlot styles its elements
 *   through the CSSOM, which the policy allows.
 * - Without a built client, GET / still answers (404, plain text) saying how
 *   to build it; the API is unaffected.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "routes.h"

#define ASSETS_PREFIX "/assets/"

static const char csp[] =
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' "
    "data: blob:; connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; "
    "frame-ancestors 'none'";

int static_path_ok(const char *rel) {
    if (rel == NULL || *rel == '\0' || strlen(rel) > 1024)
        return 0;
    const char *seg = rel;
    for (;;) {
        size_t n = strcspn(seg, "/");
        if (n == 0 || seg[0] == '.') /* empty, ".", "..", hidden files */
            return 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)seg[i];
            if (c < 0x20 || c == 0x7f || c == '\\' || c == ':')
                return 0;
        }
        if (seg[n] == '\0')
            return 1;
        seg += n + 1;
    }
}

const char *static_content_type(const char *path) {
    static const struct {
        const char *ext, *type;
    } types[] = {
        {".html", "text/html; charset=utf-8"},
        {".js", "text/javascript; charset=utf-8"},
        {".mjs", "text/javascript; charset=utf-8"},
        {".css", "text/css; charset=utf-8"},
        {".json", "application/json"},
        {".map", "application/json"},
        {".svg", "image/svg+xml"},
        {".png", "image/png"},
        {".ico", "image/x-icon"},
        {".txt", "text/plain; charset=utf-8"},
        {".woff2", "font/woff2"},
    };
    const char *dot = strrchr(path, '.');
    const char *slash = strrchr(path, '/');
    if (dot != NULL && (slash == NULL || dot > slash))
        for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
            if (strcmp(dot, types[i].ext) == 0)
                return types[i].type;
    return "application/octet-stream";
}

/* Opens rel below the web root if it resolves to a regular file inside it:
 * the fd (st filled), -1 if there is no such file. */
static int open_below_root(const char *root, const char *rel, struct stat *st) {
    char root_real[PATH_MAX], path[PATH_MAX], real[PATH_MAX];
    if (!static_path_ok(rel) || realpath(root, root_real) == NULL)
        return -1;
    size_t n = strlen(root_real);
    int len = snprintf(path, sizeof path, "%s/%s", root_real, rel);
    if (len < 0 || (size_t)len >= sizeof path || realpath(path, real) == NULL ||
        strncmp(real, root_real, n) != 0 || (n > 1 && real[n] != '/'))
        return -1;
    int fd = open(real, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    if (fstat(fd, st) != 0 || !S_ISREG(st->st_mode)) {
        close(fd);
        return -1;
    }
    return fd;
}

/* Whether an If-None-Match header value names etag (a list, or "*"). */
static int etag_matches(const char *header, const char *etag) {
    if (header == NULL)
        return 0;
    if (strcmp(header, "*") == 0)
        return 1;
    size_t n = strlen(etag);
    for (const char *p = strstr(header, etag); p != NULL; p = strstr(p + 1, etag)) {
        char after = p[n];
        if (after == '\0' || after == ',' || after == ' ')
            return 1;
    }
    return 0;
}

static void add_common_headers(struct MHD_Response *resp, const char *type, const char *etag) {
    MHD_add_response_header(resp, "Content-Type", type);
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    MHD_add_response_header(resp, "Referrer-Policy", "no-referrer");
    if (etag != NULL)
        MHD_add_response_header(resp, "ETag", etag);
    if (strncmp(type, "text/html", 9) == 0) {
        MHD_add_response_header(resp, "Content-Security-Policy", csp);
        MHD_add_response_header(resp, "X-Frame-Options", "DENY");
    }
}

static enum MHD_Result serve(request *r, const char *rel) {
    struct stat st;
    int fd = open_below_root(r->srv->cfg.web_root, rel, &st);
    if (fd < 0)
        return http_reply_error(r, 404, "file_not_found", NULL, "no file %s", r->url);
    char etag[96];
    snprintf(etag, sizeof etag, "\"%llx-%llx.%lx-%llx\"", (unsigned long long)st.st_size,
             (unsigned long long)st.st_mtim.tv_sec, (unsigned long)st.st_mtim.tv_nsec,
             (unsigned long long)st.st_ino);
    const char *type = static_content_type(rel);
    const char *inm = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "If-None-Match");
    struct MHD_Response *resp;
    unsigned status = 200;
    if (etag_matches(inm, etag)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        status = 304;
    } else
        resp = MHD_create_response_from_fd((uint64_t)st.st_size, fd); /* closes fd */
    if (resp == NULL) {
        if (status == 200)
            close(fd);
        return MHD_NO;
    }
    add_common_headers(resp, type, etag);
    return http_queue(r, status, resp);
}

enum MHD_Result route_static_index(request *r) {
    struct stat st;
    int fd = open_below_root(r->srv->cfg.web_root, "index.html", &st);
    if (fd >= 0) {
        close(fd);
        return serve(r, "index.html");
    }
    char text[sizeof r->srv->cfg.web_root + 512];
    int n = snprintf(text, sizeof text,
                     "rlhfd: the web client is not built (no index.html in %s).\n\n"
                     "Build it with `make web` (needs Node.js and npm; it runs npm ci in "
                     "clients/web and copies the files to build/web), or point --web-root "
                     "(RLHFD_WEB_ROOT) at a built copy, then reload this page.\n\n"
                     "The HTTP API under /v1/ works without it; see docs/api.md.\n",
                     r->srv->cfg.web_root);
    struct MHD_Response *resp =
        MHD_create_response_from_buffer((size_t)n, text, MHD_RESPMEM_MUST_COPY);
    if (resp == NULL)
        return MHD_NO;
    add_common_headers(resp, "text/plain; charset=utf-8", NULL);
    return http_queue(r, 404, resp);
}

enum MHD_Result route_static_asset(request *r) {
    return serve(r, r->url + strlen(ASSETS_PREFIX));
}
