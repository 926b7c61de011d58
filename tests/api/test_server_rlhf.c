/* The RLHF pipeline through rlhfd: sft → reward (from an uploaded TRL
 * preference file, and from an annotation project's rankings) → ppo (from a
 * prompts dataset), each a job run by a real rlhf-train worker; every
 * checkpoint reference of POST /v1/jobs checked; sampling from checkpoints
 * (POST /v1/checkpoints/{id}/generate and comparisons with `sample`).
 * Tiny models on the demo task (engine/demo_task.h), so each job takes well
 * under a second.
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "db.h"
#include "demo_task.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "rng.h"
#include "safetensors.h"
#include "suites.h"
#include "test_server_util.h"
#include "test_util.h"
#include "tokenizer.h"

/* A dataset of format with the JSONL text uploaded; returns its id. */
static int64_t dataset(const test_daemon *d, const char *format, const char *jsonl) {
    char body[128], path[64];
    snprintf(body, sizeof body, "{\"name\":\"%s\",\"format\":\"%s\"}", format, format);
    const int64_t id = create(d, "/v1/datasets", d->admin, body);
    snprintf(path, sizeof path, "/v1/datasets/%lld/upload", (long long)id);
    reply_free(expect_ok(http_bytes(d, "POST", path, d->admin, jsonl, strlen(jsonl), NULL)));
    return id;
}

/* n rows of the demo task in the given format, as JSONL (caller frees):
 * sft {"prompt","response"}; prompts {"prompt"}; preference (TRL) with the
 * better of two responses by the hidden gold score as chosen. */
static char *demo_jsonl(const char *format, int n, uint64_t seed) {
    rng_state rng;
    rng_seed(&rng, seed, 0);
    char *out = malloc((size_t)n * 512), prompt[128], a[256], b[256];
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        demo_task_example(&rng, prompt, sizeof prompt, a, sizeof a);
        json_t *row;
        if (strcmp(format, "sft") == 0)
            row = json_pack("{s:s, s:s}", "prompt", prompt, "response", a);
        else if (strcmp(format, "prompts") == 0)
            row = json_pack("{s:s}", "prompt", prompt);
        else {
            demo_task_response(&rng, prompt, b, sizeof b);
            const bool a_better =
                demo_task_gold_score(prompt, a) >= demo_task_gold_score(prompt, b);
            row = json_pack("{s:s, s:s, s:s}", "prompt", prompt, "chosen", a_better ? a : b,
                            "rejected", a_better ? b : a);
        }
        char *text = json_dumps(row, JSON_COMPACT);
        len += (size_t)sprintf(out + len, "%s\n", text);
        free(text);
        json_decref(row);
    }
    return out;
}

/* A dataset of n rows of the demo task in format, uploaded: its id. */
static int64_t demo_dataset(const test_daemon *d, const char *format, int n, uint64_t seed) {
    char *text = demo_jsonl(format, n, seed);
    const int64_t id = dataset(d, format, text);
    free(text);
    return id;
}

/* An sft job on a fresh 64-row demo dataset (its id in *data if not NULL)
 * with the given hyperparameters JSON: the job's id. */
static int64_t demo_sft_job(const test_daemon *d, const char *hyperparameters, int64_t *data) {
    const int64_t sft_data = demo_dataset(d, "sft", 64, 1);
    if (data != NULL)
        *data = sft_data;
    char body[1024];
    snprintf(body, sizeof body, "{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":%s}",
             (long long)sft_data, hyperparameters);
    return create(d, "/v1/jobs", d->admin, body);
}

#define TINY_SFT                                                                                   \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":20,\"learning_rate\":0.003,\"eval_interval\":0,\"sample_interval\":0,"          \
    "\"checkpoint_interval\":10}"
