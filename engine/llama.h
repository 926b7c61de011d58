/* llama — the Llama-style decoder family (Llama 2/3, Mistral, Qwen2, Qwen3),
 * with full backward and a KV cache.
 *
 * token embedding → L × [RMSNorm → grouped-query causal self-attention with
 * rotary embeddings → residual, RMSNorm → SwiGLU MLP → residual] → RMSNorm →
 * LM head (tied to the embedding or its own), and optionally a scalar head.
 * The family's options, as in Hugging Face's modeling_{llama,qwen2,qwen3,
 * mistral}.py:
 *   - grouped-query attention: n_kv_head ≤ n_head key/value heads, query head
 *     h reads key/value head h / (n_head / n_kv_head);
 *   - head_dim may differ from hidden / n_head (Qwen3-0.6B: 128 vs 64);
 *   - q/k/v projections with bias (Qwen2; Llama's attention_bias), o_proj bias
 *     (Llama's attention_bias only);
 *   - RMSNorm over head_dim on every query and key head before RoPE (Qwen3);
 *   - RoPE in HF's rotate-half convention: the pair (x[i], x[i + hd/2]) turns
 *     by pos · inv_freq[i], inv_freq[i] = rope_theta^(-2i/hd), optionally
 *     rescaled by the `llama3` rope_scaling rule (Llama 3.1 report §3.3 /
 *     HF _compute_llama3_parameters).
 *
 * Layout (llm.c style): parameters, gradients and activations each live in
 * one allocation carved by named views. Weights are (out, in) as nn.Linear.
 * The q, k and v projections of a layer are stacked into one (QKV, C) matrix
 * (rows q | k | v, QKV = (NH + 2 NKV) hd) and gate/up into one (2F, C)
 * matrix (rows gate | up), so each is one sgemm; every HF tensor is still a
 * contiguous slice (llama_hf.h maps the names).
 *
 * Padding as gpt2.h: an attention mask (B, T; 1 = real) and position ids
 * (B, T). Masked keys get no attention; a query with no visible key outputs
 * zeros.
 */
#ifndef RLHF_LLAMA_H
#define RLHF_LLAMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rng.h"

enum { LLAMA_MAX_EOS = 8 };

typedef enum llama_model_type {
    LLAMA_MODEL_LLAMA,
    LLAMA_MODEL_QWEN2,
    LLAMA_MODEL_QWEN3,
    LLAMA_MODEL_MISTRAL,
} llama_model_type;

typedef struct llama_config {
    llama_model_type model_type;
    int vocab_size;        /* V */
    int hidden_size;       /* C */
    int intermediate_size; /* F */
    int n_layer;           /* L */
    int n_head;            /* NH */
    int n_kv_head;         /* NKV; NH % NKV == 0 */
    int head_dim;          /* hd, even */
    int max_seq_len;       /* positions this model serves (≤ max_position_embeddings) */
    int max_position_embeddings;
    float rms_norm_eps;
    float rope_theta;
    /* rope_scaling {"rope_type": "llama3", ...}; rope_llama3 false = none */
    bool rope_llama3;
    float rope_factor, rope_low_freq_factor, rope_high_freq_factor;
    int rope_original_max_position;
    bool qkv_bias; /* q/k/v projections have biases */
    bool o_bias;   /* o_proj has a bias */
    bool qk_norm;  /* per-head RMSNorm of q and k (Qwen3) */
    bool tie_embeddings;
    bool scalar_head; /* a (C → 1) head beside the LM head */
    int bos_id;       /* -1 = none */
    int n_eos;
    int32_t eos_ids[LLAMA_MAX_EOS]; /* generation stops on any of them */
} llama_config;

enum { LLAMA_NUM_PARAM_TENSORS = 15 };

/* Named views into one flat buffer; shapes in comments (QKV = (NH + 2 NKV) hd,
 * QD = NH hd). Optional tensors have size 0 when their option is off. */
typedef struct llama_params {
    float *embed;      /* (V, C) model.embed_tokens */
    float *attn_norm;  /* (L, C) input_layernorm */
    float *wqkv;       /* (L, QKV, C) q_proj | k_proj | v_proj */
    float *bqkv;       /* (L, QKV) qkv_bias */
    float *q_norm;     /* (L, hd) qk_norm */
    float *k_norm;     /* (L, hd) qk_norm */
    float *wo;         /* (L, C, QD) o_proj */
    float *bo;         /* (L, C) o_bias */
    float *mlp_norm;   /* (L, C) post_attention_layernorm */
    float *wgateup;    /* (L, 2F, C) gate_proj | up_proj */
    float *wdown;      /* (L, C, F) down_proj */
    float *final_norm; /* (C) model.norm */
    float *lm_head;    /* (V, C); size 0 when tied (embed is the head) */
    float *headw;      /* (C) scalar head */
    float *headb;      /* (1) */
} llama_params;

