/* Tests for engine/env_*.c: CartPole-v1 and Acrobot-v1 against reference
 * dynamics written here independently (long double, textbook form), and
 * vec_env's time limit, autoreset, accounting and seeding.
 *
 * Both environments keep their state as 4 doubles (layouts documented at the
 * top of env_cartpole.c and env_acrobot.c); the tests set known states by
 * writing a double[4] into that state.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "suites.h"

/* ------------------------------------------------------------------------ */
/* Helpers                                                                  */

/* Steps spec once from the given state; writes the new state and obs. */
static float step_from(const env_spec *spec, const double start[4], int32_t action, double end[4],
                       float *obs, bool *terminated) {
    ck_assert_uint_eq(spec->state_bytes, 4 * sizeof(double));
    memcpy(end, start, 4 * sizeof(double));
    *terminated = false;
    return spec->step(end, action, obs, terminated);
}

/* Dynamics in double and the reference in long double differ only by
 * rounding (about 1e-16 relative per operation), so states agree far more
 * tightly than this; a wrong sign, constant or integrator ordering moves them
 * by 1e-4 or more in a single step. */
#define STATE_TOL 1e-10

/* ------------------------------------------------------------------------ */
/* CartPole reference: Barto, Sutton & Anderson (1983) with the sign of the
 * pole's reaction force corrected by Florian (2007), frictionless:
 *
 *   theta_acc = (g sin(th) + cos(th) (-F - m_p l th_dot^2 sin(th)) / (m_c + m_p))
 *               / (l (4/3 - m_p cos^2(th) / (m_c + m_p)))
 *   x_acc     = (F + m_p l (th_dot^2 sin(th) - theta_acc cos(th))) / (m_c + m_p)
 *
 * then explicit Euler with tau = 0.02 (positions use the old velocities).
 * Episode ends when |x| > 2.4 or |theta| > 12 degrees.                      */

static const long double cp_g = 9.8L, cp_mc = 1.0L, cp_mp = 0.1L, cp_l = 0.5L;
static const long double cp_force = 10.0L, cp_tau = 0.02L;

static void ref_cartpole_step(long double s[4], int32_t action) {
    long double force = action == 1 ? cp_force : -cp_force;
    long double x = s[0], x_dot = s[1], th = s[2], th_dot = s[3];
    long double sin_th = sinl(th), cos_th = cosl(th), total = cp_mc + cp_mp;
    long double theta_acc =
        (cp_g * sin_th + cos_th * (-force - cp_mp * cp_l * th_dot * th_dot * sin_th) / total) /
        (cp_l * (4.0L / 3.0L - cp_mp * cos_th * cos_th / total));
    long double x_acc =
        (force + cp_mp * cp_l * (th_dot * th_dot * sin_th - theta_acc * cos_th)) / total;
    s[0] = x + cp_tau * x_dot;
    s[1] = x_dot + cp_tau * x_acc;
    s[2] = th + cp_tau * th_dot;
    s[3] = th_dot + cp_tau * theta_acc;
}

static double cartpole_theta_limit(void) {
    return 12 * 2 * M_PI / 360; /* Gymnasium's expression for 12 degrees */
}

static void assert_state_near(const double got[4], const long double want[4], double tol) {
    for (int k = 0; k < 4; k++)
        ck_assert_double_eq_tol(got[k], (double)want[k], tol);
}

START_TEST(test_cartpole_spec) {
    const env_spec *e = &env_cartpole_v1;
    ck_assert_str_eq(e->name, "CartPole-v1");
    ck_assert_int_eq(e->obs_dim, 4);
    ck_assert_int_eq(e->n_actions, 2);
    ck_assert_int_eq(e->max_episode_steps, 500);
    ck_assert_uint_eq(e->state_bytes, 4 * sizeof(double));
    ck_assert_float_eq(e->max_step_reward, 1.0f);
}
END_TEST

/* One step with each action from a known state matches the reference; the
 * observation is the new state rounded to float32; the reward is 1. Pushing
 * right speeds the cart to the right and tips the pole to the left. */
