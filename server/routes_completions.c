/* The OpenAI-shaped sampling routes: POST /v1/completions and
 * POST /v1/chat/completions, from any ready registered model or fine-tuned
 * model ("ft:…", as GET /v1/models lists them), over generate.h.
 *
 * The body is checked on the HTTP thread, so a bad request never waits for
 * a generate worker. Without `stream` the sampling runs through
 * http_defer_slow (the connection suspended meanwhile). With `stream: true`
 * the reply is an SSE stream started at once: the sampling runs on the
 * generate pool (slow_pool_submit) and appends OpenAI's chunks to a buffer
 * as tokens come; the stream's content reader sends what is there and parks
 * its connection (park.h) when it has caught up, so no HTTP thread waits for
 * the generation. A refused submission is a plain 429/503 reply; a stream
 * that expires in the queue ends with an error event, then [DONE].
 */
#include <microhttpd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "db.h"
#include "defer_slow.h"
#include "generate.h"
#include "json_checks.h"
#include "models_store.h"
#include "park.h"
#include "routes.h"
#include "slow_pool.h"
#include "textbuf.h"

enum { COMPLETION_MAX_MESSAGES = 256 };

/* A checked request. Strings are borrowed from the body it was read from. */
typedef struct completion_request {
    bool chat;
    bool stream, include_usage;
    bool logprobs;
    const char *model;
    generate_params p;
    chat_message messages[COMPLETION_MAX_MESSAGES];
} completion_request;

/* ---- the body -------------------------------------------------------------------- */

/* Which model the name is: p->model_id or p->checkpoint_id. 0, or -1 with e. */
static int resolve_model(sqlite3 *db, const char *name, generate_params *p, http_error *e) {
    if (strncmp(name, "ft:", 3) == 0) {
        json_t *object = NULL;
        int64_t checkpoint = 0;
        const int found = models_store_find_ft(db, name, &object, &checkpoint);
        json_decref(object);
        if (found == 1) {
            p->checkpoint_id = checkpoint;
            return 0;
        }
        if (found < 0)
            return http_error_set(e, 500, "database_error", NULL, "the database failed"), -1;
    } else if (strlen(name) < 80) {
        model_row row;
        const int found = models_store_find(db, name, &row);
        if (found < 0)
            return http_error_set(e, 500, "database_error", NULL, "the database failed"), -1;
        if (found == 1 && strcmp(row.status, "ready") != 0) {
            http_error_set(e, 400, "model_not_ready", "model", "model '%s' is %s, not ready", name,
                           row.status);
            return -1;
        }
        if (found == 1) {
            p->model_id = row.id;
            return 0;
        }
    }
    http_error_set(e, 404, "model_not_found", "model",
                   "the model '%.200s' does not exist (GET /v1/models lists them)", name);
    return -1;
}

/* `stop`: absent, a string, or an array of at most GENERATE_MAX_STOP
 * non-empty strings of at most GENERATE_MAX_STOP_BYTES. */
static int parse_stop(const json_t *stop, generate_params *p, http_error *e) {
    if (stop == NULL)
        return 0;
    const bool one = json_is_string(stop);
    if (!one && (!json_is_array(stop) || json_array_size(stop) > GENERATE_MAX_STOP)) {
        http_error_set(e, 400, json_is_array(stop) ? "invalid_value" : "invalid_type", "stop",
                       "stop must be a string or an array of at most %d strings",
                       GENERATE_MAX_STOP);
        return -1;
    }
    const size_t n = one ? 1 : json_array_size(stop);
    for (size_t i = 0; i < n; i++) {
        const json_t *s = one ? stop : json_array_get(stop, i);
        char param[32];
        snprintf(param, sizeof param, one ? "stop" : "stop[%zu]", i);
        if (!json_is_string(s) || json_string_length(s) < 1 ||
            json_string_length(s) > GENERATE_MAX_STOP_BYTES) {
            http_error_set(e, 400, json_is_string(s) ? "invalid_value" : "invalid_type", param,
                           "%s must be a non-empty string of at most %d bytes", param,
                           GENERATE_MAX_STOP_BYTES);
            return -1;
        }
        p->stop[p->n_stop++] = json_string_value(s);
    }
    return 0;
}