void llama_param_sizes(const llama_config *cfg, int64_t sizes[LLAMA_NUM_PARAM_TENSORS]);
int64_t llama_num_params(const llama_config *cfg);
void llama_params_view(llama_params *p, const llama_config *cfg, float *memory);
/* 1 for matrices (embed, wqkv, wo, wgateup, wdown, lm_head), else 0. */
void llama_decay_mask(const llama_config *cfg, uint8_t *mask);

/* Activations of one (B, T) batch; BT = B·T rows. */
typedef struct llama_acts {
    int B, T;           /* capacity */
    float *encoded;     /* (BT, C) */
    float *attn_in;     /* (L, BT, C) RMSNorm output */
    float *attn_rstd;   /* (L, BT) */
    float *qkv_raw;     /* (L, BT, QKV) projection output; only with qk_norm */
    float *qk_rstd;     /* (L, BT, NH + NKV) only with qk_norm */
    float *qkv;         /* (L, BT, QKV) after q/k norm and RoPE */
    float *att;         /* (L, B, NH, T, T) softmax probabilities */
    float *atty;        /* (L, BT, QD) */
    float *residual2;   /* (L, BT, C) */
    float *mlp_in;      /* (L, BT, C) */
    float *mlp_rstd;    /* (L, BT) */
    float *gateup;      /* (L, BT, 2F) */
    float *swiglu;      /* (L, BT, F) silu(gate) ⊙ up */
    float *residual3;   /* (L, BT, C) */
    float *final_out;   /* (BT, C) */
    float *final_rstd;  /* (BT) */
    float *logits;      /* (B, LT, V); backward reads dlogits from here */
    float *values;      /* (BT) */
    float *dvalues;     /* (BT) */
    float *dresidual;   /* (BT, C) backward scratch from here on */
    float *dbtc;        /* (BT, C) */
    float *dbtc2;       /* (BT, C) */
    float *datty;       /* (BT, QD) */
    float *dqkv;        /* (BT, QKV) */
    float *dqkv2;       /* (BT, QKV) */
    float *dgateup;     /* (BT, 2F) */
    float *dswiglu;     /* (BT, F) */
    float *datt;        /* (T, T) */
    float *row_scratch; /* (V) */
    float *final_sel;   /* (B, LT, C) rows of a restricted LM head */
    float *memory;
} llama_acts;

/* LoRA adapters (engine/llama_lora.h); NULL in a model without them. */
typedef struct llama_lora llama_lora;

typedef struct llama_model {
    llama_config cfg;
    llama_params params, grads;
    float *param_memory; /* llama_num_params floats */
    float *grad_memory;  /* same, from llama_alloc_grads; NULL = frozen base */
    bool borrowed_base;  /* param_memory and the RoPE tables are another model's
                            (llama_init_shared): llama_free leaves them */
    llama_lora *lora;    /* adapters: backward trains only these (and the scalar head) */
    int64_t num_params;
    float *rope_cos, *rope_sin; /* (max_seq_len, hd/2) */
    llama_acts acts;
    /* the batch of the last forward, for backward */
    const int32_t *tokens, *positions;
    const uint8_t *attn_mask;
    int B, T;
    int LT0, LT; /* the columns with logits: [LT0, LT0 + LT) */
} llama_model;

/* Validates cfg (a message naming the field) and allocates parameters and
 * the RoPE tables. Returns 0 or -1. */
int llama_init(llama_model *m, const llama_config *cfg, char *err, size_t errlen);
/* Allocates the (zeroed) gradients of every parameter, for full training.
 * Without them the base is frozen: backward computes input gradients only
 * (what sampling, reference models and LoRA need). Returns 0 or -1. */
int llama_alloc_grads(llama_model *m, char *err, size_t errlen);
/* dst over src's weights without a copy (PPO's value model on the reward
 * model's base): the same config, parameters and RoPE tables, read in place;
 * src must outlive dst and its weights must not change meanwhile. dst has no
 * gradients and its own activations; attaching LoRA adapters to it moves
 * its scalar head (a copy of src's) into the adapter buffer, so training dst
 * never writes src's memory (llama_alloc_grads refuses dst: full training
 * would). */
