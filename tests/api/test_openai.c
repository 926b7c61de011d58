/* The OpenAI-compatible surface: /v1/files and /v1/fine_tuning/jobs against
 * the native resources they are a view of (docs/api.md, "OpenAI-compatible
 * files and fine-tuning"): object shapes, string ids, the translation of a
 * create into a native job, every error by code and param with nothing
 * stored, the status order, and the official openai npm SDK driving a real
 * rlhfd (tests/openai/sdk_test.mjs).
 *
 * The SDK runs here rather than as a separate `make test` step: this
 * harness already starts a daemon on a fresh database with a token and real
 * workers, the script's summary is cross-checked against the native API and
 * the database from C, and a machine without node or the npm modules gets
 * a skip that the run reports (test_skip), not a silent pass.
 */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jobs.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_server_util.h"
#include "test_util.h"

/* Chat rows (OpenAI's fine-tuning format) and the same as preference rows. */
static const char chat_jsonl[] =
    "{\"messages\":[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
    "\"content\":\"2+2?\"},{\"role\":\"assistant\",\"content\":\"4\"}]}\n"
    "{\"messages\":[{\"role\":\"user\",\"content\":\"3+3?\"},{\"role\":\"assistant\","
    "\"content\":\"6\"}]}\r\n"
    "\n"
    "{\"messages\":[{\"role\":\"user\",\"content\":\"1+1?\"},{\"role\":\"assistant\","
    "\"content\":\"2\"}]}";
static const char preference_jsonl[] =
    "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]},\"preferred_output\":"
    "[{\"role\":\"assistant\",\"content\":\"hello\"}],\"non_preferred_output\":[{\"role\":"
    "\"assistant\",\"content\":\"go away\"}]}\n";

static const char *str(const json_t *obj, const char *key) {
    return json_string_value(json_object_get(obj, key));
}

static int64_t count(const test_daemon *d, const char *table) {
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM %s WHERE ?1 = ?1", table);
    return db_int(d, sql, 0);
}

/* ---- files ------------------------------------------------------------------------ */

/* A file object as OpenAI shapes it, of len bytes, filename, format. */
static void expect_file(const json_t *f, int64_t id, size_t len, const char *filename,
                        const char *format) {
    char want[32];
    snprintf(want, sizeof want, "file-%lld", (long long)id);
    ck_assert_str_eq(str(f, "id"), want);
    ck_assert_str_eq(str(f, "object"), "file");
    ck_assert_int_eq(json_integer_value(json_object_get(f, "bytes")), (json_int_t)len);
    ck_assert_int_gt(json_integer_value(json_object_get(f, "created_at")), 1700000000);
    ck_assert_str_eq(str(f, "filename"), filename);
    ck_assert_str_eq(str(f, "purpose"), "fine-tune");
    ck_assert_str_eq(str(f, "status"), "processed");
    ck_assert_str_eq(str(f, "format"), format);
}

/* A refused upload: the error, and nothing stored. */
static void expect_bad_file(const test_daemon *d, const char *content, const char *purpose,
                            bool purpose_first, const char *extra, const char *code,
                            const char *param, int64_t line) {
    const int64_t before = count(d, "datasets"), pieces = count(d, "dataset_content");
    http_reply *r;
    if (extra != NULL) /* a body the test spells out whole, with its Content-Type */
        r = http_bytes(d, "POST", "/v1/files", d->admin, content, strlen(content), extra);
    else
        r = upload_file(d, d->admin, "bad.jsonl", content, strlen(content), purpose, purpose_first);
    expect_error(r, 400, code, param);
    if (line > 0)
        ck_assert_int_eq(
            json_integer_value(json_object_get(json_object_get(r->json, "error"), "line")), line);
    reply_free(r);
    ck_assert_int_eq(count(d, "datasets"), before);
    ck_assert_int_eq(count(d, "dataset_content"), pieces);
}

