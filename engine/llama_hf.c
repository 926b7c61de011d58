#include "llama_hf.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* ==== config.json ============================================================= */

static const char *const model_type_names[] = {"llama", "qwen2", "qwen3", "mistral"};
static const char *const architecture_names[] = {"LlamaForCausalLM", "Qwen2ForCausalLM",
                                                 "Qwen3ForCausalLM", "MistralForCausalLM"};

__attribute__((format(printf, 3, 4))) static int fail(char *err, size_t errlen, const char *fmt,
                                                      ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* An integer key in [lo, hi]; absent or null gives dflt when dflt >= lo,
 * else an error. */
static int get_int(const json_t *o, const char *key, long long lo, long long hi, long long dflt,
                   int *out, char *err, size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        if (dflt < lo)
            return fail(err, errlen, "config.json: '%s' is missing", key);
        *out = (int)dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < lo || json_integer_value(v) > hi)
        return fail(err, errlen, "config.json: '%s' must be an integer of at least %lld", key, lo);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_number(const json_t *o, const char *key, double dflt, float *out, char *err,
                      size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = (float)dflt;
        return 0;
    }
    if (!json_is_number(v))
        return fail(err, errlen, "config.json: '%s' must be a number", key);
    *out = (float)json_number_value(v);
    return 0;
}

static int get_bool(const json_t *o, const char *key, bool dflt, bool *out, char *err,
                    size_t errlen) {
    const json_t *v = json_object_get(o, key);
    if (v == NULL || json_is_null(v)) {
        *out = dflt;
        return 0;
    }
    if (!json_is_boolean(v))
        return fail(err, errlen, "config.json: '%s' must be true or false", key);
    *out = json_is_true(v);
    return 0;
}

/* rope_scaling (or transformers 5's rope_parameters): none, "default" or
 * "llama3". */
static int parse_rope_scaling(llama_config *c, const json_t *rs, const char *key, char *err,
                              size_t errlen) {
    if (rs == NULL || json_is_null(rs))
        return 0;
    if (!json_is_object(rs))
        return fail(err, errlen, "config.json: '%s' must be an object or null", key);
    const json_t *type = json_object_get(rs, "rope_type");
    if (type == NULL)
        type = json_object_get(rs, "type");
    const char *t = json_is_string(type) ? json_string_value(type) : "default";
    if (json_object_get(rs, "rope_theta") != NULL &&
        get_number(rs, "rope_theta", 10000.0, &c->rope_theta, err, errlen) != 0)
        return -1;
    if (strcmp(t, "default") == 0)
        return 0;
    if (strcmp(t, "llama3") != 0) {
        snprintf(err, errlen, "config.json: '%s.rope_type' is '%.40s'; supported: default, llama3",
                 key, t);
        return -1;
    }
    c->rope_llama3 = true;
    if (get_number(rs, "factor", -1.0, &c->rope_factor, err, errlen) != 0 ||
        get_number(rs, "low_freq_factor", -1.0, &c->rope_low_freq_factor, err, errlen) != 0 ||
        get_number(rs, "high_freq_factor", -1.0, &c->rope_high_freq_factor, err, errlen) != 0 ||
        get_int(rs, "original_max_position_embeddings", 1, 1 << 30, 0,
                &c->rope_original_max_position, err, errlen) != 0)
        return -1;
    return 0;
}

/* eos_token_id: an integer, a list of them, or null. */
static int parse_eos(llama_config *c, const json_t *v, const char *file, char *err, size_t errlen) {
    if (v == NULL || json_is_null(v))
        return 0;
    c->n_eos = 0;
    if (json_is_integer(v)) {
        c->eos_ids[c->n_eos++] = (int32_t)json_integer_value(v);
        return 0;
    }
    size_t i;
    const json_t *x;
    if (!json_is_array(v) || json_array_size(v) > LLAMA_MAX_EOS)
        return fail(err, errlen, "%s: 'eos_token_id' must be an id or a list of at most %d ids",
                    file, LLAMA_MAX_EOS);
    json_array_foreach(v, i, x) {
        if (!json_is_integer(x))
            return fail(err, errlen, "%s: 'eos_token_id' must hold integers", file);
        c->eos_ids[c->n_eos++] = (int32_t)json_integer_value(x);
    }
    return 0;
}

