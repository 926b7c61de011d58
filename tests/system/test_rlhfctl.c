/* rlhfctl end to end: the real build/rlhfctl process against a real rlhfd
 * on loopback with a fresh database (tests/test_server_util.h), checked by
 * its exit code, its output, and what the server holds afterwards.
 *
 * Nothing sleeps to wait for something that can be awaited: a child's
 * output is read until a marker appears or it exits, under DEADLINE_MS.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "jobs.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_hf_fixture.h"
#include "test_server_util.h"
#include "test_util.h"
#include "worker_launch.h"

#define SHORT_JOB "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":2048}}"
/* Minutes of training: long enough to hold the only worker while a test
 * looks at the job queued behind it; a failed test's orphan ends by itself. */
#define LONG_JOB "{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":5000000}}"

/* ---- running rlhfctl ------------------------------------------------------------------- */

typedef struct ctl_result {
    int code; /* exit code; -signal if killed */
    char out[1 << 17];
    size_t out_len;
    char err[1 << 14];
    size_t err_len;
    long max_rss_kib; /* the child's peak resident memory */
} ctl_result;

typedef struct ctl_proc {
    pid_t pid;
    int fd_out, fd_err; /* -1 once at EOF */
    ctl_result *res;
} ctl_proc;

/* Starts rlhfctl with argv (NULL-terminated, without the program) in an
 * environment without RLHFD_* / RLHFCTL_CONFIG, HOME = home (so no real
 * config file is read), plus env ("NAME=value", NULL-terminated; may be
 * NULL). */
static void ctl_spawn(ctl_proc *p, const char *home, const char *const env[],
                      const char *const argv[]) {
    char bin[4096];
    bin_path("rlhfctl", bin, sizeof bin);
    const char *args[64] = {bin};
    int n = 1;
    for (; argv[n - 1] && n < 63; n++)
        args[n] = argv[n - 1];
    args[n] = NULL;
    int out[2], err[2];
    ck_assert_int_eq(pipe(out), 0);
    ck_assert_int_eq(pipe(err), 0);
    p->res = calloc(1, sizeof *p->res);
    p->pid = fork();
    if (p->pid == 0) {
        dup2(out[1], 1);
        dup2(err[1], 2);
        close(out[0]), close(err[0]);
        unsetenv("RLHFD_URL"), unsetenv("RLHFD_TOKEN"), unsetenv("RLHFCTL_CONFIG");
        setenv("HOME", home, 1);
        for (int i = 0; env && env[i]; i++)
            putenv((char *)env[i]);
        execv(bin, (char *const *)args);
        _exit(127);
    }
    close(out[1]), close(err[1]);
    p->fd_out = out[0], p->fd_err = err[0];
}

/* Reads what the child wrote, until `until` is in its stdout (1), or both
 * pipes are at EOF (0). */
static int ctl_read_until(ctl_proc *p, const char *until) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (p->fd_out >= 0 || p->fd_err >= 0) {
        if (until && strstr(p->res->out, until))
            return 1;
        ck_assert_msg(now_ms() < deadline, "rlhfctl is stuck; stdout so far:\n%s\nstderr:\n%s",
                      p->res->out, p->res->err);
        struct pollfd fds[2] = {{.fd = p->fd_out, .events = POLLIN},
                                {.fd = p->fd_err, .events = POLLIN}};
        if (poll(fds, 2, 100) <= 0)
            continue;
        for (int i = 0; i < 2; i++) {
            if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char *buf = i == 0 ? p->res->out : p->res->err;
            size_t *len = i == 0 ? &p->res->out_len : &p->res->err_len;
            size_t cap = i == 0 ? sizeof p->res->out : sizeof p->res->err;
            ssize_t got = read(fds[i].fd, buf + *len, cap - 1 - *len);
            if (got <= 0) {
                close(fds[i].fd);
                *(i == 0 ? &p->fd_out : &p->fd_err) = -1;
                continue;
            }
            *len += (size_t)got;
            buf[*len] = '\0';
        }
    }
    return until && strstr(p->res->out, until) != NULL;
}

/* Reads to EOF and reaps the child; returns its result (caller frees). */
static ctl_result *ctl_finish(ctl_proc *p) {
    ctl_read_until(p, NULL);
    int status;
    struct rusage ru;
    ck_assert_int_eq(wait4(p->pid, &status, 0, &ru), p->pid);
    p->res->code = WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
    p->res->max_rss_kib = ru.ru_maxrss;
    return p->res;
}

static ctl_result *ctl_run_env(const char *home, const char *const env[],
                               const char *const argv[]) {
    ctl_proc p;
    ctl_spawn(&p, home, env, argv);
    return ctl_finish(&p);
}

/* ctl_run_env with stdin read from the file at input. */
static ctl_result *ctl_run_stdin(const char *home, const char *input, const char *const argv[]) {
    const int saved = dup(0), in = open(input, O_RDONLY);
    ck_assert_int_ge(in, 0);
    dup2(in, 0); /* the child inherits it */
    close(in);
    ctl_proc p;
    ctl_spawn(&p, home, NULL, argv);
    dup2(saved, 0);
    close(saved);
    return ctl_finish(&p);
}

/* rlhfctl --url <the daemon> --token <admin> ARGS... (NULL-terminated). */
static ctl_result *ctl(const test_daemon *d, ...) {
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d->port);
    const char *argv[64] = {"--url", url, "--token", d->admin};
    int n = 4;
    va_list ap;
    va_start(ap, d);
    for (const char *a; (a = va_arg(ap, const char *)) != NULL && n < 63;)
        argv[n++] = a;
    va_end(ap);
    argv[n] = NULL;
    return ctl_run_env(d->dir, NULL, argv);
}

/* Asserts the exit code, showing the output when it is not. */
static void expect_code(const ctl_result *r, int code) {
    ck_assert_msg(r->code == code, "exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r->code, code,
                  r->out, r->err);
}

/* stdout as JSON (asserts it parses; caller decrefs). */
static json_t *out_json(const ctl_result *r) {
    json_error_t jerr;
    json_t *v = json_loads(r->out, 0, &jerr);
    ck_assert_msg(v != NULL, "--json output does not parse (%s):\n%s", jerr.text, r->out);
    return v;
}

static int64_t json_id(const json_t *obj) {
    return json_integer_value(json_object_get(obj, "id"));
}

/* How often needle occurs in hay. */
/* The id of the object a --json create printed, as text; asserts exit 0
 * and frees r. */
static void created_id(ctl_result *r, char id[32]) {
    expect_code(r, 0);
    json_t *obj = out_json(r);
    snprintf(id, 32, "%lld", (long long)json_id(obj));
    json_decref(obj);
    free(r);
}

