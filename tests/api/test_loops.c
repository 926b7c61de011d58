/* /v1/loops — the online RLHF loop through a real rlhfd: a two-round loop
 * on the demo task, ranked by the simulated annotator (rlhfctl annotate
 * --simulate demo, through the annotation API), with the daemon SIGKILLed
 * and restarted mid-loop and a worker SIGKILLed mid-job; the body checks;
 * cancel. Sizes are tiny: each job trains a few steps. */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "loops.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* GET /v1/loops/{id} (caller frees). */
static http_reply *get_loop(const test_daemon *d, int64_t id) {
    char path[64];
    snprintf(path, sizeof path, "/v1/loops/%lld", (long long)id);
    return expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
}

static const char *loop_str(http_reply *r, const char *key) {
    const char *s = json_string_value(json_object_get(r->json, key));
    return s ? s : "";
}

/* Polls until the loop is in phase. */
static void wait_phase(const test_daemon *d, int64_t id, const char *phase) {
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        http_reply *r = get_loop(d, id);
        const bool there = strcmp(loop_str(r, "phase"), phase) == 0;
        reply_free(r);
        if (there)
            return;
        ck_assert_msg(now_ms() < deadline, "loop %lld never reached %s", (long long)id, phase);
        pause_ms(20);
    }
}

/* Holds the write lock once job runs (its worker cannot write, so cannot
 * end: *worker is its pid), or NULL when the job ended before. Release
 * the lock with release_job. */
static sqlite3 *try_hold_running_job(const test_daemon *d, int64_t job, pid_t *worker) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open(d->db, &db), SQLITE_OK);
    sqlite3_busy_timeout(db, 60000);
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        ck_assert_int_eq(sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
        sqlite3_stmt *st;
        ck_assert_int_eq(sqlite3_prepare_v2(db, "SELECT status, worker_pid FROM jobs WHERE id = ?1",
                                            -1, &st, NULL),
                         SQLITE_OK);
        sqlite3_bind_int64(st, 1, job);
        ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
        const char *status = (const char *)sqlite3_column_text(st, 0);
        const bool running = strcmp(status, "running") == 0;
        const bool waiting =
            strcmp(status, "queued") == 0 || strcmp(status, "validating_files") == 0;
        *worker = (pid_t)sqlite3_column_int64(st, 1);
        sqlite3_finalize(st);
        if (running)
            return db;
        ck_assert_int_eq(sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
        if (!waiting) {
            sqlite3_close(db);
            return NULL;
        }
        ck_assert_msg(now_ms() < deadline, "job %lld never ran", (long long)job);
    }
}

/* Ranks what the project has for the annotator token: rlhfctl annotate
 * --simulate demo, asserting it exits 0. */
static void annotate(const test_daemon *d, const char *token, int64_t project) {
    char ctl[256], url[64], pid[32], out[512];
    bin_path("rlhfctl", ctl, sizeof ctl);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d->port);
    snprintf(pid, sizeof pid, "%lld", (long long)project);
    char *const argv[] = {ctl, "--url",      url,    "--token", (char *)token, "annotate",
                          pid, "--simulate", "demo", "--noise", "0.5",         NULL};
    ck_assert_int_eq(run_output(argv, out, sizeof out, true), 0);
}

/* The loop's SFT model, project (k 2, overlap 1) and prompts dataset. */
typedef struct loop_fixture {
    int64_t sft, project, prompts;
    char annotator[128];
} loop_fixture;

static void fixture(test_daemon *d, loop_fixture *f) {
    const int64_t sft = demo_sft_job(d, TINY_SFT, NULL);
    reply_free(wait_job(d, sft, "succeeded", 1));
    f->sft = sft;
    f->project = create(d, "/v1/projects", d->admin, "{\"name\":\"loop\",\"k\":2,\"overlap\":1}");
    f->prompts = demo_dataset(d, "prompts", 8, 3);
    grant_project(d, f->project, make_token(d, "sim", "annotator", f->annotator));
}

/* Long enough for the test to catch its worker mid-run (checkpoints at
 * updates 5, 10, 15). */
#define LONGER_PPO                                                                                 \
    "{\"total_updates\":20,\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,"               \
    "\"response_length\":8,\"sample_interval\":0,\"checkpoint_interval\":5}"

/* A loop of tiny sizes with the members of extra (a JSON fragment ending in
 * a comma: rounds, optimizer, ...; selection uncertainty unless it says)
 * and the policy job's hyperparameters. */
static int64_t create_loop_with(const test_daemon *d, const loop_fixture *f, const char *extra,
                                const char *policy_hp) {
    char body[2048];
    snprintf(body, sizeof body,
             "{%s\"name\":\"online\",\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
             "\"prompts_per_round\":2,\"samples_per_prompt\":3,"
             "\"deadline_seconds\":600,\"max_tokens\":12,"
             "\"eval_prompts\":4,\"eval_samples\":2,\"gold\":true,%s"
             "\"reward_hyperparameters\":" TINY_REWARD ",\"policy_hyperparameters\":%s}",
             extra, (long long)f->sft, (long long)f->project, (long long)f->prompts,
             strstr(extra, "\"selection\"") ? "" : "\"selection\":\"uncertainty\",", policy_hp);
    return create(d, "/v1/loops", d->admin, body);
}

