/* lm_policy — what the trainers that optimise a policy through the
 * log-probs of its responses share (DPO, GRPO, RLOO; ppo_lm.c has the same
 * pieces inline): LoRA from the job's hyperparameters, opening a model with
 * or without adapters, the buffer the optimizer updates, rows laid out as a
 * left-padded prompt then a right-padded response, their per-token log-probs
 * and the backward of any loss given by its gradient with respect to those
 * log-probs, and checkpoints that carry the trainer's state.
 *
 * Row layout (as ppo_lm.c's rollouts): S = P + N columns; the prompt's ids
 * end at column P - 1, the response starts at column P; response token t is
 * predicted at column P + t - 1, so the LM head runs only on the N columns
 * P - 1 .. S - 2.
 */
#ifndef RLHF_LM_POLICY_H
#define RLHF_LM_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "model.h"
#include "safetensors.h"
#include "sink.h"

/* The hyperparameter choices of lora_targets: every projection, attention's
 * two, the MLP's two, or c_attn alone (PEFT's default for GPT-2). */
extern const char *const lm_lora_target_choices[];
#define LM_LORA_TARGETS_DOC                                                                        \
    "Projections with adapters: all (attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj), attn, "      \
    "mlp, or c_attn."

/* How lm_open_model treats LoRA: none; fresh adapters on the file's weights
 * (adapters the file carries are merged first); or adapters attached before
 * loading, so the file's own (a resumable checkpoint of this job) fill them. */
typedef enum lm_lora_load { LM_LORA_NONE, LM_LORA_FRESH, LM_LORA_FROM_FILE } lm_lora_load;

typedef struct lm_lora_spec {
    int64_t r; /* 0 = no adapters */
    double alpha;
    const char *targets; /* one of lm_lora_target_choices */
    uint64_t seed;
} lm_lora_spec;

/* Opens path (model.h) into m; with_head gives it a scalar head (the file's,
 * else fresh); LoRA as above, A drawn from RNG stream `stream` of the seed.
 * info may be NULL. 0, or -1 with err (m needs no free then). */
int lm_open_model(gpt2_model *m, const char *path, bool with_head, lm_lora_load lora,
                  const lm_lora_spec *spec, uint32_t stream, model_info *info, char *err,
                  size_t errlen);

/* What the optimizer updates: with LoRA the adapters (and the scalar head),
 * else every parameter. */
float *lm_trainable_params(gpt2_model *m);
float *lm_trainable_grads(gpt2_model *m);
int64_t lm_trainable_count(const gpt2_model *m);

bool lm_all_finite(const float *x, int64_t n);

/* Rows of prompt + response, as above. */
typedef struct lm_rows {
    int B, P, N, S;
    int32_t *seq;       /* (B, S) */
    uint8_t *seq_mask;  /* (B, S) 1 on real tokens */
    int32_t *positions; /* (B, S) 0.. over the real tokens */
    int32_t *gen;       /* (B, N) the response tokens (the LM head's targets) */
    int32_t *len;       /* (B) response tokens */
    uint8_t *mask;      /* (B, N) 1 on the response's tokens */
} lm_rows;

int lm_rows_alloc(lm_rows *r, int B, int P, int N);
void lm_rows_free(lm_rows *r);
/* Row b: the prompt's n_prompt ≤ P ids left-padded with pad, then the
 * response's n_resp ≤ N ids right-padded with pad. */
void lm_rows_set(lm_rows *r, int b, const int32_t *prompt, int n_prompt, const int32_t *resp,
                 int n_resp, int32_t pad);
/* Log-probs of the response tokens of rows [r0, r0 + n) under m at
 * temperature 1 / inv_temp, into logp (n, N) (0 on padding). m keeps the
 * forward for lm_rows_backward. m must have room (gpt2_reserve) for (n, S). */
void lm_rows_logprobs(gpt2_model *m, const lm_rows *r, int r0, int n, float inv_temp, float *logp);
/* The backward of the last lm_rows_logprobs(m, r, r0, n, ...) for a loss
 * whose gradient with respect to those log-probs is dlogp (n, N): adds to
 * m's (trainable) gradients. */
void lm_rows_backward(gpt2_model *m, const lm_rows *r, int r0, float inv_temp, const float *dlogp);

/* The policy through the sink as a checkpoint at step: metadata
 * rlhfd_job = job and step, then (with_state) the meta pairs and state
 * tensors. Refuses non-finite trainable weights. 0, or -1 with err. */
int lm_emit_checkpoint(const train_sink *sink, gpt2_model *policy, const char *job, int64_t step,
                       bool with_state, const char *const (*meta)[2], int n_meta,
                       const safetensors_tensor *state, int n_state, char *err, size_t errlen);

/* Reads tensor name of f into dst (n floats). 0, or -1 with err. */
int lm_load_state_tensor(const safetensors_file *f, const char *name, float *dst, int64_t n,
                         char *err, size_t errlen);

#endif
