/* Jobs that train language models on what the API holds: sft on a dataset
 * (training_file / validation_file, every refusal naming its field), and the
 * RLHF pipeline sft → reward (from an uploaded TRL preference file, and from
 * an annotation project's rankings) → ppo (from a prompts dataset), with
 * every checkpoint reference of POST /v1/jobs checked. Tiny models on the
 * demo task (engine/demo_task.h), so each job takes well under a second.
 */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_task.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* training_file / validation_file: every error names its field, nothing is
 * stored by a refused request, a job on a dataset trains on it (held-out
 * loss from validation_file), and the dataset cannot be deleted while a
 * job names it. Numbers in replies print short (0.95, not
 * 0.94999999999999996). */
START_TEST(test_sft_job_on_dataset) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t train = sft_dataset(&d, "train", 64);
    const int64_t valid = sft_dataset(&d, "valid", 8);
    const int64_t empty =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"e\",\"format\":\"sft\"}");
    const int64_t pref =
        create(&d, "/v1/datasets", d.admin, "{\"name\":\"p\",\"format\":\"preference\"}");
    const char *pref_file = "{\"prompt\":\"p\",\"chosen\":\"a\",\"rejected\":\"b\"}\n";
    reply_free(expect_ok(upload_dataset(&d, pref, pref_file, strlen(pref_file), NULL)));

    ck_assert_int_eq(train, 1); /* the rows below that say "training_file":1 */
    struct {
        const char *body_fmt; /* %lld: a dataset id */
        int64_t dataset;
        const char *code, *param;
    } bad[] = {
        {"{\"type\":\"sft\"}", 0, "missing_required_parameter", "training_file"},
        {"{\"type\":\"sft\",\"validation_file\":%lld}", valid, "missing_required_parameter",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":\"%lld\"}", train, "invalid_type", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":-%lld}", train, "invalid_value", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", 999, "dataset_not_found", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", empty, "dataset_empty", "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld}", pref, "invalid_dataset_format",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":%lld}", pref,
         "invalid_dataset_format", "validation_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":%lld}", empty, "dataset_empty",
         "validation_file"},
        {"{\"type\":\"sft\",\"training_file\":1,\"validation_file\":null}", 0, "invalid_type",
         "validation_file"},
        {"{\"type\":\"ppo-control\",\"training_file\":%lld}", train, "invalid_value",
         "training_file"},
        {"{\"type\":\"sft\",\"training_file\":%lld,\"hyperparameters\":{\"n_head\":3}}", train,
         "invalid_hyperparameter", "hyperparameters.n_head"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char body[256];
        snprintf(body, sizeof body, bad[i].body_fmt, (long long)bad[i].dataset);
        call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, bad[i].code, bad[i].param);
    }
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM job_datasets", 0), 0);

    /* Held-out loss comes only from validation_file (eval_fraction 0). */
    char body[1024];
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"validation_file\":%lld,"
             "\"hyperparameters\":{\"n_layer\":1,\"d_model\":32,\"n_head\":2,\"context\":64,"
             "\"batch_size\":8,\"max_steps\":10,\"eval_fraction\":0,\"eval_interval\":5,"
             "\"sample_interval\":0,\"sample_max_tokens\":8}}",
             (long long)train, (long long)valid);
    http_reply *r = expect_ok(http(&d, "POST", "/v1/jobs", d.admin, body, NULL));
    const int64_t job = json_integer_value(json_object_get(r->json, "id"));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "training_file")), train);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "validation_file")), valid);
    /* 15 significant digits in replies; the stored config keeps every bit. */
    ck_assert_msg(strstr(r->body, "\"beta2\":0.95,") && strstr(r->body, "\"min_lr_ratio\":0.1,") &&
                      strstr(r->body, "\"learning_rate\":0.001,"),
                  "%s", r->body);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM jobs WHERE id = ?1 AND config LIKE "
                            "'%\"beta2\":0.94999999999999996%'",
                            job),
                     1);
    reply_free(r);
    http_reply *done = wait_job(&d, job, "succeeded", 1);
    ck_assert_int_eq(job_int(done, "training_file"), train);
    ck_assert_int_eq(job_int(done, "validation_file"), valid);
    reply_free(done);
    char path[128];
    snprintf(path, sizeof path, "/v1/jobs/%lld/metrics?names=eval_loss,loss", (long long)job);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 10);
    json_t *last = json_object_get(json_array_get(json_object_get(r->json, "data"), 9), "metrics");
    ck_assert(json_is_real(json_object_get(last, "eval_loss")));
    ck_assert(json_object_get(
                  json_object_get(json_array_get(json_object_get(r->json, "data"), 0), "metrics"),
                  "eval_loss") == NULL);
    reply_free(r);
    /* A job without validation_file says so; listing shows both fields. */
    char fields[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld", (long long)train);
    const int64_t plain = create_sft_job(&d, fields);
    r = expect_ok(http(&d, "GET", "/v1/jobs?type=sft", d.admin, NULL, NULL));
    json_t *first = json_array_get(json_object_get(r->json, "data"), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(first, "id")), plain);
    ck_assert(json_is_null(json_object_get(first, "validation_file")));
    ck_assert_int_eq(json_integer_value(json_object_get(first, "training_file")), train);
    reply_free(r);
    reply_free(wait_job(&d, plain, "succeeded", 1));

    /* Both datasets are in use now; an unused one deletes. */
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)train);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "dataset_in_use", NULL);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)valid);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "dataset_in_use", NULL);
    snprintf(path, sizeof path, "/v1/datasets/%lld", (long long)empty);
    reply_free(expect_ok(http(&d, "DELETE", path, d.admin, NULL, NULL)));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Waits for success; asserts the job has metrics named metric, one final
 * checkpoint which the job object names as fine_tuned_model, and went
 * queued → validating_files → running → succeeded (the status_log trigger
 * the test installs). Returns the final checkpoint's id. */
