/* LoRA on the GPT-2 engine (engine/lora.h): forward, backward and AdamW
 * against the PyTorch fixture written by tests/reference/gpt2_lora_reference.py,
 * KV-cache decoding with adapters on and off, PEFT-named files in and out,
 * merging into the base, and the PPO job with lora_r > 0. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "gpt2.h"
#include "gpt2_checkpoint.h"
#include "lm_policy.h"
#include "lora.h"
#include "optim.h"
#include "ppo_lm.h"
#include "safetensors.h"
#include "suites.h"
#include "test_util.h"

/* As test_gpt2.c: float32 on both sides, different summation orders. */
#define REL_TOL 1e-4

static const char *const param_names[GPT2_NUM_PARAM_TENSORS] = {
    "wte",  "wpe", "ln1w", "ln1b",    "qkvw",    "qkvb", "attprojw", "attprojb", "ln2w",
    "ln2b", "fcw", "fcb",  "fcprojw", "fcprojb", "lnfw", "lnfb",     "headw",    "headb"};
static const char *const target_names[LORA_NUM_TARGETS] = {"c_attn", "attn_c_proj", "mlp_c_fc",
                                                           "mlp_c_proj"};

typedef struct lora_fixture {
    safetensors_file file;
    char err[512];
    gpt2_config cfg;
    int B, T, r;
    float alpha;
    int32_t *tokens, *targets, *positions;
    uint8_t *attn, *loss_mask;
    float *probe;
} lora_fixture;

static void fx_open(lora_fixture *fx) {
    char path[4200];
    memset(fx, 0, sizeof *fx);
    snprintf(path, sizeof path, "%s/tests/fixtures/gpt2_tiny_lora.safetensors", test_repo_dir());
    ck_assert_msg(safetensors_read_file(&fx->file, path, fx->err, sizeof fx->err) == 0, "%s",
                  fx->err);
    fx->cfg = (gpt2_config){test_fixture_meta_int(&fx->file, "vocab_size"),
                            test_fixture_meta_int(&fx->file, "max_seq_len"),
                            test_fixture_meta_int(&fx->file, "n_layer"),
                            test_fixture_meta_int(&fx->file, "n_head"),
                            test_fixture_meta_int(&fx->file, "d_model"),
                            true};
    fx->B = test_fixture_meta_int(&fx->file, "B"), fx->T = test_fixture_meta_int(&fx->file, "T"),
    fx->r = test_fixture_meta_int(&fx->file, "r");
    fx->alpha = (float)atof(safetensors_metadata_get(&fx->file, "alpha"));
    const int BT = fx->B * fx->T;
    float *tok = test_fixture_tensor(&fx->file, "input.tokens", BT),
          *tgt = test_fixture_tensor(&fx->file, "input.targets", BT);
    float *pos = test_fixture_tensor(&fx->file, "input.positions", BT),
          *am = test_fixture_tensor(&fx->file, "input.attn_mask", BT);
    float *lm = test_fixture_tensor(&fx->file, "input.loss_mask", BT);
    fx->probe = test_fixture_tensor(&fx->file, "input.value_probe", BT);
    fx->tokens = malloc(sizeof(int32_t) * (size_t)BT * 3);
    fx->targets = fx->tokens + BT, fx->positions = fx->tokens + 2 * BT;
    fx->attn = malloc((size_t)BT * 2), fx->loss_mask = fx->attn + BT;
    for (int i = 0; i < BT; i++) {
        fx->tokens[i] = (int32_t)tok[i], fx->targets[i] = (int32_t)tgt[i];
        fx->positions[i] = (int32_t)pos[i];
        fx->attn[i] = am[i] != 0.0f, fx->loss_mask[i] = lm[i] != 0.0f;
    }
    free(tok), free(tgt), free(pos), free(am), free(lm);
}

static void fx_close(lora_fixture *fx) {
    free(fx->tokens), free(fx->attn), free(fx->probe);
    safetensors_free(&fx->file);
}