static int count_of(const char *hay, const char *needle) {
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

static void write_file(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* ---- configuration: flags > environment > config file ------------------------------- */

START_TEST(test_rlhfctl_config_precedence) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char viewer[128], url[64], env_url[96], env_admin[160], env_viewer[160], config[256],
        env_config[300];
    make_token(&d, "viewer", "viewer", viewer);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    snprintf(env_url, sizeof env_url, "RLHFD_URL=%s", url);
    snprintf(env_admin, sizeof env_admin, "RLHFD_TOKEN=%s", d.admin);
    snprintf(env_viewer, sizeof env_viewer, "RLHFD_TOKEN=%s", viewer);
    /* `tokens list` is admin-only: it tells which token was used. */
    const char *list[] = {"tokens", "list", NULL};

    /* status needs no token. */
    const char *env_url_only[] = {env_url, NULL};
    const char *status[] = {"status", NULL};
    ctl_result *r = ctl_run_env(d.dir, env_url_only, status);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "rlhfd is ready") != NULL, "%s", r->out);
    free(r);
    /* No token anywhere: the server's 401, with a hint. */
    r = ctl_run_env(d.dir, env_url_only, list);
    expect_code(r, 3);
    ck_assert_ptr_nonnull(strstr(r->err, "missing_api_key"));
    ck_assert_ptr_nonnull(strstr(r->err, "RLHFD_TOKEN"));
    free(r);
    /* The environment alone. */
    const char *env_both[] = {env_url, env_admin, NULL};
    r = ctl_run_env(d.dir, env_both, list);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "viewer"));
    free(r);
    /* --token beats RLHFD_TOKEN, both ways round. */
    const char *env_as_viewer[] = {env_url, env_viewer, NULL};
    const char *list_as_admin[] = {"--token", d.admin, "tokens", "list", NULL};
    r = ctl_run_env(d.dir, env_as_viewer, list_as_admin);
    expect_code(r, 0);
    free(r);
    const char *list_as_viewer[] = {"tokens", "list", "--token", viewer, NULL};
    r = ctl_run_env(d.dir, env_both, list_as_viewer);
    expect_code(r, 3);
    ck_assert_ptr_nonnull(strstr(r->err, "insufficient_role"));
    free(r);
    /* --url beats RLHFD_URL (which points at nothing). */
    const char *env_bad_url[] = {"RLHFD_URL=http://127.0.0.1:1", env_admin, NULL};
    const char *list_at_url[] = {"tokens", "list", "--url", url, NULL};
    r = ctl_run_env(d.dir, env_bad_url, list_at_url);
    expect_code(r, 0);
    free(r);

    /* The default config file, ~/.config/rlhfctl/config.json. */
    snprintf(config, sizeof config, "%s/.config", d.dir);
    mkdir(config, 0700);
    snprintf(config, sizeof config, "%s/.config/rlhfctl", d.dir);
    mkdir(config, 0700);
    snprintf(config, sizeof config, "%s/.config/rlhfctl/config.json", d.dir);
    char text[512];
    snprintf(text, sizeof text, "{\"url\": \"%s\", \"token\": \"%s\"}\n", url, d.admin);
    write_file(config, text);
    r = ctl_run_env(d.dir, NULL, list);
    expect_code(r, 0);
    free(r);
    /* The environment beats the file. */
    r = ctl_run_env(d.dir, env_as_viewer, list);
    expect_code(r, 3);
    free(r);
    /* $RLHFCTL_CONFIG names another file; a missing one is an error. */
    snprintf(config, sizeof config, "%s/other.json", d.dir);
    snprintf(text, sizeof text, "{\"url\": \"%s\", \"token\": \"%s\"}\n", url, viewer);
    write_file(config, text);
    snprintf(env_config, sizeof env_config, "RLHFCTL_CONFIG=%s", config);
    const char *env_cfg[] = {env_config, NULL};
    r = ctl_run_env(d.dir, env_cfg, list);
    expect_code(r, 3); /* the viewer token from other.json */
    free(r);
    write_file(config, "{\"url\": \"http://x\", \"tokn\": \"typo\"}");
    r = ctl_run_env(d.dir, env_cfg, list);
    expect_code(r, 2);
    ck_assert_ptr_nonnull(strstr(r->err, "tokn"));
    free(r);
    snprintf(env_config, sizeof env_config, "RLHFCTL_CONFIG=%s/missing.json", d.dir);
    r = ctl_run_env(d.dir, env_cfg, list);
    expect_code(r, 2);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- datasets ------------------------------------------------------------------------ */

START_TEST(test_rlhfctl_datasets) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char small[160], big[160], bad[160];
    snprintf(small, sizeof small, "%s/small.jsonl", d.dir);
    write_file(small, "{\"prompt\":\"2+2?\",\"response\":\"4\"}\n"
                      "{\"prompt\":\"\",\"response\":\"hello\"}\n"
                      "{\"prompt\":\"3+3?\",\"response\":\"6\"}\n");
    ctl_result *r =
        ctl(&d, "datasets", "create", "small", "--format", "sft", "--file", small, NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "3 rows") != NULL, "%s", r->out);
    free(r);

    /* A file much larger than rlhfctl's memory: it must be streamed. 40
     * lines of 1,000,000 characters (the server's string limit is 1 MiB). */
    snprintf(big, sizeof big, "%s/big.jsonl", d.dir);
    FILE *f = fopen(big, "w");
    char *text = malloc(1000001);
    memset(text, 'x', 1000000);
    text[1000000] = '\0';
    const int big_rows = 40;
    for (int i = 0; i < big_rows; i++)
        fprintf(f, "{\"prompt\":\"p%d\",\"response\":\"%s\"}\n", i, text);
    free(text);
    fclose(f);
    r = ctl(&d, "--json", "datasets", "create", "big", "--format", "sft", NULL);
    expect_code(r, 0);
    json_t *ds = out_json(r);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)json_id(ds));
    ck_assert_str_eq(json_string_value(json_object_get(ds, "status")), "empty");
    json_decref(ds);
    free(r);
    r = ctl(&d, "--json", "datasets", "upload", id, big, NULL);
    expect_code(r, 0);
    ds = out_json(r);
    ck_assert_int_eq(json_integer_value(json_object_get(ds, "n_rows")), big_rows);
    json_decref(ds);
    /* Peak memory far below the 40 MB file. Not under the sanitizers
     * (make test-asan): ASan's quarantine keeps freed buffers resident, so
     * RSS there says nothing about streaming. */
    const char *scale = getenv("RLHF_TEST_SCALE");
    if (scale == NULL || strcmp(scale, "asan") != 0)
        ck_assert_msg(r->max_rss_kib < 30 * 1024, "rlhfctl peaked at %ld KiB", r->max_rss_kib);
    free(r);

    /* List: a table, and JSON that parses. */
    r = ctl(&d, "datasets", "list", NULL);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "ID"));
    ck_assert_ptr_nonnull(strstr(r->out, "FORMAT"));
    ck_assert_ptr_nonnull(strstr(r->out, "small"));
    ck_assert_ptr_nonnull(strstr(r->out, "big"));
    free(r);
    r = ctl(&d, "--json", "datasets", "list", "--limit", "1", NULL);
    expect_code(r, 0);
    json_t *list = out_json(r);
    ck_assert_int_eq(json_array_size(json_object_get(list, "data")), 1);
    ck_assert(json_is_true(json_object_get(list, "has_more")));
    json_decref(list);
    free(r);
    r = ctl(&d, "datasets", "list", "--limit", "1", NULL);
    ck_assert_ptr_nonnull(strstr(r->out, "(more: --after"));
    free(r);

    /* A bad line: the server's message, field and line number; exit 3. */
    snprintf(bad, sizeof bad, "%s/bad.jsonl", d.dir);
    write_file(bad, "{\"prompt\":\"a\",\"response\":\"b\"}\n{\"prompt\":\"a\",\"response\":7}\n");
    r = ctl(&d, "datasets", "create", "bad", "--format", "sft", "--file", bad, NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param response") && strstr(r->err, "line 2") &&
                      strstr(r->err, "invalid_type"),
                  "%s", r->err);
    free(r);
    /* A missing file is caught before anything is created. */
    r = ctl(&d, "datasets", "create", "nofile", "--format", "sft", "--file", "/nonexistent", NULL);
    expect_code(r, 2);
    free(r);
    r = ctl(&d, "--json", "datasets", "show", id, NULL);
    expect_code(r, 0);
    json_decref(out_json(r));
    free(r);
    r = ctl(&d, "datasets", "delete", id, NULL);
    expect_code(r, 0);
    free(r);
    r = ctl(&d, "datasets", "show", id, NULL);
    expect_code(r, 3);
    ck_assert_ptr_nonnull(strstr(r->err, "dataset_not_found"));
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- preference collection ---------------------------------------------------------------- */

