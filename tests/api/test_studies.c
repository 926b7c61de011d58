/* /v1/studies: a base job over a grid or list of variations × seeds.
 * Validation refuses a whole study naming the variation and field (and
 * stores nothing); a grid expands into its cartesian product × seeds; cancel
 * ends every job; the summary and the curves match the children's metrics
 * as this file computes them from GET /v1/jobs/{id}/metrics; and SIGKILL of
 * the daemon while a study is being created leaves all of its jobs or none.
 */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

static int64_t count(const test_daemon *d, const char *table) {
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s", table);
    return db_int(d, sql, 0);
}

/* POST /v1/studies with body: 400 with code and param, whose message
 * contains needle (NULL: anything); nothing stored. */
static void expect_refused(const test_daemon *d, const char *body, const char *code,
                           const char *param, const char *needle) {
    http_reply *r = http(d, "POST", "/v1/studies", d->admin, body, NULL);
    expect_error(r, 400, code, param);
    const char *message =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    if (needle != NULL && strstr(message, needle) == NULL)
        ck_abort_msg("message '%s' does not contain '%s'", message, needle);
    reply_free(r);
    ck_assert_int_eq(count(d, "studies"), 0);
    ck_assert_int_eq(count(d, "jobs"), 0);
}

#define BASE "\"base\":{\"type\":\"ppo-control\",\"hyperparameters\":{\"total_steps\":2048}}"