static int parse_messages(const json_t *messages, completion_request *q, http_error *e) {
    if (messages == NULL) {
        http_error_set(e, 400, "missing_required_parameter", "messages", "messages is required");
        return -1;
    }
    if (!json_is_array(messages) || json_array_size(messages) < 1 ||
        json_array_size(messages) > COMPLETION_MAX_MESSAGES) {
        http_error_set(e, 400, json_is_array(messages) ? "invalid_value" : "invalid_type",
                       "messages", "messages must be an array of 1..%d messages",
                       COMPLETION_MAX_MESSAGES);
        return -1;
    }
    static const char *const roles[] = {"system", "user", "assistant", NULL};
    static const char *const keys[] = {"role", "content", "name", NULL};
    for (size_t i = 0; i < json_array_size(messages); i++) {
        const json_t *m = json_array_get(messages, i);
        char param[48], prefix[40];
        snprintf(prefix, sizeof prefix, "messages[%zu].", i);
        if (!json_is_object(m)) {
            snprintf(param, sizeof param, "messages[%zu]", i);
            http_error_set(e, 400, "invalid_type", param, "%s must be an object", param);
            return -1;
        }
        if (json_check_keys(m, keys, prefix, e) == 0)
            return -1;
        const char *role = json_string_value(json_object_get(m, "role"));
        const json_t *content = json_object_get(m, "content");
        if (!http_one_of(role, roles)) {
            snprintf(param, sizeof param, "%srole", prefix);
            http_error_set(e, 400, "invalid_value", param,
                           "%s must be \"system\", \"user\" or \"assistant\"", param);
            return -1;
        }
        if (!json_is_string(content)) {
            snprintf(param, sizeof param, "%scontent", prefix);
            http_error_set(e, 400, "invalid_type", param, "%s must be a string", param);
            return -1;
        }
        q->messages[i] = (chat_message){role, json_string_value(content)};
    }
    q->p.messages = q->messages;
    q->p.n_messages = (int)json_array_size(messages);
    return 0;
}

/* Checks body (null members count as absent and are removed) into q. 0, or
 * -1 with e. */