/* A 2-round loop of tiny sizes, with the policy job's hyperparameters. */
static int64_t create_loop(const test_daemon *d, const loop_fixture *f, const char *policy_hp) {
    return create_loop_with(d, f, "\"rounds\":2,\"rankings_per_round\":4,", policy_hp);
}

/* The whole loop: annotating whenever it waits for rankings; the daemon is
 * SIGKILLed (and restarted) once in round 1's reward (or, if a loaded
 * machine steps over it, policy) phase, once in round 2's sampling phase
 * and once in round 2's annotating phase; the first loop-sample worker
 * caught running (a round's samples or a policy's evaluation) and round
 * 2's policy worker are SIGKILLed. */
START_TEST(test_loop_two_rounds_survives_kill9) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t id = create_loop(&d, &f, LONGER_PPO);
    bool killed_reward = false, killed_annotating = false, killed_worker = false;
    bool killed_sampling = false;
    int64_t killed_sampler = 0; /* the loop-sample job whose worker was killed */
    const int64_t deadline = now_ms() + 5 * DEADLINE_MS;
    for (;;) {
        http_reply *r = get_loop(&d, id);
        const char *status = loop_str(r, "status"), *phase = loop_str(r, "phase");
        const int64_t round = reply_int(r, "round");
        ck_assert_msg(strcmp(status, "running") == 0 || strcmp(status, "succeeded") == 0, "%s",
                      r->body);
        const bool done = strcmp(status, "succeeded") == 0;
        const int64_t sampler =
            db_int(&d, "SELECT coalesce(sample_job_id, 0) FROM loops WHERE id = ?1", id);
        pid_t worker;
        sqlite3 *hold;
        if (!killed_sampler && sampler > 0 &&
            (hold = try_hold_running_job(&d, sampler, &worker)) != NULL) {
            /* mid-run: its samples are not stored yet, and cannot be */
            kill(worker, SIGKILL);
            release_job(hold);
            killed_sampler = sampler;
        } else if (!killed_sampling && round == 2 && strcmp(phase, "sampling") == 0) {
            /* the round's loop-sample job may be inserted, running or done:
             * the restarted daemon neither inserts another nor posts twice */
            kill(d.pid, SIGKILL);
            ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
            daemon_start(&d, "--write-rate", "0", NULL);
            killed_sampling = true;
        } else if (!killed_annotating && round == 2 && strcmp(phase, "annotating") == 0) {
            /* round 2's comparisons are posted: nothing is re-posted after a restart */
            kill(d.pid, SIGKILL);
            ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
            daemon_start(&d, "--write-rate", "0", NULL);
            killed_annotating = true;
        } else if (strcmp(phase, "annotating") == 0) {
            annotate(&d, f.annotator, f.project);
        } else if (!killed_reward && round == 1 &&
                   (strcmp(phase, "reward") == 0 || strcmp(phase, "policy") == 0)) {
            /* the reward phase lasts from the reward job's insert to the
             * scheduler tick after it ends; a loaded machine can step over
             * it, and then round 1's (longer) policy phase is the moment */
            kill(d.pid, SIGKILL);
            ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
            daemon_start(&d, "--write-rate", "0", NULL);
            killed_reward = true;
        } else if (!killed_worker && round == 2 && strcmp(phase, "policy") == 0) {
            const int64_t job = db_int(
                &d, "SELECT policy_job_id FROM loop_rounds WHERE loop_id = ?1 AND round = 2", id);
            /* the worker cannot finish while the lock is held: killed mid-run */
            hold = hold_running_job(&d, job, 1, &worker);
            kill(worker, SIGKILL);
            release_job(hold);
            killed_worker = true;
        }
        reply_free(r);
        if (done)
            break;
        ck_assert_msg(now_ms() < deadline, "the loop did not finish");
        pause_ms(20);
    }
    ck_assert_msg(killed_reward, "the daemon was never killed in round 1's reward or policy phase");
    ck_assert_msg(killed_annotating, "the daemon was never killed in round 2's annotating phase");
    ck_assert_msg(killed_worker, "round 2's policy worker was never killed");
    ck_assert_msg(killed_sampler > 0, "no loop-sample worker was ever caught running");
    ck_assert_msg(killed_sampling, "the daemon was never killed in round 2's sampling phase");
    /* the killed sampler ran again as attempt 2 of the same job and stored
     * its samples once */
    ck_assert_int_eq(db_int(&d, "SELECT attempts FROM jobs WHERE id = ?1", killed_sampler), 2);
    /* the killed policy job ran again as attempt 2 of the same job */
    ck_assert_int_eq(db_int(&d,
                            "SELECT attempts FROM jobs WHERE id = (SELECT policy_job_id FROM "
                            "loop_rounds WHERE loop_id = ?1 AND round = 2)",
                            id),
                     2);

    http_reply *r = get_loop(&d, id);
    ck_assert_str_eq(loop_str(r, "phase"), "done");
    ck_assert_str_eq(loop_str(r, "stop_reason"), "rounds");
    ck_assert_int_eq(reply_int(r, "round"), 2);
    json_t *rounds = json_object_get(r->json, "rounds");
    ck_assert_int_eq(json_array_size(rounds), 2);
    /* one reward and one ppo job per round, never two: each was inserted
     * with its phase move */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'reward'", 0), 2);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'ppo'", 0), 2);
    /* and one loop-sample job per round for its samples, one per round for
     * the new policy's gold score: 2 prompts × 3 and 4 evaluation prompts × 2 */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'loop-sample'", 0), 4);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(DISTINCT sample_job_id) + count(DISTINCT eval_job_id) "
                            "FROM loop_rounds WHERE loop_id = ?1",
                            id),
                     4);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_rounds lr WHERE loop_id = ?1 AND (SELECT "
                            "count(*) FROM job_samples s WHERE s.job_id = lr.sample_job_id) = 6 "
                            "AND (SELECT count(*) FROM job_samples s WHERE s.job_id = "
                            "lr.eval_job_id) = 8",
                            id),
                     2);
    /* every posted candidate is one of its round's samples */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM candidates ca JOIN comparisons c ON c.id = "
                            "ca.comparison_id JOIN loop_rounds lr ON c.id BETWEEN "
                            "lr.first_comparison_id AND lr.last_comparison_id WHERE lr.loop_id = "
                            "?1 AND NOT EXISTS (SELECT 1 FROM job_samples s WHERE s.job_id = "
                            "lr.sample_job_id AND s.response = ca.text AND s.prompt = c.prompt)",
                            id),
                     0);
    ck_assert_int_eq(db_int(&d, "SELECT sample_job_id IS NULL FROM loops WHERE id = ?1", id), 1);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE status <> 'succeeded'", 0), 0);
    /* 4 comparisons a round (pairs of 3 samples of 2 prompts), all ranked */
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM comparisons WHERE project_id = ?1", f.project), 8);
    int64_t ranked = 0;
    int64_t prev_policy = 0;
    for (size_t i = 0; i < 2; i++) {
        json_t *o = json_array_get(rounds, i);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "round")), (json_int_t)i + 1);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "comparisons")), 4);
        ck_assert_int_eq(json_integer_value(json_object_get(o, "rankings")), 4);
        ranked += json_integer_value(json_object_get(o, "rankings"));
        ck_assert(json_is_real(json_object_get(o, "proxy_score")));
        ck_assert(json_is_real(json_object_get(o, "kl")));
        ck_assert(json_is_real(json_object_get(o, "gold_score")));
        ck_assert(json_is_real(json_object_get(o, "sample_gold_score")));
        const int64_t rm_job = json_integer_value(json_object_get(o, "reward_job"));
        const int64_t ppo_job = json_integer_value(json_object_get(o, "policy_job"));
        /* the reward job trains on every ranking so far, warm-started from
         * the previous reward model; the policy from the last policy */
        ck_assert_int_eq(db_int(&d,
                                "SELECT j.training_ranking_cutoff = (SELECT max(rk.id) FROM "
                                "rankings rk WHERE rk.comparison_id <= (SELECT "
                                "last_comparison_id FROM loop_rounds WHERE reward_job_id = "
                                "j.id)) FROM jobs j WHERE j.id = ?1",
                                rm_job),
                         1);
        const int64_t policy = json_integer_value(json_object_get(o, "policy_checkpoint"));
        ck_assert_int_eq(policy, i == 0 ? json_integer_value(json_object_get(r->json, "model"))
                                        : prev_policy);
        ck_assert_int_eq(db_int(&d, "SELECT parent_checkpoint_id FROM jobs WHERE id = ?1", ppo_job),
                         policy);
        /* KL-penalised to the original SFT model (round 1 starts from it) */
        http_reply *pj = get_job(&d, ppo_job);
        if (i == 0)
            ck_assert(json_is_null(json_object_get(pj->json, "ref_model")));
        else
            ck_assert_int_eq(job_int(pj, "ref_model"),
                             json_integer_value(json_object_get(r->json, "model")));
        reply_free(pj);
        prev_policy = json_integer_value(json_object_get(o, "new_policy_checkpoint"));
        ck_assert_int_eq(
            db_int(&d, "SELECT id FROM checkpoints WHERE job_id = ?1 AND kind = 'final'", ppo_job),
            prev_policy);
        if (i == 0) { /* no reward model before round 1: random, nothing to predict */
            ck_assert_str_eq(json_string_value(json_object_get(o, "selection")), "random");
            ck_assert(json_is_null(json_object_get(o, "rm_accuracy")));
            ck_assert_int_eq(db_int(&d,
                                    "SELECT coalesce(json_extract(config, "
                                    "'$.prior_first_comparison'), 0) FROM jobs WHERE id = ?1",
                                    rm_job),
                             0);
            ck_assert_int_eq(
                db_int(&d, "SELECT parent_checkpoint_id FROM jobs WHERE id = ?1", rm_job),
                json_integer_value(json_object_get(r->json, "model")));
        } else {
            ck_assert_str_eq(json_string_value(json_object_get(o, "selection")), "uncertainty");
            const double acc = json_real_value(json_object_get(o, "rm_accuracy"));
            /* scored in the reward job, by its initial model, before it
             * trained: one pair per 2-way ranking that does not tie */
            ck_assert_int_eq(db_int(&d,
                                    "SELECT json_extract(config, '$.prior_first_comparison') = "
                                    "lr.first_comparison_id AND json_extract(config, "
                                    "'$.prior_last_comparison') = lr.last_comparison_id FROM "
                                    "jobs j JOIN loop_rounds lr ON lr.reward_job_id = j.id "
                                    "WHERE j.id = ?1",
                                    rm_job),
                             1);
            ck_assert_int_eq(json_integer_value(json_object_get(o, "rm_pairs")),
                             db_int(&d,
                                    "SELECT count(*) FROM rankings rk JOIN loop_rounds lr ON "
                                    "rk.comparison_id BETWEEN lr.first_comparison_id AND "
                                    "lr.last_comparison_id WHERE lr.reward_job_id = ?1 AND "
                                    "rk.skipped = 0 AND (SELECT count(DISTINCT rank) FROM "
                                    "ranking_entries e WHERE e.ranking_id = rk.id) = 2",
                                    rm_job));
            ck_assert(json_integer_value(json_object_get(o, "rm_pairs")) > 0);
            ck_assert_double_eq_tol(
                acc * (double)json_integer_value(json_object_get(o, "rm_pairs")),
                (double)db_int(&d,
                               "SELECT value FROM metrics WHERE job_id = ?1 AND name = "
                               "'prior_correct' AND step = 0",
                               rm_job),
                1e-9);
            ck_assert(acc >= 0.0 && acc <= 1.0);
            ck_assert_int_eq(
                db_int(&d, "SELECT parent_checkpoint_id FROM jobs WHERE id = ?1", rm_job),
                json_integer_value(
                    json_object_get(json_array_get(rounds, 0), "reward_checkpoint")));
        }
    }
    /* no ranking lost: every ranking of the project is a round's */
    ck_assert_int_eq(
        db_int(&d,
               "SELECT count(*) FROM rankings rk JOIN comparisons c ON c.id = rk.comparison_id "
               "WHERE c.project_id = ?1 AND rk.skipped = 0",
               f.project),
        ranked);
    ck_assert_int_eq(reply_int(r, "policy_checkpoint"), prev_policy);
    reply_free(r);

    /* the rounds list, newest first, paged */
    char path[96];
    snprintf(path, sizeof path, "/v1/loops/%lld/rounds?limit=1", (long long)id);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 1);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    ck_assert_int_eq(json_integer_value(json_object_get(
                         json_array_get(json_object_get(r->json, "data"), 0), "round")),
                     2);
    reply_free(r);
    /* an ended loop cannot be cancelled */
    snprintf(path, sizeof path, "/v1/loops/%lld/cancel", (long long)id);
    call_expect_error(&d, "POST", path, d.admin, NULL, 409, "loop_not_cancellable", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The other optimisers: dpo trains on the project's rankings (no reward
 * model, no prompts), grpo on the prompts against the new reward model with
 * the SFT model as its reference; one round each, on one project. The dpo
 * loop wants 100 rankings of 2 prompts × 3 samples: its round posts the 6
 * pairs there are and ends when those are ranked, not at the deadline. */