START_TEST(test_study_validation) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    expect_refused(&d, "{\"base\":{\"type\":\"ppo-control\"},\"metric\":\"x\"}", "invalid_value",
                   "name", NULL);
    expect_refused(&d, "{\"name\":\"s\",\"metric\":\"x\"}", "missing_required_parameter", "base",
                   NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE "}", "missing_required_parameter", "metric", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"goal\":\"up\"}",
                   "invalid_value", "goal", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"bogus\":1}",
                   "unknown_parameter", "bogus", NULL);
    /* The base job is checked by POST /v1/jobs's code, its fields under base. */
    expect_refused(&d, "{\"name\":\"s\",\"base\":{\"type\":\"dance\"},\"metric\":\"x\"}",
                   "unknown_job_type", "base.type", NULL);
    expect_refused(&d,
                   "{\"name\":\"s\",\"base\":{\"type\":\"ppo-control\",\"training_file\":1},"
                   "\"metric\":\"x\"}",
                   "invalid_value", "base.training_file", NULL);
    expect_refused(&d, "{\"name\":\"s\",\"base\":{\"type\":\"sft\"},\"metric\":\"loss\"}",
                   "missing_required_parameter", "base.training_file", NULL);
    /* Every variation's hyperparameters go through the validator: the error
     * names the variation, its seed and the field that set the value. */
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"grid\":{\"clip_coef\":[0.1,20],"
                   "\"gamma\":[0.9,0.99]}}",
                   "invalid_hyperparameter", "grid.clip_coef",
                   "variation 2 (clip_coef=20, gamma=0.9)");
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"variations\":["
                   "{\"hyperparameters\":{\"gamma\":0.9}},{\"label\":\"bad\","
                   "\"hyperparameters\":{\"gamma\":2}}]}",
                   "invalid_hyperparameter", "variations[1].hyperparameters.gamma",
                   "variation 1 (bad), seed 1");
    expect_refused(&d,
                   "{\"name\":\"s\",\"base\":{\"type\":\"ppo-control\",\"hyperparameters\":{"
                   "\"bogus\":1}},\"metric\":\"x\",\"grid\":{\"gamma\":[0.9]}}",
                   "invalid_hyperparameter", "base.hyperparameters.bogus", "variation 0");
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"seeds\":[1,4294967296]}",
                   "invalid_value", "seeds", "seeds[1]");
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"variations\":[{\"hyperparameters\""
                   ":{}},{\"hyperparameters\":{\"seed\":4}}]}",
                   "invalid_value", "variations[1].hyperparameters.seed", NULL);
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"variations\":[{\"label\":\"\","
                   "\"hyperparameters\":{}}]}",
                   "invalid_value", "variations[0].label", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"variations\":[7]}",
                   "invalid_type", "variations[0]", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"variations\":[{\"hp\":{}}]}",
                   "unknown_parameter", "variations[0].hp", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"seeds\":[3,3]}",
                   "invalid_value", "seeds", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"grid\":{\"seed\":[1,2]}}",
                   "invalid_value", "grid.seed", NULL);
    expect_refused(&d, "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"grid\":{\"gamma\":[]}}",
                   "invalid_type", "grid.gamma", NULL);
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"grid\":{\"gamma\":[0.9]},"
                   "\"variations\":[{\"hyperparameters\":{}}]}",
                   "invalid_value", "variations", NULL);
    expect_refused(&d,
                   "{\"name\":\"s\"," BASE ",\"metric\":\"x\",\"grid\":{\"gamma\":[0.1,0.2,0.3,"
                   "0.4,0.5,0.6,0.7,0.8,0.9,0.91,0.92,0.93,0.94,0.95,0.96,0.97,0.98]},"
                   "\"seeds\":[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]}",
                   "too_many_jobs", NULL, "272 jobs");
    /* An annotator may not create one; a viewer may read. */
    char annotator[128], viewer[128];
    make_token(&d, "ann", "annotator", annotator);
    make_token(&d, "view", "viewer", viewer);
    call_expect_error(&d, "POST", "/v1/studies", annotator,
                      "{\"name\":\"s\"," BASE ",\"metric\":\"x\"}", 403, "insufficient_role", NULL);
    reply_free(expect_ok(http(&d, "GET", "/v1/studies", viewer, NULL, NULL)));
    call_expect_error(&d, "GET", "/v1/studies/9", viewer, NULL, 404, "study_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/studies/9/curves", viewer, NULL, 404, "study_not_found",
                      NULL);
    call_expect_error(&d, "POST", "/v1/studies/9/cancel", d.admin, NULL, 404, "study_not_found",
                      NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Polls GET /v1/studies/{id} until its status is want; returns it. */
static http_reply *wait_study(const test_daemon *d, int64_t id, const char *want) {
    char path[64];
    snprintf(path, sizeof path, "/v1/studies/%lld", (long long)id);
    const int64_t deadline = now_ms() + 4 * DEADLINE_MS;
    for (;;) {
        http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
        const char *status = json_string_value(json_object_get(r->json, "status"));
        if (strcmp(status, want) == 0)
            return r;
        if (now_ms() > deadline)
            ck_abort_msg("study %lld is %s, not %s", (long long)id, status, want);
        reply_free(r);
        pause_ms(50);
    }
}

/* A 3 x 2 grid over 2 seeds is 12 jobs with every combination once;
 * cancelling the study ends them all, the running one included. */
START_TEST(test_study_grid_and_cancel) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--workers", "1", NULL);
    int64_t id = create(&d, "/v1/studies", d.admin,
                        "{\"name\":\"grid\",\"base\":{\"type\":\"ppo-control\","
                        "\"hyperparameters\":{\"total_steps\":5000000}},\"metric\":"
                        "\"episodic_return\",\"grid\":{\"clip_coef\":[0.1,0.2,0.3],"
                        "\"gae_lambda\":[0.9,0.95]},\"seeds\":[7,8]}");
    ck_assert_int_eq(count(&d, "jobs"), 12);
    ck_assert_int_eq(count(&d, "study_jobs"), 12);
    char path[96];
    snprintf(path, sizeof path, "/v1/studies/%lld", (long long)id);
    http_reply *r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    json_t *variations = json_object_get(r->json, "variations");
    json_t *jobs = json_object_get(r->json, "jobs");
    ck_assert_int_eq(json_array_size(variations), 6);
    ck_assert_int_eq(json_array_size(jobs), 12);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(variations, 1), "label")),
                     "clip_coef=0.1, gae_lambda=0.95");
    /* every (clip, lambda, seed) once, as each job's stored hyperparameters say */
    int seen[3][2][2] = {{{0}}};
    size_t i;
    json_t *job;
    json_array_foreach(jobs, i, job) {
        http_reply *j = get_job(&d, json_integer_value(json_object_get(job, "id")));
        json_t *hp = json_object_get(j->json, "hyperparameters");
        int c = (int)lround(json_real_value(json_object_get(hp, "clip_coef")) * 10) - 1;
        int l = json_real_value(json_object_get(hp, "gae_lambda")) > 0.92;
        int s = (int)json_integer_value(json_object_get(hp, "seed")) - 7;
        ck_assert(c >= 0 && c < 3 && s >= 0 && s < 2);
        ck_assert_int_eq(json_integer_value(json_object_get(job, "seed")), s + 7);
        ck_assert_int_eq(json_integer_value(json_object_get(job, "variation")), c * 2 + l);
        ck_assert_int_eq(json_integer_value(json_object_get(hp, "total_steps")), 5000000);
        seen[c][l][s]++;
        reply_free(j);
    }
    for (int c = 0; c < 3; c++)
        for (int l = 0; l < 2; l++)
            for (int s = 0; s < 2; s++)
                ck_assert_int_eq(seen[c][l][s], 1);
    int64_t first = json_integer_value(json_object_get(json_array_get(jobs, 0), "id"));
    reply_free(r);
    /* the one worker is training a job of the study */
    reply_free(wait_job(&d, first, "running", 1));
    wait_metrics(&d, first);
    snprintf(path, sizeof path, "/v1/studies/%lld/cancel", (long long)id);
    r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    reply_free(r);
    r = wait_study(&d, id, "cancelled");
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r->json, "job_counts"), "cancelled")),
        12);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE status = 'cancelled'", 0), 12);
    /* the list shows it */
    r = expect_ok(http(&d, "GET", "/v1/studies", d.admin, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 0), "status")),
                     "cancelled");
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* One job's series of metric name: steps and values (at most 64). */
typedef struct series {
    int n;
    int64_t step[64];
    double value[64];
} series;

