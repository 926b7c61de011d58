#include "llama_checkpoint.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "llama_hf.h"
#include "llama_lora.h"

/* ==== writing ================================================================== */

/* The checkpoint's tensors and metadata, to out when not NULL (returns
 * out, or NULL on failure), else into a malloc'd buffer (returned). */
static void *checkpoint_emit(const llama_model *m, const char *const (*extra_meta)[2], int n_extra,
                             const safetensors_tensor *extra_tensors, int n_extra_tensors,
                             FILE *out_file, size_t *n_bytes) {
    const llama_config *c = &m->cfg;
    const llama_lora *lo = m->lora;
    const int n_base = llama_hf_tensors(c, &m->params, NULL);
    const int n_lora = lo ? 2 * LLAMA_LORA_NUM_TARGETS * c->n_layer : 0;
    const int cap = n_base + n_lora + n_extra_tensors;
    llama_hf_tensor *table = calloc((size_t)n_base, sizeof *table);
    safetensors_tensor *ts = calloc((size_t)cap, sizeof *ts);
    char(*names)[160] = calloc((size_t)(n_lora > 0 ? n_lora : 1), sizeof *names);
    const char **meta = calloc((size_t)(n_extra + 8) * 2, sizeof *meta);
    char *config = llama_hf_config_json(c);
    void *blob = NULL;
    if (table == NULL || ts == NULL || names == NULL || meta == NULL || config == NULL)
        goto out;
    llama_hf_tensors(c, &m->params, table);
    int n = 0;
    for (int i = 0; i < n_base; i++)
        ts[n++] =
            (safetensors_tensor){table[i].name,
                                 table[i].data,
                                 table[i].ndim,
                                 {table[i].shape[0], table[i].ndim == 2 ? table[i].shape[1] : 0}};
    int k = 0;
    for (int l = 0; lo != NULL && l < c->n_layer; l++)
        for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
            if (!(lo->targets >> t & 1u))
                continue;
            const int r = lo->r, in = lo->in[t], o = lo->out[t];
            llama_lora_peft_name(names[k], 160, t, l, 'A');
            ts[n++] = (safetensors_tensor){names[k++], lo->A[t] + (int64_t)l * r * in, 2, {r, in}};
            llama_lora_peft_name(names[k], 160, t, l, 'B');
            ts[n++] = (safetensors_tensor){names[k++], lo->B[t] + (int64_t)l * o * r, 2, {o, r}};
        }
    for (int i = 0; i < n_extra_tensors; i++)
        ts[n++] = extra_tensors[i];
    static const char *const type_names[] = {"llama", "qwen2", "qwen3", "mistral"};
    char max_seq[24], r_buf[24], alpha_buf[32], targets_buf[24];
    snprintf(max_seq, sizeof max_seq, "%d", c->max_seq_len);
    int nm = 0;
#define META(k_, v_) (meta[2 * nm] = (k_), meta[2 * nm + 1] = (v_), nm++)
    META("format", "pt");
    META("model_type", type_names[c->model_type]);
    META("config_json", config);
    META("max_seq_len", max_seq);
    if (lo != NULL) {
        snprintf(r_buf, sizeof r_buf, "%d", lo->r);
        snprintf(alpha_buf, sizeof alpha_buf, "%.9g", (double)lo->alpha);
        snprintf(targets_buf, sizeof targets_buf, "%u", lo->targets);
        META("lora_r", r_buf);
        META("lora_alpha", alpha_buf);
        META("lora_targets", targets_buf);
        META("lora_rslora", lo->rslora ? "true" : "false");
    }
#undef META
    for (int i = 0; i < n_extra; i++)
        meta[2 * (nm + i)] = extra_meta[i][0], meta[2 * (nm + i) + 1] = extra_meta[i][1];
    const char *const(*all_meta)[2] = (const char *const(*)[2])meta;
    if (out_file == NULL)
        blob = safetensors_serialize(ts, n, all_meta, nm + n_extra, n_bytes);
    else if (safetensors_write_as(out_file, ts, n, all_meta, nm + n_extra, SAFETENSORS_F32,
                                  n_bytes) == 0)
        blob = out_file;
out:
    free(table);
    free(ts);
    free(names);
    free(meta);
    free(config);
    return blob;
}

void *llama_checkpoint_serialize(const llama_model *m, const char *const (*extra_meta)[2],
                                 int n_extra, const safetensors_tensor *extra_tensors,
                                 int n_extra_tensors, size_t *n_bytes) {
    return checkpoint_emit(m, extra_meta, n_extra, extra_tensors, n_extra_tensors, NULL, n_bytes);
}

