/* The policy-gradient math of ppo.h that the LM trainer uses, against
 * hand-computed values. */
#include <string.h>

#include "ppo.h"
#include "suites.h"
#include "test_util.h"

/* log π = -1, log π_ref = -1.5: d = 0.5.
 *   k1 = 0.5;  k3 = e^-0.5 - 1 + 0.5 = 0.1065307;  abs = 0.5.
 * d = -0.5: k1 = -0.5, k3 = e^0.5 - 1 - 0.5 = 0.1487213, abs = 0.5. */
START_TEST(test_kl_estimators_by_hand) {
    const float logp[3] = {-1.0f, -2.0f, -1.0f}, ref[3] = {-1.5f, -1.5f, -7.0f};
    const uint8_t mask[3] = {1, 1, 0};
    float kl[3];
    ppo_kl_per_token(kl, logp, ref, mask, 1, 3, PPO_KL_K1);
    ck_assert_close(kl[0], 0.5, 1e-7, 0, "k1");
    ck_assert_close(kl[1], -0.5, 1e-7, 0, "k1 negative");
    ck_assert_close(kl[2], 0.0, 0, 0, "masked");
    ppo_kl_per_token(kl, logp, ref, mask, 1, 3, PPO_KL_K3);
    ck_assert_close(kl[0], 0.1065307, 1e-7, 0, "k3");
    ck_assert_close(kl[1], 0.1487213, 1e-7, 0, "k3 of a negative difference");
    ppo_kl_per_token(kl, logp, ref, mask, 1, 3, PPO_KL_ABS);
    ck_assert_close(kl[1], 0.5, 1e-7, 0, "abs");
    ck_assert_int_eq(ppo_kl_estimator_from_name("k3"), PPO_KL_K3);
    ck_assert_int_eq(ppo_kl_estimator_from_name("k2"), -1);
}
END_TEST

/* β = 0.1, two rows of T = 4: row 0 has 3 real tokens, row 1 has 4.
 *   row 0: -0.1·(0.2, 0.4, -0.1) + score 2 on token 2 → (-0.02, -0.04, 2.01, 0)
 *   row 1: -0.1·(1, 1, 1, 1) + score -1 on token 3    → (-0.1, -0.1, -0.1, -1.1) */
START_TEST(test_reward_shaping_by_hand) {
    const float kl[8] = {0.2f, 0.4f, -0.1f, 0.0f, 1, 1, 1, 1};
    const float score[2] = {2.0f, -1.0f};
    const int32_t len[2] = {3, 4};
    float r[8];
    ppo_kl_penalty_rewards(r, kl, score, len, 0.1f, 2, 4);
    const double want[8] = {-0.02, -0.04, 2.01, 0, -0.1, -0.1, -0.1, -1.1};
    for (int i = 0; i < 8; i++)
        ck_assert_close(r[i], want[i], 1e-6, 0, "shaped reward");
}
END_TEST

/* γ = 1, λ = 0.95, one row of 3 real tokens (then padding):
 *   r = (0, 0, 1), V = (0.5, 0.6, 0.7), V after the end = 0
 *   δ2 = 1 - 0.7 = 0.3;           A2 = 0.3
 *   δ1 = 0 + 0.7 - 0.6 = 0.1;     A1 = 0.1 + 0.95·0.3 = 0.385
 *   δ0 = 0 + 0.6 - 0.5 = 0.1;     A0 = 0.1 + 0.95·0.385 = 0.46575
 *   returns = A + V = (0.96575, 0.985, 1.0) */
START_TEST(test_gae_gamma_one_by_hand) {
    const float r[4] = {0, 0, 1, 9}, v[4] = {0.5f, 0.6f, 0.7f, 9};
    const int32_t len[1] = {3};
    float a[4], ret[4];
    ppo_compute_gae_sequences(a, ret, r, v, len, 1.0f, 0.95f, 1, 4);
    const double want_a[3] = {0.46575, 0.385, 0.3}, want_r[3] = {0.96575, 0.985, 1.0};
    for (int i = 0; i < 3; i++) {
        ck_assert_close(a[i], want_a[i], 1e-6, 0, "advantage");
        ck_assert_close(ret[i], want_r[i], 1e-6, 0, "return");
    }
    ck_assert_close(a[3], 0.0, 0, 0, "padding");
}
END_TEST