/* Long enough that greedy samples differ by prompt (about 1 s). */
#define SAMPLING_SFT                                                                               \
    "{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,\"batch_size\":8,"                  \
    "\"max_steps\":150,\"learning_rate\":0.01,\"eval_interval\":0,\"sample_interval\":0,"          \
    "\"checkpoint_interval\":100}"
#define TINY_REWARD                                                                                \
    "{\"batch_size\":4,\"max_steps\":6,\"eval_interval\":3,\"norm_samples\":4,"                    \
    "\"norm_max_tokens\":8}"
#define TINY_PPO                                                                                   \
    "{\"total_updates\":2,\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,"                \
    "\"response_length\":8,\"sample_interval\":0}"

static int64_t final_checkpoint(const test_daemon *d, int64_t job) {
    return db_int(d, "SELECT id FROM checkpoints WHERE job_id = ?1 AND kind = 'final'", job);
}

/* Waits for success; asserts the job has metrics named metric, one final
 * checkpoint which the job object names as fine_tuned_model, and went
 * queued → validating_files → running → succeeded (the status_log trigger
 * the test installs). Returns the final checkpoint's id. */
static int64_t expect_succeeded(const test_daemon *d, int64_t job, const char *metric) {
    http_reply *r = wait_job(d, job, "succeeded", 1);
    const int64_t final = final_checkpoint(d, job);
    ck_assert_int_gt(final, 0);
    ck_assert_int_eq(job_int(r, "fine_tuned_model"), final);
    reply_free(r);
    char sql[160];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = '%s'",
             metric);
    ck_assert_int_gt(db_int(d, sql, job), 0);
    ck_assert_int_eq(
        db_int(d,
               "SELECT group_concat(old || '>' || new, ' ') = 'queued>validating_files "
               "validating_files>running running>succeeded' FROM "
               "(SELECT * FROM status_log WHERE job_id = ?1 ORDER BY rowid)",
               job),
        1);
    ck_assert(has_event(d, job, "running"));
    return final;
}

/* The JSON data of the job's event with code (caller decrefs). */
static json_t *event_data(const test_daemon *d, int64_t job, const char *code) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/events?limit=1000", (long long)job);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    json_t *found = NULL, *e;
    size_t i;
    json_array_foreach(json_object_get(r->json, "data"), i, e) {
        if (strcmp(json_string_value(json_object_get(e, "code")), code) == 0)
            found = json_incref(json_object_get(e, "data"));
    }
    reply_free(r);
    ck_assert_msg(found != NULL, "job %lld has no %s event", (long long)job, code);
    return found;
}

static int64_t job_json_int(const test_daemon *d, int64_t job, const char *key) {
    http_reply *r = get_job(d, job);
    const int64_t v = job_int(r, key);
    reply_free(r);
    return v;
}