static int completion_parse(sqlite3 *db, json_t *body, bool chat, completion_request *q,
                            http_error *e) {
    static const char *const chat_keys[] = {
        "model",          "messages", "n",    "max_tokens", "max_completion_tokens", "temperature",
        "top_p",          "seed",     "stop", "logprobs",   "top_logprobs",          "stream",
        "stream_options", "user",     NULL};
    static const char *const text_keys[] = {
        "model", "prompt",   "n",      "max_tokens",     "temperature", "top_p", "seed",
        "stop",  "logprobs", "stream", "stream_options", "user",        NULL};
    memset(q, 0, sizeof *q);
    q->chat = chat;
    const char *key;
    json_t *value;
    void *tmp;
    json_object_foreach_safe(body, tmp, key, value) {
        if (json_is_null(value))
            json_object_del(body, key);
    }
    if (json_check_keys(body, chat ? chat_keys : text_keys, "", e) == 0)
        return -1;
    const json_t *model = json_object_get(body, "model");
    if (!json_is_string(model)) {
        http_error_set(e, 400, model ? "invalid_type" : "missing_required_parameter", "model",
                       "model must be a model id (GET /v1/models lists them)");
        return -1;
    }
    q->model = json_string_value(model);
    const json_t *stream = json_object_get(body, "stream");
    const json_t *options = json_object_get(body, "stream_options");
    const json_t *logprobs = json_object_get(body, "logprobs");
    const json_t *top = json_object_get(body, "top_logprobs");
    const json_t *max_completion = json_object_get(body, "max_completion_tokens");
    if (stream != NULL && !json_is_boolean(stream))
        return http_error_set(e, 400, "invalid_type", "stream", "stream must be a boolean"), -1;
    q->stream = json_is_true(stream);
    if (options != NULL) {
        static const char *const option_keys[] = {"include_usage", NULL};
        const json_t *usage = json_object_get(options, "include_usage");
        if (!json_is_object(options) || !q->stream)
            return http_error_set(e, 400, "invalid_value", "stream_options",
                                  "stream_options must be an object, with stream: true"),
                   -1;
        if (json_check_keys(options, option_keys, "stream_options.", e) == 0)
            return -1;
        if (usage != NULL && !json_is_boolean(usage))
            return http_error_set(e, 400, "invalid_type", "stream_options.include_usage",
                                  "stream_options.include_usage must be a boolean"),
                   -1;
        q->include_usage = json_is_true(usage);
    }
    if (chat && logprobs != NULL && !json_is_boolean(logprobs))
        return http_error_set(e, 400, "invalid_type", "logprobs", "logprobs must be a boolean"), -1;
    /* only the chosen token's log-probability: no alternatives */
    if (!chat && logprobs != NULL && (!json_is_integer(logprobs) || json_integer_value(logprobs)))
        return http_error_set(e, 400, "invalid_value", "logprobs",
                              "logprobs must be 0 (the sampled tokens' log-probabilities; "
                              "alternatives are not reported)"),
               -1;
    if (top != NULL && (!json_is_integer(top) || json_integer_value(top) != 0))
        return http_error_set(e, 400, "invalid_value", "top_logprobs",
                              "top_logprobs must be 0: alternatives are not reported"),
               -1;
    q->logprobs = chat ? json_is_true(logprobs) : logprobs != NULL;
    if (q->logprobs && q->stream)
        return http_error_set(e, 400, "invalid_value", "logprobs",
                              "logprobs are not reported in a stream; drop stream or logprobs"),
               -1;
    if (generate_parse_options(body, "", &q->p, e) != 0)
        return -1;
    if (max_completion != NULL) {
        if (json_object_get(body, "max_tokens") != NULL)
            return http_error_set(e, 400, "invalid_value", "max_completion_tokens",
                                  "give max_tokens or max_completion_tokens, not both"),
                   -1;
        if (!json_is_integer(max_completion) || json_integer_value(max_completion) < 1 ||
            json_integer_value(max_completion) > GENERATE_MAX_TOKENS)
            return http_error_set(e, 400, "invalid_value", "max_completion_tokens",
                                  "max_completion_tokens must be an integer in [1, %d]",
                                  GENERATE_MAX_TOKENS),
                   -1;
        q->p.max_tokens = (int)json_integer_value(max_completion);
    }
    q->p.logprobs = q->logprobs;
    if (parse_stop(json_object_get(body, "stop"), &q->p, e) != 0)
        return -1;
    if ((chat ? parse_messages(json_object_get(body, "messages"), q, e)
              : generate_parse_prompt(json_object_get(body, "prompt"), &q->p, e)) != 0)
        return -1;
    return resolve_model(db, q->model, &q->p, e);
}

/* ---- replies -------------------------------------------------------------------- */

/* "chatcmpl-…" / "cmpl-…" with 24 random hex digits. */
static void completion_id(bool chat, char *out, size_t len) {
    unsigned char bytes[12] = {0};
    if (getrandom(bytes, sizeof bytes, 0) != (ssize_t)sizeof bytes)
        snprintf((char *)bytes, sizeof bytes, "%llx", (unsigned long long)db_now_ms());
    int n = snprintf(out, len, "%s", chat ? "chatcmpl-" : "cmpl-");
    for (size_t i = 0; i < sizeof bytes && n + 2 < (int)len; i++)
        n += snprintf(out + n, len - (size_t)n, "%02x", bytes[i]);
}

static json_t *usage_json(const completion_request *q, const generate_output *out) {
    /* generate_run counts each prompt once per completion; OpenAI once */
    const int64_t prompt = out->prompt_tokens / q->p.n;
    return json_pack("{s:I, s:I, s:I}", "prompt_tokens", (json_int_t)prompt, "completion_tokens",
                     (json_int_t)out->completion_tokens, "total_tokens",
                     (json_int_t)(prompt + out->completion_tokens));
}

