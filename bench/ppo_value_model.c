/* ppo_value_model — which value model should PPO default to? Measured on the
 * demo pipeline of tests/test_pipeline.c (same sizes and hyperparameters):
 * SFT from scratch, the simulated annotator's rankings, a reward model from
 * the SFT weights — built once — then PPO with value_model = reward_model and
 * = policy_head, alternating, for each PPO seed. Per run it reports the mean
 * reward-model score of the first and last rollouts, the KL to the SFT model,
 * the hidden gold score of 400 samples of the final policy (the pipeline
 * test's check: gold of the SFT model first) and seconds per update.
 *
 *   make build/ppo-value-model && build/ppo-value-model [SEEDS]   (default 3)
 *
 * One line of JSON per run on stdout, a summary table on stderr. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo_task.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "reward.h"
#include "rlhf_ppo.h"
#include "safetensors.h"
#include "sft.h"

typedef struct keep {
    char path[64];
} keep;

static int keep_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    keep *k = ctx;
    (void)step;
    FILE *f = fopen(k->path, "wb");
    if (f == NULL || fwrite(bytes, 1, n, f) != n)
        return -1;
    return fclose(f);
}

static train_sink keep_sink(keep *k, const char *name) {
    snprintf(k->path, sizeof k->path, "/tmp/rlhf-vm-%d-%s", (int)getpid(), name);
    return (train_sink){k, NULL, NULL, keep_checkpoint, NULL};
}

static void load(gpt2_model *m, const char *path) {
    safetensors_file f;
    gpt2_config gc;
    char err[256];
    if (safetensors_read_file(&f, path, err, sizeof err) != 0 ||
        gpt2_config_from_checkpoint(&gc, &f, err, sizeof err) != 0 ||
        (gc.scalar_head = false, gpt2_init(m, &gc, err, sizeof err)) != 0 ||
        gpt2_checkpoint_load(m, &f, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
    safetensors_free(&f);
}

static double mean_gold(const char *path, const tokenizer *tok, int n, uint64_t seed) {
    gpt2_model m;
    load(&m, path);
    rng_state prompts, sampling;
    rng_seed(&prompts, seed, 1);
    rng_seed(&sampling, seed, 2);
    double sum = 0.0;
    for (int i = 0; i < n; i++) {
        char prompt[128], unused[256], text[256];
        demo_task_example(&prompts, prompt, sizeof prompt, unused, sizeof unused);
        sum += demo_task_sample(&m, tok, prompt, 1.0f, &sampling, text, sizeof text);
    }
    gpt2_free(&m);
    return sum / n;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const int seeds = argc > 1 ? atoi(argv[1]) : 3;
    tokenizer tok;
    char err[512];
    if (tokenizer_load_bytes(&tok, err, sizeof err) != 0)
        return 1;
    /* 1. SFT, as tests/test_pipeline.c */
    enum { N_SFT = 1500, N_RANK = 800, K = 4 };
    static char sp[N_SFT][128], sr[N_SFT][256];
    static text_pair ex[N_SFT];
    rng_state r;
    rng_seed(&r, 101, 0);
    for (int i = 0; i < N_SFT; i++) {
        demo_task_example(&r, sp[i], 128, sr[i], 256);
        ex[i] = (text_pair){sp[i], sr[i]};
    }
    sft_config sc;
    hparams_set_defaults(&sft_hparams, &sc);
    sc.n_layer = 2, sc.d_model = 64, sc.n_head = 4, sc.context = 64, sc.max_steps = 800;
    sc.learning_rate = 3e-3, sc.eval_interval = 0, sc.sample_interval = 0;
    keep sft_ck, rm_ck, ppo_ck;
    train_sink sink = keep_sink(&sft_ck, "sft");
    const sft_inputs si = {.train = ex, .n_train = N_SFT, .tok = &tok};
    if (sft_train(&sc, &si, &sink, NULL, err, sizeof err) != 0)
        return fprintf(stderr, "sft: %s\n", err), 1;
    /* 2. rankings */
    static char rp[N_RANK][128], rr[N_RANK][K][256];
    static ranking rk[N_RANK];
    gpt2_model sft;
    load(&sft, sft_ck.path);
    rng_state noise;
    rng_seed(&noise, 102, 0);
    int n_rank = 0;
    for (int i = 0; i < N_RANK; i++) {
        char unused[256];
        demo_task_example(&r, rp[n_rank], 128, unused, sizeof unused);
        double key[K];
        rk[n_rank] = (ranking){.prompt = rp[n_rank], .k = K};
        for (int j = 0; j < K; j++) {
            const double gold =
                demo_task_sample(&sft, &tok, rp[n_rank], 1.0f, &r, rr[n_rank][j], 256);
            const double u = ((double)(rng_next_u64(&noise) >> 11) + 0.5) * 0x1.0p-53;
            key[j] = gold / 0.5 - log(-log(u));
            rk[n_rank].responses[j] = rr[n_rank][j];
        }
        for (int j = 0; j < K; j++) {
            rk[n_rank].rank[j] = 0;
            for (int l = 0; l < K; l++)
                rk[n_rank].rank[j] += key[l] > key[j];
        }
        n_rank += ranking_validate(&rk[n_rank], err, sizeof err) == 0;
    }
    gpt2_free(&sft);
    /* 3. the reward model */
    reward_config rc;
    hparams_set_defaults(&reward_hparams, &rc);
    rc.epochs = 3, rc.learning_rate = 1e-3, rc.eval_interval = 0, rc.eval_fraction = 0.15;
    sink = keep_sink(&rm_ck, "rm");
    const reward_inputs ri = {
        .train = rk, .n_train = n_rank, .tok = &tok, .init_checkpoint = sft_ck.path};
    reward_result rres;
    if (reward_train(&rc, &ri, &sink, &rres, err, sizeof err) != 0)
        return fprintf(stderr, "reward: %s\n", err), 1;
    const double gold_sft = mean_gold(sft_ck.path, &tok, 400, 7);
    fprintf(stderr, "RM held-out accuracy %.3f; gold of the SFT policy %.3f\n", rres.eval_accuracy,
            gold_sft);
    /* 4. PPO, the two value models alternating per seed */
    static const char *const kinds[2] = {"reward_model", "policy_head"};
    const char *prompts[N_SFT];
    for (int i = 0; i < N_SFT; i++)
        prompts[i] = sp[i];
    double gain[2][16], kl[2][16], spu[2][16];
    for (int s = 0; s < seeds && s < 16; s++)
        for (int v = 0; v < 2; v++) {
            ppo_lm_config pc;
            hparams_set_defaults(&ppo_lm_hparams, &pc);
            pc.seed = s + 1, pc.total_updates = 30, pc.batch_size = 16, pc.mini_batch_size = 4;
            pc.response_length = 40, pc.learning_rate = 1e-4, pc.kl_coef = 0.2;
            pc.sample_interval = 0;
            snprintf(pc.value_model, sizeof pc.value_model, "%s", kinds[v]);
            sink = keep_sink(&ppo_ck, "ppo");
            const ppo_lm_inputs pi = {.prompts = prompts,
                                      .n_prompts = N_SFT,
                                      .tok = &tok,
                                      .policy_checkpoint = sft_ck.path,
                                      .reward_checkpoint = rm_ck.path};
            ppo_lm_result pres;
            const double t0 = now_s();
            if (ppo_lm_train(&pc, &pi, &sink, &pres, err, sizeof err) != 0)
                return fprintf(stderr, "ppo: %s\n", err), 1;
            const double dt = now_s() - t0;
            const double gold = mean_gold(ppo_ck.path, &tok, 400, 7);
            gain[v][s] = gold - gold_sft, kl[v][s] = pres.last_kl, spu[v][s] = dt / 30;
            printf("{\"seed\":%d,\"value_model\":\"%s\",\"score_first\":%.4f,\"score_last\":%.4f,"
                   "\"kl\":%.3f,\"gold_sft\":%.4f,\"gold_ppo\":%.4f,\"s_per_update\":%.3f}\n",
                   s + 1, kinds[v], pres.first_score, pres.last_score, pres.last_kl, gold_sft, gold,
                   dt / 30);
            fflush(stdout);
        }
    const int n = seeds < 16 ? seeds : 16;
    fprintf(stderr, "| value_model | gold gain median (min–max) | KL median | s/update median |\n"
                    "|---|---|---|---|\n");
    for (int v = 0; v < 2; v++) {
        qsort(gain[v], (size_t)n, sizeof(double), cmp);
        qsort(kl[v], (size_t)n, sizeof(double), cmp);
        qsort(spu[v], (size_t)n, sizeof(double), cmp);
        fprintf(stderr, "| %s | %.3f (%.3f–%.3f) | %.2f | %.2f |\n", kinds[v], gain[v][n / 2],
                gain[v][0], gain[v][n - 1], kl[v][n / 2], spu[v][n / 2]);
    }
    unlink(sft_ck.path), unlink(rm_ck.path), unlink(ppo_ck.path);
    tokenizer_free(&tok);
    return 0;
}