START_TEST(test_loop_dpo_and_grpo) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t dpo = create_loop_with(
        &d, &f, "\"rounds\":1,\"optimizer\":\"dpo\",\"rankings_per_round\":100,",
        "{\"batch_size\":2,\"max_steps\":2,\"max_prompt_length\":24,\"max_response_length\":32}");
    const int64_t grpo =
        create_loop_with(&d, &f, "\"rounds\":1,\"optimizer\":\"grpo\",\"rankings_per_round\":4,",
                         "{\"total_steps\":2,\"prompts_per_step\":2,\"num_generations\":2,\"max_"
                         "completion_length\":8}");
    const int64_t ids[2] = {dpo, grpo};
    const int64_t deadline = now_ms() + 4 * DEADLINE_MS;
    for (int done = 0; done < 2;) {
        done = 0;
        for (int i = 0; i < 2; i++) {
            http_reply *r = get_loop(&d, ids[i]);
            ck_assert_msg(strcmp(loop_str(r, "status"), "failed") != 0, "%s", r->body);
            done += strcmp(loop_str(r, "status"), "succeeded") == 0;
            const bool waits = strcmp(loop_str(r, "phase"), "annotating") == 0;
            reply_free(r);
            if (waits)
                annotate(&d, f.annotator, f.project);
        }
        ck_assert_msg(now_ms() < deadline, "the loops did not finish");
        pause_ms(20);
    }
    const int64_t dpo_job =
        db_int(&d, "SELECT policy_job_id FROM loop_rounds WHERE loop_id = ?1", dpo);
    const int64_t grpo_job =
        db_int(&d, "SELECT policy_job_id FROM loop_rounds WHERE loop_id = ?1", grpo);
    /* the same policy, seed, round and sizes: the same draw, from two jobs */
    const int64_t dpo_sampler =
        db_int(&d, "SELECT sample_job_id FROM loop_rounds WHERE loop_id = ?1", dpo);
    const int64_t grpo_sampler =
        db_int(&d, "SELECT sample_job_id FROM loop_rounds WHERE loop_id = ?1", grpo);
    ck_assert_int_ne(dpo_sampler, grpo_sampler);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_samples WHERE job_id = ?1", dpo_sampler),
                     6);
    char same[256];
    snprintf(same, sizeof same,
             "SELECT count(*) FROM job_samples a JOIN job_samples b ON b.job_id = %lld AND b.idx = "
             "a.idx AND b.response = a.response AND b.prompt = a.prompt WHERE a.job_id = ?1",
             (long long)grpo_sampler);
    ck_assert_int_eq(db_int(&d, same, dpo_sampler), 6);
    ck_assert_int_eq(db_int(&d, "SELECT comparisons FROM loop_rounds WHERE loop_id = ?1", dpo), 6);
    ck_assert_int_eq(db_int(&d, "SELECT rankings FROM loop_rounds WHERE loop_id = ?1", dpo), 6);
    http_reply *j = get_job(&d, dpo_job);
    ck_assert_str_eq(json_string_value(json_object_get(j->json, "type")), "dpo");
    ck_assert_int_eq(job_int(j, "training_project"), f.project);
    ck_assert(json_is_null(json_object_get(j->json, "reward_model")));
    reply_free(j);
    j = get_job(&d, grpo_job);
    ck_assert_str_eq(json_string_value(json_object_get(j->json, "type")), "grpo");
    ck_assert_int_eq(job_int(j, "training_file"), f.prompts);
    ck_assert_int_eq(
        job_int(j, "reward_model"),
        db_int(&d, "SELECT reward_checkpoint_id FROM loop_rounds WHERE loop_id = ?1", grpo));
    reply_free(j);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Every field is checked before anything is stored, naming the field. */