void llama_init_shared(llama_model *dst, const llama_model *src);
void llama_free(llama_model *m);
/* N(0, 0.02) matrices and embeddings (HF initializer_range), norms 1,
 * biases 0; scalar head N(0, 1/sqrt(C+1)). */
void llama_init_weights(llama_model *m, rng_state *rng);
/* Room for batches up to (B, T ≤ max_seq_len). Returns 0 or -1. */
int llama_reserve(llama_model *m, int B, int T, char *err, size_t errlen);

typedef struct llama_batch {
    const int32_t *tokens;    /* (B, T) ids in [0, V) */
    const int32_t *positions; /* (B, T) or NULL for 0..T-1 */
    const uint8_t *attn_mask; /* (B, T) or NULL for all */
    int B, T;
} llama_batch;

/* Forward with logits for the columns [t0, t1) of every row (none when
 * t0 >= t1); values when the model has a scalar head. The batch arrays must
 * stay alive until backward. */
void llama_forward(llama_model *m, const llama_batch *batch, int t0, int t1);

/* The LM-head losses of lm_logits.h over the rows of the last forward. */
float llama_lm_loss(llama_model *m, const int32_t *targets, const uint8_t *loss_mask,
                    float grad_scale);
void llama_token_logprobs(llama_model *m, const int32_t *targets, float *logp, float *entropy);
void llama_logprobs_backward(llama_model *m, const int32_t *targets, const float *dlogp,
                             const float *dentropy);

/* Backward of the last forward from acts.logits holding dlogits (when
 * with_logits) and acts.dvalues (when with_values); accumulates into grads
 * (when allocated) and the LoRA gradients (when attached). */
void llama_backward(llama_model *m, bool with_logits, bool with_values);
void llama_zero_grad(llama_model *m);

/* ---- layers, exposed for tests --------------------------------------------- */

/* out = w ⊙ x / sqrt(mean(x²) + eps) per row of C; out may be inp. */
void rmsnorm_forward(float *out, float *rstd, const float *inp, const float *weight, int N, int C,
                     float eps);
/* dinp += ∂/∂inp; dweight += ∂/∂weight (NULL: frozen). */
void rmsnorm_backward(float *dinp, float *dweight, const float *dout, const float *inp,
                      const float *weight, const float *rstd, int N, int C);

/* ---- sampling with a KV cache ------------------------------------------------ */

typedef struct llama_sample_config {
    float temperature;  /* 0: greedy */
    int top_k;          /* 0 = all */
    float top_p;        /* 1 = all */
    int max_new_tokens; /* per row; a row stops after any of cfg.eos_ids */
} llama_sample_config;

typedef struct llama_kv_cache {
    int B, cap_T;
    float *k, *v;      /* (L, B, NKV, cap_T, hd) */
    uint8_t *key_mask; /* (B, cap_T) 1 = a real token */
    int32_t *next_pos; /* (B) position of the next real token */
    int32_t *pos;      /* (B) this step's positions */
    float *x, *xn, *qkv, *atty, *tmp, *gateup, *swiglu, *logits, *scores, *rstd; /* step scratch */
    float *memory;
} llama_kv_cache;

int llama_kv_cache_init(llama_kv_cache *cache, const llama_config *cfg, int B, int cap_T, char *err,
                        size_t errlen);
void llama_kv_cache_free(llama_kv_cache *cache);

/* One column of tokens (B) at cache column t; real[b] = 0 marks a left-pad
 * (NULL = all real). Next-token logits (B, V) in cache->logits when
 * want_logits. */
void llama_decode_step(const llama_model *m, llama_kv_cache *cache, const int32_t *tokens,
                       const uint8_t *real, int t, bool want_logits);

/* Prompts (B, P) with prompt_mask (B, P; NULL = all real) into an empty
 * cache, all columns of a layer at once; leaves the last column's logits in
 * cache->logits. Equal to P decode steps up to rounding. Returns 0 or -1. */
int llama_prefill(const llama_model *m, llama_kv_cache *cache, const int32_t *prompts,
                  const uint8_t *prompt_mask, int P, char *err, size_t errlen);

/* Continuations of B left-padded prompts (B, P): out (B, max_new_tokens)
 * gets the new tokens (the EOS included) then the first EOS id (or 0) as
 * filler, out_len (B) how many are real. Tokens are chosen by
 * gpt2_sample_tokens (temperature, top-k, top-p). Returns 0 or -1. */
int llama_generate(const llama_model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                   int P, const llama_sample_config *sc, rng_state *rng, int32_t *out,
                   int32_t *out_len, char *err, size_t errlen);

#endif