START_TEST(test_cartpole_one_step_matches_reference) {
    const double start[4] = {0.1, -0.2, 0.05, 0.3};
    double after[2][4];
    for (int32_t a = 0; a < 2; a++) {
        long double want[4] = {start[0], start[1], start[2], start[3]};
        ref_cartpole_step(want, a);
        float obs[4];
        bool terminated;
        float reward = step_from(&env_cartpole_v1, start, a, after[a], obs, &terminated);
        assert_state_near(after[a], want, STATE_TOL);
        for (int k = 0; k < 4; k++)
            ck_assert_float_eq(obs[k], (float)after[a][k]);
        ck_assert(!terminated);
        ck_assert_float_eq(reward, 1.0f);
        /* Euler, not semi-implicit: position moves by the old velocity. */
        ck_assert_double_eq_tol(after[a][0], 0.1 + 0.02 * -0.2, 1e-15);
        ck_assert_double_eq_tol(after[a][2], 0.05 + 0.02 * 0.3, 1e-15);
    }
    ck_assert_double_gt(after[1][1], after[0][1]);
    ck_assert_double_lt(after[1][3], after[0][3]);
}
END_TEST

/* Twenty steps with a fixed action sequence track the reference. */
START_TEST(test_cartpole_trajectory_matches_reference) {
    static const int32_t actions[20] = {1, 0, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 1, 0, 1, 0, 0, 1, 1, 0};
    double s[4] = {0.01, -0.02, 0.03, 0.04};
    long double want[4] = {s[0], s[1], s[2], s[3]};
    for (int t = 0; t < 20; t++) {
        float obs[4];
        bool terminated;
        step_from(&env_cartpole_v1, s, actions[t], s, obs, &terminated);
        ref_cartpole_step(want, actions[t]);
        assert_state_near(s, want, STATE_TOL);
        for (int k = 0; k < 4; k++) /* float32 rounding of values below 1: < 6e-8 */
            ck_assert_double_eq_tol(obs[k], (double)want[k], 1e-6);
        ck_assert(!terminated);
    }
    /* The sequence moved the state well away from where it started. */
    ck_assert_double_gt(fabs(s[3] - 0.04), 0.1);
}
END_TEST

/* The episode ends only strictly beyond |x| = 2.4 or |theta| = 12 degrees:
 * a step that lands exactly on a threshold goes on, one ulp further ends,
 * and that terminating step still pays 1. */
START_TEST(test_cartpole_termination_thresholds) {
    const double th = cartpole_theta_limit();
    ck_assert_double_eq_tol(th, 0.20943951023931953, 1e-17);
    struct {
        double state[4]; /* velocities 0, so the step leaves x and theta as they are */
        bool ends;
    } cases[] = {
        {{2.4, 0, 0, 0}, false},    {{nextafter(2.4, 3.0), 0, 0, 0}, true},
        {{-2.4, 0, 0, 0}, false},   {{nextafter(-2.4, -3.0), 0, 0, 0}, true},
        {{0, 0, th, 0}, false},     {{0, 0, nextafter(th, 1.0), 0}, true},
        {{0, 0, -th, 0}, false},    {{0, 0, nextafter(-th, -1.0), 0}, true},
        {{2.39, 1.0, 0, 0}, true},  /* crosses: 2.39 + 0.02 * 1.0 = 2.41 */
        {{2.37, 1.0, 0, 0}, false}, /* stays inside: 2.39 */
        {{0, 0, -0.2, -1.0}, true}, /* -0.22 < -0.2094 */
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        for (int32_t a = 0; a < 2; a++) {
            double after[4];
            float obs[4];
            bool terminated;
            float reward = step_from(&env_cartpole_v1, cases[c].state, a, after, obs, &terminated);
            ck_assert_msg(terminated == cases[c].ends, "case %zu action %d", c, a);
            ck_assert_float_eq(reward, 1.0f);
        }
    }
}
END_TEST

/* Reset draws x, x_dot, theta, theta_dot in that order from U(-0.05, 0.05)
 * with the given rng, covers that whole range, and repeats for a seed. */
START_TEST(test_cartpole_reset) {
    rng_state rng, copy;
    rng_seed(&rng, 7, 0);
    copy = rng;
    double s[4];
    float obs[4];
    env_cartpole_v1.reset(s, &rng, obs);
    for (int k = 0; k < 4; k++) {
        ck_assert_double_eq(s[k], rng_next_uniform(&copy, -0.05, 0.05));
        ck_assert_float_eq(obs[k], (float)s[k]);
    }
    ck_assert_mem_eq(&rng, &copy, sizeof rng);

    double again[4];
    rng_seed(&rng, 7, 0);
    env_cartpole_v1.reset(again, &rng, obs);
    ck_assert_mem_eq(s, again, sizeof s);
    rng_seed(&rng, 8, 0);
    env_cartpole_v1.reset(again, &rng, obs);
    ck_assert(memcmp(s, again, sizeof s) != 0);

    double lo[4] = {1, 1, 1, 1}, hi[4] = {-1, -1, -1, -1};
    for (int i = 0; i < 10000; i++) {
        env_cartpole_v1.reset(s, &rng, obs);
        for (int k = 0; k < 4; k++) {
            ck_assert(s[k] >= -0.05 && s[k] < 0.05);
            lo[k] = fmin(lo[k], s[k]);
            hi[k] = fmax(hi[k], s[k]);
        }
    }
    for (int k = 0; k < 4; k++) {
        ck_assert_double_lt(lo[k], -0.049);
        ck_assert_double_gt(hi[k], 0.049);
    }
}
END_TEST

