/* DPO losses against hand-worked values, finite differences and the
 * PyTorch reference (tests/reference/dpo_reference.py → tests/fixtures/dpo.json). */
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "dpo.h"
#include "suites.h"
#include "test_util.h"

/* Two pairs, β = 0.5:
 *   pair 0: π_c = -1, π_r = -2, ref = -1.5, -1.5 → h = 1, z = 0.5
 *   pair 1: everything -3                        → h = 0, z = 0
 * sigmoid: loss = (log(1 + e^-0.5) + log 2) / 2 = (0.4740770 + 0.6931472) / 2 = 0.5836121
 *          ∂/∂π_c = β(σ(z) - 1) / 2: (0.5·(0.6224593 - 1)) / 2 = -0.0943852, (0.5·(-0.5)) / 2 =
 * -0.125 rewards: r_c = 0.5·(−1 + 1.5) = 0.25, r_r = −0.25 for pair 0; 0 and 0 for pair 1 (a tie:
 *          not accurate). chosen 0.125, rejected −0.125, accuracies 0.5, margins 0.25,
 *          logps −2 and −2.5. */
START_TEST(test_sigmoid_by_hand) {
    const float pc[2] = {-1, -3}, pr[2] = {-2, -3}, rc[2] = {-1.5f, -3}, rr[2] = {-1.5f, -3};
    const dpo_config cfg = {DPO_LOSS_SIGMOID, 0.5, 0.0};
    float dc[2], dr[2];
    dpo_metrics m;
    const double loss = dpo_loss(&cfg, 2, pc, pr, rc, rr, dc, dr, &m);
    ck_assert_close(loss, 0.5836120823700259, 1e-12, 0, "loss");
    ck_assert_close(m.loss, loss, 0, 0, "metrics loss");
    ck_assert_close(dc[0], -0.09438516719953635, 1e-7, 0, "d chosen 0");
    ck_assert_close(dc[1], -0.125, 1e-7, 0, "d chosen 1");
    ck_assert_close(dr[0], 0.09438516719953635, 1e-7, 0, "d rejected 0");
    ck_assert_close(m.rewards_chosen, 0.125, 1e-12, 0, "rewards/chosen");
    ck_assert_close(m.rewards_rejected, -0.125, 1e-12, 0, "rewards/rejected");
    ck_assert_close(m.rewards_accuracies, 0.5, 0, 0, "rewards/accuracies (a tie is not accurate)");
    ck_assert_close(m.rewards_margins, 0.25, 1e-12, 0, "rewards/margins");
    ck_assert_close(m.logps_chosen, -2.0, 1e-12, 0, "logps/chosen");
    ck_assert_close(m.logps_rejected, -2.5, 1e-12, 0, "logps/rejected");
}
END_TEST

/* Pair 0 alone, β = 0.5:
 *   cDPO ε = 0.1: 0.9·log(1 + e^-0.5) + 0.1·log(1 + e^0.5) = 0.5240770;
 *                 ∂/∂π_c = β(σ(0.5) - 0.9) = -0.1387703
 *   ipo β = 0.25: (h - 1/(2β))² = (1 - 2)² = 1; ∂/∂π_c = 2(h - 2) = -2
 *   hinge β = 0.5: max(0, 1 - 0.5) = 0.5, ∂/∂π_c = -β = -0.5;
 *         β = 2: z = 2 ≥ 1, loss 0, gradient 0 */
START_TEST(test_variants_by_hand) {
    const float pc = -1, pr = -2, rc = -1.5f, rr = -1.5f;
    float dc, dr;
    dpo_config cfg = {DPO_LOSS_SIGMOID, 0.5, 0.1};
    ck_assert_close(dpo_loss(&cfg, 1, &pc, &pr, &rc, &rr, &dc, &dr, NULL), 0.5240769841801067,
                    1e-12, 0, "cdpo loss");
    ck_assert_close(dc, -0.13877033439907271, 1e-7, 0, "cdpo d chosen");
    ck_assert_close(dr, 0.13877033439907271, 1e-7, 0, "cdpo d rejected");
    cfg = (dpo_config){DPO_LOSS_IPO, 0.25, 0};
    ck_assert_close(dpo_loss(&cfg, 1, &pc, &pr, &rc, &rr, &dc, &dr, NULL), 1.0, 1e-12, 0, "ipo");
    ck_assert_close(dc, -2.0, 1e-7, 0, "ipo d chosen");
    ck_assert_close(dr, 2.0, 1e-7, 0, "ipo d rejected");
    cfg = (dpo_config){DPO_LOSS_HINGE, 0.5, 0};
    ck_assert_close(dpo_loss(&cfg, 1, &pc, &pr, &rc, &rr, &dc, &dr, NULL), 0.5, 1e-12, 0, "hinge");
    ck_assert_close(dc, -0.5, 1e-7, 0, "hinge d chosen");
    cfg.beta = 2;
    ck_assert_close(dpo_loss(&cfg, 1, &pc, &pr, &rc, &rr, &dc, &dr, NULL), 0.0, 0, 0, "hinge met");
    ck_assert_close(dc, 0.0, 0, 0, "hinge met: no gradient");
}
END_TEST

