/* rlhfctl jobs: submit, list, show, cancel, logs, and watch — the live
 * view of a job over its SSE stream (GET /v1/jobs/{id}/stream).
 *
 * watch keeps the id of the last event it printed and, when the
 * connection drops before the stream's `end` event, reconnects with
 * Last-Event-ID after a backoff (250 ms doubling to 8 s, --retries times
 * in a row; a connection that delivered an event resets the count), so
 * every event is printed exactly once. Its exit code is the job's outcome.
 */
#include <curl/curl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "rlhfctl.h"

/* ---- what a progress line shows, per job type ------------------------------------- */

/* The hyperparameter that bounds the step counter, and the metrics worth a
 * glance: the job type's headline_metrics in engine/jobs.c (the rlhfctl
 * test checks ppo-control's against the engine's list). */
typedef struct job_progress_spec {
    const char *type;
    const char *total_key; /* 0 or absent: unknown total */
    const char *const *headline;
} job_progress_spec;

static const char *const ppo_control_headline[] = {
    "episodic_return", "eval_return", "approx_kl", "clipfrac", "explained_variance", "sps", NULL};
static const char *const sft_headline[] = {"loss", "eval_loss",    "perplexity",
                                           "lr",   "tokens_per_s", NULL};
static const char *const reward_headline[] = {"loss",   "accuracy",   "eval_accuracy",
                                              "margin", "reward_std", NULL};

static const job_progress_spec progress_specs[] = {
    {"ppo-control", "total_steps", ppo_control_headline},
    {"sft", "max_steps", sft_headline},
    {"reward", "max_steps", reward_headline},
};

static const job_progress_spec *progress_spec_find(const char *type) {
    for (size_t i = 0; i < sizeof progress_specs / sizeof progress_specs[0]; i++)
        if (type && strcmp(progress_specs[i].type, type) == 0)
            return &progress_specs[i];
    return NULL;
}

/* ---- submit, list, show, cancel, logs ------------------------------------------------- */

static const column job_cols[] = {
    {"ID", "id", COLUMN_KIND_TEXT},
    {"TYPE", "type", COLUMN_KIND_TEXT},
    {"STATUS", "status", COLUMN_KIND_TEXT},
    {"ATTEMPTS", "attempts", COLUMN_KIND_TEXT},
    {"CREATED", "created_at", COLUMN_KIND_TIME},
    {"STARTED", "started_at", COLUMN_KIND_TIME},
    {"FINISHED", "finished_at", COLUMN_KIND_TIME},
    {"ERROR", "error.message", COLUMN_KIND_ONELINE},
};

static int job_watch(const rlhfctl *c, int64_t id, int64_t since, int retries);

int cmd_jobs_submit(const rlhfctl *c, const cli_args *a) {
    const char *file = cli_opt(a, "hyperparameters");
    json_t *hp = file ? cli_load_object(file, "--hyperparameters") : json_object();
    if (hp == NULL)
        return RLHFCTL_EXIT_USAGE;
    if (!cli_set_options(a, "set", hp)) {
        json_decref(hp);
        return RLHFCTL_EXIT_USAGE;
    }
    json_t *body = json_pack("{s:s}", "type", a->pos[0]);
    if (json_object_size(hp) > 0)
        json_object_set(body, "hyperparameters", hp);
    json_decref(hp);
    if (!cli_id_option(a, "max-attempts", body, "max_attempts") ||
        !cli_id_option(a, "training-file", body, "training_file") ||
        !cli_id_option(a, "validation-file", body, "validation_file") ||
        !cli_id_option(a, "training-project", body, "training_project") ||
        !cli_id_option(a, "ranks", body, "ranks") || !cli_model_option(a, "model", body, "model") ||
        !cli_model_option(a, "reward-model", body, "reward_model")) {
        json_decref(body);
        return RLHFCTL_EXIT_USAGE;
    }
    json_t *job = NULL;
    int rc = api_request(c, "POST", "/v1/jobs", body, &job);
    json_decref(body);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    const int64_t id = json_integer_value(json_object_get(job, "id"));
    if (!cli_flag(a, "watch")) {
        output_reply(c, job, cmd_print_object);
        return rc;
    }
    if (c->json_output)
        output_reply(c, job, NULL);
    else {
        printf("job %" PRId64 " submitted (%s)\n", id,
               json_string_value(json_object_get(job, "type")));
        json_decref(job);
    }
    return job_watch(c, id, 0, 10);
}

