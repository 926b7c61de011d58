/* llama_lora — low-rank adapters (Hu et al. 2021) on a llama_model, in
 * PEFT's format.
 *
 * Each adapted projection y = W x (+ b), W (out, in) frozen, becomes
 *     y = W x (+ b) + s · B (A x),  A (r, in), B (out, r),
 * s = alpha / r (alpha / sqrt(r) with use_rslora), on any of q_proj, k_proj,
 * v_proj, o_proj, gate_proj, up_proj, down_proj. q/k/v (and gate/up) share
 * one fused output row in llama.c; an adapter adds into its column slice of
 * that row (sgemm with the row stride), so nothing is unfused.
 *
 * As engine/lora.h does for GPT-2: attaching adapters frees the base's
 * gradient buffer (backward then computes input gradients through the base
 * and gradients only for the adapters and the scalar head, whose weights move
 * into the adapter buffer so one optimizer call covers everything);
 * llama_lora_set_enabled(m, false) gives the base model (PPO's reference)
 * without a second copy.
 *
 * Files: PEFT's adapter directory, adapter_config.json (r, lora_alpha,
 * target_modules, use_rslora; options we do not implement — use_dora, bias,
 * rank_pattern, alpha_pattern, layers_to_transform, lora_dropout > 0 when
 * training — are errors naming the key) and adapter_model.safetensors with
 * base_model.model.model.layers.{i}.self_attn.q_proj.lora_A.weight (r, in)
 * and ...lora_B.weight (out, r).
 */
#ifndef RLHF_LLAMA_LORA_H
#define RLHF_LLAMA_LORA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "llama.h"
#include "rng.h"

typedef enum llama_lora_target {
    LLAMA_LORA_Q = 0,
    LLAMA_LORA_K,
    LLAMA_LORA_V,
    LLAMA_LORA_O,
    LLAMA_LORA_GATE,
    LLAMA_LORA_UP,
    LLAMA_LORA_DOWN,
    LLAMA_LORA_NUM_TARGETS
} llama_lora_target;

#define LLAMA_LORA_TARGETS_ALL 0x7Fu

/* Unsaved forwards (decoding) apply adapters this many rows at a time. */
enum { LLAMA_LORA_CHUNK_ROWS = 64 };

struct llama_lora {
    int r;
    float alpha, scaling;
    unsigned targets; /* bit (1u << llama_lora_target) = adapted */
    bool enabled;
    bool rslora;
    int in[LLAMA_LORA_NUM_TARGETS], out[LLAMA_LORA_NUM_TARGETS];
    int out_offset[LLAMA_LORA_NUM_TARGETS], out_stride[LLAMA_LORA_NUM_TARGETS];
    /* trainable: for each adapted target A (L, r, in) then B (L, out, r);
     * then the scalar head's (C) weight and (1) bias when the model has one */
    int64_t num_params, num_adapter_params;
    float *params, *grads;
    float *A[LLAMA_LORA_NUM_TARGETS], *B[LLAMA_LORA_NUM_TARGETS];
    float *dA[LLAMA_LORA_NUM_TARGETS], *dB[LLAMA_LORA_NUM_TARGETS];
    float *dheadw, *dheadb; /* NULL without a scalar head */
    int64_t cap_rows;
    float *u[LLAMA_LORA_NUM_TARGETS]; /* (L, rows, r) x Aᵀ of the last forward */
    float *du;                        /* (rows, r) */
    float *scratch;                   /* (LLAMA_LORA_CHUNK_ROWS, r) */
    float *act_memory;
};

/* "q_proj,k_proj,..." (PEFT module names, any subset), "all" or
 * "all-linear" → bitmask. Returns 0 or -1 with err naming the module. */
int llama_lora_parse_targets(const char *text, unsigned *targets, char *err, size_t errlen);

/* Fresh adapters (A as PEFT's kaiming_uniform(a = sqrt(5)) = U(±1/sqrt(in)),
 * B = 0: the identity). Freezes the base (frees its gradients). 0 or -1. */
int llama_lora_attach(llama_model *m, int r, float alpha, bool rslora, unsigned targets,
                      rng_state *rng, char *err, size_t errlen);
void llama_lora_set_enabled(llama_model *m, bool enabled);
/* Called by llama_reserve / llama_free. */
int llama_lora_reserve(llama_model *m, int64_t rows);
void llama_lora_free(llama_model *m);

/* ---- hooks used by llama.c (no-ops when the target is not active) --------- */

/* out (n, stride) columns [offset, offset + out) += s · (inp Aᵀ) Bᵀ at layer
 * l; keeps inp Aᵀ for backward when save. */
void llama_lora_forward(const llama_model *m, int tgt, int l, float *out, const float *inp, int n,
                        bool save);
/* Backward of a saved forward: dA, dB += and dinp +=. */
void llama_lora_backward(llama_model *m, int tgt, int l, float *dinp, const float *dout,
                         const float *inp, int n);

/* ---- PEFT directories ---------------------------------------------------------- */

/* PEFT's tensor name of layer l's adapter of tgt, which = 'A' or 'B'. */
void llama_lora_peft_name(char *buf, size_t n, int tgt, int layer, char which);

/* Reads dir/adapter_config.json and dir/adapter_model.safetensors and
 * attaches those adapters to m (which must have none). 0 or -1 with err
 * naming the key or tensor. */
int llama_lora_open_dir(llama_model *m, const char *dir, char *err, size_t errlen);
/* Writes dir/adapter_config.json and dir/adapter_model.safetensors (F32).
 * dir must exist. 0 or -1. */
int llama_lora_save_dir(const llama_model *m, const char *dir, char *err, size_t errlen);

#endif