static int parse_config(llama_config *c, const json_t *o, const json_t *gen, int max_context,
                        char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    const json_t *mt = json_object_get(o, "model_type");
    if (!json_is_string(mt))
        return fail(err, errlen, "config.json: 'model_type' is missing");
    int type = -1;
    for (int i = 0; i < 4; i++)
        if (strcmp(json_string_value(mt), model_type_names[i]) == 0)
            type = i;
    if (type < 0) {
        snprintf(err, errlen,
                 "config.json: 'model_type' is '%.40s'; the Llama family reads llama, qwen2, "
                 "qwen3 and mistral",
                 json_string_value(mt));
        return -1;
    }
    c->model_type = (llama_model_type)type;
    const int big = 1 << 30;
    if (get_int(o, "vocab_size", 1, big, 0, &c->vocab_size, err, errlen) != 0 ||
        get_int(o, "hidden_size", 1, big, 0, &c->hidden_size, err, errlen) != 0 ||
        get_int(o, "intermediate_size", 1, big, 0, &c->intermediate_size, err, errlen) != 0 ||
        get_int(o, "num_hidden_layers", 1, 4096, 0, &c->n_layer, err, errlen) != 0 ||
        get_int(o, "num_attention_heads", 1, 4096, 0, &c->n_head, err, errlen) != 0 ||
        get_int(o, "num_key_value_heads", 1, 4096, c->n_head, &c->n_kv_head, err, errlen) != 0 ||
        get_int(o, "max_position_embeddings", 1, big, 0, &c->max_position_embeddings, err,
                errlen) != 0)
        return -1;
    if (c->n_head % c->n_kv_head != 0)
        return fail(err, errlen,
                    "config.json: 'num_key_value_heads' (%d) must divide num_attention_heads",
                    c->n_kv_head);
    const int implicit_hd = c->hidden_size / c->n_head;
    if (get_int(o, "head_dim", 2, 1 << 16, implicit_hd >= 2 ? implicit_hd : 0, &c->head_dim, err,
                errlen) != 0)
        return -1;
    if (json_object_get(o, "head_dim") == NULL && c->hidden_size % c->n_head != 0)
        return fail(err, errlen, "config.json: 'hidden_size' %d is not divisible by heads",
                    c->hidden_size);
    if (c->head_dim % 2 != 0)
        return fail(err, errlen, "config.json: 'head_dim' %d must be even for RoPE", c->head_dim);
    if (get_number(o, "rms_norm_eps", 1e-6, &c->rms_norm_eps, err, errlen) != 0 ||
        get_number(o, "rope_theta", 10000.0, &c->rope_theta, err, errlen) != 0 ||
        get_bool(o, "tie_word_embeddings", false, &c->tie_embeddings, err, errlen) != 0)
        return -1;
    if (parse_rope_scaling(c, json_object_get(o, "rope_scaling"), "rope_scaling", err, errlen) !=
            0 ||
        parse_rope_scaling(c, json_object_get(o, "rope_parameters"), "rope_parameters", err,
                           errlen) != 0)
        return -1;
    /* options the family has that we do not implement: refuse by key */
    const json_t *act = json_object_get(o, "hidden_act");
    if (act != NULL && !(json_is_string(act) && strcmp(json_string_value(act), "silu") == 0))
        return fail(err, errlen, "config.json: 'hidden_act' must be \"silu\"");
    bool mlp_bias = false, attention_bias = false;
    float dropout = 0.0f;
    if (get_bool(o, "mlp_bias", false, &mlp_bias, err, errlen) != 0 ||
        get_bool(o, "attention_bias", false, &attention_bias, err, errlen) != 0 ||
        get_number(o, "attention_dropout", 0.0, &dropout, err, errlen) != 0)
        return -1;
    if (mlp_bias)
        return fail(err, errlen, "config.json: 'mlp_bias' true is not supported");
    if (dropout != 0.0f)
        return fail(err, errlen, "config.json: 'attention_dropout' must be 0");
    if (json_object_get(o, "quantization_config") != NULL)
        return fail(err, errlen,
                    "config.json: 'quantization_config': quantized checkpoints are not "
                    "supported");
    const json_t *layer_types = json_object_get(o, "layer_types");
    if (layer_types != NULL && !json_is_null(layer_types)) {
        size_t i;
        const json_t *x;
        json_array_foreach(layer_types, i, x) {
            if (!json_is_string(x) || strcmp(json_string_value(x), "full_attention") != 0)
                return fail(err, errlen,
                            "config.json: 'layer_types' entry %zu is not \"full_attention\" "
                            "(sliding-window layers are not supported)",
                            i);
        }
    }
    switch (c->model_type) {
        case LLAMA_MODEL_QWEN2: /* Qwen2Attention: q/k/v always biased, o_proj never */
            c->qkv_bias = true;
            break;
        case LLAMA_MODEL_QWEN3:
            c->qk_norm = true;
            c->qkv_bias = c->o_bias = attention_bias;
            break;
        default:
            c->qkv_bias = c->o_bias = attention_bias;
    }
    c->max_seq_len = max_context > 0 && max_context < c->max_position_embeddings
                         ? max_context
                         : c->max_position_embeddings;
    /* sliding-window attention (Mistral's sliding_window; Qwen's when
     * use_sliding_window) equals full attention only within the window */
    bool sliding = c->model_type == LLAMA_MODEL_MISTRAL;
    if (c->model_type == LLAMA_MODEL_QWEN2 || c->model_type == LLAMA_MODEL_QWEN3)
        if (get_bool(o, "use_sliding_window", false, &sliding, err, errlen) != 0)
            return -1;
    const json_t *sw = json_object_get(o, "sliding_window");
    if (sliding && sw != NULL && !json_is_null(sw)) {
        if (!json_is_integer(sw) || json_integer_value(sw) < 1)
            return fail(err, errlen, "config.json: 'sliding_window' must be a positive integer");
        if (json_integer_value(sw) < c->max_seq_len) {
            snprintf(err, errlen,
                     "config.json: 'sliding_window' %lld is shorter than the context used (%d); "
                     "sliding-window attention is not supported, so use a context of at most "
                     "%lld tokens",
                     (long long)json_integer_value(sw), c->max_seq_len,
                     (long long)json_integer_value(sw));
            return -1;
        }
    }
    c->bos_id = -1;
    const json_t *bos = json_object_get(o, "bos_token_id");
    if (json_is_integer(bos))
        c->bos_id = (int)json_integer_value(bos);
    if (parse_eos(c, json_object_get(o, "eos_token_id"), "config.json", err, errlen) != 0)
        return -1;
    if (gen != NULL) {
        const json_t *geos = json_object_get(gen, "eos_token_id");
        if (geos != NULL && !json_is_null(geos) &&
            parse_eos(c, geos, "generation_config.json", err, errlen) != 0)
            return -1;
    }
    return 0;
}

