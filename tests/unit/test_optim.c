/* Adam, clipping and schedules against numbers computed by hand. */
#include "optim.h"
#include "suites.h"
#include "test_util.h"

/* t=1: p=1, g=0.5, lr=0.1, β=(0.9, 0.999), eps=1e-8
 *   m = 0.05, v = 0.00025, m̂ = 0.05/0.1 = 0.5, v̂ = 0.00025/0.001 = 0.25
 *   p = 1 - 0.1 · 0.5 / (0.5 + 1e-8) = 0.90000000200
 * t=2, same gradient:
 *   m = 0.095, v = 0.00049975, m̂ = 0.095/0.19 = 0.5, v̂ = 0.00049975/0.001999 = 0.25
 *   p = 0.9 - 0.1 · 0.5 / 0.5 = 0.8 */
START_TEST(test_adam_two_steps_by_hand) {
    float p = 1.0f, g = 0.5f, m = 0.0f, v = 0.0f;
    const adam_config cfg = {0.1f, 0.9f, 0.999f, 1e-8f, 0.0f};
    adam_step(&p, &g, &m, &v, NULL, 1, &cfg, 1);
    ck_assert_close(m, 0.05, 0, 1e-6, "m after 1");
    /* 1 - 0.999f is 0.00099998713 in float32: 1.3e-5 relative, as in torch */
    ck_assert_close(v, 0.00025, 0, 2e-5, "v after 1");
    ck_assert_close(p, 0.900000002, 1e-7, 0, "p after 1");
    adam_step(&p, &g, &m, &v, NULL, 1, &cfg, 2);
    ck_assert_close(m, 0.095, 0, 1e-6, "m after 2");
    ck_assert_close(v, 0.00049975, 0, 2e-5, "v after 2");
    ck_assert_close(p, 0.8, 5e-7, 0, "p after 2"); /* v̂ carries the 1.3e-5 above: 3e-7 in p */
}
END_TEST

/* eps is added to sqrt(v̂) (PyTorch), not to sqrt(v) (TensorFlow):
 * g = 1e-5, eps = 1e-5: m̂ = 1e-5, sqrt(v̂) = 1e-5, step = 0.1 · 1e-5 / 2e-5 = 0.05.
 * (The TensorFlow placement would step 0.0030654.) */
START_TEST(test_adam_eps_placement) {
    float p = 1.0f, g = 1e-5f, m = 0.0f, v = 0.0f;
    const adam_config cfg = {0.1f, 0.9f, 0.999f, 1e-5f, 0.0f};
    adam_step(&p, &g, &m, &v, NULL, 1, &cfg, 1);
    ck_assert_close(p, 0.95, 1e-6, 0, "p");
}
END_TEST

/* AdamW: decoupled decay p -= lr · wd · p, only where the mask says so.
 * g = 0 keeps the Adam part at 0: p = 2 - 0.5 · 0.1 · 2 = 1.9. */
START_TEST(test_adamw_decay_and_mask) {
    float p[2] = {2.0f, 2.0f}, g[2] = {0, 0}, m[2] = {0, 0}, v[2] = {0, 0};
    const uint8_t mask[2] = {1, 0};
    const adam_config cfg = {0.5f, 0.9f, 0.999f, 1e-8f, 0.1f};
    adam_step(p, g, m, v, mask, 2, &cfg, 1);
    ck_assert_close(p[0], 1.9, 1e-7, 0, "decayed");
    ck_assert_close(p[1], 2.0, 0, 0, "masked");
}
END_TEST

START_TEST(test_grad_clip_global_norm) {
    float g[2] = {3.0f, 4.0f};
    ck_assert_close(grad_clip_global_norm(g, 2, 10.0), 5.0, 1e-12, 0, "norm under max");
    ck_assert_close(g[0], 3.0, 0, 0, "unclipped");
    ck_assert_close(grad_clip_global_norm(g, 2, 1.0), 5.0, 1e-12, 0, "norm over max");
    /* factor 1 / (5 + 1e-6), as torch.nn.utils.clip_grad_norm_ */
    ck_assert_close(g[0], 0.6 * 5.0 / (5.0 + 1e-6), 1e-7, 0, "clipped x");
    ck_assert_close(g[1], 0.8 * 5.0 / (5.0 + 1e-6), 1e-7, 0, "clipped y");
    ck_assert_close(grad_global_norm(g, 2), 1.0, 1e-6, 0, "norm after");
}
END_TEST

START_TEST(test_lr_linear) {
    ck_assert_close(lr_linear(1e-3f, 0, 4), 1e-3, 0, 1e-7, "start");
    ck_assert_close(lr_linear(1e-3f, 1, 4), 0.75e-3, 0, 1e-7, "quarter");
    ck_assert_close(lr_linear(1e-3f, 4, 4), 0.0, 0, 0, "end");
    ck_assert_close(lr_linear(1e-3f, 9, 4), 0.0, 0, 0, "past the end");
}
END_TEST

Suite *optim_suite(void) {
    Suite *s = suite_create("optim");
    TCase *tc = tcase_create("adam");
    tcase_add_test(tc, test_adam_two_steps_by_hand);
    tcase_add_test(tc, test_adam_eps_placement);
    tcase_add_test(tc, test_adamw_decay_and_mask);
    tcase_add_test(tc, test_grad_clip_global_norm);
    tcase_add_test(tc, test_lr_linear);
    suite_add_tcase(s, tc);
    return s;
}
