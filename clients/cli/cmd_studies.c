/* rlhfctl studies: submit a study (a base job over a grid or list of
 * variations × seeds, POST /v1/studies) from a JSON file, follow it until
 * its jobs end, show its summary table, list and cancel studies. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rlhfctl.h"

/* How often `studies watch` asks for the study. */
enum { STUDY_WATCH_INTERVAL_MS = 2000 };

static const column study_cols[] = {
    {"ID", "id", COLUMN_KIND_TEXT},
    {"NAME", "name", COLUMN_KIND_TEXT},
    {"TYPE", "type", COLUMN_KIND_TEXT},
    {"METRIC", "metric", COLUMN_KIND_TEXT},
    {"STATUS", "status", COLUMN_KIND_TEXT},
    {"QUEUED", "job_counts.queued", COLUMN_KIND_TEXT},
    {"RUNNING", "job_counts.running", COLUMN_KIND_TEXT},
    {"SUCCEEDED", "job_counts.succeeded", COLUMN_KIND_TEXT},
    {"FAILED", "job_counts.failed", COLUMN_KIND_TEXT},
    {"CANCELLED", "job_counts.cancelled", COLUMN_KIND_TEXT},
    {"CREATED", "created_at", COLUMN_KIND_TIME},
};
#define N_STUDY_COLS (int)(sizeof study_cols / sizeof study_cols[0])

/* "431.4 ± 20.1" of row's <name>_mean and <name>_std ("-" without runs). */
static void mean_std(const json_t *row, const char *name, char *out, size_t len) {
    char key[64];
    snprintf(key, sizeof key, "%s_mean", name);
    const json_t *mean = json_object_get(row, key);
    snprintf(key, sizeof key, "%s_std", name);
    const json_t *std = json_object_get(row, key);
    if (!json_is_number(mean))
        snprintf(out, len, "-");
    else if (!json_is_number(std))
        snprintf(out, len, "%.4g", json_number_value(mean));
    else
        snprintf(out, len, "%.4g ± %.2g", json_number_value(mean), json_number_value(std));
}

/* The summary table of a study: per variation, runs, final, best and wall
 * time (mean ± std over seeds); markdown for bench/RESULTS.md. */
static void print_summary(const json_t *study, int markdown) {
    const char *metric = json_string_value(json_object_get(study, "metric"));
    if (markdown)
        printf("| variation | runs | final %s | best %s | wall s |\n|---|---:|---:|---:|---:|\n",
               metric, metric);
    else
        printf("summary of %s (mean ± std over seeds, succeeded runs):\n", metric);
    json_t *rows = json_array();
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(study, "summary"), i, row) {
        char final[64], best[64], wall[64];
        mean_std(row, "final", final, sizeof final);
        mean_std(row, "best", best, sizeof best);
        mean_std(row, "wall_s", wall, sizeof wall);
        const char *label = json_string_value(json_object_get(row, "label"));
        const json_int_t runs = json_integer_value(json_object_get(row, "runs"));
        if (markdown)
            printf("| %s | %" JSON_INTEGER_FORMAT " | %s | %s | %s |\n", label, runs, final, best,
                   wall);
        json_array_append_new(rows, json_pack("{s:s, s:I, s:s, s:s, s:s}", "label", label, "runs",
                                              runs, "final", final, "best", best, "wall", wall));
    }
    static const column cols[] = {
        {"VARIATION", "label", COLUMN_KIND_TEXT}, {"RUNS", "runs", COLUMN_KIND_TEXT},
        {"FINAL", "final", COLUMN_KIND_TEXT},     {"BEST", "best", COLUMN_KIND_TEXT},
        {"WALL_S", "wall", COLUMN_KIND_TEXT},
    };
    if (!markdown)
        table_print(stdout, rows, cols, (int)(sizeof cols / sizeof cols[0]));
    json_decref(rows);
}

/* counts_text, below */
static void counts_text(const json_t *study, char *out, size_t len);

