/* PPO's math against hand-computed values, and short training runs. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ppo.h"
#include "ppo_control.h"
#include "safetensors.h"
#include "suites.h"
#include "test_util.h"
#include "train_state.h"

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
    train_sink sink = {rec, rec_metrics, rec_event, NULL, rec_should_stop, NULL, NULL, NULL};
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
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    snprintf(cfg.algorithm, sizeof cfg.algorithm, "a2c");
    cfg.num_minibatches = 3; /* a2c takes one step on the whole batch: not checked */
    ck_assert_int_eq(ppo_control_validate(&cfg, err, sizeof err), 0);
    cfg.num_envs = 1, cfg.num_steps = 1;
    ck_assert_int_eq(ppo_control_validate(&cfg, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "a2c"));
}
END_TEST

/* ---- resume --------------------------------------------------------------------- */

enum { A2C_STEPS = 40000, A2C_RETURN = 100 };

/* Every update's non-timing metrics (row = update) and every checkpoint. */
enum { MAX_UPDATES = 16, MAX_METRICS = 32, MAX_CKPT = 16 };
typedef struct resume_rec {
    double rows[MAX_UPDATES + 1][MAX_METRICS];
    int row_len[MAX_UPDATES + 1];
    int64_t updates;
    int64_t stop_after; /* 0: never */
    int n_ckpt;
    int64_t ckpt_step[MAX_CKPT];
    void *ckpt[MAX_CKPT];
    size_t ckpt_bytes[MAX_CKPT];
} resume_rec;

static int rr_metrics(void *ctx, int64_t step, const sink_metric *m, int n) {
    resume_rec *r = ctx;
    (void)step;
    ck_assert_str_eq(m[0].name, "update");
    const int64_t u = (int64_t)m[0].value;
    ck_assert_int_le(u, MAX_UPDATES);
    r->updates = u;
    r->row_len[u] = 0;
    for (int i = 0; i < n; i++) {
        const size_t len = strlen(m[i].name);
        if (strcmp(m[i].name, "sps") == 0 || (len > 2 && strcmp(m[i].name + len - 2, "_s") == 0))
            continue;
        r->rows[u][r->row_len[u]++] = m[i].value;
    }
    return 0;
}

static int rr_checkpoint(void *ctx, int64_t step, const void *bytes, size_t n) {
    resume_rec *r = ctx;
    ck_assert_int_lt(r->n_ckpt, MAX_CKPT);
    r->ckpt_step[r->n_ckpt] = step;
    r->ckpt[r->n_ckpt] = malloc(n);
    memcpy(r->ckpt[r->n_ckpt], bytes, n);
    r->ckpt_bytes[r->n_ckpt++] = n;
    return 0;
}

static bool rr_should_stop(void *ctx) {
    resume_rec *r = ctx;
    return r->stop_after > 0 && r->updates >= r->stop_after;
}

static void rr_free(resume_rec *r) {
    for (int i = 0; i < r->n_ckpt; i++)
        free(r->ckpt[i]);
}

static int rr_train(const ppo_control_config *cfg, const char *resume, resume_rec *r,
                    ppo_control_result *res, char *err, size_t errlen) {
    const train_sink sink = {r, rr_metrics, NULL, rr_checkpoint, rr_should_stop, NULL, NULL, NULL};
    return ppo_control_train_resume(cfg, resume, &sink, res, err, errlen);
}

static void rr_train_ok(const ppo_control_config *cfg, const char *resume, resume_rec *r,
                        ppo_control_result *res) {
    char err[512] = "";
    ck_assert_msg(rr_train(cfg, resume, r, res, err, sizeof err) == 0, "train: %s", err);
}

static void save_tmp(char *path, const void *bytes, size_t n) {
    strcpy(path, "/tmp/rlhf-ppo-control-XXXXXX");
    const int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    ck_assert_int_eq(write(fd, bytes, n), (ssize_t)n);
    close(fd);
}

