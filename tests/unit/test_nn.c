/* Layers against naive loops, hand-computed values and central finite
 * differences. FD tolerance: float32 forward passes with h = 1e-2 on O(1)
 * inputs give numeric derivatives good to ~1e-3 relative; a wrong formula is
 * off by O(1). */
#include <stdlib.h>
#include <string.h>

#include "actor_critic.h"
#include "nn.h"
#include "suites.h"
#include "test_util.h"

/* ---- dense ---------------------------------------------------------------- */

enum { DB = 3, DC = 5, DOC = 4 };

typedef struct dense_case {
    float inp[DB * DC], w[DOC * DC], b[DOC], out[DB * DOC], probe[DB * DOC];
} dense_case;

/* loss = Σ probe ⊙ dense(inp): a random linear functional of the output, so
 * dloss/dout = probe. */
static double dense_loss(void *ctx) {
    dense_case *c = ctx;
    dense_forward(c->out, c->inp, c->w, c->b, DB, DC, DOC);
    double s = 0.0;
    for (int i = 0; i < DB * DOC; i++)
        s += (double)c->probe[i] * c->out[i];
    return s;
}

START_TEST(test_dense_forward_matches_naive) {
    rng_state r;
    rng_seed(&r, 1, 0);
    dense_case c;
    test_fill_uniform(c.inp, DB * DC, -1, 1, &r);
    test_fill_uniform(c.w, DOC * DC, -1, 1, &r);
    test_fill_uniform(c.b, DOC, -1, 1, &r);
    dense_forward(c.out, c.inp, c.w, c.b, DB, DC, DOC);
    for (int b = 0; b < DB; b++)
        for (int o = 0; o < DOC; o++) {
            double s = c.b[o];
            for (int i = 0; i < DC; i++)
                s += (double)c.inp[b * DC + i] * c.w[o * DC + i];
            ck_assert_close(c.out[b * DOC + o], s, 1e-6, 1e-6, "dense out");
        }
    dense_forward(c.out, c.inp, c.w, NULL, DB, DC, DOC); /* no bias */
    double s = 0.0;
    for (int i = 0; i < DC; i++)
        s += (double)c.inp[i] * c.w[i];
    ck_assert_close(c.out[0], s, 1e-6, 1e-6, "dense out without bias");
}
END_TEST

START_TEST(test_dense_backward_finite_differences) {
    rng_state r;
    rng_seed(&r, 2, 0);
    dense_case c;
    test_fill_uniform(c.inp, DB * DC, -1, 1, &r);
    test_fill_uniform(c.w, DOC * DC, -1, 1, &r);
    test_fill_uniform(c.b, DOC, -1, 1, &r);
    test_fill_uniform(c.probe, DB * DOC, -1, 1, &r);
    float dinp[DB * DC] = {0}, dw[DOC * DC] = {0}, db[DOC] = {0};
    dense_backward(dinp, dw, db, c.probe, c.inp, c.w, DB, DC, DOC);
    test_check_gradient("dinp", c.inp, dinp, DB * DC, dense_loss, &c, 1e-2f, 1e-3, 1e-3);
    test_check_gradient("dweight", c.w, dw, DOC * DC, dense_loss, &c, 1e-2f, 1e-3, 1e-3);
    test_check_gradient("dbias", c.b, db, DOC, dense_loss, &c, 1e-2f, 1e-3, 1e-3);
    /* Backward accumulates: a second call doubles every gradient. */
    float dw2[DOC * DC];
    memcpy(dw2, dw, sizeof dw);
    dense_backward(NULL, dw2, NULL, c.probe, c.inp, c.w, DB, DC, DOC);
    for (int i = 0; i < DOC * DC; i++)
        ck_assert_close(dw2[i], 2.0 * dw[i], 1e-6, 1e-6, "accumulated dweight");
}
END_TEST

/* ---- activations ------------------------------------------------------------- */

