/* POST /v1/completions, POST /v1/chat/completions and
 * POST /v1/checkpoints/{id}/generate on a Llama-family model (the tiny
 * random Qwen3 directory of test_hf_fixture.h under a --model-root): what
 * the daemon says is what the engine says greedily for the same ids (the
 * prompt tokenized with the directory's tokenizer.json, a chat rendered by
 * its chat template), for the base model, a fully fine-tuned checkpoint and
 * a LoRA one; seeds repeat, stop strings cut, logprobs are log-softmax
 * values, a stream's chunks add up to the same text and end with [DONE],
 * and every bad field is a 400 naming it.
 */
#include <check.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "chat_template.h"
#include "hf_tokenizer.h"
#include "db.h"
#include "model.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "test_hf_fixture.h"
#include "test_server_util.h"
#include "tokenizer.h"

/* ---- what the engine says ---------------------------------------------------------- */

typedef struct reference {
    char text[2048];
    int prompt_tokens, completion_tokens;
    bool stopped; /* ended with EOS */
} reference;

/* Greedy continuation of ids (P) under m, at most n tokens. */
static void greedy(const model *m, const tokenizer *tok, const int32_t *ids, int P, int n,
                   reference *out) {
    int32_t gen[256], len = 0;
    uint8_t mask[512];
    memset(mask, 1, sizeof mask);
    rng_state rng;
    rng_seed(&rng, 1, 0);
    char err[256];
    ck_assert_int_le(n, 256);
    ck_assert_msg(model_generate(m, ids, mask, 1, P, 0.0f, 0, 1.0f, n, tok->eot_id, &rng, gen, &len,
                                 err, sizeof err) == 0,
                  "%s", err);
    out->prompt_tokens = P;
    out->completion_tokens = len;
    out->stopped = len > 0 && model_is_eos(m, tok->eot_id, gen[len - 1]);
    char bytes[2048];
    int64_t nb = tokenizer_decode(tok, gen, (size_t)(len - out->stopped), bytes, sizeof bytes);
    ck_assert_int_ge(nb, 0);
    ck_assert_int_lt(nb, (int64_t)sizeof bytes);
    char *clean = db_utf8_clean(bytes, (size_t)nb);
    snprintf(out->text, sizeof out->text, "%s", clean);
    free(clean);
}

/* The reference for a prompt (chat false) or one user message (chat true). */
static void reference_for(const model *m, const char *dir, const char *text, bool chat, int n,
                          reference *out) {
    tokenizer tok;
    char err[256], path[512];
    ck_assert_msg(tokenizer_load_hf(&tok, dir, err, sizeof err) == 0, "%s", err);
    int32_t *ids = NULL;
    int64_t P;
    if (chat) {
        chat_template t;
        snprintf(path, sizeof path, "%s/tokenizer_config.json", dir);
        ck_assert_msg(chat_template_load(&t, path, NULL, err, sizeof err) == 0, "%s", err);
        const chat_message msg = {"user", text};
        P = chat_template_encode(&t, tokenizer_hf(&tok), &msg, 1, true, &ids, NULL, err,
                                 sizeof err);
        chat_template_free(&t);
    } else {
        P = tokenizer_encode_prompt(&tok, text, strlen(text), NULL, 0, false);
        ids = malloc(sizeof(int32_t) * (size_t)P);
        tokenizer_encode_prompt(&tok, text, strlen(text), ids, (size_t)P, false);
    }
    ck_assert_msg(P > 0, "%s", err);
    /* the tiny Qwen3 fixture's tokenizer.json puts <bos> (262) first, as
     * transformers' tokenizer(text) does (GPT-2's puts nothing); its ChatML
     * template does not write it, so chats, encoded as apply_chat_template
     * does (no post-processor), have none */
    int32_t prefix[HF_TOKENIZER_MAX_PREFIX];
    const int np = hf_tokenizer_prefix(tokenizer_hf(&tok), prefix);
    ck_assert_int_eq(np, m->family == MODEL_FAMILY_LLAMA ? 1 : 0);
    ck_assert(np == 0 || (chat ? ids[0] != 262 : ids[0] == 262 && ids[1] != 262));
    greedy(m, &tok, ids, (int)P, n, out);
    free(ids);
    tokenizer_free(&tok);
}