typedef struct fd_ctx {
    dpo_config cfg;
    int n;
    float pc[6], pr[6], rc[6], rr[6];
} fd_ctx;

static double fd_loss(void *p) {
    fd_ctx *c = p;
    return dpo_loss(&c->cfg, c->n, c->pc, c->pr, c->rc, c->rr, NULL, NULL, NULL);
}

/* Central differences (h = 1e-3 on log-probs near -3, so float rounding of
 * x ± h costs ~1e-4 relative) for every loss type. The hinge's inputs keep
 * every z at least 0.2 away from the kink at 1. */
START_TEST(test_finite_differences) {
    const dpo_config cfgs[5] = {{DPO_LOSS_SIGMOID, 0.1, 0},
                                {DPO_LOSS_SIGMOID, 1.0, 0.25},
                                {DPO_LOSS_IPO, 0.5, 0},
                                {DPO_LOSS_HINGE, 0.5, 0},
                                {DPO_LOSS_HINGE, 3.0, 0}};
    rng_state rng;
    rng_seed(&rng, 16, 1);
    for (int k = 0; k < 5; k++) {
        fd_ctx c = {.cfg = cfgs[k], .n = 6};
        for (int i = 0; i < 6; i++) {
            do {
                c.pc[i] = (float)rng_next_uniform(&rng, -5, -1);
                c.pr[i] = (float)rng_next_uniform(&rng, -5, -1);
                c.rc[i] = (float)rng_next_uniform(&rng, -5, -1);
                c.rr[i] = (float)rng_next_uniform(&rng, -5, -1);
            } while (fabs(c.cfg.beta * ((c.pc[i] - c.pr[i]) - (c.rc[i] - c.rr[i])) - 1.0) < 0.2);
        }
        float dc[6], dr[6];
        dpo_loss(&c.cfg, 6, c.pc, c.pr, c.rc, c.rr, dc, dr, NULL);
        char what[64];
        snprintf(what, sizeof what, "%s beta %g chosen", dpo_loss_type_name(c.cfg.loss_type),
                 c.cfg.beta);
        test_check_gradient(what, c.pc, dc, 6, fd_loss, &c, 1e-3f, 1e-6, 2e-3);
        snprintf(what, sizeof what, "%s beta %g rejected", dpo_loss_type_name(c.cfg.loss_type),
                 c.cfg.beta);
        test_check_gradient(what, c.pr, dr, 6, fd_loss, &c, 1e-3f, 1e-6, 2e-3);
    }
}
END_TEST

static void read_floats(json_t *case_, const char *key, float *out, int n) {
    json_t *a = json_object_get(case_, key);
    ck_assert_msg(json_is_array(a) && (int)json_array_size(a) == n, "fixture field %s", key);
    for (int i = 0; i < n; i++)
        out[i] = (float)json_number_value(json_array_get(a, (size_t)i));
}

/* The PyTorch reference (float64 autograd on float32 inputs). The loss and
 * the metrics are computed in double here too: 1e-9 relative. Gradients are
 * stored as float: 1e-6 relative (float's 2^-24 ≈ 6e-8 plus the 1/n). */
START_TEST(test_matches_pytorch) {
    char path[4096], err[256];
    snprintf(path, sizeof path, "%s/tests/fixtures/dpo.json", test_repo_dir());
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    ck_assert_msg(root != NULL, "%s: %s", path, jerr.text);
    json_t *cases = json_object_get(root, "cases");
    ck_assert_int_ge((int)json_array_size(cases), 7);
    int seen[3] = {0};
    for (size_t k = 0; k < json_array_size(cases); k++) {
        json_t *c = json_array_get(cases, k);
        dpo_config cfg;
        cfg.loss_type = dpo_loss_type_from_name(json_string_value(json_object_get(c, "loss_type")));
        cfg.beta = json_number_value(json_object_get(c, "beta"));
        cfg.label_smoothing = json_number_value(json_object_get(c, "label_smoothing"));
        ck_assert_msg(dpo_config_validate(&cfg, err, sizeof err) == 0, "%s", err);
        seen[cfg.loss_type]++;
        float pc[8], pr[8], rc[8], rr[8], dc[8], dr[8], want_dc[8], want_dr[8];
        read_floats(c, "policy_chosen", pc, 8);
        read_floats(c, "policy_rejected", pr, 8);
        read_floats(c, "ref_chosen", rc, 8);
        read_floats(c, "ref_rejected", rr, 8);
        read_floats(c, "d_chosen", want_dc, 8);
        read_floats(c, "d_rejected", want_dr, 8);
        dpo_metrics m;
        dpo_loss(&cfg, 8, pc, pr, rc, rr, dc, dr, &m);
        ck_assert_close(m.loss, json_number_value(json_object_get(c, "loss")), 1e-12, 1e-9, "loss");
        for (int i = 0; i < 8; i++) {
            ck_assert_close(dc[i], want_dc[i], 1e-9, 1e-6, "d chosen");
            ck_assert_close(dr[i], want_dr[i], 1e-9, 1e-6, "d rejected");
        }
        ck_assert_close(m.rewards_chosen, json_number_value(json_object_get(c, "rewards_chosen")),
                        1e-12, 1e-9, "rewards/chosen");
        ck_assert_close(m.rewards_rejected,
                        json_number_value(json_object_get(c, "rewards_rejected")), 1e-12, 1e-9,
                        "rewards/rejected");
        ck_assert_close(m.rewards_accuracies,
                        json_number_value(json_object_get(c, "rewards_accuracies")), 0, 0,
                        "rewards/accuracies");
        ck_assert_close(m.rewards_margins, json_number_value(json_object_get(c, "rewards_margins")),
                        1e-12, 1e-9, "rewards/margins");
    }
    ck_assert_msg(seen[0] && seen[1] && seen[2], "fixture covers every loss type");
    json_decref(root);
}
END_TEST

