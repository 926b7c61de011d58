#include "lora.h"

#include <cblas.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const target_names[LORA_NUM_TARGETS] = {"attn.c_attn", "attn.c_proj", "mlp.c_fc",
                                                           "mlp.c_proj"};

int lora_parse_targets(const char *text, unsigned *targets, char *err, size_t errlen) {
    unsigned mask = 0;
    const char *p = text;
    while (*p != '\0') {
        const char *end = strchr(p, ',');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        while (n > 0 && p[0] == ' ')
            p++, n--;
        while (n > 0 && p[n - 1] == ' ')
            n--;
        unsigned bits = 0;
        if (n == 3 && strncmp(p, "all", 3) == 0)
            bits = LORA_TARGETS_ALL;
        else if (n == 6 && strncmp(p, "c_proj", 6) == 0)
            bits = 1u << LORA_ATTN_C_PROJ | 1u << LORA_MLP_C_PROJ;
        for (int t = 0; t < LORA_NUM_TARGETS && bits == 0; t++) {
            const char *full = target_names[t], *dot = strchr(full, '.');
            if ((strlen(full) == n && strncmp(full, p, n) == 0) ||
                (t != LORA_ATTN_C_PROJ && t != LORA_MLP_C_PROJ && strlen(dot + 1) == n &&
                 strncmp(dot + 1, p, n) == 0))
                bits = 1u << t;
        }
        if (bits == 0) {
            snprintf(err, errlen,
                     "unknown LoRA target '%.*s' (use c_attn, attn.c_proj, mlp.c_fc, "
                     "mlp.c_proj, c_proj or all)",
                     (int)(n > 64 ? 64 : n), p);
            return -1;
        }
        mask |= bits;
        p = end ? end + 1 : p + strlen(p);
    }
    if (mask == 0) {
        snprintf(err, errlen, "no LoRA target given");
        return -1;
    }
    *targets = mask;
    return 0;
}

static void target_dims(const gpt2_config *c, int in[LORA_NUM_TARGETS], int out[LORA_NUM_TARGETS]) {
    const int C = c->d_model;
    in[LORA_C_ATTN] = C, out[LORA_C_ATTN] = 3 * C;
    in[LORA_ATTN_C_PROJ] = C, out[LORA_ATTN_C_PROJ] = C;
    in[LORA_MLP_C_FC] = C, out[LORA_MLP_C_FC] = 4 * C;
    in[LORA_MLP_C_PROJ] = 4 * C, out[LORA_MLP_C_PROJ] = C;
}

/* The base weight (out, in) of target tgt in layer l. */
static float *base_weight(gpt2_model *m, int tgt, int l) {
    const int64_t CC = (int64_t)m->cfg.d_model * m->cfg.d_model;
    switch (tgt) {
        case LORA_C_ATTN:
            return m->params.qkvw + l * 3 * CC;
        case LORA_ATTN_C_PROJ:
            return m->params.attprojw + l * CC;
        case LORA_MLP_C_FC:
            return m->params.fcw + l * 4 * CC;
        default:
            return m->params.fcprojw + l * 4 * CC;
    }
}

