/* GRPO and RLOO (engine/grpo_lm.c and their math in ppo.h): group and
 * leave-one-out advantages, the three loss aggregations and the clipped
 * token loss against hand-worked numbers; on the arithmetic task GRPO from
 * an SFT model raises held-out exact-match accuracy; on a tiny model, a run
 * resumed from a periodic checkpoint ends bit-identical (GRPO and RLOO),
 * and a bad grader is refused naming its field. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arith_task.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "grpo_lm.h"
#include "jsonl_data.h"
#include "ppo.h"
#include "sft.h"
#include "suites.h"
#include "test_util.h"

/* ---- the math by hand ---------------------------------------------------------------- */

/* Two groups of G = 3.
 * group 0: r = (1, 0, 0): mean 1/3, std (Bessel) = sqrt(((2/3)² + 2(1/3)²)/2) = sqrt(1/3)
 *          = 0.5773503; A = (2/3, -1/3, -1/3) / (0.5773503 + 1e-4)
 *          = (0.6666667, -0.3333333, -0.3333333) / 0.5774503 = (1.1545006, -0.5772503, -0.5772503)
 * group 1: r = (2, 2, 2): all equal → A = 0, counted in frac_reward_zero_std.
 * Without std scaling (Dr. GRPO): A = (2/3, -1/3, -1/3).
 * RLOO: A_i = r_i - mean of the others: group 0 (1 - 0, 0 - 0.5, 0 - 0.5) = (1, -0.5, -0.5). */