/* ------------------------------------------------------------------------ */
/* Acrobot reference: the Lagrangian equations of the two-link arm (Spong
 * 1995; Sutton & Barto 1998 §11.3) as a 2x2 linear system
 *
 *   [d11 d12] [th1_acc]   [   - h1 - g1]
 *   [d12 d22] [th2_acc] = [tau - h2 - g2]
 *
 *   d11 = m1 lc1^2 + m2 (l1^2 + lc2^2 + 2 l1 lc2 cos th2) + I1 + I2
 *   d12 = m2 (lc2^2 + l1 lc2 cos th2) + I2,     d22 = m2 lc2^2 + I2
 *   h1  = -m2 l1 lc2 sin th2 (th2_dot^2 + 2 th1_dot th2_dot)
 *   h2  =  m2 l1 lc2 sin th2 th1_dot^2
 *   g1  = (m1 lc1 + m2 l1) g sin th1 + m2 lc2 g sin(th1 + th2),  g2 = m2 lc2 g sin(th1 + th2)
 *
 * solved by Cramer's rule, integrated by classical RK4 over one dt = 0.2.
 * Angles are measured from hanging straight down.                          */

static const long double ac_m = 1.0L, ac_l1 = 1.0L, ac_lc = 0.5L, ac_moi = 1.0L, ac_g = 9.8L;
static const long double ac_dt = 0.2L;

static void ref_acrobot_derivs(const long double s[4], long double torque, long double ds[4]) {
    long double th1 = s[0], th2 = s[1], w1 = s[2], w2 = s[3];
    long double d11 = ac_m * ac_lc * ac_lc +
                      ac_m * (ac_l1 * ac_l1 + ac_lc * ac_lc + 2 * ac_l1 * ac_lc * cosl(th2)) +
                      2 * ac_moi;
    long double d12 = ac_m * (ac_lc * ac_lc + ac_l1 * ac_lc * cosl(th2)) + ac_moi;
    long double d22 = ac_m * ac_lc * ac_lc + ac_moi;
    long double h1 = -ac_m * ac_l1 * ac_lc * sinl(th2) * (w2 * w2 + 2 * w1 * w2);
    long double h2 = ac_m * ac_l1 * ac_lc * sinl(th2) * w1 * w1;
    long double g2 = ac_m * ac_lc * ac_g * sinl(th1 + th2);
    long double g1 = (ac_m * ac_lc + ac_m * ac_l1) * ac_g * sinl(th1) + g2;
    long double r1 = -h1 - g1, r2 = torque - h2 - g2;
    long double det = d11 * d22 - d12 * d12;
    ds[0] = w1;
    ds[1] = w2;
    ds[2] = (r1 * d22 - d12 * r2) / det;
    ds[3] = (d11 * r2 - d12 * r1) / det;
}

/* One RK4 step of ac_dt, no wrapping or clipping. */
static void ref_acrobot_rk4(long double s[4], int32_t action) {
    long double torque = (long double)(action - 1), k[4][4], tmp[4];
    static const long double stage[4] = {0.0L, 0.5L, 0.5L, 1.0L};
    for (int i = 0; i < 4; i++) {
        for (int j = 0; j < 4; j++)
            tmp[j] = s[j] + (i == 0 ? 0.0L : stage[i] * ac_dt * k[i - 1][j]);
        ref_acrobot_derivs(tmp, torque, k[i]);
    }
    for (int j = 0; j < 4; j++)
        s[j] += ac_dt / 6.0L * (k[0][j] + 2 * k[1][j] + 2 * k[2][j] + k[3][j]);
}

