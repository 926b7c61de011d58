#include "llama_lora.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

static const char *const target_names[LLAMA_LORA_NUM_TARGETS] = {
    "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
static const char *const target_parents[LLAMA_LORA_NUM_TARGETS] = {
    "self_attn", "self_attn", "self_attn", "self_attn", "mlp", "mlp", "mlp"};

static int target_index(const char *p, size_t n) {
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++)
        if (strlen(target_names[t]) == n && strncmp(target_names[t], p, n) == 0)
            return t;
    return -1;
}

int llama_lora_parse_targets(const char *text, unsigned *targets, char *err, size_t errlen) {
    unsigned mask = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && p[0] == ' ')
            p++, n--;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        const int t = target_index(p, n);
        if ((n == 3 && strncmp(p, "all", 3) == 0) || (n == 10 && strncmp(p, "all-linear", 10) == 0))
            mask |= LLAMA_LORA_TARGETS_ALL;
        else if (t >= 0)
            mask |= 1u << t;
        else {
            snprintf(err, errlen,
                     "unknown LoRA target '%.*s' (use q_proj, k_proj, v_proj, o_proj, gate_proj, "
                     "up_proj, down_proj or all)",
                     (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        p = end ? end + 1 : p + strlen(p);
    }
    if (mask == 0) {
        snprintf(err, errlen, "no LoRA target given");
        return -1;
    }
    *targets = mask;
    return 0;
}

/* in/out dims and where each target's output lives in llama.c's fused rows */
static void target_layout(llama_lora *lo, const llama_config *c) {
    const int C = c->hidden_size, F = c->intermediate_size, hd = c->head_dim;
    const int QD = c->n_head * hd, KD = c->n_kv_head * hd, QKV = QD + 2 * KD;
    const int in[] = {C, C, C, QD, C, C, F}, out[] = {QD, KD, KD, C, F, F, C};
    const int off[] = {0, QD, QD + KD, 0, 0, F, 0}, stride[] = {QKV, QKV, QKV, C, 2 * F, 2 * F, C};
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
        lo->in[t] = in[t];
        lo->out[t] = out[t];
        lo->out_offset[t] = off[t];
        lo->out_stride[t] = stride[t];
    }
}

int llama_lora_attach(llama_model *m, int r, float alpha, bool rslora, unsigned targets,
                      rng_state *rng, char *err, size_t errlen) {
    if (m->lora != NULL) {
        snprintf(err, errlen, "the model already has LoRA adapters");
        return -1;
    }
    if (r < 1 || r > 4096 || !(alpha > 0.0f) || !isfinite(alpha) || targets == 0 ||
        (targets & ~LLAMA_LORA_TARGETS_ALL) != 0) {
        snprintf(err, errlen, "invalid LoRA: rank %d (1..4096), alpha %g (> 0), targets 0x%x", r,
                 (double)alpha, targets);
        return -1;
    }
    llama_lora *lo = calloc(1, sizeof *lo);
    if (lo == NULL) {
        snprintf(err, errlen, "out of memory for LoRA adapters");
        return -1;
    }
    const llama_config *c = &m->cfg;
    const int L = c->n_layer, C = c->hidden_size;
    lo->r = r, lo->alpha = alpha, lo->rslora = rslora, lo->targets = targets, lo->enabled = true;
    lo->scaling = rslora ? alpha / sqrtf((float)r) : alpha / (float)r;
    target_layout(lo, c);
    int64_t n = 0;
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++)
        if (targets >> t & 1u)
            n += (int64_t)L * r * (lo->in[t] + lo->out[t]);
    lo->num_adapter_params = n;
    lo->num_params = n + (c->scalar_head ? C + 1 : 0);
    lo->params = calloc((size_t)lo->num_params, sizeof(float));
    lo->grads = calloc((size_t)lo->num_params, sizeof(float));
    lo->scratch = malloc(sizeof(float) * (size_t)LLAMA_LORA_CHUNK_ROWS * (size_t)r);
    if (lo->params == NULL || lo->grads == NULL || lo->scratch == NULL) {
        free(lo->params), free(lo->grads), free(lo->scratch), free(lo);
        snprintf(err, errlen, "out of memory for LoRA adapters (%lld parameters)", (long long)n);
        return -1;
    }
    float *p = lo->params, *g = lo->grads;
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
        if (!(targets >> t & 1u))
            continue;
        const int64_t na = (int64_t)L * r * lo->in[t], nb = (int64_t)L * lo->out[t] * r;
        lo->A[t] = p, lo->dA[t] = g, p += na, g += na;
        lo->B[t] = p, lo->dB[t] = g, p += nb, g += nb;
        /* PEFT: kaiming_uniform_(A, a = sqrt(5)): bound = 1 / sqrt(fan_in) */
        const double bound = 1.0 / sqrt((double)lo->in[t]);
        for (int64_t i = 0; i < na; i++)
            lo->A[t][i] = (float)rng_next_uniform(rng, -bound, bound);
    }
    if (c->scalar_head) { /* the head joins the trainable buffer; the views follow it */
        memcpy(p, m->params.headw, sizeof(float) * (size_t)C);
        p[C] = m->params.headb[0];
        m->params.headw = p, m->params.headb = p + C;
        lo->dheadw = g, lo->dheadb = g + C;
    }
    free(m->grad_memory); /* the base is frozen */
    m->grad_memory = NULL;
    memset(&m->grads, 0, sizeof m->grads);
    m->lora = lo;
    if (m->acts.memory != NULL && llama_lora_reserve(m, (int64_t)m->acts.B * m->acts.T) != 0) {
        snprintf(err, errlen, "out of memory for LoRA activations");
        return -1; /* stays attached; llama_free releases it */
    }
    return 0;
}