START_TEST(test_group_advantages_by_hand) {
    const float r[6] = {1, 0, 0, 2, 2, 2};
    float a[6];
    ck_assert_int_eq(ppo_group_advantages(a, r, 2, 3, true), 1);
    const double want[6] = {1.1545006, -0.5772503, -0.5772503, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        ck_assert_close(a[i], want[i], 1e-6, 0, "group advantage");
    ck_assert_int_eq(ppo_group_advantages(a, r, 2, 3, false), 1);
    ck_assert_close(a[0], 2.0 / 3.0, 1e-6, 0, "unscaled");
    ck_assert_close(a[1], -1.0 / 3.0, 1e-6, 0, "unscaled");
    ppo_rloo_advantages(a, r, 2, 3);
    const double loo[6] = {1, -0.5, -0.5, 0, 0, 0};
    for (int i = 0; i < 6; i++)
        ck_assert_close(a[i], loo[i], 1e-7, 0, "leave-one-out advantage");
}
END_TEST

/* B = 2 completions, T = 4 columns, lengths 1 and 3; per-token losses
 * l = (4, -, -, -; 1, 2, 3, -) (padding ignored):
 *   sequence  (1/2)(4/1) + (1/2)(6/3)        = 2 + 1     = 3
 *   token     (4 + 6) / 4                               = 2.5
 *   constant  (4 + 6) / (2 · 4)                         = 1.25
 *   sum       (4 + 6) / 2                               = 5 */
START_TEST(test_loss_aggregation_by_hand) {
    const int32_t len[2] = {1, 3};
    const float l[8] = {4, 99, 99, 99, 1, 2, 3, 99};
    const ppo_loss_agg aggs[4] = {PPO_AGG_SEQUENCE, PPO_AGG_TOKEN, PPO_AGG_CONSTANT, PPO_AGG_SUM};
    const double want[4] = {3.0, 2.5, 1.25, 5.0};
    for (int k = 0; k < 4; k++) {
        float w[8];
        ppo_loss_weights(w, len, 2, 4, aggs[k]);
        double L = 0;
        for (int i = 0; i < 8; i++)
            L += (double)w[i] * l[i];
        ck_assert_close(L, want[k], 1e-6, 0, "aggregated loss");
        ck_assert(w[1] == 0.0f && w[7] == 0.0f);
    }
}
END_TEST

/* ε_low = 0.2, ε_high = 0.28, β = 0.1.
 * token 0: r = e^0.5 = 1.6487, A = 1: unclipped -1.6487, clipped -1.28 → l = -1.28,
 *          gradient 0 (clipped); KL: ref - logp = -1 - (-0.5) = -0.5:
 *          k3 = e^-0.5 + 0.5 - 1 = 0.1065307, ∂/∂logp = 1 - e^-0.5 = 0.3934693
 *          → l = -1.28 + 0.01065307, d = 0.03934693
 * token 1: r = e^-0.5 = 0.6065, A = 1: unclipped -0.6065 > clipped -0.8 → l = -0.6065307,
 *          d = -0.6065307 (+ KL with ref = logp: 0)
 * token 2: r = 0.6065, A = -1: unclipped 0.6065 < clipped 0.8 → l = 0.8, d = 0. */
START_TEST(test_clipped_token_loss_by_hand) {
    const float logp[3] = {-0.5f, -1.5f, -1.5f}, old[3] = {-1.0f, -1.0f, -1.0f};
    const float ref[3] = {-1.0f, -1.5f, -1.5f}, adv[3] = {1, 1, -1};
    float l[3], d[3];
    ppo_clipped_token_loss(l, d, logp, old, ref, adv, 3, 0.2f, 0.28f, 0.1f);
    ck_assert_close(l[0], -1.28 + 0.01065307, 1e-6, 0, "clipped high, with KL");
    ck_assert_close(d[0], 0.03934693, 1e-6, 0, "only the KL's gradient");
    ck_assert_close(l[1], -0.6065307, 1e-6, 0, "unclipped");
    ck_assert_close(d[1], -0.6065307, 1e-6, 0, "unclipped gradient -A r");
    ck_assert_close(l[2], 0.8, 1e-6, 0, "clipped low for a negative advantage");
    ck_assert_close(d[2], 0.0, 0, 0, "clipped gradient");
}
END_TEST

/* ---- the arithmetic task ---------------------------------------------------------------- */

static void write_rows(char *path, int sft, const arith_task_config *ac, int64_t n, uint64_t seed,
                       arith_split split) {
    strcpy(path, "/tmp/rlhf-arith-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    FILE *f = fdopen(fd, "w");
    char err[256];
    const int rc = sft ? arith_task_write_sft(f, ac, n, seed, 0.4, err, sizeof err)
                       : arith_task_write_prompts(f, ac, split, n, seed, err, sizeof err);
    ck_assert_msg(rc == 0, "%s", err);
    fclose(f);
}

/* SFT on rows 40 % right (the rest off by 1 or 2), then GRPO with the
 * task's exact-answer grader (a+b=, operands 0..20). eval/reward is the
 * held-out exact-match accuracy of sampled answers (400 held-out problems,
 * the same sampling stream each time). Seeds 1-3 (RLHF_GRPO_SEED=N)
 * measured 0.223 -> 0.443, 0.193 -> 0.375, 0.190 -> 0.405 (gains 0.22,
 * 0.18, 0.215; about 20 s each); the threshold (gain > 0.1) sits well below. */
START_TEST(test_grpo_on_the_arith_task) {
    const uint64_t seed =
        getenv("RLHF_GRPO_SEED") ? strtoull(getenv("RLHF_GRPO_SEED"), NULL, 10) : 1;
    tokenizer tok;
    char err[512];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    arith_task_config ac = arith_task_default_config();
    ac.max_operand = 20, ac.subtraction = false;
    char sft_rows[64], prompt_rows[64], heldout_rows[64];
    write_rows(sft_rows, 1, &ac, 2000, seed, ARITH_SPLIT_TRAIN);
    write_rows(prompt_rows, 0, &ac, 1000, seed + 10, ARITH_SPLIT_TRAIN);
    write_rows(heldout_rows, 0, &ac, 400, seed + 20, ARITH_SPLIT_HELDOUT);
    text_pairs sft_data, prompts, heldout;
    ck_assert_int_eq(text_pairs_load_jsonl(&sft_data, sft_rows, err, sizeof err), 0);
    ck_assert_int_eq(prompts_load_jsonl(&prompts, prompt_rows, err, sizeof err), 0);
    ck_assert_int_eq(prompts_load_jsonl(&heldout, heldout_rows, err, sizeof err), 0);

    sft_config sc;
    hparams_set_defaults(&sft_hparams, &sc);
    sc.n_layer = 2, sc.d_model = 64, sc.n_head = 4, sc.context = 16, sc.max_steps = 400;
    sc.batch_size = 32, sc.learning_rate = 3e-3, sc.eval_interval = 0, sc.sample_interval = 0;
    sc.seed = (int64_t)seed;
    test_checkpoints sft_rec = {0};
    const train_sink sft_sink = {&sft_rec, NULL, NULL, test_checkpoints_add,
                                 NULL,     NULL, NULL, NULL};
    const sft_inputs si = {sft_data.items, sft_data.n, NULL, 0, &tok, NULL, NULL, NULL, NULL};
    ck_assert_msg(sft_train(&sc, &si, &sft_sink, NULL, err, sizeof err) == 0, "%s", err);
    char sft_path[64];
    test_save_temp(sft_path, sft_rec.last, sft_rec.n_last);

    const char **p = malloc(sizeof(char *) * 2 * (size_t)(prompts.n + heldout.n));
    for (int64_t i = 0; i < prompts.n; i++)
        p[i] = prompts.items[i].prompt, p[prompts.n + heldout.n + i] = prompts.items[i].response;
    for (int64_t i = 0; i < heldout.n; i++)
        p[prompts.n + i] = heldout.items[i].prompt,
                      p[2 * prompts.n + heldout.n + i] = heldout.items[i].response;
    grpo_lm_config c;
    hparams_set_defaults(&grpo_lm_hparams, &c);
    snprintf(c.grader, sizeof c.grader, "%s", ARITH_TASK_GRADER_JSON);
    c.seed = (int64_t)seed, c.total_steps = 1000;
    c.prompts_per_step = 8, c.num_generations = 8, c.max_completion_length = 4;
    c.learning_rate = 3e-4, c.eval_interval = 0;
    const grpo_lm_inputs in = {GRPO_ALGORITHM_GRPO,
                               p,
                               p + prompts.n + heldout.n,
                               prompts.n,
                               p + prompts.n,
                               p + 2 * prompts.n + heldout.n,
                               heldout.n,
                               &tok,
                               sft_path,
                               NULL,
                               NULL,
                               false,
                               NULL,
                               NULL};
    test_checkpoints rec = {0};
    grpo_lm_result res;
    const train_sink sink = {&rec, NULL, NULL, test_checkpoints_add, NULL, NULL, NULL, NULL};
    ck_assert_msg(grpo_lm_train(&c, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
    fprintf(stderr,
            "grpo arith (seed %llu): %lld steps; held-out exact match %.3f -> %.3f; train "
            "reward %.3f -> %.3f\n",
            (unsigned long long)seed, (long long)res.steps, res.first_eval, res.last_eval,
            res.first_reward, res.last_reward);
    ck_assert_msg(res.last_eval > res.first_eval + 0.1, "held-out exact match %.3f -> %.3f",
                  res.first_eval, res.last_eval);
    free(p);
    unlink(sft_path), unlink(sft_rows), unlink(prompt_rows), unlink(heldout_rows);
    text_pairs_free(&sft_data), text_pairs_free(&prompts), text_pairs_free(&heldout);
    test_checkpoints_free(&rec), test_checkpoints_free(&sft_rec);
    tokenizer_free(&tok);
}
END_TEST

/* ---- a tiny random model ---------------------------------------------------------------- */

static const char *const tiny_prompts[] = {"1+1=", "2+2=", "3+1=", "0+4=", "5+2=", "1+6="};
static const char *const tiny_answers[] = {"2", "4", "4", "4", "7", "7"};

static void write_tiny(char *path, const tokenizer *tok) {
    const gpt2_config gc = {tok->vocab_size, 24, 1, 2, 16, false};
    gpt2_model m;
    char err[256];
    ck_assert_int_eq(gpt2_init(&m, &gc, err, sizeof err), 0);
    rng_state r;
    rng_seed(&r, 9, 0);
    gpt2_init_weights(&m, &r);
    size_t n = 0;
    void *bytes = gpt2_checkpoint_serialize(&m, NULL, 0, NULL, 0, &n);
    test_save_temp(path, bytes, n);
    free(bytes);
    gpt2_free(&m);
}

/* A grader that rewards partly (so groups differ): the length grader plus
 * the exact answer. */
static const char tiny_grader[] =
    "{\"type\": \"multi\", \"graders\": {\"len\": {\"type\": \"length\", \"min_length\": 1, "
    "\"max_length\": 2, \"penalty\": 0.25}, \"exact\": " ARITH_TASK_GRADER_JSON
    "}, \"calculate_output\": \"len + exact\"}";

START_TEST(test_grpo_and_rloo_resume_is_bit_identical) {
    tokenizer tok;
    char err[512], sft[64];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    write_tiny(sft, &tok);
    for (int k = 0; k < 3; k++) {
        const grpo_algorithm algo = k == 2 ? GRPO_ALGORITHM_RLOO : GRPO_ALGORITHM_GRPO;
        grpo_lm_config c;
        hparams_set_defaults(algo == GRPO_ALGORITHM_RLOO ? &rloo_lm_hparams : &grpo_lm_hparams, &c);
        snprintf(c.grader, sizeof c.grader, "%s", tiny_grader);
        c.total_steps = 6, c.prompts_per_step = 2, c.num_generations = 3;
        c.max_completion_length = 5, c.learning_rate = 3e-3, c.checkpoint_interval = 2;
        c.eval_interval = 2;
        if (k == 1) /* LoRA, a KL, two passes, DAPO's settings */
            c.lora_r = 2, c.beta = 0.05, c.num_iterations = 2, c.epsilon_high = 0.28,
            c.skip_zero_std = true;
        snprintf(c.loss_aggregation, sizeof c.loss_aggregation, "%s",
                 k == 1 ? "token" : "sequence");
        grpo_lm_inputs in = {algo,
                             tiny_prompts,
                             tiny_answers,
                             6,
                             tiny_prompts + 4,
                             tiny_answers + 4,
                             2,
                             &tok,
                             sft,
                             NULL,
                             NULL,
                             false,
                             NULL,
                             NULL};
        test_checkpoints whole = {.keep_step = 2}, resumed = {0};
        grpo_lm_result res;
        train_sink sink = {&whole, NULL, NULL, test_checkpoints_add, NULL, NULL, NULL, NULL};
        ck_assert_msg(grpo_lm_train(&c, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(res.steps, 6);
        ck_assert_ptr_nonnull(whole.kept);
        char ck[64];
        test_save_temp(ck, whole.kept, whole.n_kept);
        in.resume_checkpoint = ck;
        sink.ctx = &resumed;
        ck_assert_msg(grpo_lm_train(&c, &in, &sink, &res, err, sizeof err) == 0, "%s", err);
        ck_assert_msg(whole.n_last == resumed.n_last &&
                          memcmp(whole.last, resumed.last, whole.n_last) == 0,
                      "case %d: the resumed run's final checkpoint differs", k);
        unlink(ck);
        test_checkpoints_free(&whole), test_checkpoints_free(&resumed);
    }
    /* a bad grader is refused before anything runs, the field named */
    grpo_lm_config c;
    hparams_set_defaults(&grpo_lm_hparams, &c);
    snprintf(c.grader, sizeof c.grader,
             "{\"type\": \"string_check\", \"input\": \"{{sample.output_text}}\", "
             "\"reference\": \"x\", \"operation\": \"like2\"}");
    ck_assert_int_eq(grpo_lm_validate(&c, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "'grader'") && strstr(err, "grader.operation"), "%s", err);
    unlink(sft);
    tokenizer_free(&tok);
}
END_TEST

Suite *grpo_lm_suite(void) {
    Suite *s = suite_create("grpo_lm");
    TCase *tc = tcase_create("grpo_lm");
    tcase_set_timeout(tc, 150);
    tcase_add_test(tc, test_group_advantages_by_hand);
    tcase_add_test(tc, test_loss_aggregation_by_hand);
    tcase_add_test(tc, test_clipped_token_loss_by_hand);
    tcase_add_test(tc, test_grpo_and_rloo_resume_is_bit_identical);
    tcase_add_test(tc, test_grpo_on_the_arith_task);
    suite_add_tcase(s, tc);
    return s;
}
