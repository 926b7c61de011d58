/* PPO's math against hand-computed values, and short training runs. */
#include <stdlib.h>
#include <string.h>

#include "ppo_control.h"
#include "suites.h"
#include "test_util.h"

/* GAE with γ = 0.9, λ = 0.5 over T = 3 steps of N = 2 envs (index t*2 + n).
 * env 0 terminates at t = 1 (its next value is ignored); t = 2 starts a new
 * episode and bootstraps from V = 0.8:
 *   δ2 = 1 + 0.9·0.8 - 0.7 = 1.02              A2 = 1.02
 *   δ1 = 1 + 0 - 0.6 = 0.4                     A1 = 0.4 (episode ended: no carry)
 *   δ0 = 1 + 0.9·0.6 - 0.5 = 1.04              A0 = 1.04 + 0.45·0.4 = 1.22
 * env 1 is truncated at t = 1 with V(final obs) = 3 — bootstrapped, not zeroed:
 *   δ2 = 1 + 0.9·0.4 - 0.2 = 1.16              A2 = 1.16
 *   δ1 = 2 + 0.9·3 - 0.5 = 4.2                 A1 = 4.2
 *   δ0 = 0 + 0.9·0.5 - 1 = -0.55               A0 = -0.55 + 0.45·4.2 = 1.34 */
START_TEST(test_gae_hand_computed) {
    const float rewards[6] = {1, 0, 1, 2, 1, 1};
    const float values[6] = {0.5f, 1.0f, 0.6f, 0.5f, 0.7f, 0.2f};
    const float next_values[6] = {0.6f, 0.5f, 99.0f, 3.0f, 0.8f, 0.4f};
    const uint8_t terminated[6] = {0, 0, 1, 0, 0, 0};
    const uint8_t ended[6] = {0, 0, 1, 1, 0, 0};
    float adv[6], ret[6];
    ppo_compute_gae(adv, ret, rewards, values, next_values, terminated, ended, 3, 2, 0.9f, 0.5f);
    const double want_adv[6] = {1.22, 1.34, 0.4, 4.2, 1.02, 1.16};
    for (int i = 0; i < 6; i++) {
        ck_assert_close(adv[i], want_adv[i], 1e-6, 1e-6, "advantage");
        ck_assert_close(ret[i], want_adv[i] + values[i], 1e-6, 1e-6, "return");
    }
}
END_TEST

/* λ = 1, γ = 1, no episode end: advantages are reward-to-go + bootstrap - V. */
START_TEST(test_gae_lambda_one_is_monte_carlo) {
    const float rewards[4] = {1, 2, 3, 4}, values[4] = {0.5f, 0.1f, -1, 2};
    const float next_values[4] = {0.1f, -1, 2, 10};
    const uint8_t zeros[4] = {0};
    float adv[4], ret[4];
    ppo_compute_gae(adv, ret, rewards, values, next_values, zeros, zeros, 4, 1, 1.0f, 1.0f);
    ck_assert_close(ret[0], 1 + 2 + 3 + 4 + 10, 1e-5, 0, "return t0");
    ck_assert_close(ret[2], 3 + 4 + 10, 1e-5, 0, "return t2");
}
END_TEST

/* The clipped surrogate, one sample at a time, clip 0.2:
 *   A>0, r=1.5 (above 1+ε): L = max(-3, -2.4) = -2.4, gradient 0
 *   A>0, r=0.5 (below 1-ε): L = max(-1, -1.6) = -1,   gradient -A r = -1
 *   A<0, r=1.5:             L = max(3, 2.4)   = 3,    gradient -A r = 3
 *   A<0, r=0.5:             L = max(1, 1.6)   = 1.6,  gradient 0
 *   A>0, r=1.1 (inside):    L = -2.2,                 gradient -2.2 */
START_TEST(test_policy_loss_four_cases) {
    const struct {
        float adv, ratio, loss, grad;
    } cases[] = {
        {2, 1.5f, -2.4f, 0}, {2, 0.5f, -1, -1},       {-2, 1.5f, 3, 3},
        {-2, 0.5f, 1.6f, 0}, {2, 1.1f, -2.2f, -2.2f},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const float oldlogp = -0.7f, newlogp = oldlogp + logf(cases[k].ratio);
        const float loss = ppo_policy_loss_forward(&newlogp, &oldlogp, &cases[k].adv, 1, 0.2f);
        ck_assert_close(loss, cases[k].loss, 1e-5, 1e-5, "clipped loss");
        float grad = 0.0f;
        ppo_policy_loss_backward(&grad, &newlogp, &oldlogp, &cases[k].adv, 1, 0.2f, 1.0f);
        ck_assert_close(grad, cases[k].grad, 1e-5, 1e-5, "clipped loss gradient");
    }
}
END_TEST