static void job_series(const test_daemon *d, int64_t job, const char *name, series *s) {
    char path[160];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=%s&limit=64", (long long)job, name);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    s->n = 0;
    size_t i;
    json_t *row;
    json_array_foreach(json_object_get(r->json, "data"), i, row) {
        json_t *v = json_object_get(json_object_get(row, "metrics"), name);
        if (v == NULL)
            continue;
        s->step[s->n] = json_integer_value(json_object_get(row, "step"));
        s->value[s->n++] = json_number_value(v);
    }
    reply_free(r);
}

static void expect_close(json_t *v, double want) {
    ck_assert_msg(json_is_number(v), "not a number");
    double got = json_number_value(v);
    /* replies print 15 significant digits (server/reply.h) */
    ck_assert_msg(fabs(got - want) <= 1e-12 * (1 + fabs(want)), "got %.17g, want %.17g", got, want);
}

/* The summary's mean and std over seeds of the final and best value, and
 * the curves' mean and band by step, against the jobs' own metrics. */
START_TEST(test_study_summary_and_curves) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create(&d, "/v1/studies", d.admin,
                        "{\"name\":\"summary\"," BASE ",\"metric\":\"episodic_return\","
                        "\"variations\":[{\"label\":\"tight\",\"hyperparameters\":{\"clip_coef\":"
                        "0.1}},{\"hyperparameters\":{\"clip_coef\":0.3,\"learning_rate\":0.001}}],"
                        "\"seeds\":[1,2,3]}");
    http_reply *study = wait_study(&d, id, "succeeded");
    json_t *summary = json_object_get(study->json, "summary");
    json_t *jobs = json_object_get(study->json, "jobs");
    ck_assert_int_eq(json_array_size(summary), 2);
    ck_assert_int_eq(json_array_size(jobs), 6);
    char path[96];
    snprintf(path, sizeof path, "/v1/studies/%lld/curves", (long long)id);
    http_reply *curves = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(json_string_value(json_object_get(curves->json, "metric")), "episodic_return");
    for (int v = 0; v < 2; v++) {
        series s[3];
        double final[3], best[3], wall[3];
        for (int k = 0; k < 3; k++) {
            json_t *job = json_array_get(jobs, v * 3 + k);
            ck_assert_int_eq(json_integer_value(json_object_get(job, "variation")), v);
            int64_t job_id = json_integer_value(json_object_get(job, "id"));
            job_series(&d, job_id, "episodic_return", &s[k]);
            ck_assert_int_gt(s[k].n, 1);
            final[k] = s[k].value[s[k].n - 1];
            best[k] = s[k].value[0];
            for (int i = 1; i < s[k].n; i++)
                best[k] = fmax(best[k], s[k].value[i]);
            http_reply *j = get_job(&d, job_id);
            wall[k] = (double)(job_int(j, "finished_at") - job_int(j, "started_at"));
            reply_free(j);
            expect_close(json_object_get(job, "final"), final[k]);
            expect_close(json_object_get(job, "best"), best[k]);
        }
        json_t *row = json_array_get(summary, v);
        ck_assert_int_eq(json_integer_value(json_object_get(row, "runs")), 3);
        const char *names[3] = {"final", "best", "wall_s"};
        const double *xs[3] = {final, best, wall};
        for (int q = 0; q < 3; q++) {
            double mean = (xs[q][0] + xs[q][1] + xs[q][2]) / 3, ss = 0;
            for (int k = 0; k < 3; k++)
                ss += (xs[q][k] - mean) * (xs[q][k] - mean);
            char key[32];
            snprintf(key, sizeof key, "%s_mean", names[q]);
            expect_close(json_object_get(row, key), mean);
            snprintf(key, sizeof key, "%s_std", names[q]);
            expect_close(json_object_get(row, key), sqrt(ss / 2));
        }
        /* curves: every step any seed logged, mean / min / max over those seeds */
        json_t *steps = json_object_get(
            json_array_get(json_object_get(curves->json, "variations"), v), "steps");
        ck_assert_int_gt(json_array_size(steps), 1);
        size_t i;
        json_t *point;
        json_array_foreach(steps, i, point) {
            int64_t step = json_integer_value(json_object_get(point, "step"));
            double sum = 0, lo = INFINITY, hi = -INFINITY;
            int n = 0;
            for (int k = 0; k < 3; k++)
                for (int t = 0; t < s[k].n; t++)
                    if (s[k].step[t] == step)
                        sum += s[k].value[t], lo = fmin(lo, s[k].value[t]),
                                              hi = fmax(hi, s[k].value[t]), n++;
            ck_assert_int_gt(n, 0);
            ck_assert_int_eq(json_integer_value(json_object_get(point, "n")), n);
            expect_close(json_object_get(point, "mean"), sum / n);
            expect_close(json_object_get(point, "min"), lo);
            expect_close(json_object_get(point, "max"), hi);
        }
    }
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(summary, 0), "label")),
                     "tight");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(summary, 1), "label")),
                     "clip_coef=0.3, learning_rate=0.001");
    reply_free(curves);
    reply_free(study);
    /* another metric's curves; one nobody logged has empty steps */
    snprintf(path, sizeof path, "/v1/studies/%lld/curves?metric=nothing", (long long)id);
    curves = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(
                         json_array_get(json_object_get(curves->json, "variations"), 0), "steps")),
                     0);
    reply_free(curves);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGKILL of the daemon while a 24-job study is being created, at a moment
 * that varies from round to round: after the restart the database holds
 * the whole study (its row, 24 study_jobs, 24 jobs) or nothing of it. */