START_TEST(test_loop_body_checks) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t sft_data = demo_dataset(&d, "sft", 4, 1);
    struct {
        const char *fmt; /* %lld: sft job, project, prompts in order, where used */
        const char *code, *param;
    } cases[] = {
        {"{\"project\":%lld,\"prompts\":%lld}", "missing_required_parameter", "model"},
        {"{\"model\":\"job:%lld\",\"prompts\":%lld}", "missing_required_parameter", "project"},
        {"{\"model\":\"job:%lld\",\"project\":%lld}", "missing_required_parameter", "prompts"},
        {"{\"model\":\"job:%lld\",\"project\":999,\"prompts\":%lld}", "project_not_found",
         "project"},
        {"{\"model\":99999,\"project\":%lld,\"prompts\":%lld}", "checkpoint_not_found", "model"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"selection\":\"best\"}",
         "invalid_value", "selection"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"optimizer\":\"sft\"}",
         "invalid_value", "optimizer"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"rounds\":0}", "invalid_value",
         "rounds"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"samples_per_prompt\":1}",
         "invalid_value", "samples_per_prompt"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"temperature\":0}",
         "invalid_value", "temperature"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"eval_samples\":17}",
         "invalid_value", "eval_samples"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"ensemble\":4}",
         "invalid_value", "ensemble"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"reward_model\":\"job:1\"}",
         "invalid_model", "reward_model"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"policy_hyperparameters\":{\"total_updates\":-1}}",
         "invalid_hyperparameter", "policy_hyperparameters"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"colour\":1}",
         "unknown_parameter", "colour"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"plateau\":3}", "invalid_type",
         "plateau"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,\"plateau\":{}}",
         "missing_required_parameter", "plateau.metric"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"loss\"}}",
         "invalid_value", "plateau.metric"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"gold\"}}",
         "invalid_value", "plateau.metric"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"proxy\",\"patience\":0}}",
         "invalid_value", "plateau.patience"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"proxy\",\"patience\":1.5}}",
         "invalid_type", "plateau.patience"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"proxy\",\"min_delta\":-0.1}}",
         "invalid_value", "plateau.min_delta"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"proxy\",\"min_delta\":\"0\"}}",
         "invalid_type", "plateau.min_delta"},
        {"{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld,"
         "\"plateau\":{\"metric\":\"proxy\",\"rounds\":2}}",
         "unknown_parameter", "plateau.rounds"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char body[1024];
        const bool no_model = strncmp(cases[i].fmt, "{\"project", 6) == 0 ||
                              strstr(cases[i].fmt, "\"model\":99999") != NULL;
        const bool no_project = strstr(cases[i].fmt, "\"project\":%lld") == NULL;
        if (no_model)
            snprintf(body, sizeof body, cases[i].fmt, (long long)f.project, (long long)f.prompts);
        else if (no_project)
            snprintf(body, sizeof body, cases[i].fmt, (long long)f.sft, (long long)f.prompts);
        else
            snprintf(body, sizeof body, cases[i].fmt, (long long)f.sft, (long long)f.project,
                     (long long)f.prompts);
        call_expect_error(&d, "POST", "/v1/loops", d.admin, body, 400, cases[i].code,
                          cases[i].param);
    }
    char body[512];
    snprintf(body, sizeof body, "{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld}",
             (long long)f.sft, (long long)f.project, (long long)sft_data);
    call_expect_error(&d, "POST", "/v1/loops", d.admin, body, 400, "invalid_dataset", "prompts");
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM loops", 0), 0);
    /* viewers read, annotators do not, only admins create */
    char viewer[128], annotator[128];
    make_token(&d, "v", "viewer", viewer);
    make_token(&d, "a", "annotator", annotator);
    reply_free(expect_ok(http(&d, "GET", "/v1/loops", viewer, NULL, NULL)));
    http_reply *r = http(&d, "GET", "/v1/loops", annotator, NULL, NULL);
    ck_assert_int_eq(r->status, 403);
    reply_free(r);
    snprintf(body, sizeof body, "{\"model\":\"job:%lld\",\"project\":%lld,\"prompts\":%lld}",
             (long long)f.sft, (long long)f.project, (long long)f.prompts);
    r = http(&d, "POST", "/v1/loops", viewer, body, NULL);
    ck_assert_int_eq(r->status, 403);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/loops/77", d.admin, NULL, 404, "loop_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A cancelled loop stops where it is: no more comparisons, no job. */
START_TEST(test_loop_cancel) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t id = create_loop(&d, &f, TINY_PPO);
    wait_phase(&d, id, "annotating"); /* its first comparisons are posted */
    char path[96];
    snprintf(path, sizeof path, "/v1/loops/%lld/cancel", (long long)id);
    http_reply *r = expect_ok(http(&d, "POST", path, d.admin, NULL, NULL));
    ck_assert_str_eq(loop_str(r, "status"), "cancelled");
    reply_free(r);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL))); /* twice: the same */
    annotate(&d, f.annotator, f.project); /* the rankings come, the loop stays put */
    /* a second loop reaching annotating proves ticks ran since */
    wait_phase(&d, create_loop(&d, &f, TINY_PPO), "annotating");
    r = get_loop(&d, id);
    ck_assert_str_eq(loop_str(r, "status"), "cancelled");
    ck_assert_str_eq(loop_str(r, "phase"), "annotating");
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'reward'", 0), 0);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The plateau rule on hand-made round metrics: a round improves when it
 * beats the best before it by more than min_delta; patience rounds in a
 * row without one stop the loop; a round without the metric (NAN) is no
 * improvement. */
