/* gpt2 — a decoder-only transformer of the GPT-2 family, with full backward.
 *
 * token + learned position embeddings → L × [pre-LayerNorm causal multi-head
 * self-attention, pre-LayerNorm GELU(tanh) MLP 4×, residuals] → final
 * LayerNorm → LM head tied to the token embedding, and optionally a scalar
 * head (value per token for PPO; reward at the last real token).
 *
 * Memory follows llm.c: parameters, gradients, Adam moments each live in one
 * allocation carved by gpt2_params; activations of a (B, T) batch in another.
 * Weights are stored (out, in) as nn.Linear, so every projection is
 * dense_forward (one cblas_sgemm); Hugging Face's Conv1D checkpoints store
 * (in, out) and are transposed on load/save. Attention is computed per
 * (batch, head) with cblas_sgemm on strided views of the fused qkv buffer.
 *
 * Padding: a batch may carry an attention mask (B, T; 1 = real token) and
 * position ids (B, T). Masked keys get no attention; a query with no visible
 * key (a left-pad position) outputs zeros. Callers mask such positions out
 * of their losses.
 */
#ifndef RLHF_GPT2_H
#define RLHF_GPT2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

typedef struct gpt2_config {
    int vocab_size;   /* V */
    int max_seq_len;  /* maxT: learned positions */
    int n_layer;      /* L */
    int n_head;       /* NH; d_model % n_head == 0 */
    int d_model;      /* C */
    bool scalar_head; /* a (C → 1) head beside the LM head */
} gpt2_config;

enum { GPT2_NUM_PARAM_TENSORS = 18 };

/* Named views into one flat buffer; shapes in comments. */
typedef struct gpt2_params {
    float *wte;      /* (V, C) token embedding, tied LM head */
    float *wpe;      /* (maxT, C) */
    float *ln1w;     /* (L, C) */
    float *ln1b;     /* (L, C) */
    float *qkvw;     /* (L, 3C, C) */
    float *qkvb;     /* (L, 3C) */
    float *attprojw; /* (L, C, C) */
    float *attprojb; /* (L, C) */
    float *ln2w;     /* (L, C) */
    float *ln2b;     /* (L, C) */
    float *fcw;      /* (L, 4C, C) */
    float *fcb;      /* (L, 4C) */
    float *fcprojw;  /* (L, C, 4C) */
    float *fcprojb;  /* (L, C) */
    float *lnfw;     /* (C) */
    float *lnfb;     /* (C) */
    float *headw;    /* (C) scalar head; size 0 without one */
    float *headb;    /* (1) */
} gpt2_params;

/* Sizes of the 18 tensors in gpt2_params order, and the total. */
void gpt2_param_sizes(const gpt2_config *cfg, int64_t sizes[GPT2_NUM_PARAM_TENSORS]);
int64_t gpt2_num_params(const gpt2_config *cfg);
/* Points the views of p into memory (gpt2_num_params floats). */
void gpt2_params_view(gpt2_params *p, const gpt2_config *cfg, float *memory);
/* 1 for tensors that get weight decay (matrices: ndim >= 2), 0 otherwise. */
void gpt2_decay_mask(const gpt2_config *cfg, uint8_t *mask);

/* Activations of one (B, T) batch. */
typedef struct gpt2_acts {
    int B, T;         /* capacity */
    float *encoded;   /* (B, T, C) */
    float *ln1;       /* (L, B, T, C) */
    float *ln1_mean;  /* (L, B, T) */
    float *ln1_rstd;  /* (L, B, T) */
    float *qkv;       /* (L, B, T, 3C) */
    float *atty;      /* (L, B, T, C) */
    float *att;       /* (L, B, NH, T, T) softmax probabilities */
    float *attproj;   /* (L, B, T, C) */
    float *residual2; /* (L, B, T, C) */
    float *ln2;       /* (L, B, T, C) */
    float *ln2_mean;  /* (L, B, T) */
    float *ln2_rstd;  /* (L, B, T) */
    float *fch;       /* (L, B, T, 4C) */
    float *fch_gelu;  /* (L, B, T, 4C) */
    float *fcproj;    /* (L, B, T, C) */
    float *residual3; /* (L, B, T, C) */
    float *lnf;       /* (B, T, C) */
    float *lnf_mean;  /* (B, T) */
    float *lnf_rstd;  /* (B, T) */
    float *logits;    /* (B, T, V); backward reads dlogits from here */
    float *values;    /* (B, T) scalar head */
    float *dvalues;   /* (B, T) gradient of the scalar head's outputs */
    /* backward scratch, reused layer after layer */
    float *dresidual;   /* (B, T, C) */
    float *dbtc;        /* (B, T, C) */
    float *dbtc2;       /* (B, T, C) */
    float *dqkv;        /* (B, T, 3C) */
    float *dfch;        /* (B, T, 4C) */
    float *dfch2;       /* (B, T, 4C) */
    float *datt;        /* (T, T) */
    float *row_scratch; /* (V) one row of exp(logits) */
    float *lnf_sel;     /* (B, LT, C) the lnf rows of a restricted LM head */
    float *memory;
} gpt2_acts;

