/* What survives a crash. Workers get a 1 s lease (heartbeat every 250 ms),
 * so lease expiry and recovery are observable in a second or two. SIGKILL of
 * a worker requeues its job (and resumes it bit-identical from its last
 * checkpoint: sft, ppo, ppo-control; reward starts over and ends the same);
 * a lease that expired while no daemon ran is requeued at start-up; SIGKILL
 * of the daemon loses no acknowledged write (group-committed rankings
 * included) and leaves the orphan worker its job; SIGTERM gives attempts
 * back. Nothing sleeps to wait: every wait polls with a deadline.
 */
#include <curl/curl.h>
#include <jansson.h>
#include <pthread.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "db.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* SIGKILL of a worker: its job is requeued (attempt 2) and runs again; with
 * no attempts left it fails and says why. */
START_TEST(test_worker_killed_requeues_then_fails) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, "{\"type\":\"ppo-control\",\"max_attempts\":2,"
                                       "\"hyperparameters\":{\"total_steps\":5000000}}");
    pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    ck_assert_int_gt(worker, 0);
    kill(worker, SIGKILL);
    http_reply *job = wait_job(&d, id, "running", 2);
    reply_free(job);
    ck_assert(has_event(&d, id, "requeued"));
    worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    kill(worker, SIGKILL);
    job = wait_job(&d, id, "failed", 2);
    const char *error =
        json_string_value(json_object_get(json_object_get(job->json, "error"), "message"));
    ck_assert_msg(error && strstr(error, "signal 9"), "%s", job->body);
    reply_free(job);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A job left 'running' by a worker that is gone (its lease expired while
 * no daemon was up) is requeued at start-up and completes; one with no
 * attempts left fails. */
