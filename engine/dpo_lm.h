/* dpo_lm — Direct Preference Optimization of a language model on rankings
 * (Rafailov et al. 2023), with the losses of dpo.h (sigmoid, IPO, hinge,
 * label smoothing) and TRL's metric names.
 *
 * Data: every ranking gives its C(K, 2) (chosen, rejected) pairs, ties
 * dropped (dpo_pairs_from_ranks); a TRL or OpenAI preference row is a
 * ranking of two. Held-out pairs come from the eval rankings, or from
 * eval_fraction of the rankings (whole rankings, so no prompt is on both
 * sides). A pair's log-prob is the sum over the response's tokens (its
 * <|endoftext|> included) of log π(token | prompt, earlier tokens), or their
 * mean with length_normalize.
 *
 * Reference log-probs (hyperparameter reference):
 *   precomputed   (default) once before training, for every pair, from the
 *                 initial model — with LoRA the policy with its adapters
 *                 off, else a copy of the initial model loaded for that pass
 *                 and freed. The reference never changes, so its log-probs
 *                 are the same numbers every step: computing them once costs
 *                 one forward per pair for the whole run instead of one per
 *                 pair per step, and no second model stays in memory.
 *   adapters_off  every step, the policy with its adapters off (LoRA only).
 *   frozen_copy   every step, a frozen copy of the initial model.
 * All three give the same losses up to float rounding; the last two exist
 * for comparison and for data too large to keep two floats per pair.
 *
 * One step: batch_size pairs of the shuffled stream (a new epoch
 * reshuffles); 2·batch_size rows (the chosen, then the rejected responses)
 * in one forward; dpo_loss; its gradients with respect to the sequence
 * log-probs spread over their tokens (lm_rows_backward); clipping; Adam on
 * the learning-rate schedule. Metrics every step: loss, rewards/chosen,
 * rewards/rejected, rewards/accuracies, rewards/margins, logps/chosen,
 * logps/rejected (dpo.h defines them), lr, grad_norm; every eval_interval
 * steps and at the end the same over the held-out pairs as eval/loss,
 * eval/rewards/accuracies (the held-out preference accuracy: the share of
 * pairs whose implicit reward puts the chosen response strictly above the
 * rejected one; 0 before training, where every pair ties), eval/rewards/
 * margins, eval/logps/chosen, eval/logps/rejected.
 *
 * Data parallel (in->dist, dist.h): every rank draws the same pairs; rank r
 * scores its contiguous shard of them (dist_shard) with its loss weighted by
 * shard / batch_size, the gradients and metrics are summed over the ranks
 * before the one Adam step all replicas take; the reference precomputation
 * and the held-out metrics are sharded the same way. N ranks compute the
 * sums of one rank in another order: the same curve up to float rounding.
 *
 * Resume: periodic checkpoints (checkpoint_interval) and the one written when
 * the sink asks to stop carry Adam's moments and step, the step, the pair
 * order (the RNG state that shuffled it) and cursor; the run then ends
 * bit-identical to an uninterrupted one at the same thread count. The final
 * checkpoint is the policy's weights alone.
 */
#ifndef RLHF_DPO_LM_H
#define RLHF_DPO_LM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hparams.h"
#include "reward.h"
#include "sink.h"
#include "tokenizer.h"

typedef struct dpo_lm_config {
    int64_t seed;
    int64_t epochs;
    int64_t max_steps; /* 0 = as many as epochs take */
    int64_t batch_size;
    double learning_rate;
    char lr_schedule[HPARAM_CHOICE_BYTES];
    int64_t warmup_steps;
    double max_grad_norm;
    double beta;
    char loss_type[HPARAM_CHOICE_BYTES];
    double label_smoothing;
    bool length_normalize;
    char reference[HPARAM_CHOICE_BYTES]; /* precomputed | adapters_off | frozen_copy */
    int64_t max_prompt_length;
    int64_t max_response_length;
    double eval_fraction;
    int64_t eval_interval;
    int64_t checkpoint_interval;
    int64_t lora_r;
    double lora_alpha;
    char lora_targets[HPARAM_CHOICE_BYTES];
} dpo_lm_config;

extern const hparam_table dpo_lm_hparams;

typedef struct dpo_lm_inputs {
    const ranking *train;
    int64_t n_train;
    const ranking *eval; /* NULL: hold out eval_fraction of train */
    int64_t n_eval;
    const tokenizer *tok;
    const char *policy_checkpoint; /* the SFT model: policy init and reference */
    /* A periodic or stopped-run checkpoint of this job (same hyperparameters,
     * data and SFT model). */
    const char *resume_checkpoint;
    /* Data parallel (dist.h): each rank scores and trains on its shard of
     * every batch; NULL = one process. */
    const dist_comm *dist;
} dpo_lm_inputs;

typedef struct dpo_lm_result {
    int64_t steps;
    int64_t n_train_pairs, n_eval_pairs;
    double eval_accuracy, eval_margin; /* at the end; NAN without held-out pairs */
    bool stopped;
} dpo_lm_result;

int dpo_lm_validate(const dpo_lm_config *cfg, char *err, size_t errlen);
int dpo_lm_train(const dpo_lm_config *cfg, const dpo_lm_inputs *in, const train_sink *sink,
                 dpo_lm_result *result, char *err, size_t errlen);

#endif