int cmd_jobs_list(const rlhfctl *c, const cli_args *a) {
    static const char *const filters[] = {"status", "type", "limit", "after", NULL};
    return cmd_show_list(c, a, "/v1/jobs", filters, job_cols, sizeof job_cols / sizeof job_cols[0]);
}

int cmd_jobs_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "job ID", "jobs", "", cmd_print_object);
}

static void print_cancelled(const json_t *job) {
    printf("job %" JSON_INTEGER_FORMAT ": %s\n", json_integer_value(json_object_get(job, "id")),
           json_is_true(json_object_get(job, "cancel_requested")) &&
                   strcmp(json_string_value(json_object_get(job, "status")), "running") == 0
               ? "cancel requested; the worker checkpoints and stops"
               : json_string_value(json_object_get(job, "status")));
}

int cmd_jobs_cancel(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "POST", "job ID", "jobs", "/cancel", print_cancelled);
}

/* One event as a log line: time, level, code, message. */
static void print_event_line(FILE *out, const json_t *ev) {
    static const column time_col = {"", "created_at", COLUMN_KIND_TIME};
    char when[64];
    fprintf(out, "%s  %-5s  %-10s %s\n", table_format(ev, &time_col, when, sizeof when),
            json_string_value(json_object_get(ev, "level")),
            json_string_value(json_object_get(ev, "code")),
            json_string_value(json_object_get(ev, "message")));
}

int cmd_jobs_logs(const rlhfctl *c, const cli_args *a) {
    char path[96];
    if (!cmd_id_path(a, 0, "job ID", "jobs", "/events", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    json_t *events = NULL;
    int rc = api_list_all(c, path, "", 0, &events);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    /* The server pages newest first; a log reads oldest first. */
    json_t *oldest_first = json_array();
    for (size_t i = json_array_size(events); i-- > 0;)
        json_array_append(oldest_first, json_array_get(events, i));
    json_decref(events);
    if (c->json_output) {
        output_reply(c, json_pack("{s:s, s:o}", "object", "list", "data", oldest_first), NULL);
        return rc;
    }
    size_t i;
    json_t *ev;
    json_array_foreach(oldest_first, i, ev) print_event_line(stdout, ev);
    json_decref(oldest_first);
    return rc;
}

/* A table with a STEP column and one column per metric name. */
int cmd_jobs_metrics(const rlhfctl *c, const cli_args *a) {
    char path[96];
    const int64_t id = cmd_id_path(a, 0, "job ID", "jobs", "", path, sizeof path);
    if (id == 0)
        return RLHFCTL_EXIT_USAGE;
    /* Without --names a person gets the type's headline metrics; --json
     * gets what the server sends (every name). */
    char names[1024] = "";
    if (cli_opt(a, "names")) {
        snprintf(names, sizeof names, "%s", cli_opt(a, "names"));
    } else if (!c->json_output) {
        json_t *job = NULL;
        int rc = api_request(c, "GET", path, NULL, &job);
        if (rc != RLHFCTL_EXIT_OK)
            return rc;
        const job_progress_spec *spec =
            progress_spec_find(json_string_value(json_object_get(job, "type")));
        size_t used = 0;
        for (const char *const *h = spec ? spec->headline : NULL; h && *h; h++)
            used +=
                (size_t)snprintf(names + used, sizeof names - used, "%s%s", used ? "," : "", *h);
        json_decref(job);
    }
    char query[4096];
    size_t used = (size_t)snprintf(query, sizeof query, "/v1/jobs/%" PRId64 "/metrics?", id);
    const char *params[][2] = {{"names", names[0] ? names : NULL},
                               {"after_step", cli_opt(a, "after-step")},
                               {"limit", cli_opt(a, "limit")}};
    for (size_t i = 0; i < sizeof params / sizeof params[0]; i++) {
        if (params[i][1] == NULL)
            continue;
        char *escaped = curl_easy_escape(NULL, params[i][1], 0);
        used +=
            (size_t)snprintf(query + used, sizeof query - used, "%s=%s&", params[i][0], escaped);
        curl_free(escaped);
    }
    if (used >= sizeof query)
        return cli_usage_error("arguments too long");
    json_t *reply = NULL;
    int rc = api_request(c, "GET", query, NULL, &reply);
    if (rc != RLHFCTL_EXIT_OK || c->json_output) {
        if (rc == RLHFCTL_EXIT_OK)
            output_reply(c, reply, NULL);
        return rc;
    }
    /* Columns: the names asked for, else those of the first row. */
    const json_t *data = json_object_get(reply, "data");
    const json_t *first = json_object_get(json_array_get(data, 0), "metrics");
    column cols[32] = {{"STEP", "step", COLUMN_KIND_TEXT}};
    char keys[32][96];
    int n_cols = 1;
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)first, key, v) {
        if (n_cols == 32)
            break;
        snprintf(keys[n_cols], sizeof keys[n_cols], "metrics.%s", key);
        cols[n_cols] = (column){keys[n_cols] + 8, keys[n_cols], COLUMN_KIND_TEXT};
        n_cols++;
    }
    cmd_print_page(reply, cols, n_cols, "after-step", "last_step");
    return rc;
}

