/* rlhfctl loops: create an online RLHF loop (POST /v1/loops,
 * docs/online_loop.md) from a JSON file and/or options, follow it round by
 * round until it ends, show its per-round signals, list and cancel loops.
 *
 * A loop waits in its `annotating` phase for people (or `rlhfctl annotate
 * --simulate demo`) to rank its comparisons; watch only reports that, it
 * ranks nothing itself. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlhfctl.h"

/* How often `loops watch` asks for the loop. */
enum { LOOP_WATCH_INTERVAL_MS = 2000 };

static const column loop_cols[] = {
    {"ID", "id", COLUMN_KIND_TEXT},
    {"NAME", "name", COLUMN_KIND_TEXT},
    {"STATUS", "status", COLUMN_KIND_TEXT},
    {"PHASE", "phase", COLUMN_KIND_TEXT},
    {"ROUND", "round", COLUMN_KIND_TEXT},
    {"ROUNDS", "config.rounds", COLUMN_KIND_TEXT},
    {"OPTIMIZER", "config.optimizer", COLUMN_KIND_TEXT},
    {"SELECTION", "config.selection", COLUMN_KIND_TEXT},
    {"PROJECT", "project", COLUMN_KIND_TEXT},
    {"CREATED", "created_at", COLUMN_KIND_TIME},
    {"ERROR", "error", COLUMN_KIND_ONELINE},
};
#define N_LOOP_COLS (int)(sizeof loop_cols / sizeof loop_cols[0])

/* ---- a round's signals ----------------------------------------------------------------- */

/* The round's number at key with 3 decimals, "-" when null. */
static void signal_text(const json_t *round, const char *key, char *out, size_t len) {
    const json_t *v = json_object_get(round, key);
    if (json_is_number(v))
        snprintf(out, len, "%.3f", json_number_value(v));
    else
        snprintf(out, len, "-");
}

/* The signals of each round, in the order the table shows them. */
static const column round_cols[] = {
    {"ROUND", "round", COLUMN_KIND_TEXT},
    {"SELECTION", "selection", COLUMN_KIND_TEXT},
    {"RANKINGS", "rankings", COLUMN_KIND_TEXT},
    {"RM_ACC", "rm_accuracy", COLUMN_KIND_TEXT},
    {"AGREEMENT", "agreement", COLUMN_KIND_TEXT},
    {"PROXY", "proxy_score", COLUMN_KIND_TEXT},
    {"KL", "kl", COLUMN_KIND_TEXT},
    {"SAMPLE_GOLD", "sample_gold_score", COLUMN_KIND_TEXT},
    {"GOLD", "gold_score", COLUMN_KIND_TEXT},
};
#define N_ROUND_COLS (int)(sizeof round_cols / sizeof round_cols[0])
/* Columns from here on are numbers shown with 3 decimals. */
enum { ROUND_FIRST_SIGNAL_COL = 3 };

/* The rounds of loop as rows of display text (3 decimals for the signals). */
static json_t *round_rows(const json_t *loop) {
    json_t *rows = json_array();
    size_t i;
    json_t *round;
    json_array_foreach(json_object_get(loop, "rounds"), i, round) {
        json_t *row = json_object();
        for (int col = 0; col < N_ROUND_COLS; col++) {
            char text[64];
            if (col >= ROUND_FIRST_SIGNAL_COL)
                signal_text(round, round_cols[col].key, text, sizeof text);
            else
                table_format(round, &round_cols[col], text, sizeof text);
            json_object_set_new(row, round_cols[col].key, json_string(text));
        }
        json_array_append_new(rows, row);
    }
    return rows;
}

/* The per-round signals as an aligned table, or a markdown table for
 * bench/RESULTS.md. */