int llama_config_from_hf_json(llama_config *cfg, const char *config_json,
                              const char *generation_config_json, int max_context, char *err,
                              size_t errlen) {
    json_error_t jerr;
    json_t *o = json_loads(config_json, 0, &jerr);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "config.json is not a JSON object: %s", jerr.text);
        json_decref(o);
        return -1;
    }
    json_t *gen = NULL;
    if (generation_config_json != NULL) {
        gen = json_loads(generation_config_json, 0, &jerr);
        if (!json_is_object(gen)) {
            snprintf(err, errlen, "generation_config.json is not a JSON object: %s", jerr.text);
            json_decref(o);
            json_decref(gen);
            return -1;
        }
    }
    const int rc = parse_config(cfg, o, gen, max_context, err, errlen);
    json_decref(o);
    json_decref(gen);
    return rc;
}

static json_t *eos_json(const llama_config *c) {
    if (c->n_eos == 1)
        return json_integer(c->eos_ids[0]);
    json_t *a = json_array();
    for (int i = 0; i < c->n_eos; i++)
        json_array_append_new(a, json_integer(c->eos_ids[i]));
    return a;
}

char *llama_hf_config_json(const llama_config *c) {
    json_t *o = json_object();
    json_t *arch = json_array();
    json_array_append_new(arch, json_string(architecture_names[c->model_type]));
    json_object_set_new(o, "architectures", arch);
    json_object_set_new(o, "model_type", json_string(model_type_names[c->model_type]));
    json_object_set_new(o, "vocab_size", json_integer(c->vocab_size));
    json_object_set_new(o, "hidden_size", json_integer(c->hidden_size));
    json_object_set_new(o, "intermediate_size", json_integer(c->intermediate_size));
    json_object_set_new(o, "num_hidden_layers", json_integer(c->n_layer));
    json_object_set_new(o, "num_attention_heads", json_integer(c->n_head));
    json_object_set_new(o, "num_key_value_heads", json_integer(c->n_kv_head));
    json_object_set_new(o, "head_dim", json_integer(c->head_dim));
    json_object_set_new(o, "max_position_embeddings", json_integer(c->max_position_embeddings));
    json_object_set_new(o, "rms_norm_eps", json_real(c->rms_norm_eps));
    json_object_set_new(o, "rope_theta", json_real(c->rope_theta));
    if (c->rope_llama3)
        json_object_set_new(
            o, "rope_scaling",
            json_pack("{s:s, s:f, s:f, s:f, s:i}", "rope_type", "llama3", "factor",
                      (double)c->rope_factor, "low_freq_factor", (double)c->rope_low_freq_factor,
                      "high_freq_factor", (double)c->rope_high_freq_factor,
                      "original_max_position_embeddings", c->rope_original_max_position));
    else
        json_object_set_new(o, "rope_scaling", json_null());
    json_object_set_new(o, "hidden_act", json_string("silu"));
    if (c->model_type != LLAMA_MODEL_QWEN2)
        json_object_set_new(o, "attention_bias", json_boolean(c->qkv_bias));
    json_object_set_new(o, "attention_dropout", json_real(0.0));
    if (c->model_type == LLAMA_MODEL_LLAMA)
        json_object_set_new(o, "mlp_bias", json_false());
    if (c->model_type == LLAMA_MODEL_QWEN2 || c->model_type == LLAMA_MODEL_QWEN3)
        json_object_set_new(o, "use_sliding_window", json_false());
    if (c->model_type != LLAMA_MODEL_LLAMA)
        json_object_set_new(o, "sliding_window", json_null());
    json_object_set_new(o, "tie_word_embeddings", json_boolean(c->tie_embeddings));
    json_object_set_new(o, "bos_token_id", c->bos_id >= 0 ? json_integer(c->bos_id) : json_null());
    json_object_set_new(o, "eos_token_id", c->n_eos > 0 ? eos_json(c) : json_null());
    json_object_set_new(o, "torch_dtype", json_string("float32"));
    json_object_set_new(o, "use_cache", json_true());
    char *text = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(o);
    return text;
}

