#include "gpt2_checkpoint.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lora.h"

/* One row per tensor of gpt2_params, in its order: the HF name (with %d for
 * the layer of per-layer tensors) and whether HF stores it transposed. */
typedef struct hf_tensor {
    const char *name;
    int per_layer;
    int transposed; /* Conv1D: HF (in, out), ours (out, in) */
} hf_tensor;

static const hf_tensor hf_tensors[GPT2_NUM_PARAM_TENSORS] = {
    {"wte.weight", 0, 0},
    {"wpe.weight", 0, 0},
    {"h.%d.ln_1.weight", 1, 0},
    {"h.%d.ln_1.bias", 1, 0},
    {"h.%d.attn.c_attn.weight", 1, 1},
    {"h.%d.attn.c_attn.bias", 1, 0},
    {"h.%d.attn.c_proj.weight", 1, 1},
    {"h.%d.attn.c_proj.bias", 1, 0},
    {"h.%d.ln_2.weight", 1, 0},
    {"h.%d.ln_2.bias", 1, 0},
    {"h.%d.mlp.c_fc.weight", 1, 1},
    {"h.%d.mlp.c_fc.bias", 1, 0},
    {"h.%d.mlp.c_proj.weight", 1, 1},
    {"h.%d.mlp.c_proj.bias", 1, 0},
    {"ln_f.weight", 0, 0},
    {"ln_f.bias", 0, 0},
    {"score.weight", 0, 0},
    {"score.bias", 0, 0},
};
enum { HEAD_W = 16, HEAD_B = 17 };

/* Our (rows, cols) of one slice of tensor k: matrices as (out, in), vectors
 * as (1, n). */
static void slice_shape(const gpt2_config *cfg, int k, int64_t *rows, int64_t *cols) {
    const int64_t C = cfg->d_model;
    switch (k) {
        case 0:
            *rows = cfg->vocab_size, *cols = C;
            return;
        case 1:
            *rows = cfg->max_seq_len, *cols = C;
            return;
        case 4:
            *rows = 3 * C, *cols = C;
            return;
        case 6:
            *rows = C, *cols = C;
            return;
        case 10:
            *rows = 4 * C, *cols = C;
            return;
        case 12:
            *rows = C, *cols = 4 * C;
            return;
        case 5:
            *rows = 1, *cols = 3 * C;
            return;
        case 11:
            *rows = 1, *cols = 4 * C;
            return;
        case HEAD_W:
            *rows = 1, *cols = C;
            return;
        case HEAD_B:
            *rows = 1, *cols = 1;
            return;
        default: /* LayerNorms and C-sized biases */
            *rows = 1, *cols = C;
    }
}

/* The HF shape of a slice: ndim and dims. */
static int hf_shape(const gpt2_config *cfg, int k, int64_t shape[2]) {
    int64_t rows, cols;
    slice_shape(cfg, k, &rows, &cols);
    if (hf_tensors[k].transposed) {
        shape[0] = cols, shape[1] = rows;
        return 2;
    }
    if (k == 0 || k == 1 || k == HEAD_W) {
        shape[0] = rows, shape[1] = cols;
        return 2;
    }
    shape[0] = cols;
    return 1;
}

static void transpose(float *dst, const float *src, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            dst[c * rows + r] = src[r * cols + c];
}

