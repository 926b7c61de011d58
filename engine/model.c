#include "model.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpt2_checkpoint.h"
#include "llama_checkpoint.h"
#include "llama_hf.h"
#include "llama_lora.h"
#include "lora.h"
#include "rng.h"

/* ==== sources ================================================================== */

/* A source's weights and config, ready to build a model from. */
typedef struct model_source {
    safetensors_file file;
    gpt2_config cfg;
} model_source;

static bool is_file(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static bool is_llama_type(const char *t);

/* The family a config names: model_type absent or "gpt2" is GPT-2. */
static int check_model_type(const char *model_type, const char *where, char *err, size_t errlen) {
    if (model_type == NULL || strcmp(model_type, "gpt2") == 0)
        return 0;
    if (is_llama_type(model_type))
        snprintf(err, errlen,
                 "%s: model_type '%.64s' is a Llama-family model, which this caller (GPT-2 only) "
                 "cannot use",
                 where, model_type);
    else
        snprintf(err, errlen,
                 "%s: model_type '%.64s' is not supported (gpt2, llama, qwen2, qwen3, mistral)",
                 where, model_type);
    return -1;
}

/* config.json at path: the family, then GPT2Config's shape. */
static int config_from_json_file(const char *path, gpt2_config *cfg, char *err, size_t errlen) {
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (root == NULL) {
        snprintf(err, errlen, "%s: %s", path, jerr.text);
        return -1;
    }
    int rc =
        check_model_type(json_string_value(json_object_get(root, "model_type")), path, err, errlen);
    char *text = rc == 0 ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    if (rc != 0)
        return -1;
    char inner[256];
    rc = text ? gpt2_config_from_hf_json(cfg, text, inner, sizeof inner) : -1;
    if (text == NULL)
        snprintf(inner, sizeof inner, "out of memory");
    free(text);
    if (rc != 0)
        snprintf(err, errlen, "%s: %s", path, inner);
    return rc;
}

/* The config of a parsed checkpoint: its metadata's, or (a file without our
 * metadata) the config.json at json_path when there is one. */
static int source_config(model_source *s, const char *json_path, char *err, size_t errlen) {
    const safetensors_file *f = &s->file;
    if (check_model_type(safetensors_metadata_get(f, "model_type"), "checkpoint metadata", err,
                         errlen) != 0)
        return -1;
    if (safetensors_metadata_get(f, "vocab_size") == NULL && json_path != NULL &&
        is_file(json_path)) {
        if (config_from_json_file(json_path, &s->cfg, err, errlen) != 0)
            return -1;
        s->cfg.scalar_head = safetensors_find(f, "score.weight") != NULL;
        return 0;
    }
    return gpt2_config_from_checkpoint(&s->cfg, f, err, errlen);
}

static int source_open(model_source *s, const char *path, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    struct stat st;
    char json_path[4200], weights[4200];
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        /* A Hugging Face directory: config.json says the shape. */
        snprintf(json_path, sizeof json_path, "%.4000s/config.json", path);
        snprintf(weights, sizeof weights, "%.4000s/model.safetensors", path);
        if (!is_file(json_path)) {
            snprintf(err, errlen, "%.2000s: a directory without config.json", path);
            return -1;
        }
        if (!is_file(weights)) {
            char index[4200];
            snprintf(index, sizeof index, "%.4000s/model.safetensors.index.json", path);
            snprintf(err, errlen, "%.2000s: %s", path,
                     is_file(index) ? "sharded weights (model.safetensors.index.json) are not "
                                      "supported"
                                    : "no model.safetensors");
            return -1;
        }
        if (config_from_json_file(json_path, &s->cfg, err, errlen) != 0 ||
            safetensors_read_file(&s->file, weights, err, errlen) != 0)
            return -1;
        s->cfg.scalar_head = safetensors_find(&s->file, "score.weight") != NULL;
        return 0;
    }
    if (safetensors_read_file(&s->file, path, err, errlen) != 0)
        return -1;
    /* config.json beside the file, for a bare model.safetensors */
    const char *slash = strrchr(path, '/');
    if (slash != NULL)
        snprintf(json_path, sizeof json_path, "%.*s/config.json",
                 (int)(slash - path < 4000 ? slash - path : 4000), path);
    else
        snprintf(json_path, sizeof json_path, "config.json");
    if (source_config(s, json_path, err, errlen) != 0) {
        safetensors_free(&s->file);
        return -1;
    }
    return 0;
}