/* Row b's logprobs object, in the route's shape. */
static json_t *logprobs_json(bool chat, const generate_output *out, int b) {
    json_t *content = json_array(), *tokens = json_array(), *lps = json_array(),
           *offsets = json_array();
    int64_t offset = 0;
    for (int j = 0; j < out->n_tokens[b]; j++) {
        const char *t = out->token_texts[b][j];
        const double lp = out->token_logprobs[b][j];
        json_t *bytes = json_array();
        for (const unsigned char *c = (const unsigned char *)t; *c; c++)
            json_array_append_new(bytes, json_integer(*c));
        json_array_append_new(content, json_pack("{s:s, s:f, s:o, s:[]}", "token", t, "logprob", lp,
                                                 "bytes", bytes, "top_logprobs"));
        json_array_append_new(tokens, json_string(t));
        json_array_append_new(lps, json_real(lp));
        json_array_append_new(offsets, json_integer(offset));
        offset += (int64_t)strlen(t);
    }
    if (chat) {
        json_decref(tokens), json_decref(lps), json_decref(offsets);
        return json_pack("{s:o}", "content", content);
    }
    json_decref(content);
    return json_pack("{s:o, s:o, s:n, s:o}", "tokens", tokens, "token_logprobs", lps,
                     "top_logprobs", "text_offset", offsets);
}

static json_t *completion_json(const completion_request *q, const char *id,
                               const generate_output *out) {
    json_t *choices = json_array();
    for (int b = 0; b < out->n_rows; b++) {
        const char *finish = out->stopped[b] ? "stop" : "length";
        json_t *lp = q->logprobs ? logprobs_json(q->chat, out, b) : json_null();
        json_array_append_new(
            choices, q->chat ? json_pack("{s:i, s:{s:s, s:s}, s:o, s:s}", "index", b, "message",
                                         "role", "assistant", "content", out->texts[b], "logprobs",
                                         lp, "finish_reason", finish)
                             : json_pack("{s:i, s:s, s:o, s:s}", "index", b, "text", out->texts[b],
                                         "logprobs", lp, "finish_reason", finish));
    }
    return json_pack("{s:s, s:s, s:I, s:s, s:o, s:o}", "id", id, "object",
                     q->chat ? "chat.completion" : "text_completion", "created",
                     (json_int_t)db_now_s(), "model", q->model, "choices", choices, "usage",
                     usage_json(q, out));
}

/* ---- without stream: on the generate pool through http_defer_slow ---------------- */

typedef struct completion_ctx {
    bool chat;
    uint64_t seed; /* drawn once on the HTTP thread */
} completion_ctx;

/* r's body, checked, into a new *q (its strings borrowed from *body; the
 * caller frees both). 1, or 0 answered in *replied. */
static int completion_read(request *r, bool chat, json_t **body, completion_request **q,
                           enum MHD_Result *replied) {
    *q = NULL;
    if ((*body = http_body_object(r, replied)) == NULL)
        return 0;
    http_error e = {0};
    if ((*q = malloc(sizeof **q)) == NULL)
        http_error_set(&e, 500, "out_of_memory", NULL, "out of memory");
    else if (completion_parse(r->db, *body, chat, *q, &e) == 0)
        return 1;
    *replied = http_reply_http_error(r, &e);
    return 0;
}

static enum MHD_Result completion_work(request *r) {
    const completion_ctx *c = r->write_ctx;
    enum MHD_Result replied;
    json_t *body;
    completion_request *q;
    if (completion_read(r, c->chat, &body, &q, &replied)) {
        http_error e = {0};
        generate_output out;
        q->p.seed = c->seed;
        if (generate_run(r->srv, r->db, &q->p, &out, &e) != 0) {
            replied = http_reply_http_error(r, &e);
        } else {
            char id[48];
            completion_id(c->chat, id, sizeof id);
            replied = http_reply_json(r, 200, completion_json(q, id, &out));
            generate_output_free(&out);
        }
    }
    free(q);
    json_decref(body);
    return replied;
}

/* ---- with stream: SSE chunks from the generate pool -------------------------------- */

typedef struct completion_stream {
    pthread_mutex_t mutex;
    textbuf buf; /* SSE text not yet read */
    size_t off;  /* bytes of buf already sent */
    bool done, client_gone;
    int refs; /* the response and the generation */
    server *srv;
    struct MHD_Connection *conn;
    int64_t token_id;
    json_t *body; /* the request, with its seed */
    bool chat;
    char id[48];
    int64_t created;
} completion_stream;

static void stream_release(completion_stream *s) {
    pthread_mutex_lock(&s->mutex);
    const bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->mutex);
    if (!last)
        return;
    pthread_mutex_destroy(&s->mutex);
    free(s->buf.p);
    json_decref(s->body);
    free(s);
}

