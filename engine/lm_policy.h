/* lm_policy — what the trainers that optimise a policy through the
 * log-probs of its responses share (DPO, GRPO, RLOO; PPO opens its models
 * here too): LoRA from the job's hyperparameters, opening a model of either
 * family (model.h) with or without adapters, rows laid out as a
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

#include "dist.h"
#include "hparams.h"
#include "model.h"
#include "rng.h"
#include "safetensors.h"
#include "sink.h"
#include "tokenizer.h"

/* The hyperparameter choices of lora_targets: every projection, attention's,
 * the MLP's, or c_attn alone (PEFT's default for GPT-2; q, k and v on the
 * Llama family). */
extern const char *const lm_lora_target_choices[];
#define LM_LORA_TARGETS_DOC                                                                        \
    "Projections with adapters: all (GPT-2: attn.c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj; "      \
    "Llama: q/k/v/o_proj, gate/up/down_proj), attn, mlp, or c_attn (Llama: q, k and v)."

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

/* The policy: init_path, or resume_path (a resumable checkpoint of the job:
 * its adapters load into the job's) when not NULL; with spec->r > 0 fresh
 * adapters (A from RNG stream `stream`) on an init. 0, or -1 with err. */
int lm_open_policy(model *m, const char *init_path, const char *resume_path,
                   const lm_lora_spec *spec, uint32_t stream, char *err, size_t errlen);

/* Opens path (model.h, either family) into m; with_head gives it a scalar
 * head (the file's, else fresh from the seed); LoRA as above, A drawn from
 * RNG stream `stream` of the seed. info may be NULL. Without adapters the
 * model has gradients for every weight only if it is a policy
 * (lm_open_policy). 0, or -1 with err (m needs no free then). */
int lm_open_model(model *m, const char *path, bool with_head, lm_lora_load lora,
                  const lm_lora_spec *spec, uint32_t stream, model_info *info, char *err,
                  size_t errlen);

/* Fresh adapters per spec (A from RNG stream `stream`) on base's weights
 * without copying them (model_init_shared): PPO's value model on the reward
 * model's base. Its scalar head starts as a copy of base's; training it
 * never writes base. spec->r must be > 0. 0, or -1 with err. */
int lm_open_shared(model *m, const model *base, const lm_lora_spec *spec, uint32_t stream,
                   char *err, size_t errlen);

bool lm_all_finite(const float *x, int64_t n);
/* Whether m holds a model (a zeroed struct does not). */
bool lm_model_loaded(const model *m);
/* Whether m's base weights (not the adapters) are all finite. */
bool lm_weights_finite(const model *m);

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
 * forward for lm_rows_backward. m must have room (model_reserve) for (n, S). */
void lm_rows_logprobs(model *m, const lm_rows *r, int r0, int n, float inv_temp, float *logp);
/* The backward of the last lm_rows_logprobs(m, r, r0, n, ...) for a loss
 * whose gradient with respect to those log-probs is dlogp (n, N): adds to
 * m's (trainable) gradients. */
void lm_rows_backward(model *m, const lm_rows *r, int r0, float inv_temp, const float *dlogp);

/* ---- rollouts kept for inspection ---------------------------------------------------
 * The hyperparameters rollout_samples and rollout_interval of ppo, grpo and
 * rloo: every rollout_interval updates (and at the last), the first
 * rollout_samples rows of the batch go to the sink, token by token. */
#define LM_ROLLOUT_SAMPLES_DOC                                                                     \
    "Sampled responses kept per kept update, token by token (log-prob, reference log-prob, KL, "   \
    "value, reward, advantage: GET /v1/jobs/{id}/rollouts); 0 = none."
#define LM_ROLLOUT_INTERVAL_DOC "Keep rollouts every this many updates (and at the last one)."

/* A batch of B rows of N response columns as lm_rows lays them out, and the
 * (B, N) per-token quantities to report (NULL: the algorithm has none). */