int model_lora_attach(gpt2_model *m, const model_lora *lora, char *err, size_t errlen) {
    rng_state r;
    rng_seed(&r, lora->seed, lora->stream);
    return gpt2_lora_attach(m, lora->r, lora->alpha, lora->targets, &r, err, errlen);
}

/* ==== building the model ======================================================== */

static int build(const model_source *s, const model_open_options *opt, gpt2_model *m,
                 model_info *info, char *err, size_t errlen) {
    static const model_open_options none = {0};
    opt = opt ? opt : &none;
    gpt2_config gc = s->cfg;
    gc.scalar_head = opt->scalar_head;
    if (gpt2_init(m, &gc, err, errlen) != 0)
        return -1;
    if (opt->init_weights) {
        rng_state r;
        rng_seed(&r, opt->init_seed, opt->init_stream);
        gpt2_init_weights(m, &r);
    }
    int rc = opt->lora != NULL ? model_lora_attach(m, opt->lora, err, errlen) : 0;
    int head = 0;
    if (rc == 0)
        rc = gpt2_checkpoint_load(m, &s->file, &head, err, errlen);
    if (rc == 0 && opt->require_head && !head) {
        snprintf(err, errlen, "the checkpoint has no reward head (score.weight)");
        rc = -1;
    }
    if (rc != 0) {
        gpt2_free(m);
        return -1;
    }
    if (info != NULL) {
        const char *g = safetensors_metadata_get(&s->file, "reward_gain");
        const char *b = safetensors_metadata_get(&s->file, "reward_bias");
        *info = (model_info){.family = MODEL_FAMILY_GPT2,
                             .head_loaded = head != 0,
                             .reward_gain = g ? atof(g) : 1.0,
                             .reward_bias = b ? atof(b) : 0.0};
    }
    return 0;
}

int model_open(const char *path, const model_open_options *opt, gpt2_model *m, model_info *info,
               char *err, size_t errlen) {
    model_source s;
    if (source_open(&s, path, err, errlen) != 0)
        return -1;
    const int rc = build(&s, opt, m, info, err, errlen);
    safetensors_free(&s.file);
    return rc;
}

int model_open_bytes(const void *bytes, size_t n, const model_open_options *opt, gpt2_model *m,
                     model_info *info, char *err, size_t errlen) {
    model_source s;
    memset(&s, 0, sizeof s);
    if (safetensors_parse(&s.file, bytes, n, err, errlen) != 0)
        return -1;
    int rc = source_config(&s, NULL, err, errlen);
    if (rc == 0)
        rc = build(&s, opt, m, info, err, errlen);
    safetensors_free(&s.file);
    return rc;
}

int model_read_config(const char *path, gpt2_config *cfg, char *err, size_t errlen) {
    model_source s;
    if (source_open(&s, path, err, errlen) != 0)
        return -1;
    *cfg = s.cfg;
    safetensors_free(&s.file);
    return 0;
}

/* ==== the family-tagged model ===================================================== */

static bool is_llama_type(const char *t) {
    return t != NULL && (strcmp(t, "llama") == 0 || strcmp(t, "qwen2") == 0 ||
                         strcmp(t, "qwen3") == 0 || strcmp(t, "mistral") == 0);
}

/* The model_type of DIR/config.json (malloc'd), NULL when absent. */
static char *dir_model_type(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%.4000s/config.json", dir);
    json_t *root = json_load_file(path, 0, NULL);
    const char *t = json_string_value(json_object_get(root, "model_type"));
    char *copy = t ? strdup(t) : NULL;
    json_decref(root);
    return copy;
}

void model_init_shared(model *dst, const model *src) {
    memset(dst, 0, sizeof *dst);
    dst->family = src->family;
    if (src->family == MODEL_FAMILY_GPT2)
        gpt2_init_shared(&dst->gpt2, &src->gpt2);
    else
        llama_init_shared(&dst->llama, &src->llama);
}

void model_from_gpt2(model *m, gpt2_model *g) {
    memset(m, 0, sizeof *m);
    m->family = MODEL_FAMILY_GPT2;
    m->gpt2 = *g;
    memset(g, 0, sizeof *g);
}