static int64_t expect_succeeded(const test_daemon *d, int64_t job, const char *metric) {
    http_reply *r = wait_job(d, job, "succeeded", 1);
    const int64_t final = final_checkpoint(d, job, NULL);
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

/* Checkpoint id's safetensors __metadata__ (caller decrefs), read from the
 * header alone: a resumable checkpoint is larger than a test reply holds. */
static json_t *checkpoint_metadata(const test_daemon *d, int64_t id) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    uint64_t n = 0;
    ck_assert_uint_ge(r->body_len, 8);
    for (int b = 7; b >= 0; b--)
        n = n << 8 | (uint8_t)r->body[b];
    ck_assert_uint_le(n, r->body_len - 8);
    json_t *header = json_loadb(r->body + 8, (size_t)n, 0, NULL);
    ck_assert_ptr_nonnull(header);
    json_t *meta = json_incref(json_object_get(header, "__metadata__"));
    ck_assert_ptr_nonnull(meta);
    json_decref(header);
    reply_free(r);
    return meta;
}

/* The job's shown configuration is the one it ran with: `hyperparameters`
 * equal the training_state.config its resumable checkpoints record (what
 * the trainer checks a resume against; sft and ppo jobs here have one), and the final model's shape
 * is the one shown (n_layer, n_head, d_model, context where the type has them): for a job from an
 * init model (sized_by_model) that is TINY_SFT's 1, 2, 32, 64 in place of the request's or the
 * defaults. */