typedef struct act_case {
    activation_kind kind;
    float x[16], y[16], probe[16];
} act_case;

static double act_loss(void *ctx) {
    act_case *c = ctx;
    activation_forward(c->kind, c->y, c->x, 16);
    double s = 0.0;
    for (int i = 0; i < 16; i++)
        s += (double)c->probe[i] * c->y[i];
    return s;
}

START_TEST(test_activation_values_and_gradients) {
    rng_state r;
    rng_seed(&r, 3, 0);
    const activation_kind kinds[] = {ACTIVATION_TANH, ACTIVATION_RELU, ACTIVATION_GELU};
    for (int k = 0; k < 3; k++) {
        act_case c = {.kind = kinds[k]};
        test_fill_uniform(c.x, 16, -3, 3, &r);
        for (int i = 0; i < 16; i++) /* keep relu's kink out of the FD stencil */
            if (fabsf(c.x[i]) < 0.05f)
                c.x[i] = 0.5f;
        test_fill_uniform(c.probe, 16, -1, 1, &r);
        activation_forward(c.kind, c.y, c.x, 16);
        for (int i = 0; i < 16; i++) {
            double x = c.x[i];
            double want = c.kind == ACTIVATION_TANH ? tanh(x)
                          : c.kind == ACTIVATION_RELU
                              ? (x > 0 ? x : 0)
                              : 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
            ck_assert_close(c.y[i], want, 1e-6, 1e-6, activation_name(c.kind));
        }
        float dx[16] = {0};
        activation_backward(c.kind, dx, c.probe, c.x, c.y, 16);
        test_check_gradient(activation_name(c.kind), c.x, dx, 16, act_loss, &c, 1e-2f, 2e-3, 2e-3);
    }
}
END_TEST

/* The rational tanh stays within 4e-7 of tanh over the whole float line. */
START_TEST(test_tanh_rational_error_bound) {
    double worst = 0.0;
    for (float x = -20.0f; x <= 20.0f; x += 1.0f / 1024.0f) {
        double e = fabs((double)nn_tanhf(x) - tanh((double)x));
        worst = e > worst ? e : worst;
    }
    ck_assert_double_lt(worst, 4e-7);
    ck_assert_float_eq(nn_tanhf(0.0f), 0.0f);
    ck_assert_float_eq(nn_tanhf(100.0f), -nn_tanhf(-100.0f));
}
END_TEST

/* The vectorised row reductions: exp within 2e-7 relative of exp() across
 * the range softmax uses, sums and maxima equal to plain loops. */
START_TEST(test_row_reductions) {
    enum { N = 50257 };
    static float x[N], e[N];
    rng_state r;
    rng_seed(&r, 9, 0);
    test_fill_uniform(x, N, -30.0f, 5.0f, &r);
    x[123] = 7.5f;
    ck_assert_float_eq(nn_max(x, N), 7.5f);
    ck_assert_float_eq(nn_max(x, 3), fmaxf(fmaxf(x[0], x[1]), x[2]));
    const float sum = nn_exp_sum(e, x, N, 7.5f);
    double want = 0.0, worst = 0.0;
    for (int i = 0; i < N; i++) {
        const double t = exp((double)(x[i] - 7.5f)); /* the float difference exp sees */
        want += t;
        worst = fmax(worst, fabs(e[i] - t) / t);
    }
    ck_assert_double_lt(worst, 2e-7);
    ck_assert_close(sum, want, 0, 1e-5, "exp sum");
    double d = 0.0;
    for (int i = 0; i < N; i++)
        d += (double)e[i] * x[i];
    ck_assert_close(nn_dot(e, x, N), d, 0, 1e-5, "dot");
    float tiny[2] = {-1000.0f, 0.0f}, out[2];
    ck_assert_close(nn_exp_sum(out, tiny, 2, 0.0f), 1.0, 1e-30, 1e-7, "underflow is harmless");
}
END_TEST