static bool same_bytes(const resume_rec *a, int i, const resume_rec *b, int j) {
    return a->ckpt_step[i] == b->ckpt_step[j] && a->ckpt_bytes[i] == b->ckpt_bytes[j] &&
           memcmp(a->ckpt[i], b->ckpt[j], a->ckpt_bytes[i]) == 0;
}

/* Updates from..to have the same metrics, bit for bit. */
static void assert_same_rows(const resume_rec *a, const resume_rec *b, int64_t from, int64_t to,
                             const char *what) {
    for (int64_t u = from; u <= to; u++) {
        ck_assert_int_gt(a->row_len[u], 10);
        ck_assert_msg(a->row_len[u] == b->row_len[u] &&
                          memcmp(a->rows[u], b->rows[u], sizeof(double) * (size_t)a->row_len[u]) ==
                              0,
                      "%s: the metrics of update %lld differ", what, (long long)u);
    }
}

static void small_resume_config(ppo_control_config *cfg, const char *env) {
    hparams_set_defaults(&ppo_control_hparams, cfg);
    snprintf(cfg->env, sizeof cfg->env, "%s", env);
    cfg->num_envs = 3, cfg->num_steps = 64, cfg->num_minibatches = 4, cfg->update_epochs = 2;
    cfg->total_steps = 8 * 3 * 64; /* 8 updates */
    cfg->eval_interval = 3, cfg->eval_episodes = 4;
    cfg->checkpoint_interval = 1;
    cfg->keep_best = false; /* test_keep_best covers the best-policy checkpoints */
}

/* Resumed from the periodic checkpoint of each update 1..7 (mid-episode: on
 * Acrobot every env is 64 k steps into its first episode, truncated at 500
 * during update 8; CartPole's episodes end at random points; evaluations at
 * updates 3 and 6 advance the evaluation seed), the run writes the same
 * later checkpoints and metrics, bit for bit. Checkpointing itself changes
 * nothing: the final weights equal those of a run without it. */
START_TEST(test_resume_is_bit_identical) {
    static const char *const envs[] = {"CartPole-v1", "Acrobot-v1"};
    for (int e = 0; e < 2; e++) {
        ppo_control_config cfg;
        small_resume_config(&cfg, envs[e]);
        cfg.shared_trunk = e == 1;
        cfg.target_kl = e == 0 ? 0.005 : 0.0; /* early stops leave adam_t behind the update count */
        resume_rec whole = {0};
        ppo_control_result wres;
        rr_train_ok(&cfg, NULL, &whole, &wres);
        ck_assert_int_eq(whole.n_ckpt, 8); /* updates 1-7 with state, then the final one */
        ck_assert_int_eq(wres.updates, 8);
        for (int k = 0; k < 8; k++)
            ck_assert_int_eq(whole.ckpt_step[k], (k + 1) * 192);
        ppo_control_config plain = cfg;
        plain.checkpoint_interval = 0;
        resume_rec unsaved = {0};
        rr_train_ok(&plain, NULL, &unsaved, NULL);
        ck_assert_int_eq(unsaved.n_ckpt, 1);
        ck_assert_msg(same_bytes(&whole, 7, &unsaved, 0), "%s: checkpointing changed training",
                      envs[e]);
        assert_same_rows(&whole, &unsaved, 1, 8, envs[e]);
        for (int k = 1; k <= 7; k++) {
            char path[64];
            save_tmp(path, whole.ckpt[k - 1], whole.ckpt_bytes[k - 1]);
            resume_rec rest = {0};
            ppo_control_result rres;
            rr_train_ok(&cfg, path, &rest, &rres);
            unlink(path);
            ck_assert_int_eq(rest.n_ckpt, 8 - k);
            for (int i = 0; i < rest.n_ckpt; i++)
                ck_assert_msg(same_bytes(&whole, k + i, &rest, i),
                              "%s resumed at update %d: checkpoint %d differs", envs[e], k, i);
            assert_same_rows(&whole, &rest, k + 1, 8, envs[e]);
            ck_assert_int_eq(rest.row_len[k], 0); /* nothing redone */
            ck_assert_int_eq(rres.updates, wres.updates);
            ck_assert_int_eq(rres.global_step, wres.global_step);
            ck_assert(rres.episodic_return == wres.episodic_return);
            ck_assert(rres.eval_return == wres.eval_return);
            rr_free(&rest);
        }
        rr_free(&whole), rr_free(&unsaved);
    }
}
END_TEST