static void expect_config_ran(const test_daemon *d, int64_t job, bool sized_by_model) {
    http_reply *r = get_job(d, job);
    json_t *shown = json_deep_copy(json_object_get(r->json, "hyperparameters"));
    /* an sft checkpoint without LoRA records the table before its three
     * LoRA keys (engine/sft.c state_table: older checkpoints still resume) */
    if (json_integer_value(json_object_get(shown, "lora_r")) == 0 &&
        strcmp(json_string_value(json_object_get(r->json, "type")), "sft") == 0) {
        json_object_del(shown, "lora_r");
        json_object_del(shown, "lora_alpha");
        json_object_del(shown, "lora_targets");
    }
    char *shown_text = json_dumps(shown, JSON_COMPACT | JSON_SORT_KEYS);
    http_reply *list = job_checkpoints(d, job);
    int with_state = 0;
    size_t i;
    json_t *ck;
    json_array_foreach(json_object_get(list->json, "data"), i, ck) {
        json_t *meta = checkpoint_metadata(d, json_integer_value(json_object_get(ck, "id")));
        const char *ran = json_string_value(json_object_get(meta, "training_state.config"));
        if (ran != NULL) {
            json_t *ran_json = json_loads(ran, 0, NULL);
            char *ran_text = json_dumps(ran_json, JSON_COMPACT | JSON_SORT_KEYS);
            ck_assert_str_eq(shown_text, ran_text);
            free(ran_text);
            json_decref(ran_json);
            with_state++;
        }
        json_decref(meta);
    }
    /* reward checkpoints carry no training state; sft and ppo ones do
     * when they are periodic (resumable) */
    ck_assert_msg(with_state > 0 ||
                      strcmp(json_string_value(json_object_get(r->json, "type")), "reward") == 0,
                  "job %lld: no checkpoint with training state: %s", (long long)job, list->body);
    reply_free(list);
    /* The model's shape, as gpt2_checkpoint.c writes it in the metadata. */
    json_t *meta = checkpoint_metadata(d, final_checkpoint(d, job, NULL));
    static const char *const keys[] = {"n_layer", "n_head", "d_model", "context"};
    static const char *const meta_keys[] = {"n_layer", "n_head", "n_embd", "n_positions"};
    static const int64_t tiny_sft[] = {1, 2, 32, 64};
    for (int k = 0; k < 4; k++) {
        json_t *v = json_object_get(shown, keys[k]);
        const char *in_meta = json_string_value(json_object_get(meta, meta_keys[k]));
        ck_assert_ptr_nonnull(in_meta);
        if (v != NULL)
            ck_assert_int_eq(json_integer_value(v), atoll(in_meta));
        if (sized_by_model)
            ck_assert_int_eq(json_integer_value(v), tiny_sft[k]);
    }
    json_decref(meta);
    free(shown_text);
    json_decref(shown);
    reply_free(r);
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
             "\"hyperparameters\":{\"max_steps\":2,\"batch_size\":4,\"sample_interval\":0,"
             "\"checkpoint_interval\":1}}",
             (long long)sft_data, (long long)sft_ck);
    const int64_t tuned = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, tuned, "model"), sft_ck);
    expect_succeeded(&d, tuned, "loss");
    expect_config_ran(&d, sft, false);
    expect_config_ran(&d, tuned, true); /* sft defaults: 4 layers, d_model 128 */

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
    expect_config_ran(&d, rm_file, true); /* reward's defaults: 2 layers, d_model 64 */
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
    grant_project_all(&d, project);
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
    /* A second annotator ranks three more, then is excluded from the
     * project: the jobs train on the first one's six rankings only. */
    char ann2[128], path2[128];
    const int64_t ann2_id = make_token(&d, "ann2", "annotator", ann2);
    grant_project(&d, project, ann2_id);
    snprintf(path2, sizeof path2, "/v1/projects/%lld", (long long)project);
    reply_free(expect_ok(http(&d, "PATCH", path2, d.admin, "{\"overlap\":2}", NULL)));
    snprintf(path2, sizeof path2, "/v1/projects/%lld/comparisons/next", (long long)project);
    for (int i = 0; i < 3; i++) {
        http_reply *next = expect_ok(http(&d, "GET", path2, ann2, NULL, NULL));
        json_t *cands = json_object_get(next->json, "candidates");
        char rbody[160], rpath[96];
        snprintf(rbody, sizeof rbody, "{\"order\":[[%lld],[%lld],[%lld]]}",
                 (long long)json_integer_value(json_object_get(json_array_get(cands, 0), "id")),
                 (long long)json_integer_value(json_object_get(json_array_get(cands, 1), "id")),
                 (long long)json_integer_value(json_object_get(json_array_get(cands, 2), "id")));
        snprintf(rpath, sizeof rpath, "/v1/comparisons/%lld/rankings", (long long)reply_id(next));
        reply_free(expect_ok(http(&d, "POST", rpath, ann2, rbody, NULL)));
        reply_free(next);
    }
    snprintf(path2, sizeof path2, "/v1/projects/%lld/annotators/%lld/exclude", (long long)project,
             (long long)ann2_id);
    reply_free(expect_ok(http(&d, "POST", path2, d.admin, NULL, NULL)));
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
    /* dpo on the same project's rankings (K = 3, ties: 2 or 3 pairs each) */
    snprintf(body, sizeof body,
             "{\"type\":\"dpo\",\"training_project\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"batch_size\":2,\"max_steps\":3,\"max_prompt_length\":24,"
             "\"max_response_length\":32}}",
             (long long)project, (long long)sft);
    const int64_t dpo_project = create(&d, "/v1/jobs", d.admin, body);
    expect_succeeded(&d, dpo_project, "rewards/margins");
    data = event_data(&d, dpo_project, "running");
    ck_assert_int_eq(json_integer_value(json_object_get(data, "n_train")), 6);
    json_decref(data);

    /* 4. ppo from a prompts dataset against the first reward model */
    const int64_t prompts = demo_dataset(&d, "prompts", 16, 5);
    snprintf(body, sizeof body,
             "{\"type\":\"ppo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":{\"total_updates\":2,"
             "\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,\"response_length\":8,"
             "\"sample_interval\":0,\"checkpoint_interval\":1}}",
             (long long)prompts, (long long)sft, (long long)rm_file);
    const int64_t ppo = create(&d, "/v1/jobs", d.admin, body);
    ck_assert_int_eq(job_json_int(&d, ppo, "reward_model"), rm_ck);
    expect_succeeded(&d, ppo, "objective/scores");
    expect_config_ran(&d, ppo, false); /* the policy's shape is no ppo hyperparameter */
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
        /* any other string is a model id of GET /v1/models */
        {"{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"ckpt-%lld\"}", pref, sft_ck,
         "model_not_found", "model"},
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

/* dpo (a preference dataset), grpo (a prompts dataset and a grader) and
 * rloo (a grader plus a reward model) through the daemon: each runs to
 * success, then again with its worker SIGKILLed after a periodic
 * checkpoint, and attempt 2 resumes and ends with the uninterrupted run's
 * final checkpoint, byte for byte. A grpo job without a reward, or with a
 * bad grader, is refused naming hyperparameters.grader. */
START_TEST(test_dpo_grpo_rloo_jobs_survive_kill) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft = demo_sft_job(&d, TINY_SFT, NULL);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    char body[2048];

    const int64_t pref = demo_dataset(&d, "preference", 24, 2);
    snprintf(body, sizeof body,
             "{\"type\":\"dpo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"batch_size\":4,\"max_steps\":6,\"learning_rate\":0.001,"
             "\"max_prompt_length\":24,\"max_response_length\":32,\"eval_interval\":2,"
             "\"checkpoint_interval\":2}}",
             (long long)pref, (long long)sft);
    const int64_t dpo = run_and_run_killed(&d, body, 1);
    ck_assert_int_gt(db_int(&d,
                            "SELECT count(DISTINCT name) FROM metrics WHERE job_id = ?1 AND name "
                            "IN ('rewards/accuracies', 'rewards/margins', 'logps/chosen', "
                            "'eval/rewards/accuracies')",
                            dpo),
                     3);

    /* the grader rewards answers that say "The" */
    static const char grader[] =
        "{\"type\":\"string_check\",\"name\":\"says_the\",\"input\":\"{{sample.output_text}}\","
        "\"reference\":\"The\",\"operation\":\"like\"}";
    const int64_t prompts = demo_dataset(&d, "prompts", 16, 5);
    snprintf(body, sizeof body,
             "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"total_steps\":6,\"prompts_per_step\":2,\"num_generations\":3,"
             "\"max_completion_length\":8,\"learning_rate\":0.001,\"checkpoint_interval\":2,"
             "\"grader\":%s}}",
             (long long)prompts, (long long)sft, grader);
    const int64_t grpo = run_and_run_killed(&d, body, 1);
    ck_assert_int_gt(db_int(&d,
                            "SELECT count(DISTINCT name) FROM metrics WHERE job_id = ?1 AND name "
                            "IN ('reward', 'frac_reward_zero_std', 'rewards/says_the/mean')",
                            grpo),
                     2);

    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)pref, (long long)sft);
    const int64_t rm = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, rm, "succeeded", 1));
    snprintf(body, sizeof body,
             "{\"type\":\"rloo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":{\"total_steps\":6,"
             "\"prompts_per_step\":2,\"num_generations\":3,\"max_completion_length\":8,"
             "\"learning_rate\":0.001,\"checkpoint_interval\":2,\"grader_weight\":0.5,"
             "\"grader\":%s}}",
             (long long)prompts, (long long)sft, (long long)rm, grader);
    const int64_t rloo = run_and_run_killed(&d, body, 1);
    ck_assert_int_gt(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = "
                            "'rewards/reward_model/mean'",
                            rloo),
                     0);

    /* no reward at all; a grader that does not parse */
    snprintf(body, sizeof body, "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\"}",
             (long long)prompts, (long long)sft);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, "missing_required_parameter",
                      "hyperparameters.grader");
    snprintf(body, sizeof body,
             "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"grader\":{\"type\":\"regex\",\"pattern\":\"(\"}}}",
             (long long)prompts, (long long)sft);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin, body, 400, "invalid_hyperparameter",
                      "hyperparameters.grader");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- rollouts ------------------------------------------------------------------- */

