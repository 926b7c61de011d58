/* Checkpoints as the API serves them: POST /v1/checkpoints/{id}/generate
 * samples what an independent load of the same weights samples, with every
 * parameter checked, through a model cache of one; comparisons with
 * `sample` draw the same texts.
 */
#include <jansson.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "rng.h"
#include "safetensors.h"
#include "suites.h"
#include "test_api_fixtures.h"
#include "model.h"
#include "test_server_util.h"
#include "test_util.h"
#include "tokenizer.h"

/* The model of a stored checkpoint, loaded here independently of rlhfd. */
static void load_checkpoint(const test_daemon *d, int64_t id, gpt2_model *m) {
    char path[96];
    snprintf(path, sizeof path, "/v1/checkpoints/%lld/content", (long long)id);
    http_reply *r = expect_ok(http(d, "GET", path, d->admin, NULL, NULL));
    char err[256];
    ck_assert_msg(model_open_bytes(r->body, r->body_len, NULL, m, NULL, err, sizeof err) == 0, "%s",
                  err);
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
    const int64_t ck = final_checkpoint(&d, job, NULL);
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

Suite *checkpoints_suite(void) {
    Suite *s = suite_create("checkpoints");
    TCase *tc = tcase_create("checkpoints");
    tcase_add_test(tc, test_generate_from_checkpoints);
    tcase_set_timeout(tc, 120);
    suite_add_tcase(s, tc);
    return s;
}