/* ==== the tensor table ========================================================= */

static void put(llama_hf_tensor *out, int *n, float *data, int64_t rows, int64_t cols,
                bool optional, const char *fmt, int layer, const char *part) {
    if (out != NULL) {
        llama_hf_tensor *t = out + *n;
        snprintf(t->name, sizeof t->name, fmt, layer, part);
        t->data = data;
        t->ndim = cols > 0 ? 2 : 1;
        t->shape[0] = rows;
        t->shape[1] = cols;
        t->optional = optional;
    }
    (*n)++;
}

int llama_hf_tensors(const llama_config *c, const llama_params *p, llama_hf_tensor *out) {
    const int64_t C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int64_t NH = c->n_head, NKV = c->n_kv_head, QKV = (NH + 2 * NKV) * hd, QD = NH * hd;
    int n = 0;
    put(out, &n, p->embed, c->vocab_size, C, false, "model.embed_tokens.weight%.0d%s", 0, "");
    const char *layer = "model.layers.%d.%s";
    for (int l = 0; l < c->n_layer; l++) {
        float *wqkv = p->wqkv + l * QKV * C;
        put(out, &n, wqkv, QD, C, false, layer, l, "self_attn.q_proj.weight");
        put(out, &n, wqkv + QD * C, NKV * hd, C, false, layer, l, "self_attn.k_proj.weight");
        put(out, &n, wqkv + (QD + NKV * hd) * C, NKV * hd, C, false, layer, l,
            "self_attn.v_proj.weight");
        if (c->qkv_bias) {
            float *b = p->bqkv + l * QKV;
            put(out, &n, b, QD, 0, false, layer, l, "self_attn.q_proj.bias");
            put(out, &n, b + QD, NKV * hd, 0, false, layer, l, "self_attn.k_proj.bias");
            put(out, &n, b + QD + NKV * hd, NKV * hd, 0, false, layer, l, "self_attn.v_proj.bias");
        }
        if (c->qk_norm) {
            put(out, &n, p->q_norm + l * hd, hd, 0, false, layer, l, "self_attn.q_norm.weight");
            put(out, &n, p->k_norm + l * hd, hd, 0, false, layer, l, "self_attn.k_norm.weight");
        }
        put(out, &n, p->wo + l * C * QD, C, QD, false, layer, l, "self_attn.o_proj.weight");
        if (c->o_bias)
            put(out, &n, p->bo + l * C, C, 0, false, layer, l, "self_attn.o_proj.bias");
        float *wgu = p->wgateup + l * 2 * F * C;
        put(out, &n, wgu, F, C, false, layer, l, "mlp.gate_proj.weight");
        put(out, &n, wgu + F * C, F, C, false, layer, l, "mlp.up_proj.weight");
        put(out, &n, p->wdown + l * C * F, C, F, false, layer, l, "mlp.down_proj.weight");
        put(out, &n, p->attn_norm + l * C, C, 0, false, layer, l, "input_layernorm.weight");
        put(out, &n, p->mlp_norm + l * C, C, 0, false, layer, l, "post_attention_layernorm.weight");
    }
    put(out, &n, p->final_norm, C, 0, false, "model.norm.weight%.0d%s", 0, "");
    if (!c->tie_embeddings)
        put(out, &n, p->lm_head, c->vocab_size, C, false, "lm_head.weight%.0d%s", 0, "");
    if (c->scalar_head) {
        put(out, &n, p->headw, 1, C, true, "score.weight%.0d%s", 0, "");
        put(out, &n, p->headb, 1, 0, true, "score.bias%.0d%s", 0, "");
    }
    return n;
}