static void assert_acrobot_obs(const float obs[6], const double s[4]) {
    ck_assert_float_eq(obs[0], (float)cos(s[0]));
    ck_assert_float_eq(obs[1], (float)sin(s[0]));
    ck_assert_float_eq(obs[2], (float)cos(s[1]));
    ck_assert_float_eq(obs[3], (float)sin(s[1]));
    ck_assert_float_eq(obs[4], (float)s[2]);
    ck_assert_float_eq(obs[5], (float)s[3]);
}

START_TEST(test_acrobot_spec) {
    const env_spec *e = &env_acrobot_v1;
    ck_assert_str_eq(e->name, "Acrobot-v1");
    ck_assert_int_eq(e->obs_dim, 6);
    ck_assert_int_eq(e->n_actions, 3);
    ck_assert_int_eq(e->max_episode_steps, 500);
    ck_assert_uint_eq(e->state_bytes, 4 * sizeof(double));
    ck_assert_float_eq(e->max_step_reward, 0.0f);
}
END_TEST

/* One step with each torque from a known state matches the reference RK4;
 * positive torque accelerates the second joint more than negative. */
START_TEST(test_acrobot_one_step_matches_reference) {
    const double start[4] = {0.3, -0.5, 1.0, -2.0};
    double after[3][4];
    for (int32_t a = 0; a < 3; a++) {
        long double want[4] = {start[0], start[1], start[2], start[3]};
        ref_acrobot_rk4(want, a);
        for (int k = 0; k < 2; k++) /* no wrapping needed from this state */
            ck_assert(fabsl(want[k]) < 3.0L);
        float obs[6];
        bool terminated;
        float reward = step_from(&env_acrobot_v1, start, a, after[a], obs, &terminated);
        assert_state_near(after[a], want, STATE_TOL);
        assert_acrobot_obs(obs, after[a]);
        ck_assert(!terminated);
        ck_assert_float_eq(reward, -1.0f);
    }
    ck_assert_double_gt(after[2][3], after[1][3] + 0.01);
    ck_assert_double_gt(after[1][3], after[0][3] + 0.01);
}
END_TEST

/* Ten steps with mixed torques track the reference: errors do not build up
 * from step to step. */
START_TEST(test_acrobot_trajectory_matches_reference) {
    static const int32_t actions[10] = {2, 2, 0, 1, 0, 2, 1, 1, 0, 2};
    double s[4] = {-0.05, 0.08, 0.02, -0.07};
    long double want[4] = {s[0], s[1], s[2], s[3]};
    for (int t = 0; t < 10; t++) {
        float obs[6];
        bool terminated;
        step_from(&env_acrobot_v1, s, actions[t], s, obs, &terminated);
        ref_acrobot_rk4(want, actions[t]);
        assert_state_near(s, want, 1e-9);
        assert_acrobot_obs(obs, s);
    }
}
END_TEST

/* An angle carried past pi comes back by a whole turn, into [-pi, pi]. */
START_TEST(test_acrobot_wraps_angles) {
    const double start[4] = {3.0, -3.0, 10.0, -20.0};
    long double want[4] = {start[0], start[1], start[2], start[3]};
    ref_acrobot_rk4(want, 1);
    ck_assert(want[0] > M_PI && want[0] < 3 * M_PI);   /* the case we mean to test */
    ck_assert(want[1] < -M_PI && want[1] > -3 * M_PI); /* both directions */
    ck_assert(fabsl(want[2]) < 4 * M_PI && fabsl(want[3]) < 9 * M_PI); /* no clipping */
    double after[4];
    float obs[6];
    bool terminated;
    step_from(&env_acrobot_v1, start, 1, after, obs, &terminated);
    ck_assert_double_eq_tol(after[0], (double)(want[0] - 2 * M_PI), STATE_TOL);
    ck_assert_double_eq_tol(after[1], (double)(want[1] + 2 * M_PI), STATE_TOL);
    ck_assert_double_eq_tol(after[2], (double)want[2], STATE_TOL);
    ck_assert_double_eq_tol(after[3], (double)want[3], STATE_TOL);
    assert_acrobot_obs(obs, after);
}
END_TEST

/* Velocities beyond 4 pi (joint 1) and 9 pi (joint 2) after the step are
 * clipped to exactly the bound. */