START_TEST(test_study_create_all_or_none) {
    test_daemon d;
    daemon_init(&d);
    int64_t studies = 0, rounds_with = 0;
    for (int round = 0; round < 6; round++) {
        daemon_start(&d, "--workers", "1", NULL);
        pid_t client = fork();
        ck_assert_int_ge(client, 0);
        if (client == 0) {
            http_reply *r = http(&d, "POST", "/v1/studies", d.admin,
                                 "{\"name\":\"k\",\"base\":{\"type\":\"ppo-control\","
                                 "\"hyperparameters\":{\"total_steps\":5000000}},\"metric\":"
                                 "\"episodic_return\",\"grid\":{\"clip_coef\":[0.1,0.2,0.3],"
                                 "\"gamma\":[0.9,0.99]},\"seeds\":[1,2,3,4]}",
                                 NULL);
            _exit(r->status == 200 ? 0 : 1);
        }
        /* round 0 waits for the reply (all); the others kill at once or
         * after a growing pause, wherever the create happens to be */
        if (round == 0) {
            int status;
            ck_assert_int_eq(waitpid(client, &status, 0), client);
            ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        } else
            pause_ms((round - 1) * 3);
        kill(d.pid, SIGKILL);
        ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
        waitpid(client, NULL, 0);
        /* no daemon: a worker it started may still hold its job's lease,
         * which does not change the rows counted here */
        int64_t now_studies = count(&d, "studies");
        ck_assert(now_studies == studies || now_studies == studies + 1);
        if (now_studies == studies + 1)
            rounds_with++;
        studies = now_studies;
        ck_assert_int_eq(count(&d, "study_jobs"), 24 * studies);
        ck_assert_int_eq(count(&d, "jobs"), 24 * studies);
        ck_assert_int_eq(count(&d, "study_variations"), 6 * studies);
    }
    ck_assert_int_ge(rounds_with, 1);
    /* a restarted daemon serves the studies and cancels them whole */
    daemon_start(&d, "--workers", "1", NULL);
    for (int64_t id = 1; id <= 100 && studies > 0; id++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/studies/%lld/cancel", (long long)id);
        http_reply *r = http(&d, "POST", path, d.admin, NULL, NULL);
        if (r->status == 200)
            studies--;
        reply_free(r);
    }
    ck_assert_int_eq(studies, 0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *studies_suite(void) {
    Suite *s = suite_create("studies");
    TCase *http_tc = tcase_create("http");
    tcase_add_test(http_tc, test_study_validation);
    tcase_add_test(http_tc, test_study_create_all_or_none);
    tcase_set_timeout(http_tc, 120);
    suite_add_tcase(s, http_tc);
    TCase *runs = tcase_create("runs");
    tcase_add_test(runs, test_study_grid_and_cancel);
    tcase_add_test(runs, test_study_summary_and_curves);
    tcase_set_timeout(runs, 300);
    suite_add_tcase(s, runs);
    return s;
}
