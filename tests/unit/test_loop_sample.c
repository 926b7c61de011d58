/* The loop-sample job (engine/loop_sample.c) on tiny random GPT-2s: which
 * prompts it answers, K responses each, the gold and reward-model scores
 * beside each, in one sink call; the same draw for the same seed, prompt
 * i's draw from rng stream i. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_gold.h"
#include "loop_sample.h"
#include "model.h"
#include "sft.h"
#include "suites.h"
#include "test_util.h"

enum { MAX_ROWS = 64 };

/* What the sink received. */
typedef struct kept_samples {
    int calls, n, n_scores;
    int prompt_index[MAX_ROWS];
    char *prompt[MAX_ROWS], *response[MAX_ROWS];
    double gold[MAX_ROWS], scores[MAX_ROWS][LOOP_SAMPLE_MAX_MODELS];
} kept_samples;

static int keep_samples(void *ctx, const sink_sample *rows, int n) {
    kept_samples *k = ctx;
    ck_assert_int_le(n, MAX_ROWS);
    k->calls++, k->n = n;
    for (int i = 0; i < n; i++) {
        k->prompt_index[i] = rows[i].prompt_index;
        k->prompt[i] = strdup(rows[i].prompt);
        k->response[i] = strdup(rows[i].response);
        k->gold[i] = rows[i].gold;
        k->n_scores = rows[i].n_scores;
        for (int e = 0; e < rows[i].n_scores; e++)
            k->scores[i][e] = rows[i].scores[e];
    }
    return 0;
}

static void kept_free(kept_samples *k) {
    for (int i = 0; i < k->n; i++)
        free(k->prompt[i]), free(k->response[i]);
    memset(k, 0, sizeof *k);
}

static const char *const rows[] = {"How do I boil an egg?", "Name a colour.",
                                   "Why is the sky blue?"};

/* Runs the job on rows with cfg; asserts it succeeds. */
static void run(const loop_sample_config *cfg, const tokenizer *tok, const char *policy,
                const char *const *rms, int n_rms, kept_samples *out) {
    const loop_sample_inputs in = {rows, 3, tok, policy, rms, n_rms};
    const train_sink sink = {.ctx = out, .samples = keep_samples};
    char err[256];
    memset(out, 0, sizeof *out);
    ck_assert_msg(loop_sample_run(cfg, &in, &sink, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(out->calls, 1);
}

/* The normalised score the reward model at path gives prompt + response +
 * EOT: its head at the last token, × gain 2 + bias 0.5 (the metadata
 * test_write_random_gpt2 writes). */
static double score_by_hand(const char *path, const tokenizer *tok, const char *prompt,
                            const char *response) {
    model m;
    model_info info;
    char err[256];
    const model_open_options opt = {.scalar_head = true, .require_head = true};
    ck_assert_msg(model_load(path, &opt, &m, &info, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(model_reserve(&m, 1, 64, err, sizeof err), 0);
    int32_t ids[64];
    uint8_t mask[64];
    const text_pair ex = {prompt, response, NULL, 0};
    const int64_t n = sft_tokenize(tok, &ex, true, ids, mask, 64);
    ck_assert(n > 0);
    model_forward(&m, ids, NULL, NULL, 1, (int)n, 0, 0);
    const double v = 2.0 * model_values(&m)[n - 1] + 0.5;
    model_free(&m);
    return v;
}

START_TEST(test_loop_sample_draws_and_scores) {
    tokenizer tok;
    char err[256], policy[64], rm_a[64], rm_b[64];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    const gpt2_config lm = {tok.vocab_size, 64, 1, 2, 16, false};
    const gpt2_config rm = {tok.vocab_size, 64, 1, 2, 16, true};
    test_write_random_gpt2(policy, &lm, 1, "1.0", false);
    test_write_random_gpt2(rm_a, &rm, 2, "2.0", false);
    test_write_random_gpt2(rm_b, &rm, 3, "2.0", false);
    const char *rms[] = {rm_a, rm_b};
    loop_sample_config cfg;
    hparams_set_defaults(&loop_sample_hparams, &cfg);
    cfg.prompt_offset = 2, cfg.n_prompts = 2, cfg.samples_per_prompt = 3, cfg.max_tokens = 10;
    cfg.seed = 7;
    kept_samples k, again, one, other;
    run(&cfg, &tok, policy, rms, 2, &k);
    ck_assert_int_eq(k.n, 6);
    ck_assert_int_eq(k.n_scores, 2);
    bool models_differ = false;
    for (int b = 0; b < 6; b++) {
        /* rows 2, then 0 (wrapping): K = 3 rows each, in order */
        ck_assert_int_eq(k.prompt_index[b], b / 3);
        ck_assert_str_eq(k.prompt[b], rows[(2 + b / 3) % 3]);
        ck_assert(strlen(k.response[b]) <= 10 * 4);
        ck_assert_double_eq(k.gold[b], demo_task_gold_score(k.prompt[b], k.response[b]));
        ck_assert_double_eq_tol(k.scores[b][0],
                                score_by_hand(rm_a, &tok, k.prompt[b], k.response[b]), 1e-9);
        ck_assert_double_eq_tol(k.scores[b][1],
                                score_by_hand(rm_b, &tok, k.prompt[b], k.response[b]), 1e-9);
        models_differ |= fabs(k.scores[b][0] - k.scores[b][1]) > 1e-6;
    }
    ck_assert(models_differ);
    /* the same seed: the same draw; one prompt: stream 0's, the first K */
    run(&cfg, &tok, policy, rms, 2, &again);
    cfg.n_prompts = 1;
    run(&cfg, &tok, policy, NULL, 0, &one);
    ck_assert_int_eq(one.n, 3);
    ck_assert_int_eq(one.n_scores, 0);
    for (int b = 0; b < 6; b++) {
        ck_assert_str_eq(again.response[b], k.response[b]);
        ck_assert_double_eq(again.scores[b][1], k.scores[b][1]);
        if (b < 3)
            ck_assert_str_eq(one.response[b], k.response[b]);
    }
    /* another seed: another draw */
    cfg.seed = 8, cfg.n_prompts = 2;
    run(&cfg, &tok, policy, NULL, 0, &other);
    bool differs = false;
    for (int b = 0; b < 6; b++)
        differs |= strcmp(other.response[b], k.response[b]) != 0;
    ck_assert(differs);
    kept_free(&k), kept_free(&again), kept_free(&one), kept_free(&other);

    /* a prompt the policy's context cannot hold fails, naming it */
    static const char *const long_rows[] = {
        "A prompt of more than sixty-four bytes, which is all this tiny policy can see."};
    const loop_sample_inputs in = {long_rows, 1, &tok, policy, NULL, 0};
    const train_sink sink = {.ctx = &k, .samples = keep_samples};
    cfg.prompt_offset = 0, cfg.n_prompts = 1;
    ck_assert_int_eq(loop_sample_run(&cfg, &in, &sink, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "context is 64"));
    ck_assert_int_eq(k.calls, 0);
    unlink(policy), unlink(rm_a), unlink(rm_b);
    tokenizer_free(&tok);
}
END_TEST

Suite *loop_sample_suite(void) {
    Suite *s = suite_create("loop_sample");
    TCase *tc = tcase_create("loop_sample");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_loop_sample_draws_and_scores);
    suite_add_tcase(s, tc);
    return s;
}