START_TEST(test_acrobot_bounds_velocities) {
    struct {
        double state[4];
        int32_t action;
        int joint;    /* 2 or 3: which velocity goes out of bounds */
        double bound; /* signed */
    } cases[] = {
        {{-2.0, 0.0, -4 * M_PI, 0.0}, 1, 2, -4 * M_PI},
        {{2.0, 0.0, 4 * M_PI, 0.0}, 1, 2, 4 * M_PI},
        {{0.0, 1.5, 0.0, 9 * M_PI}, 2, 3, 9 * M_PI},
        {{0.0, -1.5, 0.0, -9 * M_PI}, 0, 3, -9 * M_PI},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        long double want[4];
        for (int k = 0; k < 4; k++)
            want[k] = cases[c].state[k];
        ref_acrobot_rk4(want, cases[c].action);
        /* The unclipped velocity really does leave the range. */
        ck_assert_msg(fabsl(want[cases[c].joint]) > fabs(cases[c].bound) + 1e-3, "case %zu", c);
        ck_assert_msg(want[cases[c].joint] * cases[c].bound > 0, "case %zu", c);
        double after[4];
        float obs[6];
        bool terminated;
        step_from(&env_acrobot_v1, cases[c].state, cases[c].action, after, obs, &terminated);
        ck_assert_double_eq(after[cases[c].joint], cases[c].bound);
        int other = cases[c].joint == 2 ? 3 : 2;
        ck_assert_double_eq_tol(after[other], (double)want[other], STATE_TOL);
        assert_acrobot_obs(obs, after);
    }
}
END_TEST

/* Terminal exactly when the tip rises more than one link length above the
 * pivot after the step: -cos(th1) - cos(th1 + th2) > 1; reward 0 then, -1
 * otherwise. Checked over a grid of starting angles on both sides. */
START_TEST(test_acrobot_terminal_condition) {
    double after[4];
    float obs[6];
    bool terminated;
    const double upright[4] = {M_PI, 0, 0, 0}, hanging[4] = {0, 0, 0, 0};
    ck_assert_float_eq(step_from(&env_acrobot_v1, upright, 1, after, obs, &terminated), 0.0f);
    ck_assert(terminated);
    ck_assert_float_eq(step_from(&env_acrobot_v1, hanging, 1, after, obs, &terminated), -1.0f);
    ck_assert(!terminated);

    int n_terminal = 0, n_other = 0;
    for (int i = 0; i <= 40; i++) {
        for (int j = 0; j <= 40; j++) {
            const double start[4] = {-M_PI + i * (M_PI / 20), -M_PI + j * (M_PI / 20), 0.5, -0.5};
            long double want[4] = {start[0], start[1], start[2], start[3]};
            ref_acrobot_rk4(want, 2);
            long double height = -cosl(want[0]) - cosl(want[0] + want[1]);
            if (fabsl(height - 1.0L) < 1e-9L)
                continue; /* too close to call for a reference in other precision */
            bool ends = height > 1.0L;
            float reward = step_from(&env_acrobot_v1, start, 2, after, obs, &terminated);
            ck_assert_msg(terminated == ends, "start (%g, %g) height %Lg", start[0], start[1],
                          height);
            ck_assert_float_eq(reward, ends ? 0.0f : -1.0f);
            n_terminal += ends;
            n_other += !ends;
        }
    }
    ck_assert_int_gt(n_terminal, 100);
    ck_assert_int_gt(n_other, 100);
}
END_TEST

/* Reset draws theta1, theta2, dtheta1, dtheta2 in that order from
 * U(-0.1, 0.1) and covers the range. */
START_TEST(test_acrobot_reset) {
    rng_state rng, copy;
    rng_seed(&rng, 11, 3);
    copy = rng;
    double s[4];
    float obs[6];
    env_acrobot_v1.reset(s, &rng, obs);
    for (int k = 0; k < 4; k++)
        ck_assert_double_eq(s[k], rng_next_uniform(&copy, -0.1, 0.1));
    assert_acrobot_obs(obs, s);
    double lo = 1, hi = -1;
    for (int i = 0; i < 10000; i++) {
        env_acrobot_v1.reset(s, &rng, obs);
        for (int k = 0; k < 4; k++) {
            ck_assert(s[k] >= -0.1 && s[k] < 0.1);
            lo = fmin(lo, s[k]);
            hi = fmax(hi, s[k]);
        }
    }
    ck_assert_double_lt(lo, -0.099);
    ck_assert_double_gt(hi, 0.099);
}
END_TEST

/* ------------------------------------------------------------------------ */
/* vec_env                                                                  */