/* The fixture's base model, without adapters. */
static void fx_base_model(lora_fixture *fx, gpt2_model *m) {
    char err[256];
    ck_assert_int_eq(gpt2_init(m, &fx->cfg, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_reserve(m, fx->B, fx->T, err, sizeof err), 0);
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(&fx->cfg, sizes);
    float *p = m->param_memory;
    for (int k = 0; k < GPT2_NUM_PARAM_TENSORS; k++) {
        char name[64];
        snprintf(name, sizeof name, "param.%s", param_names[k]);
        float *t = test_fixture_tensor(&fx->file, name, sizes[k]);
        memcpy(p, t, sizeof(float) * (size_t)sizes[k]);
        free(t);
        p += sizes[k];
    }
}

/* The fixture's model with its adapters (rank r on all four targets). */
static void fx_lora_model(lora_fixture *fx, gpt2_model *m) {
    fx_base_model(fx, m);
    rng_state rng;
    rng_seed(&rng, 5, 0);
    char err[256];
    ck_assert_msg(gpt2_lora_attach(m, fx->r, fx->alpha, LORA_TARGETS_ALL, &rng, err, sizeof err) ==
                      0,
                  "%s", err);
    const gpt2_lora *lo = m->lora;
    for (int t = 0; t < LORA_NUM_TARGETS; t++) {
        char name[64];
        const int64_t na = (int64_t)fx->cfg.n_layer * lo->r * lo->in[t];
        const int64_t nb = (int64_t)fx->cfg.n_layer * lo->out[t] * lo->r;
        snprintf(name, sizeof name, "lora.%s.A", target_names[t]);
        float *a = test_fixture_tensor(&fx->file, name, na);
        snprintf(name, sizeof name, "lora.%s.B", target_names[t]);
        float *b = test_fixture_tensor(&fx->file, name, nb);
        memcpy(lo->A[t], a, sizeof(float) * (size_t)na);
        memcpy(lo->B[t], b, sizeof(float) * (size_t)nb);
        free(a), free(b);
    }
}

static void check_logits(lora_fixture *fx, const float *got, const char *name, const char *what) {
    const int64_t n = (int64_t)fx->B * fx->T * fx->cfg.vocab_size;
    float *want = test_fixture_tensor(&fx->file, name, n);
    const double d = test_max_rel_diff(got, want, n);
    ck_assert_msg(d < REL_TOL, "%s: logits differ from %s by %.3g (relative)", what, name, d);
    free(want);
}

START_TEST(test_lora_matches_pytorch_reference) {
    lora_fixture fx;
    fx_open(&fx);
    gpt2_model m;
    fx_lora_model(&fx, &m);
    const int B = fx.B, T = fx.T, BT = B * T;
    /* the base is frozen: no full-size gradient buffer exists */
    ck_assert_ptr_null(m.grad_memory);
    gpt2_batch batch = {fx.tokens, fx.positions, fx.attn, B, T};
    gpt2_forward(&m, &batch, true);
    check_logits(&fx, m.acts.logits, "out.logits", "adapters on");
    float *want = test_fixture_tensor(&fx.file, "out.values", BT);
    double d = test_max_rel_diff(m.acts.values, want, BT);
    ck_assert_msg(d < REL_TOL, "values differ by %.3g", d);
    free(want);
    want = test_fixture_tensor(&fx.file, "out.loss", 1);
    const float loss = gpt2_lm_loss(&m, fx.targets, fx.loss_mask, 1.0f);
    ck_assert_close(loss, want[0], 0, REL_TOL, "masked LM loss with adapters");
    free(want);
    memcpy(m.acts.dvalues, fx.probe, sizeof(float) * (size_t)BT);
    gpt2_zero_grad(&m);
    gpt2_backward(&m, true, true);
    const gpt2_lora *lo = m.lora;
    for (int t = 0; t < LORA_NUM_TARGETS; t++)
        for (int ab = 0; ab < 2; ab++) {
            char name[64];
            snprintf(name, sizeof name, "grad.lora.%s.%c", target_names[t], ab ? 'B' : 'A');
            const int64_t n = (int64_t)fx.cfg.n_layer * lo->r * (ab ? lo->out[t] : lo->in[t]);
            want = test_fixture_tensor(&fx.file, name, n);
            d = test_max_rel_diff(ab ? lo->dB[t] : lo->dA[t], want, n);
            ck_assert_msg(d < REL_TOL, "gradient %s differs by %.3g", name, d);
            free(want);
        }
    want = test_fixture_tensor(&fx.file, "grad.headw", fx.cfg.d_model);
    d = test_max_rel_diff(m.grads.headw, want, fx.cfg.d_model);
    ck_assert_msg(d < REL_TOL, "head weight gradient differs by %.3g", d);
    free(want);
    want = test_fixture_tensor(&fx.file, "grad.headb", 1);
    ck_assert_close(m.grads.headb[0], want[0], 0, REL_TOL, "head bias gradient");
    free(want);
    /* the head's gradient sits in the flat trainable buffer, after the adapters */
    ck_assert_ptr_eq(m.grads.headw, lo->grads + lo->num_adapter_params);

    /* adapters off: the base model's logits, from the same weights */
    gpt2_lora_set_enabled(&m, false);
    gpt2_forward(&m, &batch, true);
    check_logits(&fx, m.acts.logits, "out.base_logits", "adapters off");
    gpt2_lora_set_enabled(&m, true);

    /* AdamW on the flat trainable buffer alone reproduces torch's losses */
    float *losses = test_fixture_tensor(&fx.file, "adamw.losses", 8);
    float *am = calloc((size_t)lo->num_params, sizeof(float));
    float *av = calloc((size_t)lo->num_params, sizeof(float));
    const adam_config adamw = {1e-2f, 0.9f, 0.95f, 1e-8f, 0.0f};
    for (int step = 1; step <= 8; step++) {
        gpt2_forward(&m, &batch, true);
        const float l = gpt2_lm_loss(&m, fx.targets, fx.loss_mask, 1.0f);
        char what[48];
        snprintf(what, sizeof what, "loss before AdamW step %d", step);
        ck_assert_close(l, losses[step - 1], 0, 1e-3, what);
        gpt2_zero_grad(&m);
        gpt2_backward(&m, true, false);
        adam_step(lo->params, lo->grads, am, av, NULL, lo->num_params, &adamw, step);
    }
    free(losses), free(am), free(av);
    gpt2_free(&m);
    fx_close(&fx);
}
END_TEST

/* Decoding with the KV cache gives the full forward's logits, with the
 * adapters on and off (the switch reaches the sampling path too). */
START_TEST(test_lora_kv_cache_matches_forward) {
    lora_fixture fx;
    fx_open(&fx);
    gpt2_model m;
    fx_lora_model(&fx, &m);
    const int T = fx.T, V = fx.cfg.vocab_size;
    char err[256];
    for (int on = 1; on >= 0; on--) {
        gpt2_lora_set_enabled(&m, on);
        gpt2_batch batch = {fx.tokens, NULL, NULL, 1, T}; /* row 0 has no padding */
        gpt2_forward(&m, &batch, true);
        float *want = test_fixture_tensor(&fx.file, on ? "out.logits" : "out.base_logits",
                                          (int64_t)fx.B * T * V); /* row 0 comes first */
        const double d0 = test_max_rel_diff(m.acts.logits, want, (int64_t)T * V);
        ck_assert_msg(d0 < REL_TOL, "forward of row 0 (adapters %s) differs by %.3g",
                      on ? "on" : "off", d0);
        free(want);
        gpt2_kv_cache cache;
        ck_assert_int_eq(gpt2_kv_cache_init(&cache, &m.cfg, 1, T, err, sizeof err), 0);
        for (int t = 0; t < T; t++) {
            gpt2_decode_step(&m, &cache, fx.tokens + t, NULL, t, true);
            const double d = test_max_rel_diff(cache.logits, m.acts.logits + (int64_t)t * V, V);
            ck_assert_msg(d < REL_TOL, "decode step %d (adapters %s) differs by %.3g", t,
                          on ? "on" : "off", d);
        }
        gpt2_kv_cache_free(&cache);
    }
    gpt2_free(&m);
    fx_close(&fx);
}
END_TEST

/* A fresh adapter (B = 0) leaves the model unchanged. */
START_TEST(test_lora_fresh_adapter_is_identity) {
    lora_fixture fx;
    fx_open(&fx);
    gpt2_model base, m;
    fx_base_model(&fx, &base);
    fx_base_model(&fx, &m);
    const int BT = fx.B * fx.T, V = fx.cfg.vocab_size, C = fx.cfg.d_model;
    rng_state rng;
    rng_seed(&rng, 9, 0);
    char err[256];
    ck_assert_int_eq(gpt2_lora_attach(&m, 4, 8.0f, 1u << LORA_C_ATTN | 1u << LORA_MLP_C_PROJ, &rng,
                                      err, sizeof err),
                     0);
    const gpt2_lora *lo = m.lora;
    const int L = fx.cfg.n_layer;
    ck_assert_int_eq(lo->num_adapter_params, (int64_t)L * 4 * (C + 3 * C) + L * 4 * (4 * C + C));
    ck_assert_int_eq(lo->num_params, lo->num_adapter_params + C + 1);
    ck_assert_ptr_null(lo->A[LORA_ATTN_C_PROJ]);
    ck_assert_float_eq(lo->scaling, 2.0f);
    /* A ~ U(-1/sqrt(in), 1/sqrt(in)) (PEFT's kaiming_uniform_(a = sqrt 5)), B = 0 */
    double amax = 0.0, asum2 = 0.0;
    const int64_t na = (int64_t)L * 4 * 4 * C;
    for (int64_t i = 0; i < na; i++) {
        amax = fmax(amax, fabs(lo->A[LORA_MLP_C_PROJ][i]));
        asum2 += (double)lo->A[LORA_MLP_C_PROJ][i] * lo->A[LORA_MLP_C_PROJ][i];
    }
    const double bound = 1.0 / sqrt(4.0 * C);
    ck_assert(amax <= bound && amax > 0.8 * bound);
    ck_assert_double_eq_tol(asum2 / (double)na, bound * bound / 3.0, 0.25 * bound * bound / 3.0);
    for (int64_t i = 0; i < (int64_t)L * 3 * C * 4; i++)
        ck_assert_float_eq(lo->B[LORA_C_ATTN][i], 0.0f);
    gpt2_batch batch = {fx.tokens, fx.positions, fx.attn, fx.B, fx.T};
    gpt2_forward(&base, &batch, true);
    gpt2_forward(&m, &batch, true);
    ck_assert(test_max_rel_diff(m.acts.logits, base.acts.logits, (int64_t)BT * V) < 1e-6);
    ck_assert(test_max_rel_diff(m.acts.values, base.acts.values, BT) < 1e-6);
    /* with B = 0 only B (and the head) get a gradient, as in PEFT's first step */
    gpt2_lm_loss(&m, fx.targets, fx.loss_mask, 1.0f);
    gpt2_zero_grad(&m);
    gpt2_backward(&m, true, false);
    ck_assert(grad_global_norm(lo->dA[LORA_C_ATTN], (int64_t)L * 4 * C) == 0.0);
    ck_assert(grad_global_norm(lo->dB[LORA_C_ATTN], (int64_t)L * 3 * C * 4) > 0.0);
    gpt2_free(&base);
    gpt2_free(&m);
    fx_close(&fx);
}
END_TEST

START_TEST(test_lora_peft_files_and_merge) {
    lora_fixture fx;
    fx_open(&fx);
    const int C = fx.cfg.d_model, L = fx.cfg.n_layer, r = fx.r;
    char err[512], path[4200];
    /* the adapters as PEFT writes them (names written by the Python side) */
    safetensors_file peft;
    snprintf(path, sizeof path, "%s/tests/fixtures/gpt2_tiny_lora_peft.safetensors",
             test_repo_dir());
    ck_assert_msg(safetensors_read_file(&peft, path, err, sizeof err) == 0, "%s", err);
    gpt2_model m;
    fx_base_model(&fx, &m);
    rng_state rng;
    rng_seed(&rng, 1, 0);
    ck_assert_int_eq(gpt2_lora_attach(&m, r, 1.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), 0);
    ck_assert_msg(gpt2_lora_load(&m, &peft, err, sizeof err) == 0, "%s", err);
    ck_assert_float_eq(m.lora->alpha, fx.alpha); /* from the file's metadata */
    gpt2_batch batch = {fx.tokens, fx.positions, fx.attn, fx.B, fx.T};
    gpt2_forward(&m, &batch, true);
    check_logits(&fx, m.acts.logits, "out.logits", "adapters loaded from PEFT names");

    /* adapter_model.safetensors: PEFT's names and shapes, our values */
    size_t n = 0;
    void *bytes = gpt2_lora_serialize(&m, &n);
    ck_assert_ptr_nonnull(bytes);
    safetensors_file out;
    ck_assert_msg(safetensors_parse(&out, bytes, n, err, sizeof err) == 0, "%s", err);
    free(bytes);
    ck_assert_int_eq(out.n_tensors, peft.n_tensors);
    ck_assert_int_eq(out.n_tensors, 8 * L);
    for (int i = 0; i < peft.n_tensors; i++) {
        const safetensors_info *want = &peft.tensors[i];
        const safetensors_info *got = safetensors_find(&out, want->name);
        ck_assert_msg(got != NULL, "exported adapter lacks '%s'", want->name);
        ck_assert_int_eq(got->ndim, 2);
        ck_assert_int_eq(got->shape[0], want->shape[0]);
        ck_assert_int_eq(got->shape[1], want->shape[1]);
        ck_assert_int_eq(memcmp(got->data, want->data, want->n_bytes), 0);
    }
    const safetensors_info *b1 =
        safetensors_find(&out, "base_model.model.transformer.h.1.mlp.c_proj.lora_B.weight");
    ck_assert_ptr_nonnull(b1);
    ck_assert_int_eq(b1->shape[0], C);
    ck_assert_int_eq(b1->shape[1], r);
    ck_assert_str_eq(safetensors_metadata_get(&out, "format"), "pt");
    safetensors_free(&out);

    /* adapter_config.json */
    char *text = gpt2_lora_config_json(&m);
    json_error_t jerr;
    json_t *cfg = json_loads(text, 0, &jerr);
    free(text);
    ck_assert_ptr_nonnull(cfg);
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "peft_type")), "LORA");
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "task_type")), "CAUSAL_LM");
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "bias")), "none");
    ck_assert(json_is_true(json_object_get(cfg, "fan_in_fan_out")));
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "r")), r);
    ck_assert_double_eq_tol(json_number_value(json_object_get(cfg, "lora_alpha")), fx.alpha, 1e-6);
    json_t *tm = json_object_get(cfg, "target_modules");
    ck_assert_int_eq(json_array_size(tm), 4);
    ck_assert_str_eq(json_string_value(json_array_get(tm, 0)), "attn.c_attn");
    ck_assert_str_eq(json_string_value(json_array_get(tm, 3)), "mlp.c_proj");
    json_decref(cfg);

    /* a checkpoint carries base + adapters; loading it into a model without
     * adapters merges them (same logits), into one with adapters restores them */
    bytes = gpt2_checkpoint_serialize(&m, NULL, 0, NULL, 0, &n);
    ck_assert_ptr_nonnull(bytes);
    safetensors_file ck;
    ck_assert_msg(safetensors_parse(&ck, bytes, n, err, sizeof err) == 0, "%s", err);
    free(bytes);
    ck_assert_str_eq(safetensors_metadata_get(&ck, "lora_r"), "3");
    gpt2_model merged, again;
    gpt2_config gc;
    ck_assert_int_eq(gpt2_config_from_checkpoint(&gc, &ck, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_init(&merged, &gc, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_reserve(&merged, fx.B, fx.T, err, sizeof err), 0);
    ck_assert_msg(gpt2_checkpoint_load(&merged, &ck, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_ptr_null(merged.lora);
    gpt2_forward(&merged, &batch, true);
    check_logits(&fx, merged.acts.logits, "out.logits", "merged checkpoint");
    float *values = test_fixture_tensor(&fx.file, "out.values", fx.B * fx.T);
    ck_assert(test_max_rel_diff(merged.acts.values, values, fx.B * fx.T) < REL_TOL);
    free(values);
    /* merged weights differ from the base where adapters are, nowhere else */
    ck_assert(test_max_rel_diff(merged.params.qkvw, m.params.qkvw, (int64_t)L * 3 * C * C) > 1e-3);
    ck_assert_int_eq(memcmp(merged.params.wte, m.params.wte,
                            sizeof(float) * (size_t)fx.cfg.vocab_size * (size_t)C),
                     0);

    ck_assert_int_eq(gpt2_init(&again, &gc, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_reserve(&again, fx.B, fx.T, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_lora_attach(&again, r, 1.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), 0);
    ck_assert_msg(gpt2_checkpoint_load(&again, &ck, NULL, err, sizeof err) == 0, "%s", err);
    ck_assert_int_eq(again.lora->num_params, m.lora->num_params);
    ck_assert_int_eq(
        memcmp(again.lora->params, m.lora->params, sizeof(float) * (size_t)m.lora->num_params), 0);
    ck_assert_int_eq(
        memcmp(again.param_memory, m.param_memory, sizeof(float) * (size_t)(m.num_params - C - 1)),
        0); /* the base, unmerged */
    ck_assert_float_eq(again.lora->scaling, m.lora->scaling);

    /* a rank that does not match is refused with a message */
    gpt2_model other;
    ck_assert_int_eq(gpt2_init(&other, &gc, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_lora_attach(&other, r + 1, 1.0f, LORA_TARGETS_ALL, &rng, err, sizeof err),
                     0);
    ck_assert_int_eq(gpt2_checkpoint_load(&other, &ck, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "rank") != NULL, "%s", err);

    gpt2_free(&other);
    gpt2_free(&again);
    gpt2_free(&merged);
    safetensors_free(&ck);
    safetensors_free(&peft);
    gpt2_free(&m);
    fx_close(&fx);
}
END_TEST

START_TEST(test_lora_targets_and_bad_input) {
    unsigned t = 0;
    char err[256];
    ck_assert_int_eq(lora_parse_targets("c_attn, mlp.c_proj", &t, err, sizeof err), 0);
    ck_assert_uint_eq(t, 1u << LORA_C_ATTN | 1u << LORA_MLP_C_PROJ);
    ck_assert_int_eq(lora_parse_targets("c_proj", &t, err, sizeof err), 0);
    ck_assert_uint_eq(t, 1u << LORA_ATTN_C_PROJ | 1u << LORA_MLP_C_PROJ);
    ck_assert_int_eq(lora_parse_targets("all", &t, err, sizeof err), 0);
    ck_assert_uint_eq(t, LORA_TARGETS_ALL);
    ck_assert_int_eq(lora_parse_targets("c_fc,attn.c_proj", &t, err, sizeof err), 0);
    ck_assert_uint_eq(t, 1u << LORA_MLP_C_FC | 1u << LORA_ATTN_C_PROJ);
    ck_assert_int_eq(lora_parse_targets("c_attn,q_proj", &t, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "'q_proj'") != NULL, "%s", err);
    ck_assert_int_eq(lora_parse_targets("", &t, err, sizeof err), -1);

    const gpt2_config cfg = {11, 8, 1, 2, 8, false};
    gpt2_model m;
    rng_state rng;
    rng_seed(&rng, 3, 0);
    ck_assert_int_eq(gpt2_init(&m, &cfg, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_lora_attach(&m, 0, 1.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), -1);
    ck_assert_int_eq(gpt2_lora_attach(&m, 2, -1.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), -1);
    ck_assert_ptr_nonnull(m.grad_memory); /* refused: nothing changed */
    ck_assert_int_eq(gpt2_lora_attach(&m, 2, 4.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_lora_attach(&m, 2, 4.0f, LORA_TARGETS_ALL, &rng, err, sizeof err), -1);
    ck_assert_int_eq(m.lora->num_params, m.lora->num_adapter_params); /* no head */
    gpt2_free(&m);
}
END_TEST

/* ---- the PPO job with LoRA (engine/ppo_lm.c) ------------------------------------- */

static const char *const ppo_prompts[] = {"ab", "hello", "x", "a cat", "Zq", "the end"};

/* A tiny random GPT-2 (head: a reward model) in a temp file. */
static void write_tiny(char *path, const tokenizer *tok, bool head, uint64_t seed) {
    const gpt2_config gc = {tok->vocab_size, 24, 2, 2, 16, head};
    test_write_random_gpt2(path, &gc, seed, "2.0", false);
}

/* The SFT model, run independently on every rollout: the job's reference
 * log-probs must be its log-probs (the base, adapters off). */
typedef struct ref_check {
    gpt2_model sft;
    int rollouts;
    double max_ref_diff;    /* job's ref_logp vs the SFT model's, over all rollouts */
    double max_policy_diff; /* job's logp vs the SFT model's, at update 1 and later */
    double later_policy_diff;
} ref_check;

static void check_reference(void *ctx, const ppo_lm_rollout_view *r) {
    ref_check *c = ctx;
    char err[128];
    ck_assert_int_eq(gpt2_reserve(&c->sft, r->B, r->S, err, sizeof err), 0);
    int32_t *targets = malloc(sizeof(int32_t) * (size_t)r->B * (size_t)r->S);
    float *logp = malloc(sizeof(float) * (size_t)r->B * (size_t)r->S);
    for (int64_t i = 0; i < (int64_t)r->B * r->S; i++)
        targets[i] = (i + 1) % r->S != 0 ? r->seq[i + 1] : 0;
    const gpt2_batch b = {r->seq, r->positions, r->seq_mask, r->B, r->S};
    gpt2_forward(&c->sft, &b, true); /* temperature 1: logits as they are */
    gpt2_token_logprobs(&c->sft, targets, logp, NULL);
    for (int i = 0; i < r->B; i++)
        for (int t = 0; t < r->len[i]; t++) {
            const double want = logp[(int64_t)i * r->S + r->P + t - 1];
            const double dr = fabs(r->ref_logp[i * r->N + t] - want);
            const double dp = fabs(r->logp[i * r->N + t] - want);
            c->max_ref_diff = fmax(c->max_ref_diff, dr);
            if (r->update == 1)
                c->max_policy_diff = fmax(c->max_policy_diff, dp);
            else
                c->later_policy_diff = fmax(c->later_policy_diff, dp);
        }
    c->rollouts++;
    free(targets);
    free(logp);
}

/* rlhf-train export-hf on a LoRA checkpoint: DIR/model.safetensors holds
 * the merged weights, DIR/adapter/ the adapters as PEFT saves them. */
static void check_export_hf(const char *ckpt, const safetensors_file *ck) {
    char dir[] = "/tmp/rlhf-lora-export-XXXXXX", file[128], err[256];
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char *argv[] = {"rlhf-train", "export-hf", "--checkpoint", (char *)ckpt, "--out", dir, NULL};
    ck_assert_int_eq(rlhf_train_main(6, argv), 0);
    safetensors_file m, a;
    snprintf(file, sizeof file, "%s/model.safetensors", dir);
    ck_assert_msg(safetensors_read_file(&m, file, err, sizeof err) == 0, "%s", err);
    snprintf(file, sizeof file, "%s/adapter/adapter_model.safetensors", dir);
    ck_assert_msg(safetensors_read_file(&a, file, err, sizeof err) == 0, "%s", err);
    /* merged: no adapter tensors in the model, and c_attn moved from the base */
    ck_assert_ptr_null(
        safetensors_find(&m, "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight"));
    const safetensors_info *w = safetensors_find(&m, "transformer.h.0.attn.c_attn.weight");
    const safetensors_info *w0 = safetensors_find(ck, "transformer.h.0.attn.c_attn.weight");
    ck_assert(w && w0 && w->n_bytes == w0->n_bytes && memcmp(w->data, w0->data, w->n_bytes) != 0);
    /* the adapter file: every adapter of the checkpoint, the same bytes */
    ck_assert_int_eq(a.n_tensors, 8 * 2);
    for (int i = 0; i < a.n_tensors; i++) {
        const safetensors_info *x = &a.tensors[i], *y = safetensors_find(ck, x->name);
        ck_assert_msg(y != NULL && y->n_bytes == x->n_bytes &&
                          memcmp(x->data, y->data, x->n_bytes) == 0,
                      "adapter %s differs from the checkpoint's", x->name);
    }
    snprintf(file, sizeof file, "%s/adapter/adapter_config.json", dir);
    json_error_t jerr;
    json_t *cfg = json_load_file(file, 0, &jerr);
    ck_assert_msg(cfg != NULL, "%s", jerr.text);
    ck_assert_str_eq(json_string_value(json_object_get(cfg, "peft_type")), "LORA");
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "r")), 2);
    ck_assert_int_eq(json_integer_value(json_object_get(cfg, "lora_alpha")), 4);
    json_decref(cfg);
    safetensors_free(&m), safetensors_free(&a);
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    ck_assert_int_eq(system(cmd), 0);
}

typedef struct ckpt_rec {
    int n;
    void *bytes[8];
    size_t size[8];
} ckpt_rec;

static int keep_ckpt(void *ctx, int64_t step, const void *bytes, size_t n) {
    ckpt_rec *r = ctx;
    (void)step;
    ck_assert_int_lt(r->n, 8);
    r->bytes[r->n] = malloc(n);
    memcpy(r->bytes[r->n], bytes, n);
    r->size[r->n++] = n;
    return 0;
}

static void ckpt_free(ckpt_rec *r) {
    for (int i = 0; i < r->n; i++)
        free(r->bytes[i]);
    r->n = 0;
}

static void lora_ppo_config(ppo_lm_config *c) {
    hparams_set_defaults(&ppo_lm_hparams, c);
    c->total_updates = 3, c->batch_size = 4, c->mini_batch_size = 2, c->ppo_epochs = 2;
    c->response_length = 6, c->learning_rate = 1e-2, c->sample_interval = 0;
    c->lora_r = 2, c->lora_alpha = 4;
}

/* lora_r > 0: the reference log-probs are the SFT model's at every update
 * (the frozen base with its adapters off), the policy's equal them at
 * update 1 (fresh adapters are the identity) and move away after training;
 * the checkpoint keeps the base bit for bit and adds PEFT-named adapters,
 * which loading merges; the trainer state holds moments for the adapters
 * (and the value model's adapters + head) only. For both value models. */
START_TEST(test_ppo_lm_lora_reference_and_checkpoint) {
    tokenizer tok;
    char err[512], sft[64], rm[64];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    write_tiny(sft, &tok, false, 11);
    write_tiny(rm, &tok, true, 12);
    static const char *const kinds[] = {"reward_model", "policy_head"};
    for (int v = 0; v < 2; v++) {
        ref_check chk = {0};
        load_checkpoint_model(&chk.sft, sft, false);
        ppo_lm_config c;
        lora_ppo_config(&c);
        c.checkpoint_interval = 1;
        snprintf(c.value_model, sizeof c.value_model, "%s", kinds[v]);
        const ppo_lm_inputs in = {.prompts = ppo_prompts,
                                  .n_prompts = 6,
                                  .tok = &tok,
                                  .policy_checkpoint = sft,
                                  .reward_checkpoint = rm,
                                  .observe_rollout = check_reference,
                                  .observe_ctx = &chk};
        ckpt_rec rec = {0};
        const train_sink sink = {&rec, NULL, NULL, keep_ckpt, NULL, NULL, NULL, NULL};
        ck_assert_msg(ppo_lm_train(&c, &in, &sink, NULL, err, sizeof err) == 0, "%s", err);
        ck_assert_int_eq(chk.rollouts, 3);
        ck_assert_msg(chk.max_ref_diff < 1e-5, "%s: reference log-probs off by %g", kinds[v],
                      chk.max_ref_diff);
        ck_assert_msg(chk.max_policy_diff < 1e-5, "%s: fresh adapters changed log-probs by %g",
                      kinds[v], chk.max_policy_diff);
        ck_assert_msg(chk.later_policy_diff > 1e-3, "%s: the policy did not move (%g)", kinds[v],
                      chk.later_policy_diff);
        ck_assert_int_eq(rec.n, 3); /* updates 1, 2 with state; the final one */
        safetensors_file f;
        ck_assert_int_eq(
            safetensors_parse(&f, rec.bytes[rec.n - 1], rec.size[rec.n - 1], err, sizeof err), 0);
        ck_assert_str_eq(safetensors_metadata_get(&f, "lora_r"), "2");
        ck_assert_str_eq(safetensors_metadata_get(&f, "lora_alpha"), "4");
        const safetensors_info *a =
            safetensors_find(&f, "base_model.model.transformer.h.1.mlp.c_fc.lora_A.weight");
        ck_assert_ptr_nonnull(a);
        ck_assert_int_eq(a->shape[0], 2);
        ck_assert_int_eq(a->shape[1], 16);
        /* the base is untouched: the SFT's c_attn weight, bit for bit */
        safetensors_file s0;
        ck_assert_int_eq(safetensors_read_file(&s0, sft, err, sizeof err), 0);
        const safetensors_info *w0 = safetensors_find(&s0, "transformer.h.0.attn.c_attn.weight");
        const safetensors_info *w1 = safetensors_find(&f, "transformer.h.0.attn.c_attn.weight");
        ck_assert(w0 && w1 && w0->n_bytes == w1->n_bytes);
        ck_assert(memcmp(w0->data, w1->data, w0->n_bytes) == 0);
        safetensors_free(&s0);
        /* loaded without adapters: merged, so it differs from the SFT model */
        char path[64];
        strcpy(path, "/tmp/rlhf-lora-XXXXXX");
        const int fd = mkstemp(path);
        ck_assert_int_eq(write(fd, rec.bytes[rec.n - 1], rec.size[rec.n - 1]),
                         (ssize_t)rec.size[rec.n - 1]);
        close(fd);
        gpt2_model merged;
        load_checkpoint_model(&merged, path, false);
        if (v == 0)
            check_export_hf(path, &f);
        unlink(path);
        ck_assert(
            memcmp(merged.params.qkvw, chk.sft.params.qkvw, sizeof(float) * 2 * 3 * 16 * 16) != 0);
        gpt2_free(&merged);
        safetensors_free(&f);
        /* the trainer state of update 1: adapter-sized moments */
        ck_assert_int_eq(safetensors_parse(&f, rec.bytes[0], rec.size[0], err, sizeof err), 0);
        const int64_t adapters = 2 * 2 * (16 + 48 + 16 + 16 + 16 + 64 + 64 + 16);
        const int64_t head = v == 1 ? 17 : 0;
        ck_assert_int_eq(safetensors_find(&f, "training_state.adam_m")->n_elements,
                         adapters + head);
        if (v == 0)
            ck_assert_int_eq(safetensors_find(&f, "training_state.value_params")->n_elements,
                             adapters + 17);
        safetensors_free(&f);
        ckpt_free(&rec);
        gpt2_free(&chk.sft);
    }
    unlink(sft), unlink(rm);
    tokenizer_free(&tok);
}
END_TEST

/* Resumed from its periodic checkpoint, a LoRA run ends byte-identical to
 * the uninterrupted one (adapters, the value model's adapters, moments). */
START_TEST(test_ppo_lm_lora_resume_is_bit_identical) {
    tokenizer tok;
    char err[512], sft[64], rm[64], path[64];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    write_tiny(sft, &tok, false, 21);
    write_tiny(rm, &tok, true, 22);
    static const char *const kinds[] = {"reward_model", "policy_head"};
    for (int v = 0; v < 2; v++) {
        ppo_lm_config c;
        lora_ppo_config(&c);
        c.checkpoint_interval = 1;
        snprintf(c.value_model, sizeof c.value_model, "%s", kinds[v]);
        ppo_lm_inputs in = {.prompts = ppo_prompts,
                            .n_prompts = 6,
                            .tok = &tok,
                            .policy_checkpoint = sft,
                            .reward_checkpoint = rm};
        ckpt_rec whole = {0}, rest = {0};
        train_sink sink = {&whole, NULL, NULL, keep_ckpt, NULL, NULL, NULL, NULL};
        ck_assert_msg(ppo_lm_train(&c, &in, &sink, NULL, err, sizeof err) == 0, "%s", err);
        strcpy(path, "/tmp/rlhf-lora-XXXXXX");
        const int fd = mkstemp(path);
        ck_assert_int_eq(write(fd, whole.bytes[0], whole.size[0]), (ssize_t)whole.size[0]);
        close(fd);
        in.resume_checkpoint = path;
        sink.ctx = &rest;
        ck_assert_msg(ppo_lm_train(&c, &in, &sink, NULL, err, sizeof err) == 0, "%s", err);
        unlink(path);
        ck_assert_int_eq(rest.n, whole.n - 1);
        ck_assert_msg(rest.size[rest.n - 1] == whole.size[whole.n - 1] &&
                          memcmp(rest.bytes[rest.n - 1], whole.bytes[whole.n - 1],
                                 whole.size[whole.n - 1]) == 0,
                      "%s: the resumed run's final checkpoint differs", kinds[v]);
        ckpt_free(&whole), ckpt_free(&rest);
    }
    unlink(sft), unlink(rm);
    tokenizer_free(&tok);
}
END_TEST

/* PPO's value model over the reward model's weights (lm_open_shared)
 * against the separate copy it replaces (lm_open_model, fresh adapters from
 * the same RNG stream): the same values and the same adapter and head
 * gradients, bit for bit, for GPT-2 and a Qwen3. The shared base is the
 * reward model's memory, not a copy; an Adam step on the value model leaves
 * the reward model (head included) untouched; full training is refused. */
START_TEST(test_lora_shared_base_value_model) {
    tokenizer tok;
    char err[512], gpt[64], qwen[4200];
    ck_assert_int_eq(tokenizer_load_bytes(&tok, err, sizeof err), 0);
    write_tiny(gpt, &tok, true, 31);
    snprintf(qwen, sizeof qwen, "%s/tests/fixtures/llama/qwen3", test_repo_dir());
    const char *const paths[] = {gpt, qwen};
    const lm_lora_spec spec = {2, 4.0, "all", 7};
    enum { B = 2, T = 5 };
    for (int k = 0; k < 2; k++) {
        model rm, sep, shared;
        ck_assert_msg(
            lm_open_model(&rm, paths[k], true, LM_LORA_NONE, &spec, 0, NULL, err, sizeof err) == 0,
            "%s", err);
        ck_assert_msg(lm_open_model(&sep, paths[k], true, LM_LORA_FRESH, &spec, 0xE0000006u, NULL,
                                    err, sizeof err) == 0,
                      "%s", err);
        ck_assert_msg(lm_open_shared(&shared, &rm, &spec, 0xE0000006u, err, sizeof err) == 0, "%s",
                      err);
        int64_t n_base, n_rm;
        const float *base = model_base_params(&shared, &n_base);
        ck_assert_ptr_eq(base, model_base_params(&rm, &n_rm));
        ck_assert_int_eq(n_base, n_rm);
        float *before = malloc(sizeof(float) * (size_t)n_base);
        memcpy(before, base, sizeof(float) * (size_t)n_base);
        int32_t tokens[B * T];
        for (int i = 0; i < B * T; i++)
            tokens[i] = (int32_t)((i * 37 + 11) % model_vocab_size(&rm));
        model *const vm[2] = {&sep, &shared};
        for (int i = 0; i < 2; i++) {
            ck_assert_int_eq(model_reserve(vm[i], B, T, err, sizeof err), 0);
            model_forward(vm[i], tokens, NULL, NULL, B, T, 0, 0);
            model_zero_grad(vm[i]);
            for (int j = 0; j < B * T; j++)
                model_dvalues(vm[i])[j] = 0.25f * (float)(j % 3) - 0.2f;
            model_backward(vm[i], false, true);
        }
        ck_assert(memcmp(model_values(&sep), model_values(&shared), sizeof(float) * B * T) == 0);
        const int64_t nt = model_trainable_count(&sep);
        ck_assert_int_eq(model_trainable_count(&shared), nt);
        ck_assert(memcmp(model_trainable_params(&sep), model_trainable_params(&shared),
                         sizeof(float) * (size_t)nt) == 0);
        ck_assert(memcmp(model_trainable_grads(&sep), model_trainable_grads(&shared),
                         sizeof(float) * (size_t)nt) == 0);
        double gnorm = 0.0; /* the gradients are not trivially zero */
        for (int64_t i = 0; i < nt; i++)
            gnorm += fabs(model_trainable_grads(&shared)[i]);
        ck_assert(gnorm > 1e-6);
        float *m_ = calloc((size_t)nt, sizeof(float)), *v_ = calloc((size_t)nt, sizeof(float));
        const adam_config adam = {1e-2f, 0.9f, 0.999f, 1e-8f, 0.0f};
        adam_step(model_trainable_params(&shared), model_trainable_grads(&shared), m_, v_, NULL, nt,
                  &adam, 1);
        ck_assert(memcmp(before, base, sizeof(float) * (size_t)n_base) == 0);
        if (k == 1)
            ck_assert_int_eq(llama_alloc_grads(&shared.llama, err, sizeof err), -1);
        free(m_), free(v_), free(before);
        model_free(&shared);
        model_free(&sep);
        model_free(&rm);
    }
    unlink(gpt);
    tokenizer_free(&tok);
}
END_TEST

Suite *lora_suite(void) {
    Suite *s = suite_create("lora");
    TCase *tc = tcase_create("core");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_lora_matches_pytorch_reference);
    tcase_add_test(tc, test_lora_kv_cache_matches_forward);
    tcase_add_test(tc, test_lora_fresh_adapter_is_identity);
    tcase_add_test(tc, test_lora_peft_files_and_merge);
    tcase_add_test(tc, test_lora_targets_and_bad_input);
    tcase_add_test(tc, test_ppo_lm_lora_reference_and_checkpoint);
    tcase_add_test(tc, test_ppo_lm_lora_resume_is_bit_identical);
    tcase_add_test(tc, test_lora_shared_base_value_model);
    suite_add_tcase(s, tc);
    return s;
}