/* ---- watch ---------------------------------------------------------------------------- */

#define WATCH_BACKOFF_FIRST_MS  250
#define WATCH_BACKOFF_MAX_MS    8000
#define WATCH_PROGRESS_PERIOD_S 1.0 /* when stdout is not a terminal */

typedef struct watch_state {
    const rlhfctl *c;
    int64_t job_id;
    char type[64];
    const job_progress_spec *spec;
    int64_t total;      /* steps; 0 unknown */
    int64_t started_at; /* the latest attempt's start (server clock, s) */
    int64_t last_id;    /* the last event printed: where a reconnect resumes */
    int64_t step;
    int64_t step_at; /* server time of the latest metrics event */
    json_t *latest;  /* latest value of every metric seen */
    char status[32]; /* from `event: end` */
    int events_this_connection;
    int tty;
    int progress_pending; /* a progress line not yet printed (not a tty) */
    int progress_shown;   /* the live line is on screen (tty) */
    double progress_printed_s;
} watch_state;

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void format_duration(int64_t s, char *buf, size_t len) {
    if (s >= 3600)
        snprintf(buf, len, "%" PRId64 ":%02d:%02d", s / 3600, (int)(s / 60 % 60), (int)(s % 60));
    else
        snprintf(buf, len, "%d:%02d", (int)(s / 60), (int)(s % 60));
}

