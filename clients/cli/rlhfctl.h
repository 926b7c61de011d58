/* rlhfctl — the command-line client of rlhfd (clients/cli/).
 *
 * One header for the client's modules, in the order a call goes through
 * them: main.c (global flags, configuration, the command table, help) →
 * cmd_*.c (one function per subcommand) → cmd_common.c (what the
 * subcommands share) → api.c (libcurl: requests, streamed uploads and
 * downloads, the SSE stream, error reporting) and table.c (human output).
 */
#ifndef RLHFCTL_H
#define RLHFCTL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes; `rlhfctl --help` and the README list them. */
enum rlhfctl_exit {
    RLHFCTL_EXIT_OK = 0,
    RLHFCTL_EXIT_JOB_FAILED = 1, /* jobs / studies / loops watch: it failed or was cancelled */
    RLHFCTL_EXIT_USAGE = 2,      /* bad command line, config file or local file */
    RLHFCTL_EXIT_API = 3,        /* the server answered with an error */
    RLHFCTL_EXIT_NETWORK = 4,    /* no answer: connection refused, reset, timed out */
};

typedef struct rlhfctl {
    const char *url;   /* "http://127.0.0.1:8080", no trailing slash */
    const char *token; /* may be NULL: the server then answers 401 */
    int json_output;   /* --json: print the server's JSON */
} rlhfctl;

/* ---- command lines (main.c) ---------------------------------------------------- */

#define CLI_MAX_ARGS 128

/* A subcommand's arguments after the global flags are removed: positional
 * arguments and `--name value` / `--name=value` / `--flag` options. */
typedef struct cli_args {
    int n_pos;
    const char *pos[CLI_MAX_ARGS];
    int n_opts;
    struct {
        const char *name; /* without the dashes */
        const char *value;
    } opts[CLI_MAX_ARGS];
} cli_args;

/* The last value of option name, or NULL. */
const char *cli_opt(const cli_args *a, const char *name);
/* 1 if the flag (an option without a value) was given. */
int cli_flag(const cli_args *a, const char *name);
/* Every value of a repeatable option, in order; returns how many. */
int cli_opt_all(const cli_args *a, const char *name, const char **out, int max);

/* Prints "rlhfctl: <message>" and the current command's usage to stderr;
 * returns RLHFCTL_EXIT_USAGE. */
int cli_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* A positive integer id from text (argument what); 0 and a usage message if
 * it is not one. */
int64_t cli_parse_id(const char *text, const char *what);

/* ---- the HTTP API (api.c) -------------------------------------------------------- */

/* Every api_* call returns RLHFCTL_EXIT_OK, or RLHFCTL_EXIT_API /
 * RLHFCTL_EXIT_NETWORK after printing the reason to stderr (the server's
 * message, code and param; or the network failure). With --json an API
 * error's body is also printed to stdout. */

/* method path [JSON body] → *out (the parsed reply; caller decrefs). body
 * and out may be NULL. */
int api_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                json_t **out);
/* The same without reporting an API error: *status gets the HTTP status
 * and *out the reply's JSON (the error object too, NULL if not JSON);
 * RLHFCTL_EXIT_API for a non-2xx status. Network errors are reported. */
int api_request_status(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                       json_t **out, long *status);
/* POST path with the file's bytes as the body, read piece by piece (never
 * held whole); "-" is stdin (sent chunked). header: one more request
 * header ("Name: value"), or NULL. */
int api_upload(const rlhfctl *c, const char *path, const char *file, const char *header,
               json_t **out);
/* GET path into the file (written as it arrives). sha256_hex gets the
 * digest of what was written, header_sha256 the x-checkpoint-sha256 header
 * ("" if absent). */
int api_download(const rlhfctl *c, const char *path, FILE *to, char sha256_hex[65],
                 char header_sha256[80]);

/* One Server-Sent Event. */
typedef struct sse_event {
    int64_t id;        /* -1 without an id: line */
    const char *event; /* "message" when the stream names none */
    const char *data;
} sse_event;

/* Return value of an sse_handler: keep reading, or stop the stream. */
enum { SSE_CONTINUE = 0, SSE_STOP = 1 };
typedef int (*sse_handler)(void *ctx, const sse_event *ev);