/* ==== opening a directory ====================================================== */

typedef struct loader {
    llama_hf_tensor *table;
    uint8_t *loaded;
    int n;
    bool tied;
} loader;

static bool ignored_tensor(const loader *ld, const char *name) {
    const char *suffix = "rotary_emb.inv_freq";
    const size_t n = strlen(name), k = strlen(suffix);
    if (n >= k && strcmp(name + n - k, suffix) == 0)
        return true;
    return ld->tied && strcmp(name, "lm_head.weight") == 0; /* transformers re-ties it */
}

/* Loads every tensor of one file; names must be in the table (and, for a
 * shard, listed for this file in the index weight_map). */
static int load_file(loader *ld, const safetensors_file *f, const char *path,
                     const json_t *weight_map, const char *shard, char *err, size_t errlen) {
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_info *t = &f->tensors[i];
        if (weight_map != NULL) {
            const json_t *where = json_object_get(weight_map, t->name);
            if (!json_is_string(where) || strcmp(json_string_value(where), shard) != 0) {
                snprintf(err, errlen,
                         "%s: tensor '%s' is not listed for this shard in "
                         "model.safetensors.index.json",
                         path, t->name);
                return -1;
            }
        }
        if (ignored_tensor(ld, t->name))
            continue;
        int k = 0;
        while (k < ld->n && strcmp(ld->table[k].name, t->name) != 0)
            k++;
        if (k == ld->n) {
            snprintf(err, errlen, "%s: unexpected tensor '%s' (not part of this %s config)", path,
                     t->name, "Llama-family");
            return -1;
        }
        if (ld->loaded[k]) {
            snprintf(err, errlen, "%s: tensor '%s' is given twice", path, t->name);
            return -1;
        }
        const llama_hf_tensor *e = &ld->table[k];
        const int64_t n = e->ndim == 2 ? e->shape[0] * e->shape[1] : e->shape[0];
        char msg[400];
        if (safetensors_check_shape(t, e->ndim, e->shape, msg, sizeof msg) != 0 ||
            safetensors_load_f32(t, e->data, n, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "%s: %s", path, msg);
            return -1;
        }
        ld->loaded[k] = 1;
    }
    return 0;
}

