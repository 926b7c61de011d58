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
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "demo_pipeline.h"
#include "ppo_lm.h"

static int cmp(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv) {
    const int seeds = argc > 1 ? atoi(argv[1]) : 3;
    static demo_pipeline pipe;
    if (demo_pipeline_build(&pipe) != 0)
        return 1;
    keep ppo_ck;
    /* 4. PPO, the two value models alternating per seed */
    static const char *const kinds[2] = {"reward_model", "policy_head"};
    double gain[2][16], kl[2][16], spu[2][16];
    for (int s = 0; s < seeds && s < 16; s++)
        for (int v = 0; v < 2; v++) {
            ppo_lm_config pc;
            demo_pipeline_ppo_config(&pc, s + 1);
            snprintf(pc.value_model, sizeof pc.value_model, "%s", kinds[v]);
            demo_ppo_run run;
            if (demo_pipeline_ppo(&pipe, &pc, &ppo_ck, &run) != 0)
                return 1;
            gain[v][s] = run.gold - pipe.gold_sft, kl[v][s] = run.res.last_kl;
            spu[v][s] = run.s_per_update;
            printf("{\"seed\":%d,\"value_model\":\"%s\",\"score_first\":%.4f,\"score_last\":%.4f,"
                   "\"kl\":%.3f,\"gold_sft\":%.4f,\"gold_ppo\":%.4f,\"s_per_update\":%.3f}\n",
                   s + 1, kinds[v], run.res.first_score, run.res.last_score, run.res.last_kl,
                   pipe.gold_sft, run.gold, run.s_per_update);
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
    unlink(pipe.sft.path), unlink(pipe.rm.path), unlink(ppo_ck.path);
    tokenizer_free(&pipe.tok);
    return 0;
}