START_TEST(test_rlhfctl_comparisons_and_rank) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    ctl_result *r = ctl(&d, "--json", "tokens", "create", "ann", "--role", "annotator", NULL);
    expect_code(r, 0);
    json_t *tok = out_json(r);
    char annotator[128], url[64];
    snprintf(annotator, sizeof annotator, "%s", json_string_value(json_object_get(tok, "token")));
    json_decref(tok);
    free(r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);

    char pid[32];
    created_id(ctl(&d, "--json", "projects", "create", "helpful", "--k", "3", NULL), pid);
    grant_project_all(&d, strtoll(pid, NULL, 10));
    r = ctl(&d, "comparisons", "add", pid, "--prompt", "Name a colour.", "--candidate", "Blue.",
            "--candidate", "Seven.", "--candidate", "Red.", NULL);
    expect_code(r, 0);
    free(r);
    /* Too many candidates for k: the server's message and param. */
    r = ctl(&d, "comparisons", "add", pid, "--prompt", "p", "--candidate", "a", "--candidate", "b",
            "--candidate", "c", "--candidate", "d", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param candidates") && strstr(r->err, "k"), "%s", r->err);
    free(r);

    /* The annotator gets the comparison, human-readable and as JSON. */
    const char *next_human[] = {"--url",       url,    "--token", annotator,
                                "comparisons", "next", pid,       NULL};
    r = ctl_run_env(d.dir, NULL, next_human);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "Name a colour."));
    ck_assert_ptr_nonnull(strstr(r->out, "Seven."));
    free(r);
    const char *next_json[] = {"--url",       url,    "--token", annotator, "--json",
                               "comparisons", "next", pid,       NULL};
    r = ctl_run_env(d.dir, NULL, next_json);
    expect_code(r, 0);
    json_t *cmp = out_json(r);
    free(r);
    char cmp_id[32], blue[32], seven[32], red_tie[64], unknown[32];
    snprintf(cmp_id, sizeof cmp_id, "%lld", (long long)json_id(cmp));
    json_t *cands = json_object_get(cmp, "candidates");
    snprintf(blue, sizeof blue, "%lld", (long long)json_id(json_array_get(cands, 0)));
    snprintf(seven, sizeof seven, "%lld", (long long)json_id(json_array_get(cands, 1)));
    /* Blue and Red tie, both better than Seven: 2 pairs. */
    snprintf(red_tie, sizeof red_tie, "%s=%lld", blue,
             (long long)json_id(json_array_get(cands, 2)));
    snprintf(unknown, sizeof unknown, "%d", 9999);
    json_decref(cmp);

    /* A candidate that is not in the comparison: the server's param. */
    const char *bad_rank[] = {"--url", url, "--token", annotator, "rank", cmp_id, unknown, NULL};
    r = ctl_run_env(d.dir, NULL, bad_rank);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "unknown_candidate") && strstr(r->err, "param order[0][0]"), "%s",
                  r->err);
    free(r);
    const char *usage_rank[] = {"--url", url, "--token", annotator, "rank", cmp_id, "x=1", NULL};
    r = ctl_run_env(d.dir, NULL, usage_rank);
    expect_code(r, 2);
    free(r);
    const char *rank[] = {"--url", url,     "--token", annotator, "rank",
                          cmp_id,  red_tie, seven,     "--note",  "seven is no colour",
                          NULL};
    r = ctl_run_env(d.dir, NULL, rank);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "2 preference pairs") != NULL, "%s", r->out);
    free(r);

    /* The ranking arrived: pairs through the API, the raw ranking through rlhfctl. */
    char path[96];
    snprintf(path, sizeof path, "/v1/projects/%s/pairs", pid);
    http_reply *pairs = http(&d, "GET", path, d.admin, NULL, NULL);
    json_t *data = json_object_get(pairs->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    size_t i;
    json_t *pair;
    json_array_foreach(data, i, pair) {
        ck_assert_str_eq(json_string_value(json_object_get(pair, "rejected")), "Seven.");
        ck_assert_str_eq(json_string_value(json_object_get(pair, "annotator")), "ann");
    }
    reply_free(pairs);
    r = ctl(&d, "--json", "comparisons", "rankings", cmp_id, NULL);
    expect_code(r, 0);
    json_t *rankings = out_json(r);
    json_t *first_ranking = json_array_get(json_object_get(rankings, "data"), 0);
    ck_assert_str_eq(json_string_value(json_object_get(first_ranking, "note")),
                     "seven is no colour");
    ck_assert_int_eq(json_array_size(json_object_get(first_ranking, "order")), 2);
    json_decref(rankings);
    free(r);
    r = ctl(&d, "projects", "pairs", pid, NULL);
    expect_code(r, 0);
    ck_assert_int_eq(count_of(r->out, "Seven."), 2);
    free(r);
    /* Nothing left for this annotator. */
    r = ctl_run_env(d.dir, NULL, next_human);
    expect_code(r, 3);
    ck_assert_ptr_nonnull(strstr(r->err, "no_comparison_available"));
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- jobs -------------------------------------------------------------------------------- */

/* ---- the simulated annotator ------------------------------------------------------------ */

/* annotate --simulate demo ranks every comparison left for the token by the
 * demo task's gold score (noise 0: by gold alone), through the API, stops
 * when none is left (exit 0), honours --max, and refuses a missing
 * --simulate. Gold scores: "bright, warm and kind" 3, "old and tall" 0,
 * "dull and cold" -2; "A dog." -2 (not "The dog is ..."). */
START_TEST(test_rlhfctl_annotate_simulated) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    ctl_result *r = ctl(&d, "--json", "tokens", "create", "sim", "--role", "annotator", NULL);
    expect_code(r, 0);
    json_t *tok = out_json(r);
    char annotator[128], url[64];
    snprintf(annotator, sizeof annotator, "%s", json_string_value(json_object_get(tok, "token")));
    json_decref(tok);
    free(r);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    r = ctl(&d, "--json", "projects", "create", "sim", "--k", "3", NULL);
    expect_code(r, 0);
    json_t *project = out_json(r);
    char pid[32];
    snprintf(pid, sizeof pid, "%lld", (long long)json_id(project));
    json_decref(project);
    free(r);
    /* through the CLI, the one annotator token (id 2, after the admin) */
    r = ctl(&d, "projects", "grant", pid, "2", NULL);
    expect_code(r, 0);
    free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM project_members WHERE token_id = ?1", 2), 1);
    static const char *const subjects[] = {"cat", "dog", "river"};
    int64_t cmp[3];
    for (int i = 0; i < 3; i++) {
        char prompt[64], good[96], mid[96], bad[96];
        snprintf(prompt, sizeof prompt, "Describe the %s.", subjects[i]);
        snprintf(good, sizeof good, "The %s is bright, warm and kind.", subjects[i]);
        snprintf(mid, sizeof mid, "The %s is old and tall.", subjects[i]);
        snprintf(bad, sizeof bad, "The %s is dull and cold.", subjects[i]);
        /* candidates in a different order each time: bad, good, mid ... */
        const char *c0 = i == 0 ? bad : i == 1 ? mid : good;
        const char *c1 = i == 0 ? good : i == 1 ? bad : mid;
        const char *c2 = i == 0 ? mid : i == 1 ? good : bad;
        r = ctl(&d, "--json", "comparisons", "add", pid, "--prompt", prompt, "--candidate", c0,
                "--candidate", c1, "--candidate", c2, NULL);
        expect_code(r, 0);
        json_t *c = out_json(r);
        cmp[i] = json_id(c);
        json_decref(c);
        free(r);
    }
    const char *once[] = {"--url", url,       "--token", annotator, "annotate", pid, "--simulate",
                          "demo",  "--noise", "0",       "--max",   "1",        NULL};
    r = ctl_run_env(d.dir, NULL, once);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "1 rankings posted"), "%s", r->out);
    free(r);
    const char *all[] = {"--url",      url,    "--token", annotator, "annotate", pid,
                         "--simulate", "demo", "--noise", "0",       NULL};
    r = ctl_run_env(d.dir, NULL, all);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "2 rankings posted"), "%s%s", r->out, r->err);
    free(r);
    r = ctl_run_env(d.dir, NULL, all); /* nothing left: a normal end */
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "0 rankings posted"), "%s%s", r->out, r->err);
    free(r);
    for (int i = 0; i < 3; i++) {
        char path[96];
        snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)cmp[i]);
        http_reply *rr = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
        json_t *list = json_object_get(rr->json, "data");
        ck_assert_int_eq(json_array_size(list), 1);
        json_t *order = json_object_get(json_array_get(list, 0), "order");
        ck_assert_int_eq(json_array_size(order), 3); /* three groups: no ties */
        snprintf(path, sizeof path, "/v1/comparisons/%lld", (long long)cmp[i]);
        http_reply *cr = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
        json_t *cands = json_object_get(cr->json, "candidates");
        const char *want[] = {"bright", "old", "dull"};
        for (size_t g = 0; g < 3; g++) {
            const json_int_t id = json_integer_value(json_array_get(json_array_get(order, g), 0));
            const char *text = NULL;
            for (size_t j = 0; j < json_array_size(cands); j++)
                if (json_id(json_array_get(cands, j)) == id)
                    text = json_string_value(json_object_get(json_array_get(cands, j), "text"));
            ck_assert_msg(text && strstr(text, want[g]), "comparison %d group %zu: %s", i, g,
                          text ? text : "(unknown id)");
        }
        reply_free(cr), reply_free(rr);
    }
    const char *no_sim[] = {"--url", url, "--token", annotator, "annotate", pid, NULL};
    r = ctl_run_env(d.dir, NULL, no_sim);
    expect_code(r, 2);
    ck_assert_msg(strstr(r->err, "--simulate demo"), "%s", r->err);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_rlhfctl_job_submit_and_watch) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    /* A bad hyperparameter: the server's message and param, exit 3. */
    ctl_result *r = ctl(&d, "jobs", "submit", "ppo-control", "--set", "total_steps=0", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param hyperparameters.total_steps") &&
                      strstr(r->err, "'total_steps'") && strstr(r->err, "HTTP 400"),
                  "%s", r->err);
    free(r);

    /* --training-file is sent as training_file (an unknown dataset here). */
    r = ctl(&d, "jobs", "submit", "sft", "--training-file", "999", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param training_file") != NULL, "%s", r->err);
    free(r);

    r = ctl(&d, "--json", "jobs", "submit", "ppo-control", "--set", "total_steps=2048", "--set",
            "env=CartPole-v1", NULL);
    expect_code(r, 0);
    json_t *job = out_json(r);
    char id[32];
    snprintf(id, sizeof id, "%lld", (long long)json_id(job));
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(job, "hyperparameters"), "total_steps")),
        2048);
    json_decref(job);
    free(r);

    r = ctl(&d, "jobs", "watch", id, NULL);
    expect_code(r, 0);
    char final[64];
    snprintf(final, sizeof final, "job %s succeeded\n", id);
    ck_assert_msg(strstr(r->out, final) != NULL, "%s", r->out);
    ck_assert_ptr_nonnull(strstr(r->out, "step 2048/2048 100%"));
    ck_assert_int_eq(count_of(r->out, "checkpoint 1 saved"), 1);
    /* The progress line shows the engine's headline metrics for the type
     * (eval_return only exists when evaluation runs). */
    for (const char *const *h = job_type_find("ppo-control")->headline_metrics; *h; h++)
        if (strcmp(*h, "global_step") != 0 && strcmp(*h, "eval_return") != 0)
            ck_assert_msg(strstr(r->out, *h) != NULL, "no %s in:\n%s", *h, r->out);
    free(r);

    /* Resume from a given event: NDJSON of the events after it, then the end. */
    r = ctl(&d, "--json", "jobs", "watch", id, "--since", "5", NULL);
    expect_code(r, 0);
    int lines = 0;
    int64_t first_id = 0;
    for (char *line = strtok(r->out, "\n"); line; line = strtok(NULL, "\n"), lines++) {
        json_t *ev = json_loads(line, 0, NULL);
        ck_assert_msg(ev != NULL, "not JSON: %s", line);
        if (lines == 0)
            first_id = json_id(ev);
        if (json_object_get(ev, "status"))
            ck_assert_str_eq(json_string_value(json_object_get(ev, "status")), "succeeded");
        json_decref(ev);
    }
    ck_assert_int_eq(first_id, 6);
    ck_assert_int_eq(lines, (int)db_int(&d, "SELECT count(*) FROM job_events WHERE id > 5", 0) + 1);
    free(r);

    /* Logs, list, show, metrics. */
    r = ctl(&d, "jobs", "logs", id, NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "created") < strstr(r->out, "succeeded"), "%s", r->out);
    free(r);
    r = ctl(&d, "jobs", "list", NULL);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "succeeded"));
    free(r);
    r = ctl(&d, "--json", "jobs", "show", id, NULL);
    expect_code(r, 0);
    json_decref(out_json(r));
    free(r);
    r = ctl(&d, "jobs", "metrics", id, NULL);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, "episodic_return"));
    ck_assert_ptr_nonnull(strstr(r->out, "2048"));
    free(r);

    /* The checkpoint, downloaded and verified against the server's digest. */
    r = ctl(&d, "--json", "checkpoints", "list", id, NULL);
    expect_code(r, 0);
    json_t *cks = out_json(r);
    json_t *ck = json_array_get(json_object_get(cks, "data"), 0);
    char ck_id[32], out_path[160];
    snprintf(ck_id, sizeof ck_id, "%lld", (long long)json_id(ck));
    const int64_t size = json_integer_value(json_object_get(ck, "size_bytes"));
    char sha[65];
    snprintf(sha, sizeof sha, "%s", json_string_value(json_object_get(ck, "sha256")));
    json_decref(cks);
    free(r);
    snprintf(out_path, sizeof out_path, "%s/policy.safetensors", d.dir);
    r = ctl(&d, "checkpoints", "download", ck_id, "-o", out_path, NULL);
    expect_code(r, 0);
    ck_assert_ptr_nonnull(strstr(r->out, sha));
    free(r);
    FILE *f = fopen(out_path, "rb");
    ck_assert_ptr_nonnull(f);
    fseek(f, 0, SEEK_END);
    ck_assert_int_eq(ftell(f), size);
    fclose(f);

    /* A cancelled job: watch exits 1 and says so. */
    http_reply *h = http(&d, "POST", "/v1/jobs", d.admin, LONG_JOB, NULL);
    char long_id[32];
    snprintf(long_id, sizeof long_id, "%lld",
             (long long)json_integer_value(json_object_get(h->json, "id")));
    reply_free(h);
    r = ctl(&d, "jobs", "cancel", long_id, NULL);
    expect_code(r, 0);
    free(r);
    r = ctl(&d, "jobs", "watch", long_id, NULL);
    expect_code(r, 1);
    snprintf(final, sizeof final, "job %s cancelled", long_id);
    ck_assert_msg(strstr(r->out, final) != NULL, "%s", r->out);
    free(r);
    r = ctl(&d, "jobs", "watch", "999", NULL);
    expect_code(r, 3);
    ck_assert_ptr_nonnull(strstr(r->err, "job_not_found"));
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The SFT path: a dataset uploaded by rlhfctl becomes a job's
 * training_file; watch shows step / max_steps and SFT's headline metrics. */