/* A stop request's checkpoint carries the state and resumes exactly; other
 * hyperparameters, a finished run's weights-only checkpoint and a damaged
 * state are refused with a message saying so. */
START_TEST(test_resume_after_stop_and_refusals) {
    ppo_control_config cfg;
    small_resume_config(&cfg, "CartPole-v1");
    cfg.checkpoint_interval = 0;
    resume_rec whole = {0}, first = {.stop_after = 3}, rest = {0};
    rr_train_ok(&cfg, NULL, &whole, NULL);
    ppo_control_result fres;
    rr_train_ok(&cfg, NULL, &first, &fres);
    ck_assert(fres.stopped);
    ck_assert_int_eq(first.n_ckpt, 1);
    ck_assert_int_eq(first.ckpt_step[0], 3 * 192);
    char path[64];
    save_tmp(path, first.ckpt[0], first.ckpt_bytes[0]);
    rr_train_ok(&cfg, path, &rest, NULL);
    ck_assert(same_bytes(&whole, 0, &rest, 0));
    assert_same_rows(&whole, &rest, 4, 8, "stopped and resumed");

    char err[512];
    resume_rec scratch = {0};
    ppo_control_config other = cfg;
    other.clip_coef = 0.3;
    ck_assert_int_eq(rr_train(&other, path, &scratch, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "hyperparameters differ"));
    /* a damaged episode step count: one value of the list made unparsable */
    char *bytes = malloc(first.ckpt_bytes[0]);
    memcpy(bytes, first.ckpt[0], first.ckpt_bytes[0]);
    const char *key = "\"training_state.env_elapsed\":\"";
    char *at = memmem(bytes, first.ckpt_bytes[0], key, strlen(key));
    ck_assert_ptr_nonnull(at);
    at[strlen(key)] = 'x';
    unlink(path);
    save_tmp(path, bytes, first.ckpt_bytes[0]);
    free(bytes);
    ck_assert_int_eq(rr_train(&cfg, path, &scratch, NULL, err, sizeof err), -1);
    ck_assert_msg(strstr(err, "training state is incomplete or malformed"), "%s", err);
    unlink(path);
    save_tmp(path, whole.ckpt[0], whole.ckpt_bytes[0]);
    ck_assert_int_eq(rr_train(&cfg, path, &scratch, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "no training state"));
    unlink(path);
    ck_assert_int_eq(rr_train(&cfg, "/nonexistent/ckpt", &scratch, NULL, err, sizeof err), -1);
    ck_assert_ptr_nonnull(strstr(err, "/nonexistent/ckpt"));
    ck_assert_int_eq(scratch.n_ckpt, 0); /* nothing trained, nothing written */
    rr_free(&whole), rr_free(&first), rr_free(&rest);
}
END_TEST

/* ---- A2C and the best-evaluated policy ------------------------------------------ */

/* The policy tensors of a checkpoint (every tensor not training_state.*). */
static void policy_floats(const void *bytes, size_t n, float **out, int64_t *count) {
    safetensors_file f;
    char err[256];
    ck_assert_msg(safetensors_parse(&f, bytes, n, err, sizeof err) == 0, "%s", err);
    *count = 0;
    *out = NULL;
    for (int i = 0; i < f.n_tensors; i++) {
        const safetensors_info *t = &f.tensors[i];
        if (strncmp(t->name, "training_state.", 15) == 0)
            continue;
        *out = realloc(*out, sizeof(float) * (size_t)(*count + t->n_elements));
        ck_assert_int_eq(safetensors_load_f32(t, *out + *count, t->n_elements, err, sizeof err), 0);
        *count += t->n_elements;
    }
    safetensors_free(&f);
}