/* ---- softmax, categorical -------------------------------------------------------- */

START_TEST(test_log_softmax_hand_values) {
    /* logits [1, 2, 3]: log Σ e^z = 3 + log(1 + e^-1 + e^-2) = 3.40760596 */
    const float z[3] = {1, 2, 3};
    float lp[3], p[3];
    log_softmax_forward(lp, z, 1, 3);
    softmax_forward(p, z, 1, 3);
    const double lse = 3.40760596444438;
    for (int j = 0; j < 3; j++) {
        ck_assert_close(lp[j], z[j] - lse, 1e-6, 0, "log_softmax");
        ck_assert_close(p[j], exp(z[j] - lse), 1e-7, 1e-6, "softmax");
    }
    /* Shift invariance and no overflow at large logits. */
    const float big[3] = {1001, 1002, 1003};
    float lpb[3];
    log_softmax_forward(lpb, big, 1, 3);
    for (int j = 0; j < 3; j++)
        ck_assert_close(lpb[j], lp[j], 1.2e-4, 0, "log_softmax at 1000+"); /* 2 ulp at 1000 */
}
END_TEST

enum { SB = 2, SV = 5 };
typedef struct softmax_case {
    float z[SB * SV], lp[SB * SV], probe[SB * SV], h[SB], hprobe[SB];
    int entropy; /* 0: Σ probe·logp; 1: Σ hprobe·H */
} softmax_case;

static double softmax_loss(void *ctx) {
    softmax_case *c = ctx;
    log_softmax_forward(c->lp, c->z, SB, SV);
    double s = 0.0;
    if (c->entropy) {
        categorical_entropy(c->h, c->lp, SB, SV);
        for (int b = 0; b < SB; b++)
            s += (double)c->hprobe[b] * c->h[b];
    } else
        for (int i = 0; i < SB * SV; i++)
            s += (double)c->probe[i] * c->lp[i];
    return s;
}

START_TEST(test_log_softmax_and_entropy_backward_finite_differences) {
    rng_state r;
    rng_seed(&r, 4, 0);
    softmax_case c = {.entropy = 0};
    test_fill_uniform(c.z, SB * SV, -2, 2, &r);
    test_fill_uniform(c.probe, SB * SV, -1, 1, &r);
    test_fill_uniform(c.hprobe, SB, -1, 1, &r);
    float dz[SB * SV] = {0};
    softmax_loss(&c);
    log_softmax_backward(dz, c.probe, c.lp, SB, SV);
    test_check_gradient("dlogits (log_softmax)", c.z, dz, SB * SV, softmax_loss, &c, 1e-2f, 2e-3,
                        2e-3);
    c.entropy = 1;
    softmax_loss(&c);
    memset(dz, 0, sizeof dz);
    categorical_entropy_backward(dz, c.hprobe, c.lp, c.h, SB, SV);
    test_check_gradient("dlogits (entropy)", c.z, dz, SB * SV, softmax_loss, &c, 1e-2f, 2e-3, 2e-3);
}
END_TEST

START_TEST(test_categorical_entropy_sample_argmax) {
    /* Uniform over 4: H = log 4. One-hot-ish: H near 0. */
    const float zu[4] = {0, 0, 0, 0}, zp[4] = {0, 30, 0, 0};
    float lp[8], h[2];
    log_softmax_forward(lp, zu, 1, 4);
    log_softmax_forward(lp + 4, zp, 1, 4);
    categorical_entropy(h, lp, 2, 4);
    ck_assert_close(h[0], log(4.0), 1e-6, 0, "uniform entropy");
    ck_assert_close(h[1], 0.0, 1e-9, 0, "peaked entropy");
    int32_t a[2];
    categorical_argmax(a, lp, 2, 4);
    ck_assert_int_eq(a[1], 1);
    /* Frequencies of sampled actions match p = softmax([0, 1, 2]) within 4 sigma. */
    const float z[3] = {0, 1, 2};
    float l3[3];
    log_softmax_forward(l3, z, 1, 3);
    rng_state r;
    rng_seed(&r, 5, 0);
    const int n = 60000;
    int counts[3] = {0};
    for (int i = 0; i < n; i++) {
        int32_t s;
        categorical_sample(&s, l3, 1, 3, &r);
        ck_assert(s >= 0 && s < 3);
        counts[s]++;
    }
    for (int j = 0; j < 3; j++) {
        double p = exp(l3[j]);
        double sigma = sqrt(n * p * (1 - p));
        ck_assert_msg(fabs(counts[j] - n * p) < 4 * sigma, "action %d: %d draws, expected %.0f", j,
                      counts[j], n * p);
    }
}
END_TEST