START_TEST(test_openai_files) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);

    /* Chat rows, purpose after the file: an sft dataset of three rows, the
     * conversation before each answer kept. */
    http_reply *r = expect_ok(
        upload_file(&d, d.admin, "chat.jsonl", chat_jsonl, strlen(chat_jsonl), "fine-tune", false));
    const int64_t chat = atoll(str(r->json, "id") + 5);
    expect_file(r->json, chat, strlen(chat_jsonl), "chat.jsonl", "sft");
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT n_rows FROM datasets WHERE id = ?1", chat), 3);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM dataset_rows WHERE dataset_id = ?1 AND line = 1 "
                            "AND prompt = '2+2?' AND response = '4' AND prompt_messages = "
                            "'[{\"role\":\"system\",\"content\":\"be brief\"},{\"role\":\"user\","
                            "\"content\":\"2+2?\"}]'",
                            chat),
                     1);
    /* blank line 3 skipped: the last row is line 4 */
    ck_assert_int_eq(db_int(&d, "SELECT max(line) FROM dataset_rows WHERE dataset_id = ?1", chat),
                     4);

    /* OpenAI preference rows, purpose first: a preference dataset. */
    r = expect_ok(upload_file(&d, d.admin, "prefs.jsonl", preference_jsonl,
                              strlen(preference_jsonl), "fine-tune", true));
    const int64_t prefs = atoll(str(r->json, "id") + 5);
    expect_file(r->json, prefs, strlen(preference_jsonl), "prefs.jsonl", "preference");
    reply_free(r);
    const int64_t prompts = openai_file(&d, "{\"prompt\":\"p\"}\n");
    ck_assert_int_eq(db_int(&d, "SELECT format = 'prompts' FROM datasets WHERE id = ?1", prompts),
                     1);

    /* The content is the bytes uploaded, CRLF and all. */
    char path[96];
    snprintf(path, sizeof path, "/v1/files/file-%lld/content", (long long)chat);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_uint_eq(r->body_len, strlen(chat_jsonl));
    ck_assert(memcmp(r->body, chat_jsonl, r->body_len) == 0);
    reply_free(r);

    /* A native dataset is a file, and its upload records its size. */
    const int64_t native = create_dataset(&d, "sft", "{\"prompt\":\"a\",\"response\":\"b\"}\n");
    snprintf(path, sizeof path, "/v1/files/file-%lld", (long long)native);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "bytes")),
                     (json_int_t)strlen("{\"prompt\":\"a\",\"response\":\"b\"}\n"));
    ck_assert_str_eq(str(r->json, "format"), "sft");
    reply_free(r);

    /* The list, newest first, paged by after = the last string id. */
    r = expect_ok(http(&d, "GET", "/v1/files?limit=2", d.admin, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    char want[32];
    snprintf(want, sizeof want, "file-%lld", (long long)native);
    ck_assert_str_eq(str(json_array_get(data, 0), "id"), want);
    ck_assert_str_eq(str(r->json, "first_id"), want);
    ck_assert(json_is_true(json_object_get(r->json, "has_more")));
    char next[96];
    snprintf(next, sizeof next, "/v1/files?limit=2&after=%s", str(r->json, "last_id"));
    reply_free(r);
    r = expect_ok(http(&d, "GET", next, d.admin, NULL, NULL));
    data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data), 2);
    snprintf(want, sizeof want, "file-%lld", (long long)chat);
    ck_assert_str_eq(str(json_array_get(data, 1), "id"), want);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
    r = expect_ok(http(&d, "GET", "/v1/files?purpose=batch", d.admin, NULL, NULL));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "data")), 0);
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/files?after=3", d.admin, NULL, 400, "invalid_value", "after");
    call_expect_error(&d, "GET", "/v1/files?purpose=x", d.admin, NULL, 400, "invalid_value",
                      "purpose");
    call_expect_error(&d, "GET", "/v1/files/file-999", d.admin, NULL, 404, "file_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/files/999", d.admin, NULL, 404, "unknown_route", NULL);

    /* Every refusal names its field and stores nothing. */
    expect_bad_file(&d, chat_jsonl, NULL, false, NULL, "missing_required_parameter", "purpose", 0);
    expect_bad_file(&d, chat_jsonl, "batch", false, NULL, "invalid_value", "purpose", 0);
    expect_bad_file(&d, chat_jsonl, "fine_tune", true, NULL, "invalid_value", "purpose", 0);
    expect_bad_file(&d,
                    "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"},{\"role\":"
                    "\"assistant\",\"content\":\"y\"}]}\n{\"messages\":[{\"role\":\"user\","
                    "\"content\":\"x\"}]}\n",
                    "fine-tune", false, NULL, "invalid_value", "messages", 2);
    expect_bad_file(&d, "{\"prompt\":\"p\",\"chosen\":\"a\"}\n", "fine-tune", false, NULL,
                    "missing_required_parameter", "rejected", 1);
    expect_bad_file(&d, "not json\n", "fine-tune", false, NULL, "invalid_json", NULL, 1);
    expect_bad_file(&d, "\n\n", "fine-tune", false, NULL, "empty_file", NULL, 0);
    expect_bad_file(&d, "{}", NULL, false, "Content-Type: application/json", "invalid_content_type",
                    NULL, 0);
    const char *no_file = "--bnd42\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                          "fine-tune\r\n--bnd42--\r\n";
    expect_bad_file(&d, no_file, NULL, false, "Content-Type: multipart/form-data; boundary=bnd42",
                    "missing_required_parameter", "file", 0);
    const char *other = "--bnd42\r\nContent-Disposition: form-data; name=\"expires_after\"\r\n\r\n"
                        "1\r\n--bnd42--\r\n";
    expect_bad_file(&d, other, NULL, false, "Content-Type: multipart/form-data; boundary=bnd42",
                    "unknown_parameter", "expires_after", 0);
    const char *two = "--bnd42\r\nContent-Disposition: form-data; name=\"file\"; "
                      "filename=\"a.jsonl\"\r\n\r\n{\"prompt\":\"p\"}\n\r\n--bnd42\r\n"
                      "Content-Disposition: form-data; name=\"file\"; filename=\"b.jsonl\"\r\n\r\n"
                      "{\"prompt\":\"q\"}\n\r\n--bnd42\r\nContent-Disposition: form-data; "
                      "name=\"purpose\"\r\n\r\nfine-tune\r\n--bnd42--\r\n";
    expect_bad_file(&d, two, NULL, false, "Content-Type: multipart/form-data; boundary=bnd42",
                    "invalid_value", "file", 0);
    char long_purpose[101]; /* over the 32 bytes kept, within upload_file's part */
    memset(long_purpose, 'f', sizeof long_purpose - 1);
    long_purpose[sizeof long_purpose - 1] = '\0';
    expect_bad_file(&d, chat_jsonl, long_purpose, true, NULL, "invalid_value", "purpose", 0);
    const char *cut = "--bnd42\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\n"
                      "fine-tune\r\n--bnd42\r\nContent-Disposition: form-data; name=\"file\"; "
                      "filename=\"f.jsonl\"\r\n\r\n{\"prompt\":\"p\"}\n";
    expect_bad_file(&d, cut, NULL, false, "Content-Type: multipart/form-data; boundary=bnd42",
                    "invalid_multipart", NULL, 0);

    /* Roles: a viewer reads, only an admin writes. */
    char viewer[128];
    make_token(&d, "vera", "viewer", viewer);
    r = upload_file(&d, viewer, "x.jsonl", chat_jsonl, strlen(chat_jsonl), "fine-tune", false);
    expect_error(r, 403, "insufficient_role", NULL);
    reply_free(r);
    reply_free(expect_ok(http(&d, "GET", "/v1/files", viewer, NULL, NULL)));

    /* Delete: not while a job trains on it; then gone with its rows and bytes. */
    char body[256];
    snprintf(body, sizeof body, "{\"type\":\"sft\",\"training_file\":%lld}", (long long)chat);
    const int64_t job = create_job(&d, body);
    snprintf(path, sizeof path, "/v1/files/file-%lld", (long long)chat);
    call_expect_error(&d, "DELETE", path, d.admin, NULL, 409, "file_in_use", NULL);
    snprintf(path, sizeof path, "/v1/files/file-%lld", (long long)prompts);
    r = expect_ok(http(&d, "DELETE", path, d.admin, NULL, NULL));
    snprintf(want, sizeof want, "file-%lld", (long long)prompts);
    ck_assert_str_eq(str(r->json, "id"), want);
    ck_assert(json_is_true(json_object_get(r->json, "deleted")));
    reply_free(r);
    call_expect_error(&d, "GET", path, d.admin, NULL, 404, "file_not_found", NULL);
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM dataset_content WHERE dataset_id = ?1", prompts), 0);
    reply_free(wait_job(&d, job, "succeeded", 0));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- fine-tuning jobs --------------------------------------------------------------- */

