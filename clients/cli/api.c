/* rlhfctl's HTTP side (libcurl): requests, streamed uploads and downloads,
 * the SSE reader, and the one place errors are told apart and printed.
 *
 * An API error is any answer the server gave that is not 2xx: the error
 * body `{"error": {message, type, param, code}}` (docs/api.md) is shown as
 * the message, its code and the offending field. A network error is the
 * absence of an answer: libcurl's reason, the URL, and a hint.
 */
#include <curl/curl.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "rlhfctl.h"
#include "sha256.h"

#define USER_AGENT         "rlhfctl/1"
#define CONNECT_TIMEOUT_MS 10000L
/* A stream sends a keep-alive comment every 15 s by default: a minute of
 * silence means the connection is dead even if no RST arrived. */
#define STREAM_STALL_S 60L

/* ---- a growable byte buffer ----------------------------------------------------- */

typedef struct growbuf {
    char *data; /* NUL-terminated */
    size_t len, cap;
} growbuf;

static void growbuf_append(growbuf *b, const char *data, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *grown = realloc(b->data, cap);
        if (grown == NULL) {
            fputs("rlhfctl: out of memory\n", stderr);
            abort();
        }
        b->data = grown, b->cap = cap;
    }
    memcpy(b->data + b->len, data, n);
    b->len += n;
    b->data[b->len] = '\0';
}

static void growbuf_free(growbuf *b) {
    free(b->data);
    memset(b, 0, sizeof *b);
}

static size_t on_write_growbuf(char *data, size_t size, size_t n, void *arg) {
    growbuf_append(arg, data, size * n);
    return size * n;
}

/* ---- requests -------------------------------------------------------------------- */

typedef struct request {
    CURL *curl;
    struct curl_slist *headers;
    char url[4096];
    char curl_error[CURL_ERROR_SIZE];
} request;

static void request_init(request *rq, const rlhfctl *c, const char *method, const char *path) {
    memset(rq, 0, sizeof *rq);
    rq->curl = curl_easy_init();
    snprintf(rq->url, sizeof rq->url, "%s%s", c->url, path);
    if (c->token) {
        char auth[1024];
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
        rq->headers = curl_slist_append(rq->headers, auth);
    }
    curl_easy_setopt(rq->curl, CURLOPT_URL, rq->url);
    curl_easy_setopt(rq->curl, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(rq->curl, CURLOPT_USERAGENT, USER_AGENT);
    curl_easy_setopt(rq->curl, CURLOPT_CONNECTTIMEOUT_MS, CONNECT_TIMEOUT_MS);
    curl_easy_setopt(rq->curl, CURLOPT_ERRORBUFFER, rq->curl_error);
    curl_easy_setopt(rq->curl, CURLOPT_NOSIGNAL, 1L);
}

static CURLcode request_perform(request *rq) {
    curl_easy_setopt(rq->curl, CURLOPT_HTTPHEADER, rq->headers);
    return curl_easy_perform(rq->curl);
}

static long request_status(const request *rq) {
    long status = 0;
    curl_easy_getinfo(rq->curl, CURLINFO_RESPONSE_CODE, &status);
    return status;
}

static void request_free(request *rq) {
    curl_slist_free_all(rq->headers);
    curl_easy_cleanup(rq->curl);
}

/* ---- errors ---------------------------------------------------------------------- */

/* libcurl's reason for a request that got no answer, into out. */
static void network_reason(const request *rq, CURLcode rc, char *out, size_t len) {
    snprintf(out, len, "%s: %s", rq->url,
             rq->curl_error[0] ? rq->curl_error : curl_easy_strerror(rc));
}

static int report_network_error(const request *rq, CURLcode rc) {
    char reason[4096 + CURL_ERROR_SIZE + 8];
    network_reason(rq, rc, reason, sizeof reason);
    fprintf(stderr, "rlhfctl: network error: %s\n", reason);
    if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST ||
        rc == CURLE_OPERATION_TIMEDOUT)
        fputs("  is rlhfd running there? set the address with --url or RLHFD_URL\n", stderr);
    return RLHFCTL_EXIT_NETWORK;
}