static double num(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    ck_assert_msg(json_is_number(v), "%s is not a number", key);
    return json_number_value(v);
}

/* Every rollout of job (GET /v1/jobs/{id}/rollouts, paged 3 at a time with
 * `after`), oldest first. */
static json_t *all_rollouts(const test_daemon *d, int64_t job) {
    json_t *all = json_array();
    int64_t after = 0;
    for (;;) {
        char path[128];
        snprintf(path, sizeof path, "/v1/jobs/%lld/rollouts?limit=3", (long long)job);
        if (after > 0)
            snprintf(path + strlen(path), sizeof path - strlen(path), "&after=%lld",
                     (long long)after);
        http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
        json_t *data = json_object_get(r->json, "data");
        size_t i;
        json_t *item;
        json_array_foreach(data, i, item) {
            ck_assert_str_eq(json_string_value(json_object_get(item, "object")), "job.rollout");
            ck_assert_int_eq(num(item, "job_id"), job);
            json_array_insert(all, 0, item); /* pages are newest first */
            after = (int64_t)num(item, "id");
        }
        const bool more = json_is_true(json_object_get(r->json, "has_more"));
        reply_free(r);
        if (!more)
            return all;
    }
}

/* The rollouts of one step: the items with that step, by sample. */
static int step_rows(json_t *all, double step, json_t **rows, int cap) {
    int n = 0;
    size_t i;
    json_t *item;
    json_array_foreach(all, i, item) {
        if (num(item, "step") == step && n < cap) {
            ck_assert_int_eq(num(item, "sample"), n);
            rows[n++] = item;
        }
    }
    return n;
}