static http_reply *ft_create(const test_daemon *d, const char *body) {
    return http(d, "POST", "/v1/fine_tuning/jobs", d->admin, body, NULL);
}

/* A create that must fail with code and param, storing nothing. */
static void expect_bad_job(const test_daemon *d, const char *body, const char *code,
                           const char *param) {
    const int64_t jobs = count(d, "jobs"), ft_jobs = count(d, "fine_tuning_jobs");
    http_reply *r = ft_create(d, body);
    ck_assert_msg(r->status == 400, "%s: %ld %s", body, r->status, r->body);
    expect_error(r, 400, code, param);
    reply_free(r);
    ck_assert_int_eq(count(d, "jobs"), jobs);
    ck_assert_int_eq(count(d, "fine_tuning_jobs"), ft_jobs);
}

static http_reply *ft_get(const test_daemon *d, int64_t id) {
    char path[64];
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/ftjob-%lld", (long long)id);
    return expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
}

/* Starts d (no write rate limit) with the chat and the preference file
 * uploaded: their ids N of file-N. */
static void daemon_with_files(test_daemon *d, int64_t *chat, int64_t *prefs) {
    daemon_init(d);
    daemon_start(d, "--write-rate", "0", NULL);
    *chat = openai_file(d, chat_jsonl);
    *prefs = openai_file(d, preference_jsonl);
}

START_TEST(test_openai_job_create_maps_to_native) {
    test_daemon d;
    int64_t file, prefs;
    daemon_with_files(&d, &file, &prefs);
    char body[1024], f[32];
    snprintf(f, sizeof f, "file-%lld", (long long)file);

    /* Errors first (the fine_tuning_jobs table stays empty). */
    const struct {
        const char *body, *code, *param;
    } bad[] = {
        {"{\"training_file\":\"%s\"}", "missing_required_parameter", "model"},
        {"{\"model\":7,\"training_file\":\"%s\"}", "invalid_type", "model"},
        {"{\"model\":\"gpt-4o-mini\",\"training_file\":\"%s\"}", "model_not_found", "model"},
        {"{\"model\":\"scratch\"}", "missing_required_parameter", "training_file"},
        {"{\"model\":\"scratch\",\"training_file\":7}", "invalid_type", "training_file"},
        {"{\"model\":\"scratch\",\"training_file\":\"7\"}", "invalid_value", "training_file"},
        {"{\"model\":\"scratch\",\"training_file\":\"file-999\"}", "dataset_not_found",
         "training_file"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"validation_file\":\"file-0\"}",
         "invalid_value", "validation_file"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"suffix\":\"a:b\"}", "invalid_value",
         "suffix"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"seed\":\"1\"}", "invalid_type", "seed"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"seed\":-1}", "invalid_hyperparameter",
         "seed"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"metadata\":{\"k\":1}}", "invalid_value",
         "metadata.k"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"integrations\":[]}",
         "unknown_parameter", "integrations"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{}}",
         "missing_required_parameter", "method.type"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"magic\"}}",
         "invalid_value", "method.type"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":"
         "\"reinforcement\"}}",
         "missing_required_parameter", "method.reinforcement.grader"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"grader\":{}}}}",
         "unknown_parameter", "method.supervised.grader"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
         "\"dpo\":{}}}",
         "unknown_parameter", "method.dpo"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\"},"
         "\"hyperparameters\":{}}",
         "invalid_value", "hyperparameters"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"n_epochs\":1.5}}}}",
         "invalid_type", "method.supervised.hyperparameters.n_epochs"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"n_epochs\":20000}}}}",
         "invalid_hyperparameter", "method.supervised.hyperparameters.n_epochs"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
         "\"supervised\":{\"hyperparameters\":{\"learning_rate_multiplier\":0}}}}",
         "invalid_value", "method.supervised.hyperparameters.learning_rate_multiplier"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"hyperparameters\":{\"warmup\":1}}",
         "unknown_parameter", "hyperparameters.warmup"},
        {"{\"model\":\"scratch\",\"training_file\":\"%s\",\"hyperparameters\":{\"beta\":0.1}}",
         "invalid_value", "hyperparameters.beta"},
        {"{\"model\":\"ftckpt-999\",\"training_file\":\"%s\"}", "checkpoint_not_found", "model"},
        {"{\"model\":\"ft:scratch::ftjob-999\",\"training_file\":\"%s\"}", "job_not_found",
         "model"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(body, sizeof body, bad[i].body, f);
        expect_bad_job(&d, body, bad[i].code, bad[i].param);
    }
    /* A preference file cannot train a supervised job (the native check). */
    snprintf(body, sizeof body, "{\"model\":\"scratch\",\"training_file\":\"file-%lld\"}",
             (long long)prefs);
    expect_bad_job(&d, body, "invalid_dataset_format", "training_file");
    /* dpo runs as job type dpo: refused, naming it, while the registry has none. */
    snprintf(body, sizeof body,
             "{\"model\":\"scratch\",\"training_file\":\"file-%lld\",\"method\":{\"type\":"
             "\"dpo\"}}",
             (long long)prefs);
    if (job_type_find("dpo") == NULL) {
        const int64_t jobs = count(&d, "jobs");
        http_reply *r = ft_create(&d, body);
        expect_error(r, 400, "job_type_unavailable", "method.type");
        ck_assert_ptr_nonnull(
            strstr(str(json_object_get(r->json, "error"), "message"), "job type 'dpo'"));
        reply_free(r);
        ck_assert_int_eq(count(&d, "jobs"), jobs);
    }

    /* A create: the OpenAI shape, and the native job it is. */
    snprintf(body, sizeof body,
             "{\"model\":\"scratch\",\"training_file\":\"%s\",\"validation_file\":\"%s\","
             "\"suffix\":\"mine\",\"seed\":42,\"metadata\":{\"who\":\"test\"},\"method\":"
             "{\"type\":\"supervised\",\"supervised\":{\"hyperparameters\":{\"n_epochs\":2,"
             "\"batch_size\":\"auto\",\"learning_rate_multiplier\":2.5}}}}",
             f, f);
    http_reply *r = expect_ok(ft_create(&d, body));
    const char *id = str(r->json, "id");
    ck_assert_msg(id && strncmp(id, "ftjob-", 6) == 0, "%s", r->body);
    const int64_t job = atoll(id + 6);
    ck_assert_str_eq(str(r->json, "object"), "fine_tuning.job");
    ck_assert_str_eq(str(r->json, "status"), "queued");
    ck_assert_str_eq(str(r->json, "model"), "scratch");
    ck_assert_str_eq(str(r->json, "training_file"), f);
    ck_assert_str_eq(str(r->json, "validation_file"), f);
    ck_assert_str_eq(str(r->json, "user_provided_suffix"), "mine");
    ck_assert_str_eq(str(json_object_get(r->json, "metadata"), "who"), "test");
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "seed")), 42);
    ck_assert(json_is_null(json_object_get(r->json, "fine_tuned_model")));
    ck_assert(json_is_null(json_object_get(r->json, "error")));
    ck_assert(json_is_null(json_object_get(r->json, "trained_tokens")));
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "result_files")), 0);
    json_t *hp = json_object_get(r->json, "hyperparameters");
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "n_epochs")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "batch_size")), 16); /* sft's default */
    ck_assert_double_eq_tol(json_real_value(json_object_get(hp, "learning_rate_multiplier")), 2.5,
                            1e-12);
    json_t *method = json_object_get(r->json, "method");
    ck_assert_str_eq(str(method, "type"), "supervised");
    ck_assert(
        json_equal(json_object_get(json_object_get(method, "supervised"), "hyperparameters"), hp));
    reply_free(r);
    /* natively: an sft job with the translated hyperparameters (learning_rate
     * = 2.5 x sft's default 0.001) and the file as its datasets */
    r = get_job(&d, job);
    ck_assert_str_eq(str(r->json, "type"), "sft");
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "epochs")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "seed")), 42);
    ck_assert_double_eq_tol(json_real_value(json_object_get(hp, "learning_rate")), 0.0025, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "training_file")), file);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "validation_file")), file);
    ck_assert(json_is_null(json_object_get(r->json, "model")));
    reply_free(r);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM fine_tuning_jobs WHERE job_id = ?1 AND model = "
                            "'scratch' AND suffix = 'mine' AND metadata = '{\"who\":\"test\"}'",
                            job),
                     1);

    /* Done: the fine-tuned model's name, tokens, and the native result. */
    reply_free(wait_job(&d, job, "succeeded", 0));
    r = ft_get(&d, job);
    char name[96];
    snprintf(name, sizeof name, "ft:scratch:mine:ftjob-%lld", (long long)job);
    ck_assert_str_eq(str(r->json, "fine_tuned_model"), name);
    ck_assert_str_eq(str(r->json, "status"), "succeeded");
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "trained_tokens")),
                     db_int(&d,
                            "SELECT CAST(value AS INTEGER) FROM metrics WHERE job_id = ?1 AND "
                            "name = 'tokens' ORDER BY step DESC LIMIT 1",
                            job));
    ck_assert_int_gt(json_integer_value(json_object_get(r->json, "trained_tokens")), 0);
    reply_free(r);

    /* Its name, and its checkpoints' ids, are models of later jobs. */
    const int64_t ckpt =
        db_int(&d, "SELECT max(id) FROM checkpoints WHERE job_id = ?1 AND kind = 'final'", job);
    const struct {
        const char *model;
        const char *native; /* printf of the checkpoint id */
    } models[] = {{name, NULL}, {"ftckpt-%lld", "%lld"}, {"checkpoint:%lld", "%lld"}};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        char model[128];
        snprintf(model, sizeof model, models[i].model, (long long)ckpt);
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"training_file\":\"%s\",\"hyperparameters\":{\"n_epochs\":"
                 "1}}",
                 model, f);
        r = expect_ok(ft_create(&d, body));
        ck_assert_str_eq(str(r->json, "model"), model);
        const int64_t child = atoll(str(r->json, "id") + 6);
        reply_free(r);
        r = get_job(&d, child);
        ck_assert_int_eq(json_integer_value(json_object_get(r->json, "model")), ckpt);
        reply_free(r);
        reply_free(wait_job(&d, child, "succeeded", 0));
    }

    /* A native job is a fine-tuning job too. */
    snprintf(body, sizeof body, "{\"type\":\"sft\",\"training_file\":%lld,\"model\":%lld}",
             (long long)file, (long long)ckpt);
    const int64_t native = create_job(&d, body);
    r = ft_get(&d, native);
    snprintf(name, sizeof name, "ftckpt-%lld", (long long)ckpt);
    ck_assert_str_eq(str(r->json, "model"), name);
    ck_assert_str_eq(str(json_object_get(r->json, "method"), "type"), "supervised");
    ck_assert(json_is_null(json_object_get(r->json, "user_provided_suffix")));
    reply_free(r);
    reply_free(wait_job(&d, native, "succeeded", 0));
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The OpenAI status of every native status, the error object, lists,
 * events and checkpoints against the native routes. */