/* GET path as an event stream, from after last_event_id (0: from the
 * start; sent as Last-Event-ID). Returns RLHFCTL_EXIT_OK when the handler
 * stopped it, RLHFCTL_EXIT_API on an error reply (printed), or
 * RLHFCTL_EXIT_NETWORK when the connection could not be made or ended
 * early (not printed: the caller decides whether to retry; err says why). */
int api_stream(const rlhfctl *c, const char *path, int64_t last_event_id, sse_handler on_event,
               void *ctx, char *err, size_t errlen);
/* The same with a method and a JSON body (may be NULL), e.g. POST
 * /v1/chat/completions with stream: true. */
int api_stream_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                       int64_t last_event_id, sse_handler on_event, void *ctx, char *err,
                       size_t errlen);

/* GET a whole list (following after/has_more) into one array; query may
 * be "" or "status=running&". max_items 0 = all. */
int api_list_all(const rlhfctl *c, const char *path, const char *query, int64_t max_items,
                 json_t **out);

/* ---- output (table.c) ------------------------------------------------------------ */

/* How a column renders its value. */
typedef enum column_kind {
    COLUMN_KIND_TEXT,    /* strings, numbers, booleans as they are */
    COLUMN_KIND_TIME,    /* unix seconds → "2026-01-02 15:04" (local time) */
    COLUMN_KIND_BYTES,   /* 37684 → "36.8 KiB" */
    COLUMN_KIND_ONELINE, /* long text: newlines as spaces, cut to 48 characters */
} column_kind;

typedef struct column {
    const char *header; /* "ID" */
    const char *key;    /* "id"; "a.b" reaches into an object */
    column_kind kind;
} column;

/* An aligned table of the objects in rows, one line each. */
void table_print(FILE *out, const json_t *rows, const column *cols, int n_cols);
/* One object as "key: value" lines (nested objects and arrays as JSON). */
void table_print_object(FILE *out, const json_t *obj);
/* The value at key ("a.b" nested) as display text into buf. */
const char *table_format(const json_t *obj, const column *col, char *buf, size_t len);
/* Prints reply as --json wants it (pretty, order kept) or hands it to
 * human(); decrefs reply. */
void output_reply(const rlhfctl *c, json_t *reply, void (*human)(const json_t *reply));

/* ---- shared command helpers (cmd_common.c) ------------------------------------ */

/* Prints an object reply as a table of its members. */
void cmd_print_object(const json_t *reply);
/* method path [JSON body]; the reply printed by human, or as JSON with
 * --json. The exit code. */
int cmd_request(const rlhfctl *c, const char *method, const char *path, const json_t *body,
                void (*human)(const json_t *reply));
/* "/v1/<collection>/<id><suffix>" into out, the id read from positional
 * argument i (named what in a usage error). The id, or 0 on a bad one
 * (usage error printed). */
int64_t cmd_id_path(const cli_args *a, int i, const char *what, const char *collection,
                    const char *suffix, char *out, size_t len);
/* cmd_request without a body on cmd_id_path of positional argument 0. */
int cmd_request_id(const rlhfctl *c, const cli_args *a, const char *method, const char *what,
                   const char *collection, const char *suffix, void (*human)(const json_t *reply));

/* One page of a list: the options named in filters (NULL-terminated, e.g.
 * "format", "limit", "after") become the query; printed as a table of
 * cols with a hint for the next page, or as the server's JSON. */
int cmd_show_list(const rlhfctl *c, const cli_args *a, const char *path, const char *const *filters,
                  const column *cols, int n_cols);
/* A list reply printed as a table of cols ("(none)" when empty) and, when
 * it has more, the option that fetches the next page: --after_option with
 * the reply's cursor_key ("after", "last_id"). Decrefs reply. */
void cmd_print_page(json_t *reply, const column *cols, int n_cols, const char *after_option,
                    const char *cursor_key);

/* --n, --max-tokens, --temperature, --top-p, --seed into obj (n,
 * max_tokens, ...): 1 ok, 0 after a usage message. */
int cli_sampling_options(const cli_args *a, json_t *obj);

/* Every --<opt> KEY=VALUE of a into obj: VALUE as JSON when it parses
 * (2048, 0.99, true), else as a string (CartPole-v1); "a.b=V" sets member
 * b of the object member a (created when absent). 1 ok, 0 after a usage
 * message. */
int cli_set_options(const cli_args *a, const char *opt, json_t *obj);
/* Option opt (a positive integer: an id, a count) into obj[key]; 1 ok (or
 * absent), 0 after a usage message. */
