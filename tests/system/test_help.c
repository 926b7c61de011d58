/* `--help` on every subcommand of every program (issue 13: `rlhf-train sft
 * --help` answered "option '--help' needs a value"). The subcommands are
 * read from each program's own top-level usage, so a new one is covered
 * without touching this file: each must answer `--help` with exit 0 and its
 * usage on stdout, and where it takes hyperparameters (rlhf-train TYPE,
 * rlhfctl jobs submit) every row of the type's table.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "jobs.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"

enum { OUT_BYTES = 1 << 18 };

/* Runs `program args` (args: words without quotes) with stdin from
 * /dev/null; its stdout into out. Returns the exit code. */
static int run_program(const char *program, const char *args, char *out) {
    char path[4096], cmd[8192];
    bin_path(program, path, sizeof path);
    snprintf(cmd, sizeof cmd, "'%s' %s </dev/null 2>/dev/null", path, args);
    FILE *p = popen(cmd, "r");
    ck_assert_ptr_nonnull(p);
    size_t n = fread(out, 1, OUT_BYTES - 1, p);
    out[n] = '\0';
    const int status = pclose(p);
    ck_assert_msg(WIFEXITED(status), "%s did not exit", cmd);
    return WEXITSTATUS(status);
}

/* The names listed under the line starting with header in usage: lines
 * "  NAME  summary" until a blank line; NAME may be two words (one space
 * apart). Returns the count; names[i] are malloc'd. */
static int listed(const char *usage, const char *header, char *names[], int max) {
    const char *at = strstr(usage, header);
    ck_assert_msg(at != NULL, "no '%s' in:\n%s", header, usage);
    at = strchr(at, '\n') + 1;
    int n = 0;
    while (strncmp(at, "  ", 2) == 0 && n < max) {
        const char *name = at + 2, *end = strstr(name, "  ");
        const char *eol = strchr(name, '\n');
        if (end == NULL || (eol && end > eol))
            end = eol; /* a name as wide as its column: one space before the summary */
        names[n++] = strndup(name, (size_t)(end - name));
        at = eol ? eol + 1 : name + strlen(name);
    }
    return n;
}

/* Every row of type's hyperparameter table appears as prefix + name. */
static void expect_hyperparameters(const char *out, const job_type *type, const char *prefix) {
    for (int i = 0; i < type->hparams->n; i++) {
        char want[160];
        snprintf(want, sizeof want, "\n  %s%s ", prefix, type->hparams->defs[i].name);
        ck_assert_msg(strstr(out, want) != NULL, "%s: no '%s' in:\n%s", type->name, want + 3, out);
    }
}

START_TEST(test_rlhf_train_help) {
    char *out = malloc(OUT_BYTES), *names[64], args[256], want[128];
    ck_assert_int_eq(run_program("rlhf-train", "--help", out), 0);
    char *usage = strdup(out);
    const int n_types = listed(usage, "job types", names, 64);
    const int n_commands = listed(usage, "commands:", names + n_types, 64 - n_types);
    int types_seen = 0;
    for (const job_type *const *t = job_types; *t; t++)
        for (int i = 0; i < n_types; i++)
            types_seen += strcmp(names[i], (*t)->name) == 0;
    ck_assert_int_eq(types_seen, n_types); /* the listing is the registry */
    ck_assert_int_ge(n_commands, 7);       /* describe ... features, tokenize among them */
    for (int i = 0; i < n_types + n_commands; i++) {
        for (int form = 0; form < 2; form++) {
            snprintf(args, sizeof args, "%s %s", names[i], form ? "-h" : "--help");
            ck_assert_msg(run_program("rlhf-train", args, out) == 0, "rlhf-train %s", args);
            snprintf(want, sizeof want, "usage: rlhf-train %s ", names[i]);
            ck_assert_msg(strncmp(out, want, strlen(want)) == 0 ||
                              strncmp(out, want, strlen(want) - 1) == 0,
                          "rlhf-train %s:\n%s", args, out);
            if (i < n_types)
                expect_hyperparameters(out, job_type_find(names[i]), "--");
        }
    }
    /* --help after other options, values included, still answers. */
    ck_assert_int_eq(run_program("rlhf-train", "sft --max_steps 3 --help", out), 0);
    ck_assert_ptr_nonnull(strstr(out, "usage: rlhf-train sft "));
    ck_assert_ptr_nonnull(strstr(out, "tokenize"));
    ck_assert_int_eq(run_program("rlhf-train", "tokenize --help", out), 0);
    ck_assert_ptr_nonnull(strstr(out, "--init DIR"));
    for (int i = 0; i < n_types + n_commands; i++)
        free(names[i]);
    free(usage);
    free(out);
}
END_TEST

START_TEST(test_rlhfctl_help) {
    char *out = malloc(OUT_BYTES), *names[64], args[256], want[128];
    ck_assert_int_eq(run_program("rlhfctl", "--help", out), 0);
    char *usage = strdup(out);
    const int n = listed(usage, "commands:", names, 64);
    ck_assert_int_ge(n, 20);
    int submit = 0;
    for (int i = 0; i < n; i++) {
        snprintf(args, sizeof args, "%s --help", names[i]);
        ck_assert_msg(run_program("rlhfctl", args, out) == 0, "rlhfctl %s", args);
        snprintf(want, sizeof want, "usage: rlhfctl %s", names[i]);
        ck_assert_msg(strncmp(out, want, strlen(want)) == 0, "rlhfctl %s:\n%s", args, out);
        if (strcmp(names[i], "jobs submit") == 0) { /* every type's hyperparameters */
            submit = 1;
            for (const job_type *const *t = job_types; *t; t++)
                expect_hyperparameters(out, *t, "");
        }
    }
    ck_assert(submit);
    /* With a type: that type's only. */
    ck_assert_int_eq(run_program("rlhfctl", "jobs submit reward --help", out), 0);
    expect_hyperparameters(out, job_type_find("reward"), "");
    ck_assert_ptr_null(strstr(out, "\nsft:"));
    ck_assert_ptr_nonnull(strstr(out, "\nreward:"));
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(usage);
    free(out);
}
END_TEST

/* rlhfd has no subcommands: its modes (serve, --create-token, --routes)
 * answer --help with the usage. */
START_TEST(test_rlhfd_help) {
    char *out = malloc(OUT_BYTES);
    const char *forms[] = {"--help", "-h", "--create-token x --help", "--routes --help",
                           "--db /nonexistent/x.db --help"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        ck_assert_msg(run_program("rlhfd", forms[i], out) == 0, "rlhfd %s", forms[i]);
        ck_assert_msg(strncmp(out, "usage: rlhfd ", 13) == 0, "rlhfd %s:\n%s", forms[i], out);
        ck_assert_ptr_nonnull(strstr(out, "--listen"));
    }
    free(out);
}
END_TEST

Suite *help_suite(void) {
    Suite *s = suite_create("help");
    TCase *tc = tcase_create("help");
    tcase_add_test(tc, test_rlhf_train_help);
    tcase_add_test(tc, test_rlhfctl_help);
    tcase_add_test(tc, test_rlhfd_help);
    tcase_set_timeout(tc, 60);
    suite_add_tcase(s, tc);
    return s;
}