START_TEST(test_openai_status_events_checkpoints) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, "--write-rate", "0", NULL);
    const int64_t file = openai_file(&d, chat_jsonl);
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"scratch\",\"training_file\":\"file-%lld\",\"hyperparameters\":"
             "{\"n_epochs\":3}}",
             (long long)file);
    /* Every native transition is logged; the OpenAI statuses polled meanwhile
     * must follow OpenAI's order. */
    exec_sql(&d, "CREATE TABLE status_log (job_id INTEGER, status TEXT);"
                 "CREATE TRIGGER log_status AFTER UPDATE OF status ON jobs "
                 "BEGIN INSERT INTO status_log VALUES (NEW.id, NEW.status); END;");
    http_reply *r = expect_ok(ft_create(&d, body));
    const int64_t job = atoll(str(r->json, "id") + 6);
    reply_free(r);
    static const char *const order[] = {"validating_files", "queued", "running", "succeeded"};
    int last = 1; /* queued, as created */
    const int64_t deadline = now_ms() + DEADLINE_MS;
    for (;;) {
        r = ft_get(&d, job);
        int at = 0;
        while (at < 4 && strcmp(order[at], str(r->json, "status")) != 0)
            at++;
        ck_assert_msg(at < 4 && at >= last, "status %s after %s", str(r->json, "status"),
                      order[last]);
        last = at;
        reply_free(r);
        if (at == 3)
            break;
        ck_assert_msg(now_ms() < deadline, "job %lld did not finish", (long long)job);
        pause_ms(10);
    }
    /* natively it passed validating_files, which the OpenAI view calls running */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM status_log WHERE job_id = ?1 AND status = "
                            "'validating_files'",
                            job),
                     1);

    /* Native statuses written by hand onto a job no worker holds. */
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at, "
                 "lease_expires_ms, error) VALUES (900, 'sft', 'validating_files', '{}', 1, "
                 "1700000000, 9000000000000, NULL)");
    r = ft_get(&d, 900);
    ck_assert_str_eq(str(r->json, "status"), "running");
    reply_free(r);
    exec_sql(&d, "UPDATE jobs SET status = 'failed', error = 'training_file: line 3 is too long' "
                 "WHERE id = 900");
    r = ft_get(&d, 900);
    ck_assert_str_eq(str(r->json, "status"), "failed");
    json_t *err = json_object_get(r->json, "error");
    ck_assert_str_eq(str(err, "code"), "invalid_training_file");
    ck_assert_str_eq(str(err, "param"), "training_file");
    ck_assert_str_eq(str(err, "message"), "training_file: line 3 is too long");
    reply_free(r);
    exec_sql(&d, "UPDATE jobs SET error = 'rlhf-train was killed by signal 9' WHERE id = 900");
    r = ft_get(&d, 900);
    err = json_object_get(r->json, "error");
    ck_assert_str_eq(str(err, "code"), "job_failed");
    ck_assert(json_is_null(json_object_get(err, "param")));
    reply_free(r);

    /* Events: the native events, newest first, paged by after = ftevent-N. */
    const int64_t n_events = db_int(&d, "SELECT count(*) FROM job_events WHERE job_id = ?1", job);
    ck_assert_int_ge(n_events, 4);
    char path[128], after[32] = "";
    int64_t seen = 0, prev = INT64_MAX;
    for (;;) {
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/ftjob-%lld/events?limit=3%s%s",
                 (long long)job, after[0] ? "&after=" : "", after);
        r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
        size_t i;
        json_t *ev;
        json_array_foreach(json_object_get(r->json, "data"), i, ev) {
            ck_assert_str_eq(str(ev, "object"), "fine_tuning.job.event");
            const int64_t n = atoll(str(ev, "id") + 8);
            ck_assert_int_lt(n, prev);
            prev = n;
            ck_assert_int_eq(db_int(&d, "SELECT job_id FROM job_events WHERE id = ?1", n), job);
            ck_assert_ptr_nonnull(str(ev, "message"));
            ck_assert_ptr_nonnull(str(ev, "level"));
            seen++;
        }
        const bool more = json_is_true(json_object_get(r->json, "has_more"));
        snprintf(after, sizeof after, "%s", str(r->json, "last_id") ? str(r->json, "last_id") : "");
        reply_free(r);
        if (!more)
            break;
    }
    ck_assert_int_eq(seen, n_events);

    /* Checkpoints: the native ones, with OpenAI's names. */
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/ftjob-%lld/checkpoints", (long long)job);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    json_t *data = json_object_get(r->json, "data");
    ck_assert_int_eq(json_array_size(data),
                     db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", job));
    json_t *c = json_array_get(data, 0);
    const int64_t ckpt = db_int(&d, "SELECT max(id) FROM checkpoints WHERE job_id = ?1", job);
    char want[96];
    snprintf(want, sizeof want, "ftckpt-%lld", (long long)ckpt);
    ck_assert_str_eq(str(c, "id"), want);
    ck_assert_str_eq(str(c, "object"), "fine_tuning.job.checkpoint");
    snprintf(want, sizeof want, "ft:scratch::ftjob-%lld:ftckpt-%lld", (long long)job,
             (long long)ckpt);
    ck_assert_str_eq(str(c, "fine_tuned_model_checkpoint"), want);
    snprintf(want, sizeof want, "ftjob-%lld", (long long)job);
    ck_assert_str_eq(str(c, "fine_tuning_job_id"), want);
    json_t *metrics = json_object_get(c, "metrics");
    ck_assert(json_equal(json_object_get(metrics, "step"), json_object_get(c, "step_number")));
    ck_assert(json_equal(json_object_get(metrics, "train_loss"), json_object_get(metrics, "loss")));
    reply_free(r);

    /* The job list, newest first, paged by after = ftjob-N; 404s. */
    r = expect_ok(http(&d, "GET", "/v1/fine_tuning/jobs?limit=1", d.admin, NULL, NULL));
    ck_assert_str_eq(str(r->json, "first_id"), "ftjob-900");
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs?limit=1&after=%s", str(r->json, "last_id"));
    reply_free(r);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(str(r->json, "first_id"), want);
    ck_assert(json_is_false(json_object_get(r->json, "has_more")));
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/fine_tuning/jobs?after=ftjob-x", d.admin, NULL, 400,
                      "invalid_value", "after");
    call_expect_error(&d, "GET", "/v1/fine_tuning/jobs/ftjob-77", d.admin, NULL, 404,
                      "job_not_found", NULL);
    call_expect_error(&d, "GET", "/v1/fine_tuning/jobs/ftjob-77/events", d.admin, NULL, 404,
                      "job_not_found", NULL);
    call_expect_error(&d, "POST", "/v1/fine_tuning/jobs/ftjob-77/cancel", d.admin, NULL, 404,
                      "job_not_found", NULL);
    snprintf(path, sizeof path, "/v1/fine_tuning/jobs/ftjob-%lld/cancel", (long long)job);
    call_expect_error(&d, "POST", path, d.admin, NULL, 409, "job_not_cancellable", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- dpo and reinforcement ---------------------------------------------------------------- */

/* A prompts file with a reference answer per row (item.prompt, item.answer). */
static const char prompts_jsonl[] = "{\"prompt\":\"1+1=\",\"answer\":\"2\"}\n"
                                    "{\"prompt\":\"2+2=\",\"answer\":\"4\"}\n"
                                    "{\"prompt\":\"3+3=\",\"answer\":\"6\"}\n"
                                    "{\"prompt\":\"4+4=\",\"answer\":\"8\"}\n"
                                    "{\"prompt\":\"5+5=\",\"answer\":\"10\"}\n";
#define EXACT_GRADER                                                                               \
    "{\"type\":\"string_check\",\"name\":\"exact\",\"input\":\"{{sample.output_text}}\","          \
    "\"reference\":\"{{item.answer}}\",\"operation\":\"eq\"}"

/* method dpo's hyperparameters (beta, and "auto" everywhere) and method
 * reinforcement with OpenAI's grader objects: every hyperparameter name
 * mapped onto grpo's, the graders rlhfd cannot run refused naming the
 * field, a score_model grader's model becoming the job's reward_model, and
 * a reinforcement job run to success from a fine-tuned model. */
START_TEST(test_openai_dpo_and_reinforcement_map_to_native) {
    test_daemon d;
    int64_t chat, prefs;
    daemon_with_files(&d, &chat, &prefs);
    const int64_t prompts = openai_file(&d, prompts_jsonl);
    ck_assert_int_eq(db_int(&d, "SELECT format = 'prompts' FROM datasets WHERE id = ?1", prompts),
                     1);
    char fields[128], body[2048], model[64];
    snprintf(fields, sizeof fields, "\"training_file\":%lld", (long long)chat);
    const int64_t sft = create_sft_job(&d, fields);
    reply_free(wait_job(&d, sft, "succeeded", 0));
    const int64_t ckpt = final_checkpoint(&d, sft, NULL);
    snprintf(model, sizeof model, "ft:scratch::ftjob-%lld", (long long)sft);

    /* dpo: beta, the rest "auto" (dpo's defaults: 1 epoch, learning rate 1e-6) */
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"method\":{\"type\":\"dpo\","
             "\"dpo\":{\"hyperparameters\":{\"beta\":0.5,\"n_epochs\":\"auto\",\"batch_size\":2,"
             "\"learning_rate_multiplier\":\"auto\"}}}}",
             model, (long long)prefs);
    http_reply *r = expect_ok(ft_create(&d, body));
    const int64_t dpo = atoll(str(r->json, "id") + 6);
    json_t *hp = json_object_get(r->json, "hyperparameters");
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "beta")), 0.5, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "n_epochs")), 1);
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "learning_rate_multiplier")), 1,
                            1e-12);
    ck_assert_str_eq(str(json_object_get(r->json, "method"), "type"), "dpo");
    reply_free(r);
    r = get_job(&d, dpo);
    ck_assert_str_eq(str(r->json, "type"), "dpo");
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "beta")), 0.5, 1e-12);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "batch_size")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "epochs")), 1);
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "learning_rate")), 1e-6, 1e-18);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "model")), ckpt);
    reply_free(r);
    reply_free(cancel_job(&d, dpo));

    /* reinforcement's errors, each naming OpenAI's field (nothing stored) */
    const struct {
        const char *grader, *hyperparameters, *code, *param;
    } bad[] = {
        {"{\"type\":\"python\",\"name\":\"p\",\"source\":\"def grade(s, i): return 1\"}", "{}",
         "unsupported_grader", "method.reinforcement.grader.type"},
        {"{\"type\":\"endpoint\",\"name\":\"e\",\"url\":\"https://example.com\"}", "{}",
         "unsupported_grader", "method.reinforcement.grader.type"},
        {"{\"type\":\"multi\",\"graders\":{\"exact\":" EXACT_GRADER ",\"judge\":{\"type\":"
         "\"label_model\",\"name\":\"judge\",\"model\":\"gpt-4o\",\"input\":[],\"labels\":[],"
         "\"passing_labels\":[]}},\"calculate_output\":\"exact\"}",
         "{}", "unsupported_grader", "method.reinforcement.grader.graders.judge.type"},
        {"{\"type\":\"string_check\",\"name\":\"x\",\"input\":\"{{sample.output_text}}\","
         "\"reference\":\"{{item.answer}}\",\"operation\":\"equals\"}",
         "{}", "invalid_grader", "method.reinforcement.grader.operation"},
        {"{\"type\":\"text_similarity\",\"name\":\"x\",\"input\":\"{{sample.output_text}}\","
         "\"reference\":\"{{item.answer}}\",\"evaluation_metric\":\"cosine\"}",
         "{}", "invalid_grader", "method.reinforcement.grader.evaluation_metric"},
        {"{\"type\":\"string_check\",\"name\":\"x\",\"input\":\"{{sample.output_text}}\","
         "\"reference\":\"{{ item.reference_answer }}\",\"operation\":\"eq\"}",
         "{}", "invalid_value", "method.reinforcement.grader.reference"},
        {"{\"type\":\"score_model\",\"name\":\"rm\",\"model\":\"ftckpt-1\",\"input\":[{\"role\":"
         "\"user\",\"content\":\"{{sample.output_text}}\"}]}",
         "{}", "invalid_value", "method.reinforcement.grader.input"},
        {"{\"type\":\"score_model\",\"name\":\"rm\",\"model\":\"ftckpt-1\",\"sampling_params\":"
         "{\"temperature\":1}}",
         "{}", "invalid_value", "method.reinforcement.grader.sampling_params"},
        {"{\"type\":\"multi\",\"graders\":{\"a\":{\"type\":\"score_model\",\"model\":\"ftckpt-1\"},"
         "\"b\":{\"type\":\"score_model\",\"model\":\"ftckpt-2\"}},\"calculate_output\":\"a+b\"}",
         "{}", "invalid_value", "method.reinforcement.grader.graders.b.model"},
        {"{\"type\":\"score_model\",\"model\":\"ftckpt-999\"}", "{}", "checkpoint_not_found",
         "reward_model"},
        {"{\"type\":\"score_model\",\"model\":\"ftckpt-%lld\"}", "{}", "invalid_model",
         "reward_model"},
        {EXACT_GRADER, "{\"reasoning_effort\":\"high\"}", "invalid_value",
         "method.reinforcement.hyperparameters.reasoning_effort"},
        {EXACT_GRADER, "{\"eval_samples\":4}", "invalid_value",
         "method.reinforcement.hyperparameters.eval_samples"},
        {EXACT_GRADER, "{\"beta\":0.1}", "invalid_value",
         "method.reinforcement.hyperparameters.beta"},
        {EXACT_GRADER, "{\"warmup\":1}", "unknown_parameter",
         "method.reinforcement.hyperparameters.warmup"},
        {EXACT_GRADER, "{\"compute_multiplier\":1000}", "invalid_hyperparameter",
         "method.reinforcement.hyperparameters.compute_multiplier"},
        {EXACT_GRADER, "{\"batch_size\":0}", "invalid_value",
         "method.reinforcement.hyperparameters.batch_size"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char grader[1024];
        snprintf(grader, sizeof grader, bad[i].grader, (long long)ckpt);
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"method\":{\"type\":"
                 "\"reinforcement\",\"reinforcement\":{\"grader\":%s,\"hyperparameters\":%s}}}",
                 model, (long long)prompts, grader, bad[i].hyperparameters);
        expect_bad_job(&d, body, bad[i].code, bad[i].param);
    }

    /* A score_model grader's model is the job's reward_model, weighted 0
     * beside the grader (the reward is the grader's score alone). */
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"method\":{\"type\":"
             "\"reinforcement\",\"reinforcement\":{\"grader\":{\"type\":\"score_model\",\"name\":"
             "\"rm\",\"model\":\"ft:scratch::ftjob-%lld\",\"range\":[-1,1]}}}}",
             model, (long long)prompts, (long long)sft);
    r = ft_create(&d, body);
    expect_error(r, 400, "invalid_model", "reward_model"); /* an sft job's, not a reward job's */
    ck_assert_ptr_nonnull(strstr(str(json_object_get(r->json, "error"), "message"), "job"));
    reply_free(r);

    /* The mapping: 5 rows, 2 a step → 3 steps a pass, 2 passes; 8
     * completions × 0.25 → 2; grpo's learning rate 1e-6 × 10. */
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"suffix\":\"rft\",\"method\":{"
             "\"type\":\"reinforcement\",\"reinforcement\":{\"grader\":" EXACT_GRADER
             ",\"hyperparameters\":{\"n_epochs\":2,\"batch_size\":2,\"compute_multiplier\":0.25,"
             "\"learning_rate_multiplier\":10,\"eval_interval\":1,\"eval_samples\":1,"
             "\"reasoning_effort\":\"default\"}}}}",
             model, (long long)prompts);
    r = expect_ok(ft_create(&d, body));
    const int64_t rft = atoll(str(r->json, "id") + 6);
    json_t *method = json_object_get(r->json, "method");
    ck_assert_str_eq(str(method, "type"), "reinforcement");
    json_t *want = json_loads(EXACT_GRADER, 0, NULL);
    ck_assert(
        json_equal(json_object_get(json_object_get(method, "reinforcement"), "grader"), want));
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert(json_equal(
        json_object_get(json_object_get(method, "reinforcement"), "hyperparameters"), hp));
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "n_epochs")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "batch_size")), 2);
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "compute_multiplier")), 0.25,
                            1e-12);
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "learning_rate_multiplier")), 10,
                            1e-9);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "eval_interval")), 1);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "eval_samples")), 1);
    ck_assert_str_eq(str(hp, "reasoning_effort"), "default");
    reply_free(r);
    r = get_job(&d, rft);
    ck_assert_str_eq(str(r->json, "type"), "grpo");
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "model")), ckpt);
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "total_steps")), 6);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "prompts_per_step")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "num_generations")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "eval_interval")), 1);
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "learning_rate")), 1e-5, 1e-15);
    ck_assert(json_equal(json_object_get(hp, "grader"), want));
    json_decref(want);
    reply_free(r);
    reply_free(wait_job(&d, rft, "succeeded", 0));
    r = ft_get(&d, rft);
    char name[96];
    snprintf(name, sizeof name, "ft:scratch:rft:ftjob-%lld", (long long)rft);
    ck_assert_str_eq(str(r->json, "fine_tuned_model"), name);
    reply_free(r);
    /* the grader, by its name, scored every step's completions */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(DISTINCT step) FROM metrics WHERE job_id = ?1 AND "
                            "name = 'rewards/exact/mean'",
                            rft),
                     6);

    /* A score_model grader with a reward job's model: the job's
     * reward_model, weighted 0 beside the grader, scoring through it. */
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":%lld,\"hyperparameters\":"
             "" TINY_REWARD "}",
             (long long)demo_dataset(&d, "preference", 24, 2), (long long)ckpt);
    const int64_t rm = create_job(&d, body);
    reply_free(wait_job(&d, rm, "succeeded", 0));
    snprintf(
        body, sizeof body,
        "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"method\":{\"type\":"
        "\"reinforcement\",\"reinforcement\":{\"grader\":{\"type\":\"multi\",\"graders\":{"
        "\"rm\":{\"type\":\"score_model\",\"name\":\"rm\",\"model\":\"ft:scratch::ftjob-%lld\","
        "\"range\":[-1,1]},\"exact\":" EXACT_GRADER "},\"calculate_output\":\"0.5 * rm + "
        "exact\"},\"hyperparameters\":{\"n_epochs\":1,\"batch_size\":5,"
        "\"compute_multiplier\":0.25}}}}",
        model, (long long)prompts, (long long)rm);
    r = expect_ok(ft_create(&d, body));
    const int64_t scored = atoll(str(r->json, "id") + 6);
    reply_free(r);
    r = get_job(&d, scored);
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "reward_model")),
                     final_checkpoint(&d, rm, NULL));
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_double_eq(json_number_value(json_object_get(hp, "reward_model_weight")), 0);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "total_steps")), 1);
    reply_free(r);
    reply_free(wait_job(&d, scored, "succeeded", 0));
    /* both parts scored; the reward is 0.5 rm + exact, each within its range */
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name IN "
                            "('rewards/rm/mean', 'rewards/exact/mean')",
                            scored),
                     2);
    ck_assert_int_eq(db_int(&d,
                            "SELECT count(*) FROM metrics WHERE job_id = ?1 AND name = "
                            "'rewards/rm/mean' AND value BETWEEN -1 AND 1",
                            scored),
                     1);
    /* mean reward = 0.5 · mean rm + mean exact (to 1e-9): no second,
     * normalised reward-model term beside the grader */
    ck_assert_int_eq(db_int(&d,
                            "SELECT abs(t.value - 0.5 * m.value - e.value) < 1e-9 FROM metrics t "
                            "JOIN metrics m ON m.job_id = t.job_id AND m.step = t.step AND m.name "
                            "= 'rewards/rm/mean' JOIN metrics e ON e.job_id = t.job_id AND e.step "
                            "= t.step AND e.name = 'rewards/exact/mean' WHERE t.job_id = ?1 AND "
                            "t.name = 'reward'",
                            scored),
                     1);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- the official SDK --------------------------------------------------------------------- */