START_TEST(test_env_find) {
    ck_assert_ptr_eq(env_find("CartPole-v1"), &env_cartpole_v1);
    ck_assert_ptr_eq(env_find("Acrobot-v1"), &env_acrobot_v1);
    ck_assert_ptr_null(env_find("nope"));
    ck_assert_ptr_null(env_find("CartPole-v0"));
    ck_assert_ptr_null(env_find("CartPole"));
    ck_assert_ptr_null(env_find("cartpole-v1"));
    ck_assert_ptr_null(env_find(""));
    ck_assert_ptr_null(env_find(NULL));
    int n = 0;
    while (env_all[n] != NULL) {
        ck_assert_ptr_eq(env_find(env_all[n]->name), env_all[n]);
        n++;
    }
    ck_assert_int_eq(n, 2);
}
END_TEST

START_TEST(test_vec_env_rejects_bad_arguments) {
    vec_env venv;
    ck_assert_int_eq(vec_env_init(&venv, &env_cartpole_v1, 0, 1), -1);
    vec_env_free(&venv);
    ck_assert_int_eq(vec_env_init(&venv, NULL, 4, 1), -1);
    vec_env_free(&venv);
}
END_TEST

/* Env i starts from a reset with rng stream (seed, i): each env differs from
 * the others, and the same seed gives the same starts. */
START_TEST(test_vec_env_init_seeds_each_env) {
    const int32_t n = 8;
    const uint64_t seed = 123;
    vec_env venv;
    ck_assert_int_eq(vec_env_init(&venv, &env_cartpole_v1, n, seed), 0);
    ck_assert_ptr_eq(venv.spec, &env_cartpole_v1);
    ck_assert_int_eq(venv.n, n);
    for (int32_t i = 0; i < n; i++) {
        rng_state rng;
        rng_seed(&rng, seed, (uint64_t)i);
        double s[4];
        float obs[4];
        env_cartpole_v1.reset(s, &rng, obs);
        ck_assert_mem_eq(venv.states + i * sizeof s, s, sizeof s);
        ck_assert_mem_eq(venv.obs + i * 4, obs, sizeof obs);
        ck_assert_mem_eq(&venv.rngs[i], &rng, sizeof rng);
        ck_assert_int_eq(venv.elapsed[i], 0);
        ck_assert_double_eq(venv.running_return[i], 0.0);
        for (int32_t j = 0; j < i; j++)
            ck_assert(memcmp(venv.obs + i * 4, venv.obs + j * 4, sizeof obs) != 0);
    }
    vec_env other;
    ck_assert_int_eq(vec_env_init(&other, &env_cartpole_v1, n, seed + 1), 0);
    ck_assert(memcmp(venv.obs, other.obs, 4 * sizeof(float)) != 0);
    vec_env_free(&other);
    vec_env_free(&venv);
    ck_assert_ptr_null(venv.states);
}
END_TEST

/* Runs 3000 random-action steps of a vec_env next to the same envs stepped
 * one by one through the spec, and checks every output: rewards, flags,
 * final_obs, episode accounting, autoreset. */
static void check_vec_env_against_single_envs(const env_spec *spec, int *n_terminated,
                                              int *n_truncated) {
    enum { N = 4, STEPS = 3000 };
    const uint64_t seed = 2024;
    vec_env venv;
    ck_assert_int_eq(vec_env_init(&venv, spec, N, seed), 0);
    int32_t dim = spec->obs_dim;
    double state[N][4];
    rng_state rngs[N];
    float obs[N][6], last_obs[6];
    int32_t elapsed[N] = {0};
    double ret[N] = {0};
    for (int i = 0; i < N; i++) {
        rng_seed(&rngs[i], seed, (uint64_t)i);
        spec->reset(state[i], &rngs[i], obs[i]);
    }
    rng_state policy;
    rng_seed(&policy, 99, 0);
    *n_terminated = *n_truncated = 0;
    for (int t = 0; t < STEPS; t++) {
        int32_t actions[N];
        for (int i = 0; i < N; i++)
            actions[i] = (int32_t)rng_next_below(&policy, (uint32_t)spec->n_actions);
        vec_env_step(&venv, actions);
        for (int i = 0; i < N; i++) {
            bool terminated = false;
            float reward = spec->step(state[i], actions[i], last_obs, &terminated);
            elapsed[i]++;
            ret[i] += reward;
            bool truncated = !terminated && elapsed[i] == spec->max_episode_steps;
            ck_assert_float_eq(venv.out.rewards[i], reward);
            ck_assert_float_le(reward, spec->max_step_reward);
            ck_assert_uint_eq(venv.out.terminated[i], terminated);
            ck_assert_uint_eq(venv.out.truncated[i], truncated);
            if (terminated || truncated) {
                ck_assert_mem_eq(venv.out.final_obs + i * dim, last_obs, dim * sizeof(float));
                ck_assert_int_eq(venv.out.episode_length[i], elapsed[i]);
                ck_assert_double_eq(venv.out.episode_return[i], ret[i]);
                spec->reset(state[i], &rngs[i], obs[i]);
                elapsed[i] = 0;
                ret[i] = 0;
                *n_terminated += terminated;
                *n_truncated += truncated;
            } else {
                memcpy(obs[i], last_obs, dim * sizeof(float));
                ck_assert_int_eq(venv.out.episode_length[i], 0);
                ck_assert_double_eq(venv.out.episode_return[i], 0.0);
            }
            ck_assert_mem_eq(venv.obs + i * dim, obs[i], dim * sizeof(float));
            ck_assert_mem_eq(venv.states + i * sizeof state[i], state[i], sizeof state[i]);
            ck_assert_int_eq(venv.elapsed[i], elapsed[i]);
        }
    }
    vec_env_free(&venv);
}