void llama_lora_set_enabled(llama_model *m, bool enabled) {
    if (m->lora != NULL)
        m->lora->enabled = enabled;
}

int llama_lora_reserve(llama_model *m, int64_t rows) {
    llama_lora *lo = m->lora;
    if (lo == NULL || rows <= lo->cap_rows)
        return 0;
    int n_targets = 0;
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++)
        n_targets += (int)(lo->targets >> t & 1u);
    const size_t per = (size_t)rows * (size_t)lo->r, L = (size_t)m->cfg.n_layer;
    float *mem = malloc(sizeof(float) * per * ((size_t)n_targets * L + 1));
    if (mem == NULL)
        return -1;
    free(lo->act_memory);
    lo->act_memory = mem;
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
        lo->u[t] = NULL;
        if (lo->targets >> t & 1u)
            lo->u[t] = mem, mem += per * L;
    }
    lo->du = mem;
    lo->cap_rows = rows;
    return 0;
}

void llama_lora_free(llama_model *m) {
    llama_lora *lo = m->lora;
    if (lo == NULL)
        return;
    free(lo->params), free(lo->grads), free(lo->scratch), free(lo->act_memory);
    free(lo);
    m->lora = NULL;
}

/* ---- forward / backward ------------------------------------------------------ */

static bool active(const llama_model *m, int tgt) {
    return m->lora != NULL && m->lora->enabled && (m->lora->targets >> tgt & 1u);
}

void llama_lora_forward(const llama_model *m, int tgt, int l, float *out, const float *inp, int n,
                        bool save) {
    if (!active(m, tgt))
        return;
    llama_lora *lo = m->lora;
    const int r = lo->r, in = lo->in[tgt], o = lo->out[tgt], ldo = lo->out_stride[tgt];
    const float *A = lo->A[tgt] + (int64_t)l * r * in, *B = lo->B[tgt] + (int64_t)l * o * r;
    out += lo->out_offset[tgt];
    if (save) { /* u = inp Aᵀ kept for backward; out += s · u Bᵀ */
        float *u = lo->u[tgt] + (int64_t)l * lo->cap_rows * r;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, inp, in, A, in, 0.0f,
                    u, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, o, r, lo->scaling, u, r, B, r, 1.0f,
                    out, ldo);
        return;
    }
    for (int i0 = 0; i0 < n; i0 += LLAMA_LORA_CHUNK_ROWS) {
        const int k = n - i0 < LLAMA_LORA_CHUNK_ROWS ? n - i0 : LLAMA_LORA_CHUNK_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, r, in, 1.0f, inp + (int64_t)i0 * in,
                    in, A, in, 0.0f, lo->scratch, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, o, r, lo->scaling, lo->scratch, r,
                    B, r, 1.0f, out + (int64_t)i0 * ldo, ldo);
    }
}

