/* llama_checkpoint — a Llama-family model as ONE safetensors file of this
 * project: what trainers hand their sink (periodic, stopped and final
 * checkpoints) and what resume and model_open_bytes read back.
 *
 * Tensors carry Hugging Face names (llama_hf.h's table), so the weights are
 * those of a model.safetensors; the config travels in the metadata as
 * `model_type` (llama, qwen2, qwen3, mistral), `config_json` (the config.json
 * text llama_hf_config_json writes) and `max_seq_len` (the context the model
 * was opened for). With LoRA adapters attached the file holds the frozen base
 * plus the adapters under PEFT's names (llama_lora.h) and metadata lora_r,
 * lora_alpha, lora_targets (the target bitmask) and lora_rslora. Loading such
 * a file into a model with the same adapters attached restores both; into a
 * model without adapters merges W += s · B A, as gpt2_checkpoint does.
 * Tensors named `training_state.*` (a trainer's state) are skipped by the
 * loader.
 */
#ifndef RLHF_LLAMA_CHECKPOINT_H
#define RLHF_LLAMA_CHECKPOINT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "llama.h"
#include "safetensors.h"

/* The model, extra metadata pairs and extra tensors as one file in a
 * malloc'd buffer (free() it); NULL when out of memory. */
void *llama_checkpoint_serialize(const llama_model *m, const char *const (*extra_meta)[2],
                                 int n_extra, const safetensors_tensor *extra_tensors,
                                 int n_extra_tensors, size_t *n_bytes);
/* The same file written to out as it is encoded, never whole in memory: the
 * weights go out from the model's own buffer. *n_bytes gets its size. 0, or
 * -1 when out of memory or a write fails. */
int llama_checkpoint_write(const llama_model *m, const char *const (*extra_meta)[2], int n_extra,
                           const safetensors_tensor *extra_tensors, int n_extra_tensors, FILE *out,
                           size_t *n_bytes);

/* Whether f is a Llama-family checkpoint of this project (has config_json). */
bool llama_checkpoint_is(const safetensors_file *f);

/* The config of such a file (max_context 0 = the file's max_seq_len). */
int llama_checkpoint_config(llama_config *cfg, const safetensors_file *f, int max_context,
                            char *err, size_t errlen);

/* The adapters f carries: 1 (r, alpha, targets, rslora filled), 0 none, -1
 * malformed metadata (err). */
int llama_checkpoint_lora_info(const safetensors_file *f, int *r, float *alpha, unsigned *targets,
                               bool *rslora, char *err, size_t errlen);

/* Copies the weights of f into m (llama_init'd with a matching config);
 * the scalar head when m has one and f does (*head_loaded says which; may be
 * NULL). Adapters in f load into m's (same rank and targets) or merge into
 * the base when m has none. Returns 0 or -1 with err naming the tensor. */
int llama_checkpoint_load(llama_model *m, const safetensors_file *f, int *head_loaded, char *err,
                          size_t errlen);

#endif