void model_free(model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_free(&m->gpt2);
    else
        llama_free(&m->llama);
    memset(m, 0, sizeof *m);
}

/* The Llama family's scalar head init (as llama_init_weights draws it). */
static void llama_init_head(llama_model *lm, rng_state *r) {
    const int C = lm->cfg.hidden_size;
    const double std = 1.0 / sqrt((double)C + 1.0);
    for (int i = 0; i < C; i++)
        lm->params.headw[i] = (float)(std * rng_next_normal(r));
    lm->params.headb[0] = 0.0f;
}

/* After the weights: the options' head checks, head init and fresh adapters. */
static int llama_finish(llama_model *lm, const model_open_options *opt, int head, bool fresh_lora,
                        model_info *info, const safetensors_file *f, char *err, size_t errlen) {
    if (opt->require_head && !head) {
        snprintf(err, errlen, "the checkpoint has no reward head (score.weight)");
        return -1;
    }
    if (opt->scalar_head && !head && opt->init_weights) {
        rng_state r;
        rng_seed(&r, opt->init_seed, opt->init_stream);
        llama_init_head(lm, &r);
    }
    if (fresh_lora && opt->lora != NULL) {
        rng_state r;
        rng_seed(&r, opt->lora->seed, opt->lora->stream);
        if (llama_lora_attach(lm, opt->lora->r, opt->lora->alpha, false, opt->lora->targets, &r,
                              err, errlen) != 0)
            return -1;
    }
    if (info != NULL) {
        const char *g = f ? safetensors_metadata_get(f, "reward_gain") : NULL;
        const char *b = f ? safetensors_metadata_get(f, "reward_bias") : NULL;
        *info = (model_info){.family = MODEL_FAMILY_LLAMA,
                             .head_loaded = head != 0,
                             .reward_gain = g ? atof(g) : 1.0,
                             .reward_bias = b ? atof(b) : 0.0};
    }
    return 0;
}

/* A Llama-family checkpoint of this project, parsed. Adapters the options
 * ask for are attached before loading, so the file's own load into them. */
static int llama_from_file(llama_model *lm, const safetensors_file *f,
                           const model_open_options *opt, model_info *info, char *err,
                           size_t errlen) {
    llama_config cfg;
    if (llama_checkpoint_config(&cfg, f, opt->max_context, err, errlen) != 0)
        return -1;
    cfg.scalar_head = opt->scalar_head;
    if (llama_init(lm, &cfg, err, errlen) != 0)
        return -1;
    if (opt->init_weights) {
        rng_state r;
        rng_seed(&r, opt->init_seed, opt->init_stream);
        llama_init_weights(lm, &r);
    }
    int head = 0, rc = 0, r_file;
    float alpha;
    unsigned targets;
    bool rslora;
    const int has_lora =
        llama_checkpoint_lora_info(f, &r_file, &alpha, &targets, &rslora, err, errlen);
    if (has_lora < 0)
        rc = -1;
    if (rc == 0 && opt->lora != NULL && has_lora == 1) {
        rng_state r;
        rng_seed(&r, opt->lora->seed, opt->lora->stream);
        rc = llama_lora_attach(lm, r_file, alpha, rslora, targets, &r, err, errlen);
    }
    if (rc == 0)
        rc = llama_checkpoint_load(lm, f, &head, err, errlen);
    if (rc == 0)
        rc = llama_finish(lm, opt, head, has_lora != 1, info, f, err, errlen);
    if (rc != 0)
        llama_free(lm);
    return rc;
}

/* A parsed checkpoint (freed here): a Llama-family one loads into m
 * (*llama true); any other is the caller's to open as GPT-2. */
static int load_parsed(safetensors_file *f, const model_open_options *opt, model *m,
                       model_info *info, bool *llama, char *err, size_t errlen) {
    *llama = llama_checkpoint_is(f);
    int rc = 0;
    if (*llama) {
        m->family = MODEL_FAMILY_LLAMA;
        rc = llama_from_file(&m->llama, f, opt, info, err, errlen);
    }
    safetensors_free(f);
    return rc;
}

static bool any_nonzero(const float *x, int n) {
    for (int i = 0; i < n; i++)
        if (x[i] != 0.0f)
            return true;
    return false;
}