static double max_rel_policy_diff(const resume_rec *a, int i, const resume_rec *b, int j) {
    float *x, *y;
    int64_t nx, ny;
    policy_floats(a->ckpt[i], a->ckpt_bytes[i], &x, &nx);
    policy_floats(b->ckpt[j], b->ckpt_bytes[j], &y, &ny);
    ck_assert_int_eq(nx, ny);
    ck_assert_int_gt(nx, 100);
    const double d = test_max_rel_diff(x, y, nx);
    free(x), free(y);
    return d;
}

/* On policy (ratio 1) with one epoch of one minibatch, PPO's clipped
 * surrogate has A2C's gradient -A · grad log pi and the clipped value loss
 * the plain one's, so a2c must train the weights PPO(1 epoch, 1 minibatch)
 * trains, up to float rounding of the ratio; update_epochs and
 * num_minibatches must not matter to a2c; default PPO (4 x 4 steps) must
 * end elsewhere. */
START_TEST(test_a2c_is_one_step_actor_critic) {
    ppo_control_config a2c;
    small_resume_config(&a2c, "CartPole-v1");
    a2c.checkpoint_interval = 0, a2c.eval_interval = 0;
    a2c.total_steps = 3 * 3 * 64;
    snprintf(a2c.algorithm, sizeof a2c.algorithm, "a2c");
    ppo_control_config a2c_more = a2c;
    a2c_more.update_epochs = 7, a2c_more.num_minibatches = 3, a2c_more.clip_coef = 0.01;
    ppo_control_config one_step = a2c;
    snprintf(one_step.algorithm, sizeof one_step.algorithm, "ppo");
    one_step.update_epochs = 1, one_step.num_minibatches = 1, one_step.target_kl = 0;
    ppo_control_config ppo = one_step;
    ppo.update_epochs = 4, ppo.num_minibatches = 4;
    resume_rec ra = {0}, rm = {0}, r1 = {0}, rp = {0};
    rr_train_ok(&a2c, NULL, &ra, NULL);
    rr_train_ok(&a2c_more, NULL, &rm, NULL);
    rr_train_ok(&one_step, NULL, &r1, NULL);
    rr_train_ok(&ppo, NULL, &rp, NULL);
    ck_assert_int_eq(ra.n_ckpt, 1);
    ck_assert_msg(same_bytes(&ra, 0, &rm, 0), "a2c used update_epochs / num_minibatches / clip");
    const double d1 = max_rel_policy_diff(&ra, 0, &r1, 0);
    const double dp = max_rel_policy_diff(&ra, 0, &rp, 0);
    ck_assert_msg(d1 < 1e-4, "a2c vs one-step PPO: max relative weight difference %.3g", d1);
    ck_assert_msg(dp > 1e-3, "a2c vs 4x4 PPO: max relative weight difference only %.3g", dp);
    rr_free(&ra), rr_free(&rm), rr_free(&r1), rr_free(&rp);
}
END_TEST

/* A2C with Stable-Baselines3's CartPole settings (8 envs x 5 steps, lr
 * 7e-4, gae_lambda 1, no entropy bonus, raw advantages) learns too. */