START_TEST(test_openai_sdk) {
    char script[4096], node[4096], missing[4200];
    snprintf(script, sizeof script, "%s/tests/openai/sdk_test.mjs", test_repo_dir());
    if (!find_node_package("openai", node, sizeof node, missing, sizeof missing)) {
        test_skip("%s", missing);
        return;
    }
    test_daemon d;
    char qwen[256];
    daemon_with_model(&d, "qwen", true, qwen, sizeof qwen); /* a model to chat with */
    char url[64], file[160];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/v1", d.port);
    snprintf(file, sizeof file, "%s/sft.jsonl", d.dir);
    FILE *f = fopen(file, "w");
    ck_assert_ptr_nonnull(f);
    fputs(chat_jsonl, f);
    fclose(f);
    setenv("RLHFD_URL", url, 1);
    setenv("RLHFD_TOKEN", d.admin, 1);
    setenv("RLHFD_SFT_FILE", file, 1);
    setenv("RLHFD_CHAT_MODEL", "qwen", 1);
    char *const argv[] = {node, script, NULL};
    char out[4096];
    const int rc = run_output(argv, out, sizeof out, true);
    unsetenv("RLHFD_URL"), unsetenv("RLHFD_TOKEN"), unsetenv("RLHFD_SFT_FILE");
    unsetenv("RLHFD_CHAT_MODEL");
    ck_assert_msg(rc == 0, "tests/openai/sdk_test.mjs exited %d (its reason is on stderr)", rc);
    json_error_t jerr;
    json_t *summary = json_loads(out, 0, &jerr);
    ck_assert_msg(summary != NULL, "the script's summary: %s (%s)", jerr.text, out);

    /* What the SDK saw is what the native API and the database hold. */
    const int64_t job = atoll(str(summary, "job") + 6);
    http_reply *r = get_job(&d, job);
    ck_assert_str_eq(str(r->json, "status"), "succeeded");
    ck_assert_str_eq(str(r->json, "type"), "sft");
    json_t *hp = json_object_get(r->json, "hyperparameters");
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "epochs")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "batch_size")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "seed")), 3);
    reply_free(r);
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "events")),
                     db_int(&d, "SELECT count(*) FROM job_events WHERE job_id = ?1", job));
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "trained_tokens")),
                     db_int(&d,
                            "SELECT CAST(value AS INTEGER) FROM metrics WHERE job_id = ?1 AND "
                            "name = 'tokens' ORDER BY step DESC LIMIT 1",
                            job));
    json_t *ckpts = json_object_get(summary, "checkpoints");
    ck_assert_int_eq(json_array_size(ckpts),
                     db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", job));
    ck_assert_int_eq(atoll(json_string_value(json_array_get(ckpts, 0)) + 7),
                     db_int(&d, "SELECT max(id) FROM checkpoints WHERE job_id = ?1", job));
    const int64_t cancelled = atoll(str(summary, "cancelled") + 6);
    ck_assert_int_eq(db_int(&d, "SELECT status = 'cancelled' FROM jobs WHERE id = ?1", cancelled),
                     1);
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "jobs_listed")),
                     db_int(&d, "SELECT count(*) FROM jobs WHERE id <= ?1", cancelled));
    /* dpo and reinforcement ran as the native dpo and grpo jobs they map to */
    json_t *methods = json_object_get(summary, "methods");
    r = get_job(&d, atoll(str(methods, "dpo") + 6));
    ck_assert_str_eq(str(r->json, "type"), "dpo");
    ck_assert_str_eq(str(r->json, "status"), "succeeded");
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_double_eq_tol(json_number_value(json_object_get(hp, "beta")), 0.25, 1e-12);
    reply_free(r);
    r = get_job(&d, atoll(str(methods, "reinforcement") + 6));
    ck_assert_str_eq(str(r->json, "type"), "grpo");
    ck_assert_str_eq(str(r->json, "status"), "succeeded");
    hp = json_object_get(r->json, "hyperparameters");
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "total_steps")),
                     3); /* 3 rows, 1 a step */
    ck_assert_int_eq(json_integer_value(json_object_get(hp, "num_generations")), 2);
    ck_assert_str_eq(str(json_object_get(hp, "grader"), "type"), "multi");
    reply_free(r);
    ck_assert_int_eq(json_integer_value(json_object_get(summary, "files_listed")),
                     db_int(&d,
                            "SELECT count(*) FROM datasets WHERE name NOT IN ('prefs.jsonl', "
                            "'prompts.jsonl')",
                            0)); /* the files the dpo and reinforcement jobs add come after */
    const int64_t file_id = atoll(str(summary, "file") + 5);
    ck_assert_int_eq(db_int(&d, "SELECT bytes FROM datasets WHERE id = ?1", file_id),
                     (int64_t)strlen(chat_jsonl));
    /* the chat and the completion the SDK read are the daemon's (same seed) */
    r = expect_ok(http(&d, "POST", "/v1/chat/completions", d.admin,
                       "{\"model\":\"qwen\",\"messages\":[{\"role\":\"system\",\"content\":"
                       "\"Be brief.\"},{\"role\":\"user\",\"content\":\"hello\"}],"
                       "\"max_tokens\":10,\"temperature\":0.7,\"seed\":11}",
                       NULL));
    ck_assert_str_eq(
        str(json_object_get(json_array_get(json_object_get(r->json, "choices"), 0), "message"),
            "content"),
        str(summary, "chat"));
    reply_free(r);
    ck_assert_int_ge(json_integer_value(json_object_get(summary, "chat_chunks")), 3);
    /* models.list ran before the dpo and reinforcement jobs were created */
    const int64_t first_method_job = atoll(str(json_object_get(summary, "methods"), "dpo") + 6);
    ck_assert_int_eq(json_array_size(json_object_get(summary, "models")),
                     1 + db_int(&d,
                                "SELECT count(*) FROM jobs WHERE status = 'succeeded' AND id < ?1",
                                first_method_job));
    json_decref(summary);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *openai_suite(void) {
    Suite *s = suite_create("openai");
    TCase *tc = tcase_create("openai");
    tcase_add_test(tc, test_openai_files);
    tcase_add_test(tc, test_openai_job_create_maps_to_native);
    tcase_add_test(tc, test_openai_status_events_checkpoints);
    tcase_add_test(tc, test_openai_dpo_and_reinforcement_map_to_native);
    tcase_add_test(tc, test_openai_sdk);
    tcase_set_timeout(tc, 180);
    suite_add_tcase(s, tc);
    return s;
}