int llama_checkpoint_write(const llama_model *m, const char *const (*extra_meta)[2], int n_extra,
                           const safetensors_tensor *extra_tensors, int n_extra_tensors, FILE *out,
                           size_t *n_bytes) {
    return checkpoint_emit(m, extra_meta, n_extra, extra_tensors, n_extra_tensors, out, n_bytes)
               ? 0
               : -1;
}

/* ==== reading ================================================================== */

bool llama_checkpoint_is(const safetensors_file *f) {
    return safetensors_metadata_get(f, "config_json") != NULL;
}

int llama_checkpoint_config(llama_config *cfg, const safetensors_file *f, int max_context,
                            char *err, size_t errlen) {
    const char *json = safetensors_metadata_get(f, "config_json");
    const char *ms = safetensors_metadata_get(f, "max_seq_len");
    if (json == NULL || ms == NULL) {
        snprintf(err, errlen, "checkpoint metadata: 'config_json' or 'max_seq_len' is missing");
        return -1;
    }
    char inner[400];
    if (llama_config_from_hf_json(cfg, json, NULL, max_context > 0 ? max_context : atoi(ms), inner,
                                  sizeof inner) != 0) {
        snprintf(err, errlen, "checkpoint metadata config_json: %s", inner);
        return -1;
    }
    cfg->scalar_head = safetensors_find(f, "score.weight") != NULL;
    return 0;
}

int llama_checkpoint_lora_info(const safetensors_file *f, int *r, float *alpha, unsigned *targets,
                               bool *rslora, char *err, size_t errlen) {
    const char *rs = safetensors_metadata_get(f, "lora_r");
    if (rs == NULL)
        return 0;
    const char *as = safetensors_metadata_get(f, "lora_alpha");
    const char *ts = safetensors_metadata_get(f, "lora_targets");
    const char *rl = safetensors_metadata_get(f, "lora_rslora");
    *r = atoi(rs);
    *alpha = as ? (float)atof(as) : 0.0f;
    *targets = ts ? (unsigned)strtoul(ts, NULL, 10) : 0;
    *rslora = rl != NULL && strcmp(rl, "true") == 0;
    if (*r < 1 || !(*alpha > 0.0f) || *targets == 0 || (*targets & ~LLAMA_LORA_TARGETS_ALL)) {
        snprintf(err, errlen,
                 "checkpoint metadata: malformed LoRA (lora_r, lora_alpha, "
                 "lora_targets)");
        return -1;
    }
    return 1;
}

/* The base weight (out, in) that adapter tgt of layer l adds to. */
static float *target_weight(llama_model *m, int tgt, int l) {
    const llama_config *c = &m->cfg;
    const int64_t C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int64_t QD = c->n_head * hd, KD = c->n_kv_head * hd, QKV = QD + 2 * KD;
    float *wqkv = m->params.wqkv + l * QKV * C, *wgu = m->params.wgateup + l * 2 * F * C;
    switch (tgt) {
        case LLAMA_LORA_Q:
            return wqkv;
        case LLAMA_LORA_K:
            return wqkv + QD * C;
        case LLAMA_LORA_V:
            return wqkv + (QD + KD) * C;
        case LLAMA_LORA_O:
            return m->params.wo + l * C * QD;
        case LLAMA_LORA_GATE:
            return wgu;
        case LLAMA_LORA_UP:
            return wgu + F * C;
        default:
            return m->params.wdown + l * C * F;
    }
}

