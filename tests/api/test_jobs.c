/* /v1/jobs with ppo-control jobs run by real rlhf-train workers: validation
 * (nothing stored by a refused request), a job from queue to success and
 * what it leaves (metrics, events, its checkpoint), listing, and cancel.
 * Crashes and restarts are tests/api/test_durability.c; jobs that train on
 * datasets are test_rlhf_jobs.c.
 */
#include <errno.h>
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "sha256.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

START_TEST(test_job_validation) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{}", 400, "missing_required_parameter",
                      "type");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":7}", 400, "invalid_type", "type");
    /* Every type that trains on data needs its dataset
     * (tests/api/test_rlhf_jobs.c covers the rest). */
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"reward\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"sft\"}", 400,
                      "missing_required_parameter", "training_file");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"dance\"}", 400,
                      "unknown_job_type", "type");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, "{\"type\":\"ppo-control\",\"seed\":1}", 400,
                      "unknown_parameter", "seed");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":[]}", 400, "invalid_type",
                      "hyperparameters");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"gamma\":2}}", 400,
                      "invalid_hyperparameter", "hyperparameters.gamma");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"bogus\":1}}", 400,
                      "invalid_hyperparameter", "hyperparameters.bogus");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"hyperparameters\":{\"env\":\"Pong\"}}", 400,
                      "invalid_hyperparameter", "hyperparameters.env");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"ppo-control\",\"max_attempts\":0}", 400, "invalid_value",
                      "max_attempts");
    /* Nothing was stored by any of them. */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_events", 0), 0);
    call_expect_error(&d, "GET", "/v1/jobs?limit=0", d.admin, NULL, 400, "invalid_value", "limit");
    call_expect_error(&d, "GET", "/v1/jobs?limit=101", d.admin, NULL, 400, "invalid_value",
                      "limit");
    call_expect_error(&d, "GET", "/v1/jobs?after=x", d.admin, NULL, 400, "invalid_value", "after");
    call_expect_error(&d, "GET", "/v1/jobs?status=done", d.admin, NULL, 400, "invalid_value",
                      "status");
    const char *subroutes[] = {"", "/events", "/metrics", "/checkpoints", "/stream"};
    for (int i = 0; i < 5; i++) {
        char path[64];
        snprintf(path, sizeof path, "/v1/jobs/999%s", subroutes[i]);
        call_expect_error(&d, "GET", path, d.admin, NULL, 404, "job_not_found", NULL);
    }
    call_expect_error(&d, "POST", "/v1/jobs/999/cancel", d.admin, NULL, 404, "job_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/checkpoints/999/content", d.admin, NULL, 404,
                      "checkpoint_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A short job from queue to success, and everything it leaves behind. */
START_TEST(test_job_runs_to_success) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, SHORT_JOB);
    http_reply *job = wait_job(&d, id, "succeeded", 1);
    ck_assert(json_is_null(json_object_get(job->json, "error")));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_object_get(job->json, "hyperparameters"), "total_steps")),
                     2048);
    reply_free(job);
    char path[160];

    /* Metrics: 4 updates of 512 steps, paged by step, filtered by name. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=episodic_return,sps&limit=3",
             (long long)id);
    http_reply *r = http(&d, "GET", path, d.admin, NULL, NULL);
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 3);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 0), "step")), 512);
    json_t *m0 = json_object_get(json_array_get(data, 0), "metrics");
    ck_assert_int_eq(json_object_size(m0), 2);
    ck_assert(json_is_number(json_object_get(m0, "sps")));
    int64_t last_step = json_integer_value(json_object_get(r->json, "last_step"));
    ck_assert_int_eq(last_step, 1536);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?after_step=%lld", (long long)id,
             (long long)last_step);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 0), "step")), 2048);
    ck_assert_int_gt(json_object_size(json_object_get(json_array_get(data, 0), "metrics")), 5);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?after_step=1x", (long long)id);
    call_expect_error(&d, "GET", path, d.admin, NULL, 400, "invalid_value", "after_step");

    /* Events: newest first, paged with after. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=2", (long long)id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 0), "code")),
                     "succeeded");
    int64_t last_id = json_integer_value(json_object_get(r->json, "last_id"));
    ck_assert_int_eq(json_integer_value(json_object_get(json_array_get(data, 1), "id")), last_id);
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=100&after=%lld", (long long)id,
             (long long)last_id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    /* created, started, running (inputs validated), 4 × metrics; the
     * checkpoint event was on page 1 */
    ck_assert_int_eq(json_array_size(data), 7);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(data, 6), "code")),
                     "created");
    ck_assert_int_lt(json_integer_value(json_object_get(json_array_get(data, 0), "id")), last_id);
    reply_free(r);

    /* The final checkpoint, with metrics at its step and a verifiable digest. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/checkpoints", (long long)id);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 1);
    json_t *ck = json_array_get(data, 0);
    ck_assert_str_eq(json_string_value(json_object_get(ck, "kind")), "final");
    ck_assert_int_eq(json_integer_value(json_object_get(ck, "step_number")), 2048);
    ck_assert(json_is_number(json_object_get(json_object_get(ck, "metrics"), "episodic_return")));
    char digest[65];
    snprintf(digest, sizeof digest, "%s", json_string_value(json_object_get(ck, "sha256")));
    int64_t size = json_integer_value(json_object_get(ck, "size_bytes"));
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content",
             (long long)json_integer_value(json_object_get(ck, "id")));
    reply_free(r);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(r->status, 200);
    ck_assert_int_eq((int64_t)r->body_len, size);
    char got[65];
    sha256_hex(r->body, r->body_len, got);
    ck_assert_str_eq(got, digest);
    ck_assert_str_eq(r->sha256_header, digest);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_job_list_pagination) {
    test_daemon d;
    daemon_init(&d);
    /* workers 1 and a long first job: the others stay queued */
    daemon_start(&d, NULL);
    int64_t ids[3];
    ids[0] = create_job(&d, LONG_JOB);
    ids[1] = create_job(&d, SHORT_JOB);
    ids[2] = create_job(&d, SHORT_JOB);
    http_reply *r = http(&d, "GET", "/v1/jobs?limit=2", d.admin, NULL, NULL);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")), "list");
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), ids[2]);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "last_id")), ids[1]);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    reply_free(r);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs?limit=2&after=%lld", (long long)ids[1]);
    r = http(&d, "GET", path, d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "first_id")), ids[0]);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
    http_reply *first = wait_job(&d, ids[0], "running", 1);
    reply_free(first);
    r = http(&d, "GET", "/v1/jobs?status=queued", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 2);
    reply_free(r);
    r = http(&d, "GET", "/v1/jobs?type=sft", d.admin, NULL, NULL);
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    ck_assert(json_is_null(json_object_get(r->json, "first_id")));
    reply_free(r);
    /* Cancelling a queued job is immediate. */
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)ids[2]);
    r = http(&d, "POST", path, d.admin, NULL, NULL);
    ck_assert_str_eq(job_status(r), "cancelled");
    reply_free(r);
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)ids[0]);
    r = http(&d, "POST", path, d.admin, NULL, NULL);
    reply_free(r);
    reply_free(wait_job(&d, ids[0], "cancelled", 0));
    reply_free(wait_job(&d, ids[1], "succeeded", 0));
    ck_assert_int_eq(db_int(&d, "SELECT attempts FROM jobs WHERE id = ?1", ids[2]), 0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Cancel a running job: the worker stops within an update, checkpoints, and
 * records 'cancelled'. */
START_TEST(test_cancel_running_job) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, LONG_JOB);
    /* The worker runs niced (--worker-nice, default 10) below rlhfd. */
    errno = 0;
    const int own_nice = getpriority(PRIO_PROCESS, 0);
    const pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    ck_assert_int_eq(getpriority(PRIO_PROCESS, (id_t)worker),
                     own_nice + 10 > 19 ? 19 : own_nice + 10);
    http_reply *r = cancel_job(&d, id);
    ck_assert_int_eq(r->status, 200);
    ck_assert(json_is_true(json_object_get(r->json, "cancel_requested")));
    reply_free(r);
    http_reply *job = wait_job(&d, id, "cancelled", 1);
    ck_assert(json_is_integer(json_object_get(job->json, "finished_at")));
    reply_free(job);
    ck_assert(has_event(&d, id, "cancel_requested"));
    ck_assert(has_event(&d, id, "cancelled"));
    ck_assert(has_event(&d, id, "checkpoint"));
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM jobs WHERE id = ?1 AND lease_owner IS NULL", id), 1);
    /* Again: harmless. A finished job cannot be cancelled. */
    r = cancel_job(&d, id);
    ck_assert_int_eq(r->status, 200);
    reply_free(r);
    int64_t done = create_job(&d, SHORT_JOB);
    reply_free(wait_job(&d, done, "succeeded", 0));
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)done);
    call_expect_error(&d, "POST", path, d.admin, NULL, 409, "job_not_cancellable", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *jobs_suite(void) {
    Suite *s = suite_create("jobs");
    TCase *http = tcase_create("http");
    tcase_add_test(http, test_job_validation);
    tcase_set_timeout(http, 60);
    suite_add_tcase(s, http);
    TCase *jobs = tcase_create("jobs");
    tcase_add_test(jobs, test_job_runs_to_success);
    tcase_add_test(jobs, test_job_list_pagination);
    tcase_add_test(jobs, test_cancel_running_job);
    tcase_set_timeout(jobs, 120);
    suite_add_tcase(s, jobs);
    return s;
}