/* The fewer of max_context (0: none asked) and the positions a GPT-2 has. */
static int gpt2_positions_served(int n_positions, int max_context) {
    return max_context > 0 && max_context < n_positions ? max_context : n_positions;
}

static void gpt2_limit_context(model *m, int max_context) {
    const int n_positions = m->gpt2.cfg.max_seq_len;
    const int served = gpt2_positions_served(n_positions, max_context);
    m->gpt2_context = served < n_positions ? served : 0;
}

int model_load(const char *path, const model_open_options *opt, model *m, model_info *info,
               char *err, size_t errlen) {
    static const model_open_options none = {0};
    opt = opt ? opt : &none;
    memset(m, 0, sizeof *m);
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *type = dir_model_type(path);
        const bool llama = is_llama_type(type);
        free(type);
        if (llama) {
            m->family = MODEL_FAMILY_LLAMA;
            const llama_open_options lo = {opt->max_context, opt->scalar_head};
            if (llama_open_hf_dir(&m->llama, path, &lo, err, errlen) != 0)
                return -1;
            const int head =
                opt->scalar_head && (any_nonzero(m->llama.params.headw, m->llama.cfg.hidden_size) ||
                                     m->llama.params.headb[0] != 0.0f);
            if (llama_finish(&m->llama, opt, head, true, info, NULL, err, errlen) != 0) {
                llama_free(&m->llama);
                return -1;
            }
            return 0;
        }
    } else {
        safetensors_file f;
        bool llama = false;
        int rc = 0;
        if (is_file(path) && safetensors_read_file(&f, path, err, errlen) == 0)
            rc = load_parsed(&f, opt, m, info, &llama, err, errlen);
        if (llama)
            return rc;
    }
    m->family = MODEL_FAMILY_GPT2;
    if (model_open(path, opt, &m->gpt2, info, err, errlen) != 0)
        return -1;
    gpt2_limit_context(m, opt->max_context);
    return 0;
}

int model_source_family(const char *path, model_family *family, char *err, size_t errlen) {
    struct stat st;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        char *type = dir_model_type(path);
        *family = is_llama_type(type) ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2;
        free(type);
        return 0;
    }
    safetensors_file f;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    *family = llama_checkpoint_is(&f) ? MODEL_FAMILY_LLAMA : MODEL_FAMILY_GPT2;
    safetensors_free(&f);
    return 0;
}

int model_read_shape(const char *path, int max_context, model_shape *shape, char *err,
                     size_t errlen) {
    if (model_source_family(path, &shape->family, err, errlen) != 0)
        return -1;
    if (shape->family == MODEL_FAMILY_GPT2) {
        gpt2_config gc;
        if (model_read_config(path, &gc, err, errlen) != 0)
            return -1;
        *shape = (model_shape){MODEL_FAMILY_GPT2, gc.n_layer, gc.n_head, gc.d_model,
                               gpt2_positions_served(gc.max_seq_len, max_context)};
        return 0;
    }
    llama_config lc;
    struct stat st;
    int rc;
    if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
        rc = llama_read_hf_config(&lc, path, max_context, err, errlen);
    } else {
        safetensors_file f;
        rc = safetensors_read_file(&f, path, err, errlen);
        if (rc == 0) {
            rc = llama_checkpoint_config(&lc, &f, max_context, err, errlen);
            safetensors_free(&f);
        }
    }
    if (rc == 0)
        *shape = (model_shape){MODEL_FAMILY_LLAMA, lc.n_layer, lc.n_head, lc.hidden_size,
                               lc.max_seq_len};
    return rc;
}

int model_load_bytes(const void *bytes, size_t n, const model_open_options *opt, model *m,
                     model_info *info, char *err, size_t errlen) {
    static const model_open_options none = {0};
    opt = opt ? opt : &none;
    memset(m, 0, sizeof *m);
    safetensors_file f;
    if (safetensors_parse(&f, bytes, n, err, errlen) != 0)
        return -1;
    bool llama;
    const int rc = load_parsed(&f, opt, m, info, &llama, err, errlen);
    if (llama)
        return rc;
    m->family = MODEL_FAMILY_GPT2;
    if (model_open_bytes(bytes, n, opt, &m->gpt2, info, err, errlen) != 0)
        return -1;
    gpt2_limit_context(m, opt->max_context);
    return 0;
}