START_TEST(test_rlhfctl_sft_from_dataset) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char data[160];
    snprintf(data, sizeof data, "%s/sft.jsonl", d.dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 40; i++)
        fprintf(f, "{\"prompt\":\"What is %d plus one?\",\"response\":\"%d.\"}\n", i, i + 1);
    fclose(f);
    char ds_id[32];
    created_id(
        ctl(&d, "--json", "datasets", "create", "sums", "--format", "sft", "--file", data, NULL),
        ds_id);
    ctl_result *r =
        ctl(&d, "jobs", "submit", "sft", "--training-file", ds_id, "--set", "max_steps=4", "--set",
            "n_layer=1", "--set", "n_head=2", "--set", "d_model=32", "--set", "context=64", "--set",
            "batch_size=4", "--watch", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "step 4/4 100%") && strstr(r->out, "succeeded\n"), "%s", r->out);
    for (const char *const *h = job_type_find("sft")->headline_metrics; *h; h++)
        ck_assert_msg(strstr(r->out, *h) != NULL, "no %s in:\n%s", *h, r->out);
    free(r);
    r = ctl(&d, "--json", "jobs", "show", "1", NULL);
    expect_code(r, 0);
    json_t *job = out_json(r);
    ck_assert_int_eq(json_integer_value(json_object_get(job, "training_file")), atoll(ds_id));
    json_decref(job);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The daemon is killed mid-watch and restarted on the same port: watch
 * reconnects with Last-Event-ID and prints every event exactly once. The
 * watched job waits behind a long one on the only worker, so the kill
 * always lands while it is queued; cancelling the long one (an orphan of
 * the killed daemon) then lets it run. */
START_TEST(test_rlhfctl_watch_reconnects) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    http_reply *h = http(&d, "POST", "/v1/jobs", d.admin, LONG_JOB, NULL);
    const int64_t long_id = json_integer_value(json_object_get(h->json, "id"));
    reply_free(h);
    h = http(&d, "POST", "/v1/jobs", d.admin, SHORT_JOB, NULL);
    char id[32], url[64];
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(h->json, "id")));
    reply_free(h);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);

    const char *watch[] = {"--url", url, "--token", d.admin, "jobs", "watch", id, NULL};
    ctl_proc p;
    ctl_spawn(&p, d.dir, NULL, watch);
    ck_assert(ctl_read_until(&p, "created"));
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", d.port);
    daemon_start(&d, "--listen", listen, NULL);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)long_id);
    reply_free(http(&d, "POST", path, d.admin, NULL, NULL));

    ctl_result *r = ctl_finish(&p);
    expect_code(r, 0);
    char final[64];
    snprintf(final, sizeof final, "job %s succeeded\n", id);
    ck_assert_msg(strstr(r->out, final) != NULL, "%s", r->out);
    ck_assert_msg(strstr(r->err, "reconnecting") != NULL, "%s", r->err);
    ck_assert_int_eq(count_of(r->out, "job created and queued"), 1);
    ck_assert_int_eq(count_of(r->out, "attempt 1 of 3 started"), 1);
    ck_assert_int_eq(count_of(r->out, "saved at step 2048"), 1);
    free(r);

    /* A daemon that does not come back: bounded retries, then exit 4. (A
     * graceful stop requeues the running job, so no worker outlives it.) */
    h = http(&d, "POST", "/v1/jobs", d.admin, LONG_JOB, NULL);
    snprintf(id, sizeof id, "%lld", (long long)json_integer_value(json_object_get(h->json, "id")));
    reply_free(h);
    const char *watch_briefly[] = {"--url", url, "--token",   d.admin, "jobs",
                                   "watch", id,  "--retries", "2",     NULL};
    ctl_spawn(&p, d.dir, NULL, watch_briefly);
    ck_assert(ctl_read_until(&p, "created"));
    daemon_stop(&d);
    r = ctl_finish(&p);
    expect_code(r, 4);
    ck_assert_msg(strstr(r->err, "retry 2 of 2") && strstr(r->err, "gave up after 3 attempts"),
                  "%s", r->err);
    free(r);
    daemon_cleanup(&d);
}
END_TEST