START_TEST(test_validation) {
    char err[128];
    dpo_config cfg = {DPO_LOSS_SIGMOID, 0.1, 0.0};
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), 0);
    cfg.beta = 0;
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "beta: must be a finite number > 0");
    cfg.beta = NAN;
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), -1);
    cfg = (dpo_config){DPO_LOSS_SIGMOID, 0.1, 0.5};
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "label_smoothing: must be in [0, 0.5)");
    cfg = (dpo_config){DPO_LOSS_IPO, 0.1, 0.1};
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "label_smoothing: applies to loss_type sigmoid only (got ipo)");
    cfg = (dpo_config){(dpo_loss_type)7, 0.1, 0};
    ck_assert_int_eq(dpo_config_validate(&cfg, err, sizeof err), -1);
    ck_assert_str_eq(err, "loss_type: must be one of sigmoid, ipo, hinge");
    ck_assert_int_eq(dpo_loss_type_from_name("hinge"), DPO_LOSS_HINGE);
    ck_assert_int_eq(dpo_loss_type_from_name("ipo"), DPO_LOSS_IPO);
    ck_assert_int_eq(dpo_loss_type_from_name("kto"), -1);
}
END_TEST

/* A margin of 2000 nats (β·h = ±200): log σ must not overflow to inf/NaN. */
START_TEST(test_extreme_margins_are_finite) {
    const float pc[2] = {-1, -3000}, pr[2] = {-3000, -1}, rc[2] = {-10, -10}, rr[2] = {-10, -10};
    const dpo_config cfg = {DPO_LOSS_SIGMOID, 0.1, 0.1};
    float dc[2], dr[2];
    const double loss = dpo_loss(&cfg, 2, pc, pr, rc, rr, dc, dr, NULL);
    ck_assert(isfinite(loss) && isfinite(dc[0]) && isfinite(dc[1]));
    /* z = ±299.9: pair 0 costs ε·299.9, pair 1 (1 - ε)·299.9, up to e^-299.9 */
    ck_assert_close(loss, (0.1 * 299.9 + 0.9 * 299.9) / 2, 1e-6, 1e-6, "linear tails");
}
END_TEST

/* ranks (1, 0, 1, 2): response 1 is best, 0 and 2 tie, 3 is worst.
 * C(4, 2) = 6 pairs minus the tie (0, 2) = 5, in (i, j) order:
 * (0,1) → 1 beats 0; (0,3) → 0 beats 3; (1,2) → 1 beats 2; (1,3); (2,3). */
START_TEST(test_pairs_from_ranks) {
    const int rank[4] = {1, 0, 1, 2};
    int w[8], l[8];
    ck_assert_int_eq(dpo_pairs_from_ranks(rank, 4, w, l, 8), 5);
    const int want_w[5] = {1, 0, 1, 1, 2}, want_l[5] = {0, 3, 2, 3, 3};
    for (int i = 0; i < 5; i++) {
        ck_assert_int_eq(w[i], want_w[i]);
        ck_assert_int_eq(l[i], want_l[i]);
    }
    ck_assert_int_eq(dpo_pairs_from_ranks(rank, 4, w, l, 2), 5); /* counts past cap */
    ck_assert_int_eq(w[1], 0);
    const int all_tied[3] = {0, 0, 0};
    ck_assert_int_eq(dpo_pairs_from_ranks(all_tied, 3, w, l, 8), 0);
    const int pair[2] = {1, 0};
    ck_assert_int_eq(dpo_pairs_from_ranks(pair, 2, w, l, 8), 1);
    ck_assert(w[0] == 1 && l[0] == 0);
}
END_TEST

Suite *dpo_suite(void) {
    Suite *s = suite_create("dpo");
    TCase *tc = tcase_create("core");
    tcase_add_test(tc, test_sigmoid_by_hand);
    tcase_add_test(tc, test_variants_by_hand);
    tcase_add_test(tc, test_finite_differences);
    tcase_add_test(tc, test_matches_pytorch);
    tcase_add_test(tc, test_validation);
    tcase_add_test(tc, test_extreme_margins_are_finite);
    tcase_add_test(tc, test_pairs_from_ranks);
    suite_add_tcase(s, tc);
    return s;
}