int gpt2_lora_attach(gpt2_model *m, int r, float alpha, unsigned targets, rng_state *rng, char *err,
                     size_t errlen) {
    if (m->lora != NULL) {
        snprintf(err, errlen, "the model already has LoRA adapters");
        return -1;
    }
    if (r < 1 || r > 4096 || !(alpha > 0.0f) || !isfinite(alpha) || targets == 0 ||
        (targets & ~LORA_TARGETS_ALL) != 0) {
        snprintf(err, errlen, "invalid LoRA: rank %d (1..4096), alpha %g (> 0), targets 0x%x", r,
                 (double)alpha, targets);
        return -1;
    }
    gpt2_lora *lo = calloc(1, sizeof *lo);
    if (lo == NULL) {
        snprintf(err, errlen, "out of memory for LoRA adapters");
        return -1;
    }
    const gpt2_config *c = &m->cfg;
    const int L = c->n_layer, C = c->d_model;
    lo->r = r, lo->alpha = alpha, lo->scaling = alpha / (float)r, lo->targets = targets;
    lo->enabled = true, lo->n_layer = L;
    target_dims(c, lo->in, lo->out);
    int64_t n = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (targets >> t & 1u)
            n += (int64_t)L * r * (lo->in[t] + lo->out[t]);
    lo->num_adapter_params = n;
    lo->num_params = n + (c->scalar_head ? C + 1 : 0);
    lo->params = calloc((size_t)lo->num_params, sizeof(float));
    lo->grads = calloc((size_t)lo->num_params, sizeof(float));
    lo->scratch = malloc(sizeof(float) * (size_t)LORA_CHUNK_ROWS * (size_t)r);
    if (lo->params == NULL || lo->grads == NULL || lo->scratch == NULL) {
        free(lo->params), free(lo->grads), free(lo->scratch), free(lo);
        snprintf(err, errlen, "out of memory for LoRA adapters (%lld parameters)", (long long)n);
        return -1;
    }
    float *p = lo->params, *g = lo->grads;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        if (!(targets >> t & 1u))
            continue;
        const int64_t na = (int64_t)L * r * lo->in[t], nb = (int64_t)L * lo->out[t] * r;
        lo->A[t] = p, lo->dA[t] = g, p += na, g += na;
        lo->B[t] = p, lo->dB[t] = g, p += nb, g += nb;
        /* PEFT: kaiming_uniform_(A, a = sqrt(5)): bound = sqrt(6 / ((1 + 5) fan_in)) */
        const double bound = 1.0 / sqrt((double)lo->in[t]);
        for (int64_t i = 0; i < na; i++)
            lo->A[t][i] = (float)rng_next_uniform(rng, -bound, bound);
    }
    if (c->scalar_head) { /* the head joins the trainable buffer; views follow it */
        memcpy(p, m->params.headw, sizeof(float) * (size_t)C);
        p[C] = m->params.headb[0];
        m->params.headw = p, m->params.headb = p + C;
        m->grads.headw = g, m->grads.headb = g + C;
    }
    /* the base is frozen: no gradient buffer */
    free(m->grad_memory);
    m->grad_memory = NULL;
    float *head_w = m->grads.headw, *head_b = m->grads.headb;
    memset(&m->grads, 0, sizeof m->grads);
    m->grads.headw = c->scalar_head ? head_w : NULL;
    m->grads.headb = c->scalar_head ? head_b : NULL;
    m->lora = lo;
    if (m->acts.memory != NULL && gpt2_lora_reserve(m, (int64_t)m->acts.B * m->acts.T) != 0) {
        snprintf(err, errlen, "out of memory for LoRA activations");
        return -1; /* m->lora stays attached; gpt2_free releases it */
    }
    return 0;
}

void gpt2_lora_set_enabled(gpt2_model *m, bool enabled) {
    if (m->lora != NULL)
        m->lora->enabled = enabled;
}

int gpt2_lora_reserve(gpt2_model *m, int64_t rows) {
    gpt2_lora *lo = m->lora;
    if (lo == NULL || rows <= lo->cap_rows)
        return 0;
    int n_targets = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        n_targets += (int)(lo->targets >> t & 1u);
    const size_t per = (size_t)rows * (size_t)lo->r;
    float *mem = malloc(sizeof(float) * per * ((size_t)n_targets * (size_t)lo->n_layer + 1));
    if (mem == NULL)
        return -1;
    free(lo->act_memory);
    lo->act_memory = mem;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        lo->u[t] = NULL;
        if (lo->targets >> t & 1u)
            lo->u[t] = mem, mem += per * (size_t)lo->n_layer;
    }
    lo->du = mem;
    lo->cap_rows = rows;
    return 0;
}

void gpt2_lora_free(gpt2_model *m) {
    gpt2_lora *lo = m->lora;
    if (lo == NULL)
        return;
    free(lo->params), free(lo->grads), free(lo->scratch), free(lo->act_memory);
    free(lo);
    m->lora = NULL;
}

/* ---- forward / backward ------------------------------------------------------ */