/* gpt2_checkpoint_serialize with every tensor stored as dtype. */
static void *serialize_as(const gpt2_model *m, const char *const (*extra_meta)[2], int n_extra,
                          const safetensors_tensor *extra_tensors, int n_extra_tensors,
                          safetensors_dtype dtype, size_t *n_bytes) {
    const gpt2_config *cfg = &m->cfg;
    const int L = cfg->n_layer;
    const int n_lora = m->lora ? 2 * LORA_NUM_TARGETS * L : 0;
    const int n_tensors = 4 + 12 * L + (cfg->scalar_head ? 2 : 0) + n_extra_tensors + n_lora;
    safetensors_tensor *tensors = calloc((size_t)n_tensors, sizeof *tensors);
    char(*names)[96] = calloc((size_t)n_tensors, sizeof *names);
    char(*lora_names)[128] = n_lora ? calloc((size_t)n_lora, sizeof *lora_names) : NULL;
    float *hf = malloc(sizeof(float) * (size_t)m->num_params); /* HF layout copy */
    void *out = NULL;
    if (tensors == NULL || names == NULL || hf == NULL || (n_lora && lora_names == NULL))
        goto done;
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(cfg, sizes);
    const float *src = m->param_memory;
    float *dst = hf;
    int t = 0;
    for (int k = 0; k < GPT2_NUM_PARAM_TENSORS; k++) {
        if (sizes[k] == 0)
            continue;
        const int slices = hf_tensors[k].per_layer ? L : 1;
        const int64_t slice = sizes[k] / slices;
        int64_t rows, cols, shape[2];
        slice_shape(cfg, k, &rows, &cols);
        const int ndim = hf_shape(cfg, k, shape);
        if (k >= HEAD_W) /* LoRA moves the trainable head out of param_memory */
            src = k == HEAD_W ? m->params.headw : m->params.headb;
        for (int i = 0; i < slices; i++) {
            if (hf_tensors[k].transposed)
                transpose(dst, src, rows, cols);
            else
                memcpy(dst, src, sizeof(float) * (size_t)slice);
            /* the scalar head sits beside the transformer, as HF's score */
            snprintf(names[t], sizeof names[t], "%s", k >= HEAD_W ? "" : "transformer.");
            const size_t used = strlen(names[t]);
            snprintf(names[t] + used, sizeof names[t] - used, hf_tensors[k].name, i);
            tensors[t] = (safetensors_tensor){.name = names[t], .data = dst, .ndim = ndim};
            memcpy(tensors[t].shape, shape, sizeof(int64_t) * (size_t)ndim);
            t++;
            src += slice;
            dst += slice;
        }
    }
    for (int i = 0; i < n_extra_tensors; i++)
        tensors[t++] = extra_tensors[i];
    /* adapters unmerged, under PEFT's names; loading merges them (lora.h) */
    t += gpt2_lora_tensors(m, tensors + t, lora_names);
    char lora_r[24], lora_alpha[32];
    gpt2_lora_metadata(m, lora_r, lora_alpha);
    char v[5][24];
    snprintf(v[0], sizeof v[0], "%d", cfg->vocab_size);
    snprintf(v[1], sizeof v[1], "%d", cfg->max_seq_len);
    snprintf(v[2], sizeof v[2], "%d", cfg->n_layer);
    snprintf(v[3], sizeof v[3], "%d", cfg->n_head);
    snprintf(v[4], sizeof v[4], "%d", cfg->d_model);
    const char *meta[32][2] = {{"format", "pt"},      {"vocab_size", v[0]}, {"n_positions", v[1]},
                               {"n_layer", v[2]},     {"n_head", v[3]},     {"n_embd", v[4]},
                               {"model_type", "gpt2"}};
    int n_meta = 7;
    if (m->lora != NULL) {
        meta[n_meta][0] = "lora_r", meta[n_meta++][1] = lora_r;
        meta[n_meta][0] = "lora_alpha", meta[n_meta++][1] = lora_alpha;
    }
    for (int i = 0; i < n_extra && n_meta < 32; i++, n_meta++)
        meta[n_meta][0] = extra_meta[i][0], meta[n_meta][1] = extra_meta[i][1];
    out =
        safetensors_serialize_as(tensors, t, (const char *const(*)[2])meta, n_meta, dtype, n_bytes);
done:
    free(tensors);
    free(names);
    free(lora_names);
    free(hf);
    return out;
}

