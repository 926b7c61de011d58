/* Models as a resource: a Hugging Face GPT-2 directory (random tiny
 * weights, a byte-level tokenizer.json, a ChatML template) registered from
 * under a --model-root (and refused outside it: "..", a symbolic link out,
 * an absolute path elsewhere), uploaded file by file (X-Sha256 checked,
 * size-limited, then checked as a whole with the reasons per file), listed
 * with fine-tuned models as OpenAI model objects, trained from by id, not
 * deletable while a job uses it, and a checkpoint of it downloaded as a
 * Hugging Face directory tar that opens again through model_open. Then a
 * worker killed with SIGKILL at each step of a checkpoint write leaves no
 * row without its file, and a restart collects what it left behind.
 */
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checkpoint_file.h"
#include "db.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "jobs.h"
#include "lora.h"
#include "model.h"
#include "rng.h"
#include "sha256.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_hf_fixture.h"
#include "test_server_util.h"
#include "test_util.h"
#include "tokenizer.h"

static char *read_file(const char *dir, const char *name, size_t *n) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    ck_assert_msg(f != NULL, "cannot read %s", path);
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc(*n + 1);
    ck_assert_int_eq(fread(bytes, 1, *n, f), *n);
    bytes[*n] = '\0';
    fclose(f);
    return bytes;
}

static http_reply *post_model(const test_daemon *d, const char *name, const char *path) {
    char body[1024];
    snprintf(body, sizeof body, "{\"id\":\"%s\",\"path\":\"%s\"}", name, path);
    return http(d, "POST", "/v1/models", d->admin, body, NULL);
}

/* expect_error, then frees the reply. */
static void expect_error_free(http_reply *r, long status, const char *code, const char *param) {
    expect_error(r, status, code, param);
    reply_free(r);
}

static const char *str(http_reply *r, const char *key) {
    return json_string_value(json_object_get(r->json, key));
}

/* The model ids GET /v1/models lists, joined by spaces. */
static void listed_ids(const test_daemon *d, char *out, size_t cap) {
    http_reply *r = expect_ok(http(d, "GET", "/v1/models", d->admin, NULL, NULL));
    ck_assert_str_eq(str(r, "object"), "list");
    size_t used = 0, i;
    json_t *m;
    out[0] = '\0';
    json_array_foreach(json_object_get(r->json, "data"), i, m) {
        ck_assert_str_eq(json_string_value(json_object_get(m, "object")), "model");
        ck_assert_str_eq(json_string_value(json_object_get(m, "owned_by")), "rlhfd");
        ck_assert(json_is_integer(json_object_get(m, "created")));
        used += (size_t)snprintf(out + used, cap - used, "%s ",
                                 json_string_value(json_object_get(m, "id")));
    }
    reply_free(r);
}