START_TEST(test_a2c_learns_cartpole) {
    ppo_control_config cfg;
    hparams_set_defaults(&ppo_control_hparams, &cfg);
    snprintf(cfg.algorithm, sizeof cfg.algorithm, "a2c");
    cfg.num_envs = 8, cfg.num_steps = 5, cfg.learning_rate = 7e-4, cfg.anneal_lr = false;
    cfg.gae_lambda = 1.0, cfg.ent_coef = 0.0, cfg.norm_adv = false;
    cfg.total_steps = A2C_STEPS;
    recording rec = {0};
    ppo_control_result res = train(&cfg, &rec);
    ck_assert_int_eq(res.global_step, A2C_STEPS);
    ck_assert_double_lt(rec.first_return, 40.0);
    ck_assert_msg(rec.last_return > A2C_RETURN, "a2c: mean return %.1f -> %.1f after %d steps",
                  rec.first_return, rec.last_return, A2C_STEPS);
}
END_TEST

/* With keep_best, each evaluation that beats every earlier one emits the
 * policy of that moment (the same weights as the periodic checkpoint of
 * the same update) marked checkpoint_role best with its eval_return, and
 * only those; the result names the best; a resumed run writes the same
 * later checkpoints, best ones included, bit for bit. */
START_TEST(test_keep_best) {
    ppo_control_config cfg;
    small_resume_config(&cfg, "CartPole-v1");
    cfg.keep_best = true, cfg.eval_interval = 1, cfg.eval_episodes = 3;
    resume_rec whole = {0};
    ppo_control_result res;
    rr_train_ok(&cfg, NULL, &whole, &res);
    double best = NAN;
    int64_t best_step = 0;
    int bests = 0, periodic = 0;
    for (int i = 0; i < whole.n_ckpt; i++) {
        safetensors_file f;
        char err[256];
        ck_assert_int_eq(safetensors_parse(&f, whole.ckpt[i], whole.ckpt_bytes[i], err, sizeof err),
                         0);
        const char *role = safetensors_metadata_get(&f, "checkpoint_role");
        const char *ret = safetensors_metadata_get(&f, "eval_return");
        if (role != NULL) {
            ck_assert_str_eq(role, "best");
            ck_assert_ptr_nonnull(ret);
            const double r = strtod(ret, NULL);
            ck_assert_msg(isnan(best) || r > best, "best %.3f after %.3f", r, best);
            best = r, best_step = whole.ckpt_step[i], bests++;
            /* the next checkpoint is the periodic one of the same update */
            ck_assert_int_lt(i + 1, whole.n_ckpt);
            ck_assert_int_eq(whole.ckpt_step[i + 1], whole.ckpt_step[i]);
            ck_assert_msg(max_rel_policy_diff(&whole, i, &whole, i + 1) == 0.0,
                          "the best checkpoint is not the policy of its update");
        } else
            periodic++;
        safetensors_free(&f);
    }
    ck_assert_int_ge(bests, 2);
    ck_assert_int_eq(periodic, 8);
    ck_assert(res.best_eval_return == best);
    ck_assert_int_eq(res.best_step, best_step);
    /* resumed after update 4: the checkpoints after its periodic one are the same */
    int after = 0;
    for (int seen = 0; after < whole.n_ckpt && seen < 4; after++)
        if (whole.ckpt_step[after] == 4 * 192 &&
            (after + 1 == whole.n_ckpt || whole.ckpt_step[after + 1] != 4 * 192))
            seen = 4;
    char path[64];
    save_tmp(path, whole.ckpt[after - 1], whole.ckpt_bytes[after - 1]);
    resume_rec rest = {0};
    ppo_control_result rres;
    rr_train_ok(&cfg, path, &rest, &rres);
    unlink(path);
    ck_assert_int_eq(rest.n_ckpt, whole.n_ckpt - after);
    for (int i = 0; i < rest.n_ckpt; i++)
        ck_assert_msg(same_bytes(&whole, after + i, &rest, i), "resumed: checkpoint %d differs", i);
    ck_assert(rres.best_eval_return == res.best_eval_return);
    ck_assert_int_eq(rres.best_step, res.best_step);
    rr_free(&whole), rr_free(&rest);
}
END_TEST