START_TEST(test_mse) {
    const float pred[2] = {1, 4}, target[2] = {0, 2};
    /* 0.5 * mean(1, 4) = 1.25; d/dpred = (pred - target) / n = (0.5, 1) */
    ck_assert_close(mse_forward(pred, target, 2), 1.25, 1e-7, 0, "mse");
    float d[2] = {0, 0};
    mse_backward(d, pred, target, 2, 2.0f);
    ck_assert_close(d[0], 1.0, 1e-7, 0, "dmse[0]");
    ck_assert_close(d[1], 2.0, 1e-7, 0, "dmse[1]");
}
END_TEST

/* ---- initialisation ------------------------------------------------------------ */

static void check_orthogonal(int rows, int cols, float gain) {
    rng_state r;
    rng_seed(&r, 6, (uint64_t)rows * 100 + (uint64_t)cols);
    float *w = malloc(sizeof(float) * (size_t)rows * (size_t)cols);
    double *scratch = malloc(sizeof(double) * (size_t)rows * (size_t)cols);
    init_orthogonal(w, rows, cols, gain, &r, scratch);
    /* Wide: rows orthonormal (W Wᵀ = g² I). Tall: columns (Wᵀ W = g² I). */
    int wide = rows <= cols;
    int k = wide ? rows : cols, len = wide ? cols : rows;
    for (int a = 0; a < k; a++)
        for (int b = 0; b < k; b++) {
            double dot = 0.0;
            for (int i = 0; i < len; i++) {
                float x = wide ? w[a * cols + i] : w[i * cols + a];
                float y = wide ? w[b * cols + i] : w[i * cols + b];
                dot += (double)x * y;
            }
            ck_assert_close(dot, a == b ? (double)gain * gain : 0.0, 1e-5 * gain * gain, 0,
                            "orthogonality");
        }
    free(w);
    free(scratch);
}

START_TEST(test_orthogonal_init) {
    check_orthogonal(64, 4, sqrtf(2.0f)); /* first hidden layer: tall */
    check_orthogonal(2, 64, 0.01f);       /* policy head: wide */
    check_orthogonal(64, 64, 1.0f);       /* square */
}
END_TEST

/* ---- the actor-critic, end to end ---------------------------------------------------- */

typedef struct ac_case {
    ac_model model;
    ac_acts acts;
    float *params;
    float obs[3 * 4];
    float probe_logits[3 * 2], probe_values[3];
} ac_case;

static double ac_loss(void *ctx) {
    ac_case *c = ctx;
    ac_forward(&c->model, c->params, &c->acts, c->obs, 3, true);
    double s = 0.0;
    for (int i = 0; i < 6; i++)
        s += (double)c->probe_logits[i] * c->acts.logits[i];
    for (int i = 0; i < 3; i++)
        s += (double)c->probe_values[i] * c->acts.values[i];
    return s;
}