static void load_dir(const char *dir, model *m, model_family family) {
    char err[256];
    ck_assert_msg(model_load(dir, NULL, m, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(m->family, family);
}

static void load_checkpoint(const test_daemon *d, int64_t ck, model *m) {
    char err[256];
    http_reply *r = checkpoint_content(d, ck);
    ck_assert_msg(model_load_bytes(r->body, r->body_len, NULL, m, NULL, err, sizeof err) == 0, "%s",
                  err);
    reply_free(r);
}

/* ---- what the daemon says ----------------------------------------------------------- */

static http_reply *post(const test_daemon *d, const char *path, const char *body) {
    return expect_ok(http(d, "POST", path, d->admin, body, NULL));
}

static const json_t *choice(const http_reply *r, size_t i) {
    const json_t *c = json_array_get(json_object_get(r->json, "choices"), i);
    ck_assert_msg(c != NULL, "%s", r->body);
    return c;
}

static const char *choice_text(const http_reply *r, size_t i, bool chat) {
    const json_t *c = choice(r, i);
    const char *s =
        json_string_value(chat ? json_object_get(json_object_get(c, "message"), "content")
                               : json_object_get(c, "text"));
    ck_assert_msg(s != NULL, "%s", r->body);
    return s;
}

static int64_t usage(const http_reply *r, const char *key) {
    return json_integer_value(json_object_get(json_object_get(r->json, "usage"), key));
}

/* Asserts the reply (one choice) says what ref says. */
static void expect_reference(const http_reply *r, bool chat, const reference *ref) {
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "object")),
                     chat ? "chat.completion" : "text_completion");
    ck_assert_str_eq(choice_text(r, 0, chat), ref->text);
    ck_assert_str_eq(json_string_value(json_object_get(choice(r, 0), "finish_reason")),
                     ref->stopped ? "stop" : "length");
    ck_assert_int_eq(usage(r, "prompt_tokens"), ref->prompt_tokens);
    ck_assert_int_eq(usage(r, "completion_tokens"), ref->completion_tokens);
    ck_assert_int_eq(usage(r, "total_tokens"), ref->prompt_tokens + ref->completion_tokens);
}

/* Greedy completion and chat from model id through the OpenAI routes equal
 * the engine's on m (loaded from the model's weights; dir its tokenizer). */
static void expect_greedy_routes(const test_daemon *d, const char *id, const model *m,
                                 const char *dir) {
    char body[512];
    reference ref;
    reference_for(m, dir, "hello world", false, 12, &ref);
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"prompt\":\"hello world\",\"max_tokens\":12,\"temperature\":0}",
             id);
    http_reply *r = post(d, "/v1/completions", body);
    expect_reference(r, false, &ref);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "model")), id);
    ck_assert_ptr_nonnull(strstr(json_string_value(json_object_get(r->json, "id")), "cmpl-"));
    reply_free(r);
    reference_for(m, dir, "hello", true, 8, &ref); /* GPT-2's 64 positions */
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}],"
             "\"max_tokens\":8,\"temperature\":0}",
             id);
    r = post(d, "/v1/chat/completions", body);
    expect_reference(r, true, &ref);
    ck_assert_str_eq(
        json_string_value(json_object_get(json_object_get(choice(r, 0), "message"), "role")),
        "assistant");
    reply_free(r);
}

/* ---- the base model ------------------------------------------------------------------ */

