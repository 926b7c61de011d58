/* model — where a checkpoint becomes a model: the one function every trainer,
 * the CLI, the daemon's sampler, the benches and the tests open weights
 * through.
 *
 * A source is one of
 *   - a checkpoint file of this project: safetensors whose __metadata__
 *     carries the config (gpt2_checkpoint.h), with or without trainer state;
 *   - a Hugging Face model directory: config.json (model_type "gpt2", or no
 *     model_type) and model.safetensors, whose metadata may be only
 *     {"format": "pt"} (a stock upload such as openai-community/gpt2, or
 *     save_pretrained's output); config.json is what gives the shape;
 *   - a model.safetensors without our metadata, with config.json beside it.
 * Tensor names and layouts are HF's GPT2 ones (with or without the
 * "transformer." prefix, Conv1D matrices transposed on load); a tensor that
 * is missing or has the wrong shape is an error naming it.
 *
 * Families: config.json's model_type (or a checkpoint's metadata) picks the
 * family: GPT-2 (gpt2.h), or the Llama-style decoder (llama.h: llama, qwen2,
 * qwen3, mistral; Hugging Face directories through llama_hf.h, this
 * project's checkpoints through llama_checkpoint.h). model_load gives a
 * `model`: the family tag and the family's model, and the trainers (sft,
 * reward, ppo), sampling, LoRA, scalar heads and log-probs use it through the
 * functions below without knowing the family. model_open and friends are the
 * GPT-2-only form (a gpt2_model out-parameter) kept for callers that need
 * GPT-2's struct; they refuse a Llama-family source by name.
 */
#ifndef RLHF_MODEL_H
#define RLHF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "gpt2.h"
#include "llama.h"
#include "rng.h"
#include "safetensors.h"
#include "sink.h"

typedef enum model_family { MODEL_FAMILY_GPT2 = 0, MODEL_FAMILY_LLAMA = 1 } model_family;

/* LoRA adapters to attach BEFORE the weights load (lora.h): the file's own
 * adapters (a resumable checkpoint of a LoRA job) then load into them. A
 * model opened without them merges any adapters the file carries into the
 * base weights. A is drawn from RNG stream `stream` of `seed`. */
typedef struct model_lora {
    int r;
    float alpha;
    unsigned targets; /* the family's target bits: lora_target (GPT-2), llama_lora_target */
    uint64_t seed;
    uint32_t stream;
} model_lora;

/* Attaches the adapters to m (lora.h's gpt2_lora_attach). */
int model_lora_attach(gpt2_model *m, const model_lora *lora, char *err, size_t errlen);

typedef struct model_open_options {
    /* A scalar head (reward model, value model): the file's score.weight /
     * score.bias when it has them, else a freshly initialised one. */
    bool scalar_head;
    /* ...and the file must have one (opening a reward model to score). */
    bool require_head;
    /* Initialise every weight (gpt2_init_weights) from RNG stream
     * init_stream of init_seed before loading: what the file does not hold
     * (a new scalar head) keeps these values. Otherwise such weights are 0. */
    bool init_weights;
    uint64_t init_seed;
    uint32_t init_stream;
    const model_lora *lora; /* NULL: no adapters before loading */
    /* The positions the caller will use, at most the model's own (the
     * Llama family sizes its RoPE tables and KV cache by it; GPT-2 keeps
     * its learned positions, model_max_seq_len reports the fewer); 0 = the
     * model's own (max_position_embeddings for a Hugging Face directory,
     * GPT-2's n_positions). */
    int max_context;
} model_open_options;

/* What the source said beyond the weights. */
typedef struct model_info {
    model_family family;
    bool head_loaded;                /* the file had a scalar head */
    double reward_gain, reward_bias; /* a reward model's normalisation (metadata
                                        reward_gain / reward_bias); 1 and 0 without */
} model_info;

/* Opens the model at path (file or directory, see above) into m (freed by
 * gpt2_free). opt NULL = no head, no init, no adapters; info may be NULL.
 * Returns 0, or -1 with err (m needs no free then). */
int model_open(const char *path, const model_open_options *opt, gpt2_model *m, model_info *info,
               char *err, size_t errlen);

/* The same from a checkpoint already in memory (n bytes, e.g. a database
 * blob); it must carry its config in the metadata. */