void gpt2_lora_forward(const gpt2_model *m, int tgt, int l, float *out, const float *inp, int n,
                       bool save) {
    gpt2_lora *lo = m->lora;
    const int r = lo->r, in = lo->in[tgt], o = lo->out[tgt];
    const float *A = lo->A[tgt] + (int64_t)l * r * in, *B = lo->B[tgt] + (int64_t)l * o * r;
    if (save) { /* u = inp Aᵀ kept for backward; out += s · u Bᵀ */
        float *u = lo->u[tgt] + (int64_t)l * lo->cap_rows * r;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, r, in, 1.0f, inp, in, A, in, 0.0f,
                    u, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, o, r, lo->scaling, u, r, B, r, 1.0f,
                    out, o);
        return;
    }
    for (int i0 = 0; i0 < n; i0 += LORA_CHUNK_ROWS) {
        const int k = n - i0 < LORA_CHUNK_ROWS ? n - i0 : LORA_CHUNK_ROWS;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, r, in, 1.0f, inp + (int64_t)i0 * in,
                    in, A, in, 0.0f, lo->scratch, r);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, k, o, r, lo->scaling, lo->scratch, r,
                    B, r, 1.0f, out + (int64_t)i0 * o, o);
    }
}

void gpt2_lora_backward(gpt2_model *m, int tgt, int l, float *dinp, const float *dout,
                        const float *inp, int n) {
    gpt2_lora *lo = m->lora;
    const int r = lo->r, in = lo->in[tgt], o = lo->out[tgt];
    const float *A = lo->A[tgt] + (int64_t)l * r * in, *B = lo->B[tgt] + (int64_t)l * o * r;
    float *dA = lo->dA[tgt] + (int64_t)l * r * in, *dB = lo->dB[tgt] + (int64_t)l * o * r;
    const float *u = lo->u[tgt] + (int64_t)l * lo->cap_rows * r;
    /* y += s · u Bᵀ: dB += s · doutᵀ u ; du = s · dout B */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, o, r, n, lo->scaling, dout, o, u, r, 1.0f,
                dB, r);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, r, o, lo->scaling, dout, o, B, r,
                0.0f, lo->du, r);
    /* u = inp Aᵀ: dA += duᵀ inp ; dinp += du A */
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, n, 1.0f, lo->du, r, inp, in, 1.0f,
                dA, in);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, in, r, 1.0f, lo->du, r, A, in, 1.0f,
                dinp, in);
}

/* ---- files ------------------------------------------------------------------------ */

void lora_peft_name(char *buf, size_t n, int tgt, int layer, char which) {
    snprintf(buf, n, "base_model.model.transformer.h.%d.%s.lora_%c.weight", layer,
             target_names[tgt], which);
}

int gpt2_lora_tensors(const gpt2_model *m, safetensors_tensor *tensors, char (*names)[128]) {
    const gpt2_lora *lo = m->lora;
    int k = 0;
    if (lo == NULL)
        return 0;
    for (int l = 0; l < lo->n_layer; l++)
        for (int t = 0; t < LORA_NUM_TARGETS; t++) {
            if (!(lo->targets >> t & 1u))
                continue;
            const int r = lo->r, in = lo->in[t], o = lo->out[t];
            lora_peft_name(names[k], 128, t, l, 'A');
            tensors[k] = (safetensors_tensor){.name = names[k],
                                              .data = lo->A[t] + (int64_t)l * r * in,
                                              .ndim = 2,
                                              .shape = {r, in}};
            k++;
            lora_peft_name(names[k], 128, t, l, 'B');
            tensors[k] = (safetensors_tensor){.name = names[k],
                                              .data = lo->B[t] + (int64_t)l * o * r,
                                              .ndim = 2,
                                              .shape = {o, r}};
            k++;
        }
    return k;
}

void gpt2_lora_metadata(const gpt2_model *m, char r_buf[24], char alpha_buf[32]) {
    snprintf(r_buf, 24, "%d", m->lora ? m->lora->r : 0);
    snprintf(alpha_buf, 32, "%.9g", m->lora ? (double)m->lora->alpha : 0.0);
}