static void print_rounds(const json_t *loop, int markdown) {
    json_t *rows = round_rows(loop);
    if (!markdown) {
        if (json_array_size(rows) == 0)
            puts("(no round yet)");
        else
            table_print(stdout, rows, round_cols, N_ROUND_COLS);
        json_decref(rows);
        return;
    }
    puts("| round | selection | rankings | RM accuracy on them | agreement | proxy | KL | "
         "gold of samples | gold after |\n|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    size_t i;
    json_t *row;
    json_array_foreach(rows, i, row) {
        for (int col = 0; col < N_ROUND_COLS; col++)
            printf("| %s ", json_string_value(json_object_get(row, round_cols[col].key)));
        puts("|");
    }
    json_decref(rows);
}

/* "round 2: uncertainty, 8 rankings, RM accuracy 0.625, ..." of a finished
 * round: one line of `loops watch`. */
static void print_round_line(const json_t *round) {
    char acc[32], agree[32], proxy[32], kl[32], before[32], after[32];
    signal_text(round, "rm_accuracy", acc, sizeof acc);
    signal_text(round, "agreement", agree, sizeof agree);
    signal_text(round, "proxy_score", proxy, sizeof proxy);
    signal_text(round, "kl", kl, sizeof kl);
    signal_text(round, "sample_gold_score", before, sizeof before);
    signal_text(round, "gold_score", after, sizeof after);
    printf("round %" JSON_INTEGER_FORMAT ": %s, %" JSON_INTEGER_FORMAT
           " rankings, RM accuracy on them %s, agreement %s, proxy %s, KL %s, gold %s -> %s\n",
           json_integer_value(json_object_get(round, "round")),
           json_string_value(json_object_get(round, "selection")),
           json_integer_value(json_object_get(round, "rankings")), acc, agree, proxy, kl, before,
           after);
}

/* ---- show, list, cancel ----------------------------------------------------------------- */

/* "loop 3 demo: running, round 2 of 3, annotating (ppo, uncertainty; project 4,
 * prompts 2, from checkpoint 7)" and the error of a failed loop. */
static void print_loop_header(const json_t *loop) {
    const json_t *config = json_object_get(loop, "config");
    printf("loop %" JSON_INTEGER_FORMAT " %s: %s, round %" JSON_INTEGER_FORMAT
           " of %" JSON_INTEGER_FORMAT ", %s (%s, %s; project %" JSON_INTEGER_FORMAT
           ", prompts %" JSON_INTEGER_FORMAT ", from checkpoint %" JSON_INTEGER_FORMAT ")\n",
           json_integer_value(json_object_get(loop, "id")),
           json_string_value(json_object_get(loop, "name")),
           json_string_value(json_object_get(loop, "status")),
           json_integer_value(json_object_get(loop, "round")),
           json_integer_value(json_object_get(config, "rounds")),
           json_string_value(json_object_get(loop, "phase")),
           json_string_value(json_object_get(config, "optimizer")),
           json_string_value(json_object_get(config, "selection")),
           json_integer_value(json_object_get(loop, "project")),
           json_integer_value(json_object_get(loop, "prompts")),
           json_integer_value(json_object_get(loop, "model")));
    const char *error = json_string_value(json_object_get(loop, "error"));
    if (error)
        printf("error: %s\n", error);
}

static void print_loop(const json_t *loop) {
    print_loop_header(loop);
    print_rounds(loop, 0);
}

static void print_loop_markdown(const json_t *loop) {
    print_rounds(loop, 1);
}

int cmd_loops_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "loop ID", "loops", "",
                          cli_flag(a, "markdown") ? print_loop_markdown : print_loop);
}

int cmd_loops_list(const rlhfctl *c, const cli_args *a) {
    static const char *const filters[] = {"limit", "after", NULL};
    return cmd_show_list(c, a, "/v1/loops", filters, loop_cols, N_LOOP_COLS);
}

int cmd_loops_cancel(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "POST", "loop ID", "loops", "/cancel", print_loop_header);
}

/* ---- watch -------------------------------------------------------------------------- */

/* What the loop does now: "round 2 annotating: 3 of 8 rankings" — the
 * rankings only while annotating, the job while it trains. */