START_TEST(test_loop_plateau_rule) {
    const double rising[] = {0.1, 0.2, 0.3, 0.4};
    ck_assert(!loops_plateau(rising, 4, 1, 0.0));
    ck_assert(!loops_plateau(rising, 4, 1, 0.05));
    ck_assert(loops_plateau(rising, 4, 1, 0.1)); /* +0.1 is not more than 0.1 */
    /* best 0.5 at round 2; rounds 3 and 4 do not beat it by 0.01 */
    const double flat[] = {0.3, 0.5, 0.505, 0.49};
    ck_assert(!loops_plateau(flat, 2, 1, 0.01));
    ck_assert(loops_plateau(flat, 3, 1, 0.01));
    ck_assert(!loops_plateau(flat, 3, 2, 0.01));
    ck_assert(loops_plateau(flat, 4, 2, 0.01));
    ck_assert(!loops_plateau(flat, 4, 3, 0.01));
    ck_assert(!loops_plateau(flat, 4, 2, 0.0)); /* 0.505 > 0.5: round 3 improved */
    /* a drop then a new best resets the count */
    const double recover[] = {0.5, 0.4, 0.6, 0.55};
    ck_assert(!loops_plateau(recover, 3, 2, 0.0));
    ck_assert(!loops_plateau(recover, 4, 2, 0.0));
    ck_assert(loops_plateau(recover, 4, 1, 0.0));
    /* missing metrics count as no improvement, from the first round on */
    const double missing[] = {NAN, NAN, 0.2, NAN};
    ck_assert(loops_plateau(missing, 1, 1, 0.0));
    ck_assert(loops_plateau(missing, 2, 2, 0.0));
    ck_assert(!loops_plateau(missing, 3, 1, 0.0));
    ck_assert(loops_plateau(missing, 4, 1, 0.0));
    ck_assert(!loops_plateau(missing, 0, 1, 0.0)); /* no round yet */
}
END_TEST