int model_open_bytes(const void *bytes, size_t n, const model_open_options *opt, gpt2_model *m,
                     model_info *info, char *err, size_t errlen);

/* Only the config of the model at path (no weights allocated). */
int model_read_config(const char *path, gpt2_config *cfg, char *err, size_t errlen);

/* ==== the family-tagged model ===================================================== */

/* One model of either family; the other family's struct stays zeroed. */
typedef struct model {
    model_family family;
    gpt2_model gpt2;
    llama_model llama;
    /* GPT-2: the positions the caller uses (model_open_options.max_context)
     * when fewer than its n_positions, which the weights and checkpoints
     * keep; 0: all of them. (The Llama family keeps it in its config.) */
    int gpt2_context;
} model;

/* Opens path (a checkpoint file of this project or a Hugging Face directory
 * of either family) into m (model_free it). A Llama-family model has no
 * gradients until model_alloc_grads (full training) or adapters (LoRA).
 * Returns 0 or -1 with err (m needs no free then). */
int model_load(const char *path, const model_open_options *opt, model *m, model_info *info,
               char *err, size_t errlen);
/* The same from a checkpoint in memory. */
int model_load_bytes(const void *bytes, size_t n, const model_open_options *opt, model *m,
                     model_info *info, char *err, size_t errlen);
/* The family of the model at path, without loading it. 0 or -1 with err. */
int model_source_family(const char *path, model_family *family, char *err, size_t errlen);
/* The shape of the model at path, without its weights: layers, heads,
 * width (C), and the positions it serves for a caller asking max_context:
 * min(max_context, its own: max_position_embeddings, GPT-2's n_positions),
 * its own for 0. */
typedef struct model_shape {
    model_family family;
    int n_layer, n_head, d_model, context;
} model_shape;
int model_read_shape(const char *path, int max_context, model_shape *shape, char *err,
                     size_t errlen);
/* dst over src's weights without a copy (llama_init_shared /
 * gpt2_init_shared): for LoRA adapters on a frozen base another model holds;
 * src must outlive dst. */
void model_init_shared(model *dst, const model *src);
/* Wraps a GPT-2 model built by the caller (moved into m). */
void model_from_gpt2(model *m, gpt2_model *g);
void model_free(model *m);

/* Gradients for every weight (full fine-tuning); GPT-2 always has them. */
int model_alloc_grads(model *m, char *err, size_t errlen);

/* "all", "attn", "mlp" (every family), or the family's module names
 * (lora_parse_targets, llama_lora_parse_targets) → target bits. */
int model_lora_targets(model_family family, const char *text, unsigned *targets, char *err,
                       size_t errlen);
/* Fresh adapters (A from RNG stream lora->stream of lora->seed); freezes the base. */
int model_attach_lora(model *m, const model_lora *lora, char *err, size_t errlen);
/* false: forward and sampling use the base alone (PPO's reference). */
void model_set_lora_enabled(model *m, bool enabled);
bool model_has_lora(const model *m);

/* Every base weight (not the adapters) and how many. */
const float *model_base_params(const model *m, int64_t *n);
/* The architecture as text ("gpt2 V=.. T=.. L=.. NH=.. C=.." or the Llama
 * config), equal for two models of the same shape. */
void model_shape_text(const model *m, char *buf, size_t n);
/* The same for the model at path (opened without a head or adapters). */
int model_source_shape_text(const char *path, char *buf, size_t n, char *err, size_t errlen);

int model_vocab_size(const model *m);
int model_max_seq_len(const model *m);
int model_width(const model *m); /* C: the residual stream */
bool model_has_scalar_head(const model *m);

/* What the optimizer updates: the adapters (+ scalar head) with LoRA, else
 * every parameter; and which of them get weight decay (matrices; with LoRA
 * the adapters, not the head). */
int64_t model_trainable_count(const model *m);
float *model_trainable_params(model *m);
float *model_trainable_grads(model *m);
void model_trainable_decay_mask(const model *m, uint8_t *mask);

/* ---- compute: the family's forward/backward (gpt2.h, llama.h) ---------------- */

int model_reserve(model *m, int B, int T, char *err, size_t errlen);
/* Forward over tokens (B, T) with positions (NULL: 0..T-1) and attention
 * mask (NULL: all), logits for columns [t0, t1), values with a scalar head.
 * The arrays must live until backward. */