int model_alloc_grads(model *m, char *err, size_t errlen) {
    if (m->family == MODEL_FAMILY_GPT2 || m->llama.lora != NULL)
        return 0;
    return llama_alloc_grads(&m->llama, err, errlen);
}

int model_lora_targets(model_family family, const char *text, unsigned *targets, char *err,
                       size_t errlen) {
    /* the family-neutral sets: every projection, attention's, the MLP's */
    static const char *const neutral[] = {"all", "attn", "mlp"};
    static const char *const gpt2_sets[] = {"all", "attn.c_attn,attn.c_proj",
                                            "mlp.c_fc,mlp.c_proj"};
    static const char *const llama_sets[] = {"all", "q_proj,k_proj,v_proj,o_proj",
                                             "gate_proj,up_proj,down_proj"};
    for (int i = 0; i < 3; i++)
        if (strcmp(text, neutral[i]) == 0)
            text = family == MODEL_FAMILY_GPT2 ? gpt2_sets[i] : llama_sets[i];
    return family == MODEL_FAMILY_GPT2 ? lora_parse_targets(text, targets, err, errlen)
                                       : llama_lora_parse_targets(text, targets, err, errlen);
}

int model_attach_lora(model *m, const model_lora *lora, char *err, size_t errlen) {
    if (m->family == MODEL_FAMILY_GPT2)
        return model_lora_attach(&m->gpt2, lora, err, errlen);
    rng_state r;
    rng_seed(&r, lora->seed, lora->stream);
    return llama_lora_attach(&m->llama, lora->r, lora->alpha, false, lora->targets, &r, err,
                             errlen);
}

void model_set_lora_enabled(model *m, bool enabled) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_lora_set_enabled(&m->gpt2, enabled);
    else
        llama_lora_set_enabled(&m->llama, enabled);
}

bool model_has_lora(const model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.lora != NULL : m->llama.lora != NULL;
}

int model_vocab_size(const model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.cfg.vocab_size : m->llama.cfg.vocab_size;
}

int model_max_seq_len(const model *m) {
    if (m->family == MODEL_FAMILY_LLAMA)
        return m->llama.cfg.max_seq_len;
    return m->gpt2_context > 0 ? m->gpt2_context : m->gpt2.cfg.max_seq_len;
}

int model_width(const model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.cfg.d_model : m->llama.cfg.hidden_size;
}

bool model_has_scalar_head(const model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.cfg.scalar_head : m->llama.cfg.scalar_head;
}

int64_t model_trainable_count(const model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        return m->gpt2.lora ? m->gpt2.lora->num_params : m->gpt2.num_params;
    return m->llama.lora ? m->llama.lora->num_params : m->llama.num_params;
}

float *model_trainable_params(model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        return m->gpt2.lora ? m->gpt2.lora->params : m->gpt2.param_memory;
    return m->llama.lora ? m->llama.lora->params : m->llama.param_memory;
}

float *model_trainable_grads(model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        return m->gpt2.lora ? m->gpt2.lora->grads : m->gpt2.grad_memory;
    return m->llama.lora ? m->llama.lora->grads : m->llama.grad_memory;
}

void model_trainable_decay_mask(const model *m, uint8_t *mask) {
    const int64_t n = model_trainable_count(m);
    if (model_has_lora(m)) {
        const int64_t adapters = m->family == MODEL_FAMILY_GPT2 ? m->gpt2.lora->num_adapter_params
                                                                : m->llama.lora->num_adapter_params;
        for (int64_t i = 0; i < n; i++)
            mask[i] = i < adapters;
    } else if (m->family == MODEL_FAMILY_GPT2) {
        gpt2_decay_mask(&m->gpt2.cfg, mask);
    } else {
        llama_decay_mask(&m->llama.cfg, mask);
    }
}

int model_reserve(model *m, int B, int T, char *err, size_t errlen) {
    return m->family == MODEL_FAMILY_GPT2 ? gpt2_reserve(&m->gpt2, B, T, err, errlen)
                                          : llama_reserve(&m->llama, B, T, err, errlen);
}

void model_forward(model *m, const int32_t *tokens, const int32_t *positions,
                   const uint8_t *attn_mask, int B, int T, int t0, int t1) {
    if (m->family == MODEL_FAMILY_GPT2) {
        const gpt2_batch b = {tokens, positions, attn_mask, B, T};
        gpt2_forward_columns(&m->gpt2, &b, t0, t1);
    } else {
        const llama_batch b = {tokens, positions, attn_mask, B, T};
        llama_forward(&m->llama, &b, t0, t1);
    }
}