int cli_id_option(const cli_args *a, const char *opt, json_t *obj, const char *key);
/* Option opt (a model reference) into obj[key]: digits as a checkpoint id,
 * anything else ("job:3", a model id of GET /v1/models) as the string
 * rlhfd resolves. 1 ok (or absent), 0 after a usage message. */
int cli_model_option(const cli_args *a, const char *opt, json_t *obj, const char *key);
/* The JSON object in file (what: "a study", for the message); NULL after
 * printing why it is not one. */
json_t *cli_load_object(const char *file, const char *what);

/* Sleeps ms milliseconds (a client's poll interval or back-off). */
void cli_sleep_ms(int ms);

/* ---- subcommands (cmd_data.c, cmd_generate.c, cmd_jobs.c) ---------------------- */

typedef int (*command_fn)(const rlhfctl *c, const cli_args *a);
int cmd_checkpoints_generate(const rlhfctl *c, const cli_args *a);
int cmd_chat(const rlhfctl *c, const cli_args *a);

int cmd_status(const rlhfctl *c, const cli_args *a);
int cmd_models_add(const rlhfctl *c, const cli_args *a);
int cmd_models_upload(const rlhfctl *c, const cli_args *a);
int cmd_models_list(const rlhfctl *c, const cli_args *a);
int cmd_models_show(const rlhfctl *c, const cli_args *a);
int cmd_models_delete(const rlhfctl *c, const cli_args *a);
int cmd_datasets_create(const rlhfctl *c, const cli_args *a);
int cmd_datasets_upload(const rlhfctl *c, const cli_args *a);
int cmd_datasets_list(const rlhfctl *c, const cli_args *a);
int cmd_datasets_show(const rlhfctl *c, const cli_args *a);
int cmd_datasets_delete(const rlhfctl *c, const cli_args *a);
int cmd_projects_create(const rlhfctl *c, const cli_args *a);
int cmd_projects_list(const rlhfctl *c, const cli_args *a);
int cmd_projects_show(const rlhfctl *c, const cli_args *a);
int cmd_projects_grant(const rlhfctl *c, const cli_args *a);
int cmd_projects_pairs(const rlhfctl *c, const cli_args *a);
int cmd_projects_export(const rlhfctl *c, const cli_args *a);
int cmd_projects_agreement(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_bulk(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_add(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_list(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_show(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_next(const rlhfctl *c, const cli_args *a);
int cmd_comparisons_rankings(const rlhfctl *c, const cli_args *a);
int cmd_rank(const rlhfctl *c, const cli_args *a);
int cmd_annotate(const rlhfctl *c, const cli_args *a);
int cmd_tokens_create(const rlhfctl *c, const cli_args *a);
int cmd_tokens_list(const rlhfctl *c, const cli_args *a);
int cmd_tokens_revoke(const rlhfctl *c, const cli_args *a);
int cmd_checkpoints_list(const rlhfctl *c, const cli_args *a);
int cmd_checkpoints_download(const rlhfctl *c, const cli_args *a);
int cmd_jobs_submit(const rlhfctl *c, const cli_args *a);
int cmd_studies_submit(const rlhfctl *c, const cli_args *a);
int cmd_studies_watch(const rlhfctl *c, const cli_args *a);
int cmd_studies_show(const rlhfctl *c, const cli_args *a);
int cmd_studies_list(const rlhfctl *c, const cli_args *a);
int cmd_studies_cancel(const rlhfctl *c, const cli_args *a);
int cmd_loops_create(const rlhfctl *c, const cli_args *a);
int cmd_loops_list(const rlhfctl *c, const cli_args *a);
int cmd_loops_show(const rlhfctl *c, const cli_args *a);
int cmd_loops_watch(const rlhfctl *c, const cli_args *a);
int cmd_loops_cancel(const rlhfctl *c, const cli_args *a);
int cmd_jobs_list(const rlhfctl *c, const cli_args *a);
int cmd_jobs_show(const rlhfctl *c, const cli_args *a);
int cmd_jobs_cancel(const rlhfctl *c, const cli_args *a);
int cmd_jobs_logs(const rlhfctl *c, const cli_args *a);
int cmd_jobs_metrics(const rlhfctl *c, const cli_args *a);
int cmd_jobs_watch(const rlhfctl *c, const cli_args *a);

#endif