void llama_lora_backward(llama_model *m, int tgt, int l, float *dinp, const float *dout,
                         const float *inp, int n) {
    if (!active(m, tgt))
        return;
    llama_lora *lo = m->lora;
    const int r = lo->r, in = lo->in[tgt], o = lo->out[tgt], ldo = lo->out_stride[tgt];
    const float *A = lo->A[tgt] + (int64_t)l * r * in, *B = lo->B[tgt] + (int64_t)l * o * r;
    float *dA = lo->dA[tgt] + (int64_t)l * r * in, *dB = lo->dB[tgt] + (int64_t)l * o * r;
    const float *u = lo->u[tgt] + (int64_t)l * lo->cap_rows * r;
    dout += lo->out_offset[tgt];
    /* y += s · u Bᵀ: dB += s · doutᵀ u ; du = s · dout B */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o, r, n, lo->scaling, dout, ldo, u, r,
                1.0f, dB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, o, lo->scaling, dout, ldo, B, r,
                0.0f, lo->du, r);
    /* u = inp Aᵀ: dA += duᵀ inp ; dinp += du A */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, 1.0f, lo->du, r, inp, in, 1.0f,
                dA, in);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, 1.0f, lo->du, r, A, in, 1.0f,
                dinp, in);
}

/* ---- PEFT directories -------------------------------------------------------------- */

void llama_lora_peft_name(char *buf, size_t n, int tgt, int layer, char which) {
    snprintf(buf, n, "base_model.model.model.layers.%d.%s.%s.lora_%c.weight", layer,
             target_parents[tgt], target_names[tgt], which);
}

/* adapter_config.json → r, alpha, rslora, targets; refuses what we lack. */
static int parse_adapter_config(const json_t *o, int *r, float *alpha, bool *rslora,
                                unsigned *targets, char *err, size_t errlen) {
    const json_t *jr = json_object_get(o, "r"), *ja = json_object_get(o, "lora_alpha");
    const json_t *pt = json_object_get(o, "peft_type");
    if (pt != NULL && !(json_is_string(pt) && strcmp(json_string_value(pt), "LORA") == 0)) {
        snprintf(err, errlen, "adapter_config.json: 'peft_type' must be \"LORA\"");
        return -1;
    }
    if (!json_is_integer(jr) || json_integer_value(jr) < 1) {
        snprintf(err, errlen, "adapter_config.json: 'r' must be a positive integer");
        return -1;
    }
    if (!json_is_number(ja) || !(json_number_value(ja) > 0.0)) {
        snprintf(err, errlen, "adapter_config.json: 'lora_alpha' must be a positive number");
        return -1;
    }
    *r = (int)json_integer_value(jr);
    *alpha = (float)json_number_value(ja);
    *rslora = json_is_true(json_object_get(o, "use_rslora"));
    if (json_is_true(json_object_get(o, "use_dora"))) {
        snprintf(err, errlen, "adapter_config.json: 'use_dora' (DoRA) is not supported");
        return -1;
    }
    const json_t *bias = json_object_get(o, "bias");
    if (bias != NULL && !(json_is_string(bias) && strcmp(json_string_value(bias), "none") == 0)) {
        snprintf(err, errlen, "adapter_config.json: 'bias' must be \"none\"");
        return -1;
    }
    const char *empty_ok[] = {"rank_pattern", "alpha_pattern", "layers_to_transform",
                              "modules_to_save"};
    for (size_t i = 0; i < sizeof empty_ok / sizeof empty_ok[0]; i++) {
        const json_t *v = json_object_get(o, empty_ok[i]);
        if (v != NULL && !json_is_null(v) && !(json_is_object(v) && json_object_size(v) == 0) &&
            !(json_is_array(v) && json_array_size(v) == 0)) {
            snprintf(err, errlen, "adapter_config.json: '%s' is not supported", empty_ok[i]);
            return -1;
        }
    }
    const json_t *tm = json_object_get(o, "target_modules");
    *targets = 0;
    if (json_is_string(tm))
        return llama_lora_parse_targets(json_string_value(tm), targets, err, errlen);
    size_t i;
    const json_t *x;
    if (!json_is_array(tm) || json_array_size(tm) == 0) {
        snprintf(err, errlen, "adapter_config.json: 'target_modules' must be a list of modules");
        return -1;
    }
    json_array_foreach(tm, i, x) {
        const char *s = json_is_string(x) ? json_string_value(x) : "";
        const int t = target_index(s, strlen(s));
        if (t < 0) {
            snprintf(err, errlen,
                     "adapter_config.json: 'target_modules' entry '%.64s' is not one of q_proj, "
                     "k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj",
                     s);
            return -1;
        }
        *targets |= 1u << t;
    }
    return 0;
}