/* PPO and GRPO jobs keep every sampled response (rollout_samples = the
 * batch, every update), and the stored numbers agree with a recomputation
 * from the stored numbers themselves: PPO's kl = logprob - ref_logprob
 * (k1), reward = -β kl plus the score on the last token, and the advantage
 * = GAE(γ = 1, λ = 0.95) over the stored rewards and values, whitened over
 * the batch's tokens; GRPO's kl = k3 of the same difference, the score on
 * the last token, and each token's advantage the group-normalised score
 * (r - mean) / (std + 1e-4). The events list leaves the rollouts out. */
START_TEST(test_rollouts_match_recomputation) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    const int64_t sft = demo_sft_job(&d, TINY_SFT, NULL);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    const int64_t pref = demo_dataset(&d, "preference", 24, 2);
    const int64_t prompts = demo_dataset(&d, "prompts", 16, 5);
    char body[2048];
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":" TINY_REWARD "}",
             (long long)pref, (long long)sft);
    const int64_t rm = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, rm, "succeeded", 1));
    snprintf(body, sizeof body,
             "{\"type\":\"ppo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":{\"total_updates\":2,"
             "\"batch_size\":4,\"mini_batch_size\":2,\"ppo_epochs\":1,\"response_length\":8,"
             "\"sample_interval\":0,\"rollout_samples\":4,\"rollout_interval\":1}}",
             (long long)prompts, (long long)sft, (long long)rm);
    const int64_t ppo = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, ppo, "succeeded", 1));
    json_t *all = all_rollouts(&d, ppo);
    ck_assert_int_eq(json_array_size(all), 8);
    for (int step = 1; step <= 2; step++) {
        json_t *rows[4];
        ck_assert_int_eq(step_rows(all, step, rows, 4), 4);
        /* GAE per row from the stored rewards and values, then whitened
         * over all the batch's tokens (ppo_whiten: Bessel, ε in the var) */
        double gae[4][8], sum = 0.0, sum2 = 0.0;
        int n_tok = 0, len[4];
        for (int b = 0; b < 4; b++) {
            json_t *tokens = json_object_get(rows[b], "tokens");
            len[b] = (int)json_array_size(tokens);
            ck_assert_int_ge(len[b], 1);
            ck_assert_int_le(len[b], 8);
            double next_adv = 0.0, next_value = 0.0;
            for (int t = len[b] - 1; t >= 0; t--) {
                json_t *tok = json_array_get(tokens, (size_t)t);
                const double kl = num(tok, "kl"), reward = num(tok, "reward");
                ck_assert(json_is_string(json_object_get(tok, "text")));
                ck_assert_close(kl, num(tok, "logprob") - num(tok, "ref_logprob"), 1e-5, 1e-5,
                                "ppo kl = logprob - ref_logprob");
                const double score = t == len[b] - 1 ? num(rows[b], "score") : 0.0;
                ck_assert_close(reward, -0.05 * kl + score, 1e-5, 1e-5,
                                "ppo reward = -beta kl (+ score)");
                const double value = num(tok, "value");
                const double delta = reward + next_value - value;
                gae[b][t] = delta + 0.95 * next_adv;
                next_adv = gae[b][t], next_value = value;
                sum += gae[b][t], n_tok++;
            }
        }
        const double mean = sum / n_tok;
        for (int b = 0; b < 4; b++)
            for (int t = 0; t < len[b]; t++)
                sum2 += (gae[b][t] - mean) * (gae[b][t] - mean);
        const double sd = sqrt(sum2 / (n_tok - 1) + 1e-8);
        for (int b = 0; b < 4; b++)
            for (int t = 0; t < len[b]; t++) {
                json_t *tok = json_array_get(json_object_get(rows[b], "tokens"), (size_t)t);
                ck_assert_close(num(tok, "advantage"), (gae[b][t] - mean) / sd, 1e-4, 1e-4,
                                "ppo advantage = whitened GAE");
            }
    }
    json_decref(all);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM job_events WHERE job_id = ?1 AND code = "
                            "'rollout'",
                            ppo),
                     8);
    char events_path[96];
    snprintf(events_path, sizeof events_path, "/v1/jobs/%lld/events?limit=1000", (long long)ppo);
    http_reply *ev = expect_ok(http(&d, "GET", events_path, d.admin, NULL, NULL));
    ck_assert_ptr_null(strstr(ev->body, "\"rollout\""));
    reply_free(ev);

    static const char grader[] =
        "{\"type\":\"string_check\",\"name\":\"says_the\",\"input\":\"{{sample.output_text}}\","
        "\"reference\":\"The\",\"operation\":\"like\"}";
    snprintf(body, sizeof body,
             "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"reward_model\":\"job:%lld\",\"hyperparameters\":{\"total_steps\":2,"
             "\"prompts_per_step\":2,\"num_generations\":3,\"max_completion_length\":8,"
             "\"learning_rate\":0.001,\"beta\":0.1,\"rollout_samples\":6,"
             "\"rollout_interval\":1,\"grader\":%s}}",
             (long long)prompts, (long long)sft, (long long)rm, grader);
    const int64_t grpo = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, grpo, "succeeded", 1));
    all = all_rollouts(&d, grpo);
    ck_assert_int_eq(json_array_size(all), 12);
    for (int step = 1; step <= 2; step++) {
        json_t *rows[6];
        ck_assert_int_eq(step_rows(all, step, rows, 6), 6);
        for (int g = 0; g < 2; g++) {
            double r[3], mean = 0.0, var = 0.0;
            for (int i = 0; i < 3; i++)
                r[i] = num(rows[g * 3 + i], "score"), mean += r[i] / 3;
            for (int i = 0; i < 3; i++)
                var += (r[i] - mean) * (r[i] - mean) / 2;
            const bool equal = r[0] == r[1] && r[1] == r[2];
            for (int i = 0; i < 3; i++) {
                json_t *row = rows[g * 3 + i], *tokens = json_object_get(row, "tokens");
                const double want = equal ? 0.0 : (r[i] - mean) / (sqrt(var) + 1e-4);
                const int n = (int)json_array_size(tokens);
                for (int t = 0; t < n; t++) {
                    json_t *tok = json_array_get(tokens, (size_t)t);
                    ck_assert_close(num(tok, "advantage"), want, 1e-4, 1e-4,
                                    "grpo advantage = group-normalised score");
                    const double dlt = num(tok, "logprob") - num(tok, "ref_logprob");
                    ck_assert_close(num(tok, "kl"), exp(-dlt) - 1.0 + dlt, 1e-5, 1e-4,
                                    "grpo kl = k3");
                    ck_assert_close(num(tok, "reward"), t == n - 1 ? r[i] : 0.0, 1e-6, 1e-6,
                                    "grpo reward = score on the last token");
                    ck_assert(json_is_null(json_object_get(tok, "value")));
                }
            }
        }
    }
    json_decref(all);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A job that cuts text at its context says so in its events: every row
 * here is 80 bytes or more and the context is 64, so every training row is
 * cut (the held-out ones are not counted). */