void model_forward(model *m, const int32_t *tokens, const int32_t *positions,
                   const uint8_t *attn_mask, int B, int T, int t0, int t1);
float model_lm_loss(model *m, const int32_t *targets, const uint8_t *loss_mask, float grad_scale);
void model_token_logprobs(model *m, const int32_t *targets, float *logp, float *entropy);
void model_logprobs_backward(model *m, const int32_t *targets, const float *dlogp,
                             const float *dentropy);
void model_backward(model *m, bool with_logits, bool with_values);
void model_zero_grad(model *m);
float *model_logits(model *m);              /* (B, t1 - t0, V) of the last forward */
int64_t model_logits_count(const model *m); /* B · (t1 - t0) · V of the last forward */
float *model_values(model *m);              /* (B, T) */
float *model_dvalues(model *m);             /* (B, T) backward reads */

/* KV-cache sampling (temperature 0 = greedy, top_k 0 = all, top_p 1 = all).
 * GPT-2 stops a row at eos_id (-1 never); the Llama family at any of its
 * config's EOS ids. out (B, max_new_tokens), out_len (B). 0 or -1. */
int model_generate(const model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B, int P,
                   float temperature, int top_k, float top_p, int max_new_tokens, int eos_id,
                   rng_state *rng, int32_t *out, int32_t *out_len, char *err, size_t errlen);

/* model_generate with a look at every token as it is chosen, for a caller
 * that streams or stops on text: on_token(ctx, row, token, logprob) is
 * called for each new token of a live row (logprob: log-softmax of the
 * model's logits at temperature 1, the distribution OpenAI's `logprobs`
 * report), the EOS included; it returns false to end that row after this
 * token. logprobs (B, max_new_tokens) receives the same values when not
 * NULL. The same tokens as model_generate for the same rng when on_token
 * never ends a row. 0 or -1 with err. */
/* Whether id ends a row: eos_id, or (Llama family) one of its config's EOS ids. */
bool model_is_eos(const model *m, int eos_id, int32_t id);
typedef bool (*model_token_fn)(void *ctx, int row, int32_t token, float logprob);
int model_generate_stream(const model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                          int P, float temperature, int top_k, float top_p, int max_new_tokens,
                          int eos_id, rng_state *rng, int32_t *out, int32_t *out_len,
                          float *logprobs, model_token_fn on_token, void *ctx, char *err,
                          size_t errlen);

/* A Llama-family checkpoint (or Hugging Face directory) at in_path as a
 * Hugging Face directory out_dir (which must exist): config.json,
 * generation_config.json (when the config has EOS ids), model.safetensors
 * (dtype; adapters merged) and, when the checkpoint has LoRA adapters,
 * out_dir/adapter/ as PEFT saves them (for the model the job started
 * from). 0 or -1 with err. */
int model_export_llama_hf(const char *in_path, const char *out_dir, safetensors_dtype dtype,
                          char *err, size_t errlen);

/* The model as one checkpoint file (gpt2_checkpoint.h / llama_checkpoint.h)
 * with extra metadata and tensors; malloc'd, NULL when out of memory. */
void *model_serialize(const model *m, const char *const (*extra_meta)[2], int n_extra,
                      const safetensors_tensor *extra_tensors, int n_extra_tensors,
                      size_t *n_bytes);
/* The same file written to out (*n_bytes: its size); a Llama-family
 * model's weights go out from its own buffer, never copied whole. 0, or -1
 * when out of memory or a write fails. */
int model_write_checkpoint(const model *m, const char *const (*extra_meta)[2], int n_extra,
                           const safetensors_tensor *extra_tensors, int n_extra_tensors, FILE *out,
                           size_t *n_bytes);
/* The checkpoint of m (extra metadata and tensors as model_serialize) handed
 * to the sink at step: streamed (model_write_checkpoint) when the sink
 * takes streams, else as bytes. 0, or -1 (out of memory, or the sink
 * failed). */
int model_sink_checkpoint(const train_sink *sink, int64_t step, const model *m,
                          const char *const (*extra_meta)[2], int n_extra,
                          const safetensors_tensor *extra_tensors, int n_extra_tensors);

#endif
