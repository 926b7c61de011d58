/* llama_hf — Llama-family models in and out of Hugging Face model
 * directories, as transformers writes them:
 *
 *   config.json                   LlamaConfig / Qwen2Config / Qwen3Config /
 *                                 MistralConfig keys (model_type selects)
 *   generation_config.json        optional; its eos_token_id wins
 *   model.safetensors             or model.safetensors.index.json
 *                                 {"weight_map": {tensor: shard file}} and
 *                                 the shards; F32, F16 or BF16 tensors
 *
 * Tensor names are HF's: model.embed_tokens.weight,
 * model.layers.{i}.self_attn.{q,k,v,o}_proj.{weight,bias},
 * model.layers.{i}.self_attn.{q,k}_norm.weight (Qwen3),
 * model.layers.{i}.mlp.{gate,up,down}_proj.weight,
 * model.layers.{i}.{input,post_attention}_layernorm.weight,
 * model.norm.weight, lm_head.weight (untied only). A scalar head travels as
 * score.weight (1, C) and score.bias (1) (a sequence-classification head).
 *
 * Opening checks everything and names what is wrong: an unknown model_type,
 * an unsupported option (the config key: hidden_act, mlp_bias,
 * rope_scaling.rope_type, sliding_window shorter than the context used,
 * attention_dropout, quantization_config, layer_types), a missing, extra,
 * duplicated or mis-shaped tensor (its name). rotary_emb.inv_freq buffers of
 * old exports and a tied model's redundant lm_head.weight are skipped, as
 * transformers does.
 */
#ifndef RLHF_LLAMA_HF_H
#define RLHF_LLAMA_HF_H

#include <stdbool.h>
#include <stddef.h>

#include "llama.h"
#include "safetensors.h"

typedef struct llama_open_options {
    int max_context;  /* positions the caller will use; 0 = max_position_embeddings */
    bool scalar_head; /* add a scalar head (loaded from score.* when present, else zero) */
} llama_open_options;

/* Parses config.json text and, when not NULL, generation_config.json text
 * into cfg (max_seq_len = min(max_position_embeddings, max_context)).
 * Returns 0 or -1 with err naming the key. */
int llama_config_from_hf_json(llama_config *cfg, const char *config_json,
                              const char *generation_config_json, int max_context, char *err,
                              size_t errlen);

/* The same from dir/config.json and dir/generation_config.json (when there
 * is one). */
int llama_read_hf_config(llama_config *cfg, const char *dir, int max_context, char *err,
                         size_t errlen);

/* config.json text (malloc'd) for cfg, with transformers' key names. */
char *llama_hf_config_json(const llama_config *cfg);

/* One HF tensor: a contiguous slice of the parameter (or gradient) buffer. */
typedef struct llama_hf_tensor {
    char name[96];
    float *data;
    int ndim;
    int64_t shape[2];
    bool optional; /* may be absent from a file (the scalar head) */
} llama_hf_tensor;

/* Fills out (NULL: only counts) with the HF tensors of a model with cfg
 * whose parameters (or gradients, or Adam moments) are p. Returns how many. */
int llama_hf_tensors(const llama_config *cfg, const llama_params *p, llama_hf_tensor *out);

/* Opens the HF model directory dir into m (llama_init'd here; llama_free
 * it). opt may be NULL. Returns 0 or -1 with err. */
int llama_open_hf_dir(llama_model *m, const char *dir, const llama_open_options *opt, char *err,
                      size_t errlen);

/* Writes dir/config.json, dir/generation_config.json (when the config has
 * EOS ids) and dir/model.safetensors ({"format": "pt"} metadata, every
 * tensor as dtype: SAFETENSORS_F32 or SAFETENSORS_BF16). dir must exist.
 * Returns 0 or -1 with err. */
int llama_save_hf_dir(const llama_model *m, const char *dir, safetensors_dtype dtype, char *err,
                      size_t errlen);

#endif
