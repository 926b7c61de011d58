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
 * Families: today every model is GPT-2 (model_family, model_info.family).
 * This is the seam where the next family (a Llama-style decoder) comes in:
 * config.json's model_type picks the family, and the out-parameter becomes
 * a family-tagged model (a `model` struct holding the family and the
 * family's model) that the trainers use through one interface. Until then a
 * model_type other than gpt2 is refused by name.
 */
#ifndef RLHF_MODEL_H
#define RLHF_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gpt2.h"
#include "safetensors.h"

typedef enum model_family { MODEL_FAMILY_GPT2 = 0 } model_family;

/* LoRA adapters to attach BEFORE the weights load (lora.h): the file's own
 * adapters (a resumable checkpoint of a LoRA job) then load into them. A
 * model opened without them merges any adapters the file carries into the
 * base weights. A is drawn from RNG stream `stream` of `seed`. */
typedef struct model_lora {
    int r;
    float alpha;
    unsigned targets; /* lora_target bits */
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

#endif