/* The fields of an rlhfd error body into the buffers ("" where absent;
 * line 0 when there is none). */
static void error_text(const char *body, size_t len, char *message, size_t mlen, char *code,
                       size_t clen, char *param, size_t plen, int64_t *line) {
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *err = json_object_get(root, "error");
    const char *m = json_string_value(json_object_get(err, "message"));
    const char *cd = json_string_value(json_object_get(err, "code"));
    const char *p = json_string_value(json_object_get(err, "param"));
    json_t *l = json_object_get(err, "line");
    snprintf(message, mlen, "%s", m ? m : "the server's answer is not an rlhfd error object");
    snprintf(code, clen, "%s", cd ? cd : "");
    snprintf(param, plen, "%s", p ? p : "");
    *line = json_is_integer(l) ? json_integer_value(l) : 0;
    json_decref(root);
}

/* Prints an API error (status not 2xx); with --json also its body. */
static int report_api_error(const rlhfctl *c, long status, const char *body, size_t len) {
    char message[2048], code[128], param[512];
    int64_t line;
    error_text(body, len, message, sizeof message, code, sizeof code, param, sizeof param, &line);
    if (c->json_output && len > 0)
        printf("%.*s%s", (int)len, body, body[len - 1] == '\n' ? "" : "\n");
    fprintf(stderr, "rlhfctl: API error: %s\n  HTTP %ld%s%s", message, status,
            code[0] ? ", code " : "", code);
    if (param[0])
        fprintf(stderr, ", param %s", param);
    if (line > 0)
        fprintf(stderr, ", line %" PRId64, line);
    fputc('\n', stderr);
    if (status == 401)
        fputs("  set the token with --token, RLHFD_TOKEN or the config file\n", stderr);
    return RLHFCTL_EXIT_API;
}

/* After a request: network error, API error, or OK with the JSON body in
 * *out (if out). */
/* The reply as JSON into *out. With status non-NULL an API error is not
 * reported: *status gets the HTTP status and *out the error body. */
static int finish_json(const rlhfctl *c, request *rq, CURLcode rc, growbuf *body, json_t **out,
                       long *status_out) {
    if (rc != CURLE_OK)
        return report_network_error(rq, rc);
    long status = request_status(rq);
    if (status_out != NULL) {
        *status_out = status;
        if (status < 200 || status > 299) {
            if (out)
                *out = json_loadb(body->data ? body->data : "", body->len, 0, NULL);
            return RLHFCTL_EXIT_API;
        }
    }
    if (status < 200 || status > 299)
        return report_api_error(c, status, body->data ? body->data : "", body->len);
    json_error_t jerr;
    json_t *root = json_loadb(body->data ? body->data : "", body->len, 0, &jerr);
    if (root == NULL) {
        fprintf(stderr, "rlhfctl: API error: HTTP %ld from %s is not JSON (%s)\n", status, rq->url,
                jerr.text);
        return RLHFCTL_EXIT_API;
    }
    if (out)
        *out = root;
    else
        json_decref(root);
    return RLHFCTL_EXIT_OK;
}

/* ---- 429: wait Retry-After and retry ----------------------------------------------
 *
 * rlhfd answers 429 rate_limit_exceeded with Retry-After (whole seconds)
 * when a token writes faster than --write-rate. Every POST carries an
 * Idempotency-Key made once per call, so a retry after a 429 (or any
 * retry) cannot create the thing twice: the server stores the first
 * successful answer under the key and replays it. At most
 * RETRY_429_ATTEMPTS tries in all; each wait is Retry-After capped at
 * RETRY_429_MAX_WAIT_S (1 s when the header is missing or unreadable). */
#define RETRY_429_ATTEMPTS   5
#define RETRY_429_MAX_WAIT_S 60

