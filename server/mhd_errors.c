/* mhd_errors — the errors libmicrohttpd raises itself, answered in rlhfd's
 * JSON error shape.
 *
 * libmicrohttpd answers some requests before any callback of rlhfd sees
 * them: a malformed request line or header line, a Content-Length that is
 * not digits or beyond 2^64, malformed chunked encoding, a chunk too large,
 * an unsupported HTTP version, a request head larger than its
 * per-connection memory. 0.9.75 (Debian 12's) does it with fixed HTML
 * bodies compiled into the library, and neither it nor later releases have
 * an option or callback to replace them.
 *
 * It builds each such answer the same way (transmit_error_response in its
 * connection.c): MHD_create_response_from_buffer(len, html,
 * MHD_RESPMEM_PERSISTENT), then MHD_queue_response(connection, status,
 * response). Both are exported functions, and the library calls them
 * through its PLT, so an executable that defines functions of the same
 * names gets those calls: the dynamic linker looks symbols up in the
 * executable first (ELF symbol interposition, the mechanism LD_PRELOAD
 * tools use). rlhfd defines both here and forwards every call to
 * libmicrohttpd's own (dlsym(RTLD_NEXT)). A buffer that is one of
 * libmicrohttpd's error pages is recognised by its text; the queue that
 * follows on the same thread swaps it for a JSON response built for the
 * status libmicrohttpd chose, so a 414 or 431 carries the same code as
 * rlhfd's own refusals (server/http.c request_strict). Everything else
 * passes through untouched: one pointer comparison per call.
 *
 * mhd_errors_install (called by main) checks that libmicrohttpd's functions
 * are found behind these. A static libmicrohttpd would not link (the names
 * clash); a build of the library without its messages (HAVE_MESSAGES off)
 * sends empty bodies, which are left alone. tests/api/test_hostile.c test_mhd_errors_json sends
 * each kind of request and fails on any HTML.
 */
#include "mhd_errors.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "reply.h"

typedef struct MHD_Response *(*create_fn)(size_t, void *, enum MHD_ResponseMemoryMode);
typedef enum MHD_Result (*queue_fn)(struct MHD_Connection *, unsigned int, struct MHD_Response *);

static create_fn real_create;
static queue_fn real_queue;
static pthread_once_t resolved = PTHREAD_ONCE_INIT;

/* Any executable that links server/ gets these definitions (the archive
 * member is pulled in by the references to the two names), so they resolve
 * libmicrohttpd's on first use, not only through mhd_errors_install. */
static void resolve(void) {
    real_create = (create_fn)dlsym(RTLD_NEXT, "MHD_create_response_from_buffer");
    real_queue = (queue_fn)dlsym(RTLD_NEXT, "MHD_queue_response");
}

/* How each of libmicrohttpd's pages is answered: found by a phrase of its
 * body (0.9.75's texts; the first match wins). */
typedef struct {
    const char *phrase;
    const char *code; /* NULL: by status (414 / 431) */
    const char *param;
    const char *message;
} mhd_error_kind;

static const mhd_error_kind kinds[] = {
    {"HTTP header was too big", NULL, NULL,
     "the request head is larger than this server's memory for it"},
    {"chunked encoding was syntactically incorrect", "malformed_chunked_encoding", NULL,
     "the request body's chunked encoding is malformed"},
    {"chunk size used in your HTTP chunked encoded request is too large", "chunk_too_large", NULL,
     "a chunk of the request body declares a size that is too large"},
    {"too large value for <b>Content-Length</b>", "content_length_too_large", "Content-Length",
     "the Content-Length header's value is too large"},
    {"wrong value for <b>Content-Length</b>", "invalid_header", "Content-Length",
     "the Content-Length header is not a decimal number of bytes"},
    {"&quot;Host:&quot; header required", "invalid_header", "Host",
     "an HTTP/1.1 request must have exactly one Host header"},
    {"HTTP request was syntactically incorrect", "malformed_request", NULL,
     "the request line or a header line is malformed"},
    {"HTTP version is too old", "http_version_not_supported", NULL,
     "this HTTP version is not supported; use HTTP/1.1 or HTTP/1.0"},
    {"HTTP version is not supported", "http_version_not_supported", NULL,
     "this HTTP version is not supported; use HTTP/1.1 or HTTP/1.0"},
    {"Internal server error", "internal_error", NULL, "the server could not process the request"},
};