/* "job 3 ppo-control [#####-----] 1024/2048 50% ETA 0:04 episodic_return 24.1 ..." */
static void progress_line(const watch_state *w, char *buf, size_t len) {
    size_t used = (size_t)snprintf(buf, len, "job %" PRId64 " %s", w->job_id, w->type);
    if (w->total > 0) {
        const double frac = w->step >= w->total ? 1.0 : (double)w->step / (double)w->total;
        char bar[21];
        for (int i = 0; i < 20; i++)
            bar[i] = i < (int)(frac * 20 + 1e-9) ? '#' : '-';
        bar[20] = '\0';
        used +=
            (size_t)snprintf(buf + used, len - used, "  [%s] step %" PRId64 "/%" PRId64 " %3.0f%%",
                             bar, w->step, w->total, frac * 100);
        /* ETA from the server's clock: steps per second since the attempt
         * started, so a replayed history estimates as well as a live one. */
        const int64_t elapsed = w->step_at - w->started_at;
        if (w->step > 0 && w->step < w->total && w->started_at > 0 && elapsed >= 1) {
            char eta[32];
            format_duration(
                (int64_t)((double)(w->total - w->step) * (double)elapsed / (double)w->step), eta,
                sizeof eta);
            used += (size_t)snprintf(buf + used, len - used, "  ETA %s", eta);
        }
    } else {
        used += (size_t)snprintf(buf + used, len - used, "  step %" PRId64, w->step);
    }
    /* The type's headline metrics in their order; for a type rlhfctl does
     * not know, the first few the job reports. */
    const char *names[8] = {0};
    int n_names = 0;
    if (w->spec) {
        for (const char *const *h = w->spec->headline; *h && n_names < 8; h++)
            names[n_names++] = *h;
    } else {
        const char *key;
        json_t *v;
        json_object_foreach(w->latest, key, v) {
            if (n_names == 4)
                break;
            names[n_names++] = key;
        }
    }
    for (int i = 0; i < n_names && used < len; i++) {
        const json_t *v = json_object_get(w->latest, names[i]);
        if (json_is_number(v))
            used += (size_t)snprintf(buf + used, len - used, "  %s %.4g", names[i],
                                     json_number_value(v));
    }
}

static void progress_print(watch_state *w) {
    char line[1024];
    progress_line(w, line, sizeof line);
    if (w->tty) {
        /* Redrawn in place, so it must not wrap: cut at the terminal's width. */
        struct winsize ws;
        if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 1 &&
            strlen(line) >= ws.ws_col)
            line[ws.ws_col - 1] = '\0';
        printf("\r\033[K%s", line);
        w->progress_shown = 1;
    } else {
        printf("%s\n", line);
    }
    fflush(stdout);
    w->progress_pending = 0;
    w->progress_printed_s = monotonic_s();
}

/* Before any other output: end the live line (tty) or flush a held-back
 * progress line (not a tty) so the log reads in order. */
static void progress_settle(watch_state *w) {
    if (w->tty && w->progress_shown) {
        fputs("\r\033[K", stdout);
        w->progress_shown = 0;
    } else if (!w->tty && w->progress_pending) {
        progress_print(w);
    }
}

static int on_watch_event(void *ctx, const sse_event *ev) {
    watch_state *w = ctx;
    json_t *data = json_loads(ev->data, 0, NULL);
    if (strcmp(ev->event, "end") == 0) {
        snprintf(w->status, sizeof w->status, "%s",
                 json_string_value(json_object_get(data, "status"))
                     ? json_string_value(json_object_get(data, "status"))
                     : "unknown");
        if (w->c->json_output)
            printf("%s\n", ev->data);
        json_decref(data);
        return SSE_STOP;
    }
    if (ev->id > 0)
        w->last_id = ev->id;
    w->events_this_connection++;
    if (w->c->json_output) {
        printf("%s\n", ev->data); /* NDJSON: the server's event objects */
        fflush(stdout);
    }
    const json_t *payload = json_object_get(data, "data");
    const json_int_t created = json_integer_value(json_object_get(data, "created_at"));
    const char *code = json_string_value(json_object_get(data, "code"));
    if (strcmp(ev->event, "metrics") == 0 && json_is_object(payload)) {
        w->step = json_integer_value(json_object_get(payload, "step"));
        w->step_at = created;
        json_object_update(w->latest, json_object_get(payload, "metrics"));
        if (!w->c->json_output) {
            w->progress_pending = 1;
            if (w->tty || monotonic_s() - w->progress_printed_s >= WATCH_PROGRESS_PERIOD_S)
                progress_print(w);
        }
    } else {
        if (code && strcmp(code, "started") == 0) { /* a new attempt starts from step 0 */
            w->started_at = created;
            w->step = 0;
        }
        if (!w->c->json_output) {
            progress_settle(w);
            print_event_line(stdout, data);
            if (w->tty && w->step > 0)
                progress_print(w);
            fflush(stdout);
        }
    }
    json_decref(data);
    return SSE_CONTINUE;
}

