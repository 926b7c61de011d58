/* rlhfctl subcommands for everything but jobs: datasets, preference
 * projects, comparisons and rankings, tokens, checkpoints. Each is one
 * request (two for `datasets create --file`), printed as a table or an
 * object, or as the server's JSON with --json. */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rlhfctl.h"

/* An integer option into obj[key] (absent: left out). */
static int set_int_opt(const cli_args *a, const char *opt, json_t *obj, const char *key) {
    const char *v = cli_opt(a, opt);
    if (v == NULL)
        return 1;
    char *end;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (errno || end == v || *end) {
        cli_usage_error("--%s must be an integer, got '%s'", opt, v);
        return 0;
    }
    json_object_set_new(obj, key, json_integer(n));
    return 1;
}

/* ---- datasets ----------------------------------------------------------------------- */

static const column dataset_cols[] = {
    {"ID", "id", COLUMN_KIND_TEXT},         {"NAME", "name", COLUMN_KIND_ONELINE},
    {"FORMAT", "format", COLUMN_KIND_TEXT}, {"ROWS", "n_rows", COLUMN_KIND_TEXT},
    {"STATUS", "status", COLUMN_KIND_TEXT}, {"CREATED", "created_at", COLUMN_KIND_TIME},
};

static void print_dataset_line(const json_t *ds) {
    printf("dataset %" JSON_INTEGER_FORMAT " \"%s\": %s, %" JSON_INTEGER_FORMAT " rows, %s\n",
           json_integer_value(json_object_get(ds, "id")),
           json_string_value(json_object_get(ds, "name")),
           json_string_value(json_object_get(ds, "format")),
           json_integer_value(json_object_get(ds, "n_rows")),
           json_string_value(json_object_get(ds, "status")));
}

static int upload_into(const rlhfctl *c, int64_t id, const char *file) {
    char path[96];
    snprintf(path, sizeof path, "/v1/datasets/%" PRId64 "/upload", id);
    json_t *reply = NULL;
    int rc = api_upload(c, path, file, NULL, &reply);
    if (rc == RLHFCTL_EXIT_OK)
        output_reply(c, reply, print_dataset_line);
    return rc;
}

int cmd_datasets_create(const rlhfctl *c, const cli_args *a) {
    const char *format = cli_opt(a, "format");
    const char *file = cli_opt(a, "file");
    if (format == NULL)
        return cli_usage_error("--format is required (sft, preference or prompts)");
    if (file && strcmp(file, "-") != 0 && access(file, R_OK) != 0) /* before creating anything */
        return fprintf(stderr, "rlhfctl: cannot read %s: %s\n", file, strerror(errno)),
               RLHFCTL_EXIT_USAGE;
    json_t *body = json_pack("{s:s, s:s}", "name", a->pos[0], "format", format);
    json_t *reply = NULL;
    int rc = api_request(c, "POST", "/v1/datasets", body, &reply);
    json_decref(body);
    if (rc != RLHFCTL_EXIT_OK)
        return rc;
    if (file == NULL) {
        output_reply(c, reply, print_dataset_line);
        return rc;
    }
    const int64_t id = json_integer_value(json_object_get(reply, "id"));
    json_decref(reply);
    return upload_into(c, id, file);
}

int cmd_datasets_upload(const rlhfctl *c, const cli_args *a) {
    int64_t id = cli_parse_id(a->pos[0], "dataset ID");
    return id ? upload_into(c, id, a->pos[1]) : RLHFCTL_EXIT_USAGE;
}

int cmd_datasets_list(const rlhfctl *c, const cli_args *a) {
    static const char *const filters[] = {"format", "limit", "after", NULL};
    return cmd_show_list(c, a, "/v1/datasets", filters, dataset_cols,
                         sizeof dataset_cols / sizeof dataset_cols[0]);
}

int cmd_datasets_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "dataset ID", "datasets", "", cmd_print_object);
}

int cmd_datasets_delete(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "DELETE", "dataset ID", "datasets", "", cmd_print_object);
}

/* ---- projects, comparisons, rankings ------------------------------------------------- */

static const char *const page_filters[] = {"limit", "after", NULL};

int cmd_projects_create(const rlhfctl *c, const cli_args *a) {
    json_t *body = json_pack("{s:s}", "name", a->pos[0]);
    int rc = RLHFCTL_EXIT_USAGE;
    if (set_int_opt(a, "k", body, "k") && set_int_opt(a, "overlap", body, "overlap"))
        rc = cmd_request(c, "POST", "/v1/projects", body, cmd_print_object);
    json_decref(body);
    return rc;
}