/* ---- failures without a server --------------------------------------------------------- */

/* A loopback port nothing listens on (bound, then released). */
static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(fd, (struct sockaddr *)&addr, sizeof addr), 0);
    socklen_t len = sizeof addr;
    getsockname(fd, (struct sockaddr *)&addr, &len);
    close(fd);
    return ntohs(addr.sin_port);
}

START_TEST(test_rlhfctl_network_and_usage_errors) {
    char home[] = "/tmp/rlhfctl-test-XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(home));
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", free_port());
    const char *list[] = {"--url", url, "--token", "t", "jobs", "list", NULL};
    ctl_result *r = ctl_run_env(home, NULL, list);
    expect_code(r, 4);
    ck_assert_msg(strstr(r->err, "network error") && strstr(r->err, url) &&
                      strstr(r->err, "is rlhfd running"),
                  "%s", r->err);
    free(r);
    /* watch cannot even read the job: exit 4 at once. */
    const char *watch[] = {"--url", url, "--token",   "t", "jobs",
                           "watch", "1", "--retries", "1", NULL};
    r = ctl_run_env(home, NULL, watch);
    expect_code(r, 4);
    ck_assert_ptr_nonnull(strstr(r->err, "network error"));
    free(r);

    /* Usage errors: exit 2 before any request. */
    const char *unknown[] = {"--url", url, "jobs", "frobnicate", NULL};
    const char *missing[] = {"--url", url, "datasets", "upload", "1", NULL};
    const char *bad_id[] = {"--url", url, "jobs", "show", "abc", NULL};
    const char *bad_opt[] = {"--url", url, "jobs", "list", "--colour", "red", NULL};
    const char *const *usage[] = {unknown, missing, bad_id, bad_opt};
    for (size_t i = 0; i < sizeof usage / sizeof usage[0]; i++) {
        r = ctl_run_env(home, NULL, usage[i]);
        expect_code(r, 2);
        ck_assert_msg(strstr(r->err, "usage") || strstr(r->err, "--help"), "%s", r->err);
        free(r);
    }
    const char *help[] = {"--help", NULL};
    r = ctl_run_env(home, NULL, help);
    expect_code(r, 0);
    for (int code = 0; code <= 4; code++) {
        char line[32];
        snprintf(line, sizeof line, "\n  %d  ", code);
        ck_assert_msg(strstr(r->out, line) != NULL, "exit code %d undocumented", code);
    }
    free(r);
    rmdir(home);
}
END_TEST

/* ---- bulk comparisons, exports, agreement ----------------------------------------------- */

START_TEST(test_rlhfctl_bulk_export_agreement) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char p1[128], p2[128], file[256], pid[32];
    make_token(&d, "ann1", "annotator", p1);
    make_token(&d, "ann2", "annotator", p2);
    ctl_result *r =
        ctl(&d, "--json", "projects", "create", "bulk", "--k", "3", "--overlap", "2", NULL);
    expect_code(r, 0);
    json_t *project = out_json(r);
    int64_t project_id = json_id(project);
    snprintf(pid, sizeof pid, "%lld", (long long)project_id);
    grant_project_all(&d, project_id);
    json_decref(project);
    free(r);

    /* A bad second line: exit 3, the item named, nothing stored. */
    snprintf(file, sizeof file, "%s/bad.jsonl", d.dir);
    write_file(file, "{\"prompt\":\"a\",\"candidates\":[{\"text\":\"x\"},{\"text\":\"y\"}]}\n"
                     "{\"prompt\":\"b\",\"candidates\":[{\"text\":\"x\"}]}\n");
    r = ctl(&d, "comparisons", "bulk", pid, file, NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param [1].candidates") && strstr(r->err, "comparison 1:"), "%s",
                  r->err);
    free(r);
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM comparisons WHERE project_id = ?1", project_id), 0);
    snprintf(file, sizeof file, "%s/good.json", d.dir);
    write_file(file,
               "[{\"prompt\":\"Name a colour.\",\"candidates\":[{\"text\":\"Blue.\"},"
               "{\"text\":\"Seven.\"},{\"text\":\"Red.\"}]},"
               "{\"prompt\":\"Say hi.\",\"candidates\":[{\"text\":\"Hi.\"},{\"text\":\"No.\"}]}]");
    r = ctl(&d, "comparisons", "bulk", pid, file, NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "added 2 comparisons"), "%s", r->out);
    free(r);

    /* Both annotators: Blue = Red > Seven, Hi > No (full agreement). */
    int64_t c1 = db_int(&d, "SELECT min(id) FROM comparisons WHERE project_id = ?1", project_id);
    int64_t c2 = db_int(&d, "SELECT max(id) FROM comparisons WHERE project_id = ?1", project_id);
    int64_t a = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c1);
    int64_t h = db_int(&d, "SELECT min(id) FROM candidates WHERE comparison_id = ?1", c2);
    const char *tokens[] = {p1, p2};
    for (int i = 0; i < 2; i++) {
        char path[64], body[128];
        snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)c1);
        snprintf(body, sizeof body, "{\"order\":[[%lld,%lld],[%lld]]}", (long long)a,
                 (long long)a + 2, (long long)a + 1);
        http_reply *hr = http(&d, "POST", path, tokens[i], body, NULL);
        ck_assert_int_eq(hr->status, 200);
        reply_free(hr);
        snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings", (long long)c2);
        snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)h, (long long)h + 1);
        hr = http(&d, "POST", path, tokens[i], body, NULL);
        ck_assert_int_eq(hr->status, 200);
        reply_free(hr);
    }

    /* pairs.jsonl to a file: 2 + 1 pairs per annotator; it uploads as a
     * preference dataset. */
    snprintf(file, sizeof file, "%s/pairs.jsonl", d.dir);
    r = ctl(&d, "projects", "export", pid, "-o", file, NULL);
    expect_code(r, 0);
    free(r);
    FILE *f = fopen(file, "r");
    ck_assert_ptr_nonnull(f);
    char line[512];
    int n_lines = 0;
    while (fgets(line, sizeof line, f))
        n_lines++;
    fclose(f);
    ck_assert_int_eq(n_lines, 6);
    r = ctl(&d, "--json", "datasets", "create", "exported", "--format", "preference", "--file",
            file, NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "\"n_rows\": 6"), "%s", r->out);
    free(r);
    r = ctl(&d, "projects", "export", pid, "--rankings", NULL);
    expect_code(r, 0);
    ck_assert_int_eq(count_of(r->out, "\n"), 4);
    ck_assert_int_eq(count_of(r->out, "\"annotator\":\"ann2\""), 2);
    free(r);

    r = ctl(&d, "projects", "agreement", pid, NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "Krippendorff's alpha (ordinal): 1.0000") &&
                      strstr(r->out, "Kendall's W (mean over 2 comparisons): 1.0000") &&
                      strstr(r->out, "ann1"),
                  "%s", r->out);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- 429: Retry-After and the same Idempotency-Key ---------------------------------------- */

/* A one-thread HTTP server that answers the first n_429 requests 429
 * (Retry-After: 0) and then 200, recording each request's Idempotency-Key
 * and body length. */
typedef struct fake_server {
    int fd, port, n_429, n_requests;
    char keys[16][96];
    long body_len[16];
} fake_server;

