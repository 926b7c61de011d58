#include "model.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "gpt2_checkpoint.h"
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

/* The family a config names: model_type absent or "gpt2" is GPT-2. */
static int check_model_type(const char *model_type, const char *where, char *err, size_t errlen) {
    if (model_type == NULL || strcmp(model_type, "gpt2") == 0)
        return 0;
    snprintf(err, errlen, "%s: model_type '%.64s' is not supported (this build opens gpt2)", where,
             model_type);
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