START_TEST(test_rlhf_pipeline_jobs) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    /* Every status change of every job, in order. */
    exec_sql(&d, "CREATE TABLE status_log (job_id INTEGER, old TEXT, new TEXT);"
                 "CREATE TRIGGER log_status AFTER UPDATE OF status ON jobs "
                 "WHEN OLD.status IS NOT NEW.status BEGIN "
                 "INSERT INTO status_log VALUES (NEW.id, OLD.status, NEW.status); END;");
    char annotator[128];
    make_token(&d, "ann", "annotator", annotator);

    /* 1. sft */
    int64_t sft_data;
    const int64_t sft = demo_sft_job(&d, TINY_SFT, &sft_data);
    char body[2048];
    const int64_t sft_ck = expect_succeeded(&d, sft, "loss");

    /* an sft job may start from a policy checkpoint (fine-tuning) */
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"checkpoint:%lld\","
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":4,\"sample_interval\":0}}",
             (long long)sft_data, (long long)sft_ck);
    const int64_t tuned = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, tuned, "model"), sft_ck);
    expect_succeeded(&d, tuned, "loss");

    /* 2. reward from an uploaded TRL preference file, with a validation file */
    const int64_t pref = demo_dataset(&d, "preference", 24, 2);
    const int64_t pref_valid = demo_dataset(&d, "preference", 6, 3);
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"validation_file\":%lld,\"model\":%lld,"
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)pref, (long long)pref_valid, (long long)sft_ck);
    const int64_t rm_file = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, rm_file, "model"), sft_ck);
    const int64_t rm_ck = expect_succeeded(&d, rm_file, "accuracy");
    ck_assert_int_gt(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = "
                            "'eval_accuracy'",
                            rm_file),
                     0);
    json_t *data = event_data(&d, rm_file, "running");
    ck_assert_int_eq(json_integer_value(json_object_get(data, "n_train")), 24);
    ck_assert_int_eq(json_integer_value(json_object_get(data, "n_validation")), 6);
    json_decref(data);

    /* 3. reward from a project's rankings: K = 3 with ties, one all-tie
     * ranking (orders nothing: left out) and one skip */
    const int64_t project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"p\",\"k\":3,\"overlap\":1}");
    rng_state rng;
    rng_seed(&rng, 4, 0);
    for (int c = 0; c < 8; c++) {
        char prompt[128], resp[3][256];
        demo_task_example(&rng, prompt, sizeof prompt, resp[0], sizeof resp[0]);
        demo_task_response(&rng, prompt, resp[1], sizeof resp[1]);
        demo_task_response(&rng, prompt, resp[2], sizeof resp[2]);
        json_t *cbody = json_pack("{s:s, s:[{s:s}, {s:s}, {s:s}]}", "prompt", prompt, "candidates",
                                  "text", resp[0], "text", resp[1], "text", resp[2]);
        char *cb = json_dumps(cbody, JSON_COMPACT);
        char path[96];
        snprintf(path, sizeof path, "/v1/projects/%lld/comparisons", (long long)project);
        http_reply *r = expect_ok(http(&d, "POST", path, d.admin, cb, NULL));
        json_t *cands = json_object_get(r->json, "candidates");
        int64_t ids[3];
        for (int j = 0; j < 3; j++)
            ids[j] = json_integer_value(json_object_get(json_array_get(cands, (size_t)j), "id"));
        snprintf(path, sizeof path, "/v1/comparisons/%lld/rankings",
                 (long long)json_integer_value(json_object_get(r->json, "id")));
        char rbody[160];
        if (c == 1)
            snprintf(rbody, sizeof rbody, "{\"order\":[[%lld,%lld,%lld]]}", (long long)ids[0],
                     (long long)ids[1], (long long)ids[2]);
        else if (c == 2)
            snprintf(rbody, sizeof rbody, "{\"skip\":true}");
        else if (c % 2)
            snprintf(rbody, sizeof rbody, "{\"order\":[[%lld],[%lld,%lld]]}", (long long)ids[0],
                     (long long)ids[1], (long long)ids[2]);
        else
            snprintf(rbody, sizeof rbody, "{\"order\":[[%lld],[%lld],[%lld]]}", (long long)ids[2],
                     (long long)ids[0], (long long)ids[1]);
        reply_free(expect_ok(http(&d, "POST", path, annotator, rbody, NULL)));
        reply_free(r);
        free(cb);
        json_decref(cbody);
    }
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_project\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)project, (long long)sft);
    const int64_t rm_project = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, rm_project, "training_project"), project);
    ck_assert_int_eq(job_json_int(&d, rm_project, "model"), sft_ck);
    expect_succeeded(&d, rm_project, "accuracy");
    data = event_data(&d, rm_project, "running");
    ck_assert_int_eq(json_integer_value(json_object_get(data, "n_train")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(data, "n_rankings_left_out")), 1);
    json_decref(data);

    /* 4. ppo from a prompts dataset against the first reward model */
    const int64_t prompts = demo_dataset(&d, "prompts", 16, 5);
    snprintf(body, sizeof body,
             "{\"type\":\"ppo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":" TINY_PPO "}",
             (long long)prompts, (long long)sft, (long long)rm_file);
    const int64_t ppo = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, ppo, "reward_model"), rm_ck);
    expect_succeeded(&d, ppo, "objective/scores");
    ck_assert_int_eq(db_int(&d, "SELECT count(DISTINCT step) FROM metrics WHERE job_id = ?1", ppo),
                     2);

    /* 5. every reference is checked, naming the field; nothing is stored */
    const int64_t cancelled = create(&d, "/v1/jobs", d.admin,
                                     "{\"type\":\"ppo-control\",\"hyperparameters\":"
                                     "{\"total_steps\":100000000}}");
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/cancel", (long long)cancelled);
    reply_free(expect_ok(http(&d, "POST", path, d.admin, NULL, NULL)));
    reply_free(wait_job(&d, cancelled, "cancelled", 0));
    const int64_t empty_project =
        create(&d, "/v1/projects", d.admin, "{\"name\":\"empty\",\"k\":2}");
    const int64_t jobs_before = db_int(&d, "SELECT count(*) FROM jobs", 0);
    struct {
        const char *fmt; /* %lld ×2: the two ids */
        int64_t a, b;
        const char *code, *param;
    } bad[] = {
        {"{\"type\":\"reward\",\"training_file\":%lld}", pref, 0, "missing_required_parameter",
         "model"},
        {"{\"type\":\"reward\",\"model\":%lld}", sft_ck, 0, "missing_required_parameter",
         "training_file"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld}", pref, 99999,
         "checkpoint_not_found", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\"}", pref, 99999,
         "job_not_found", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld}", pref, rm_ck,
         "invalid_model", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\"}", pref, rm_file,
         "invalid_model", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\"}", pref, cancelled,
         "invalid_model", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"ckpt-%lld\"}", pref, sft_ck,
         "invalid_type", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":-%lld}", pref, sft_ck,
         "invalid_value", "model"},
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld}", sft_data, sft_ck,
         "invalid_dataset_format", "training_file"},
        {"{\"type\":\"reward\",\"training_project\":%lld,\"model\":%lld}", 99999, sft_ck,
         "project_not_found", "training_project"},
        {"{\"type\":\"reward\",\"training_project\":%lld,\"model\":%lld}", empty_project, sft_ck,
         "project_has_no_rankings", "training_project"},
        {"{\"type\":\"reward\",\"training_project\":%lld,\"model\":%lld,\"training_file\":1}",
         project, sft_ck, "invalid_value", "training_project"},
        {"{\"type\":\"reward\",\"training_project\":\"%lld\",\"model\":%lld}", project, sft_ck,
         "invalid_type", "training_project"},
        {"{\"type\":\"sft\",\"training_file\":%lld,\"training_project\":%lld}", sft_data, project,
         "invalid_value", "training_project"},
        {"{\"type\":\"sft\",\"training_file\":%lld,\"reward_model\":%lld}", sft_data, rm_ck,
         "invalid_value", "reward_model"},
        {"{\"type\":\"ppo-control\",\"model\":%lld%.0lld}", sft_ck, 0, "invalid_value", "model"},
        {"{\"type\":\"ppo\",\"training_file\":%lld,\"model\":%lld}", prompts, sft_ck,
         "missing_required_parameter", "reward_model"},
        {"{\"type\":\"ppo\",\"training_file\":%lld,\"reward_model\":%lld}", prompts, rm_ck,
         "missing_required_parameter", "model"},
        {"{\"type\":\"ppo\",\"training_file\":%lld,\"model\":1,\"reward_model\":%lld}", prompts,
         sft_ck, "invalid_model", "reward_model"},
        {"{\"type\":\"ppo\",\"training_file\":%lld,\"model\":1,\"reward_model\":\"job:%lld\"}",
         prompts, cancelled, "invalid_model", "reward_model"},
        {"{\"type\":\"ppo\",\"training_file\":%lld,\"model\":%lld,\"reward_model\":1}", pref,
         sft_ck, "invalid_dataset_format", "training_file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, bad[i].fmt, (long long)bad[i].a, (long long)bad[i].b);
        call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, bad[i].code, bad[i].param);
    }
    /* A job that has not succeeded has no final checkpoint to name. */
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":" TINY_SFT "}",
             (long long)sft_data, (long long)sft);
    exec_sql(&d, "UPDATE jobs SET status = 'failed' WHERE id = 1");
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, "model_not_ready", "model");
    exec_sql(&d, "UPDATE jobs SET status = 'succeeded' WHERE id = 1");
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), jobs_before);

    /* 6. the worker checks what it loads while validating_files: a stored
     * checkpoint that is no model fails the job, naming the field */
    exec_sql(&d, "INSERT INTO checkpoints (job_id, step, kind, bytes, sha256, size_bytes, "
                 "created_at) VALUES (1, 0, 'periodic', x'0800000000000000', "
                 "'0000000000000000000000000000000000000000000000000000000000000000', 8, 0)");
    const int64_t junk = db_int(&d, "SELECT max(id) FROM checkpoints", 0);
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld,\"max_attempts\":1}",
             (long long)pref, (long long)junk);
    const int64_t doomed = create(&d, "/v1/jobs", d.admin, body);
    http_reply *r = wait_job(&d, doomed, "failed", 1);
    const char *message =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    ck_assert_msg(strstr(message, "model: checkpoint") && strstr(message, "not a usable"), "%s",
                  message);
    reply_free(r);
    ck_assert_int_eq(db_int(&d,
                            "SELECT group_concat(new, ' ') = 'validating_files failed' FROM "
                            "(SELECT * FROM status_log WHERE job_id = ?1 ORDER BY rowid)",
                            doomed),
                     1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The model of a stored checkpoint, loaded here independently of rlhfd. */
static void load_checkpoint(const test_daemon *d, int64_t id, gpt2_model *m) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    safetensors_file f;
    gpt2_config gc;
    char err[256];
    ck_assert_msg(safetensors_parse(&f, r->body, r->body_len, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(gpt2_config_from_checkpoint(&gc, &f, err, sizeof err), 0);
    gc.scalar_head = false;
    ck_assert_int_eq(gpt2_init(m, &gc, err, sizeof err), 0);
    ck_assert_msg(gpt2_checkpoint_load(m, &f, NULL, err, sizeof err) == 0, "%s", err);
    safetensors_free(&f);
    reply_free(r);
}

/* Greedy continuation of prompt by m, up to n tokens, as text. */
static void greedy(const gpt2_model *m, const tokenizer *tok, const char *prompt, int n, char *out,
                   size_t cap) {
    int32_t ids[128], gen[128], len = 0;
    const int64_t np = tokenizer_encode(tok, prompt, strlen(prompt), ids, 128, false);
    const gpt2_sample_config sc = {0.0f, 0, 1.0f, n, tok->eot_id};
    rng_state rng;
    rng_seed(&rng, 1, 0);
    char err[128];
    ck_assert_int_eq(gpt2_generate(m, ids, NULL, 1, (int)np, &sc, &rng, gen, &len, err, sizeof err),
                     0);
    if (len > 0 && gen[len - 1] == tok->eot_id)
        len--;
    int64_t nb = tokenizer_decode(tok, gen, (size_t)len, out, cap - 1);
    out[nb] = '\0';
}

static const char *choice_text(http_reply *r, size_t i) {
    return json_string_value(
        json_object_get(json_array_get(json_object_get(r->json, "choices"), i), "text"));
}

START_TEST(test_generate_from_checkpoints) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--model-cache", "1", NULL);
    const int64_t job = demo_sft_job(&d, SAMPLING_SFT, NULL);
    char body[1024];
    reply_free(wait_job(&d, job, "succeeded", 1));
    const int64_t ck = final_checkpoint(&d, job);
    /* a second checkpoint, so the one-model cache evicts and reloads */
    const int64_t other = db_int(&d, "SELECT min(id) FROM checkpoints", 0);
    ck_assert_int_ne(other, ck);

    tokenizer tok;
    ck_assert_int_eq(tokenizer_load_bytes(&tok, NULL, 0), 0);
    gpt2_model m;
    load_checkpoint(&d, ck, &m);
    char want0[512], want1[512];
    greedy(&m, &tok, "Describe the river.", 12, want0, sizeof want0);
    greedy(&m, &tok, "Describe the cat.", 12, want1, sizeof want1);
    ck_assert_msg(strlen(want0) > 0 && strcmp(want0, want1) != 0, "%s / %s", want0, want1);
    gpt2_free(&m);

    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/generate", (long long)ck);
    const char *greedy_body = "{\"prompt\":[\"Describe the river.\",\"Describe the cat.\"],"
                              "\"n\":2,\"max_tokens\":12,\"temperature\":0}";
    for (int round = 0; round < 2; round++) { /* the second after an eviction */
        http_reply *r = expect_ok(http(&d, "POST", path, d.admin, greedy_body, NULL));
        ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")), "text_completion");
        ck_assert_int_eq(json_integer_value(json_object_get(r->json, "model")), ck);
        ck_assert_int_eq(json_array_size(json_object_get(r->json, "choices")), 4);
        ck_assert_str_eq(choice_text(r, 0), want0);
        ck_assert_str_eq(choice_text(r, 1), want0);
        ck_assert_str_eq(choice_text(r, 2), want1);
        ck_assert_str_eq(choice_text(r, 3), want1);
        json_t *usage = json_object_get(r->json, "usage");
        ck_assert_int_eq(json_integer_value(json_object_get(usage, "prompt_tokens")),
                         2 * (19 + 17));
        reply_free(r);
        char other_path[96];
        snprintf(other_path, sizeof other_path, "/v1/checkpoints/%lld/generate", (long long)other);
        reply_free(expect_ok(http(&d, "POST", other_path, d.admin,
                                  "{\"prompt\":\"Describe the river.\",\"max_tokens\":4}", NULL)));
    }
    /* rlhfctl checkpoints generate prints the text. */
    char ctl[4096], url[64], ck_arg[32], printed[512];
    bin_path("rlhfctl", ctl, sizeof ctl);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", d.port);
    snprintf(ck_arg, sizeof ck_arg, "%lld", (long long)ck);
    char *const argv[] = {ctl,
                          "--url",
                          url,
                          "--token",
                          d.admin,
                          "checkpoints",
                          "generate",
                          ck_arg,
                          "--prompt",
                          "Describe the river.",
                          "--max-tokens",
                          "12",
                          "--temperature",
                          "0",
                          NULL};
    ck_assert_int_eq(run_capture(argv, printed, sizeof printed), 0);
    ck_assert_str_eq(printed, want0);

    /* The same seed samples the same text; the reply says the seed. */
    const char *sampled = "{\"prompt\":\"Describe the cat.\",\"n\":3,\"seed\":7,\"max_tokens\":10}";
    http_reply *a = expect_ok(http(&d, "POST", path, d.admin, sampled, NULL));
    http_reply *b = expect_ok(http(&d, "POST", path, d.admin, sampled, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(a->json, "seed")), 7);
    for (size_t i = 0; i < 3; i++)
        ck_assert_str_eq(choice_text(a, i), choice_text(b, i));
    reply_free(b);

    /* Comparisons whose candidates the server samples: the same texts as
     * /generate with the same checkpoint, prompt, n and seed. */
    const int64_t project = create(&d, "/v1/projects", d.admin, "{\"name\":\"p\",\"k\":3}");
    char cpath[96];
    snprintf(cpath, sizeof cpath, "/v1/projects/%lld/comparisons", (long long)project);
    snprintf(body, sizeof body,
             "{\"prompt\":\"Describe the cat.\",\"sample\":{\"checkpoint_id\":%lld,\"seed\":7,"
             "\"max_tokens\":10}}",
             (long long)ck);
    http_reply *c = expect_ok(http(&d, "POST", cpath, d.admin, body, NULL));
    json_t *cands = json_object_get(c->json, "candidates");
    ck_assert_int_eq(json_array_size(cands), 3);
    for (size_t i = 0; i < 3; i++) {
        json_t *cand = json_array_get(cands, i);
        ck_assert_str_eq(json_string_value(json_object_get(cand, "text")), choice_text(a, i));
        ck_assert_str_eq(json_string_value(json_object_get(cand, "source")), "checkpoint");
        ck_assert_int_eq(json_integer_value(json_object_get(cand, "checkpoint_id")), ck);
    }
    reply_free(c);
    reply_free(a);

    /* Errors, by code and field. */
    struct {
        const char *body;
        long status;
        const char *code, *param;
    } bad[] = {
        {"{}", 400, "missing_required_parameter", "prompt"},
        {"{\"prompt\":\"\"}", 400, "invalid_value", "prompt"},
        {"{\"prompt\":[]}", 400, "invalid_value", "prompt"},
        {"{\"prompt\":[\"a\",3]}", 400, "invalid_type", "prompt[1]"},
        {"{\"prompt\":7}", 400, "invalid_type", "prompt"},
        {"{\"prompt\":\"a\",\"n\":0}", 400, "invalid_value", "n"},
        {"{\"prompt\":\"a\",\"n\":1.5}", 400, "invalid_type", "n"},
        {"{\"prompt\":\"a\",\"temperature\":3}", 400, "invalid_value", "temperature"},
        {"{\"prompt\":\"a\",\"top_p\":0}", 400, "invalid_value", "top_p"},
        {"{\"prompt\":\"a\",\"max_tokens\":64}", 400, "context_length_exceeded", "max_tokens"},
        {"{\"prompt\":\"0123456789012345678901234567890123456789012345678901234567890123\"}", 400,
         "context_length_exceeded", "prompt"},
        {"{\"prompt\":[\"a\",\"b\",\"c\",\"d\",\"e\"],\"n\":16}", 400, "invalid_value", "n"},
        {"{\"prompt\":\"a\",\"stream\":true}", 400, "unknown_parameter", "stream"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        call_expect_error(&d, "POST", path, d.admin, bad[i].body, bad[i].status, bad[i].code,
                          bad[i].param);
    call_expect_error(&d, "POST", "/v1/checkpoints/99999/generate", d.admin, "{\"prompt\":\"a\"}",
                      404, "checkpoint_not_found", NULL);
    char annotator[128];
    make_token(&d, "ann", "annotator", annotator);
    call_expect_error(&d, "POST", path, annotator, "{\"prompt\":\"a\"}", 403, "insufficient_role",
                      NULL);
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"sample\":{\"checkpoint_id\":99999}}");
    call_expect_error(&d, "POST", cpath, d.admin, body, 400, "checkpoint_not_found",
                      "sample.checkpoint_id");
    snprintf(body, sizeof body, "{\"prompt\":\"x\",\"sample\":{\"checkpoint_id\":%lld,\"n\":4}}",
             (long long)ck);
    call_expect_error(&d, "POST", cpath, d.admin, body, 400, "invalid_value", "sample.n");
    snprintf(body, sizeof body,
             "{\"prompt\":\"x\",\"sample\":{\"checkpoint_id\":%lld},\"candidates\":[]}",
             (long long)ck);
    call_expect_error(&d, "POST", cpath, d.admin, body, 400, "invalid_value", "candidates");
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM comparisons", 0), 1);
    tokenizer_free(&tok);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- kill -9 of the worker --------------------------------------------------------- */

/* The sha256 of the job's final checkpoint, as the API lists it. */
static void final_sha256(const test_daemon *d, int64_t job, char out[65]) {
    char path[96];
    snprintf(path, sizeof path, "/v1/jobs/%lld/checkpoints?limit=100", (long long)job);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    out[0] = '\0';
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(r->json, "data"), i, c) {
        if (strcmp(json_string_value(json_object_get(c, "kind")), "final") == 0)
            snprintf(out, 65, "%s", json_string_value(json_object_get(c, "sha256")));
    }
    ck_assert_msg(out[0], "job %lld has no final checkpoint", (long long)job);
    reply_free(r);
}

/* Runs body twice: a reference job to success, then the same job with its
 * worker SIGKILLed once it runs (with min_checkpoints checkpoints). Attempt
 * 2 must end with the reference's final checkpoint, byte for byte, having
 * resumed exactly when there was a checkpoint to resume from. Returns the
 * reference. */
static int64_t run_and_run_killed(const test_daemon *d, const char *body, int64_t min_checkpoints) {
    const int64_t reference = create(d, "/v1/jobs", d->admin, body);
    reply_free(wait_job(d, reference, "succeeded", 1));
    ck_assert(!has_event(d, reference, "resumed"));
    const int64_t job = create(d, "/v1/jobs", d->admin, body);
    pid_t worker;
    sqlite3 *lock = hold_running_job(d, job, min_checkpoints, &worker);
    ck_assert_int_eq(kill(worker, SIGKILL), 0);
    release_job(lock);
    reply_free(wait_job(d, job, "succeeded", 2));
    char want[65], got[65];
    final_sha256(d, reference, want);
    final_sha256(d, job, got);
    ck_assert_str_eq(got, want);
    ck_assert(has_event(d, job, "resumed") == (min_checkpoints > 0));
    return reference;
}

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

/* Event messages quote model samples, which can be any bytes; the API
 * serves them as JSON, so they are stored as UTF-8. */
START_TEST(test_utf8_clean) {
    const struct {
        const char *in;
        size_t n;
        const char *want;
    } cases[] = {
        {"plain", 5, "plain"},
        {"a\xff"
         "b",
         3,
         "a\xEF\xBF\xBD"
         "b"},
        {"\xc3\xa9", 2, "\xc3\xa9"},                                 /* é */
        {"\xc3", 1, "\xEF\xBF\xBD"},                                 /* cut short */
        {"\xc0\xaf", 2, "\xEF\xBF\xBD\xEF\xBF\xBD"},                 /* overlong '/' */
        {"\xed\xa0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* a surrogate */
        {"\xf0\x9f\x98\x80", 4, "\xf0\x9f\x98\x80"},                 /* U+1F600 */
        {"\xf4\x90\x80\x80", 4,
         "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"}, /* > U+10FFFF */
        {"x\0y", 3, "x\xEF\xBF\xBDy"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *got = db_utf8_clean(cases[i].in, cases[i].n);
        ck_assert_str_eq(got, cases[i].want);
        free(got);
    }
}
END_TEST

Suite *server_rlhf_suite(void) {
    Suite *s = suite_create("server_rlhf");
    TCase *jobs = tcase_create("jobs");
    tcase_add_test(jobs, test_rlhf_pipeline_jobs);
    tcase_add_test(jobs, test_generate_from_checkpoints);
    tcase_add_test(jobs, test_reward_and_ppo_survive_kill);
    tcase_add_test(jobs, test_ppo_control_survives_kill);
    tcase_set_timeout(jobs, 120);
    suite_add_tcase(s, jobs);
    TCase *unit = tcase_create("unit");
    tcase_add_test(unit, test_utf8_clean);
    suite_add_tcase(s, unit);
    return s;
}