/* A page of libmicrohttpd's that no phrase above knows (another release). */
static const mhd_error_kind unknown_kind = {NULL, "http_error", NULL,
                                            "the server could not process the request"};

static const char page_start[] = "<html><head><title>";

/* The response libmicrohttpd created last on this thread for one of its
 * pages, and which: its MHD_queue_response follows at once. */
static __thread struct MHD_Response *pending_resp;
static __thread const mhd_error_kind *pending_kind;

static const mhd_error_kind *kind_of(const char *text, size_t len) {
    if (len < sizeof page_start - 1 || memcmp(text, page_start, sizeof page_start - 1) != 0)
        return NULL;
    for (size_t i = 0; i < sizeof kinds / sizeof kinds[0]; i++)
        if (memmem(text, len, kinds[i].phrase, strlen(kinds[i].phrase)) != NULL)
            return &kinds[i];
    return &unknown_kind;
}

struct MHD_Response *MHD_create_response_from_buffer(size_t size, void *buffer,
                                                     enum MHD_ResponseMemoryMode mode) {
    pthread_once(&resolved, resolve);
    if (real_create == NULL)
        abort(); /* no libmicrohttpd to forward to: cannot happen in a linked program */
    struct MHD_Response *resp = real_create(size, buffer, mode);
    pending_resp = NULL, pending_kind = NULL; /* only the very next queue may take it */
    if (mode == MHD_RESPMEM_PERSISTENT && buffer != NULL && resp != NULL) {
        const mhd_error_kind *kind = kind_of(buffer, size);
        if (kind != NULL)
            pending_resp = resp, pending_kind = kind;
    }
    return resp;
}

static const char *code_of(const mhd_error_kind *kind, unsigned status) {
    if (kind->code != NULL)
        return kind->code;
    return status == 414 ? "uri_too_long" : status == 431 ? "headers_too_large" : "http_error";
}

enum MHD_Result MHD_queue_response(struct MHD_Connection *connection, unsigned int status_code,
                                   struct MHD_Response *response) {
    pthread_once(&resolved, resolve);
    if (real_queue == NULL)
        abort(); /* no libmicrohttpd to forward to: cannot happen in a linked program */
    const bool mine = response != NULL && response == pending_resp;
    const mhd_error_kind *kind = pending_kind;
    /* cleared on every queue: a response freed unqueued cannot come back
     * under the same address and be taken for an error page */
    pending_resp = NULL, pending_kind = NULL;
    if (!mine)
        return real_queue(connection, status_code, response);
    size_t len = 0;
    char *text =
        http_error_body(status_code, code_of(kind, status_code), kind->param, kind->message, &len);
    struct MHD_Response *json = text != NULL ? real_create(len, text, MHD_RESPMEM_MUST_FREE) : NULL;
    if (json == NULL) { /* no memory: libmicrohttpd's own page then */
        free(text);
        return real_queue(connection, status_code, response);
    }
    MHD_add_response_header(json, "Content-Type", "application/json");
    /* the connection holds the JSON response; libmicrohttpd destroys its
     * page itself right after this returns */
    enum MHD_Result ret = real_queue(connection, status_code, json);
    MHD_destroy_response(json);
    return ret;
}

int mhd_errors_install(char *err, size_t errlen) {
    pthread_once(&resolved, resolve);
    if (real_create != NULL && real_queue != NULL)
        return 0;
    snprintf(err, errlen,
             "libmicrohttpd's MHD_create_response_from_buffer and "
             "MHD_queue_response cannot be found after rlhfd's own");
    return -1;
}