void *gpt2_checkpoint_serialize(const gpt2_model *m, const char *const (*extra_meta)[2],
                                int n_extra, const safetensors_tensor *extra_tensors,
                                int n_extra_tensors, size_t *n_bytes) {
    return serialize_as(m, extra_meta, n_extra, extra_tensors, n_extra_tensors, SAFETENSORS_F32,
                        n_bytes);
}

void *gpt2_export_serialize(const gpt2_model *m, safetensors_dtype dtype, size_t *n_bytes) {
    return serialize_as(m, NULL, 0, NULL, 0, dtype, n_bytes);
}

static int meta_int(const safetensors_file *f, const char *key, int *out, char *err,
                    size_t errlen) {
    const char *v = safetensors_metadata_get(f, key);
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (v == NULL || *end != '\0' || x < 1 || x > 1 << 30) {
        snprintf(err, errlen, "checkpoint metadata: '%s' %s", key,
                 v ? "is not a positive integer" : "is missing (export config.json too)");
        return -1;
    }
    *out = (int)x;
    return 0;
}

int gpt2_config_from_checkpoint(gpt2_config *cfg, const safetensors_file *f, char *err,
                                size_t errlen) {
    memset(cfg, 0, sizeof *cfg);
    if (meta_int(f, "vocab_size", &cfg->vocab_size, err, errlen) ||
        meta_int(f, "n_positions", &cfg->max_seq_len, err, errlen) ||
        meta_int(f, "n_layer", &cfg->n_layer, err, errlen) ||
        meta_int(f, "n_head", &cfg->n_head, err, errlen) ||
        meta_int(f, "n_embd", &cfg->d_model, err, errlen))
        return -1;
    cfg->scalar_head = safetensors_find(f, "score.weight") != NULL;
    return 0;
}

int gpt2_config_from_hf_json(gpt2_config *cfg, const char *json_text, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "config.json: %s", root ? "not a JSON object" : jerr.text);
        json_decref(root);
        return -1;
    }
    const char *keys[5] = {"vocab_size", "n_positions", "n_layer", "n_head", "n_embd"};
    int *fields[5] = {&cfg->vocab_size, &cfg->max_seq_len, &cfg->n_layer, &cfg->n_head,
                      &cfg->d_model};
    memset(cfg, 0, sizeof *cfg);
    for (int i = 0; i < 5; i++) {
        json_t *v = json_object_get(root, keys[i]);
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 1 << 30) {
            snprintf(err, errlen, "config.json: '%s' must be a positive integer", keys[i]);
            json_decref(root);
            return -1;
        }
        *fields[i] = (int)json_integer_value(v);
    }
    /* what this implementation fixes: GELU (tanh) and LayerNorm eps 1e-5 */
    const json_t *act = json_object_get(root, "activation_function");
    const json_t *eps = json_object_get(root, "layer_norm_epsilon");
    int rc = 0;
    if (act != NULL && !(json_is_string(act) && strcmp(json_string_value(act), "gelu_new") == 0)) {
        snprintf(err, errlen, "config.json: 'activation_function' must be \"gelu_new\"");
        rc = -1;
    } else if (eps != NULL &&
               !(json_is_number(eps) && fabs(json_number_value(eps) - 1e-5) < 1e-12)) {
        snprintf(err, errlen, "config.json: 'layer_norm_epsilon' must be 1e-5");
        rc = -1;
    }
    json_decref(root);
    return rc;
}

/* The tensor called name, with or without the "transformer." prefix. */
static const safetensors_info *find_either(const safetensors_file *f, const char *name) {
    const safetensors_info *t = safetensors_find(f, name);
    if (t == NULL && strncmp(name, "transformer.", 12) == 0)
        t = safetensors_find(f, name + 12);
    return t;
}