/* "rlhfctl-" and 32 random hex digits. */
static void make_idempotency_key(char out[48]) {
    unsigned char bytes[16] = {0};
    FILE *f = fopen("/dev/urandom", "rb");
    size_t got = f ? fread(bytes, 1, sizeof bytes, f) : 0;
    if (f)
        fclose(f);
    if (got != sizeof bytes) { /* no /dev/urandom: time and pid, still unique enough */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        uint64_t mix[2] = {(uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec,
                           (uint64_t)getpid()};
        memcpy(bytes, mix, sizeof bytes);
    }
    int n = snprintf(out, 48, "rlhfctl-");
    for (size_t i = 0; i < sizeof bytes; i++)
        n += snprintf(out + n, 48 - (size_t)n, "%02x", bytes[i]);
}

static size_t on_header_retry_after(char *data, size_t size, size_t n, void *arg) {
    long *retry_after = arg;
    const size_t len = size * n;
    static const char name[] = "retry-after:";
    if (len > sizeof name - 1 && strncasecmp(data, name, sizeof name - 1) == 0) {
        char *end;
        long v = strtol(data + sizeof name - 1, &end, 10);
        *retry_after = v >= 0 && end != data + sizeof name - 1 ? v : -1;
    }
    return len;
}

/* After a 429 on attempt (1-based): waits and returns 1 if another try is
 * allowed, else 0. */
static int wait_after_429(long retry_after, int attempt) {
    if (attempt >= RETRY_429_ATTEMPTS)
        return 0;
    long wait = retry_after < 0                      ? 1
                : retry_after > RETRY_429_MAX_WAIT_S ? RETRY_429_MAX_WAIT_S
                                                     : retry_after;
    fprintf(stderr,
            "rlhfctl: rate limited (HTTP 429); retrying in %ld s with the same Idempotency-Key "
            "(attempt %d of %d)\n",
            wait, attempt + 1, RETRY_429_ATTEMPTS);
    struct timespec ts = {.tv_sec = wait};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
    return 1;
}

static int request_json(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                        json_t **out, long *status) {
    char key[48], key_header[80];
    const int post = strcmp(method, "POST") == 0;
    if (post) {
        make_idempotency_key(key);
        snprintf(key_header, sizeof key_header, "Idempotency-Key: %s", key);
    }
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    int result = RLHFCTL_EXIT_OK;
    for (int attempt = 1;; attempt++) {
        request rq;
        request_init(&rq, c, method, path);
        growbuf reply = {0};
        long retry_after = -1;
        if (post)
            rq.headers = curl_slist_append(rq.headers, key_header);
        if (text) {
            rq.headers = curl_slist_append(rq.headers, "Content-Type: application/json");
            curl_easy_setopt(rq.curl, CURLOPT_POSTFIELDS, text);
            curl_easy_setopt(rq.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
        }
        curl_easy_setopt(rq.curl, CURLOPT_WRITEFUNCTION, on_write_growbuf);
        curl_easy_setopt(rq.curl, CURLOPT_WRITEDATA, &reply);
        curl_easy_setopt(rq.curl, CURLOPT_HEADERFUNCTION, on_header_retry_after);
        curl_easy_setopt(rq.curl, CURLOPT_HEADERDATA, &retry_after);
        CURLcode rc = request_perform(&rq);
        const int again =
            rc == CURLE_OK && request_status(&rq) == 429 && wait_after_429(retry_after, attempt);
        if (!again)
            result = finish_json(c, &rq, rc, &reply, out, status);
        growbuf_free(&reply);
        request_free(&rq);
        if (!again)
            break;
    }
    free(text);
    return result;
}

int api_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                json_t **out) {
    return request_json(c, method, path, body, out, NULL);
}

int api_request_status(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                       json_t **out, long *status) {
    return request_json(c, method, path, body, out, status);
}

/* ---- uploads ---------------------------------------------------------------------- */

typedef struct upload_source {
    FILE *f;
    int read_errno; /* set when reading the file failed */
} upload_source;

static size_t on_read_file(char *buf, size_t size, size_t n, void *arg) {
    upload_source *src = arg;
    size_t got = fread(buf, 1, size * n, src->f);
    if (got == 0 && ferror(src->f)) {
        src->read_errno = errno ? errno : EIO;
        return CURL_READFUNC_ABORT;
    }
    return got;
}

int api_upload(const rlhfctl *c, const char *path, const char *file, const char *header,
               json_t **out) {
    upload_source src = {.f = strcmp(file, "-") == 0 ? stdin : fopen(file, "rb")};
    if (src.f == NULL) {
        fprintf(stderr, "rlhfctl: cannot read %s: %s\n", file, strerror(errno));
        return RLHFCTL_EXIT_USAGE;
    }
    struct stat st;
    const int sized = fstat(fileno(src.f), &st) == 0 && S_ISREG(st.st_mode);
    char key[48], key_header[80];
    make_idempotency_key(key);
    snprintf(key_header, sizeof key_header, "Idempotency-Key: %s", key);
    int result;
    /* A 429 is retried only for a regular file (it can be read again). */
    for (int attempt = 1;; attempt++) {
        request rq;
        request_init(&rq, c, "POST", path);
        growbuf reply = {0};
        long retry_after = -1;
        rq.headers = curl_slist_append(rq.headers, key_header);
        rq.headers = curl_slist_append(rq.headers, "Content-Type: application/jsonl");
        if (header != NULL)
            rq.headers = curl_slist_append(rq.headers, header);
        curl_easy_setopt(rq.curl, CURLOPT_POST, 1L);
        curl_easy_setopt(rq.curl, CURLOPT_READFUNCTION, on_read_file);
        curl_easy_setopt(rq.curl, CURLOPT_READDATA, &src);
        if (sized)
            curl_easy_setopt(rq.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)st.st_size);
        else /* a pipe: length unknown */
            rq.headers = curl_slist_append(rq.headers, "Transfer-Encoding: chunked");
        curl_easy_setopt(rq.curl, CURLOPT_WRITEFUNCTION, on_write_growbuf);
        curl_easy_setopt(rq.curl, CURLOPT_WRITEDATA, &reply);
        curl_easy_setopt(rq.curl, CURLOPT_HEADERFUNCTION, on_header_retry_after);
        curl_easy_setopt(rq.curl, CURLOPT_HEADERDATA, &retry_after);
        CURLcode rc = request_perform(&rq);
        int again = 0;
        if (src.read_errno) {
            fprintf(stderr, "rlhfctl: reading %s failed: %s\n", file, strerror(src.read_errno));
            result = RLHFCTL_EXIT_USAGE;
        } else {
            again = sized && rc == CURLE_OK && request_status(&rq) == 429 &&
                    fseek(src.f, 0, SEEK_SET) == 0 && wait_after_429(retry_after, attempt);
            if (!again)
                result = finish_json(c, &rq, rc, &reply, out, NULL);
        }
        growbuf_free(&reply);
        request_free(&rq);
        if (!again)
            break;
    }
    if (src.f != stdin)
        fclose(src.f);
    return result;
}

