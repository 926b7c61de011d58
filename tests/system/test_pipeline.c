/* The RLHF pipeline end to end on the demo task, small: SFT from scratch →
 * sample the SFT policy → simulated annotator rankings (gold score with
 * Plackett–Luce noise) → reward model → PPO. The reward model must beat
 * chance on held-out rankings, its normalised score must have mean ~0 and
 * std ~1 on fresh samples of the SFT policy (what the normalisation
 * promises PPO), and PPO must raise the hidden gold score of the policy's
 * samples while the KL to the SFT model stays bounded.
 *
 * The thresholds sit below what seeds 0-4 reach (RLHF_PIPELINE_SEED=N
 * build/run-tests pipeline runs seed N; the numbers are in README.md):
 * accuracy 0.78-0.83 (asserted > 0.72), normalised score mean -0.22..0.00
 * and std 0.99-1.22 on 200 fresh samples (the normalisation itself sees 64),
 * gold gain 1.38-1.80 (asserted > 1.0) at KL 2.1-3.8 nats (asserted < 8). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "demo_task.h"
#include "gpt2.h"
#include "model.h"
#include "reward.h"
#include "ppo_lm.h"
#include "sft.h"
#include "suites.h"
#include "test_util.h"

/* A sink that keeps the last checkpoint in a file. */
typedef struct keep_sink {
    char path[64];
    int checkpoints;
} keep_sink;

static int keep_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    keep_sink *k = ctx;
    (void)step;
    FILE *f = fopen(k->path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(fwrite(bytes, 1, n, f), n);
    fclose(f);
    k->checkpoints++;
    return 0;
}

static void keep_init(keep_sink *k, train_sink *s) {
    snprintf(k->path, sizeof k->path, "/tmp/rlhf-pipeline-XXXXXX");
    const int fd = mkstemp(k->path);
    ck_assert_int_ge(fd, 0);
    close(fd);
    k->checkpoints = 0;
    *s = (train_sink){k, NULL, NULL, keep_checkpoint, NULL, NULL, NULL, NULL};
}

/* Mean gold score of n samples (temperature 1) on fresh demo prompts. */
static double mean_gold(const char *path, const tokenizer *tok, int n, uint64_t seed) {
    gpt2_model g;
    load_checkpoint_model(&g, path, false);
    model m;
    model_from_gpt2(&m, &g);
    const double gold = demo_task_mean_gold(&m, tok, n, seed);
    model_free(&m);
    return gold;
}

/* Mean and standard deviation, over n samples of the policy at path
 * (temperature 1, up to max_new tokens, on fresh demo prompts), of the
 * reward model's score as PPO reads it: gain * raw + bias. */
static void normalised_scores(const char *policy_path, const char *rm_path, const tokenizer *tok,
                              int n, int max_new, uint64_t seed, double *mean, double *std) {
    gpt2_model policy, rm;
    load_checkpoint_model(&policy, policy_path, false);
    const model_open_options opt = {.scalar_head = true, .require_head = true};
    model_info info;
    char err[256];
    ck_assert_msg(model_open(rm_path, &opt, &rm, &info, err, sizeof err) == 0, "%s", err);
    rng_state r;
    rng_seed(&r, seed, 0);
    const int cap = rm.cfg.max_seq_len;
    int32_t *row = malloc(sizeof(int32_t) * (size_t)cap),
            *out = malloc(sizeof(int32_t) * (size_t)cap);
    double sum = 0.0, sum2 = 0.0;
    for (int i = 0; i < n; i++) {
        char prompt[128], response[256];
        demo_task_example(&r, prompt, sizeof prompt, response, sizeof response);
        const int64_t np = tokenizer_encode(tok, prompt, strlen(prompt), row, (size_t)cap, false);
        const int room = (int)(cap - np - 1);
        const gpt2_sample_config sc = {1.0f, 0, 1.0f, max_new < room ? max_new : room, tok->eot_id};
        int32_t got = 0;
        ck_assert_msg(
            gpt2_generate(&policy, row, NULL, 1, (int)np, &sc, &r, out, &got, err, sizeof err) == 0,
            "%s", err);
        memcpy(row + np, out, sizeof(int32_t) * (size_t)got);
        int T = (int)np + got;
        if (got == 0 || out[got - 1] != tok->eot_id)
            row[T++] = tok->eot_id;
        ck_assert_int_eq(gpt2_reserve(&rm, 1, T, err, sizeof err), 0);
        const gpt2_batch b = {row, NULL, NULL, 1, T};
        gpt2_forward(&rm, &b, false);
        const double score = info.reward_gain * rm.acts.values[T - 1] + info.reward_bias;
        sum += score, sum2 += score * score;
    }
    *mean = sum / n;
    *std = sqrt(fmax(sum2 / n - *mean * *mean, 0.0));
    free(row), free(out);
    gpt2_free(&policy), gpt2_free(&rm);
}

