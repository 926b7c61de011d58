/* lora — low-rank adapters (Hu et al. 2021) on a gpt2_model, PEFT-compatible.
 *
 * Each adapted projection y = W x + b (W (out, in), frozen) becomes
 *     y = W x + b + s · B (A x),   A (r, in), B (out, r), s = alpha / r,
 * on any of GPT-2's four projections: attn.c_attn, attn.c_proj, mlp.c_fc,
 * mlp.c_proj. A starts as PEFT's default (kaiming_uniform_(a = sqrt(5)), i.e.
 * U(-1/sqrt(in), 1/sqrt(in))) and B at zero, so a fresh adapter is the
 * identity.
 *
 * Why the design is what it is:
 * - Attaching adapters freezes the whole base: its full-size gradient buffer
 *   is freed and gpt2_backward computes only input gradients through it, so
 *   an optimizer over gpt2_lora.params (the adapters, then the scalar head
 *   when the model has one) never allocates anything model-sized. That is
 *   where LoRA's memory saving comes from.
 * - The scalar head stays trainable: it moves into the same flat buffer (the
 *   model's params.headw/headb views are re-pointed there; checkpoints read
 *   the views), so one AdamW call and one gradient clip cover everything.
 * - gpt2_lora_set_enabled(m, false) makes forward and KV-cache decoding use
 *   the base weights alone; a PPO job computes its reference log-probs this
 *   way instead of keeping a second copy of the model.
 * - Adapter tensors use PEFT's names for GPT-2,
 *   base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight (r, in) and
 *   ...lora_B.weight (out, r); PEFT's fan_in_fan_out = true refers to HF's
 *   Conv1D base weight (in, out) only, the adapter tensors are nn.Linear
 *   layout either way, which is also ours — no transposes. A checkpoint of a
 *   model with adapters carries the unmerged base plus these tensors and
 *   metadata lora_r / lora_alpha; gpt2_checkpoint_load merges them into a
 *   model that has no adapters attached, so every consumer of checkpoints
 *   (sampling, evaluation, export-hf) sees the fine-tuned weights.
 */
#ifndef RLHF_LORA_H
#define RLHF_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "rng.h"
#include "safetensors.h"

typedef enum lora_target {
    LORA_C_ATTN = 0,  /* attn.c_attn: C → 3C */
    LORA_ATTN_C_PROJ, /* attn.c_proj: C → C */
    LORA_MLP_C_FC,    /* mlp.c_fc: C → 4C */
    LORA_MLP_C_PROJ,  /* mlp.c_proj: 4C → C */
    LORA_NUM_TARGETS
} lora_target;

#define LORA_TARGETS_ALL 0xFu

/* Decode steps apply adapters this many rows at a time (fixed scratch). */
enum { LORA_CHUNK_ROWS = 64 };

struct gpt2_lora {
    int r;
    float alpha, scaling; /* scaling = alpha / r */
    unsigned targets;     /* bit (1u << lora_target) set = adapted */
    bool enabled;         /* false: forward and decode use the base alone */
    int n_layer;
    int in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    /* trainable parameters: for each adapted target A (L, r, in) then
     * B (L, out, r); then the scalar head's (C) weight and (1) bias when the
     * model has one */
    int64_t num_params, num_adapter_params;
    float *params, *grads;
    float *A[LORA_NUM_TARGETS], *B[LORA_NUM_TARGETS];   /* NULL if not adapted */
    float *dA[LORA_NUM_TARGETS], *dB[LORA_NUM_TARGETS]; /* views into grads */
    /* activations of the last forward: u = x Aᵀ (L, rows, r) per target */
    int64_t cap_rows;
    float *u[LORA_NUM_TARGETS];
    float *du;      /* (rows, r) backward scratch */
    float *scratch; /* (LORA_CHUNK_ROWS, r) for decode steps */
    float *act_memory;
};