/* LoRA adapters (engine/lora.h); NULL in a model without them. */
typedef struct gpt2_lora gpt2_lora;

typedef struct gpt2_model {
    gpt2_config cfg;
    gpt2_params params, grads;
    float *param_memory; /* gpt2_num_params floats */
    float *grad_memory;  /* same, zeroed by gpt2_zero_grad; NULL when LoRA froze the base */
    bool borrowed_base;  /* param_memory is another model's (gpt2_init_shared) */
    gpt2_lora *lora;     /* adapters: the base is frozen and backward only trains these */
    int64_t num_params;
    gpt2_acts acts;
    /* the batch of the last forward, for backward */
    const int32_t *tokens, *positions;
    const uint8_t *attn_mask;
    int B, T;
    int LT0, LT; /* the columns with logits: [LT0, LT0 + LT) */
} gpt2_model;

/* Validates cfg and allocates parameters and gradients (zeroed). Returns 0
 * or -1 with a message. */
int gpt2_init(gpt2_model *m, const gpt2_config *cfg, char *err, size_t errlen);
/* dst over src's weights without a copy, as llama_init_shared: no
 * gradients, its own activations; meant for LoRA adapters (which move its
 * scalar head, a copy of src's, into their buffer). src must outlive dst. */
void gpt2_init_shared(gpt2_model *dst, const gpt2_model *src);
void gpt2_free(gpt2_model *m);
/* GPT-2 initialisation (Radford et al. 2019; as HF GPT2PreTrainedModel):
 * N(0, 0.02) weights and embeddings, residual projections (attn c_proj,
 * mlp c_proj) N(0, 0.02/sqrt(2L)), LayerNorm weight 1, biases 0; scalar
 * head N(0, 1/sqrt(C+1)) (Ziegler et al. 2019), bias 0. */
void gpt2_init_weights(gpt2_model *m, rng_state *rng);
/* Makes room for batches up to (B, T). Returns 0 or -1 (out of memory or T
 * beyond max_seq_len). */
int gpt2_reserve(gpt2_model *m, int B, int T, char *err, size_t errlen);

typedef struct gpt2_batch {
    const int32_t *tokens;    /* (B, T) ids in [0, V) */
    const int32_t *positions; /* (B, T) or NULL for 0..T-1 */
    const uint8_t *attn_mask; /* (B, T) 1 = real token, or NULL for all */
    int B, T;
} gpt2_batch;

/* Forward through the trunk; logits when want_logits, values when the model
 * has a scalar head. The batch arrays must stay alive until backward. */
void gpt2_forward(gpt2_model *m, const gpt2_batch *batch, bool want_logits);
/* The same with logits only for the columns [t0, t1) of every row (none
 * when t0 >= t1): the LM head is the largest matmul, and PPO needs it only
 * where a response token is predicted. acts.logits then holds (B, t1 - t0,
 * V), and gpt2_lm_loss, gpt2_token_logprobs, gpt2_logprobs_backward and
 * gpt2_backward work on those rows (targets, masks, outputs (B, t1 - t0)).
 * gpt2_forward is this with [0, T) or nothing. */
void gpt2_forward_columns(gpt2_model *m, const gpt2_batch *batch, int t0, int t1);

/* Masked mean cross-entropy of next-token targets (B, T): position (b, t)
 * predicts targets[b, t] and counts when loss_mask[b, t] (NULL = all).
 * Returns the loss (NAN if nothing is masked in). When grad_scale > 0 it also
 * turns acts.logits into dlogits = grad_scale · ∂loss/∂logits, ready for
 * gpt2_backward (and destroys the logits). */
float gpt2_lm_loss(gpt2_model *m, const int32_t *targets, const uint8_t *loss_mask,
                   float grad_scale);

/* log p(targets[b, t]) and the entropy of the next-token distribution at
 * every position (B, T); logits unchanged. entropy may be NULL. */
void gpt2_token_logprobs(const gpt2_model *m, const int32_t *targets, float *logp, float *entropy);

