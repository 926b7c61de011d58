/* ppo_lora_quality — does PPO with LoRA still learn? The demo pipeline of
 * bench/demo_pipeline.c (SFT from scratch, the simulated annotator's
 * rankings, a reward model — built once, as bench/ppo_value_model.c does),
 * then PPO per seed with full fine-tuning (lr 1e-4,
 * the pipeline's) and with LoRA r 8, alpha 16 at lr 1e-3 and 3e-4 (adapters
 * usually want a larger step). Reports the reward-model score of the first
 * and last rollouts, the KL to the SFT model and the hidden gold score of
 * 400 samples of the final policy (its checkpoint loaded, adapters merged).
 *
 *   make build/ppo-lora-quality && OPENBLAS_NUM_THREADS=1 build/ppo-lora-quality [SEEDS]
 *
 * One line of JSON per run on stdout. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "demo_pipeline.h"
#include "rlhf_ppo.h"

int main(int argc, char **argv) {
    const int seeds = argc > 1 ? atoi(argv[1]) : 3;
    static demo_pipeline pipe;
    if (demo_pipeline_build(&pipe) != 0)
        return 1;
    const tokenizer *tok = &pipe.tok;
    const char *const *prompts = pipe.prompts;
    const double gold_sft = pipe.gold_sft;
    char err[512];
    keep ppo_ck;
    train_sink sink;
    static const struct {
        int r;
        double lr;
    } var[] = {{0, 1e-4}, {8, 1e-3}, {8, 3e-4}};
    for (int s = 0; s < seeds; s++)
        for (int v = 0; v < 3; v++) {
            ppo_lm_config pc;
            hparams_set_defaults(&ppo_lm_hparams, &pc);
            pc.seed = s + 1, pc.total_updates = 30, pc.batch_size = 16, pc.mini_batch_size = 4;
            pc.response_length = 40, pc.learning_rate = var[v].lr, pc.kl_coef = 0.2;
            pc.sample_interval = 0, pc.lora_r = var[v].r, pc.lora_alpha = 16;
            sink = keep_sink(&ppo_ck, "ppo");
            const ppo_lm_inputs pi = {.prompts = prompts,
                                      .n_prompts = DEMO_PIPELINE_N_SFT,
                                      .tok = tok,
                                      .policy_checkpoint = pipe.sft.path,
                                      .reward_checkpoint = pipe.rm.path};
            ppo_lm_result pres;
            const double t0 = now_s();
            if (ppo_lm_train(&pc, &pi, &sink, &pres, err, sizeof err) != 0)
                return fprintf(stderr, "ppo: %s\n", err), 1;
            const double dt = now_s() - t0;
            const double gold = mean_gold(ppo_ck.path, tok, 400, 7);
            printf("{\"seed\":%d,\"lora_r\":%d,\"lr\":%g,\"score_first\":%.4f,\"score_last\":%.4f,"
                   "\"kl\":%.3f,\"gold_sft\":%.4f,\"gold_ppo\":%.4f,\"s_per_update\":%.3f}\n",
                   s + 1, var[v].r, var[v].lr, pres.first_score, pres.last_score, pres.last_kl,
                   gold_sft, gold, dt / 30);
            fflush(stdout);
        }
    unlink(pipe.sft.path), unlink(pipe.rm.path), unlink(ppo_ck.path);
    tokenizer_free(&pipe.tok);
    return 0;
}