int cmd_projects_list(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},
        {"NAME", "name", COLUMN_KIND_ONELINE},
        {"K", "k", COLUMN_KIND_TEXT},
        {"OVERLAP", "overlap", COLUMN_KIND_TEXT},
        {"COMPARISONS", "n_comparisons", COLUMN_KIND_TEXT},
        {"CREATED", "created_at", COLUMN_KIND_TIME},
    };
    return cmd_show_list(c, a, "/v1/projects", page_filters, cols, sizeof cols / sizeof cols[0]);
}

int cmd_projects_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "project ID", "projects", "", cmd_print_object);
}

/* POST /v1/projects/{id}/members {token_id, role?}: the token's role by
 * default. */
int cmd_projects_grant(const rlhfctl *c, const cli_args *a) {
    char path[96];
    if (!cmd_id_path(a, 0, "project ID", "projects", "/members", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    const int64_t token = cli_parse_id(a->pos[1], "token ID");
    if (token == 0)
        return RLHFCTL_EXIT_USAGE;
    json_t *body = json_pack("{s:I}", "token_id", (json_int_t)token);
    const char *role = cli_opt(a, "role");
    if (role != NULL)
        json_object_set_new(body, "role", json_string(role));
    int rc = cmd_request(c, "POST", path, body, cmd_print_object);
    json_decref(body);
    return rc;
}

int cmd_projects_pairs(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},
        {"COMPARISON", "comparison_id", COLUMN_KIND_TEXT},
        {"ANNOTATOR", "annotator", COLUMN_KIND_TEXT},
        {"PROMPT", "prompt", COLUMN_KIND_ONELINE},
        {"CHOSEN", "chosen", COLUMN_KIND_ONELINE},
        {"REJECTED", "rejected", COLUMN_KIND_ONELINE},
    };
    char path[96];
    if (!cmd_id_path(a, 0, "project ID", "projects", "/pairs", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    return cmd_show_list(c, a, path, page_filters, cols, sizeof cols / sizeof cols[0]);
}

/* A comparison for a person about to rank it: the prompt and each
 * candidate in full, with the ids `rank` takes. */
static void print_comparison(const json_t *cmp) {
    const json_int_t id = json_integer_value(json_object_get(cmp, "id"));
    printf("comparison %" JSON_INTEGER_FORMAT " (project %" JSON_INTEGER_FORMAT
           ", %" JSON_INTEGER_FORMAT " rankings)",
           id, json_integer_value(json_object_get(cmp, "project_id")),
           json_integer_value(json_object_get(cmp, "n_rankings")));
    const json_t *lease = json_object_get(cmp, "lease_expires_at");
    if (json_is_integer(lease)) {
        char until[64];
        column col = {"", "lease_expires_at", COLUMN_KIND_TIME};
        printf(", leased to you until %s", table_format(cmp, &col, until, sizeof until));
    }
    printf("\n\nprompt:\n  %s\n\ncandidates:\n", json_string_value(json_object_get(cmp, "prompt")));
    size_t i;
    const json_t *cand;
    json_array_foreach(json_object_get(cmp, "candidates"), i, cand) {
        printf("  [%" JSON_INTEGER_FORMAT "] %s\n", json_integer_value(json_object_get(cand, "id")),
               json_string_value(json_object_get(cand, "text")));
    }
    printf("\nrank it: rlhfctl rank %" JSON_INTEGER_FORMAT " BEST [NEXT]... (ties: A=B)\n", id);
}

int cmd_comparisons_add(const rlhfctl *c, const cli_args *a) {
    const char *prompt = cli_opt(a, "prompt");
    const char *texts[CLI_MAX_ARGS];
    int n = cli_opt_all(a, "candidate", texts, CLI_MAX_ARGS);
    const char *sample_from = cli_opt(a, "sample-from");
    if (prompt == NULL || (n == 0) == (sample_from == NULL))
        return cli_usage_error("--prompt and either at least two --candidate or --sample-from "
                               "CHECKPOINT are required");
    char path[96];
    if (!cmd_id_path(a, 0, "project ID", "projects", "/comparisons", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    if (sample_from != NULL) { /* rlhfd samples the candidates */
        const int64_t checkpoint = cli_parse_id(sample_from, "sample-from");
        if (checkpoint == 0)
            return RLHFCTL_EXIT_USAGE;
        json_t *sample = json_pack("{s:I}", "checkpoint_id", (json_int_t)checkpoint);
        if (!cli_sampling_options(a, sample)) {
            json_decref(sample);
            return RLHFCTL_EXIT_USAGE;
        }
        json_t *body = json_pack("{s:s, s:o}", "prompt", prompt, "sample", sample);
        int rc = cmd_request(c, "POST", path, body, print_comparison);
        json_decref(body);
        return rc;
    }
    json_t *candidates = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(candidates, json_pack("{s:s}", "text", texts[i]));
    json_t *body = json_pack("{s:s, s:o}", "prompt", prompt, "candidates", candidates);
    int rc = cmd_request(c, "POST", path, body, print_comparison);
    json_decref(body);
    return rc;
}

int cmd_comparisons_list(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},
        {"PROMPT", "prompt", COLUMN_KIND_ONELINE},
        {"RANKINGS", "n_rankings", COLUMN_KIND_TEXT},
        {"CREATED", "created_at", COLUMN_KIND_TIME},
    };
    char path[96];
    if (!cmd_id_path(a, 0, "project ID", "projects", "/comparisons", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    return cmd_show_list(c, a, path, page_filters, cols, sizeof cols / sizeof cols[0]);
}

int cmd_comparisons_show(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "comparison ID", "comparisons", "", print_comparison);
}

int cmd_comparisons_next(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "project ID", "projects", "/comparisons/next",
                          print_comparison);
}

int cmd_comparisons_rankings(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},           {"ANNOTATOR", "annotator", COLUMN_KIND_TEXT},
        {"SKIPPED", "skipped", COLUMN_KIND_TEXT}, {"ORDER", "order", COLUMN_KIND_TEXT},
        {"PAIRS", "n_pairs", COLUMN_KIND_TEXT},   {"NOTE", "note", COLUMN_KIND_ONELINE},
    };
    char path[96];
    if (!cmd_id_path(a, 0, "comparison ID", "comparisons", "/rankings", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    return cmd_show_list(c, a, path, page_filters, cols, sizeof cols / sizeof cols[0]);
}

static void print_ranking(const json_t *r) {
    printf("ranking %" JSON_INTEGER_FORMAT " of comparison %" JSON_INTEGER_FORMAT
           ": %s, %" JSON_INTEGER_FORMAT " preference pairs\n",
           json_integer_value(json_object_get(r, "id")),
           json_integer_value(json_object_get(r, "comparison_id")),
           json_is_true(json_object_get(r, "skipped")) ? "skipped" : "ranked",
           json_integer_value(json_object_get(r, "n_pairs")));
}

/* "12=13" → [12, 13]; NULL and a usage error if a part is not an id. */
static json_t *parse_group(const char *text) {
    json_t *group = json_array();
    for (const char *p = text;;) {
        size_t n = strcspn(p, "=");
        char part[32];
        snprintf(part, sizeof part, "%.*s", (int)(n < 31 ? n : 31), p);
        int64_t id = cli_parse_id(part, "a candidate id");
        if (id == 0) {
            json_decref(group);
            return NULL;
        }
        json_array_append_new(group, json_integer(id));
        if (p[n] == '\0')
            return group;
        p += n + 1;
    }
}

int cmd_rank(const rlhfctl *c, const cli_args *a) {
    char path[96];
    if (!cmd_id_path(a, 0, "comparison ID", "comparisons", "/rankings", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    const int skip = cli_flag(a, "skip");
    if (skip == (a->n_pos > 1))
        return cli_usage_error("give the candidate groups best first, or --skip");
    json_t *body = json_object();
    if (skip) {
        json_object_set_new(body, "skip", json_true());
    } else {
        json_t *order = json_array();
        json_object_set_new(body, "order", order);
        for (int i = 1; i < a->n_pos; i++) {
            json_t *group = parse_group(a->pos[i]);
            if (group == NULL) {
                json_decref(body);
                return RLHFCTL_EXIT_USAGE;
            }
            json_array_append_new(order, group);
        }
    }
    if (cli_opt(a, "note"))
        json_object_set_new(body, "note", json_string(cli_opt(a, "note")));
    int rc = cmd_request(c, "POST", path, body, print_ranking);
    json_decref(body);
    return rc;
}

/* ---- tokens -------------------------------------------------------------------------- */

static void print_new_token(const json_t *t) {
    printf("token \"%s\" (%s), id %" JSON_INTEGER_FORMAT "; the secret is shown only now:\n%s\n",
           json_string_value(json_object_get(t, "name")),
           json_string_value(json_object_get(t, "role")),
           json_integer_value(json_object_get(t, "id")),
           json_string_value(json_object_get(t, "token")));
}

int cmd_tokens_create(const rlhfctl *c, const cli_args *a) {
    const char *role = cli_opt(a, "role");
    if (role == NULL)
        return cli_usage_error("--role is required (admin, annotator or viewer)");
    json_t *body = json_pack("{s:s, s:s}", "name", a->pos[0], "role", role);
    int rc = cmd_request(c, "POST", "/v1/tokens", body, print_new_token);
    json_decref(body);
    return rc;
}

int cmd_tokens_list(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},
        {"NAME", "name", COLUMN_KIND_ONELINE},
        {"ROLE", "role", COLUMN_KIND_TEXT},
        {"CREATED", "created_at", COLUMN_KIND_TIME},
        {"REVOKED", "revoked_at", COLUMN_KIND_TIME},
    };
    return cmd_show_list(c, a, "/v1/tokens", page_filters, cols, sizeof cols / sizeof cols[0]);
}

int cmd_tokens_revoke(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "POST", "token ID", "tokens", "/revoke", cmd_print_object);
}

/* ---- checkpoints ------------------------------------------------------------------------ */

int cmd_checkpoints_list(const rlhfctl *c, const cli_args *a) {
    static const column cols[] = {
        {"ID", "id", COLUMN_KIND_TEXT},         {"STEP", "step_number", COLUMN_KIND_TEXT},
        {"KIND", "kind", COLUMN_KIND_TEXT},     {"SIZE", "size_bytes", COLUMN_KIND_BYTES},
        {"SHA256", "sha256", COLUMN_KIND_TEXT}, {"CREATED", "created_at", COLUMN_KIND_TIME},
    };
    char path[96];
    if (!cmd_id_path(a, 0, "job ID", "jobs", "/checkpoints", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    return cmd_show_list(c, a, path, page_filters, cols, sizeof cols / sizeof cols[0]);
}

static void print_download(const json_t *d) {
    printf("saved %s (sha256 %s, verified: %s)\n", json_string_value(json_object_get(d, "path")),
           json_string_value(json_object_get(d, "sha256")),
           json_string_value(json_object_get(d, "verified")));
}

/* Written to FILE.part, then renamed once the digest matches the
 * server's: a file under the final name is always a whole, verified
 * checkpoint. */
int cmd_checkpoints_download(const rlhfctl *c, const cli_args *a) {
    char path[96];
    if (!cmd_id_path(a, 0, "checkpoint ID", "checkpoints", "/content", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    char default_name[64];
    snprintf(default_name, sizeof default_name, "checkpoint-%s.safetensors", a->pos[0]);
    const char *out = cli_opt(a, "output") ? cli_opt(a, "output")
                      : cli_opt(a, "o")    ? cli_opt(a, "o")
                                           : default_name;
    const int to_stdout = strcmp(out, "-") == 0;
    char part[4200];
    snprintf(part, sizeof part, "%s.part", out);
    FILE *f = to_stdout ? stdout : fopen(part, "wb");
    if (f == NULL) {
        fprintf(stderr, "rlhfctl: cannot write %s: %s\n", part, strerror(errno));
        return RLHFCTL_EXIT_USAGE;
    }
    char got[65] = "", want[80] = "";
    int rc = api_download(c, path, f, got, want);
    if (!to_stdout && fclose(f) != 0 && rc == RLHFCTL_EXIT_OK) {
        fprintf(stderr, "rlhfctl: writing %s failed: %s\n", part, strerror(errno));
        rc = RLHFCTL_EXIT_USAGE;
    }
    if (rc == RLHFCTL_EXIT_OK && want[0] && strcmp(got, want) != 0) {
        fprintf(stderr,
                "rlhfctl: network error: the download's sha256 %s differs from the server's %s\n",
                got, want);
        rc = RLHFCTL_EXIT_NETWORK;
    }
    if (!to_stdout) {
        if (rc == RLHFCTL_EXIT_OK && rename(part, out) != 0) {
            fprintf(stderr, "rlhfctl: cannot rename %s to %s: %s\n", part, out, strerror(errno));
            rc = RLHFCTL_EXIT_USAGE;
        }
        if (rc != RLHFCTL_EXIT_OK)
            unlink(part);
        else
            output_reply(c,
                         json_pack("{s:s, s:s, s:s}", "path", out, "sha256", got, "verified",
                                   want[0] ? "yes" : "no (the server sent no digest)"),
                         print_download);
    }
    return rc;
}

/* ---- the server ------------------------------------------------------------------------- */

static void print_status(const json_t *ready) {
    printf("rlhfd is %s (schema version %" JSON_INTEGER_FORMAT ")\n",
           json_string_value(json_object_get(ready, "status")),
           json_integer_value(json_object_get(ready, "schema_version")));
}

int cmd_status(const rlhfctl *c, const cli_args *a) {
    (void)a;
    return cmd_request(c, "GET", "/readyz", NULL, print_status);
}

/* ---- bulk comparisons, exports, agreement -------------------------------------------- */

static void print_bulk(const json_t *reply) {
    printf("added %" JSON_INTEGER_FORMAT " comparisons to project %" JSON_INTEGER_FORMAT ":",
           json_integer_value(json_object_get(reply, "n_comparisons")),
           json_integer_value(json_object_get(reply, "project_id")));
    size_t i;
    json_t *id;
    json_array_foreach(json_object_get(reply, "ids"), i, id)
        printf(" %" JSON_INTEGER_FORMAT, json_integer_value(id));
    putchar('\n');
}

/* comparisons bulk PROJECT FILE: a JSON array or JSONL of comparisons,
 * stored all or nothing (the server names the first bad one). */
int cmd_comparisons_bulk(const rlhfctl *c, const cli_args *a) {
    char path[96];
    if (!cmd_id_path(a, 0, "project ID", "projects", "/comparisons/bulk", path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    json_t *reply = NULL;
    int rc = api_upload(c, path, a->pos[1], NULL, &reply);
    if (rc == RLHFCTL_EXIT_OK)
        output_reply(c, reply, print_bulk);
    return rc;
}

/* projects export ID [--rankings] [-o FILE]: pairs.jsonl (TRL pairs, ready
 * for `datasets upload`) or rankings.jsonl, to FILE or stdout. */
int cmd_projects_export(const rlhfctl *c, const cli_args *a) {
    char path[96];
    const int rankings = cli_flag(a, "rankings");
    if (!cmd_id_path(a, 0, "project ID", "projects", rankings ? "/rankings.jsonl" : "/pairs.jsonl",
                     path, sizeof path))
        return RLHFCTL_EXIT_USAGE;
    const char *file = cli_opt(a, "output");
    if (file == NULL)
        file = cli_opt(a, "o");
    FILE *to = file && strcmp(file, "-") != 0 ? fopen(file, "wb") : stdout;
    if (to == NULL) {
        fprintf(stderr, "rlhfctl: cannot write %s: %s\n", file, strerror(errno));
        return RLHFCTL_EXIT_USAGE;
    }
    char sha[65], header[80];
    int rc = api_download(c, path, to, sha, header);
    if (to != stdout) {
        if (fclose(to) != 0 && rc == RLHFCTL_EXIT_OK) {
            fprintf(stderr, "rlhfctl: writing %s failed: %s\n", file, strerror(errno));
            rc = RLHFCTL_EXIT_USAGE;
        }
        if (rc != RLHFCTL_EXIT_OK)
            unlink(file); /* no half-written export left behind */
    } else {
        fflush(stdout);
    }
    return rc;
}

static void print_agreement(const json_t *r) {
    const json_t *alpha = json_object_get(json_object_get(r, "krippendorff_alpha"), "value");
    const json_t *w = json_object_get(json_object_get(r, "kendall_w"), "mean");
    printf("project %" JSON_INTEGER_FORMAT ": %" JSON_INTEGER_FORMAT
           " rankings, %" JSON_INTEGER_FORMAT " skips\n",
           json_integer_value(json_object_get(r, "project_id")),
           json_integer_value(json_object_get(r, "n_rankings")),
           json_integer_value(json_object_get(r, "n_skipped")));
    if (json_is_number(alpha))
        printf("Krippendorff's alpha (ordinal): %.4f\n", json_number_value(alpha));
    else
        printf("Krippendorff's alpha (ordinal): undefined (needs 2 rankings of a comparison)\n");
    if (json_is_number(w))
        printf(
            "Kendall's W (mean over %" JSON_INTEGER_FORMAT " comparisons): %.4f\n",
            json_integer_value(json_object_get(json_object_get(r, "kendall_w"), "n_comparisons")),
            json_number_value(w));
    else
        printf("Kendall's W: undefined\n");
    static const column cols[] = {
        {"ANNOTATOR", "annotator", COLUMN_KIND_TEXT},
        {"RANKED", "n_ranked", COLUMN_KIND_TEXT},
        {"SKIPPED", "n_skipped", COLUMN_KIND_TEXT},
        {"COMPARED", "n_compared", COLUMN_KIND_TEXT},
        {"AGREEMENT", "mean_pair_agreement", COLUMN_KIND_TEXT},
    };
    table_print(stdout, json_object_get(r, "annotators"), cols, sizeof cols / sizeof cols[0]);
}

int cmd_projects_agreement(const rlhfctl *c, const cli_args *a) {
    return cmd_request_id(c, a, "GET", "project ID", "projects", "/agreement", print_agreement);
}