static void print_study(const json_t *study) {
    char counts[256];
    counts_text(study, counts, sizeof counts);
    printf("study %" JSON_INTEGER_FORMAT " %s: %s jobs, %s (%s)\n",
           json_integer_value(json_object_get(study, "id")),
           json_string_value(json_object_get(study, "name")),
           json_string_value(json_object_get(study, "type")),
           json_string_value(json_object_get(study, "status")), counts);
    if (json_object_get(study, "jobs") == NULL)
        return;
    static const column job_cols[] = {
        {"JOB", "id", COLUMN_KIND_TEXT},      {"VARIATION", "variation", COLUMN_KIND_TEXT},
        {"SEED", "seed", COLUMN_KIND_TEXT},   {"STATUS", "status", COLUMN_KIND_TEXT},
        {"FINAL", "final", COLUMN_KIND_TEXT}, {"BEST", "best", COLUMN_KIND_TEXT},
    };
    table_print(stdout, json_object_get(study, "jobs"), job_cols,
                (int)(sizeof job_cols / sizeof job_cols[0]));
    putchar('\n');
    print_summary(study, 0);
}

static void print_study_markdown(const json_t *study) {
    print_summary(study, 1);
}

int cmd_studies_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "study ID", "studies", "",
                          cli_flag(a, "markdown") ? print_study_markdown : print_study);
}

int cmd_studies_list(const rlhfctl *c, const cli_args *a) {
    static const char *const filters[] = {"limit", "after", NULL};
    return cmd_show_list(c, a, "/v1/studies", filters, study_cols, N_STUDY_COLS);
}

int cmd_studies_cancel(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "POST", "study ID", "studies", "/cancel", print_study);
}

/* "queued 3, running 2, succeeded 4" of the job counts that are not 0. */
static void counts_text(const json_t *study, char *out, size_t len) {
    size_t used = 0;
    const char *status;
    json_t *n;
    out[0] = '\0';
    json_object_foreach(json_object_get(study, "job_counts"), status, n) {
        if (json_integer_value(n) > 0 && used < len)
            used += (size_t)snprintf(out + used, len - used, "%s%s %" JSON_INTEGER_FORMAT,
                                     used ? ", " : "", status, json_integer_value(n));
    }
}

/* Polls study id until no job is left to run, printing each change of its
 * job counts; then the summary. Exit 0 if every job succeeded, 1 if not. */
static int study_watch(const rlhfctl *c, int64_t id) {
    char path[96], last[256] = "";
    snprintf(path, sizeof path, "/v1/studies/%" PRId64, id);
    for (;;) {
        json_t *study = NULL;
        int rc = api_request(c, "GET", path, NULL, &study);
        if (rc != RLHFCTL_EXIT_OK)
            return rc;
        const char *status = json_string_value(json_object_get(study, "status"));
        const int done = strcmp(status, "queued") != 0 && strcmp(status, "running") != 0;
        char now[256];
        counts_text(study, now, sizeof now);
        if (strcmp(now, last) != 0 && !c->json_output) {
            printf("study %" PRId64 " %s: %s\n", id, status, now);
            fflush(stdout);
            snprintf(last, sizeof last, "%s", now);
        }
        if (done) {
            rc = strcmp(status, "succeeded") == 0 ? RLHFCTL_EXIT_OK : RLHFCTL_EXIT_JOB_FAILED;
            if (c->json_output)
                output_reply(c, study, NULL);
            else {
                print_summary(study, 0);
                json_decref(study);
            }
            return rc;
        }
        json_decref(study);
        cli_sleep_ms(STUDY_WATCH_INTERVAL_MS);
    }
}

int cmd_studies_watch(const rlhfctl *c, const cli_args *a) {
    const int64_t id = cli_parse_id(a->pos[0], "study ID");
    return id == 0 ? RLHFCTL_EXIT_USAGE : study_watch(c, id);
}

int cmd_studies_submit(const rlhfctl *c, const cli_args *a) {
    json_t *body = cli_load_object(a->pos[0], "a study");
    if (body == NULL)
        return RLHFCTL_EXIT_USAGE;
    const char *name = cli_opt(a, "name");
    if (name != NULL)
        json_object_set_new(body, "name", json_string(name));
    json_t *study = NULL;
    int rc = api_request(c, "POST", "/v1/studies", body, &study);
    json_decref(body);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    const int64_t id = json_integer_value(json_object_get(study, "id"));
    if (!cli_flag(a, "watch")) {
        output_reply(c, study, print_study);
        return RLHFCTL_EXIT_OK;
    }
    if (!c->json_output)
        printf("study %" PRId64 ": %zu jobs\n", id,
               json_array_size(json_object_get(study, "jobs")));
    json_decref(study);
    return study_watch(c, id);
}
