/* See demo_pipeline.h. */
#include "demo_pipeline.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "demo_task.h"
#include "gpt2.h"
#include "model.h"
#include "reward.h"
#include "sft.h"

static int keep_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    keep *k = ctx;
    (void)step;
    FILE *f = fopen(k->path, "wb");
    if (f == NULL || fwrite(bytes, 1, n, f) != n)
        return -1;
    return fclose(f);
}

train_sink keep_sink(keep *k, const char *name) {
    snprintf(k->path, sizeof k->path, "/tmp/rlhf-vm-%d-%s", (int)getpid(), name);
    return (train_sink){k, NULL, NULL, keep_checkpoint, NULL, NULL, NULL, NULL};
}

static void load(model *m, const char *path) {
    char err[256];
    if (model_load(path, NULL, m, NULL, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", path, err);
        exit(1);
    }
}

double mean_gold(const char *path, const tokenizer *tok, int n, uint64_t seed) {
    model m;
    load(&m, path);
    const double gold = demo_task_mean_gold(&m, tok, n, seed);
    model_free(&m);
    return gold;
}

double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int demo_pipeline_build(demo_pipeline *p) {
    tokenizer *tok = &p->tok;
    char err[512];
    if (tokenizer_load_bytes(tok, err, sizeof err) != 0)
        return fprintf(stderr, "tokenizer: %s\n", err), -1;
    /* 1. SFT, as tests/test_pipeline.c */
    enum { N_SFT = DEMO_PIPELINE_N_SFT, N_RANK = 800, K = 4 };
    static char sp[N_SFT][128], sr[N_SFT][256];
    static text_pair ex[N_SFT];
    rng_state r;
    rng_seed(&r, 101, 0);
    for (int i = 0; i < N_SFT; i++) {
        demo_task_example(&r, sp[i], 128, sr[i], 256);
        ex[i] = (text_pair){sp[i], sr[i], NULL, 0};
    }
    sft_config sc;
    hparams_set_defaults(&sft_hparams, &sc);
    sc.n_layer = 2, sc.d_model = 64, sc.n_head = 4, sc.context = 64, sc.max_steps = 800;
    sc.learning_rate = 3e-3, sc.eval_interval = 0, sc.sample_interval = 0;
    keep *sft_ck = &p->sft, *rm_ck = &p->rm;
    train_sink sink = keep_sink(sft_ck, "sft");
    const sft_inputs si = {.train = ex, .n_train = N_SFT, .tok = tok};
    if (sft_train(&sc, &si, &sink, NULL, err, sizeof err) != 0)
        return fprintf(stderr, "sft: %s\n", err), -1;
    /* 2. rankings */
    static char rp[N_RANK][128], rr[N_RANK][K][DEMO_TASK_RESPONSE_BYTES];
    static ranking rk[N_RANK];
    model sft;
    load(&sft, sft_ck->path);
    rng_state noise;
    rng_seed(&noise, 102, 0);
    int n_rank = 0;
    for (int i = 0; i < N_RANK; i++) {
        rk[n_rank] = (ranking){.prompt = rp[n_rank], .k = K};
        /* K = 4 samples, Plackett–Luce noise of temperature 0.5 */
        demo_task_annotate(&sft, tok, K, 0.5, &r, &noise, rp[n_rank], 128, rr[n_rank],
                           rk[n_rank].rank);
        for (int j = 0; j < K; j++)
            rk[n_rank].responses[j] = rr[n_rank][j];
        n_rank += ranking_validate(&rk[n_rank], err, sizeof err) == 0;
    }
    model_free(&sft);
    /* 3. the reward model */
    reward_config rc;
    hparams_set_defaults(&reward_hparams, &rc);
    rc.epochs = 3, rc.learning_rate = 1e-3, rc.eval_interval = 0, rc.eval_fraction = 0.15;
    sink = keep_sink(rm_ck, "rm");
    const reward_inputs ri = {
        .train = rk, .n_train = n_rank, .tok = tok, .init_checkpoint = sft_ck->path};
    reward_result rres;
    if (reward_train(&rc, &ri, &sink, &rres, err, sizeof err) != 0)
        return fprintf(stderr, "reward: %s\n", err), -1;
    p->rm_eval_accuracy = rres.eval_accuracy;
    p->gold_sft = mean_gold(sft_ck->path, tok, 400, 7);
    fprintf(stderr, "RM held-out accuracy %.3f; gold of the SFT policy %.3f\n", rres.eval_accuracy,
            p->gold_sft);
    for (int i = 0; i < N_SFT; i++)
        p->prompts[i] = sp[i];
    return 0;
}

void demo_pipeline_ppo_config(ppo_lm_config *pc, int seed) {
    hparams_set_defaults(&ppo_lm_hparams, pc);
    pc->seed = seed, pc->total_updates = 30, pc->batch_size = 16, pc->mini_batch_size = 4;
    pc->response_length = 40, pc->learning_rate = 1e-4, pc->kl_coef = 0.2;
    pc->sample_interval = 0;
}

int demo_pipeline_ppo(const demo_pipeline *p, const ppo_lm_config *pc, keep *k, demo_ppo_run *out) {
    train_sink sink = keep_sink(k, "ppo");
    const ppo_lm_inputs pi = {.prompts = p->prompts,
                              .n_prompts = DEMO_PIPELINE_N_SFT,
                              .tok = &p->tok,
                              .policy_checkpoint = p->sft.path,
                              .reward_checkpoint = p->rm.path};
    char err[512];
    const double t0 = now_s();
    if (ppo_lm_train(pc, &pi, &sink, &out->res, err, sizeof err) != 0) {
        fprintf(stderr, "ppo: %s\n", err);
        return -1;
    }
    out->s_per_update = (now_s() - t0) / pc->total_updates;
    out->gold = mean_gold(k->path, &p->tok, 400, 7);
    return 0;
}