static void *fake_server_run(void *arg) {
    fake_server *s = arg;
    for (;;) {
        int c = accept(s->fd, NULL, NULL);
        if (c < 0)
            return NULL;
        char buf[1 << 14] = {0};
        size_t len = 0;
        char *end = NULL;
        while (len < sizeof buf - 1 && (end = strstr(buf, "\r\n\r\n")) == NULL) {
            ssize_t got = read(c, buf + len, sizeof buf - 1 - len);
            if (got <= 0)
                break;
            len += (size_t)got;
            buf[len] = '\0';
        }
        long want = 0;
        const char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (cl)
            want = strtol(cl + 17, NULL, 10);
        size_t have = end ? len - (size_t)(end + 4 - buf) : 0;
        while (end && (long)have < want) {
            char sink[4096];
            ssize_t got = read(c, sink, sizeof sink);
            if (got <= 0)
                break;
            have += (size_t)got;
        }
        int i = s->n_requests < 16 ? s->n_requests : 15;
        const char *key = strcasestr(buf, "\r\nIdempotency-Key:");
        s->keys[i][0] = '\0';
        if (key) {
            key += 18;
            key += strspn(key, " ");
            snprintf(s->keys[i], sizeof s->keys[i], "%.*s", (int)strcspn(key, "\r\n"), key);
        }
        s->body_len[i] = (long)have;
        const char *reply =
            s->n_requests < s->n_429
                ? "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\nContent-Type: "
                  "application/json\r\nConnection: close\r\nContent-Length: 112\r\n\r\n"
                  "{\"error\":{\"message\":\"too many writes\",\"type\":\"invalid_request_error\","
                  "\"param\":null,\"code\":\"rate_limit_exceeded\"}}"
                : "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: "
                  "close\r\nContent-Length: 27\r\n\r\n{\"id\":7,\"object\":\"project\"}";
        ssize_t w = write(c, reply, strlen(reply));
        (void)w;
        s->n_requests++;
        close(c);
    }
}

static void fake_server_start(fake_server *s, pthread_t *t, int n_429) {
    memset(s, 0, sizeof *s);
    s->n_429 = n_429;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    ck_assert_int_eq(bind(s->fd, (struct sockaddr *)&addr, sizeof addr), 0);
    ck_assert_int_eq(listen(s->fd, 8), 0);
    socklen_t len = sizeof addr;
    getsockname(s->fd, (struct sockaddr *)&addr, &len);
    s->port = ntohs(addr.sin_port);
    ck_assert_int_eq(pthread_create(t, NULL, fake_server_run, s), 0);
}

static void fake_server_stop(fake_server *s, pthread_t t) {
    shutdown(s->fd, SHUT_RDWR); /* accept returns */
    pthread_join(t, NULL);
    close(s->fd);
}

START_TEST(test_rlhfctl_retries_429) {
    char home[] = "/tmp/rlhfctl-test-XXXXXX", url[64], file[128];
    ck_assert_ptr_nonnull(mkdtemp(home));
    fake_server s;
    pthread_t t;
    /* Two 429s, then 200: three requests, one key. */
    fake_server_start(&s, &t, 2);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    const char *create[] = {"--url", url, "--token", "t", "projects", "create", "p", NULL};
    ctl_result *r = ctl_run_env(home, NULL, create);
    fake_server_stop(&s, t);
    expect_code(r, 0);
    ck_assert_int_eq(s.n_requests, 3);
    ck_assert_msg(strncmp(s.keys[0], "rlhfctl-", 8) == 0 && strlen(s.keys[0]) == 40, "key '%s'",
                  s.keys[0]);
    ck_assert_str_eq(s.keys[1], s.keys[0]);
    ck_assert_str_eq(s.keys[2], s.keys[0]);
    ck_assert_int_eq(s.body_len[2], s.body_len[0]);
    ck_assert_int_eq(count_of(r->err, "rate limited (HTTP 429)"), 2);
    ck_assert_msg(strstr(r->err, "attempt 3 of 5"), "%s", r->err);
    free(r);

    /* An upload from a file is sent again whole, under the same key. */
    fake_server_start(&s, &t, 1);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    snprintf(file, sizeof file, "%s/rows.jsonl", home);
    write_file(file, "{\"prompt\":\"a\",\"response\":\"b\"}\n");
    const char *upload[] = {"--url", url, "--token", "t", "datasets", "upload", "1", file, NULL};
    r = ctl_run_env(home, NULL, upload);
    fake_server_stop(&s, t);
    expect_code(r, 0);
    ck_assert_int_eq(s.n_requests, 2);
    ck_assert_str_eq(s.keys[1], s.keys[0]);
    ck_assert_int_eq(s.body_len[0], 30);
    ck_assert_int_eq(s.body_len[1], 30);
    free(r);

    /* Always 429: five attempts, then the API error (exit 3). */
    fake_server_start(&s, &t, 1000);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    const char *again[] = {"--url", url, "--token", "t", "projects", "create", "p", NULL};
    r = ctl_run_env(home, NULL, again);
    fake_server_stop(&s, t);
    expect_code(r, 3);
    ck_assert_int_eq(s.n_requests, 5);
    ck_assert_msg(strstr(r->err, "rate_limit_exceeded"), "%s", r->err);
    free(r);
    unlink(file);
    rmdir(home);
}
END_TEST

/* Starts d with a --model-root holding the tiny GPT-2 directory "tiny"
 * (its path into dir) and the tiny Qwen3 one "qwen" (test_hf_fixture.h),
 * and --hostfile unless hostfile is NULL. */
static void daemon_with_model_root(test_daemon *d, char dir[200], const char *hostfile) {
    char root[160], qwen[200];
    snprintf(root, sizeof root, "%s/models", d->dir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    snprintf(qwen, sizeof qwen, "%s/qwen", root);
    ck_assert_int_eq(mkdir(qwen, 0755), 0);
    test_write_tiny_qwen3_dir(qwen, 3);
    snprintf(dir, 200, "%s/tiny", root);
    test_write_hf_model_dir(dir, 7, true);
    if (hostfile)
        daemon_start(d, "--model-root", root, "--hostfile", hostfile, NULL);
    else
        daemon_start(d, "--model-root", root, NULL);
}

/* models add / upload / list / show / delete against a daemon with a
 * --model-root: the registered directory and the uploaded copy are both
 * ready, listed, and deleted; an upload the server finds unusable exits
 * with the API code. */
START_TEST(test_rlhfctl_models) {
    test_daemon d;
    daemon_init(&d);
    char dir[200], bad[200], file[260];
    daemon_with_model_root(&d, dir, NULL);
    ctl_result *r = ctl(&d, "models", "add", "tiny", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "ready") != NULL, "%s", r->out);
    free(r);
    r = ctl(&d, "models", "upload", dir, "--name", "copy", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->err, "uploaded model.safetensors") != NULL, "%s", r->err);
    ck_assert_msg(strstr(r->out, "chatml") != NULL, "%s", r->out);
    free(r);
    r = ctl(&d, "--json", "models", "list", NULL);
    expect_code(r, 0);
    json_t *list = out_json(r);
    ck_assert_int_eq(json_array_size(json_object_get(list, "data")), 2);
    json_decref(list);
    free(r);
    r = ctl(&d, "models", "list", NULL);
    expect_code(r, 0);
    ck_assert_int_eq(count_of(r->out, "ready"), 2);
    free(r);
    r = ctl(&d, "--json", "models", "show", "copy", NULL);
    expect_code(r, 0);
    json_t *model = out_json(r);
    ck_assert_int_eq(json_array_size(json_object_get(model, "files")), 4);
    json_decref(model);
    free(r);
    /* a directory without its weights: the server says why, per file */
    snprintf(bad, sizeof bad, "%s/bad", d.dir);
    test_write_hf_model_dir(bad, 8, false);
    snprintf(file, sizeof file, "%s/model.safetensors", bad);
    ck_assert_int_eq(unlink(file), 0);
    r = ctl(&d, "models", "upload", bad, NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->out, "model.safetensors") != NULL, "%s", r->out);
    free(r);
    r = ctl(&d, "models", "delete", "tiny", NULL);
    expect_code(r, 0);
    free(r);
    r = ctl(&d, "models", "show", "tiny", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "model_not_found") != NULL, "%s", r->err);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* studies submit --watch follows a study to its summary (exit 0 when every
 * job succeeded); show --markdown prints one table row per variation with
 * the numbers the API reports; a bad file is a usage error, a refused study
 * the server's message and exit 3. */