/* Parses "c_attn,attn.c_proj,mlp.c_fc,mlp.c_proj" (any subset, in any order;
 * "all" = every one; "c_proj" = both c_proj, as PEFT's suffix match) into a
 * bitmask. Returns 0 or -1 with err naming the unknown module. */
int lora_parse_targets(const char *text, unsigned *targets, char *err, size_t errlen);

/* Attaches fresh adapters of rank r (>= 1) and alpha (> 0) to the targets of
 * m, drawing A from rng. Freezes the base: frees m's gradient buffer (the
 * scalar head's gradient lives in lora->grads). Returns 0 or -1 with err. */
int gpt2_lora_attach(gpt2_model *m, int r, float alpha, unsigned targets, rng_state *rng, char *err,
                     size_t errlen);
/* Turns the adapters off (the base model) or on; no-op without adapters. */
void gpt2_lora_set_enabled(gpt2_model *m, bool enabled);
/* Called by gpt2_reserve / gpt2_free; frees m->lora. */
int gpt2_lora_reserve(gpt2_model *m, int64_t rows);
void gpt2_lora_free(gpt2_model *m);

/* ---- hooks used by gpt2.c and gpt2_sample.c -------------------------------- */

/* Whether target tgt is adapted and enabled. */
static inline bool gpt2_lora_active(const gpt2_model *m, int tgt) {
    return m->lora != NULL && m->lora->enabled && (m->lora->targets >> tgt & 1u);
}
/* out (n, out) += s · (inp Aᵀ) Bᵀ for layer l; keeps inp Aᵀ for backward
 * when save (n must fit the reserved rows), else works in chunks. */
void gpt2_lora_forward(const gpt2_model *m, int tgt, int l, float *out, const float *inp, int n,
                       bool save);
/* Backward of gpt2_lora_forward(save = true): dA, dB += and dinp +=. */
void gpt2_lora_backward(gpt2_model *m, int tgt, int l, float *dinp, const float *dout,
                        const float *inp, int n);

/* ---- files -------------------------------------------------------------------- */

/* PEFT's name of one adapter tensor: which = 'A' or 'B'. */
void lora_peft_name(char *buf, size_t n, int tgt, int layer, char which);

/* The adapters as adapter_model.safetensors (PEFT names, F32, metadata
 * format pt) in a malloc'd buffer; NULL without adapters or memory. */
void *gpt2_lora_serialize(const gpt2_model *m, size_t *n_bytes);
/* adapter_config.json text (malloc'd) as PEFT writes it for this adapter. */
char *gpt2_lora_config_json(const gpt2_model *m);

/* The adapter tensors of m (PEFT names in the caller's names buffer, which
 * needs room for 2 · 4 · L names of 128 bytes) for appending to a checkpoint;
 * returns how many were written to tensors. Metadata for them: lora_r and
 * lora_alpha (strings) via gpt2_lora_metadata. */
int gpt2_lora_tensors(const gpt2_model *m, safetensors_tensor *tensors, char (*names)[128]);
void gpt2_lora_metadata(const gpt2_model *m, char r_buf[24], char alpha_buf[32]);

/* Reads the rank, alpha and target set of the adapters stored in f
 * (PEFT-named tensors; alpha from metadata lora_alpha, else = r). Returns 1
 * when f has adapters, 0 when it has none, -1 on malformed ones (err). */
int lora_file_info(const safetensors_file *f, int n_layer, int *r, float *alpha, unsigned *targets,
                   char *err, size_t errlen);
/* Copies the adapters of f into m's (same rank and targets). 0 or -1. */
int gpt2_lora_load(gpt2_model *m, const safetensors_file *f, char *err, size_t errlen);
/* W += (alpha / r) · B A for every adapter in f, on a model without adapters
 * (what gpt2_checkpoint_load does with a checkpoint that carries them).
 * Returns 0 (also when f has none) or -1 with err. */
int gpt2_lora_merge_file(gpt2_model *m, const safetensors_file *f, char *err, size_t errlen);

#endif