float model_lm_loss(model *m, const int32_t *targets, const uint8_t *loss_mask, float grad_scale) {
    return m->family == MODEL_FAMILY_GPT2
               ? gpt2_lm_loss(&m->gpt2, targets, loss_mask, grad_scale)
               : llama_lm_loss(&m->llama, targets, loss_mask, grad_scale);
}

void model_token_logprobs(model *m, const int32_t *targets, float *logp, float *entropy) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_token_logprobs(&m->gpt2, targets, logp, entropy);
    else
        llama_token_logprobs(&m->llama, targets, logp, entropy);
}

void model_logprobs_backward(model *m, const int32_t *targets, const float *dlogp,
                             const float *dentropy) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_logprobs_backward(&m->gpt2, targets, dlogp, dentropy);
    else
        llama_logprobs_backward(&m->llama, targets, dlogp, dentropy);
}

void model_backward(model *m, bool with_logits, bool with_values) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_backward(&m->gpt2, with_logits, with_values);
    else
        llama_backward(&m->llama, with_logits, with_values);
}

void model_zero_grad(model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        gpt2_zero_grad(&m->gpt2);
    else
        llama_zero_grad(&m->llama);
}

float *model_logits(model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.acts.logits : m->llama.acts.logits;
}

float *model_values(model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.acts.values : m->llama.acts.values;
}

float *model_dvalues(model *m) {
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.acts.dvalues : m->llama.acts.dvalues;
}

int model_generate(const model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B, int P,
                   float temperature, int top_k, float top_p, int max_new_tokens, int eos_id,
                   rng_state *rng, int32_t *out, int32_t *out_len, char *err, size_t errlen) {
    if (m->family == MODEL_FAMILY_GPT2) {
        const gpt2_sample_config sc = {temperature, top_k, top_p, max_new_tokens, eos_id};
        return gpt2_generate(&m->gpt2, prompts, prompt_mask, B, P, &sc, rng, out, out_len, err,
                             errlen);
    }
    const llama_sample_config sc = {temperature, top_k, top_p, max_new_tokens};
    return llama_generate(&m->llama, prompts, prompt_mask, B, P, &sc, rng, out, out_len, err,
                          errlen);
}

/* log-softmax of logits z (V) at id */
static float token_logprob(const float *z, int V, int32_t id) {
    float maxv = z[0];
    for (int j = 1; j < V; j++)
        maxv = z[j] > maxv ? z[j] : maxv;
    double sum = 0.0;
    for (int j = 0; j < V; j++)
        sum += exp((double)(z[j] - maxv));
    return (float)((double)(z[id] - maxv) - log(sum));
}

bool model_is_eos(const model *m, int eos_id, int32_t id) {
    if (id == eos_id)
        return true;
    if (m->family == MODEL_FAMILY_LLAMA)
        for (int i = 0; i < m->llama.cfg.n_eos; i++)
            if (m->llama.cfg.eos_ids[i] == id)
                return true;
    return false;
}