START_TEST(test_vec_env_matches_single_envs_cartpole) {
    int n_terminated, n_truncated;
    check_vec_env_against_single_envs(&env_cartpole_v1, &n_terminated, &n_truncated);
    ck_assert_int_gt(n_terminated, 100); /* random play drops the pole in ~20 steps */
}
END_TEST

START_TEST(test_vec_env_matches_single_envs_acrobot) {
    int n_terminated, n_truncated;
    check_vec_env_against_single_envs(&env_acrobot_v1, &n_terminated, &n_truncated);
    ck_assert_int_gt(n_terminated + n_truncated, 4); /* episodes did end */
}
END_TEST

/* Holding CartPole at rest (state zeroed before every step) never
 * terminates, so the 500th step truncates: truncated = 1, terminated = 0,
 * return 500 over 500 steps, final_obs the state that step reached, and obs
 * a fresh reset drawn from the env's own stream. A terminal 500th step is
 * reported as terminated only. */
START_TEST(test_vec_env_truncates_at_time_limit) {
    for (int terminal_last = 0; terminal_last < 2; terminal_last++) {
        vec_env venv;
        ck_assert_int_eq(vec_env_init(&venv, &env_cartpole_v1, 1, 5), 0);
        const double rest[4] = {0, 0, 0, 0}, falling[4] = {2.4, 1.0, 0, 0};
        for (int32_t t = 1; t <= 500; t++) {
            int32_t action = t % 2;
            const double *start = t == 500 && terminal_last ? falling : rest;
            memcpy(venv.states, start, 4 * sizeof(double));
            double expect_state[4];
            float expect_obs[4], expect_reset_obs[4];
            bool ends;
            step_from(&env_cartpole_v1, start, action, expect_state, expect_obs, &ends);
            rng_state rng = venv.rngs[0];
            double reset_state[4];
            env_cartpole_v1.reset(reset_state, &rng, expect_reset_obs);

            vec_env_step(&venv, &action);
            ck_assert_float_eq(venv.out.rewards[0], 1.0f);
            if (t < 500) {
                ck_assert(!ends);
                ck_assert_uint_eq(venv.out.terminated[0], 0);
                ck_assert_uint_eq(venv.out.truncated[0], 0);
                ck_assert_int_eq(venv.elapsed[0], t);
                ck_assert_double_eq(venv.running_return[0], t);
                ck_assert_mem_eq(venv.obs, expect_obs, sizeof expect_obs);
                continue;
            }
            ck_assert(ends == (bool)terminal_last);
            ck_assert_uint_eq(venv.out.terminated[0], terminal_last);
            ck_assert_uint_eq(venv.out.truncated[0], !terminal_last);
            ck_assert_int_eq(venv.out.episode_length[0], 500);
            ck_assert_double_eq(venv.out.episode_return[0], 500.0);
            ck_assert_mem_eq(venv.out.final_obs, expect_obs, sizeof expect_obs);
            ck_assert_mem_eq(venv.obs, expect_reset_obs, sizeof expect_reset_obs);
            ck_assert_mem_eq(venv.states, reset_state, sizeof reset_state);
            ck_assert(memcmp(venv.obs, venv.out.final_obs, sizeof expect_obs) != 0);
            for (int k = 0; k < 4; k++)
                ck_assert(fabsf(venv.obs[k]) <= 0.05f);
            ck_assert_int_eq(venv.elapsed[0], 0);
            ck_assert_double_eq(venv.running_return[0], 0.0);
        }
        vec_env_free(&venv);
    }
}
END_TEST