static int load_one(loader *ld, const char *dir, const char *file, const json_t *weight_map,
                    char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, file);
    safetensors_file f;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    const int rc = load_file(ld, &f, path, weight_map, file, err, errlen);
    safetensors_free(&f);
    return rc;
}

/* Every shard named in the index, each read once (one at a time, so the
 * peak is the parameters plus the largest shard). */
static int load_sharded(loader *ld, const char *dir, const char *index_path, char *err,
                        size_t errlen) {
    json_error_t jerr;
    json_t *index = json_load_file(index_path, 0, &jerr);
    const json_t *wm = json_object_get(index, "weight_map");
    if (!json_is_object(wm)) {
        snprintf(err, errlen, "%s: no 'weight_map' object (%s)", index_path,
                 index ? "missing" : jerr.text);
        json_decref(index);
        return -1;
    }
    json_t *done = json_object();
    const char *name;
    const json_t *file;
    int rc = 0;
    json_object_foreach((json_t *)wm, name, file) {
        if (!json_is_string(file) || strchr(json_string_value(file), '/') != NULL) {
            snprintf(err, errlen, "%s: 'weight_map' entry '%s' is not a file name", index_path,
                     name);
            rc = -1;
            break;
        }
        const char *shard = json_string_value(file);
        if (json_object_get(done, shard) != NULL)
            continue;
        json_object_set_new(done, shard, json_true());
        if ((rc = load_one(ld, dir, shard, wm, err, errlen)) != 0)
            break;
    }
    /* a name listed for a shard that lacks it */
    if (rc == 0)
        json_object_foreach((json_t *)wm, name, file) {
            if (ignored_tensor(ld, name))
                continue;
            int k = 0;
            while (k < ld->n && strcmp(ld->table[k].name, name) != 0)
                k++;
            if (k == ld->n || !ld->loaded[k]) {
                snprintf(err, errlen, "%s lists tensor '%s' in %s, which does not hold it",
                         index_path, name, json_string_value(file));
                rc = -1;
                break;
            }
        }
    json_decref(done);
    json_decref(index);
    return rc;
}

static char *read_text(const char *path, bool *missing) {
    FILE *fp = fopen(path, "rb");
    *missing = fp == NULL;
    if (fp == NULL)
        return NULL;
    char *buf = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *grown = realloc(buf, cap);
            if (grown == NULL) {
                free(buf);
                fclose(fp);
                return NULL;
            }
            buf = grown;
        }
        const size_t got = fread(buf + n, 1, cap - n - 1, fp);
        n += got;
        if (got == 0)
            break;
    }
    const int bad = ferror(fp);
    fclose(fp);
    if (bad) {
        free(buf);
        return NULL;
    }
    buf[n] = '\0';
    return buf;
}

static bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int llama_read_hf_config(llama_config *cfg, const char *dir, int max_context, char *err,
                         size_t errlen) {
    char path[4096];
    bool missing;
    snprintf(path, sizeof path, "%s/config.json", dir);
    char *config = read_text(path, &missing);
    if (config == NULL) {
        snprintf(err, errlen, "%s: %s", path, missing ? "cannot open" : "cannot read");
        return -1;
    }
    snprintf(path, sizeof path, "%s/generation_config.json", dir);
    char *gen = read_text(path, &missing);
    if (gen == NULL && !missing) {
        snprintf(err, errlen, "%s: cannot read", path);
        free(config);
        return -1;
    }
    const int rc = llama_config_from_hf_json(cfg, config, gen, max_context, err, errlen);
    free(config);
    free(gen);
    return rc;
}