typedef struct lm_rollout_batch {
    const tokenizer *tok;
    int B, P, N;
    const int32_t *prompt_ids;                                            /* (B, P) left-padded */
    const uint8_t *prompt_mask;                                           /* (B, P) */
    const int32_t *gen, *len;                                             /* (B, N), (B) */
    const float *score;                                                   /* (B) */
    const float *logprob, *ref_logprob, *kl, *value, *reward, *advantage; /* (B, N) */
} lm_rollout_batch;

/* Reports rows [0, min(samples, B)) of the batch to the sink at step when
 * step % interval == 0 or step == last_step. 0, or -1 (the sink failed, or
 * out of memory). */
int lm_report_rollouts(const train_sink *sink, int64_t step, int64_t last_step, int64_t samples,
                       int64_t interval, const lm_rollout_batch *b);

/* ---- the trainer's state, and resume ----------------------------------------------
 * What a trainer over a shuffled stream of n items (pairs, prompts) restores
 * besides the weights: in a checkpoint, Adam's moments as tensors
 * training_state.adam_m / adam_v and the rest as training_state.* metadata
 * (train_state.h), with the hyperparameters, which a resume must match. */
typedef struct lm_train_state {
    int64_t step, adam_t, cursor;
    rng_state order_rng; /* data_rng before the shuffle that made the order */
    rng_state data_rng, sample_rng;
    double extra;           /* one number a trainer keeps (NAN if unused) */
    float *adam_m, *adam_v; /* model_trainable_count(policy) each */
} lm_train_state;

/* Seeds the streams (data_rng stream data_stream, sample_rng
 * sample_stream of seed), allocates the moments for policy, and sets the
 * cursor past n so the first item shuffles. 0, or -1 (out of memory). */
int lm_train_state_init(lm_train_state *st, const model *policy, uint64_t seed,
                        uint32_t data_stream, uint32_t sample_stream, int64_t n);
void lm_train_state_free(lm_train_state *st);
/* The next item of the stream: order (n) is reshuffled from data_rng each
 * time the cursor passes its end. */
int32_t lm_train_state_next(lm_train_state *st, int32_t *order, int64_t n);
/* Clips the policy's gradient to max_norm and takes one Adam step (β 0.9,
 * 0.999, ε 1e-8) at lr. Returns the norm before clipping; a norm that is not
 * finite takes no step. */
double lm_train_state_adam(lm_train_state *st, model *policy, float lr, double max_norm);
/* Data parallel (dist.h): sums the ranks' gradients and their shares of
 * stats[0..n_stats) (each rank weighted its loss so the sums are the whole
 * batch's), then lm_train_state_adam, then checks that the replicas still
 * agree. With dist NULL it is lm_train_state_adam. Returns the norm; NAN
 * if a stat or the norm is not finite (no step taken), or with err when a
 * collective failed or the replicas diverged. */
double lm_train_state_adam_dist(lm_train_state *st, model *policy, const dist_comm *dist,
                                double *stats, int n_stats, float lr, double max_norm, char *err,
                                size_t errlen);
/* The policy through the sink as a checkpoint at st->step (metadata
 * rlhfd_job = job and step), with the state when with_state. Refuses
 * non-finite weights. 0, or -1 with err. */
int lm_train_state_emit(const lm_train_state *st, model *policy, const train_sink *sink,
                        const char *job, const hparam_table *table, const void *cfg,
                        bool with_state, char *err, size_t errlen);
/* Restores st from the resumable checkpoint at path (the policy's weights
 * came from the same file): refuses other hyperparameters, a state past
 * total_steps or a cursor past n; redoes the shuffle of the order in use. */
int lm_train_state_restore(lm_train_state *st, const model *policy, const char *path,
                           const hparam_table *table, const void *cfg, int64_t total_steps,
                           int32_t *order, int64_t n, char *err, size_t errlen);

#endif