/* A loop that asks for 5 rounds but stops on a proxy plateau: no round can
 * beat round 1's proxy score by 1e9, so patience 1 ends it after round 2,
 * succeeded, with the reason stored and shown. */
START_TEST(test_loop_stops_on_plateau) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t id =
        create_loop_with(&d, &f,
                         "\"rounds\":5,\"rankings_per_round\":2,"
                         "\"plateau\":{\"metric\":\"proxy\",\"patience\":1,\"min_delta\":1e9},",
                         TINY_PPO);
    http_reply *r = get_loop(&d, id);
    json_t *rule = json_object_get(json_object_get(r->json, "config"), "plateau");
    ck_assert_str_eq(json_string_value(json_object_get(rule, "metric")), "proxy");
    ck_assert_int_eq(json_integer_value(json_object_get(rule, "patience")), 1);
    ck_assert(json_real_value(json_object_get(rule, "min_delta")) == 1e9);
    ck_assert(json_is_null(json_object_get(r->json, "stop_reason")));
    reply_free(r);
    const int64_t deadline = now_ms() + 4 * DEADLINE_MS;
    for (;;) {
        r = get_loop(&d, id);
        ck_assert_msg(strcmp(loop_str(r, "status"), "failed") != 0, "%s", r->body);
        const bool done = strcmp(loop_str(r, "status"), "running") != 0;
        const bool waits = strcmp(loop_str(r, "phase"), "annotating") == 0;
        if (!done)
            reply_free(r);
        if (done)
            break;
        if (waits)
            annotate(&d, f.annotator, f.project);
        ck_assert_msg(now_ms() < deadline, "the loop did not finish");
        pause_ms(20);
    }
    ck_assert_str_eq(loop_str(r, "status"), "succeeded");
    ck_assert_str_eq(loop_str(r, "phase"), "done");
    ck_assert_str_eq(loop_str(r, "stop_reason"), "plateau");
    ck_assert_int_eq(reply_int(r, "round"), 2);
    json_t *rounds = json_object_get(r->json, "rounds");
    ck_assert_int_eq(json_array_size(rounds), 2);
    for (size_t i = 0; i < 2; i++)
        ck_assert(json_is_real(json_object_get(json_array_get(rounds, i), "proxy_score")));
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'ppo'", 0), 2);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Drives loops ids[0..n) (projects[i], annotated with token[i]) to their
 * end; asserts each succeeded. */
