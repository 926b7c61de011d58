/* loop_sample — the `loop-sample` job: one round's samples of an online
 * loop (server/loops.h), drawn in the worker pool instead of the daemon.
 *
 * K responses to each of n_prompts prompts (the prompts dataset's rows from
 * prompt_offset, wrapping) from the policy, each scored by up to
 * LOOP_SAMPLE_MAX_MODELS reward models (the loop's ensemble: scores the
 * selection rule reads) and by the demo task's gold function. The samples
 * reach the sink in ONE call (sink->samples) at the end, so whoever stores
 * them stores all or none; a run redone after a kill draws the same ones:
 * prompt i's K rows come from rng stream i of `seed`.
 */
#ifndef RLHF_LOOP_SAMPLE_H
#define RLHF_LOOP_SAMPLE_H

#include <stdint.h>

#include "hparams.h"
#include "sink.h"
#include "tokenizer.h"

enum { LOOP_SAMPLE_MAX_MODELS = 3, LOOP_SAMPLE_MAX_PROMPTS = 16, LOOP_SAMPLE_MAX_K = 16 };

typedef struct loop_sample_config {
    int64_t prompt_offset;      /* first prompts row (0-based), wrapping */
    int64_t n_prompts;          /* prompts sampled */
    int64_t samples_per_prompt; /* K */
    int64_t max_tokens;         /* per response */
    double temperature;
    int64_t seed;
} loop_sample_config;

extern const hparam_table loop_sample_hparams;

int loop_sample_validate(const loop_sample_config *cfg, char *err, size_t errlen);

typedef struct loop_sample_inputs {
    const char *const *prompts; /* every row of the prompts dataset */
    int64_t n_rows;
    const tokenizer *tok;                  /* the lineage's */
    const char *policy_checkpoint;         /* sampled from */
    const char *const *reward_checkpoints; /* scored by, in order (may be 0 of them) */
    int n_reward;
} loop_sample_inputs;

/* Samples, scores and hands the n_prompts × K samples to sink->samples
 * (row b answers prompt b / K). 0, or -1 with err. */
int loop_sample_run(const loop_sample_config *cfg, const loop_sample_inputs *in,
                    const train_sink *sink, char *err, size_t errlen);

#endif