int gpt2_checkpoint_load(gpt2_model *m, const safetensors_file *f, int *head_loaded, char *err,
                         size_t errlen) {
    const gpt2_config *cfg = &m->cfg;
    const int L = cfg->n_layer;
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(cfg, sizes);
    int64_t biggest = 0;
    for (int k = 0; k < GPT2_NUM_PARAM_TENSORS; k++) {
        const int64_t slice = sizes[k] / (hf_tensors[k].per_layer ? L : 1);
        biggest = slice > biggest ? slice : biggest;
    }
    float *scratch = malloc(sizeof(float) * (size_t)biggest);
    if (scratch == NULL) {
        snprintf(err, errlen, "out of memory loading a checkpoint");
        return -1;
    }
    int rc = 0, loaded_head = 0;
    float *dst = m->param_memory;
    for (int k = 0; k < GPT2_NUM_PARAM_TENSORS && rc == 0; k++) {
        const int slices = hf_tensors[k].per_layer ? L : 1;
        const int64_t slice = sizes[k] / slices;
        int64_t rows, cols, shape[2];
        slice_shape(cfg, k, &rows, &cols);
        const int ndim = hf_shape(cfg, k, shape);
        if (k >= HEAD_W) /* LoRA moves the trainable head out of param_memory */
            dst = k == HEAD_W ? m->params.headw : m->params.headb;
        for (int i = 0; i < slices && sizes[k] > 0; i++) {
            char name[96];
            snprintf(name, sizeof name, "%s", k >= HEAD_W ? "" : "transformer.");
            const size_t used = strlen(name);
            snprintf(name + used, sizeof name - used, hf_tensors[k].name, i);
            const safetensors_info *t = find_either(f, name);
            if (t == NULL && k >= HEAD_W) {
                /* No head in the file (an SFT model becoming a reward model):
                 * keep the head the caller initialised. */
                dst += slice;
                continue;
            }
            if (t == NULL) {
                snprintf(err, errlen, "checkpoint has no tensor '%s'", name);
                rc = -1;
                break;
            }
            if (safetensors_check_shape(t, ndim, shape, err, errlen) != 0 ||
                safetensors_load_f32(t, hf_tensors[k].transposed ? scratch : dst, slice, err,
                                     errlen) != 0) {
                rc = -1;
                break;
            }
            if (hf_tensors[k].transposed)
                transpose(dst, scratch, cols, rows); /* HF (in=cols, out=rows) → ours */
            loaded_head |= k >= HEAD_W;
            dst += slice;
        }
    }
    free(scratch);
    /* adapters carried by the file: into the model's own when it has them,
     * otherwise merged into the base weights */
    if (rc == 0 && m->lora != NULL) {
        int r;
        float alpha;
        unsigned targets;
        const int has = lora_file_info(f, L, &r, &alpha, &targets, err, errlen);
        rc = has < 0 ? -1 : has > 0 ? gpt2_lora_load(m, f, err, errlen) : 0;
    } else if (rc == 0) {
        rc = gpt2_lora_merge_file(m, f, err, errlen);
    }
    if (head_loaded)
        *head_loaded = loaded_head;
    return rc;
}

char *gpt2_hf_config_json(const gpt2_config *cfg) {
    json_t *c =
        json_pack("{s:[s], s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:s, s:f, s:f, s:f, s:f, "
                  "s:f, s:i, s:i}",
                  "architectures", "GPT2LMHeadModel", "model_type", "gpt2", "vocab_size",
                  cfg->vocab_size, "n_positions", cfg->max_seq_len, "n_ctx", cfg->max_seq_len,
                  "n_embd", cfg->d_model, "n_layer", cfg->n_layer, "n_head", cfg->n_head,
                  "activation_function", "gelu_new", "layer_norm_epsilon", 1e-5,
                  "initializer_range", 0.02, "resid_pdrop", 0.0, "embd_pdrop", 0.0, "attn_pdrop",
                  0.0, "bos_token_id", cfg->vocab_size - 1, "eos_token_id", cfg->vocab_size - 1);
    char *text = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    return text;
}