static void activity_text(const json_t *loop, char *out, size_t len) {
    const char *phase = json_string_value(json_object_get(loop, "phase"));
    const json_int_t round_no = json_integer_value(json_object_get(loop, "round"));
    const json_t *rounds = json_object_get(loop, "rounds");
    const json_t *round = json_array_get(rounds, json_array_size(rounds) - 1);
    if (json_integer_value(json_object_get(round, "round")) != round_no)
        round = NULL; /* sampling: the round's row is written with its comparisons */
    size_t used = (size_t)snprintf(out, len, "round %" JSON_INTEGER_FORMAT " %s", round_no, phase);
    if (round == NULL || used >= len)
        return;
    if (strcmp(phase, "annotating") == 0)
        snprintf(out + used, len - used,
                 ": %" JSON_INTEGER_FORMAT " comparisons posted, waiting for %" JSON_INTEGER_FORMAT
                 " rankings",
                 json_integer_value(json_object_get(round, "comparisons")),
                 json_integer_value(
                     json_object_get(json_object_get(loop, "config"), "rankings_per_round")));
    else if (strcmp(phase, "reward") == 0)
        snprintf(out + used, len - used, ": reward job %" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(round, "reward_job")));
    else if (strcmp(phase, "policy") == 0)
        snprintf(out + used, len - used, ": policy job %" JSON_INTEGER_FORMAT,
                 json_integer_value(json_object_get(round, "policy_job")));
}

/* Polls loop id until it ends, printing each change of round or phase and
 * each round's signals as it finishes; then the rounds table. Exit 0 if it
 * succeeded, 1 if it failed or was cancelled. */
static int loop_watch(const rlhfctl *c, int64_t id) {
    char path[96], last[256] = "";
    snprintf(path, sizeof path, "/v1/loops/%" PRId64, id);
    json_int_t rounds_printed = 0;
    for (;;) {
        json_t *loop = NULL;
        int rc = api_request(c, "GET", path, NULL, &loop);
        if (rc != RLHFCTL_EXIT_OK)
            return rc;
        const char *status = json_string_value(json_object_get(loop, "status"));
        const int done = strcmp(status, "running") != 0;
        if (!c->json_output) {
            size_t i;
            json_t *round;
            json_array_foreach(json_object_get(loop, "rounds"), i, round) {
                const json_int_t n = json_integer_value(json_object_get(round, "round"));
                if (n > rounds_printed && !json_is_null(json_object_get(round, "finished_at"))) {
                    print_round_line(round);
                    rounds_printed = n;
                }
            }
            char now[256];
            activity_text(loop, now, sizeof now);
            if (!done && strcmp(now, last) != 0) {
                printf("loop %" PRId64 " %s\n", id, now);
                snprintf(last, sizeof last, "%s", now);
            }
            fflush(stdout);
        }
        if (done) {
            rc = strcmp(status, "succeeded") == 0 ? RLHFCTL_EXIT_OK : RLHFCTL_EXIT_JOB_FAILED;
            output_reply(c, loop, print_loop);
            return rc;
        }
        json_decref(loop);
        cli_sleep_ms(LOOP_WATCH_INTERVAL_MS);
    }
}

int cmd_loops_watch(const rlhfctl *c, const cli_args *a) {
    const int64_t id = cli_parse_id(a->pos[0], "loop ID");
    return id == 0 ? RLHFCTL_EXIT_USAGE : loop_watch(c, id);
}

/* ---- create ------------------------------------------------------------------------- */

int cmd_loops_create(const rlhfctl *c, const cli_args *a) {
    json_t *body = a->n_pos ? cli_load_object(a->pos[0], "a loop") : json_object();
    if (body == NULL)
        return RLHFCTL_EXIT_USAGE;
    const char *name = cli_opt(a, "name");
    if (name != NULL)
        json_object_set_new(body, "name", json_string(name));
    if (!cli_model_option(a, "model", body, "model") ||
        !cli_model_option(a, "reward-model", body, "reward_model") ||
        !cli_id_option(a, "project", body, "project") ||
        !cli_id_option(a, "prompts", body, "prompts") || !cli_set_options(a, "set", body)) {
        json_decref(body);
        return RLHFCTL_EXIT_USAGE;
    }
    json_t *loop = NULL;
    int rc = api_request(c, "POST", "/v1/loops", body, &loop);
    json_decref(body);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    const int64_t id = json_integer_value(json_object_get(loop, "id"));
    if (!cli_flag(a, "watch")) {
        output_reply(c, loop, print_loop_header);
        return RLHFCTL_EXIT_OK;
    }
    if (!c->json_output)
        print_loop_header(loop);
    json_decref(loop);
    return loop_watch(c, id);
}