START_TEST(test_base_model_completes_and_chats) {
    test_daemon d;
    char dir[256];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    model m;
    load_dir(dir, &m, MODEL_FAMILY_LLAMA);
    expect_greedy_routes(&d, "qwen", &m, dir);

    /* stop: the greedy text cut before the first occurrence of one of its
     * later characters, finish_reason stop */
    reference ref;
    reference_for(&m, dir, "hello world", false, 12, &ref);
    model_free(&m);
    size_t k = 1;
    while (ref.text[k] != '\0' && ((unsigned char)ref.text[k] >= 0x80 || ref.text[k] == '"' ||
                                   ref.text[k] == '\\' || (unsigned char)ref.text[k] < 0x20))
        k++;
    ck_assert_msg(ref.text[k] != '\0', "no ASCII character to stop at in '%s'", ref.text);
    char stop[2] = {ref.text[k], '\0'}, body[1024], want[2048];
    snprintf(want, sizeof want, "%.*s", (int)(strchr(ref.text, stop[0]) - ref.text), ref.text);
    snprintf(body, sizeof body,
             "{\"model\":\"qwen\",\"prompt\":\"hello world\",\"max_tokens\":12,\"temperature\":0,"
             "\"stop\":[\"zzzz\",\"%s\"]}",
             stop);
    http_reply *r = post(&d, "/v1/completions", body);
    ck_assert_str_eq(choice_text(r, 0, false), want);
    ck_assert_str_eq(json_string_value(json_object_get(choice(r, 0), "finish_reason")), "stop");
    reply_free(r);

    /* seed: the same seed samples the same n completions; rows differ */
    const char *sampled = "{\"model\":\"qwen\",\"prompt\":\"hello\",\"max_tokens\":16,"
                          "\"temperature\":1.5,\"n\":3,\"seed\":7}";
    http_reply *a = post(&d, "/v1/completions", sampled), *b = post(&d, "/v1/completions", sampled);
    bool differ = false;
    for (size_t i = 0; i < 3; i++) {
        ck_assert_str_eq(choice_text(a, i, false), choice_text(b, i, false));
        ck_assert_int_eq(json_integer_value(json_object_get(choice(a, i), "index")), (int64_t)i);
        differ |= strcmp(choice_text(a, i, false), choice_text(a, 0, false)) != 0;
    }
    ck_assert_msg(differ, "three samples at temperature 1.5 were all '%s'",
                  choice_text(a, 0, false));
    /* usage counts the prompt once */
    ck_assert_int_eq(usage(a, "prompt_tokens"), usage(b, "prompt_tokens"));
    reply_free(a);
    reply_free(b);

    /* logprobs: one per generated token, log-probabilities (≤ 0); greedy
     * picks the most likely token, so each is ≥ log(1/V) */
    r = post(&d, "/v1/chat/completions",
             "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"max_tokens\":6,\"temperature\":0,\"logprobs\":true}");
    const json_t *content = json_object_get(json_object_get(choice(r, 0), "logprobs"), "content");
    const bool eos =
        strcmp(json_string_value(json_object_get(choice(r, 0), "finish_reason")), "stop") == 0;
    ck_assert_int_eq((int64_t)json_array_size(content), usage(&*r, "completion_tokens") - eos);
    size_t i;
    json_t *t;
    json_array_foreach(content, i, t) {
        const double lp = json_number_value(json_object_get(t, "logprob"));
        ck_assert_double_le(lp, 0.0);
        ck_assert_double_ge(lp, -log((double)TEST_TINY_VOCAB) - 1e-4);
    }
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* A registered GPT-2 directory (its tokenizer.json, a ChatML template)
 * completes and chats as the engine says too. */
START_TEST(test_gpt2_directory_completes_and_chats) {
    test_daemon d;
    char dir[256];
    daemon_with_model(&d, "tiny", false, dir, sizeof dir);
    model m;
    load_dir(dir, &m, MODEL_FAMILY_GPT2);
    expect_greedy_routes(&d, "tiny", &m, dir);
    model_free(&m);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- streams ---------------------------------------------------------------------------- */

/* The chunks of an SSE body: their JSON in order (new reference), and
 * whether it ended with data: [DONE]. */
static json_t *stream_chunks(const http_reply *r, bool *done) {
    json_t *chunks = json_array();
    *done = false;
    const char *p = r->body;
    while ((p = strstr(p, "data: ")) != NULL) {
        p += 6;
        const char *end = strstr(p, "\n\n");
        ck_assert_ptr_nonnull(end);
        ck_assert_msg(!*done, "a chunk after [DONE]");
        if (strncmp(p, "[DONE]", 6) == 0) {
            *done = true;
        } else {
            json_error_t je;
            json_t *c = json_loadb(p, (size_t)(end - p), 0, &je);
            ck_assert_msg(c != NULL, "bad chunk: %.*s", (int)(end - p), p);
            json_array_append_new(chunks, c);
        }
        p = end;
    }
    return chunks;
}

START_TEST(test_streams_add_up_to_the_reply) {
    test_daemon d;
    char dir[256];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    for (int chat = 0; chat < 2; chat++) {
        const char *path = chat ? "/v1/chat/completions" : "/v1/completions";
        const char *input = chat ? "\"messages\":[{\"role\":\"user\",\"content\":\"hello\"}]"
                                 : "\"prompt\":\"hello world\"";
        char body[512];
        snprintf(body, sizeof body,
                 "{\"model\":\"qwen\",%s,\"max_tokens\":10,\"temperature\":0.8,\"seed\":3,\"n\":2}",
                 input);
        http_reply *whole = post(&d, path, body);
        snprintf(body, sizeof body,
                 "{\"model\":\"qwen\",%s,\"max_tokens\":10,\"temperature\":0.8,\"seed\":3,\"n\":2,"
                 "\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
                 input);
        http_reply *r = post(&d, path, body);
        ck_assert_str_eq(r->content_type, "text/event-stream");
        bool done;
        json_t *chunks = stream_chunks(r, &done);
        ck_assert(done);
        char text[2][2048] = {"", ""};
        const char *finish[2] = {NULL, NULL};
        bool role[2] = {false, false};
        size_t i;
        json_t *c;
        const json_t *usage_obj = NULL;
        json_array_foreach(chunks, i, c) {
            ck_assert_str_eq(json_string_value(json_object_get(c, "object")),
                             chat ? "chat.completion.chunk" : "text_completion");
            ck_assert_str_eq(json_string_value(json_object_get(c, "model")), "qwen");
            const json_t *choices = json_object_get(c, "choices");
            if (json_array_size(choices) == 0) { /* the usage chunk, last */
                usage_obj = json_object_get(c, "usage");
                ck_assert_uint_eq(i, json_array_size(chunks) - 1);
                continue;
            }
            const json_t *ch = json_array_get(choices, 0);
            const int64_t index = json_integer_value(json_object_get(ch, "index"));
            ck_assert(index == 0 || index == 1);
            ck_assert_msg(finish[index] == NULL, "a chunk after choice %lld finished",
                          (long long)index);
            const json_t *delta = chat ? json_object_get(ch, "delta") : ch;
            const char *piece =
                json_string_value(json_object_get(delta, chat ? "content" : "text"));
            if (chat && json_object_get(delta, "role") != NULL) {
                ck_assert_str_eq(json_string_value(json_object_get(delta, "role")), "assistant");
                role[index] = true;
            }
            if (piece != NULL)
                strncat(text[index], piece, sizeof text[index] - strlen(text[index]) - 1);
            finish[index] = json_string_value(json_object_get(ch, "finish_reason"));
        }
        for (int b = 0; b < 2; b++) {
            ck_assert_str_eq(text[b], choice_text(whole, (size_t)b, chat));
            ck_assert_ptr_nonnull(finish[b]);
            ck_assert_str_eq(finish[b], json_string_value(json_object_get(choice(whole, (size_t)b),
                                                                          "finish_reason")));
            ck_assert(role[b] == (bool)chat);
        }
        ck_assert_ptr_nonnull(usage_obj);
        ck_assert_int_eq(json_integer_value(json_object_get(usage_obj, "completion_tokens")),
                         usage(whole, "completion_tokens"));
        json_decref(chunks);
        reply_free(r);
        reply_free(whole);
    }
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* Eight chat-format SFT rows (JSONL): "hey" / "hi" answered "hello world". */
static void chat_sft_rows(char *out, size_t cap) {
    out[0] = '\0';
    for (int i = 0; i < 8; i++) {
        const size_t len = strlen(out);
        snprintf(out + len, cap - len,
                 "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"},"
                 "{\"role\":\"assistant\",\"content\":\"hello world\"}]}\n",
                 i % 2 ? "hi" : "hey");
    }
}

/* ---- checkpoints ----------------------------------------------------------------------- */

/* GET /v1/checkpoints/{ck}/hf.tar: a Hugging Face directory that opens as
 * the checkpoint's (merged) weights, with the base model's tokenizer, and
 * the adapters in adapter/ when lora; with ?dtype=bf16 the weights are
 * stored as BF16, each the f32 weight rounded to nearest even. */
static void expect_hf_tar(const test_daemon *d, int64_t ck, bool lora, bool bf16) {
    char path[96], out[200], names[12][64], err[256];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/hf.tar%s", (long long)ck,
             bf16 ? "?dtype=bf16" : "");
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    ck_assert_str_eq(r->content_type, "application/x-tar");
    snprintf(out, sizeof out, "%s/export-%lld%s", d->dir, (long long)ck, bf16 ? "-bf16" : "");
    ck_assert_int_eq(mkdir(out, 0755), 0);
    const size_t n = test_untar(r->body, r->body_len, out, names, 12);
    reply_free(r);
    static const char *const want[] = {"config.json", "generation_config.json", "model.safetensors",
                                       "tokenizer.json", "tokenizer_config.json"};
    for (size_t w = 0; w < sizeof want / sizeof want[0]; w++) {
        bool found = false;
        for (size_t i = 0; i < n; i++)
            found |= strcmp(names[i], want[w]) == 0;
        ck_assert_msg(found, "hf.tar has no %s", want[w]);
    }
    bool adapter = false;
    for (size_t i = 0; i < n; i++)
        adapter |= strcmp(names[i], "adapter/adapter_model.safetensors") == 0;
    ck_assert(adapter == lora);
    model exported, stored;
    ck_assert_msg(model_load(out, NULL, &exported, NULL, err, sizeof err) == 0, "%s", err);
    load_checkpoint(d, ck, &stored);
    int64_t n_exported, n_stored;
    const float *a = model_base_params(&exported, &n_exported);
    const float *b = model_base_params(&stored, &n_stored);
    ck_assert_int_eq(n_exported, n_stored);
    if (bf16) {
        char file[256];
        snprintf(file, sizeof file, "%s/model.safetensors", out);
        expect_bf16_export(file, a, b, n_stored);
    } else {
        ck_assert_int_eq(memcmp(a, b, sizeof(float) * (size_t)n_stored), 0);
    }
    model_free(&exported);
    model_free(&stored);
}

/* Full and LoRA fine-tunes of the base model on chat rows: each checkpoint
 * samples through /v1/checkpoints/{id}/generate and, by its ft: id, through
 * the OpenAI routes, as the engine does on its weights (LoRA merged), and
 * downloads as a Hugging Face directory. */
START_TEST(test_checkpoints_of_every_kind_generate) {
    test_daemon d;
    char dir[256];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    char jsonl[4096];
    chat_sft_rows(jsonl, sizeof jsonl);
    const int64_t data = create_dataset(&d, "sft", jsonl);
    const char *lora[] = {"", ",\"lora_r\":4"};
    for (int l = 0; l < 2; l++) {
        char body[1024], id[128], path[96];
        snprintf(body, sizeof body,
                 "{\"type\":\"sft\",\"training_file\":%lld,\"model\":\"qwen\",\"hyperparameters\":"
                 "{\"batch_size\":2,\"max_steps\":6,\"learning_rate\":0.05,\"eval_fraction\":0%s}}",
                 (long long)data, lora[l]);
        const int64_t job = create(&d, "/v1/jobs", d.admin, body);
        reply_free(wait_job(&d, job, "succeeded", 1));
        const int64_t ck = final_checkpoint(&d, job, NULL);
        model m;
        load_checkpoint(&d, ck, &m);
        snprintf(id, sizeof id, "ft:qwen::ftjob-%lld", (long long)job);
        expect_greedy_routes(&d, id, &m, dir);
        reference ref;
        reference_for(&m, dir, "hello world", false, 8, &ref);
        model_free(&m);
        snprintf(path, sizeof path, "/v1/checkpoints/%lld/generate", (long long)ck);
        http_reply *r = post(&d, path,
                             "{\"prompt\":\"hello world\",\"max_tokens\":8,"
                             "\"temperature\":0}");
        ck_assert_str_eq(json_string_value(json_object_get(choice(r, 0), "text")), ref.text);
        reply_free(r);
        expect_hf_tar(&d, ck, l == 1, false);
        expect_hf_tar(&d, ck, l == 1, true);
    }
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- bad requests ------------------------------------------------------------------------ */

START_TEST(test_bad_fields_name_their_param) {
    test_daemon d;
    char dir[256];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    static const struct {
        const char *path, *body;
        long status;
        const char *code, *param;
    } cases[] = {
        {"/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 400,
         "missing_required_parameter", "model"},
        {"/v1/chat/completions",
         "{\"model\":\"nope\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}", 404,
         "model_not_found", "model"},
        {"/v1/chat/completions", "{\"model\":\"qwen\"}", 400, "missing_required_parameter",
         "messages"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"bot\",\"content\":\"x\"}]}", 400,
         "invalid_value", "messages[0].role"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":3}]}", 400,
         "invalid_type", "messages[0].content"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"temperature\":\"hot\"}",
         400, "invalid_type", "temperature"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"top_p\":0}",
         400, "invalid_value", "top_p"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]}",
         400, "invalid_value", "stop"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"stop\":[\"a\",\"\"]}",
         400, "invalid_value", "stop[1]"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"frequency_penalty\":1}",
         400, "unknown_parameter", "frequency_penalty"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"stream\":true,\"logprobs\":true}",
         400, "invalid_value", "logprobs"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"max_tokens\":100000}",
         400, "invalid_value", "max_tokens"},
        {"/v1/chat/completions",
         "{\"model\":\"qwen\",\"messages\":[{\"role\":\"user\",\"content\":\"x\"}],"
         "\"stream_options\":{\"include_usage\":true}}",
         400, "invalid_value", "stream_options"},
        {"/v1/completions", "{\"model\":\"qwen\",\"prompt\":[1]}", 400, "invalid_type",
         "prompt[0]"},
        {"/v1/completions", "{\"model\":\"qwen\",\"prompt\":\"x\",\"logprobs\":3}", 400,
         "invalid_value", "logprobs"},
        {"/v1/completions", "{\"model\":\"qwen\",\"prompt\":\"x\",\"n\":0}", 400, "invalid_value",
         "n"},
        {"/v1/completions", "{\"model\":\"qwen\",\"prompt\":\"x\",\"messages\":[]}", 400,
         "unknown_parameter", "messages"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        call_expect_error(&d, "POST", cases[i].path, d.admin, cases[i].body, cases[i].status,
                          cases[i].code, cases[i].param);
    /* a lineage with no chat template (GPT-2 from scratch) cannot chat */
    const int64_t job = demo_sft_job(&d, TINY_SFT_HYPERPARAMETERS, NULL);
    reply_free(wait_job(&d, job, "succeeded", 1));
    char body[256];
    snprintf(body, sizeof body,
             "{\"model\":\"ft:scratch::ftjob-%lld\",\"messages\":[{\"role\":\"user\","
             "\"content\":\"x\"}]}",
             (long long)job);
    call_expect_error(&d, "POST", "/v1/chat/completions", d.admin, body, 400,
                      "invalid_request_error", "model");
    /* ...but completes */
    snprintf(body, sizeof body, "{\"model\":\"ft:scratch::ftjob-%lld\",\"prompt\":\"x\"}",
             (long long)job);
    reply_free(post(&d, "/v1/completions", body));
    /* An empty prompt: BOS alone where the tokenizer puts one first (the
     * Qwen3 fixture's <bos>), generated from as vLLM does; a 400 that says
     * why where it puts none (byte-level, from scratch) */
    http_reply *r = post(&d, "/v1/completions",
                         "{\"model\":\"qwen\",\"prompt\":\"\",\"max_tokens\":3,\"temperature\":0}");
    ck_assert_int_eq(usage(r, "prompt_tokens"), 1);
    ck_assert_int_ge(usage(r, "completion_tokens"), 1);
    reply_free(r);
    snprintf(body, sizeof body, "{\"model\":\"ft:scratch::ftjob-%lld\",\"prompt\":\"\"}",
             (long long)job);
    r = http(&d, "POST", "/v1/completions", d.admin, body, NULL);
    expect_error(r, 400, "invalid_value", "prompt");
    const char *why =
        json_string_value(json_object_get(json_object_get(r->json, "error"), "message"));
    ck_assert_msg(why && strstr(why, "prompt is empty") && strstr(why, "no BOS"), "%s", r->body);
    reply_free(r);
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

/* ---- the walkthrough ----------------------------------------------------------- */

/* The assistant's message of a chat with model: asserts a 200 with text. */
static void expect_chat(const test_daemon *d, const char *model_id) {
    char body[512];
    snprintf(body, sizeof body,
             "{\"model\":\"%s\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
             "\"max_tokens\":8,\"temperature\":0}",
             model_id);
    http_reply *r = post(d, "/v1/chat/completions", body);
    ck_assert_str_eq(json_string_value(json_object_get(r->json, "model")), model_id);
    ck_assert_int_gt(usage(r, "completion_tokens"), 0);
    reply_free(r);
}

/* What the README shows a new user doing with curl, through a real rlhfd:
 * register a tiny random Llama-family (Qwen3) model from a directory,
 * upload a chat-format SFT file (/v1/files), fine-tune it, chat
 * with the result, train a reward model and PPO on it, chat with the PPO
 * policy, and download that as a Hugging Face directory that opens as the
 * checkpoint. */
START_TEST(test_new_user_walkthrough) {
    test_daemon d;
    char dir[256], body[2048], ft[128], path[256], want[128];
    daemon_with_model(&d, "qwen", true, dir, sizeof dir);
    char chat[4096];
    chat_sft_rows(chat, sizeof chat);
    const int64_t file = openai_file(&d, chat);
    /* the native job API: POST /v1/fine_tuning/jobs does not take a
     * registered model's id yet */
    snprintf(body, sizeof body,
             "{\"type\":\"sft\",\"model\":\"qwen\",\"training_file\":%lld,\"hyperparameters\":"
             "{\"epochs\":2,\"batch_size\":2}}",
             (long long)file);
    const int64_t sft = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, sft, "succeeded", 1));
    snprintf(ft, sizeof ft, "ft:qwen::ftjob-%lld", (long long)sft);
    snprintf(path, sizeof path, "/v1/models/%s", ft);
    reply_free(expect_ok(http(&d, "GET", path, d.admin, NULL, NULL)));
    expect_chat(&d, ft);

    /* a reward model and PPO, from the fine-tuned model */
    const int64_t pref = create_dataset(
        &d, "preference",
        "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]},\"preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"hello world\"}],\"non_preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"ow\"}]}\n"
        "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"hey\"}]},\"preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"hello\"}],\"non_preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"lll\"}]}\n"
        "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"yo\"}]},\"preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"hello world\"}],\"non_preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"w\"}]}\n"
        "{\"input\":{\"messages\":[{\"role\":\"user\",\"content\":\"hi!\"}]},\"preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"hello\"}],\"non_preferred_output\":"
        "[{\"role\":\"assistant\",\"content\":\"he\"}]}\n");
    snprintf(body, sizeof body,
             "{\"type\":\"reward\",\"training_file\":%lld,\"model\":\"%s\",\"hyperparameters\":"
             "{\"batch_size\":2,\"max_steps\":4,\"eval_fraction\":0,\"norm_samples\":2,"
             "\"norm_max_tokens\":4}}",
             (long long)pref, ft);
    const int64_t rm = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, rm, "succeeded", 1));
    const int64_t prompts = create_dataset(&d, "prompts",
                                           "{\"prompt\":\"hi\"}\n"
                                           "{\"prompt\":\"hey\"}\n"
                                           "{\"prompt\":\"yo\"}\n"
                                           "{\"prompt\":\"hi!\"}\n");
    snprintf(body, sizeof body,
             "{\"type\":\"ppo\",\"training_file\":%lld,\"model\":\"%s\",\"reward_model\":"
             "\"job:%lld\",\"hyperparameters\":{\"total_updates\":2,\"batch_size\":4,"
             "\"mini_batch_size\":2,\"ppo_epochs\":1,\"response_length\":6,"
             "\"sample_interval\":0}}",
             (long long)prompts, ft, (long long)rm);
    const int64_t ppo = create(&d, "/v1/jobs", d.admin, body);
    reply_free(wait_job(&d, ppo, "succeeded", 1));
    snprintf(want, sizeof want, "ft:qwen::ftjob-%lld", (long long)ppo);
    expect_chat(&d, want);

    /* the PPO policy as a Hugging Face directory */
    const int64_t ck = final_checkpoint(&d, ppo, NULL);
    expect_hf_tar(&d, ck, false, false);
    snprintf(want, sizeof want, "/v1/checkpoints/%lld/hf.tar?dtype=f16", (long long)ck);
    call_expect_error(&d, "GET", want, d.admin, NULL, 400, "invalid_value", "dtype");
    daemon_stop(&d);
    daemon_cleanup(&d);
}
END_TEST

Suite *completions_suite(void) {
    Suite *s = suite_create("completions");
    TCase *tc = tcase_create("completions");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_base_model_completes_and_chats);
    tcase_add_test(tc, test_gpt2_directory_completes_and_chats);
    tcase_add_test(tc, test_streams_add_up_to_the_reply);
    tcase_add_test(tc, test_checkpoints_of_every_kind_generate);
    tcase_add_test(tc, test_bad_fields_name_their_param);
    tcase_add_test(tc, test_new_user_walkthrough);
    suite_add_tcase(s, tc);
    return s;
}