int llama_open_hf_dir(llama_model *m, const char *dir, const llama_open_options *opt, char *err,
                      size_t errlen) {
    memset(m, 0, sizeof *m);
    const llama_open_options none = {0, false};
    if (opt == NULL)
        opt = &none;
    char path[4096];
    llama_config cfg;
    int rc = llama_read_hf_config(&cfg, dir, opt->max_context, err, errlen);
    if (rc != 0)
        return -1;
    cfg.scalar_head = opt->scalar_head;
    if (llama_init(m, &cfg, err, errlen) != 0)
        return -1;
    loader ld = {NULL, NULL, llama_hf_tensors(&cfg, &m->params, NULL), cfg.tie_embeddings};
    ld.table = calloc((size_t)ld.n, sizeof *ld.table);
    ld.loaded = calloc((size_t)ld.n, 1);
    if (ld.table == NULL || ld.loaded == NULL) {
        snprintf(err, errlen, "out of memory for the tensor table of %s", dir);
        rc = -1;
        goto out;
    }
    llama_hf_tensors(&cfg, &m->params, ld.table);
    snprintf(path, sizeof path, "%s/model.safetensors.index.json", dir);
    if (file_exists(path)) {
        rc = load_sharded(&ld, dir, path, err, errlen);
    } else {
        snprintf(path, sizeof path, "%s/model.safetensors", dir);
        if (!file_exists(path)) {
            snprintf(err, errlen, "%s: neither model.safetensors nor model.safetensors.index.json",
                     dir);
            rc = -1;
            goto out;
        }
        rc = load_one(&ld, dir, "model.safetensors", NULL, err, errlen);
    }
    for (int k = 0; rc == 0 && k < ld.n; k++)
        if (!ld.loaded[k] && !ld.table[k].optional) {
            snprintf(err, errlen, "%s: missing tensor '%s'", dir, ld.table[k].name);
            rc = -1;
        }
out:
    free(ld.table);
    free(ld.loaded);
    if (rc != 0)
        llama_free(m);
    return rc;
}

/* ==== saving a directory ======================================================= */

static int write_file(const char *dir, const char *name, const void *data, size_t n, char *err,
                      size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    if (fp == NULL) {
        snprintf(err, errlen, "%s: cannot create", path);
        return -1;
    }
    const bool ok = fwrite(data, 1, n, fp) == n;
    if (fclose(fp) != 0 || !ok) {
        snprintf(err, errlen, "%s: write failed", path);
        return -1;
    }
    return 0;
}

int llama_save_hf_dir(const llama_model *m, const char *dir, safetensors_dtype dtype, char *err,
                      size_t errlen) {
    if (dtype != SAFETENSORS_F32 && dtype != SAFETENSORS_BF16) {
        snprintf(err, errlen, "model.safetensors can be written as F32 or BF16, not %s",
                 safetensors_dtype_name(dtype));
        return -1;
    }
    const llama_config *c = &m->cfg;
    const int n = llama_hf_tensors(c, &m->params, NULL);
    llama_hf_tensor *table = calloc((size_t)n, sizeof *table);
    safetensors_tensor *ts = calloc((size_t)n, sizeof *ts);
    char *config = llama_hf_config_json(c);
    int rc = -1;
    if (table == NULL || ts == NULL || config == NULL) {
        snprintf(err, errlen, "out of memory saving %s", dir);
        goto out;
    }
    llama_hf_tensors(c, &m->params, table);
    for (int i = 0; i < n; i++) {
        ts[i].name = table[i].name;
        ts[i].data = table[i].data;
        ts[i].ndim = table[i].ndim;
        ts[i].shape[0] = table[i].shape[0];
        ts[i].shape[1] = table[i].shape[1];
    }
    const char *const meta[1][2] = {{"format", "pt"}};
    size_t bytes;
    void *blob = safetensors_serialize_as(ts, n, meta, 1, dtype, &bytes);
    if (blob == NULL) {
        snprintf(err, errlen, "out of memory serializing %s/model.safetensors", dir);
        goto out;
    }
    rc = write_file(dir, "model.safetensors", blob, bytes, err, errlen);
    free(blob);
    if (rc == 0)
        rc = write_file(dir, "config.json", config, strlen(config), err, errlen);
    if (rc == 0 && c->n_eos > 0) {
        json_t *g = json_object();
        if (c->bos_id >= 0)
            json_object_set_new(g, "bos_token_id", json_integer(c->bos_id));
        json_object_set_new(g, "eos_token_id", eos_json(c));
        char *text = json_dumps(g, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        json_decref(g);
        rc = text ? write_file(dir, "generation_config.json", text, strlen(text), err, errlen) : -1;
        if (text == NULL)
            snprintf(err, errlen, "out of memory saving %s", dir);
        free(text);
    }
out:
    free(table);
    free(ts);
    free(config);
    return rc;
}