static void run_loops(const test_daemon *d, const int64_t *ids, const int64_t *projects,
                      char (*tokens)[128], int n) {
    const int64_t deadline = now_ms() + 4 * DEADLINE_MS;
    for (int left = n; left > 0;) {
        left = 0;
        for (int i = 0; i < n; i++) {
            http_reply *r = get_loop(d, ids[i]);
            ck_assert_msg(strcmp(loop_str(r, "status"), "failed") != 0, "%s", r->body);
            const bool running = strcmp(loop_str(r, "status"), "running") == 0;
            const bool waits = strcmp(loop_str(r, "phase"), "annotating") == 0;
            reply_free(r);
            left += running;
            if (running && waits)
                annotate(d, tokens[i], projects[i]);
        }
        ck_assert_msg(now_ms() < deadline, "the loops did not finish");
        pause_ms(20);
    }
}

/* Two loops of the same configuration and seed on two projects, annotated
 * by the simulated annotator with the same seed, run side by side: every
 * round draws the same samples, posts the same pairs, gets the same
 * rankings, and its reward and policy jobs reach the same numbers. */
START_TEST(test_loop_same_seed_same_rounds) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    loop_fixture f[2];
    fixture(&d, &f[0]);
    f[1] = f[0];
    f[1].project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"loop 2\",\"k\":2,\"overlap\":1}");
    grant_project(&d, f[1].project, make_token(&d, "sim 2", "annotator", f[1].annotator));
    int64_t ids[2], projects[2] = {f[0].project, f[1].project};
    char tokens[2][128];
    for (int i = 0; i < 2; i++) {
        ids[i] = create_loop_with(&d, &f[i], "\"rounds\":2,\"rankings_per_round\":4,", TINY_PPO);
        memcpy(tokens[i], f[i].annotator, sizeof tokens[i]);
    }
    run_loops(&d, ids, projects, tokens, 2);
    /* the samples, text for text */
    char sql[1024];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM loop_rounds a JOIN loop_rounds b ON b.loop_id = %lld AND "
             "b.round = a.round JOIN job_samples sa ON sa.job_id = a.sample_job_id JOIN "
             "job_samples sb ON sb.job_id = b.sample_job_id AND sb.idx = sa.idx AND sb.response "
             "= sa.response WHERE a.loop_id = ?1",
             (long long)ids[1]);
    ck_assert_int_eq(db_int(&d, sql, ids[0]), 12);
    /* the posted pairs and their rankings: the same texts ranked the same,
     * in the same order */
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM (SELECT c.prompt, ca.text, e.rank, c.id - (SELECT min(id) "
             "FROM comparisons WHERE project_id = c.project_id) FROM comparisons c JOIN "
             "candidates ca ON ca.comparison_id = c.id JOIN rankings rk ON rk.comparison_id = "
             "c.id JOIN ranking_entries e ON e.ranking_id = rk.id AND e.candidate_id = ca.id "
             "WHERE c.project_id IN (?1, %lld) GROUP BY 1, 2, 3, 4 HAVING count(*) = 2)",
             (long long)projects[1]);
    ck_assert_int_eq(db_int(&d, sql, projects[0]), 16);
    /* every number of every round */
    http_reply *a = get_loop(&d, ids[0]), *b = get_loop(&d, ids[1]);
    json_t *ra = json_object_get(a->json, "rounds"), *rb = json_object_get(b->json, "rounds");
    ck_assert_int_eq(json_array_size(ra), 2);
    static const char *const keys[] = {"sample_gold_score", "rankings", "rm_accuracy", "rm_pairs",
                                       "proxy_score",       "kl",       "gold_score"};
    for (size_t i = 0; i < 2; i++)
        for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
            const json_t *x = json_object_get(json_array_get(ra, i), keys[k]),
                         *y = json_object_get(json_array_get(rb, i), keys[k]);
            ck_assert_msg(json_equal(x, y), "round %zu %s: %g vs %g", i + 1, keys[k],
                          json_number_value(x), json_number_value(y));
        }
    reply_free(a), reply_free(b);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* `disagreement` with its default ensemble of 3: each round trains three
 * reward models (seeds 1, 2, 3; member e from member e of the round before,
 * from the SFT model at first), and round 2 scores its samples with round
 * 1's three; the daemon SIGKILLed in round 1's reward phase (or, past it,
 * policy phase) inserts no member twice. */