static void check_actor_critic(bool shared, activation_kind act) {
    ac_case c;
    ck_assert_int_eq(ac_model_init(&c.model, 4, 2, 6, 2, shared, act), 0);
    ck_assert_int_eq(ac_acts_init(&c.acts, &c.model, 3), 0);
    const int P = (int)c.model.n_params;
    /* separate: 2 trunks of (4*6+6) + (6*6+6), heads 6*2+2 and 6+1 */
    ck_assert_int_eq(P, (shared ? 1 : 2) * (30 + 42) + 14 + 7);
    c.params = malloc(sizeof(float) * (size_t)P);
    float *grads = calloc((size_t)P, sizeof(float));
    rng_state r;
    rng_seed(&r, 7, shared);
    ac_model_init_params(&c.model, c.params, &r);
    /* Heads initialised tiny (0.01) would make FD on their inputs weak:
     * perturb everything to O(1) values. */
    test_fill_uniform(c.params, (size_t)P, -0.8f, 0.8f, &r);
    test_fill_uniform(c.obs, 12, -1, 1, &r);
    test_fill_uniform(c.probe_logits, 6, -1, 1, &r);
    test_fill_uniform(c.probe_values, 3, -1, 1, &r);
    ac_loss(&c);
    memcpy(c.acts.dlogits, c.probe_logits, sizeof c.probe_logits);
    memcpy(c.acts.dvalues, c.probe_values, sizeof c.probe_values);
    ac_backward(&c.model, c.params, grads, &c.acts, c.obs, 3);
    test_check_gradient(shared ? "shared-trunk params" : "separate params", c.params, grads, P,
                        ac_loss, &c, 1e-2f, 3e-3, 3e-3);
    free(grads);
    free(c.params);
    ac_acts_free(&c.acts);
}

START_TEST(test_actor_critic_backward_finite_differences) {
    check_actor_critic(false, ACTIVATION_TANH);
    check_actor_critic(true, ACTIVATION_TANH);
    check_actor_critic(false, ACTIVATION_GELU);
}
END_TEST

/* CleanRL's init: trunk rows orthonormal × sqrt(2), policy head × 0.01,
 * value head × 1, biases 0. */
START_TEST(test_actor_critic_init_gains) {
    ac_model m;
    ac_model_init(&m, 4, 2, 64, 2, false, ACTIVATION_TANH);
    float *p = malloc(sizeof(float) * (size_t)m.n_params);
    rng_state r;
    rng_seed(&r, 8, 0);
    ac_model_init_params(&m, p, &r);
    double head = 0.0, value = 0.0, bias = 0.0;
    for (int i = 0; i < 64; i++) {
        head += (double)p[m.actor_head.w + i] * p[m.actor_head.w + i];
        value += (double)p[m.critic_head.w + i] * p[m.critic_head.w + i];
        bias += fabsf(p[m.actor_trunk[0].b + i]);
    }
    ck_assert_close(sqrt(head), 0.01, 1e-6, 0, "policy head row norm");
    ck_assert_close(sqrt(value), 1.0, 1e-5, 0, "value head row norm");
    ck_assert_double_eq(bias, 0.0);
    free(p);
}
END_TEST

Suite *nn_suite(void) {
    Suite *s = suite_create("nn");
    TCase *tc = tcase_create("layers");
    tcase_add_test(tc, test_dense_forward_matches_naive);
    tcase_add_test(tc, test_dense_backward_finite_differences);
    tcase_add_test(tc, test_activation_values_and_gradients);
    tcase_add_test(tc, test_tanh_rational_error_bound);
    tcase_add_test(tc, test_row_reductions);
    tcase_add_test(tc, test_log_softmax_hand_values);
    tcase_add_test(tc, test_log_softmax_and_entropy_backward_finite_differences);
    tcase_add_test(tc, test_categorical_entropy_sample_argmax);
    tcase_add_test(tc, test_mse);
    tcase_add_test(tc, test_orthogonal_init);
    tcase_add_test(tc, test_actor_critic_backward_finite_differences);
    tcase_add_test(tc, test_actor_critic_init_gains);
    suite_add_tcase(s, tc);
    return s;
}