START_TEST(test_register_directory_inside_roots_only) {
    test_daemon d;
    daemon_init(&d);
    char root[160], outside[160], path[256];
    snprintf(root, sizeof root, "%s/models", d.dir);
    snprintf(outside, sizeof outside, "%s/elsewhere", d.dir);
    ck_assert_int_eq(mkdir(root, 0755), 0);
    ck_assert_int_eq(mkdir(outside, 0755), 0);
    snprintf(path, sizeof path, "%s/tiny", root);
    test_write_hf_model_dir(path, 1, true);
    snprintf(path, sizeof path, "%s/other", outside);
    test_write_hf_model_dir(path, 2, false);
    char link[256];
    snprintf(link, sizeof link, "%s/escape", root);
    ck_assert_int_eq(symlink(path, link), 0);
    daemon_start(&d, "--model-root", root, NULL);

    http_reply *r = expect_ok(post_model(&d, "tiny", "tiny"));
    ck_assert_str_eq(str(r, "id"), "tiny");
    ck_assert_str_eq(str(r, "object"), "model");
    ck_assert_str_eq(str(r, "status"), "ready");
    ck_assert_str_eq(str(r, "family"), "gpt2");
    ck_assert_str_eq(str(r, "chat_format"), "chatml");
    ck_assert_str_eq(str(r, "source"), "directory");
    reply_free(r);
    expect_error_free(post_model(&d, "tiny", "tiny"), 409, "model_exists", "id");
    expect_error_free(post_model(&d, "x", "../elsewhere/other"), 400, "invalid_path", "path");
    r = post_model(&d, "x", "escape");
    expect_error_free(r, 400, "invalid_path", "path");
    r = post_model(&d, "x", path);
    ck_assert_int_eq(r->status, 400);
    ck_assert_msg(strstr(r->body, "outside every --model-root") != NULL, "%s", r->body);
    reply_free(r);
    expect_error_free(post_model(&d, "x", "missing"), 400, "invalid_path", "path");
    expect_error_free(post_model(&d, "../x", "tiny"), 400, "invalid_value", "id");

    /* a directory that is wrong in three files says so per file */
    snprintf(path, sizeof path, "%s/broken", root);
    test_write_hf_model_dir(path, 3, false);
    char file[300];
    snprintf(file, sizeof file, "%s/tokenizer.json", path);
    ck_assert_int_eq(unlink(file), 0);
    test_write_file_in(path, "tokenizer_config.json", "{\"chat_template\": \"{{ hello }}\"}", 32);
    const gpt2_config wider = {257, 64, 2, 2, 32, false}; /* the weights have 16 */
    char *config = gpt2_hf_config_json(&wider);
    test_write_file_in(path, "config.json", config, strlen(config));
    free(config);
    r = post_model(&d, "broken", "broken");
    ck_assert_int_eq(r->status, 400);
    json_t *files = json_object_get(json_object_get(r->json, "error"), "files");
    ck_assert_msg(json_object_get(files, "tokenizer.json") != NULL, "%s", r->body);
    ck_assert_msg(json_object_get(files, "tokenizer_config.json") != NULL, "%s", r->body);
    ck_assert_msg(json_object_get(files, "model.safetensors") != NULL, "%s", r->body);
    ck_assert_int_eq(json_object_size(files), 3);
    reply_free(r);

    /* a Llama-family (Qwen3) directory is checked by its family's loader:
     * its weights pass, and a tokenizer with more ids than its vocabulary
     * (48) is refused */
    snprintf(path, sizeof path, "%s/qwen3", root);
    ck_assert_int_eq(mkdir(path, 0755), 0);
    static const char *const qwen3_files[] = {"config.json", "model.safetensors"};
    for (int i = 0; i < 2; i++) {
        char fixture[4200];
        size_t n;
        snprintf(fixture, sizeof fixture, "%s/tests/fixtures/llama/qwen3", test_repo_dir());
        char *bytes = read_file(fixture, qwen3_files[i], &n);
        test_write_file_in(path, qwen3_files[i], bytes, n);
        free(bytes);
    }
    char tiny[256];
    snprintf(tiny, sizeof tiny, "%s/tiny", root);
    for (int i = 0; i < 2; i++) {
        static const char *const tokenizer_files[] = {"tokenizer.json", "tokenizer_config.json"};
        size_t n;
        char *bytes = read_file(tiny, tokenizer_files[i], &n);
        test_write_file_in(path, tokenizer_files[i], bytes, n);
        free(bytes);
    }
    r = post_model(&d, "qwen3", "qwen3");
    ck_assert_int_eq(r->status, 400);
    files = json_object_get(json_object_get(r->json, "error"), "files");
    ck_assert_int_eq(json_object_size(files), 1);
    ck_assert_msg(strstr(json_string_value(json_object_get(files, "tokenizer.json")),
                         "ids go up to 256; the model's vocabulary has 48") != NULL,
                  "%s", r->body);
    reply_free(r);

    char ids[1024];
    listed_ids(&d, ids, sizeof ids);
    ck_assert_str_eq(ids, "tiny ");
    r = expect_ok(http(&d, "GET", "/v1/models/tiny", d.admin, NULL, NULL));
    ck_assert_str_eq(str(r, "id"), "tiny");
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/models/nope", d.admin, NULL, 404, "model_not_found", NULL);
    char viewer[128];
    make_token(&d, "v", "viewer", viewer);
    r = http(&d, "POST", "/v1/models", viewer, "{\"id\":\"y\",\"path\":\"tiny\"}", NULL);
    ck_assert_int_eq(r->status, 403);
    reply_free(r);
    r = expect_ok(http(&d, "DELETE", "/v1/models/tiny", d.admin, NULL, NULL));
    ck_assert(json_is_true(json_object_get(r->json, "deleted")));
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/models/tiny", d.admin, NULL, 404, "model_not_found", NULL);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* POST one file of an upload with its digest (or a wrong one). */
static http_reply *upload_model_file(const test_daemon *d, const char *model_name, const char *dir,
                                     const char *name, bool wrong_sha) {
    size_t n;
    char *bytes = read_file(dir, name, &n), sha[65], header[128], path[256];
    sha256_hex(bytes, n, sha);
    if (wrong_sha)
        sha[0] = sha[0] == '0' ? '1' : '0';
    snprintf(header, sizeof header, "X-Sha256: %s", sha);
    snprintf(path, sizeof path, "/v1/models/%s/files/%s", model_name, name);
    http_reply *r = http_bytes(d, "POST", path, d->admin, bytes, n, header);
    free(bytes);
    return r;
}

START_TEST(test_upload_checked_per_file_and_whole) {
    test_daemon d;
    daemon_init(&d);
    char dir[160], data_dir[200];
    snprintf(dir, sizeof dir, "%s/src", d.dir);
    test_write_hf_model_dir(dir, 4, true);
    daemon_start(&d, "--max-model-file-bytes", "200000", NULL);
    snprintf(data_dir, sizeof data_dir, "%s.data", d.db);

    http_reply *r = expect_ok(
        http(&d, "POST", "/v1/models", d.admin, "{\"id\":\"up\",\"source\":\"upload\"}", NULL));
    ck_assert_str_eq(str(r, "status"), "uploading");
    reply_free(r);
    static const char *const files[] = {"config.json", "model.safetensors", "tokenizer.json",
                                        "tokenizer_config.json"};
    /* the digest is checked; nothing is recorded when it does not match */
    expect_error_free(upload_model_file(&d, "up", dir, "config.json", true), 400, "sha256_mismatch",
                      "X-Sha256");
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM model_files", 0), 0);
    for (int i = 0; i < 4; i++) {
        r = expect_ok(upload_model_file(&d, "up", dir, files[i], false));
        size_t n;
        char *bytes = read_file(dir, files[i], &n), sha[65], object[512];
        sha256_hex(bytes, n, sha);
        free(bytes);
        ck_assert_str_eq(str(r, "sha256"), sha);
        ck_assert_int_eq(json_integer_value(json_object_get(r->json, "size_bytes")), n);
        snprintf(object, sizeof object, "%s/objects/%s", data_dir, sha);
        ck_assert_msg(access(object, R_OK) == 0, "no %s", object);
        reply_free(r);
    }
    /* too large, and a name that is not a model file */
    char *big = calloc(1, 300000);
    test_write_file_in(dir, "big.safetensors", big, 300000);
    free(big);
    r = upload_model_file(&d, "up", dir, "big.safetensors", false);
    ck_assert_int_eq(r->status, 413);
    reply_free(r);
    r = http(&d, "POST", "/v1/models/up/files/run.sh", d.admin, "x", "X-Sha256: 00");
    expect_error_free(r, 400, "invalid_file_name", NULL);
    r = expect_ok(http(&d, "POST", "/v1/models/up/complete", d.admin, "{}", NULL));
    ck_assert_str_eq(str(r, "status"), "ready");
    ck_assert_str_eq(str(r, "chat_format"), "chatml");
    ck_assert_int_eq(json_array_size(json_object_get(r->json, "files")), 4);
    reply_free(r);
    /* a ready model takes no more files */
    expect_error_free(upload_model_file(&d, "up", dir, "config.json", false), 409,
                      "model_not_uploading", NULL);

    /* an upload missing its weights and tokenizer, with an unknown chat
     * template, fails with the reasons per file */
    reply_free(expect_ok(
        http(&d, "POST", "/v1/models", d.admin, "{\"id\":\"bad\",\"source\":\"upload\"}", NULL)));
    reply_free(expect_ok(upload_model_file(&d, "bad", dir, "config.json", false)));
    test_write_file_in(dir, "tokenizer_config.json", "{\"chat_template\": \"{{ x }}\"}", 28);
    reply_free(expect_ok(upload_model_file(&d, "bad", dir, "tokenizer_config.json", false)));
    r = expect_ok(http(&d, "POST", "/v1/models/bad/complete", d.admin, "{}", NULL));
    ck_assert_str_eq(str(r, "status"), "failed");
    json_t *error = json_object_get(r->json, "error");
    ck_assert_msg(json_object_get(error, "model.safetensors") != NULL, "%s", r->body);
    ck_assert_msg(json_object_get(error, "tokenizer.json") != NULL, "%s", r->body);
    ck_assert_msg(json_object_get(error, "tokenizer_config.json") != NULL, "%s", r->body);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

START_TEST(test_train_from_model_and_download_hf_dir) {
    test_daemon d;
    char path[256];
    daemon_with_model(&d, "tiny", false, path, sizeof path);
    /* what the worker hands the trainers as tokenizer_dir loads the
     * directory's tokenizer.json, not the byte-level default */
    tokenizer tok;
    char why[256];
    const job_inputs in = {.tokenizer_dir = path};
    ck_assert_msg(job_load_tokenizer(&tok, &in, why, sizeof why) == 0, "%s", why);
    ck_assert_ptr_nonnull(tokenizer_hf(&tok));
    ck_assert_int_eq(tok.vocab_size, 257);
    tokenizer_free(&tok);
    const int64_t data = sft_dataset(&d, "arith", 16);
    char fields[256];
    snprintf(fields, sizeof fields, "\"training_file\":%lld,\"model\":\"nope\"", (long long)data);
    call_expect_error(&d, "POST", "/v1/jobs", d.admin,
                      "{\"type\":\"sft\",\"training_file\":1,\"model\":\"nope\"}", 400,
                      "model_not_found", "model");
    snprintf(fields, sizeof fields, "\"training_file\":%lld,\"model\":\"tiny\"", (long long)data);
    const int64_t job = create_sft_job(&d, fields);
    reply_free(wait_job(&d, job, "succeeded", 1));
    ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", job),
                     db_int(&d, "SELECT id FROM models WHERE name = 'tiny'", 0));
    /* every checkpoint went to the artifact store */
    ck_assert_int_gt(db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1", job), 1);
    ck_assert_int_eq(
        db_int(&d, "SELECT count(*) FROM checkpoints WHERE job_id = ?1 AND path IS NULL", job), 0);
    char sha[65];
    const int64_t ck = final_checkpoint(&d, job, sha);

    /* the fine-tuned model is listed and retrievable by its ft: id */
    char ft[128], ids[1024];
    snprintf(ft, sizeof ft, "ft:tiny::ftjob-%lld", (long long)job);
    listed_ids(&d, ids, sizeof ids);
    char want[256];
    snprintf(want, sizeof want, "tiny %s ", ft);
    ck_assert_str_eq(ids, want);
    snprintf(path, sizeof path, "/v1/models/%s", ft);
    http_reply *r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_int_eq(json_integer_value(json_object_get(r->json, "checkpoint_id")), ck);
    ck_assert_str_eq(str(r, "parent"), "tiny");
    reply_free(r);
    call_expect_error(&d, "GET", "/v1/models/ft:other:sft:1", d.admin, NULL, 404, "model_not_found",
                      NULL);
    /* a child job names it; the lineage keeps the base model */
    char body[512];
    snprintf(body, sizeof body, "\"training_file\":%lld,\"model\":\"%s\"", (long long)data, ft);
    const int64_t child = create_sft_job(&d, body);
    ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", child),
                     db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", job));
    call_expect_error(&d, "DELETE", "/v1/models/tiny", d.admin, NULL, 409, "model_in_use", NULL);

    /* the download: a Hugging Face directory that opens as the checkpoint */
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/hf.tar", (long long)ck);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/x-tar");
    char out[200], names[8][64];
    snprintf(out, sizeof out, "%s/export", d.dir);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    const size_t n = test_untar(r->body, r->body_len, out, names, 8);
    reply_free(r);
    ck_assert_uint_eq(n, 4);
    ck_assert_str_eq(names[0], "config.json");
    ck_assert_str_eq(names[1], "model.safetensors");
    ck_assert_str_eq(names[2], "tokenizer.json");
    ck_assert_str_eq(names[3], "tokenizer_config.json");
    gpt2_model exported, stored;
    char err[256];
    ck_assert_msg(model_open(out, NULL, &exported, NULL, err, sizeof err) == 0, "%s", err);
    r = checkpoint_content(&d, ck);
    ck_assert_msg(model_open_bytes(r->body, r->body_len, NULL, &stored, NULL, err, sizeof err) == 0,
                  "%s", err);
    reply_free(r);
    ck_assert_int_eq(exported.num_params, stored.num_params);
    ck_assert_int_eq(memcmp(exported.param_memory, stored.param_memory,
                            sizeof(float) * (size_t)stored.num_params),
                     0);
    gpt2_free(&exported);
    /* ?dtype=bf16: the same weights rounded to bfloat16, stored as BF16 */
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/hf.tar?dtype=bf16", (long long)ck);
    r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
    snprintf(out, sizeof out, "%s/export-bf16", d.dir);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    ck_assert_uint_eq(test_untar(r->body, r->body_len, out, names, 8), 4);
    reply_free(r);
    ck_assert_msg(model_open(out, NULL, &exported, NULL, err, sizeof err) == 0, "%s", err);
    char file[256];
    snprintf(file, sizeof file, "%s/model.safetensors", out);
    expect_bf16_export(file, exported.param_memory, stored.param_memory, stored.num_params);
    gpt2_free(&exported);
    gpt2_free(&stored);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A dataset of n rows of format: row (a printf format with one %s) with
 * "hello" and "hold" in turn. */
static int64_t rows_dataset(const test_daemon *d, const char *format, const char *row, int n) {
    char jsonl[4096] = "";
    for (int i = 0; i < n; i++) {
        const size_t len = strlen(jsonl);
        snprintf(jsonl + len, sizeof jsonl - len, row, i % 2 ? "hello" : "hold");
    }
    return create_dataset(d, format, jsonl);
}

/* A Llama-family base model trains through the daemon: the tiny Qwen3
 * directory (test_hf_fixture.h) registered from the model root, then dpo on
 * OpenAI preference rows (their conversation rendered by its chat template),
 * then grpo from the dpo job's checkpoint on prompts with a grader, each run
 * whole and again with its
 * worker SIGKILLed after a periodic checkpoint (the resumed run ends with
 * the same final checkpoint, byte for byte). The final checkpoints open as
 * Llama-family models with the directory's vocabulary. */
START_TEST(test_llama_base_model_trains_dpo_and_grpo) {
    test_daemon d;
    char path[256];
    daemon_with_model(&d, "qwen", true, path, sizeof path);
    char body[2048];
    const int64_t pref =
        rows_dataset(&d, "preference",
                     "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]},"
                     "\"preferred_output\":[{\"role\":\"assistant\",\"content\":\"hello world\"}],"
                     "\"non_preferred_output\":[{\"role\":\"assistant\",\"content\":\"ow\"}]}\n",
                     8);
    snprintf(body, sizeof body,
             "{\"type\":\"dpo\",\"training_file\":%lld,\"model\":\"qwen\","
             "\"hyperparameters\":{\"batch_size\":2,\"max_steps\":4,\"learning_rate\":0.01,"
             "\"eval_fraction\":0,\"checkpoint_interval\":2}}",
             (long long)pref);
    const int64_t dpo = run_and_run_killed(&d, body, 1);
    const int64_t prompts =
        rows_dataset(&d, "prompts", "{\"prompt\":\"%s\",\"answer\":\"lll\"}\n", 4);
    snprintf(body, sizeof body,
             "{\"type\":\"grpo\",\"training_file\":%lld,\"model\":\"job:%lld\","
             "\"hyperparameters\":{\"total_steps\":4,\"prompts_per_step\":2,\"num_generations\":"
             "3,\"max_completion_length\":6,\"learning_rate\":0.01,\"checkpoint_interval\":2,"
             "\"lora_r\":4,\"beta\":0.04,\"grader\":{\"type\":\"text_similarity\",\"input\":"
             "\"{{sample.output_text}}\",\"reference\":\"{{item.answer}}\","
             "\"evaluation_metric\":\"fuzzy_match\"}}}",
             (long long)prompts, (long long)dpo);
    const int64_t grpo = run_and_run_killed(&d, body, 1);
    const int64_t jobs[] = {dpo, grpo};
    for (int i = 0; i < 2; i++) {
        ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", jobs[i]),
                         db_int(&d, "SELECT id FROM models WHERE name = 'qwen'", 0));
        http_reply *r = checkpoint_content(&d, final_checkpoint(&d, jobs[i], NULL));
        model m;
        char err[256];
        ck_assert_msg(model_load_bytes(r->body, r->body_len, NULL, &m, NULL, err, sizeof err) == 0,
                      "%s", err);
        reply_free(r);
        ck_assert_int_eq(m.family, MODEL_FAMILY_LLAMA);
        ck_assert_int_eq(model_vocab_size(&m), TEST_TINY_VOCAB);
        model_free(&m);
    }
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* The OpenAI-compatible fine-tuning API takes a registered base model by
 * its name, for either family: a supervised job from the tiny GPT-2 and
 * the tiny Qwen3 directory (chat rows, rendered by the model's chat
 * template), then a reinforcement job from the fine-tuned model's ft: name.
 * Both jobs' lineage is the registered model, so the reinforcement job's
 * final checkpoint has the directory's family and vocabulary; an unknown
 * name is model_not_found. */
START_TEST(test_openai_fine_tuning_from_base_models) {
    const struct {
        const char *name;
        bool llama;
        int vocab;
        int family;
    } bases[] = {{"tiny", false, 257, MODEL_FAMILY_GPT2},
                 {"qwen", true, TEST_TINY_VOCAB, MODEL_FAMILY_LLAMA}};
    for (size_t b = 0; b < sizeof bases / sizeof bases[0]; b++) {
        test_daemon d;
        char path[256], body[2048], file[32], ft[128];
        daemon_with_model(&d, bases[b].name, bases[b].llama, path, sizeof path);
        const int64_t chat = openai_file(
            &d, "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\","
                "\"content\":\"hello\"}]}\n"
                "{\"messages\":[{\"role\":\"user\",\"content\":\"hey\"},{\"role\":\"assistant\","
                "\"content\":\"hello\"}]}\n");
        snprintf(file, sizeof file, "file-%lld", (long long)chat);
        call_expect_error(&d, "POST", "/v1/fine_tuning/jobs", d.admin,
                          "{\"model\":\"nope\",\"training_file\":\"file-1\"}", 400,
                          "model_not_found", "model");
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"training_file\":\"%s\",\"method\":{\"type\":\"supervised\","
                 "\"supervised\":{\"hyperparameters\":{\"n_epochs\":2,\"batch_size\":2,"
                 "\"learning_rate_multiplier\":10}}}}",
                 bases[b].name, file);
        http_reply *r = expect_ok(http(&d, "POST", "/v1/fine_tuning/jobs", d.admin, body, NULL));
        ck_assert_str_eq(json_string_value(json_object_get(r->json, "model")), bases[b].name);
        const int64_t sft = atoll(json_string_value(json_object_get(r->json, "id")) + 6);
        reply_free(r);
        reply_free(wait_job(&d, sft, "succeeded", 0));
        snprintf(ft, sizeof ft, "ft:%s::ftjob-%lld", bases[b].name, (long long)sft);
        snprintf(path, sizeof path, "/v1/fine_tuning/jobs/ftjob-%lld", (long long)sft);
        r = expect_ok(http(&d, "GET", path, d.admin, NULL, NULL));
        ck_assert_str_eq(json_string_value(json_object_get(r->json, "fine_tuned_model")), ft);
        reply_free(r);

        const int64_t prompts = openai_file(&d, "{\"prompt\":\"hi\",\"answer\":\"hello\"}\n"
                                                "{\"prompt\":\"hey\",\"answer\":\"hello\"}\n");
        snprintf(body, sizeof body,
                 "{\"model\":\"%s\",\"training_file\":\"file-%lld\",\"method\":{\"type\":"
                 "\"reinforcement\",\"reinforcement\":{\"grader\":{\"type\":\"text_similarity\","
                 "\"name\":\"close\",\"input\":\"{{sample.output_text}}\",\"reference\":"
                 "\"{{item.answer}}\",\"evaluation_metric\":\"fuzzy_match\"},\"hyperparameters\":"
                 "{\"n_epochs\":1,\"batch_size\":2,\"compute_multiplier\":0.25}}}}",
                 ft, (long long)prompts);
        r = expect_ok(http(&d, "POST", "/v1/fine_tuning/jobs", d.admin, body, NULL));
        ck_assert_str_eq(json_string_value(json_object_get(r->json, "model")), ft);
        const int64_t rft = atoll(json_string_value(json_object_get(r->json, "id")) + 6);
        reply_free(r);
        reply_free(wait_job(&d, rft, "succeeded", 0));
        const int64_t registered =
            db_int(&d, "SELECT id FROM models WHERE name = 'tiny' OR name = 'qwen'", 0);
        ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", sft),
                         registered);
        ck_assert_int_eq(db_int(&d, "SELECT base_model_id FROM jobs WHERE id = ?1", rft),
                         registered);
        ck_assert_int_eq(db_int(&d, "SELECT type = 'grpo' FROM jobs WHERE id = ?1", rft), 1);
        r = checkpoint_content(&d, final_checkpoint(&d, rft, NULL));
        model m;
        char err[256];
        ck_assert_msg(model_load_bytes(r->body, r->body_len, NULL, &m, NULL, err, sizeof err) == 0,
                      "%s", err);
        reply_free(r);
        ck_assert_int_eq(m.family, bases[b].family);
        ck_assert_int_eq(model_vocab_size(&m), bases[b].vocab);
        model_free(&m);
        daemon_stop(&d);
        daemon_cleanup(&d);
    }
}
END_TEST