START_TEST(test_loop_disagreement_ensemble_survives_kill9) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    loop_fixture f;
    fixture(&d, &f);
    const int64_t id = create_loop_with(
        &d, &f, "\"rounds\":2,\"rankings_per_round\":4,\"selection\":\"disagreement\",", TINY_PPO);
    http_reply *r = get_loop(&d, id);
    ck_assert_int_eq(
        json_integer_value(json_object_get(json_object_get(r->json, "config"), "ensemble")), 3);
    reply_free(r);
    bool killed = false;
    const int64_t deadline = now_ms() + 4 * DEADLINE_MS;
    for (;;) {
        r = get_loop(&d, id);
        ck_assert_msg(strcmp(loop_str(r, "status"), "failed") != 0, "%s", r->body);
        const bool done = strcmp(loop_str(r, "status"), "running") != 0;
        const char *phase = loop_str(r, "phase");
        const bool waits = strcmp(phase, "annotating") == 0;
        const bool training = strcmp(phase, "reward") == 0 || strcmp(phase, "policy") == 0;
        const int64_t round = reply_int(r, "round");
        reply_free(r);
        if (done)
            break;
        if (waits)
            annotate(&d, f.annotator, f.project);
        else if (!killed && round == 1 && training) {
            kill(d.pid, SIGKILL);
            ck_assert_int_eq(daemon_wait(&d), -SIGKILL);
            daemon_start(&d, NULL);
            killed = true;
        }
        ck_assert_msg(now_ms() < deadline, "the loop did not finish");
        pause_ms(20);
    }
    ck_assert(killed);
    r = get_loop(&d, id);
    ck_assert_str_eq(loop_str(r, "status"), "succeeded");
    json_t *rounds = json_object_get(r->json, "rounds");
    ck_assert_str_eq(json_string_value(json_object_get(json_array_get(rounds, 1), "selection")),
                     "disagreement");
    for (size_t i = 0; i < 2; i++) { /* shown member by member, member 0 the round's own */
        const json_t *o = json_array_get(rounds, i);
        const json_t *members = json_object_get(o, "reward_members");
        ck_assert_int_eq(json_array_size(members), 3);
        for (size_t e = 0; e < 3; e++) {
            const json_t *m = json_array_get(members, e);
            ck_assert_int_eq(json_integer_value(json_object_get(m, "member")), (json_int_t)e);
            ck_assert(json_integer_value(json_object_get(m, "checkpoint")) > 0);
        }
        ck_assert(json_equal(json_object_get(json_array_get(members, 0), "job"),
                             json_object_get(o, "reward_job")));
        ck_assert(json_equal(json_object_get(json_array_get(members, 0), "checkpoint"),
                             json_object_get(o, "reward_checkpoint")));
    }
    reply_free(r);
    /* three members a round, each trained once, seeds 1, 2, 3 */
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs WHERE type = 'reward'", 0), 6);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_reward_members m JOIN jobs j ON j.id = "
                            "m.job_id WHERE m.loop_id = ?1 AND j.status = 'succeeded' AND "
                            "m.checkpoint_id = (SELECT id FROM checkpoints WHERE job_id = j.id "
                            "AND kind = 'final') AND coalesce(json_extract(j.config, '$.seed'), "
                            "1) = m.member + 1",
                            id),
                     6);
    /* member 0 is the round's reward model; member e warm-starts from
     * member e of round 1, from the SFT model in round 1 */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_reward_members m JOIN loop_rounds lr ON "
                            "lr.loop_id = m.loop_id AND lr.round = m.round WHERE m.loop_id = ?1 "
                            "AND m.member = 0 AND lr.reward_job_id = m.job_id AND "
                            "lr.reward_checkpoint_id = m.checkpoint_id",
                            id),
                     2);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_reward_members m JOIN jobs j ON j.id = "
                            "m.job_id WHERE m.loop_id = ?1 AND m.round = 2 AND "
                            "j.parent_checkpoint_id = (SELECT checkpoint_id FROM "
                            "loop_reward_members p WHERE p.loop_id = m.loop_id AND p.round = 1 "
                            "AND p.member = m.member)",
                            id),
                     3);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(DISTINCT j.parent_checkpoint_id) FROM "
                            "loop_reward_members m JOIN jobs j ON j.id = m.job_id WHERE "
                            "m.loop_id = ?1 AND m.round = 1",
                            id),
                     1);
    /* warm-started members (round 2) are normalised on the SFT model's
     * samples (ref_checkpoint_id, reward_inputs.norm_policy); round 1's
     * start from it and name none */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_reward_members m JOIN jobs j ON j.id = "
                            "m.job_id JOIN loops l ON l.id = m.loop_id WHERE m.loop_id = ?1 AND "
                            "CASE m.round WHEN 1 THEN j.ref_checkpoint_id IS NULL ELSE "
                            "j.ref_checkpoint_id = l.sft_checkpoint_id END",
                            id),
                     6);
    /* round 2's samples are scored by round 1's three members, in order */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM loop_rounds lr JOIN jobs s ON s.id = "
                            "lr.sample_job_id JOIN loop_reward_members m ON m.loop_id = "
                            "lr.loop_id AND m.round = 1 WHERE lr.loop_id = ?1 AND lr.round = 2 "
                            "AND m.checkpoint_id = CASE m.member WHEN 0 THEN "
                            "s.reward_checkpoint_id ELSE (SELECT checkpoint_id FROM "
                            "job_reward_models x WHERE x.job_id = s.id AND x.position = "
                            "m.member) END",
                            id),
                     3);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *loops_suite(void) {
    Suite *s = suite_create("loops");
    TCase *tc = tcase_create("loops");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_loop_plateau_rule);
    tcase_add_test(tc, test_loop_body_checks);
    tcase_add_test(tc, test_loop_stops_on_plateau);
    tcase_add_test(tc, test_loop_same_seed_same_rounds);
    tcase_add_test(tc, test_loop_disagreement_ensemble_survives_kill9);
    tcase_add_test(tc, test_loop_cancel);
    tcase_add_test(tc, test_loop_dpo_and_grpo);
    tcase_add_test(tc, test_loop_two_rounds_survives_kill9);
    suite_add_tcase(s, tc);
    return s;
}