/* Appends `data: JSON\n\n` (chunk stolen). */
static void stream_put(completion_stream *s, json_t *chunk) {
    char *text = chunk ? json_dumps(chunk, JSON_COMPACT) : NULL;
    json_decref(chunk);
    pthread_mutex_lock(&s->mutex);
    if (text != NULL) {
        textbuf_puts(&s->buf, "data: ");
        textbuf_puts(&s->buf, text);
        textbuf_puts(&s->buf, "\n\n");
    } else {
        s->buf.failed = true;
    }
    pthread_mutex_unlock(&s->mutex);
    free(text);
}

/* One chunk with one choice: delta text (NULL: none), finish reason (NULL: null). */
static json_t *chunk_json(const completion_stream *s, const char *model, int index, json_t *delta,
                          const char *finish) {
    json_t *choice = s->chat ? json_pack("{s:i, s:o, s:n, s:s?}", "index", index, "delta", delta,
                                         "logprobs", "finish_reason", finish)
                             : json_pack("{s:i, s:o, s:n, s:s?}", "index", index, "text", delta,
                                         "logprobs", "finish_reason", finish);
    return json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", s->id, "object",
                     s->chat ? "chat.completion.chunk" : "text_completion", "created",
                     (json_int_t)s->created, "model", model, "choices", choice);
}

typedef struct stream_delta_ctx {
    completion_stream *s;
    const char *model;
} stream_delta_ctx;

static bool stream_delta(void *ctx, int row, const char *text, size_t len) {
    stream_delta_ctx *d = ctx;
    char *clean = db_utf8_clean(text, len);
    if (clean == NULL)
        return false;
    json_t *delta = d->s->chat ? json_pack("{s:s}", "content", clean) : json_string(clean);
    free(clean);
    stream_put(d->s, chunk_json(d->s, d->model, row, delta, NULL));
    pthread_mutex_lock(&d->s->mutex);
    const bool gone = d->s->client_gone;
    pthread_mutex_unlock(&d->s->mutex);
    return !gone;
}

static void stream_error(completion_stream *s, const http_error *e) {
    stream_put(s, json_pack("{s:{s:s, s:s, s:s?, s:s}}", "error", "message", e->message, "type",
                            e->status >= 500 ? "server_error" : "invalid_request_error", "param",
                            e->param[0] ? e->param : NULL, "code", e->code));
}

/* The generation, on a generate worker (or its end unrun). */
static void stream_run(void *ctx, slow_pool_outcome outcome) {
    completion_stream *s = ctx;
    http_error e = {0};
    if (outcome != SLOW_POOL_RUN) {
        http_error_set(&e, 503, outcome == SLOW_POOL_EXPIRED ? "queue_timeout" : "shutting_down",
                       NULL, "the request waited too long for a generate worker; retry later");
        stream_error(s, &e);
    } else {
        sqlite3 *db = db_pool_acquire(&s->srv->pool);
        completion_request *q = malloc(sizeof *q);
        generate_output out;
        if (q == NULL) {
            http_error_set(&e, 500, "out_of_memory", NULL, "out of memory");
            stream_error(s, &e);
        } else if (completion_parse(db, s->body, s->chat, q, &e) != 0) {
            stream_error(s, &e);
        } else {
            stream_delta_ctx d = {s, q->model};
            q->p.on_delta = stream_delta;
            q->p.delta_ctx = &d;
            const int rows =
                (q->chat ? 1 : q->p.n_prompts) * q->p.n; /* the opening chunk of each choice */
            for (int b = 0; s->chat && b < rows; b++)
                stream_put(s,
                           chunk_json(s, q->model, b,
                                      json_pack("{s:s, s:s}", "role", "assistant", "content", ""),
                                      NULL));
            if (generate_run(s->srv, db, &q->p, &out, &e) != 0) {
                stream_error(s, &e);
            } else {
                for (int b = 0; b < out.n_rows; b++)
                    stream_put(s,
                               chunk_json(s, q->model, b, s->chat ? json_object() : json_string(""),
                                          out.stopped[b] ? "stop" : "length"));
                if (q->include_usage)
                    stream_put(s,
                               json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", s->id, "object",
                                         s->chat ? "chat.completion.chunk" : "text_completion",
                                         "created", (json_int_t)s->created, "model", q->model,
                                         "choices", "usage", usage_json(q, &out)));
                generate_output_free(&out);
            }
        }
        free(q);
        db_pool_release(&s->srv->pool, db);
    }
    pthread_mutex_lock(&s->mutex);
    textbuf_puts(&s->buf, "data: [DONE]\n\n");
    s->done = true;
    pthread_mutex_unlock(&s->mutex);
    stream_release(s);
}

