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
#include "ppo_lm.h"

int main(int argc, char **argv) {
    const int seeds = argc > 1 ? atoi(argv[1]) : 3;
    static demo_pipeline pipe;
    if (demo_pipeline_build(&pipe) != 0)
        return 1;
    keep ppo_ck;
    static const struct {
        int r;
        double lr;
    } var[] = {{0, 1e-4}, {8, 1e-3}, {8, 3e-4}};
    for (int s = 0; s < seeds; s++)
        for (int v = 0; v < 3; v++) {
            ppo_lm_config pc;
            demo_pipeline_ppo_config(&pc, s + 1);
            pc.learning_rate = var[v].lr, pc.lora_r = var[v].r, pc.lora_alpha = 16;
            demo_ppo_run run;
            if (demo_pipeline_ppo(&pipe, &pc, &ppo_ck, &run) != 0)
                return 1;
            printf("{\"seed\":%d,\"lora_r\":%d,\"lr\":%g,\"score_first\":%.4f,\"score_last\":%.4f,"
                   "\"kl\":%.3f,\"gold_sft\":%.4f,\"gold_ppo\":%.4f,\"s_per_update\":%.3f}\n",
                   s + 1, var[v].r, var[v].lr, run.res.first_score, run.res.last_score,
                   run.res.last_kl, pipe.gold_sft, run.gold, run.s_per_update);
            fflush(stdout);
        }
    unlink(pipe.sft.path), unlink(pipe.rm.path), unlink(ppo_ck.path);
    tokenizer_free(&pipe.tok);
    return 0;
}
