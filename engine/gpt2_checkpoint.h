/* gpt2_checkpoint — GPT-2 weights in and out of Hugging Face's format.
 *
 * Names are HF GPT2LMHeadModel's (`transformer.h.{i}.attn.c_attn.weight`,
 * …); HF's Conv1D stores projections (in, out), ours are (out, in), so those
 * four matrices are transposed on the way in and out. The LM head is tied to
 * wte and not stored (HF re-ties it). A scalar head is stored as
 * `score.weight` (1, C) as in GPT2ForSequenceClassification, plus
 * `score.bias` (1). Our config travels in `__metadata__` (keys vocab_size,
 * n_positions, n_layer, n_head, n_embd, as GPT2Config), and
 * gpt2_hf_config_json writes the config.json HF wants beside the weights.
 *
 * Loading accepts files with or without the `transformer.` prefix (the
 * original openai-community/gpt2 upload has none), ignores the causal-mask
 * buffers older exports carry (`attn.bias`, `attn.masked_bias`) and
 * `lm_head.weight`, converts F16/BF16 to F32, and checks every shape.
 *
 * LoRA (engine/lora.h): a model with adapters is written as its frozen base
 * plus the adapters under PEFT's names (`base_model.model.transformer.h.{i}.
 * attn.c_attn.lora_A.weight`, ...) and metadata lora_r / lora_alpha. Loading
 * such a file into a model with adapters attached restores base and adapters
 * separately; into a model without, merges W += (alpha / r) · B A.
 */
#ifndef RLHF_GPT2_CHECKPOINT_H
#define RLHF_GPT2_CHECKPOINT_H

#include <stddef.h>

#include "gpt2.h"
#include "safetensors.h"

/* The model as one safetensors file in a malloc'd buffer (free() it), with
 * extra {key, value} metadata pairs and extra tensors (a trainer's state,
 * under its own prefix; HF loaders skip names they do not know). NULL on
 * allocation failure. */
void *gpt2_checkpoint_serialize(const gpt2_model *m, const char *const (*extra_meta)[2],
                                int n_extra, const safetensors_tensor *extra_tensors,
                                int n_extra_tensors, size_t *n_bytes);

/* The weights alone (no trainer state) as a Hugging Face export's
 * model.safetensors, every tensor stored as dtype (SAFETENSORS_F32, or
 * SAFETENSORS_BF16 rounded to nearest even: half the bytes). */
void *gpt2_export_serialize(const gpt2_model *m, safetensors_dtype dtype, size_t *n_bytes);

/* Reads the config from a checkpoint's metadata. n_head is not recoverable
 * from shapes, so a file without our metadata needs config.json
 * (gpt2_config_from_hf_json). Returns 0 or -1 with err. */
int gpt2_config_from_checkpoint(gpt2_config *cfg, const safetensors_file *f, char *err,
                                size_t errlen);
/* Parses HF's config.json text (n_embd, n_head, n_layer, n_positions,
 * vocab_size; activation_function and layer_norm_epsilon, when given, must
 * be GPT-2's gelu_new and 1e-5). Returns 0 or -1 with err naming the key. */
int gpt2_config_from_hf_json(gpt2_config *cfg, const char *json_text, char *err, size_t errlen);

/* Copies the weights of f into m (whose config must match the file's
 * shapes). The scalar head is loaded when m has one and the file does;
 * *head_loaded says which happened (may be NULL). Returns 0 or -1 with err
 * naming the tensor. */
int gpt2_checkpoint_load(gpt2_model *m, const safetensors_file *f, int *head_loaded, char *err,
                         size_t errlen);

/* HF GPT2Config as JSON text (malloc'd), for exporting next to the weights. */
char *gpt2_hf_config_json(const gpt2_config *cfg);

#endif