/* The adapters of f into m's (attached with the same shape) or merged. */
static int load_adapters(llama_model *m, const safetensors_file *f, char *err, size_t errlen) {
    int r;
    float alpha;
    unsigned targets;
    bool rslora;
    const int has = llama_checkpoint_lora_info(f, &r, &alpha, &targets, &rslora, err, errlen);
    if (has <= 0)
        return has;
    llama_lora *lo = m->lora;
    if (lo != NULL && (lo->r != r || lo->targets != targets)) {
        snprintf(err, errlen,
                 "the checkpoint's LoRA (rank %d, targets 0x%x) differs from the "
                 "model's (rank %d, targets 0x%x)",
                 r, targets, lo->r, lo->targets);
        return -1;
    }
    const llama_config *c = &m->cfg;
    const int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int QD = c->n_head * hd, KD = c->n_kv_head * hd;
    const int in[] = {C, C, C, QD, C, C, F}, out[] = {QD, KD, KD, C, F, F, C};
    const float scaling = rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
    int64_t max_ab = 0;
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++)
        max_ab = (int64_t)r * (in[t] + out[t]) > max_ab ? (int64_t)r * (in[t] + out[t]) : max_ab;
    float *tmp = lo ? NULL : malloc(sizeof(float) * (size_t)max_ab);
    if (lo == NULL && tmp == NULL) {
        snprintf(err, errlen, "out of memory merging LoRA adapters");
        return -1;
    }
    int rc = 0;
    for (int l = 0; rc == 0 && l < c->n_layer; l++)
        for (int t = 0; rc == 0 && t < LLAMA_LORA_NUM_TARGETS; t++) {
            if (!(targets >> t & 1u))
                continue;
            float *A = lo ? lo->A[t] + (int64_t)l * r * in[t] : tmp;
            float *B = lo ? lo->B[t] + (int64_t)l * out[t] * r : tmp + (int64_t)r * in[t];
            for (int ab = 0; rc == 0 && ab < 2; ab++) {
                char name[160], msg[400];
                llama_lora_peft_name(name, sizeof name, t, l, ab ? 'B' : 'A');
                const safetensors_info *ti = safetensors_find(f, name);
                const int64_t shape[2] = {ab ? out[t] : r, ab ? r : in[t]};
                if (ti == NULL) {
                    snprintf(err, errlen, "checkpoint: missing tensor '%s'", name);
                    rc = -1;
                } else if (safetensors_check_shape(ti, 2, shape, msg, sizeof msg) != 0 ||
                           safetensors_load_f32(ti, ab ? B : A, shape[0] * shape[1], msg,
                                                sizeof msg) != 0) {
                    snprintf(err, errlen, "checkpoint: %s", msg);
                    rc = -1;
                }
            }
            if (rc == 0 && lo == NULL) /* W (out, in) += s · B (out, r) A (r, in) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out[t], in[t], r, scaling, B,
                            r, A, in[t], 1.0f, target_weight(m, t, l), in[t]);
        }
    free(tmp);
    return rc;
}

int llama_checkpoint_load(llama_model *m, const safetensors_file *f, int *head_loaded, char *err,
                          size_t errlen) {
    const llama_config *c = &m->cfg;
    const int n = llama_hf_tensors(c, &m->params, NULL);
    llama_hf_tensor *table = calloc((size_t)n, sizeof *table);
    uint8_t *loaded = calloc((size_t)n, 1);
    int rc = -1;
    if (table == NULL || loaded == NULL) {
        snprintf(err, errlen, "out of memory loading a checkpoint");
        goto out;
    }
    llama_hf_tensors(c, &m->params, table);
    for (int i = 0; i < f->n_tensors; i++) {
        const safetensors_info *t = &f->tensors[i];
        if (strncmp(t->name, "training_state.", 15) == 0 ||
            strncmp(t->name, "base_model.model.", 17) == 0 ||
            (c->tie_embeddings && strcmp(t->name, "lm_head.weight") == 0))
            continue;
        int k = 0;
        while (k < n && strcmp(table[k].name, t->name) != 0)
            k++;
        if (k == n) {
            if (strncmp(t->name, "score.", 6) == 0)
                continue; /* a head the model was not opened with */
            snprintf(err, errlen, "checkpoint: unexpected tensor '%s'", t->name);
            goto out;
        }
        const llama_hf_tensor *e = &table[k];
        const int64_t count = e->ndim == 2 ? e->shape[0] * e->shape[1] : e->shape[0];
        char msg[400];
        if (safetensors_check_shape(t, e->ndim, e->shape, msg, sizeof msg) != 0 ||
            safetensors_load_f32(t, e->data, count, msg, sizeof msg) != 0) {
            snprintf(err, errlen, "checkpoint: %s", msg);
            goto out;
        }
        loaded[k] = 1;
    }
    int head = 0;
    for (int k = 0; k < n; k++) {
        if (table[k].optional) {
            head |= loaded[k];
            continue;
        }
        if (!loaded[k]) {
            snprintf(err, errlen, "checkpoint: missing tensor '%s'", table[k].name);
            goto out;
        }
    }
    if (head_loaded != NULL)
        *head_loaded = head;
    rc = load_adapters(m, f, err, errlen);
out:
    free(table);
    free(loaded);
    return rc;
}