/* ---- downloads --------------------------------------------------------------------- */

typedef struct download_sink {
    request *rq;
    FILE *to;
    sha256_ctx sha;
    growbuf error_body; /* a non-2xx answer */
    char *header_sha256;
    int write_failed;
} download_sink;

static size_t on_download(char *data, size_t size, size_t n, void *arg) {
    download_sink *d = arg;
    const long status = request_status(d->rq);
    if (status < 200 || status > 299) {
        growbuf_append(&d->error_body, data, size * n);
        return size * n;
    }
    sha256_update(&d->sha, data, size * n);
    if (fwrite(data, 1, size * n, d->to) != size * n) {
        d->write_failed = 1;
        return 0;
    }
    return size * n;
}

static size_t on_download_header(char *data, size_t size, size_t n, void *arg) {
    download_sink *d = arg;
    const size_t len = size * n;
    static const char name[] = "x-checkpoint-sha256:";
    if (len > sizeof name && strncasecmp(data, name, sizeof name - 1) == 0) {
        const char *v = data + sizeof name - 1;
        v += strspn(v, " ");
        snprintf(d->header_sha256, 80, "%.*s", (int)strcspn(v, "\r\n"), v);
    }
    return len;
}

int api_download(const rlhfctl *c, const char *path, FILE *to, char sha256_hex[65],
                 char header_sha256[80]) {
    request rq;
    request_init(&rq, c, "GET", path);
    download_sink d = {.rq = &rq, .to = to, .header_sha256 = header_sha256};
    header_sha256[0] = '\0';
    sha256_init(&d.sha);
    curl_easy_setopt(rq.curl, CURLOPT_WRITEFUNCTION, on_download);
    curl_easy_setopt(rq.curl, CURLOPT_WRITEDATA, &d);
    curl_easy_setopt(rq.curl, CURLOPT_HEADERFUNCTION, on_download_header);
    curl_easy_setopt(rq.curl, CURLOPT_HEADERDATA, &d);
    CURLcode rc = request_perform(&rq);
    int result;
    if (d.write_failed) {
        fprintf(stderr, "rlhfctl: writing the checkpoint failed: %s\n", strerror(errno));
        result = RLHFCTL_EXIT_USAGE;
    } else if (rc != CURLE_OK) {
        result = report_network_error(&rq, rc);
    } else if (request_status(&rq) < 200 || request_status(&rq) > 299) {
        result = report_api_error(c, request_status(&rq),
                                  d.error_body.data ? d.error_body.data : "", d.error_body.len);
    } else {
        uint8_t digest[32];
        sha256_final(&d.sha, digest);
        for (int i = 0; i < 32; i++)
            snprintf(sha256_hex + 2 * i, 3, "%02x", digest[i]);
        result = RLHFCTL_EXIT_OK;
    }
    growbuf_free(&d.error_body);
    request_free(&rq);
    return result;
}