typedef struct loss_case {
    float newlogp[8], oldlogp[8], adv[8], values[8], old_values[8], returns[8];
} loss_case;

static double policy_loss_fd(void *ctx) {
    loss_case *c = ctx;
    return ppo_policy_loss_forward(c->newlogp, c->oldlogp, c->adv, 8, 0.2f);
}

static double value_loss_fd(void *ctx) {
    loss_case *c = ctx;
    return ppo_value_loss_forward(c->values, c->old_values, c->returns, 8, 0.2f, true);
}

/* Batch gradients agree with finite differences away from the kinks. */
START_TEST(test_losses_finite_differences) {
    loss_case c;
    rng_state r;
    rng_seed(&r, 11, 0);
    test_fill_uniform(c.oldlogp, 8, -2, -0.1f, &r);
    test_fill_uniform(c.adv, 8, -2, 2, &r);
    test_fill_uniform(c.values, 8, -1, 1, &r);
    test_fill_uniform(c.returns, 8, -1, 1, &r);
    const float offsets[8] = {0.5f, -0.5f, 0.05f, -0.05f, 0.4f, -0.4f, 0.1f, -0.1f};
    for (int i = 0; i < 8; i++) {
        c.newlogp[i] = c.oldlogp[i] + offsets[i]; /* ratios inside and outside [0.8, 1.2] */
        c.old_values[i] = c.values[i] + offsets[i];
    }
    float g[8] = {0};
    ppo_policy_loss_backward(g, c.newlogp, c.oldlogp, c.adv, 8, 0.2f, 1.0f);
    test_check_gradient("dnewlogp", c.newlogp, g, 8, policy_loss_fd, &c, 1e-3f, 2e-3, 2e-3);
    float gv[8] = {0};
    ppo_value_loss_backward(gv, c.values, c.old_values, c.returns, 8, 0.2f, true, 1.0f);
    test_check_gradient("dvalues", c.values, gv, 8, value_loss_fd, &c, 1e-3f, 2e-3, 2e-3);
}
END_TEST

/* Clipped value loss: v = 1, v_old = 0.5, ε = 0.2 → v_clipped = 0.7.
 *   R = 2: max((1-2)², (0.7-2)²) = 1.69 → L = 0.845, gradient 0 (clipped wins)
 *   R = 0: max(1, 0.49) = 1 → L = 0.5, gradient v - R = 1
 * Unclipped, R = 2: L = 0.5, gradient -1. */
START_TEST(test_value_loss_clipping) {
    const float v = 1.0f, old = 0.5f, r2 = 2.0f, r0 = 0.0f;
    float g = 0.0f;
    ck_assert_close(ppo_value_loss_forward(&v, &old, &r2, 1, 0.2f, true), 0.845, 1e-6, 0, "L");
    ppo_value_loss_backward(&g, &v, &old, &r2, 1, 0.2f, true, 1.0f);
    ck_assert_close(g, 0.0, 0, 0, "clipped gradient");
    ck_assert_close(ppo_value_loss_forward(&v, &old, &r0, 1, 0.2f, true), 0.5, 1e-6, 0, "L");
    ppo_value_loss_backward(&g, &v, &old, &r0, 1, 0.2f, true, 1.0f);
    ck_assert_close(g, 1.0, 1e-6, 0, "unclipped branch gradient");
    g = 0.0f;
    ck_assert_close(ppo_value_loss_forward(&v, &old, &r2, 1, 0.2f, false), 0.5, 1e-6, 0, "L");
    ppo_value_loss_backward(&g, &v, &old, &r2, 1, 0.2f, false, 1.0f);
    ck_assert_close(g, -1.0, 1e-6, 0, "no clipping");
}
END_TEST

/* ---- training runs through a recording sink ------------------------------------- */

typedef struct recording {
    int updates;
    double first_return, last_return;
    double trace[512]; /* every metric value of every update, in order */
    int n_trace;
    int stop_after; /* 0: never */
    int solved_events;
} recording;

static int rec_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    recording *r = ctx;
    (void)step;
    r->updates++;
    for (int i = 0; i < n; i++) {
        if (strcmp(m[i].name, "episodic_return") == 0) {
            if (r->first_return == 0)
                r->first_return = m[i].value;
            r->last_return = m[i].value;
        }
        /* wall-clock metrics (sps, *_s) differ between runs by nature */
        const size_t len = strlen(m[i].name);
        const int timing =
            strcmp(m[i].name, "sps") == 0 || (len > 2 && strcmp(m[i].name + len - 2, "_s") == 0);
        if (!timing && r->n_trace < 512)
            r->trace[r->n_trace++] = m[i].value;
    }
    return 0;
}