START_TEST(test_expired_lease_requeued_on_start) {
    test_daemon d;
    daemon_init(&d);
    sqlite3 *db;
    char err[256];
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(db_exec(db,
                             "INSERT INTO jobs (id, type, status, config, attempts, max_attempts, "
                             "lease_owner, lease_expires_ms, worker_pid, created_at) VALUES "
                             "(1, 'ppo-control', 'running', '{\"total_steps\":1024}', 1, 3, "
                             "'pid:1:gone', 1000, 999999, 0), "
                             "(2, 'ppo-control', 'running', '{\"total_steps\":1024}', 3, 3, "
                             "'pid:1:gone', 1000, 999999, 0)",
                             err, sizeof err),
                     SQLITE_OK);
    sqlite3_close(db);
    daemon_start(&d, NULL);
    http_reply *job = wait_job(&d, 1, "succeeded", 2);
    reply_free(job);
    ck_assert(has_event(&d, 1, "requeued"));
    job = wait_job(&d, 2, "failed", 3);
    const char *error =
        json_string_value(json_object_get(json_object_get(job->json, "error"), "message"));
    ck_assert_msg(error && strstr(error, "lease expired"), "%s", job->body);
    reply_free(job);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGKILL of the daemon: the worker keeps its lease and keeps training; a
 * restarted daemon neither starts a second worker nor loses acknowledged
 * writes, and can still cancel the job through the database. */
START_TEST(test_daemon_killed_and_restarted) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = create_job(&d, LONG_JOB);
    int64_t queued = create_job(&d, SHORT_JOB);
    reply_free(wait_job(&d, id, "running", 1));
    wait_metrics(&d, id);
    pid_t worker = (pid_t)db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id);
    kill(d.pid, SIGKILL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    daemon_start(&d, NULL);
    /* Acknowledged writes are all there; the orphan still owns the job. */
    http_reply *job = get_job(&d, queued);
    reply_free(job);
    job = get_job(&d, id);
    ck_assert_str_eq(job_status(job), "running");
    ck_assert_int_eq(job_int(job, "attempts"), 1);
    reply_free(job);
    ck_assert_int_eq(db_int(&d, "SELECT worker_pid FROM jobs WHERE id = ?1", id), worker);
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)id);
    reply_free(http(&d, "POST", path, d.admin, NULL, NULL));
    /* The orphan learns of the cancel from its heartbeat. */
    reply_free(wait_job(&d, id, "cancelled", 1));
    wait_pid_gone(worker);
    reply_free(wait_job(&d, queued, "succeeded", 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* SIGTERM: workers checkpoint and put their job back without using up an
 * attempt; the daemon exits 0; the next daemon runs the job again. */
START_TEST(test_graceful_shutdown_requeues) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    int64_t id = start_running_job(&d, LONG_JOB);
    daemon_stop(&d);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = ?1 AND status = 'queued' "
                            "AND attempts = 0 AND lease_owner IS NULL",
                            id),
                     1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", id), 1);
    daemon_start(&d, NULL);
    reply_free(wait_job(&d, id, "running", 1));
    reply_free(cancel_job(&d, id));
    reply_free(wait_job(&d, id, "cancelled", 1));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Asserts job ends with the same final checkpoint, byte for byte, as the
 * uninterrupted reference job, after resuming (attempts as given). */
static void expect_resumed_like(const test_daemon *d, int64_t job, int64_t attempts,
                                int64_t reference) {
    reply_free(wait_job(d, job, "succeeded", attempts));
    ck_assert(has_event(d, job, "resumed"));
    char want_sha[65], got_sha[65];
    http_reply *want = checkpoint_content(d, final_checkpoint(d, reference, want_sha));
    http_reply *got = checkpoint_content(d, final_checkpoint(d, job, got_sha));
    ck_assert_str_eq(got_sha, want_sha);
    ck_assert_int_eq(got->body_len, want->body_len);
    ck_assert(memcmp(got->body, want->body, got->body_len) == 0);
    reply_free(want);
    reply_free(got);
}

/* A requeued sft job resumes from its last checkpoint with training state
 * and ends bit-identical to an uninterrupted run (one OpenBLAS thread per
 * worker): after SIGKILL of its worker (periodic checkpoint; the attempt
 * is used up) and after SIGTERM (the stopped-run checkpoint of a shutdown;
 * the attempt is given back). */
START_TEST(test_sft_resume_after_interruption) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t train = sft_dataset(&d, "train", 64);
    char fields[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld", (long long)train);
    const int64_t reference = create_sft_job(&d, fields);
    reply_free(wait_job(&d, reference, "succeeded", 1));
    ck_assert(!has_event(&d, reference, "resumed"));

    const int64_t killed = create_sft_job(&d, fields);
    pid_t worker;
    sqlite3 *lock = hold_running_job(&d, killed, 1, &worker);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    release_job(lock);
    expect_resumed_like(&d, killed, 2, reference);

    const int64_t stopped = create_sft_job(&d, fields);
    lock = hold_running_job(&d, stopped, 1, &worker);
    ck_assert_int_eq(kill(worker, SIGTERM), 0);
    release_job(lock);
    expect_resumed_like(&d, stopped, 1, reference);
    ck_assert(has_event(&d, stopped, "queued"));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* reward has no resume in the engine: a killed attempt starts over and
 * still ends where an uninterrupted run does. ppo resumes from its last
 * periodic checkpoint, bit-identical. */
START_TEST(test_reward_and_ppo_survive_kill) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft = demo_sft_job(&d, TINY_SFT, NULL);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    char body[2048];

    const int64_t pref = demo_dataset(&d, "preference", 24, 2);
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)pref, (long long)sft);
    const int64_t rm = run_and_run_killed(&d, body, 0);

    const int64_t prompts = demo_dataset(&d, "prompts", 16, 5);
    snprintf(body, sizeof body,
             "{\"type\":\"ppo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":{\"total_updates\":6,"
             "\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,\"response_length\":8,"
             "\"sample_interval\":0,\"checkpoint_interval\":2}}",
             (long long)prompts, (long long)sft, (long long)rm);
    run_and_run_killed(&d, body, 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A ppo-control job whose worker is SIGKILLed after a periodic checkpoint
 * resumes from it (weights, Adam, RNGs, environments) on attempt 2 and
 * ends with the uninterrupted job's final checkpoint, byte for byte. */
START_TEST(test_ppo_control_survives_kill) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const char *body = "{\"type\":\"ppo-control\",\"hyperparameters\":{\"env\":\"Acrobot-v1\","
                       "\"total_steps\":10240,\"num_envs\":4,\"num_steps\":64,"
                       "\"eval_interval\":5,\"eval_episodes\":4,\"checkpoint_interval\":2}}";
    run_and_run_killed(&d, body, 1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

enum { N_WRITERS = 8, PER_WRITER = 40 };

typedef struct ranking_client {
    const test_daemon *d;
    const char *token;
    int64_t comparisons[PER_WRITER][3]; /* comparison id, better, worse candidate */
    int64_t acked[PER_WRITER];          /* ranking ids answered 200 */
    int n_acked;
    atomic_int *total_acked;
} ranking_client;

static size_t keep_body(char *data, size_t size, size_t n, void *arg) {
    char *buf = arg;
    size_t used = strlen(buf), len = size * n;
    size_t take = len < 4095 - used ? len : 4095 - used;
    memcpy(buf + used, data, take);
    buf[used + take] = '\0';
    return len;
}

/* Posts its rankings on one keep-alive connection until done or the daemon
 * is gone; records what was acknowledged. No assertions here (a thread). */
static void *post_rankings(void *arg) {
    ranking_client *c = arg;
    CURL *curl = curl_easy_init();
    char auth[192];
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", c->token);
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    for (int i = 0; i < PER_WRITER; i++) {
        char url[128], body[128], reply[4096] = "";
        snprintf(url, sizeof url, "http://127.0.0.1:%d/v1/comparisons/%lld/rankings", c->d->port,
                 (long long)c->comparisons[i][0]);
        snprintf(body, sizeof body, "{\"order\":[[%lld],[%lld]]}", (long long)c->comparisons[i][1],
                 (long long)c->comparisons[i][2]);
        curl_easy_setopt(curl, CURLOPT_URL, url);
        curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, keep_body);
        curl_easy_setopt(curl, CURLOPT_WRITEDATA, reply);
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)DEADLINE_MS);
        if (curl_easy_perform(curl) != CURLE_OK)
            break; /* killed */
        long status = 0;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        json_t *j = json_loads(reply, 0, NULL);
        if (status == 200)
            c->acked[c->n_acked++] = json_integer_value(json_object_get(j, "id"));
        json_decref(j);
        if (status != 200)
            break;
        atomic_fetch_add(c->total_acked, 1);
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    return NULL;
}

START_TEST(test_group_commit_survives_kill9) {
    test_daemon d;
    char cpath[96];
    const int64_t project = daemon_with_project(&d, cpath);
    http_reply *r;
    static ranking_client clients[N_WRITERS];
    char tokens[N_WRITERS][128];
    atomic_int total = 0;
    for (int w = 0; w < N_WRITERS; w++) {
        char name[32];
        snprintf(name, sizeof name, "annotator%d", w);
        make_token(&d, name, "annotator", tokens[w]);
        clients[w] = (ranking_client){.d = &d, .token = tokens[w], .total_acked = &total};
        for (int i = 0; i < PER_WRITER; i++) {
            r = expect_ok(http(&d, "POST", cpath, d.admin,
                               "{\"prompt\":\"q\",\"candidates\":[{\"text\":\"a\"},{\"text\":"
                               "\"b\"}]}",
                               NULL));
            json_t *cands = json_object_get(r->json, "candidates");
            clients[w].comparisons[i][0] = reply_int(r, "id");
            /* better = the second candidate, so the order is not positional */
            clients[w].comparisons[i][1] =
                json_integer_value(json_object_get(json_array_get(cands, 1), "id"));
            clients[w].comparisons[i][2] =
                json_integer_value(json_object_get(json_array_get(cands, 0), "id"));
            reply_free(r);
        }
    }
    grant_project_all(&d, project);
    pthread_t threads[N_WRITERS];
    for (int w = 0; w < N_WRITERS; w++)
        ck_assert_int_eq(pthread_create(&threads[w], NULL, post_rankings, &clients[w]), 0);
    /* Kill -9 in the middle of the stream of writes. */
    const int64_t deadline = now_ms() + DEADLINE_MS;
    while (atomic_load(&total) < N_WRITERS * PER_WRITER / 3) {
        ck_assert_msg(now_ms() < deadline, "only %d rankings acknowledged", atomic_load(&total));
        pause_ms(1);
    }
    kill(d.pid, SIGKILL);
    for (int w = 0; w < N_WRITERS; w++)
        pthread_join(threads[w], NULL);
    ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
    /* Every acknowledged ranking is stored, with its pair (better, worse). */
    int acked = 0;
    for (int w = 0; w < N_WRITERS; w++)
        for (int i = 0; i < clients[w].n_acked; i++, acked++) {
            int64_t id = clients[w].acked[i];
            ck_assert_int_eq(db_int(&d,
                                    "SELECT count(*) FROM rankings k JOIN comparisons c ON c.id = "
                                    "k.comparison_id WHERE k.id = ?1 AND k.skipped = 0",
                                    id),
                             1);
            ck_assert_int_eq(db_int(&d,
                                    "SELECT chosen_candidate_id FROM preference_pairs WHERE "
                                    "ranking_id = ?1",
                                    id),
                             clients[w].comparisons[i][1]);
        }
    ck_assert_int_ge(acked, N_WRITERS * PER_WRITER / 3);
    ck_assert_int_ge(db_int(&d, "SELECT count(*) FROM rankings", 0), acked);
    /* The restarted daemon serves them. */
    daemon_start(&d, NULL);
    char path[96];
    snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings",
             (long long)clients[0].comparisons[0][0]);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *durability_suite(void) {
    Suite *s = suite_create("durability");
    TCase *tc = tcase_create("durability");
    tcase_add_test(tc, test_worker_killed_requeues_then_fails);
    tcase_add_test(tc, test_expired_lease_requeued_on_start);
    tcase_add_test(tc, test_daemon_killed_and_restarted);
    tcase_add_test(tc, test_graceful_shutdown_requeues);
    tcase_add_test(tc, test_sft_resume_after_interruption);
    tcase_add_test(tc, test_reward_and_ppo_survive_kill);
    tcase_add_test(tc, test_ppo_control_survives_kill);
    tcase_add_test(tc, test_group_commit_survives_kill9);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
