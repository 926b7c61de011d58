/* sft — supervised fine-tuning of a language model of any family (model.h:
 * GPT-2 or a Llama-style decoder; full or LoRA) on (prompt, response)
 * pairs: next-token cross-entropy on the response tokens (and the closing
 * <|endoftext|>) by default, or on every token; right-padded batches with
 * attention masks; AdamW with weight decay on matrices only, warm-up then
 * cosine or linear decay, gradient accumulation and clipping; held-out loss
 * and perplexity; periodic checkpoints (the family's safetensors with
 * Hugging Face names, model_serialize) and sample generations, all through
 * the sink. With lora_r > 0 only adapters train (weight decay on them), and
 * checkpoints hold the frozen base plus the adapters.
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
#include "gpt2.h"
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
    int64_t lora_r; /* 0 = full fine-tuning */
    double lora_alpha;
    char lora_targets[HPARAM_CHOICE_BYTES]; /* all | attn | mlp */
} sft_config;

extern const hparam_table sft_hparams;

/* One training example: text, not yet tokenized. A chat example carries
 * its conversation instead (messages: an OpenAI message list as JSON text,
 * rendered by the model's chat template); its assistant turns from message
 * first_trained on are what it trains on. One that also holds its last
 * turn as (prompt, response), as rlhfd's OpenAI chat rows do, trains on
 * that pair when the model has no chat template (a "chat_without_template"
 * warning event); otherwise no template is an error. */
typedef struct text_pair {
    const char *prompt;
    const char *response;
    const char *messages; /* NULL: the (prompt, response) pair */
    int first_trained;
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
    /* The chat template chat examples render with (a model directory's
     * tokenizer_config.json, with tok a tokenizer_load_hf tokenizer); NULL:
     * chat examples are an error. */
    const struct chat_template *chat;
} sft_inputs;

typedef struct sft_result {
    int64_t steps;
    double train_loss; /* mean of the last step */
    double eval_loss;  /* NAN if never evaluated */
    bool stopped;
} sft_result;

int sft_validate(const sft_config *cfg, char *err, size_t errlen);
/* The whole run: a loop over the session below that reports metrics every
 * step (eval loss every eval_interval steps and at the end), samples every
 * sample_interval, checkpoints every checkpoint_interval and at the end,
 * and stops when the sink asks. */
int sft_train(const sft_config *cfg, const sft_inputs *in, const train_sink *sink,
              sft_result *result, char *err, size_t errlen);

/* ---- one step at a time ----------------------------------------------------
 * sft_train drives these; so can other loops (an online trainer, a job that
 * interleaves SFT with other steps). cfg, in and sink must outlive the
 * session; with data parallelism every rank calls the same sequence. */
typedef struct sft_session sft_session;

/* What one optimizer step did. */
typedef struct sft_step_result {
    int64_t step;         /* optimizer steps done, this one included */
    int64_t epoch;        /* epochs started */
    double loss;          /* mean over the step's micro-batches of their token-mean loss */
    double lr, grad_norm; /* grad_norm before clipping */
    int64_t tokens;       /* positions in the step's batches (padding included), all ranks */
    int64_t tokens_seen;  /* the same, summed over the run */
    double step_s;        /* wall-clock of the step */
    double allreduce_s;   /* of which waiting in the gradient all-reduce */
} sft_step_result;

/* Opens the model (from scratch, init_checkpoint or resume_checkpoint),
 * tokenizes and splits the data, allocates the optimizer state (restored
 * on resume); posts the "truncated" and "data_parallel" events. */
int sft_session_init(sft_session **s, const sft_config *cfg, const sft_inputs *in,
                     const train_sink *sink, char *err, size_t errlen);
/* The schedule's length (max_steps, or what epochs take) and the steps done. */
int64_t sft_session_total_steps(const sft_session *s);
int64_t sft_session_steps_done(const sft_session *s);
/* One optimizer step: grad_accum_steps micro-batches of the shuffled data
 * (a new epoch reshuffles), all-reduce, clipping, AdamW on the schedule. */
int sft_session_step(sft_session *s, sft_step_result *out, char *err, size_t errlen);
/* Whether there is held-out data, and its token-weighted mean loss. */
bool sft_session_has_eval(const sft_session *s);
double sft_session_eval(sft_session *s);
/* Sample continuations of two held-out prompts, as "sample" events. */
void sft_session_log_samples(sft_session *s);
/* The model through the sink; with_state adds what a resume needs. */
int sft_session_checkpoint(sft_session *s, bool with_state);
const struct model *sft_session_model(const sft_session *s);
void sft_session_free(sft_session *s);

/* Tokenizes prompt + response + <|endoftext|> into ids (up to cap), and
 * marks in loss_mask[i] whether predicting ids[i + 1] from ids[..i] is
 * trained on (response tokens and the EOT; everything when all_tokens).
 * Returns the number of ids (truncated to cap), or -1 on a tokenizer error. */
int64_t sft_tokenize(const tokenizer *tok, const text_pair *ex, bool all_tokens, int32_t *ids,
                     uint8_t *loss_mask, int64_t cap);

/* The same for text a chat template rendered when rendered: special tokens
 * written in it are those tokens, and the prompt gets no post-processor
 * ids (tokenizer_encode_input). */
int64_t sft_tokenize_text(const tokenizer *tok, const text_pair *ex, bool all_tokens, bool rendered,
                          int32_t *ids, uint8_t *loss_mask, int64_t cap);

/* A chat example (ex->messages) through the template: the rendered
 * conversation's ids (up to cap) and loss_mask[i] = whether ids[i + 1] is
 * a trained assistant token (its content and end-of-turn token, in turns
 * from first_trained on; every token when all_tokens). Returns the number
 * of ids or -1 with err. */
int64_t sft_tokenize_chat(const tokenizer *tok, const struct chat_template *chat,
                          const text_pair *ex, bool all_tokens, int32_t *ids, uint8_t *loss_mask,
                          int64_t cap, char *err, size_t errlen);

#endif
