/* sft — supervised fine-tuning of a GPT-2-family model on (prompt, response)
 * pairs: next-token cross-entropy on the response tokens (and the closing
 * <|endoftext|>) by default, or on every token; right-padded batches with
 * attention masks; AdamW with weight decay on matrices only, warm-up then
 * cosine or linear decay, gradient accumulation and clipping; held-out loss
 * and perplexity; periodic checkpoints (Hugging Face GPT-2 safetensors) and
 * sample generations, all through the sink.
 *
 * Resumable: periodic checkpoints, and the one written when the sink asks to
 * stop, also carry the trainer's state — AdamW moments as tensors
 * `training_state.adam_m` / `.adam_v`, and step, epoch, data position, RNG
 * states and the hyperparameters in `training_state.*` metadata — so one file
 * restarts the job exactly. Hugging Face loaders ignore those tensors; the
 * final checkpoint of a completed run holds the weights alone.
 */
#ifndef RLHF_SFT_H
#define RLHF_SFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dist.h"
#include "hparams.h"
#include "sink.h"
#include "tokenizer.h"

typedef struct sft_config {
    int64_t seed;
    int64_t n_layer, n_head, d_model, context; /* architecture when training from scratch */
    int64_t batch_size;
    int64_t grad_accum_steps;
    int64_t max_steps; /* optimizer steps; 0 = run epochs */
    int64_t epochs;
    double learning_rate;
    char lr_schedule[HPARAM_CHOICE_BYTES]; /* cosine | linear | constant */
    int64_t warmup_steps;
    double min_lr_ratio;
    double weight_decay;
    double beta1, beta2, adam_eps;
    double max_grad_norm;
    char loss_on[HPARAM_CHOICE_BYTES]; /* response | all */
    double eval_fraction;
    int64_t eval_interval;
    int64_t checkpoint_interval;
    int64_t sample_interval;
    int64_t sample_max_tokens;
    double sample_temperature;
} sft_config;

extern const hparam_table sft_hparams;

/* One training example: text, not yet tokenized. */
typedef struct text_pair {
    const char *prompt;
    const char *response;
} text_pair;

typedef struct sft_inputs {
    const text_pair *train;
    int64_t n_train;
    const text_pair *eval; /* NULL: hold out eval_fraction of train */
    int64_t n_eval;
    const tokenizer *tok;
    const char *init_checkpoint; /* safetensors path; NULL = from scratch */
    /* A checkpoint written by a stopped or periodic save of this same job
     * (same hyperparameters and data): training continues from it and ends
     * bit-identical to an uninterrupted run at the same thread count. */
    const char *resume_checkpoint;
    /* Data parallelism (dist.h): every rank passes the same inputs and
     * trains on its shard of each micro-batch; NULL = one process. */
    const dist_comm *dist;
} sft_inputs;

typedef struct sft_result {
    int64_t steps;
    double train_loss; /* mean of the last step */
    double eval_loss;  /* NAN if never evaluated */
    bool stopped;
} sft_result;

int sft_validate(const sft_config *cfg, char *err, size_t errlen);
int sft_train(const sft_config *cfg, const sft_inputs *in, const train_sink *sink,
              sft_result *result, char *err, size_t errlen);

/* Tokenizes prompt + response + <|endoftext|> into ids (up to cap), and
 * marks in loss_mask[i] whether predicting ids[i + 1] from ids[..i] is
 * trained on (response tokens and the EOT; everything when all_tokens).
 * Returns the number of ids (truncated to cap), or -1 on a tokenizer error. */
int64_t sft_tokenize(const tokenizer *tok, const text_pair *ex, bool all_tokens, int32_t *ids,
                     uint8_t *loss_mask, int64_t cap);

#endif