/* "job 3 succeeded", or "job 3 failed: <the job's error>". */
static void print_outcome(const rlhfctl *c, int64_t id, const char *status) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%" PRId64, id);
    json_t *job = NULL;
    const char *error = NULL;
    if (strcmp(status, "succeeded") != 0 && api_request(c, "GET", path, NULL, &job) == 0)
        error = json_string_value(json_object_get(json_object_get(job, "error"), "message"));
    printf("job %" PRId64 " %s%s%s\n", id, status, error ? ": " : "", error ? error : "");
    json_decref(job);
}

/* Follows job id from after event since; returns the exit code. */
static int job_watch(const rlhfctl *c, int64_t id, int64_t since, int retries) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%" PRId64, id);
    json_t *job = NULL;
    int rc = api_request(c, "GET", path, NULL, &job);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    watch_state w = {.c = c,
                     .job_id = id,
                     .last_id = since,
                     .latest = json_object(),
                     .tty = isatty(STDOUT_FILENO) && !c->json_output};
    snprintf(w.type, sizeof w.type, "%s", json_string_value(json_object_get(job, "type")));
    w.spec = progress_spec_find(w.type);
    if (w.spec)
        w.total = json_integer_value(
            json_object_get(json_object_get(job, "hyperparameters"), w.spec->total_key));
    w.started_at = json_integer_value(json_object_get(job, "started_at"));
    json_decref(job);

    snprintf(path, sizeof path, "/v1/jobs/%" PRId64 "/stream", id);
    int failures = 0;
    for (;;) {
        char err[4096 + CURL_ERROR_SIZE + 8] = "";
        w.events_this_connection = 0;
        rc = api_stream(c, path, w.last_id, on_watch_event, &w, err, sizeof err);
        if (rc != RLHFCTL_EXIT_NETWORK)
            break;
        failures = w.events_this_connection > 0 ? 1 : failures + 1;
        progress_settle(&w);
        if (failures > retries) {
            fprintf(stderr,
                    "rlhfctl: network error: %s\n  gave up after %d attempts; resume with "
                    "`rlhfctl jobs watch %" PRId64 " --since %" PRId64 "`\n",
                    err, retries + 1, id, w.last_id);
            break;
        }
        int backoff_ms = WATCH_BACKOFF_FIRST_MS << (failures - 1 < 6 ? failures - 1 : 6);
        if (backoff_ms > WATCH_BACKOFF_MAX_MS)
            backoff_ms = WATCH_BACKOFF_MAX_MS;
        fprintf(stderr,
                "rlhfctl: connection lost (%s); reconnecting in %.2f s after event %" PRId64
                " (retry %d of %d)\n",
                err, backoff_ms / 1000.0, w.last_id, failures, retries);
        cli_sleep_ms(backoff_ms);
    }
    if (rc == RLHFCTL_EXIT_OK && !c->json_output) {
        if (w.tty && w.progress_shown)
            putchar('\n'); /* the last progress line stays on screen */
        progress_settle(&w);
        print_outcome(c, id, w.status);
    }
    json_decref(w.latest);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    return strcmp(w.status, "succeeded") == 0 ? RLHFCTL_EXIT_OK : RLHFCTL_EXIT_JOB_FAILED;
}

int cmd_jobs_watch(const rlhfctl *c, const cli_args *a) {
    const int64_t id = cli_parse_id(a->pos[0], "job ID");
    if (id == 0)
        return RLHFCTL_EXIT_USAGE;
    int64_t since = 0;
    int retries = 10;
    const char *v;
    char *end;
    if ((v = cli_opt(a, "since")) != NULL) {
        since = strtoll(v, &end, 10);
        if (end == v || *end || since < 0)
            return cli_usage_error("--since wants an event id (0 or more), got '%s'", v);
    }
    if ((v = cli_opt(a, "retries")) != NULL) {
        long n = strtol(v, &end, 10);
        if (end == v || *end || n < 0 || n > 1000)
            return cli_usage_error("--retries wants 0..1000, got '%s'", v);
        retries = (int)n;
    }
    return job_watch(c, id, since, retries);
}