/* Turns acts.logits into dlogits for a loss given by its gradients with
 * respect to the per-token log-probabilities of targets (dlogp, B×T) and,
 * optionally, the next-token entropies (dentropy, NULL = none), as
 * gpt2_token_logprobs computes them:
 *   ∂/∂z_j = dlogp · (1[j = y] - p_j) - dentropy · p_j (log p_j + H).
 * PPO's policy loss reaches the model through this. */
void gpt2_logprobs_backward(gpt2_model *m, const int32_t *targets, const float *dlogp,
                            const float *dentropy);

/* Backward of the last forward: from acts.logits holding dlogits (when
 * with_logits) and acts.dvalues (when with_values), accumulating into
 * grads. With LoRA adapters attached, only their gradients and the scalar
 * head's are computed (into lora->grads); the frozen base's are skipped. */
void gpt2_backward(gpt2_model *m, bool with_logits, bool with_values);

/* Zeroes grads (and the LoRA gradients when adapters are attached). */
void gpt2_zero_grad(gpt2_model *m);

/* ---- layers, exposed for tests ------------------------------------------- */

/* LayerNorm over the last dim (eps 1e-5, biased variance, as torch). */
void layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *weight,
                       const float *bias, int N, int C);
/* dweight and dbias NULL (both): a frozen LayerNorm, dinp only. */
void layernorm_backward(float *dinp, float *dweight, float *dbias, const float *dout,
                        const float *inp, const float *weight, const float *mean, const float *rstd,
                        int N, int C);

/* ---- sampling with a KV cache ---------------------------------------------- */

typedef struct gpt2_sample_config {
    float temperature;  /* 0: greedy (argmax) */
    int top_k;          /* keep the k most likely tokens; 0 = all */
    float top_p;        /* nucleus: smallest set with mass >= top_p; 1 = all */
    int max_new_tokens; /* per row */
    int eos_id;         /* a row stops after emitting it; -1 = never */
} gpt2_sample_config;

/* Keys and values of every layer for B rows of up to cap_T positions, and
 * the scratch of one decoding step. */
typedef struct gpt2_kv_cache {
    int B, cap_T;
    float *k, *v;      /* (L, B, NH, cap_T, hs) */
    uint8_t *key_mask; /* (B, cap_T) 1 = a real token */
    int32_t *next_pos; /* (B) position id of the next real token */
    float *x, *ln, *qkv, *atty, *tmp, *fch, *fch_gelu, *logits, *scores; /* step scratch */
    float *mean, *rstd;                                                  /* (B) */
    float *memory;
} gpt2_kv_cache;

int gpt2_kv_cache_init(gpt2_kv_cache *cache, const gpt2_config *cfg, int B, int cap_T, char *err,
                       size_t errlen);
void gpt2_kv_cache_free(gpt2_kv_cache *cache);

/* Feeds one column of tokens (B) at cache column t (0-based, the same for all
 * rows; real[b] = 0 marks a left-pad that no later token attends to) and,
 * when want_logits, leaves the next-token logits in cache->logits (B, V);
 * prompt columns before the last skip the LM head, the step's largest cost. */
void gpt2_decode_step(const gpt2_model *m, gpt2_kv_cache *cache, const int32_t *tokens,
                      const uint8_t *real, int t, bool want_logits);

/* Feeds prompts (B, P; B = cache->B) with prompt_mask (B, P; 1 = real, NULL =
 * all) into an empty cache at columns 0..P-1, all columns of a layer at once,
 * and leaves the last column's next-token logits in cache->logits (B, V):
 * the same cache and logits as P calls of gpt2_decode_step (real = the mask's
 * column, want_logits only at t = P - 1), up to float rounding. Returns 0 or
 * -1 with err (P beyond the cache, out of memory). */
int gpt2_prefill(const gpt2_model *m, gpt2_kv_cache *cache, const int32_t *prompts,
                 const uint8_t *prompt_mask, int P, char *err, size_t errlen);

/* Samples one token per row from logits (B, V) under sc (modifies logits). */
void gpt2_sample_tokens(int32_t *out, float *logits, int B, int V, const gpt2_sample_config *sc,
                        rng_state *rng);

/* Generates continuations of B left-padded prompts (B, P) with prompt_mask
 * (B, P; 1 = real). out (B, max_new_tokens) receives the new tokens, eos_id
 * included, then eos_id (or 0) as filler; out_len (B) how many are real.
 * Needs P + max_new_tokens <= max_seq_len. Returns 0 or -1 with err. */
int gpt2_generate(const gpt2_model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                  int P, const gpt2_sample_config *sc, rng_state *rng, int32_t *out,
                  int32_t *out_len, char *err, size_t errlen);
#endif