/* Acrobot pays -1 per step and 0 on the terminal one: ten steps at rest,
 * then a step from upright, is an episode of 11 steps returning -10. */
START_TEST(test_vec_env_acrobot_episode_return) {
    vec_env venv;
    ck_assert_int_eq(vec_env_init(&venv, &env_acrobot_v1, 2, 9), 0);
    const double upright[4] = {M_PI, 0, 0, 0};
    const int32_t actions[2] = {1, 1};
    for (int t = 1; t <= 11; t++) {
        if (t == 11)
            memcpy(venv.states, upright, sizeof upright); /* env 0 only */
        vec_env_step(&venv, actions);
        ck_assert_float_eq(venv.out.rewards[0], t == 11 ? 0.0f : -1.0f);
        ck_assert_uint_eq(venv.out.terminated[0], t == 11);
        ck_assert_uint_eq(venv.out.terminated[1], 0);
    }
    ck_assert_int_eq(venv.out.episode_length[0], 11);
    ck_assert_double_eq(venv.out.episode_return[0], -10.0);
    ck_assert_float_eq_tol(venv.out.final_obs[0], -1.0f, 1e-6f); /* cos(theta1) at the top */
    ck_assert_int_eq(venv.elapsed[1], 11);
    ck_assert_double_eq(venv.running_return[1], -11.0);
    vec_env_free(&venv);
}
END_TEST

/* The same seed and actions give bit-identical trajectories. */
START_TEST(test_vec_env_reproducible) {
    enum { N = 3, STEPS = 1000 };
    vec_env a, b;
    ck_assert_int_eq(vec_env_init(&a, &env_cartpole_v1, N, 77), 0);
    ck_assert_int_eq(vec_env_init(&b, &env_cartpole_v1, N, 77), 0);
    rng_state policy;
    rng_seed(&policy, 1, 0);
    int episodes = 0;
    for (int t = 0; t < STEPS; t++) {
        int32_t actions[N];
        for (int i = 0; i < N; i++)
            actions[i] = (int32_t)rng_next_below(&policy, 2);
        vec_env_step(&a, actions);
        vec_env_step(&b, actions);
        ck_assert_mem_eq(a.obs, b.obs, N * 4 * sizeof(float));
        ck_assert_mem_eq(a.out.rewards, b.out.rewards, N * sizeof(float));
        ck_assert_mem_eq(a.out.terminated, b.out.terminated, N);
        ck_assert_mem_eq(a.out.episode_return, b.out.episode_return, N * sizeof(double));
        for (int i = 0; i < N; i++)
            episodes += a.out.terminated[i];
    }
    ck_assert_int_gt(episodes, 10); /* the comparison spanned autoresets */
    vec_env_free(&a);
    vec_env_free(&b);
}
END_TEST

Suite *env_suite(void) {
    Suite *s = suite_create("env");
    TCase *tc = tcase_create("cartpole");
    tcase_add_test(tc, test_cartpole_spec);
    tcase_add_test(tc, test_cartpole_one_step_matches_reference);
    tcase_add_test(tc, test_cartpole_trajectory_matches_reference);
    tcase_add_test(tc, test_cartpole_termination_thresholds);
    tcase_add_test(tc, test_cartpole_reset);
    suite_add_tcase(s, tc);
    tc = tcase_create("acrobot");
    tcase_add_test(tc, test_acrobot_spec);
    tcase_add_test(tc, test_acrobot_one_step_matches_reference);
    tcase_add_test(tc, test_acrobot_trajectory_matches_reference);
    tcase_add_test(tc, test_acrobot_wraps_angles);
    tcase_add_test(tc, test_acrobot_bounds_velocities);
    tcase_add_test(tc, test_acrobot_terminal_condition);
    tcase_add_test(tc, test_acrobot_reset);
    suite_add_tcase(s, tc);
    tc = tcase_create("vec_env");
    tcase_add_test(tc, test_env_find);
    tcase_add_test(tc, test_vec_env_rejects_bad_arguments);
    tcase_add_test(tc, test_vec_env_init_seeds_each_env);
    tcase_add_test(tc, test_vec_env_matches_single_envs_cartpole);
    tcase_add_test(tc, test_vec_env_matches_single_envs_acrobot);
    tcase_add_test(tc, test_vec_env_truncates_at_time_limit);
    tcase_add_test(tc, test_vec_env_acrobot_episode_return);
    tcase_add_test(tc, test_vec_env_reproducible);
    suite_add_tcase(s, tc);
    return s;
}