int llama_lora_open_dir(llama_model *m, const char *dir, char *err, size_t errlen) {
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    json_error_t jerr;
    json_t *o = json_load_file(path, 0, &jerr);
    if (!json_is_object(o)) {
        snprintf(err, errlen, "%s: %s", path, o ? "not a JSON object" : jerr.text);
        json_decref(o);
        return -1;
    }
    int r;
    float alpha;
    bool rslora;
    unsigned targets;
    const int rc = parse_adapter_config(o, &r, &alpha, &rslora, &targets, err, errlen);
    json_decref(o);
    if (rc != 0)
        return -1;
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    safetensors_file f;
    if (safetensors_read_file(&f, path, err, errlen) != 0)
        return -1;
    rng_state rng;
    rng_seed(&rng, 0, 0); /* A is overwritten below */
    if (llama_lora_attach(m, r, alpha, rslora, targets, &rng, err, errlen) != 0) {
        safetensors_free(&f);
        return -1;
    }
    llama_lora *lo = m->lora;
    int want = 0;
    for (int l = 0; l < m->cfg.n_layer; l++)
        for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
            if (!(targets >> t & 1u))
                continue;
            for (int ab = 0; ab < 2; ab++) {
                char name[160], msg[400];
                llama_lora_peft_name(name, sizeof name, t, l, ab ? 'B' : 'A');
                want++;
                const safetensors_info *ti = safetensors_find(&f, name);
                if (ti == NULL) {
                    snprintf(err, errlen, "%s: missing tensor '%s'", path, name);
                    goto fail;
                }
                const int64_t shape[2] = {ab ? lo->out[t] : r, ab ? r : lo->in[t]};
                float *dst = ab ? lo->B[t] + (int64_t)l * lo->out[t] * r
                                : lo->A[t] + (int64_t)l * r * lo->in[t];
                if (safetensors_check_shape(ti, 2, shape, msg, sizeof msg) != 0 ||
                    safetensors_load_f32(ti, dst, shape[0] * shape[1], msg, sizeof msg) != 0) {
                    snprintf(err, errlen, "%s: %s", path, msg);
                    goto fail;
                }
            }
        }
    if (f.n_tensors != want) { /* every tensor we read is distinct: the rest are extra */
        for (int i = 0; i < f.n_tensors; i++) {
            bool known = false;
            for (int l = 0; l < m->cfg.n_layer && !known; l++)
                for (int t = 0; t < LLAMA_LORA_NUM_TARGETS && !known; t++)
                    for (int ab = 0; ab < 2 && !known; ab++) {
                        char name[160];
                        llama_lora_peft_name(name, sizeof name, t, l, ab ? 'B' : 'A');
                        known = (targets >> t & 1u) && strcmp(name, f.tensors[i].name) == 0;
                    }
            if (!known) {
                snprintf(err, errlen,
                         "%s: unexpected tensor '%s' (not an adapter of target_modules)", path,
                         f.tensors[i].name);
                goto fail;
            }
        }
    }
    safetensors_free(&f);
    return 0;