/* ---- Server-Sent Events ------------------------------------------------------------- */

/* The reader of one stream connection: bytes → lines → events (WHATWG
 * "server-sent events": `field: value` lines, a blank line dispatches, `:`
 * starts a comment). */
typedef struct sse_reader {
    request *rq;
    sse_handler on_event;
    void *ctx;
    growbuf line; /* the partial line */
    growbuf data; /* the event's data lines, joined by \n */
    char event[64];
    int64_t id;
    int stopped;        /* the handler said SSE_STOP */
    growbuf error_body; /* a non-200 answer */
} sse_reader;

static void sse_field(sse_reader *r, const char *line, size_t len) {
    if (len == 0) { /* dispatch */
        if (r->data.len > 0 || r->event[0]) {
            sse_event ev = {.id = r->id,
                            .event = r->event[0] ? r->event : "message",
                            .data = r->data.data ? r->data.data : ""};
            if (r->on_event(r->ctx, &ev) == SSE_STOP)
                r->stopped = 1;
        }
        r->data.len = 0;
        if (r->data.data)
            r->data.data[0] = '\0';
        r->event[0] = '\0';
        r->id = -1;
        return;
    }
    if (line[0] == ':')
        return; /* comment: keep-alive */
    size_t name_len = strcspn(line, ":");
    const char *value = line + name_len;
    size_t value_len = 0;
    if (name_len < len) {
        value++;
        value += *value == ' ';
        value_len = len - (size_t)(value - line);
    }
    if (name_len == 4 && strncmp(line, "data", 4) == 0) {
        if (r->data.len > 0)
            growbuf_append(&r->data, "\n", 1);
        growbuf_append(&r->data, value, value_len);
    } else if (name_len == 5 && strncmp(line, "event", 5) == 0) {
        snprintf(r->event, sizeof r->event, "%.*s", (int)value_len, value);
    } else if (name_len == 2 && strncmp(line, "id", 2) == 0) {
        r->id = strtoll(value, NULL, 10);
    }
}

static size_t on_stream(char *data, size_t size, size_t n, void *arg) {
    sse_reader *r = arg;
    const size_t len = size * n;
    const long status = request_status(r->rq);
    if (status != 200) {
        growbuf_append(&r->error_body, data, len);
        return len;
    }
    for (size_t i = 0; i < len && !r->stopped; i++) {
        if (data[i] != '\n') {
            growbuf_append(&r->line, data + i, 1);
            continue;
        }
        size_t line_len = r->line.len;
        if (line_len > 0 && r->line.data[line_len - 1] == '\r')
            line_len--;
        sse_field(r, line_len ? r->line.data : "", line_len);
        r->line.len = 0;
    }
    return r->stopped ? 0 : len; /* 0 ends the transfer */
}