START_TEST(test_truncation_is_a_job_event) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    char rows[8 * 160] = "";
    for (int i = 0; i < 8; i++)
        snprintf(rows + strlen(rows), sizeof rows - strlen(rows),
                 "{\"prompt\":\"Tell me about %d.\",\"response\":\"%d is a number, and this answer "
                 "goes on well past the sixty-four bytes of context.\"}\n",
                 i, i);
    char fields[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld",
             (long long)create_dataset(&d, "sft", rows));
    const int64_t job = create_sft_job(&d, fields);
    reply_free(wait_job(&d, job, "succeeded", 1));
    json_t *data = event_data(&d, job, "truncated");
    const double n_rows = json_number_value(json_object_get(data, "n_rows"));
    ck_assert(n_rows >= 1 && n_rows < 8); /* some rows are held out for eval_loss */
    ck_assert(json_number_value(json_object_get(data, "n_truncated")) == n_rows);
    ck_assert(json_number_value(json_object_get(data, "context")) == 64);
    json_decref(data);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *rlhf_jobs_suite(void) {
    Suite *s = suite_create("rlhf_jobs");
    TCase *tc = tcase_create("jobs");
    tcase_add_test(tc, test_sft_job_on_dataset);
    tcase_add_test(tc, test_rlhf_pipeline_jobs);
    tcase_add_test(tc, test_dpo_grpo_rloo_jobs_survive_kill);
    tcase_add_test(tc, test_truncation_is_a_job_event);
    tcase_add_test(tc, test_rollouts_match_recomputation);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
