/* The GPT-2 engine: finite differences on a tiny model, and the PyTorch
 * fixture written by tests/reference/gpt2_reference.py. */
#include <stdlib.h>
#include <string.h>

#include "gpt2.h"
#include "optim.h"
#include "suites.h"
#include "test_util.h"

/* ---- finite differences ------------------------------------------------------ */

enum { FB = 2, FT = 5 };

typedef struct fd_case {
    gpt2_model m;
    int32_t tokens[FB * FT], targets[FB * FT], positions[FB * FT];
    uint8_t attn_mask[FB * FT], loss_mask[FB * FT];
    float value_probe[FB * FT];
} fd_case;

/* loss = masked CE + Σ probe ⊙ values, in double for clean differences. */
static double fd_loss(void *ctx) {
    fd_case *c = ctx;
    gpt2_batch batch = {c->tokens, c->positions, c->attn_mask, FB, FT};
    gpt2_forward(&c->m, &batch, true);
    double loss = gpt2_lm_loss(&c->m, c->targets, c->loss_mask, 0.0f);
    for (int i = 0; i < FB * FT; i++)
        loss += (double)c->value_probe[i] * c->m.acts.values[i];
    return loss;
}

START_TEST(test_gpt2_backward_finite_differences) {
    fd_case *c = calloc(1, sizeof *c);
    const gpt2_config cfg = {13, 8, 2, 2, 8, true};
    char err[256];
    ck_assert_int_eq(gpt2_init(&c->m, &cfg, err, sizeof err), 0);
    ck_assert_int_eq(gpt2_reserve(&c->m, FB, FT, err, sizeof err), 0);
    rng_state r;
    rng_seed(&r, 21, 0);
    test_fill_uniform(c->m.param_memory, (size_t)c->m.num_params, -0.5f, 0.5f, &r);
    for (int i = 0; i < 8; i++) /* LayerNorm gains near 1 */
        c->m.params.lnfw[i] += 1.0f;
    for (int i = 0; i < FB * FT; i++) {
        c->tokens[i] = (int32_t)rng_next_below(&r, 13);
        c->targets[i] = (int32_t)rng_next_below(&r, 13);
        c->attn_mask[i] = !(i >= FT && i < FT + 2); /* row 1 left-padded by 2 */
        c->loss_mask[i] = c->attn_mask[i] && i != 0;
        c->value_probe[i] = c->attn_mask[i] ? (float)rng_next_uniform(&r, -1, 1) : 0.0f;
    }
    for (int b = 0, i = 0; b < FB; b++)
        for (int t = 0, pos = 0; t < FT; t++, i++)
            c->positions[i] = c->attn_mask[i] ? pos++ : 0;
    fd_loss(c);
    gpt2_lm_loss(&c->m, c->targets, c->loss_mask, 1.0f);
    memcpy(c->m.acts.dvalues, c->value_probe, sizeof c->value_probe);
    gpt2_zero_grad(&c->m);
    gpt2_backward(&c->m, true, true);
    /* Every parameter tensor, a sample of entries each (the whole model is
     * ~2.6k parameters; all of them would also pass, only slower). */
    int64_t sizes[GPT2_NUM_PARAM_TENSORS];
    gpt2_param_sizes(&cfg, sizes);
    float *p = c->m.param_memory, *g = c->m.grad_memory;
    for (int k = 0; k < GPT2_NUM_PARAM_TENSORS; k++) {
        const int64_t stride = sizes[k] > 40 ? sizes[k] / 40 : 1;
        for (int64_t i = 0; i < sizes[k]; i += stride)
            test_check_gradient("gpt2 param", p + i, g + i, 1, fd_loss, c, 1e-2f, 5e-4, 1e-2);
        p += sizes[k];
        g += sizes[k];
    }
    gpt2_free(&c->m);
    free(c);
}
END_TEST

Suite *gpt2_suite(void) {
    Suite *s = suite_create("gpt2");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_gpt2_backward_finite_differences);
    suite_add_tcase(s, tc);
    return s;
}