int model_generate_stream(const model *m, const int32_t *prompts, const uint8_t *prompt_mask, int B,
                          int P, float temperature, int top_k, float top_p, int max_new_tokens,
                          int eos_id, rng_state *rng, int32_t *out, int32_t *out_len,
                          float *logprobs, model_token_fn on_token, void *ctx, char *err,
                          size_t errlen) {
    const bool gpt2 = m->family == MODEL_FAMILY_GPT2;
    const int N = max_new_tokens, V = model_vocab_size(m), T = model_max_seq_len(m);
    if (P < 1 || N < 1 || P + N > T) {
        snprintf(err, errlen,
                 "prompt %d + max_new_tokens %d must be within the context of %d (and both at "
                 "least 1)",
                 P, N, T);
        return -1;
    }
    gpt2_kv_cache gc = {0};
    llama_kv_cache lc = {0};
    if (gpt2 ? gpt2_kv_cache_init(&gc, &m->gpt2.cfg, B, P + N, err, errlen)
             : llama_kv_cache_init(&lc, &m->llama.cfg, B, P + N, err, errlen))
        return -1;
    int32_t *next = malloc(sizeof(int32_t) * (size_t)B);
    uint8_t *real = malloc((size_t)B), *done = calloc((size_t)B, 1);
    float *raw = malloc(sizeof(float) * (size_t)B * (size_t)V);
    int rc = -1;
    if (next == NULL || real == NULL || done == NULL || raw == NULL) {
        snprintf(err, errlen, "out of memory generating %d rows", B);
        goto out;
    }
    if ((gpt2 ? gpt2_prefill(&m->gpt2, &gc, prompts, prompt_mask, P, err, errlen)
              : llama_prefill(&m->llama, &lc, prompts, prompt_mask, P, err, errlen)) != 0)
        goto out;
    const gpt2_sample_config choose = {temperature, top_k, top_p, N, -1};
    const int32_t filler =
        gpt2 ? (eos_id >= 0 ? eos_id : 0) : (m->llama.cfg.n_eos > 0 ? m->llama.cfg.eos_ids[0] : 0);
    memset(out_len, 0, sizeof(int32_t) * (size_t)B);
    for (int64_t i = 0; i < (int64_t)B * N; i++) {
        out[i] = filler;
        if (logprobs)
            logprobs[i] = 0.0f;
    }
    int remaining = B;
    for (int s = 0; s < N && remaining > 0; s++) {
        float *logits = gpt2 ? gc.logits : lc.logits;
        memcpy(raw, logits, sizeof(float) * (size_t)B * (size_t)V); /* sampling rescales them */
        gpt2_sample_tokens(next, logits, B, V, &choose, rng);
        for (int b = 0; b < B; b++) {
            if (done[b])
                continue;
            const float lp = token_logprob(raw + (int64_t)b * V, V, next[b]);
            out[(int64_t)b * N + s] = next[b];
            if (logprobs)
                logprobs[(int64_t)b * N + s] = lp;
            out_len[b]++;
            const bool keep = on_token == NULL || on_token(ctx, b, next[b], lp);
            if (!keep || model_is_eos(m, eos_id, next[b])) {
                done[b] = 1;
                remaining--;
            }
        }
        if (remaining == 0 || s == N - 1)
            break;
        for (int b = 0; b < B; b++)
            real[b] = !done[b];
        if (gpt2)
            gpt2_decode_step(&m->gpt2, &gc, next, real, P + s, true);
        else
            llama_decode_step(&m->llama, &lc, next, real, P + s, true);
    }
    rc = 0;
out:
    free(next), free(real), free(done), free(raw);
    if (gpt2)
        gpt2_kv_cache_free(&gc);
    else
        llama_kv_cache_free(&lc);
    return rc;
}

int model_export_llama_hf(const char *in_path, const char *out_dir, safetensors_dtype dtype,
                          char *err, size_t errlen) {
    model m;
    if (model_load(in_path, NULL, &m, NULL, err, errlen) != 0)
        return -1;
    if (m.family != MODEL_FAMILY_LLAMA) {
        model_free(&m);
        snprintf(err, errlen, "%.400s is not a Llama-family model", in_path);
        return -1;
    }
    int rc = llama_save_hf_dir(&m.llama, out_dir, dtype, err, errlen);
    model_free(&m);
    struct stat st;
    if (rc != 0 || stat(in_path, &st) != 0 || S_ISDIR(st.st_mode))
        return rc;
    safetensors_file f;
    if (safetensors_read_file(&f, in_path, err, errlen) != 0)
        return -1;
    const bool has = safetensors_metadata_get(&f, "lora_r") != NULL;
    safetensors_free(&f);
    if (!has)
        return 0;
    /* adapters attached before loading receive the file's own (its rank and targets) */
    const model_lora any = {.r = 1, .alpha = 1, .targets = 1};
    const model_open_options opt = {.lora = &any};
    if (model_load(in_path, &opt, &m, NULL, err, errlen) != 0)
        return -1;
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/adapter", out_dir);
    if (mkdir(dir, 0777) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %.480s: %s", dir, strerror(errno));
        rc = -1;
    } else {
        rc = llama_lora_save_dir(&m.llama, dir, err, errlen);
    }
    model_free(&m);
    return rc;
}