void *gpt2_lora_serialize(const gpt2_model *m, size_t *n_bytes) {
    if (m->lora == NULL)
        return NULL;
    const int cap = 2 * LORA_NUM_TARGETS * m->lora->n_layer;
    safetensors_tensor *tensors = calloc((size_t)cap, sizeof *tensors);
    char(*names)[128] = calloc((size_t)cap, sizeof *names);
    void *out = NULL;
    if (tensors != NULL && names != NULL) {
        const int n = gpt2_lora_tensors(m, tensors, names);
        char r[24], alpha[32];
        gpt2_lora_metadata(m, r, alpha);
        const char *meta[][2] = {{"format", "pt"}, {"lora_r", r}, {"lora_alpha", alpha}};
        out = safetensors_serialize(tensors, n, meta, 3, n_bytes);
    }
    free(tensors);
    free(names);
    return out;
}

char *gpt2_lora_config_json(const gpt2_model *m) {
    const gpt2_lora *lo = m->lora;
    if (lo == NULL)
        return NULL;
    json_t *targets = json_array();
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        if (lo->targets >> t & 1u)
            json_array_append_new(targets, json_string(target_names[t]));
    /* alpha is a float in PEFT's dataclass but written as an int when whole */
    json_t *alpha = floorf(lo->alpha) == lo->alpha && lo->alpha < 1e9f
                        ? json_integer((json_int_t)lo->alpha)
                        : json_real((double)lo->alpha);
    /* init_lora_weights true is PEFT's default, the A init used here */
    json_t *c = json_pack("{s:s, s:n, s:s, s:b, s:i, s:o, s:o, s:f, s:b, s:s, s:n, s:b, s:b}",
                          "peft_type", "LORA", "base_model_name_or_path", "task_type", "CAUSAL_LM",
                          "inference_mode", 1, "r", lo->r, "lora_alpha", alpha, "target_modules",
                          targets, "lora_dropout", 0.0, "fan_in_fan_out", 1, "bias", "none",
                          "modules_to_save", "init_lora_weights", 1, "use_rslora", 0);
    if (c == NULL)
        return NULL;
    char *text = json_dumps(c, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(c);
    return text;
}

/* Finds the adapter tensor (t, l, which) in f: PEFT's full name, or without
 * "base_model.model." (an adapter saved from a bare model). */
static const safetensors_info *find_adapter(const safetensors_file *f, int t, int l, char which) {
    char name[128];
    lora_peft_name(name, sizeof name, t, l, which);
    const safetensors_info *x = safetensors_find(f, name);
    return x ? x : safetensors_find(f, name + strlen("base_model.model."));
}

int lora_file_info(const safetensors_file *f, int n_layer, int *r, float *alpha, unsigned *targets,
                   char *err, size_t errlen) {
    unsigned mask = 0;
    int rank = 0;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        int present = 0;
        for (int l = 0; l < n_layer; l++) {
            const safetensors_info *a = find_adapter(f, t, l, 'A'), *b = find_adapter(f, t, l, 'B');
            if (a == NULL && b == NULL)
                continue;
            present++;
            if (a == NULL || b == NULL || a->ndim != 2 || b->ndim != 2 ||
                a->shape[0] != b->shape[1] || a->shape[0] < 1 || (rank && a->shape[0] != rank)) {
                snprintf(err, errlen,
                         "LoRA adapter for layer %d %s: lora_A and lora_B missing or of "
                         "mismatched rank",
                         l, target_names[t]);
                return -1;
            }
            rank = (int)a->shape[0];
        }
        if (present != 0 && present != n_layer) {
            snprintf(err, errlen, "LoRA adapters for %s cover %d of %d layers", target_names[t],
                     present, n_layer);
            return -1;
        }
        if (present)
            mask |= 1u << t;
    }
    if (mask == 0)
        return 0;
    const char *a = safetensors_metadata_get(f, "lora_alpha");
    char *end = NULL;
    const double av = a ? strtod(a, &end) : (double)rank;
    if (a != NULL && (*end != '\0' || !(av > 0.0) || !isfinite(av))) {
        snprintf(err, errlen, "checkpoint metadata: 'lora_alpha' is not a positive number");
        return -1;
    }
    *r = rank, *alpha = (float)av, *targets = mask;
    return 1;
}