int api_stream(const rlhfctl *c, const char *path, int64_t last_event_id, sse_handler on_event,
               void *ctx, char *err, size_t errlen) {
    return api_stream_request(c, "GET", path, NULL, last_event_id, on_event, ctx, err, errlen);
}

int api_stream_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                       int64_t last_event_id, sse_handler on_event, void *ctx, char *err,
                       size_t errlen) {
    request rq;
    request_init(&rq, c, method, path);
    sse_reader r = {.rq = &rq, .on_event = on_event, .ctx = ctx, .id = -1};
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
    if (text) {
        rq.headers = curl_slist_append(rq.headers, "Content-Type: application/json");
        curl_easy_setopt(rq.curl, CURLOPT_POSTFIELDS, text);
        curl_easy_setopt(rq.curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(text));
    }
    char resume[64];
    if (last_event_id > 0) {
        snprintf(resume, sizeof resume, "Last-Event-ID: %" PRId64, last_event_id);
        rq.headers = curl_slist_append(rq.headers, resume);
    }
    rq.headers = curl_slist_append(rq.headers, "Accept: text/event-stream");
    curl_easy_setopt(rq.curl, CURLOPT_WRITEFUNCTION, on_stream);
    curl_easy_setopt(rq.curl, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(rq.curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(rq.curl, CURLOPT_LOW_SPEED_TIME, STREAM_STALL_S);
    CURLcode rc = request_perform(&rq);
    const long status = request_status(&rq);
    int result;
    if (r.stopped) {
        result = RLHFCTL_EXIT_OK;
    } else if (rc != CURLE_OK) {
        network_reason(&rq, rc, err, errlen);
        result = RLHFCTL_EXIT_NETWORK;
    } else if (status >= 500) { /* e.g. 503 while rlhfd shuts down: worth a retry */
        char message[1024], code[128], param[256];
        int64_t line;
        error_text(r.error_body.data ? r.error_body.data : "", r.error_body.len, message,
                   sizeof message, code, sizeof code, param, sizeof param, &line);
        snprintf(err, errlen, "HTTP %ld %s: %s", status, code, message);
        result = RLHFCTL_EXIT_NETWORK;
    } else if (status != 200) {
        result = report_api_error(c, status, r.error_body.data ? r.error_body.data : "",
                                  r.error_body.len);
    } else {
        snprintf(err, errlen, "%s: the stream ended before the job did", rq.url);
        result = RLHFCTL_EXIT_NETWORK;
    }
    free(text);
    growbuf_free(&r.line);
    growbuf_free(&r.data);
    growbuf_free(&r.error_body);
    request_free(&rq);
    return result;
}

/* ---- lists ------------------------------------------------------------------------- */

int api_list_all(const rlhfctl *c, const char *path, const char *query, int64_t max_items,
                 json_t **out) {
    json_t *all = json_array();
    int64_t after = 0;
    for (;;) {
        char page_path[2048];
        int64_t want = max_items > 0 ? max_items - (int64_t)json_array_size(all) : 100;
        if (want > 100)
            want = 100;
        char after_text[40] = "";
        if (after > 0)
            snprintf(after_text, sizeof after_text, "&after=%" PRId64, after);
        snprintf(page_path, sizeof page_path, "%s?%slimit=%" PRId64 "%s", path, query, want,
                 after_text);
        json_t *page = NULL;
        int rc = api_request(c, "GET", page_path, NULL, &page);
        if (rc != RLHFCTL_EXIT_OK) {
            json_decref(all);
            return rc;
        }
        json_array_extend(all, json_object_get(page, "data"));
        const int more = json_is_true(json_object_get(page, "has_more"));
        after = json_integer_value(json_object_get(page, "last_id"));
        json_decref(page);
        if (!more || after <= 0 || (max_items > 0 && (int64_t)json_array_size(all) >= max_items))
            break;
    }
    *out = all;
    return RLHFCTL_EXIT_OK;
}