fail:
    safetensors_free(&f);
    llama_lora_free(m);
    return -1;
}

int llama_lora_save_dir(const llama_model *m, const char *dir, char *err, size_t errlen) {
    const llama_lora *lo = m->lora;
    if (lo == NULL) {
        snprintf(err, errlen, "the model has no LoRA adapters to save");
        return -1;
    }
    const int L = m->cfg.n_layer, max = 2 * LLAMA_LORA_NUM_TARGETS * L;
    safetensors_tensor *ts = calloc((size_t)max, sizeof *ts);
    char(*names)[160] = calloc((size_t)max, sizeof *names);
    json_t *cfg = json_object(), *tm = json_array();
    int n = 0, rc = -1;
    if (ts == NULL || names == NULL) {
        snprintf(err, errlen, "out of memory saving adapters to %s", dir);
        goto out;
    }
    for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++)
        if (lo->targets >> t & 1u)
            json_array_append_new(tm, json_string(target_names[t]));
    for (int l = 0; l < L; l++)
        for (int t = 0; t < LLAMA_LORA_NUM_TARGETS; t++) {
            if (!(lo->targets >> t & 1u))
                continue;
            const int r = lo->r, in = lo->in[t], o = lo->out[t];
            llama_lora_peft_name(names[n], 160, t, l, 'A');
            ts[n] = (safetensors_tensor){names[n], lo->A[t] + (int64_t)l * r * in, 2, {r, in}};
            n++;
            llama_lora_peft_name(names[n], 160, t, l, 'B');
            ts[n] = (safetensors_tensor){names[n], lo->B[t] + (int64_t)l * o * r, 2, {o, r}};
            n++;
        }
    const char *const meta[1][2] = {{"format", "pt"}};
    size_t bytes;
    void *blob = safetensors_serialize(ts, n, meta, 1, &bytes);
    char path[4096];
    snprintf(path, sizeof path, "%s/adapter_model.safetensors", dir);
    FILE *fp = blob ? fopen(path, "wb") : NULL;
    const bool ok = fp != NULL && fwrite(blob, 1, bytes, fp) == bytes;
    if (fp != NULL && fclose(fp) != 0)
        fp = NULL;
    free(blob);
    if (!ok || fp == NULL) {
        snprintf(err, errlen, "%s: write failed", path);
        goto out;
    }
    /* PEFT's LoraConfig keys as save_pretrained writes them */
    json_object_set_new(cfg, "peft_type", json_string("LORA"));
    json_object_set_new(cfg, "task_type", json_string("CAUSAL_LM"));
    json_object_set_new(cfg, "r", json_integer(lo->r));
    json_object_set_new(cfg, "lora_alpha", json_real(lo->alpha));
    json_object_set_new(cfg, "lora_dropout", json_real(0.0));
    json_object_set_new(cfg, "target_modules", tm);
    tm = NULL;
    json_object_set_new(cfg, "bias", json_string("none"));
    json_object_set_new(cfg, "fan_in_fan_out", json_false());
    json_object_set_new(cfg, "use_rslora", json_boolean(lo->rslora));
    json_object_set_new(cfg, "use_dora", json_false());
    json_object_set_new(cfg, "init_lora_weights", json_true());
    json_object_set_new(cfg, "inference_mode", json_true());
    snprintf(path, sizeof path, "%s/adapter_config.json", dir);
    if (json_dump_file(cfg, path, JSON_INDENT(2) | JSON_PRESERVE_ORDER) != 0) {
        snprintf(err, errlen, "%s: write failed", path);
        goto out;
    }
    rc = 0;
out:
    json_decref(tm);
    json_decref(cfg);
    free(ts);
    free(names);
    return rc;
}