void *model_serialize(const model *m, const char *const (*extra_meta)[2], int n_extra,
                      const safetensors_tensor *extra_tensors, int n_extra_tensors,
                      size_t *n_bytes) {
    return m->family == MODEL_FAMILY_GPT2
               ? gpt2_checkpoint_serialize(&m->gpt2, extra_meta, n_extra, extra_tensors,
                                           n_extra_tensors, n_bytes)
               : llama_checkpoint_serialize(&m->llama, extra_meta, n_extra, extra_tensors,
                                            n_extra_tensors, n_bytes);
}

int model_write_checkpoint(const model *m, const char *const (*extra_meta)[2], int n_extra,
                           const safetensors_tensor *extra_tensors, int n_extra_tensors, FILE *out,
                           size_t *n_bytes) {
    if (m->family == MODEL_FAMILY_LLAMA)
        return llama_checkpoint_write(&m->llama, extra_meta, n_extra, extra_tensors,
                                      n_extra_tensors, out, n_bytes);
    /* GPT-2's file holds the weights transposed to HF's Conv1D layout: built
     * in memory (this family's models are small) */
    void *bytes = gpt2_checkpoint_serialize(&m->gpt2, extra_meta, n_extra, extra_tensors,
                                            n_extra_tensors, n_bytes);
    const int rc = bytes && fwrite(bytes, 1, *n_bytes, out) == *n_bytes ? 0 : -1;
    free(bytes);
    return rc;
}

/* What one checkpoint holds, for the sink's stream. */
typedef struct checkpoint_parts {
    const model *m;
    const char *const (*meta)[2];
    int n_meta;
    const safetensors_tensor *tensors;
    int n_tensors;
} checkpoint_parts;

static int write_parts(void *wctx, FILE *out, size_t *n_bytes) {
    const checkpoint_parts *p = wctx;
    return model_write_checkpoint(p->m, p->meta, p->n_meta, p->tensors, p->n_tensors, out, n_bytes);
}

int model_sink_checkpoint(const train_sink *sink, int64_t step, const model *m,
                          const char *const (*extra_meta)[2], int n_extra,
                          const safetensors_tensor *extra_tensors, int n_extra_tensors) {
    if (sink && sink->checkpoint_stream) {
        checkpoint_parts parts = {m, extra_meta, n_extra, extra_tensors, n_extra_tensors};
        return sink->checkpoint_stream(sink->ctx, step, write_parts, &parts);
    }
    size_t n = 0;
    void *bytes = model_serialize(m, extra_meta, n_extra, extra_tensors, n_extra_tensors, &n);
    const int rc = bytes ? sink_checkpoint(sink, step, bytes, n) : -1;
    free(bytes);
    return rc;
}

int64_t model_logits_count(const model *m) {
    if (m->family == MODEL_FAMILY_GPT2)
        return (int64_t)m->gpt2.B * m->gpt2.LT * m->gpt2.cfg.vocab_size;
    return (int64_t)m->llama.B * m->llama.LT * m->llama.cfg.vocab_size;
}

const float *model_base_params(const model *m, int64_t *n) {
    *n = m->family == MODEL_FAMILY_GPT2 ? m->gpt2.num_params : m->llama.num_params;
    return m->family == MODEL_FAMILY_GPT2 ? m->gpt2.param_memory : m->llama.param_memory;
}

void model_shape_text(const model *m, char *buf, size_t n) {
    if (m->family == MODEL_FAMILY_GPT2) {
        const gpt2_config *c = &m->gpt2.cfg;
        snprintf(buf, n, "gpt2 V=%d T=%d L=%d NH=%d C=%d", c->vocab_size, c->max_seq_len,
                 c->n_layer, c->n_head, c->d_model);
        return;
    }
    const llama_config *c = &m->llama.cfg;
    snprintf(buf, n, "llama type=%d V=%d T=%d L=%d NH=%d NKV=%d hd=%d C=%d F=%d tied=%d",
             (int)c->model_type, c->vocab_size, c->max_seq_len, c->n_layer, c->n_head, c->n_kv_head,
             c->head_dim, c->hidden_size, c->intermediate_size, (int)c->tie_embeddings);
}

int model_source_shape_text(const char *path, char *buf, size_t n, char *err, size_t errlen) {
    model m;
    if (model_load(path, NULL, &m, NULL, err, errlen) != 0)
        return -1;
    model_shape_text(&m, buf, n);
    model_free(&m);
    return 0;
}