/* A job's hyperparameters.context beyond the registered model's
 * max_position_embeddings (the tiny Qwen3 directory's 128) is refused when
 * the job is created, naming both; within it, and left to its default, the
 * job is created (the default lowered to the model's positions when it
 * runs). */
START_TEST(test_context_beyond_model_positions_is_refused) {
    test_daemon d;
    char path[256], body[512];
    daemon_with_model(&d, "qwen", true, path, sizeof path);
    const int64_t ds = create_dataset(&d, "sft", "{\"prompt\":\"hi\",\"response\":\"hello\"}\n");
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"qwen\",\"hyperparameters\":"
             "{\"context\":200}}",
             (long long)ds);
    http_reply *r = http(&d, "POST", "/v1/jobs", d.admin, body, NULL);
    ck_assert_int_eq(r->status, 400);
    const json_t *e = json_object_get(r->json, "error");
    ck_assert_str_eq(json_string_value(json_object_get(e, "code")), "invalid_hyperparameter");
    ck_assert_str_eq(json_string_value(json_object_get(e, "param")), "hyperparameters.context");
    const char *message = json_string_value(json_object_get(e, "message"));
    ck_assert_msg(strstr(message, "max_position_embeddings") && strstr(message, "at most 128"),
                  "%s", message);
    reply_free(r);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 0);
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"qwen\",\"hyperparameters\":"
             "{\"context\":128}}",
             (long long)ds);
    create_job(&d, body);
    snprintf(body, sizeof body, "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"qwen\"}",
             (long long)ds);
    create_job(&d, body);
    ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM jobs", 0), 2);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A registered GPT-2 directory (64 positions) runs a job at the context
 * asked for below them, and the job shows it; left out, the default (128)
 * is lowered to 64. A row longer than 24 tokens is cut at 24 (the
 * "truncated" event). */