/* Loads adapter (t, l) of f into A (r, in) and B (out, r), checking shapes. */
static int load_pair(const safetensors_file *f, int t, int l, int r, int in, int out, float *A,
                     float *B, char *err, size_t errlen) {
    const safetensors_info *a = find_adapter(f, t, l, 'A'), *b = find_adapter(f, t, l, 'B');
    const int64_t sa[2] = {r, in}, sb[2] = {out, r};
    if (a == NULL || b == NULL) {
        char name[128];
        lora_peft_name(name, sizeof name, t, l, a == NULL ? 'A' : 'B');
        snprintf(err, errlen, "checkpoint has no tensor '%s'", name);
        return -1;
    }
    if (safetensors_check_shape(a, 2, sa, err, errlen) != 0 ||
        safetensors_check_shape(b, 2, sb, err, errlen) != 0 ||
        safetensors_load_f32(a, A, (int64_t)r * in, err, errlen) != 0 ||
        safetensors_load_f32(b, B, (int64_t)out * r, err, errlen) != 0)
        return -1;
    return 0;
}

int gpt2_lora_load(gpt2_model *m, const safetensors_file *f, char *err, size_t errlen) {
    gpt2_lora *lo = m->lora;
    if (lo == NULL) {
        snprintf(err, errlen, "the model has no LoRA adapters to load into");
        return -1;
    }
    int r = 0;
    float alpha = 0.0f;
    unsigned targets = 0;
    const int has = lora_file_info(f, lo->n_layer, &r, &alpha, &targets, err, errlen);
    if (has < 0)
        return -1;
    if (has == 0 || r != lo->r || targets != lo->targets) {
        snprintf(err, errlen,
                 "the file's LoRA adapters (rank %d, targets 0x%x) do not match the model's "
                 "(rank %d, targets 0x%x)",
                 r, targets, lo->r, lo->targets);
        return -1;
    }
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        for (int l = 0; l < lo->n_layer && (lo->targets >> t & 1u); l++) {
            const int in = lo->in[t], o = lo->out[t];
            if (load_pair(f, t, l, r, in, o, lo->A[t] + (int64_t)l * r * in,
                          lo->B[t] + (int64_t)l * o * r, err, errlen) != 0)
                return -1;
        }
    lo->alpha = alpha;
    lo->scaling = alpha / (float)r;
    return 0;
}

int gpt2_lora_merge_file(gpt2_model *m, const safetensors_file *f, char *err, size_t errlen) {
    if (m->lora != NULL) {
        snprintf(err, errlen, "cannot merge adapters into a model that has adapters attached");
        return -1;
    }
    int r = 0, in[LORA_NUM_TARGETS], out[LORA_NUM_TARGETS];
    float alpha = 0.0f;
    unsigned targets = 0;
    const int has = lora_file_info(f, m->cfg.n_layer, &r, &alpha, &targets, err, errlen);
    if (has <= 0)
        return has;
    target_dims(&m->cfg, in, out);
    const int big = 4 * m->cfg.d_model;
    float *A = malloc(sizeof(float) * (size_t)r * (size_t)big);
    float *B = malloc(sizeof(float) * (size_t)r * (size_t)big);
    int rc = A && B ? 0 : -1;
    if (rc != 0)
        snprintf(err, errlen, "out of memory merging LoRA adapters");
    for (int t = 0; t < LORA_NUM_TARGETS && rc == 0; t++)
        for (int l = 0; l < m->cfg.n_layer && rc == 0 && (targets >> t & 1u); l++) {
            rc = load_pair(f, t, l, r, in[t], out[t], A, B, err, errlen);
            if (rc == 0) /* W (out, in) += s · B (out, r) A (r, in) */
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, out[t], in[t], r,
                            alpha / (float)r, B, r, A, in[t], 1.0f, base_weight(m, t, l), in[t]);
        }
    free(A);
    free(B);
    return rc;
}