START_TEST(test_rlhfctl_studies) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char file[160], bad[160];
    snprintf(file, sizeof file, "%s/study.json", d.dir);
    write_file(file, "{\"name\":\"cli\",\"base\":" SHORT_JOB ",\"metric\":\"episodic_return\","
                     "\"grid\":{\"clip_coef\":[0.1,0.3]},\"seeds\":[1,2]}");
    ctl_result *r = ctl(&d, "studies", "submit", file, "--watch", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "study 1: 4 jobs") != NULL, "%s", r->out);
    ck_assert_msg(strstr(r->out, "study 1 succeeded: succeeded 4") != NULL, "%s", r->out);
    ck_assert_int_eq(count_of(r->out, "clip_coef="), 2);
    free(r);
    r = ctl(&d, "--json", "studies", "show", "1", NULL);
    expect_code(r, 0);
    json_t *study = out_json(r);
    free(r);
    r = ctl(&d, "studies", "show", "1", "--markdown", NULL);
    expect_code(r, 0);
    json_t *row = json_array_get(json_object_get(study, "summary"), 1);
    char want[256];
    snprintf(want, sizeof want, "| clip_coef=0.3 | 2 | %.4g ± %.2g | %.4g ± %.2g |",
             json_number_value(json_object_get(row, "final_mean")),
             json_number_value(json_object_get(row, "final_std")),
             json_number_value(json_object_get(row, "best_mean")),
             json_number_value(json_object_get(row, "best_std")));
    ck_assert_msg(strstr(r->out, want) != NULL, "want '%s' in\n%s", want, r->out);
    json_decref(study);
    free(r);
    r = ctl(&d, "studies", "list", NULL);
    expect_code(r, 0);
    ck_assert_int_eq(count_of(r->out, "succeeded"), 1);
    free(r);
    snprintf(bad, sizeof bad, "%s/bad.json", d.dir);
    write_file(bad, "[1,2]");
    r = ctl(&d, "studies", "submit", bad, NULL);
    expect_code(r, 2);
    free(r);
    write_file(bad, "{\"name\":\"x\",\"base\":" SHORT_JOB ",\"metric\":\"m\",\"grid\":"
                    "{\"gamma\":[2]}}");
    r = ctl(&d, "studies", "submit", bad, NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "grid.gamma") != NULL, "%s", r->err);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* rlhfctl --url <the daemon> --token <admin> ARGS... started in the
 * background (ctl's argv; NULL-terminated), for a command that waits. */
static void ctl_start(const test_daemon *d, ctl_proc *p, char url[64], const char *const args[]) {
    snprintf(url, 64, "http://127.0.0.1:%d", d->port);
    const char *argv[64] = {"--url", url, "--token", d->admin};
    int n = 4;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    ctl_spawn(p, d->dir, NULL, argv);
}

/* loops create from a body file with options over it (a nested --set
 * keeps the file's other members) --watch, run beside the simulated
 * annotator: watch reports the round's phases and its signals and exits 0;
 * show, show --markdown and list print what the API holds. A cancelled
 * loop's watch exits 1; cancelling an ended loop, an unknown loop and a
 * refused body are API errors (exit 3, the code and param shown); a bad
 * --set or file is a usage error (exit 2) and creates nothing. */
START_TEST(test_rlhfctl_loops) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft = demo_sft_job(&d, TINY_SFT, NULL);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    const int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"loop\",\"k\":2,\"overlap\":1}");
    const int64_t prompts = demo_dataset(&d, "prompts", 8, 3);
    char annotator[128];
    grant_project(&d, project, make_token(&d, "sim", "annotator", annotator));
    char file[160], model[32], proj[32], prm[32], url[64];
    snprintf(file, sizeof file, "%s/loop.json", d.dir);
    snprintf(model, sizeof model, "job:%lld", (long long)sft);
    snprintf(proj, sizeof proj, "%lld", (long long)project);
    snprintf(prm, sizeof prm, "%lld", (long long)prompts);
    write_file(file, "{\"name\":\"from-file\",\"rounds\":5,\"prompts_per_round\":2,"
                     "\"samples_per_prompt\":3,\"rankings_per_round\":4,\"max_tokens\":12,"
                     "\"eval_prompts\":4,\"gold\":true,\"reward_hyperparameters\":" TINY_REWARD
                     ",\"policy_hyperparameters\":" TINY_PPO "}");
    const char *const watched[] = {
        "loops",     "create", file,        "--model", model,
        "--project", proj,     "--prompts", prm,       "--name",
        "cli",       "--set",  "rounds=1",  "--set",   "policy_hyperparameters.kl_coef=0.3",
        "--watch",   NULL};
    ctl_proc p;
    ctl_start(&d, &p, url, watched);
    ck_assert_msg(ctl_read_until(&p, "round 1 annotating"), "%s\n%s", p.res->out, p.res->err);
    const char *const sim[] = {"--url",      url,    "--token", annotator, "annotate", proj,
                               "--simulate", "demo", "--noise", "0.5",     NULL};
    ctl_result *r = ctl_run_env(d.dir, NULL, sim);
    expect_code(r, 0);
    free(r);
    r = ctl_finish(&p);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "loop 1 cli: running, round 1 of 1, sampling (ppo, uncertainty; "
                                 "project 1, prompts") != NULL,
                  "%s", r->out);
    ck_assert_msg(strstr(r->out, "loop 1 round 1 annotating: 4 comparisons posted, waiting for 4 "
                                 "rankings") != NULL,
                  "%s", r->out);
    ck_assert_msg(strstr(r->out, "loop 1 cli: succeeded, round 1 of 1, done") != NULL, "%s",
                  r->out);
    free(r);
    r = ctl(&d, "--json", "loops", "show", "1", NULL);
    expect_code(r, 0);
    json_t *loop = out_json(r);
    free(r);
    const json_t *config = json_object_get(loop, "config");
    ck_assert_str_eq(json_string_value(json_object_get(loop, "name")), "cli");
    ck_assert_int_eq(json_integer_value(json_object_get(config, "rounds")), 1);
    const json_t *policy_hp = json_object_get(config, "policy_hyperparameters");
    ck_assert_double_eq(json_number_value(json_object_get(policy_hp, "kl_coef")), 0.3);
    ck_assert_int_eq(json_integer_value(json_object_get(policy_hp, "total_updates")), 2);
    const json_t *round = json_array_get(json_object_get(loop, "rounds"), 0);
    ck_assert(json_is_number(json_object_get(round, "gold_score")));
    /* watch's line and show's markdown row carry the API's numbers */
    char want[512];
    snprintf(want, sizeof want,
             "round 1: random, 4 rankings, RM accuracy on them -, agreement -, proxy %.3f, KL "
             "%.3f, gold %.3f -> %.3f",
             json_number_value(json_object_get(round, "proxy_score")),
             json_number_value(json_object_get(round, "kl")),
             json_number_value(json_object_get(round, "sample_gold_score")),
             json_number_value(json_object_get(round, "gold_score")));
    r = ctl(&d, "loops", "watch", "1", NULL); /* an ended loop: its rounds, at once */
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, want) != NULL, "want '%s' in\n%s", want, r->out);
    free(r);
    snprintf(want, sizeof want, "| 1 | random | 4 | - | - | %.3f | %.3f | %.3f | %.3f |",
             json_number_value(json_object_get(round, "proxy_score")),
             json_number_value(json_object_get(round, "kl")),
             json_number_value(json_object_get(round, "sample_gold_score")),
             json_number_value(json_object_get(round, "gold_score")));
    json_decref(loop);
    r = ctl(&d, "loops", "show", "1", "--markdown", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, want) != NULL, "want '%s' in\n%s", want, r->out);
    free(r);

    /* a second loop (the file's 5 rounds), cancelled while it runs */
    char id[32];
    created_id(ctl(&d, "--json", "loops", "create", file, "--model", model, "--project", proj,
                   "--prompts", prm, NULL),
               id);
    ck_assert_str_eq(id, "2");
    r = ctl(&d, "loops", "list", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "from-file") && strstr(r->out, "cli"), "%s", r->out);
    ck_assert_int_eq(count_of(r->out, "succeeded"), 1);
    ck_assert_int_eq(count_of(r->out, "running"), 1);
    free(r);
    r = ctl(&d, "loops", "cancel", "2", NULL);
    expect_code(r, 0);
    ck_assert_msg(strstr(r->out, "loop 2 from-file: cancelled, round 1 of 5") != NULL, "%s",
                  r->out);
    free(r);
    r = ctl(&d, "loops", "watch", "2", NULL);
    expect_code(r, 1);
    ck_assert_msg(strstr(r->out, "cancelled") != NULL, "%s", r->out);
    free(r);
    r = ctl(&d, "loops", "cancel", "1", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "loop_not_cancellable") != NULL, "%s", r->err);
    free(r);
    r = ctl(&d, "loops", "show", "77", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "loop_not_found") != NULL, "%s", r->err);
    free(r);
    r = ctl(&d, "loops", "create", file, "--model", model, "--project", "999", "--prompts", prm,
            NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "project_not_found") && strstr(r->err, "param project"), "%s",
                  r->err);
    free(r);
    /* usage errors: nothing reaches the server */
    static const char *const bad[][4] = {
        {"--set", "rounds", NULL},       /* no = */
        {"--set", ".kl_coef=1", NULL},   /* no object name */
        {"--set", "name.first=1", NULL}, /* name is the file's string */
        {"--project", "p1", NULL},       /* not an id */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        r = ctl(&d, "loops", "create", file, bad[i][0], bad[i][1], NULL);
        expect_code(r, 2);
        ck_assert_msg(strstr(r->err, "usage: rlhfctl loops create") != NULL, "%s", r->err);
        free(r);
    }
    r = ctl(&d, "loops", "create", "/nonexistent/loop.json", NULL);
    expect_code(r, 2);
    ck_assert_msg(strstr(r->err, "/nonexistent/loop.json") != NULL, "%s", r->err);
    free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM loops", 0), 2);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The chat answer of /v1/chat/completions (temperature 0, 6 tokens) to
 * messages (a JSON array text) from model qwen, appended to out. */