START_TEST(test_gpt2_job_runs_at_the_context_asked) {
    test_daemon d;
    char path[256], body[512];
    daemon_with_model(&d, "tiny", false, path, sizeof path);
    const int64_t ds = create_dataset(
        &d, "sft",
        "{\"prompt\":\"hi\",\"response\":\"a response of well over twenty-four bytes\"}\n");
    static const char *const asked[] = {"{\"context\":24,\"max_steps\":1}", "{\"max_steps\":1}"};
    static const int64_t runs_at[] = {24, 64};
    for (int i = 0; i < 2; i++) {
        snprintf(body, sizeof body,
                 "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"tiny\","
                 "\"hyperparameters\":%s}",
                 (long long)ds, asked[i]);
        const int64_t job = create_job(&d, body);
        http_reply *r = wait_job(&d, job, "succeeded", 0);
        ck_assert_int_eq(json_integer_value(json_object_get(
                             json_object_get(r->json, "hyperparameters"), "context")),
                         runs_at[i]);
        reply_free(r);
        ck_assert_int_eq(has_event(&d, job, "truncated"), i == 0);
    }
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* One number from the database file (read-only); NAN if no row. */
static double db_double(const test_daemon *d, const char *sql, int64_t arg) {
    sqlite3 *db;
    ck_assert_int_eq(sqlite3_open_v2(d->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    ck_assert_int_eq(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    sqlite3_bind_int64(st, 1, arg);
    const double v = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_double(st, 0) : NAN;
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

/* An OpenAI chat row of three turns, uploaded to rlhfd, trains on all three
 * assistant turns through the model's chat template (the tiny Qwen3
 * directory's ChatML): the sft job's first loss (before any update) is the
 * mean cross-entropy of the targets cut out by hand below, from the loaded
 * directory — not that of the last turn alone. */
START_TEST(test_chat_rows_train_every_assistant_turn) {
    test_daemon d;
    char path[256], body[1024], err[256];
    daemon_with_model(&d, "qwen", true, path, sizeof path);
    const int64_t ds = create_dataset(
        &d, "sft",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"},{\"role\":\"assistant\",\"content\":"
        "\"hello\"},{\"role\":\"user\",\"content\":\"well\"},{\"role\":\"assistant\",\"content\":"
        "\"low\"},{\"role\":\"user\",\"content\":\"how\"},{\"role\":\"assistant\",\"content\":"
        "\"who\"}]}\n");
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"qwen\",\"hyperparameters\":"
             "{\"batch_size\":1,\"max_steps\":1,\"eval_fraction\":0}}",
             (long long)ds);
    const int64_t job = create_job(&d, body);
    reply_free(wait_job(&d, job, "succeeded", 0));
    const double loss = db_double(
        &d, "SELECT value FROM metrics WHERE job_id = ?1 AND name = 'loss' AND step = 1", job);
    ck_assert_int_eq(has_event(&d, job, "chat_without_template"), 0);

    /* the rendering cut where each trained span (content and <|im_end|>) starts and ends */
    const char *pieces[] = {"<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
                            "hello<|im_end|>",
                            "\n<|im_start|>user\nwell<|im_end|>\n<|im_start|>assistant\n",
                            "low<|im_end|>",
                            "\n<|im_start|>user\nhow<|im_end|>\n<|im_start|>assistant\n",
                            "who<|im_end|>",
                            "\n"};
    enum { N_PIECES = 7, CAP = 256 };
    tokenizer tok;
    ck_assert_msg(tokenizer_load_hf(&tok, path, err, sizeof err) == 0, "%s", err);
    int32_t ids[CAP] = {262}; /* the tokenizer's <bos>, which ChatML does not write */
    int from[N_PIECES + 1], n = 1;
    for (int k = 0; k < N_PIECES; k++) {
        from[k] = n;
        n += (int)tokenizer_encode(&tok, pieces[k], strlen(pieces[k]), ids + n, (size_t)(CAP - n),
                                   true);
    }
    from[N_PIECES] = n;
    /* the pieces tokenize as the whole does */
    char whole[512] = "";
    for (int k = 0; k < N_PIECES; k++)
        strcat(whole, pieces[k]);
    int32_t whole_ids[CAP];
    ck_assert_int_eq(tokenizer_encode_prompt(&tok, whole, strlen(whole), whole_ids, CAP, true), n);
    ck_assert(memcmp(ids, whole_ids, sizeof *ids * (size_t)n) == 0);
    /* target t (predicted at position t - 1) trains inside pieces 1, 3, 5 */
    const int T = n - 1;
    int32_t targets[CAP];
    uint8_t mask[CAP];
    int trained = 0;
    for (int t = 1; t < n; t++) {
        targets[t - 1] = ids[t];
        mask[t - 1] = (t >= from[1] && t < from[2]) || (t >= from[3] && t < from[4]) ||
                      (t >= from[5] && t < from[6]);
        trained += mask[t - 1];
    }
    ck_assert_int_eq(trained, (from[2] - from[1]) + (from[4] - from[3]) + (from[6] - from[5]));
    model m;
    ck_assert_msg(model_load(path, NULL, &m, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(model_reserve(&m, 1, T, err, sizeof err) == 0, "%s", err);
    model_forward(&m, ids, NULL, NULL, 1, T, 0, T);
    const double want = model_lm_loss(&m, targets, mask, 0.0f);
    ck_assert_msg(fabs(loss - want) <= 1e-4 * fabs(want), "job loss %.7f, by hand %.7f", loss,
                  want);
    model_free(&m);
    tokenizer_free(&tok);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A LoRA checkpoint (stored as a blob in its row, as rlhf-train wrote them
 * before the artifact store) downloads as the merged model plus its
 * adapters as a PEFT directory: adapter/ holds the same A and B. */
START_TEST(test_lora_checkpoint_downloads_with_adapter_dir) {
    test_daemon d;
    daemon_init(&d);
    daemon_start(&d, NULL);
    exec_sql(&d, "INSERT INTO jobs (id, type, status, config, max_attempts, created_at) "
                 "VALUES (1, 'ppo', 'succeeded', '{}', 1, 0)");
    const gpt2_config cfg = {257, 64, 2, 2, 16, false};
    gpt2_model m;
    char err[256];
    ck_assert_int_eq(gpt2_init(&m, &cfg, err, sizeof err), 0);
    rng_state rng;
    rng_seed(&rng, 9, 0);
    gpt2_init_weights(&m, &rng);
    model_lora lora = {.r = 2, .alpha = 4.0f, .seed = 3};
    ck_assert_int_eq(lora_parse_targets("c_attn", &lora.targets, err, sizeof err), 0);
    ck_assert_msg(model_lora_attach(&m, &lora, err, sizeof err) == 0, "%s", err);
    safetensors_tensor tensors[16];
    char names[16][128];
    const int n_lora = gpt2_lora_tensors(&m, tensors, names);
    ck_assert_int_eq(n_lora, 4);     /* A and B of c_attn, 2 layers */
    for (int i = 0; i < n_lora; i++) /* B starts at 0: give it values */
        if (strstr(tensors[i].name, "lora_B") != NULL)
            for (int64_t k = 0; k < tensors[i].shape[0] * tensors[i].shape[1]; k++)
                ((float *)tensors[i].data)[k] = 0.01f * (float)(k % 7);
    size_t n_bytes;
    void *bytes = gpt2_checkpoint_serialize(&m, NULL, 0, NULL, 0, &n_bytes);
    size_t n_adapter_want;
    void *adapter_want = gpt2_lora_serialize(&m, &n_adapter_want);
    gpt2_free(&m);
    sqlite3 *db;
    sqlite3_stmt *st;
    char sha[65];
    sha256_hex(bytes, n_bytes, sha);
    ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
    ck_assert_int_eq(sqlite3_prepare_v2(db,
                                        "INSERT INTO checkpoints (id, job_id, step, kind, bytes, "
                                        "sha256, size_bytes, created_at) VALUES (7, 1, 1, "
                                        "'final', ?1, ?2, ?3, 0)",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_blob64(st, 1, bytes, n_bytes, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sha, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, (sqlite3_int64)n_bytes);
    ck_assert_int_eq(sqlite3_step(st), SQLITE_DONE);
    sqlite3_finalize(st);
    sqlite3_close(db);

    http_reply *r = expect_ok(http(&d, "GET", "/v1/checkpoints/7/hf.tar", d.admin, NULL, NULL));
    char out[200], got[8][64];
    snprintf(out, sizeof out, "%s/export", d.dir);
    ck_assert_int_eq(mkdir(out, 0755), 0);
    ck_assert_uint_eq(test_untar(r->body, r->body_len, out, got, 8), 4);
    reply_free(r);
    ck_assert_str_eq(got[2], "adapter/adapter_config.json");
    ck_assert_str_eq(got[3], "adapter/adapter_model.safetensors");
    /* the adapter file is the one PEFT's writer makes of these adapters */
    char adir[256];
    snprintf(adir, sizeof adir, "%s/adapter", out);
    size_t n_adapter;
    char *adapter = read_file(adir, "adapter_model.safetensors", &n_adapter);
    ck_assert_uint_eq(n_adapter, n_adapter_want);
    ck_assert_int_eq(memcmp(adapter, adapter_want, n_adapter), 0);
    free(adapter);
    free(adapter_want);
    /* the top directory is the merged model: what loading the checkpoint gives */
    gpt2_model exported, merged;
    ck_assert_msg(model_open(out, NULL, &exported, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(model_open_bytes(bytes, n_bytes, NULL, &merged, NULL, err, sizeof err), 0);
    ck_assert_int_eq(memcmp(exported.param_memory, merged.param_memory,
                            sizeof(float) * (size_t)merged.num_params),
                     0);
    gpt2_free(&exported);
    gpt2_free(&merged);
    free(bytes);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A worker that dies (SIGKILL) at a step of its first checkpoint write:
 * no checkpoint row lacks its file, and a restart with no grace period
 * collects the unreferenced files. */
START_TEST(test_worker_killed_while_writing_a_checkpoint) {
    static const char *const steps[] = {"written", "renamed", "dir_synced", "committed"};
    for (int s = 0; s < 4; s++) {
        test_daemon d;
        daemon_init(&d);
        setenv("RLHF_ARTIFACT_CRASH_AT", steps[s], 1);
        daemon_start(&d, "--artifact-grace-s", "0", NULL);
        unsetenv("RLHF_ARTIFACT_CRASH_AT");
        const int64_t data = sft_dataset(&d, "arith", 16);
        char fields[128];
        snprintf(fields, sizeof fields, "\"training_file\":%lld,\"max_attempts\":1",
                 (long long)data);
        const int64_t job = create_sft_job(&d, fields);
        reply_free(wait_job(&d, job, "failed", 1));
        daemon_stop(&d);
        const bool committed = strcmp(steps[s], "committed") == 0;
        ck_assert_int_eq(db_int(&d, "SELECT count(*) FROM checkpoints", 0), committed);
        daemon_start(&d, "--artifact-grace-s", "0", NULL); /* collects at start-up */
        char data_dir[200];
        snprintf(data_dir, sizeof data_dir, "%s.data", d.db);
        if (committed) { /* the acknowledged checkpoint is whole */
            sqlite3 *db;
            sqlite3_stmt *st;
            char err[512], sha[65];
            ck_assert_int_eq(db_open(d.db, &db, err, sizeof err), 0);
            ck_assert_int_eq(sqlite3_prepare_v2(db,
                                                "SELECT id, sha256, size_bytes FROM checkpoints",
                                                -1, &st, NULL),
                             SQLITE_OK);
            ck_assert_int_eq(sqlite3_step(st), SQLITE_ROW);
            const int fd = checkpoint_file_open(db, data_dir, sqlite3_column_int64(st, 0), NULL,
                                                err, sizeof err);
            ck_assert_msg(fd >= 0, "%s", err);
            const size_t size = (size_t)sqlite3_column_int64(st, 2);
            char *bytes = malloc(size);
            ck_assert_int_eq(pread(fd, bytes, size, 0), (ssize_t)size);
            sha256_hex(bytes, size, sha);
            ck_assert_str_eq(sha, (const char *)sqlite3_column_text(st, 1));
            free(bytes);
            close(fd);
            sqlite3_finalize(st);
            sqlite3_close(db);
        }
        char cmd[600], count[32];
        snprintf(cmd, sizeof cmd, "ls %s/objects %s/tmp | grep -c '^[0-9a-f]\\{64\\}$\\|artifact-'",
                 data_dir, data_dir);
        FILE *p = popen(cmd, "r");
        ck_assert_ptr_nonnull(fgets(count, sizeof count, p));
        pclose(p);
        ck_assert_msg(atoi(count) == (int)committed, "%s: %s files left", steps[s], count);
        daemon_stop(&d);
        daemon_cleanup(&d);
    }
}
END_TEST

Suite *models_suite(void) {
    Suite *s = suite_create("models");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, test_register_directory_inside_roots_only);
    tcase_add_test(tc, test_upload_checked_per_file_and_whole);
    tcase_add_test(tc, test_train_from_model_and_download_hf_dir);
    tcase_add_test(tc, test_llama_base_model_trains_dpo_and_grpo);
    tcase_add_test(tc, test_openai_fine_tuning_from_base_models);
    tcase_add_test(tc, test_chat_rows_train_every_assistant_turn);
    tcase_add_test(tc, test_context_beyond_model_positions_is_refused);
    tcase_add_test(tc, test_gpt2_job_runs_at_the_context_asked);
    tcase_add_test(tc, test_lora_checkpoint_downloads_with_adapter_dir);
    tcase_add_test(tc, test_worker_killed_while_writing_a_checkpoint);
    suite_add_tcase(s, tc);
    return s;
}