START_TEST(test_rlhf_pipeline_on_the_demo_task) {
    /* Under the sanitizers (make test-asan) the same pipeline runs shrunk,
     * for memory safety; the learning assertions need the full size. */
    const char *scale = getenv("RLHF_TEST_SCALE");
    const int small = scale != NULL && strcmp(scale, "asan") == 0;
    const char *seed_text = getenv("RLHF_PIPELINE_SEED");
    const uint64_t seed = seed_text != NULL ? strtoull(seed_text, NULL, 10) : 0;
    tokenizer tok;
    char err[512];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);

    /* 1. SFT from scratch */
    enum { N_SFT = 1500 };
    static char sp[N_SFT][128], sr[N_SFT][256];
    static text_pair ex[N_SFT];
    rng_state r;
    rng_seed(&r, 101 + 1000 * seed, 0);
    for (int i = 0; i < N_SFT; i++) {
        demo_task_example(&r, sp[i], 128, sr[i], 256);
        ex[i] = (text_pair){sp[i], sr[i], NULL, 0};
    }
    sft_config sc;
    hparams_set_defaults(&sft_hparams, &sc);
    sc.n_layer = 2, sc.d_model = 64, sc.n_head = 4, sc.context = 64,
    sc.max_steps = small ? 40 : 800;
    sc.learning_rate = 3e-3, sc.eval_interval = 0, sc.sample_interval = 0;
    sc.seed += (int64_t)seed;
    keep_sink sft_ck;
    train_sink sink;
    keep_init(&sft_ck, &sink);
    const sft_inputs si = {ex, N_SFT, NULL, 0, &tok, NULL, NULL, NULL, NULL};
    ck_assert_msg(sft_train(&sc, &si, &sink, NULL, err, sizeof err) == 0, "%s", err);

    /* 2. the simulated annotator ranks K = 4 samples of the SFT policy */
    enum { N_RANK = 800, K = 4 };
    static char rp[N_RANK][128], rr[N_RANK][K][DEMO_TASK_RESPONSE_BYTES];
    static ranking rk[N_RANK];
    gpt2_model sft_gpt2;
    load_checkpoint_model(&sft_gpt2, sft_ck.path, false);
    model sft;
    model_from_gpt2(&sft, &sft_gpt2);
    rng_state noise;
    rng_seed(&noise, 102 + 1000 * seed, 0);
    int n_rank = 0;
    for (int i = 0; i < (small ? 40 : N_RANK); i++) {
        rk[n_rank] = (ranking){.prompt = rp[n_rank], .k = K};
        /* K = 4 samples, Plackett–Luce noise of temperature 0.5 */
        demo_task_annotate(&sft, &tok, K, 0.5, &r, &noise, rp[n_rank], 128, rr[n_rank],
                           rk[n_rank].rank);
        for (int j = 0; j < K; j++)
            rk[n_rank].responses[j] = rr[n_rank][j];
        n_rank += ranking_validate(&rk[n_rank], err, sizeof err) == 0;
    }
    model_free(&sft);

    /* 3. the reward model, from the SFT weights */
    reward_config rc;
    hparams_set_defaults(&reward_hparams, &rc);
    rc.epochs = small ? 1 : 3, rc.learning_rate = 1e-3, rc.eval_interval = 0,
    rc.eval_fraction = 0.15;
    rc.seed += (int64_t)seed;
    /* The check below compares two sample means of the normalised reward
     * (std ~1): the normalisation's own (norm_samples) and 200 fresh SFT
     * samples. At the default 64 their difference has a standard error of
     * sqrt(1/64 + 1/200) = 0.14, so |mean| < 0.35 was a 2.4-sigma check
     * that failed by chance on some machines' BLAS kernels (0.365 on
     * OpenBLAS's Cooperlake kernels, 2026-12-06). At 256: 0.094, 3.7 sigma. */
    rc.norm_samples = 256;
    keep_sink rm_ck;
    keep_init(&rm_ck, &sink);
    const reward_inputs ri = {rk, n_rank, NULL, 0, &tok, sft_ck.path, NULL, NULL, 0, NULL};
    reward_result rres;
    ck_assert_msg(reward_train(&rc, &ri, &sink, &rres, err, sizeof err) == 0, "%s", err);
    ck_assert_msg(small || rres.eval_accuracy > 0.72,
                  "reward model held-out accuracy %.3f (chance 0.5)", rres.eval_accuracy);
    double norm_mean = 0.0, norm_std = 1.0;
    if (!small) {
        /* fresh SFT samples, not the ones the normalisation saw */
        normalised_scores(sft_ck.path, rm_ck.path, &tok, 200, (int)rc.norm_max_tokens, 31 + seed,
                          &norm_mean, &norm_std);
        ck_assert_msg(fabs(norm_mean) < 0.35 && norm_std > 0.75 && norm_std < 1.4,
                      "normalised reward on SFT samples: mean %.3f, std %.3f (want ~0, ~1)",
                      norm_mean, norm_std);
    }

    /* 4. PPO against it, KL-penalised to the SFT model */
    ppo_lm_config pc;
    hparams_set_defaults(&ppo_lm_hparams, &pc);
    pc.total_updates = small ? 2 : 30, pc.batch_size = 16, pc.mini_batch_size = 4,
    pc.response_length = 40;
    pc.learning_rate = 1e-4, pc.kl_coef = 0.2, pc.sample_interval = 0;
    pc.seed += (int64_t)seed;
    const char *prompts[N_SFT];
    for (int i = 0; i < N_SFT; i++)
        prompts[i] = sp[i];
    keep_sink ppo_ck;
    keep_init(&ppo_ck, &sink);
    const ppo_lm_inputs pi = {prompts, N_SFT, &tok, sft_ck.path, rm_ck.path, NULL,
                              NULL,    NULL,  NULL, false,       NULL};
    ppo_lm_result pres;
    ck_assert_msg(ppo_lm_train(&pc, &pi, &sink, &pres, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(pres.updates, pc.total_updates);
    if (small) {
        unlink(sft_ck.path), unlink(rm_ck.path), unlink(ppo_ck.path);
        tokenizer_free(&tok);
        return;
    }
    ck_assert_msg(pres.last_score > pres.first_score, "reward model score %.3f -> %.3f",
                  pres.first_score, pres.last_score);
    ck_assert_msg(pres.last_kl < 8.0, "KL to the SFT model %.2f nats", pres.last_kl);

    /* 5. the hidden gold score of the policy's samples went up */
    const double gold_sft = mean_gold(sft_ck.path, &tok, 200, 7);
    const double gold_ppo = mean_gold(ppo_ck.path, &tok, 200, 7);
    fprintf(stderr,
            "pipeline (seed %llu): RM accuracy %.3f, normalised RM score on SFT samples mean %.3f "
            "std %.3f, RM score %.3f -> %.3f, KL %.2f, gold %.3f -> %.3f\n",
            (unsigned long long)seed, rres.eval_accuracy, norm_mean, norm_std, pres.first_score,
            pres.last_score, pres.last_kl, gold_sft, gold_ppo);
    ck_assert_msg(gold_ppo > gold_sft + 1.0, "gold score %.3f (SFT) -> %.3f (PPO)", gold_sft,
                  gold_ppo);
    unlink(sft_ck.path), unlink(rm_ck.path), unlink(ppo_ck.path);
    tokenizer_free(&tok);
}
END_TEST

Suite *pipeline_suite(void) {
    Suite *s = suite_create("pipeline");
    TCase *tc = tcase_create("rlhf");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, test_rlhf_pipeline_on_the_demo_task);
    suite_add_tcase(s, tc);
    return s;
}