static void direct_chat(const test_daemon *d, const char *messages, char *out, size_t cap) {
    char body[2048];
    snprintf(body, sizeof body,
             "{\"model\":\"qwen\",\"messages\":%s,\"max_tokens\":6,\"temperature\":0}", messages);
    http_reply *r = expect_ok(http(d, "POST", "/v1/chat/completions", d->admin, body, NULL));
    const char *text = json_string_value(json_object_get(
        json_object_get(json_array_get(json_object_get(r->json, "choices"), 0), "message"),
        "content"));
    ck_assert_ptr_nonnull(text);
    snprintf(out + strlen(out), cap - strlen(out), "%s\n", text);
    reply_free(r);
}

/* rlhfctl chat MODEL: each stdin line is a user turn of one conversation,
 * each answer streams to stdout and ends with a newline; what it prints is
 * what the API answers to the same conversation. */
START_TEST(test_rlhfctl_chat) {
    test_daemon d;
    char dir[256], input[200];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    ctl_result *r;
    snprintf(input, sizeof input, "%s/turns.txt", d.dir);
    write_file(input, "hello\n\nhi there\n");
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    const char *const argv[] = {"--url",         url, "--token",      d.admin, "chat", "qwen",
                                "--temperature", "0", "--max-tokens", "6",     NULL};
    r = ctl_run_stdin(d.dir, input, argv);
    expect_code(r, 0);
    /* the same conversation through the API: the first answer, then the
     * second turn with the first answer in the history */
    char want[4096] = "", first[2048] = "", messages[4096];
    direct_chat(&d, "[{\"role\":\"user\",\"content\":\"hello\"}]", first, sizeof first);
    snprintf(want, sizeof want, "%s", first);
    first[strlen(first) - 1] = '\0';
    json_t *history =
        json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "role", "user", "content", "hello",
                  "role", "assistant", "content", first, "role", "user", "content", "hi there");
    char *text = json_dumps(history, JSON_COMPACT);
    snprintf(messages, sizeof messages, "%s", text);
    free(text);
    json_decref(history);
    direct_chat(&d, messages, want, sizeof want);
    ck_assert_str_eq(r->out, want);
    free(r);
    /* an unknown model: the API's error, exit 3 */
    write_file(input, "hello\n");
    const char *const bad[] = {"--url", url, "--token", d.admin, "chat", "nope", NULL};
    r = ctl_run_stdin(d.dir, input, bad);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "model_not_found") != NULL, "%s", r->err);
    free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* jobs submit --model MODEL --ranks N. --ranks 0 is a usage error; ranks
 * reaches the server (a one-process type refuses 2, naming ranks), and so
 * does --model (an unknown name is model_not_found). With MPI built and a
 * hostfile, 2-rank sft jobs run under mpirun to success: from scratch, from
 * the first one's checkpoint (--model job:1), and from the registered
 * GPT-2 and Qwen3 directories (--model tiny, --model qwen: rank 0 ships
 * the directory to rank 1). */
START_TEST(test_rlhfctl_submit_model_and_ranks) {
    test_daemon d;
    daemon_init(&d);
    char dir[200], hostfile[160], data[160];
    snprintf(hostfile, sizeof hostfile, "%s/hosts", d.dir);
    write_file(hostfile, "localhost slots=2\n");
    setenv("OMPI_MCA_btl_vader_single_copy_mechanism", "none", 1);
    setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", 1);
    daemon_with_model_root(&d, dir, hostfile);
    ctl_result *r = ctl(&d, "models", "add", "tiny", NULL);
    expect_code(r, 0);
    free(r);
    r = ctl(&d, "models", "add", "qwen", NULL);
    expect_code(r, 0);
    free(r);
    snprintf(data, sizeof data, "%s/sft.jsonl", d.dir);
    FILE *f = fopen(data, "w");
    for (int i = 0; i < 24; i++)
        fprintf(f, "{\"prompt\":\"q%d\",\"response\":\"a %.*s\"}\n", i, 1 + i % 6, "bcdefgh");
    fclose(f);
    char ds_id[32];
    created_id(
        ctl(&d, "--json", "datasets", "create", "s", "--format", "sft", "--file", data, NULL),
        ds_id);

    r = ctl(&d, "jobs", "submit", "sft", "--training-file", ds_id, "--ranks", "0", NULL);
    expect_code(r, 2);
    ck_assert_msg(strstr(r->err, "ranks must be a positive integer") != NULL, "%s", r->err);
    free(r);
    /* ranks reaches the server: a type that runs in one process refuses it */
    r = ctl(&d, "jobs", "submit", "ppo-control", "--ranks", "2", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param ranks") != NULL, "%s", r->err);
    free(r);
    r = ctl(&d, "jobs", "submit", "sft", "--training-file", ds_id, "--model", "nope", NULL);
    expect_code(r, 3);
    ck_assert_msg(strstr(r->err, "param model") && strstr(r->err, "model_not_found"), "%s", r->err);
    free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    if (!worker_launch_mpi_built()) {
        daemon_stop(&d);
        daemon_cleanup(&d);
        test_skip("the 2-rank job: rlhf-train was built without MPI");
        return;
    }
#define TINY_SETS                                                                                  \
    "--set", "n_layer=1", "--set", "d_model=16", "--set", "n_head=2", "--set", "context=32",       \
        "--set", "max_steps=3", "--set", "batch_size=4", "--set", "sample_interval=0", "--set",    \
        "eval_fraction=0"
    static const char *const models[] = {NULL, "job:1", "tiny", "qwen"};
    for (int i = 1; i <= 4; i++) {
        const char *model = models[i - 1];
        r = model ? ctl(&d, "--json", "jobs", "submit", "sft", "--training-file", ds_id, "--model",
                        model, "--ranks", "2", TINY_SETS, NULL)
                  : ctl(&d, "--json", "jobs", "submit", "sft", "--training-file", ds_id, "--ranks",
                        "2", TINY_SETS, NULL);
        expect_code(r, 0);
        json_t *job = out_json(r);
        ck_assert_int_eq(json_id(job), i);
        ck_assert_int_eq(json_integer_value(json_object_get(job, "ranks")), 2);
        json_decref(job);
        free(r);
        reply_free(wait_job(&d, i, "succeeded", 0));
    }
#undef TINY_SETS
    /* the server holds what the options said */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_events WHERE code = 'data_parallel'", 0),
                     4);
    ck_assert_int_eq(
        db_int(&d, "SELECT parent_checkpoint_id IS NOT NULL FROM jobs WHERE id = 2", 0), 1);
    ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = 3", 0),
                     db_int(&d, "SELECT id FROM models WHERE name = 'tiny'", 0));
    ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = 4", 0),
                     db_int(&d, "SELECT id FROM models WHERE name = 'qwen'", 0));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *rlhfctl_suite(void) {
    Suite *s = suite_create("rlhfctl");
    TCase *tc = tcase_create("rlhfctl");
    tcase_add_test(tc, test_rlhfctl_network_and_usage_errors);
    tcase_add_test(tc, test_rlhfctl_config_precedence);
    tcase_add_test(tc, test_rlhfctl_datasets);
    tcase_add_test(tc, test_rlhfctl_comparisons_and_rank);
    tcase_add_test(tc, test_rlhfctl_annotate_simulated);
    tcase_add_test(tc, test_rlhfctl_job_submit_and_watch);
    tcase_add_test(tc, test_rlhfctl_sft_from_dataset);
    tcase_add_test(tc, test_rlhfctl_watch_reconnects);
    tcase_add_test(tc, test_rlhfctl_bulk_export_agreement);
    tcase_add_test(tc, test_rlhfctl_retries_429);
    tcase_add_test(tc, test_rlhfctl_models);
    tcase_add_test(tc, test_rlhfctl_studies);
    tcase_add_test(tc, test_rlhfctl_loops);
    tcase_add_test(tc, test_rlhfctl_chat);
    tcase_add_test(tc, test_rlhfctl_submit_model_and_ranks);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
