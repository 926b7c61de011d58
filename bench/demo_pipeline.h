/* demo_pipeline — the demo RLHF pipeline of tests/test_pipeline.c, built
 * once for the bench programs that compare PPO variants on it
 * (bench/ppo_value_model.c, bench/ppo_lora_quality.c): SFT from scratch on
 * the demo task, the simulated annotator's K = 4 rankings of SFT samples
 * (gold score with Plackett-Luce noise), a reward model from the SFT
 * weights. Checkpoints go to /tmp files named by pid; the caller unlinks. */
#ifndef RLHF_BENCH_DEMO_PIPELINE_H
#define RLHF_BENCH_DEMO_PIPELINE_H

#include <stdint.h>

#include "ppo_lm.h"
#include "sink.h"
#include "tokenizer.h"

enum { DEMO_PIPELINE_N_SFT = 1500 };

typedef struct keep {
    char path[64];
} keep;

/* A sink that keeps the last checkpoint in /tmp/rlhf-vm-PID-NAME. */
train_sink keep_sink(keep *k, const char *name);
/* Mean gold score of n samples (temperature 1) of the checkpoint at path on
 * fresh demo prompts drawn from seed. */
double mean_gold(const char *path, const tokenizer *tok, int n, uint64_t seed);
double now_s(void);

typedef struct demo_pipeline {
    tokenizer tok;
    keep sft, rm;                             /* the checkpoints' files */
    const char *prompts[DEMO_PIPELINE_N_SFT]; /* the SFT prompts, for PPO */
    double rm_eval_accuracy, gold_sft;
} demo_pipeline;

/* Builds it (minutes); 0, or -1 after printing why. */
int demo_pipeline_build(demo_pipeline *p);

/* The PPO settings both bench programs compare variants under: defaults,
 * then seed, 30 updates of 16 rollouts (minibatches of 4), responses of 40
 * tokens, lr 1e-4, kl_coef 0.2, no samples. */
void demo_pipeline_ppo_config(ppo_lm_config *pc, int seed);

typedef struct demo_ppo_run {
    ppo_lm_result res;
    double gold;         /* mean gold score of 400 samples of the final policy */
    double s_per_update; /* wall-clock */
} demo_ppo_run;

/* PPO from p's SFT checkpoint against its reward model with pc; the last
 * checkpoint kept in k. 0, or -1 after printing why. */
int demo_pipeline_ppo(const demo_pipeline *p, const ppo_lm_config *pc, keep *k, demo_ppo_run *out);

#endif