/* x = (1, 2, 3, [100 masked out]): mean 2, sample variance 1.
 *   whitened = (-1, 0, 1) / sqrt(1 + 1e-8); without the shift: + 2. */
START_TEST(test_masked_whitening_by_hand) {
    float x[4] = {1, 2, 3, 100};
    const uint8_t mask[4] = {1, 1, 1, 0};
    ppo_whiten(x, mask, 4, false, PPO_WHITEN_EPS_IN_VAR);
    ck_assert_close(x[0], -1.0, 1e-6, 0, "whitened");
    ck_assert_close(x[2], 1.0, 1e-6, 0, "whitened");
    ck_assert_close(x[3], 100.0, 0, 0, "masked entry untouched");
    float y[3] = {1, 2, 3};
    ppo_whiten(y, NULL, 3, true, PPO_WHITEN_EPS_IN_VAR);
    ck_assert_close(y[0], 1.0, 1e-6, 0, "mean kept");
    ck_assert_close(y[2], 3.0, 1e-6, 0, "mean kept");
    /* Where ε goes matters at a tiny spread: z = (0, 1e-4, 2e-4), mean 1e-4,
     * sample σ = 1e-4. TRL: -1e-4 / sqrt(1e-8 + 1e-8) = -1/√2; CleanRL:
     * -1e-4 / (1e-4 + 1e-8) = -1/1.0001. */
    float z[3] = {0.0f, 1e-4f, 2e-4f}, w[3] = {0.0f, 1e-4f, 2e-4f};
    ppo_whiten(z, NULL, 3, false, PPO_WHITEN_EPS_IN_VAR);
    ppo_whiten(w, NULL, 3, false, PPO_WHITEN_EPS_ON_STD);
    ck_assert_close(z[0], -0.70710678, 1e-5, 0, "eps in the variance");
    ck_assert_close(w[0], -1.0 / 1.0001, 1e-5, 0, "eps on the std");
    ck_assert_close(w[2], 1.0 / 1.0001, 1e-5, 0, "eps on the std");
}
END_TEST

/* Ziegler's controller, target 6, horizon 10000, 512 samples a step:
 *   kl 9:  e = clip(0.5) = 0.2  → β = 0.1 · (1 + 0.2 · 0.0512) = 0.101024
 *   kl 5.4: e = -0.1           → β · (1 - 0.00512)
 *   target 0: fixed. */
START_TEST(test_adaptive_kl_controller_by_hand) {
    ppo_kl_controller c = {0.1, 6.0, 10000.0};
    ppo_kl_controller_update(&c, 9.0, 512);
    ck_assert_close(c.beta, 0.101024, 1e-12, 0, "clipped increase");
    ppo_kl_controller_update(&c, 5.4, 512);
    ck_assert_close(c.beta, 0.101024 * (1 - 0.1 * 0.0512), 1e-12, 0, "decrease");
    ppo_kl_controller fixed = {0.2, 0.0, 10000.0};
    ppo_kl_controller_update(&fixed, 100.0, 512);
    ck_assert_close(fixed.beta, 0.2, 0, 0, "fixed");
}
END_TEST

Suite *rlhf_ppo_suite(void) {
    Suite *s = suite_create("rlhf_ppo");
    TCase *tc = tcase_create("math");
    tcase_add_test(tc, test_kl_estimators_by_hand);
    tcase_add_test(tc, test_reward_shaping_by_hand);
    tcase_add_test(tc, test_gae_gamma_one_by_hand);
    tcase_add_test(tc, test_masked_whitening_by_hand);
    tcase_add_test(tc, test_adaptive_kl_controller_by_hand);
    suite_add_tcase(s, tc);
    return s;
}