static ssize_t stream_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    completion_stream *s = cls;
    pthread_mutex_lock(&s->mutex);
    if (s->buf.failed) {
        pthread_mutex_unlock(&s->mutex);
        return MHD_CONTENT_READER_END_WITH_ERROR;
    }
    if (s->off < s->buf.len) {
        const size_t n = s->buf.len - s->off < max ? s->buf.len - s->off : max;
        memcpy(out, s->buf.p + s->off, n);
        s->off += n;
        if (s->off == s->buf.len) /* all sent: the buffer starts again */
            s->off = s->buf.len = 0;
        pthread_mutex_unlock(&s->mutex);
        return (ssize_t)n;
    }
    const bool done = s->done;
    pthread_mutex_unlock(&s->mutex);
    if (done || atomic_load(&s->srv->shutting_down))
        return MHD_CONTENT_READER_END_OF_STREAM;
    /* nothing yet: park until the next tick (never wait on an HTTP thread) */
    if (park_suspend(s->srv->park, s->conn) != 0)
        return MHD_CONTENT_READER_END_OF_STREAM;
    return 0;
}

static void stream_free(void *cls) {
    completion_stream *s = cls;
    pthread_mutex_lock(&s->mutex);
    s->client_gone = true;
    pthread_mutex_unlock(&s->mutex);
    stream_release(s);
}

static enum MHD_Result reply_stream(request *r, json_t *body, bool chat) {
    completion_stream *s = calloc(1, sizeof *s);
    if (s == NULL) {
        json_decref(body);
        return http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    }
    pthread_mutex_init(&s->mutex, NULL);
    s->refs = 1;
    s->srv = r->srv;
    s->conn = r->conn;
    s->token_id = r->token.id;
    s->body = body;
    s->chat = chat;
    s->created = db_now_s();
    completion_id(chat, s->id, sizeof s->id);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16384, stream_read, s, stream_free);
    if (resp == NULL) {
        stream_release(s);
        return MHD_NO;
    }
    s->refs = 2;
    int64_t retry_after = 0;
    const int refusal =
        slow_pool_submit(r->srv->gen_pool, r->token.id, stream_run, s, &retry_after);
    if (refusal != 0) {
        s->refs = 1;
        MHD_destroy_response(resp); /* stream_free releases s */
        return http_reply_slow_refused(r, r->srv->gen_pool, refusal, retry_after);
    }
    MHD_add_response_header(resp, "Content-Type", "text/event-stream");
    MHD_add_response_header(resp, "Cache-Control", "no-cache");
    return http_queue(r, 200, resp);
}

/* ---- the routes ------------------------------------------------------------------- */

static enum MHD_Result completion_route(request *r, bool chat) {
    enum MHD_Result replied;
    json_t *body;
    completion_request *q;
    if (!completion_read(r, chat, &body, &q, &replied)) {
        free(q);
        json_decref(body);
        return replied;
    }
    const uint64_t seed = q->p.seed;
    const bool stream = q->stream;
    free(q);
    if (stream) { /* the worker reads the body again, with the seed drawn here */
        json_object_set_new(body, "seed", json_integer((json_int_t)(seed & 0x1FFFFFFFFFFFFFull)));
        return reply_stream(r, body, chat);
    }
    json_decref(body);
    completion_ctx *c = malloc(sizeof *c);
    if (c == NULL)
        return http_reply_error(r, 500, "out_of_memory", NULL, "out of memory");
    *c = (completion_ctx){chat, seed};
    r->write_ctx = c;
    return http_defer_slow(r, r->srv->gen_pool, completion_work);
}

enum MHD_Result route_completions(request *r) {
    return completion_route(r, false);
}

enum MHD_Result route_chat_completions(request *r) {
    return completion_route(r, true);
}