static int rec_event(void *ctx, sink_level level, const char *code, const char *message,
                     const sink_metric *data, int n) {
    recording *r = ctx;
    (void)level, (void)message, (void)data, (void)n;
    r->solved_events += strcmp(code, "solved") == 0;
    return 0;
}

static bool rec_should_stop(void *ctx) {
    recording *r = ctx;
    return r->stop_after > 0 && r->updates >= r->stop_after;
}

static ppo_control_result train(ppo_control_config *cfg, recording *rec) {
    train_sink sink = {rec, rec_metrics, rec_event, NULL, rec_should_stop};
    ppo_control_result res;
    char err[256] = "";
    ck_assert_msg(ppo_control_train(cfg, &sink, &res, err, sizeof err) == 0, "train: %s", err);
    return res;
}

/* A short CartPole run (40k steps, about a second) lifts the mean episodic
 * return from a random policy's ~22 to well above 100. */
START_TEST(test_cartpole_return_improves) {
    ppo_control_config cfg;
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    cfg.total_steps = 40960;
    recording rec = {0};
    ppo_control_result res = train(&cfg, &rec);
    ck_assert_int_eq(res.global_step, 40960);
    ck_assert_int_eq(rec.updates, 80);
    ck_assert_double_lt(rec.first_return, 40.0);
    ck_assert_msg(rec.last_return > 100.0, "mean return %.1f after 40k steps", rec.last_return);
}
END_TEST

/* Same seed, same thread count: bit-identical metrics. Another seed: not. */
START_TEST(test_training_is_reproducible) {
    ppo_control_config cfg;
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    cfg.total_steps = 4 * 512;
    recording a = {0}, b = {0}, c = {0};
    train(&cfg, &a);
    train(&cfg, &b);
    cfg.seed = 2;
    train(&cfg, &c);
    ck_assert_int_eq(a.n_trace, b.n_trace);
    ck_assert_int_gt(a.n_trace, 40);
    ck_assert_int_eq(memcmp(a.trace, b.trace, sizeof(double) * (size_t)a.n_trace), 0);
    ck_assert_int_ne(memcmp(a.trace, c.trace, sizeof(double) * (size_t)a.n_trace), 0);
}
END_TEST

/* should_stop ends training after the current update; target_return ends it
 * at the first greedy evaluation that reaches the target. */
START_TEST(test_training_stops_on_request_and_on_solve) {
    ppo_control_config cfg;
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    recording rec = {.stop_after = 3};
    ppo_control_result res = train(&cfg, &rec);
    ck_assert(res.stopped);
    ck_assert_int_eq(res.updates, 3);
    cfg.eval_interval = 1;
    cfg.target_return = 475;
    recording solve = {0};
    res = train(&cfg, &solve);
    ck_assert(res.solved);
    ck_assert_int_eq(solve.solved_events, 1);
    ck_assert_int_lt(res.solved_step, cfg.total_steps);
    ck_assert_double_ge(res.eval_return, 475.0);
    ck_assert_int_eq(res.global_step, res.solved_step);
}
END_TEST

START_TEST(test_config_validation) {
    ppo_control_config cfg;
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    char err[256];
    ck_assert_int_eq(ppo_control_validate(&cfg, err, sizeof err), 0);
    cfg.num_minibatches = 3; /* 512 is not divisible by 3 */
    ck_assert_int_eq(ppo_control_validate(&cfg, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "num_minibatches"));
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    cfg.target_return = 100;
    ck_assert_int_eq(ppo_control_validate(&cfg, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "eval_interval"));
}
END_TEST

Suite *ppo_suite(void) {
    Suite *s = suite_create("ppo");
    TCase *math = tcase_create("math");
    tcase_add_test(math, test_gae_hand_computed);
    tcase_add_test(math, test_gae_lambda_one_is_monte_carlo);
    tcase_add_test(math, test_policy_loss_four_cases);
    tcase_add_test(math, test_losses_finite_differences);
    tcase_add_test(math, test_value_loss_clipping);
    tcase_add_test(math, test_config_validation);
    suite_add_tcase(s, math);
    TCase *runs = tcase_create("training");
    tcase_set_timeout(runs, 120);
    tcase_add_test(runs, test_cartpole_return_improves);
    tcase_add_test(runs, test_training_is_reproducible);
    tcase_add_test(runs, test_training_stops_on_request_and_on_solve);
    suite_add_tcase(s, runs);
    return s;
}