/* The metadata list helpers round-trip exactly and refuse what they did not write. */
START_TEST(test_train_state_lists) {
    const double x[] = {0.0, -0.0, 1.0 / 3.0, -DBL_MAX, DBL_MIN / 8, INFINITY, -INFINITY, 1e300};
    const int n = (int)(sizeof x / sizeof x[0]);
    char *t = train_state_format_f64s(x, n);
    ck_assert_ptr_nonnull(t);
    double y[8];
    ck_assert_int_eq(train_state_parse_f64s(y, n, t), 0);
    ck_assert_int_eq(memcmp(x, y, sizeof x), 0); /* bit for bit, signed zero included */
    ck_assert_int_eq(train_state_parse_f64s(y, n - 1, t), -1);
    ck_assert_int_eq(train_state_parse_f64s(y, n + 1, t), -1);
    free(t);
    double nan_in = NAN, nan_out = 0.0;
    t = train_state_format_f64s(&nan_in, 1);
    ck_assert_int_eq(train_state_parse_f64s(&nan_out, 1, t), 0);
    ck_assert(isnan(nan_out));
    free(t);
    const int64_t k[] = {0, 7, -3, INT64_MAX};
    int64_t k2[4];
    t = train_state_format_i64s(k, 4);
    ck_assert_str_eq(t, "0,7,-3,9223372036854775807");
    ck_assert_int_eq(train_state_parse_i64s(k2, 4, t), 0);
    ck_assert_int_eq(memcmp(k, k2, sizeof k), 0);
    free(t);
    ck_assert_int_eq(train_state_parse_i64s(k2, 2, "1,,2"), -1);
    ck_assert_int_eq(train_state_parse_i64s(k2, 2, "1,2,"), -1);
    ck_assert_int_eq(train_state_parse_i64s(k2, 2, "1,2x"), -1);
    ck_assert_int_eq(train_state_parse_i64s(k2, 1, "99999999999999999999"), -1);
    ck_assert_int_eq(train_state_parse_i64s(k2, 1, NULL), -1);
    t = train_state_format_i64s(k, 0);
    ck_assert_str_eq(t, "");
    ck_assert_int_eq(train_state_parse_i64s(k2, 0, t), 0);
    free(t);
    rng_state r[3], r2[3];
    for (int i = 0; i < 3; i++)
        rng_seed(&r[i], 42, (uint64_t)i);
    t = train_state_format_rngs(r, 3);
    ck_assert_int_eq(train_state_parse_rngs(r2, 3, t), 0);
    ck_assert_int_eq(memcmp(r, r2, sizeof r), 0);
    ck_assert_int_eq(train_state_parse_rngs(r2, 2, t), -1);
    free(t);
}
END_TEST

Suite *ppo_control_suite(void) {
    Suite *s = suite_create("ppo_control");
    TCase *math = tcase_create("math");
    tcase_add_test(math, test_gae_hand_computed);
    tcase_add_test(math, test_gae_lambda_one_is_monte_carlo);
    tcase_add_test(math, test_policy_loss_four_cases);
    tcase_add_test(math, test_losses_finite_differences);
    tcase_add_test(math, test_value_loss_clipping);
    tcase_add_test(math, test_config_validation);
    tcase_add_test(math, test_train_state_lists);
    suite_add_tcase(s, math);
    TCase *runs = tcase_create("training");
    tcase_set_timeout(runs, 120);
    tcase_add_test(runs, test_cartpole_return_improves);
    tcase_add_test(runs, test_training_is_reproducible);
    tcase_add_test(runs, test_training_stops_on_request_and_on_solve);
    tcase_add_test(runs, test_resume_is_bit_identical);
    tcase_add_test(runs, test_resume_after_stop_and_refusals);
    tcase_add_test(runs, test_a2c_is_one_step_actor_critic);
    tcase_add_test(runs, test_a2c_learns_cartpole);
    tcase_add_test(runs, test_keep_best);
    suite_add_tcase(s, runs);
    return s;
}
