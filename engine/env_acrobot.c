/* Acrobot-v1 — two links hanging from a fixed pivot, torque only at the
 * joint between them; swing the tip above the line one link length above the
 * pivot.
 *
 * Dynamics, constants and integration are Gymnasium's
 * (gymnasium/envs/classic_control/acrobot.py, "book" variant): the equations
 * of motion in Sutton & Barto, Reinforcement Learning (1998) §11.3, after
 * Spong (1995), advanced by one classical fourth-order Runge-Kutta step of
 * dt = 0.2 s with the torque held constant over the step. After the step the
 * angles are wrapped into [-pi, pi] and the velocities clipped to
 * [-4 pi, 4 pi] and [-9 pi, 9 pi].
 *
 * State layout (the tests rely on it): 4 doubles
 *   [theta1, theta2, dtheta1, dtheta2]
 * and nothing else. theta1 is the angle of the first link from hanging
 * straight down, theta2 the angle of the second link relative to the first
 * (rad); dtheta1, dtheta2 their angular velocities (rad/s).
 *
 * Observation (float32): [cos theta1, sin theta1, cos theta2, sin theta2,
 * dtheta1, dtheta2]. Actions 0, 1, 2 apply torque -1, 0, +1 (N m).
 * Terminal when the tip is higher than 1 above the pivot:
 * -cos(theta1) - cos(theta1 + theta2) > 1. Reward -1 per step, 0 on the step
 * that reaches the terminal state.
 */
#include <assert.h>
#include <math.h>

#include "env.h"

enum { ACROBOT_OBS_DIM = 6, ACROBOT_N_ACTIONS = 3 };

#define ACROBOT_DT          0.2 /* seconds per step */
#define ACROBOT_GRAVITY     9.8
#define ACROBOT_LINK_LENGTH 1.0 /* l1 (m); only the first link's length enters the dynamics */
#define ACROBOT_LINK_MASS   1.0 /* m1 = m2 (kg) */
#define ACROBOT_LINK_COM    0.5 /* lc1 = lc2: pivot to centre of mass (m) */
#define ACROBOT_LINK_MOI    1.0 /* I1 = I2: moment of inertia (kg m^2) */
#define ACROBOT_MAX_VEL_1   (4 * M_PI)
#define ACROBOT_MAX_VEL_2   (9 * M_PI)
#define ACROBOT_RESET_BOUND 0.1

static const double acrobot_torque[ACROBOT_N_ACTIONS] = {-1.0, 0.0, +1.0};

/* ds = d/dt s for s = [theta1, theta2, dtheta1, dtheta2] under torque on the
 * second joint. Sutton & Barto's equations, grouped as Gymnasium groups them
 * so the rounding matches too. */
static void acrobot_derivs(const double s[4], double torque, double ds[4]) {
    const double m1 = ACROBOT_LINK_MASS, m2 = ACROBOT_LINK_MASS;
    const double l1 = ACROBOT_LINK_LENGTH;
    const double lc1 = ACROBOT_LINK_COM, lc2 = ACROBOT_LINK_COM;
    const double i1 = ACROBOT_LINK_MOI, i2 = ACROBOT_LINK_MOI;
    const double g = ACROBOT_GRAVITY;
    double theta1 = s[0], theta2 = s[1], dtheta1 = s[2], dtheta2 = s[3];

    double d1 =
        m1 * (lc1 * lc1) + m2 * (l1 * l1 + lc2 * lc2 + 2 * l1 * lc2 * cos(theta2)) + i1 + i2;
    double d2 = m2 * (lc2 * lc2 + l1 * lc2 * cos(theta2)) + i2;
    double phi2 = m2 * lc2 * g * cos(theta1 + theta2 - M_PI / 2.0);
    double phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * sin(theta2) -
                  2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2) +
                  (m1 * lc1 + m2 * l1) * g * cos(theta1 - M_PI / 2) + phi2;
    /* The book's form keeps the centrifugal term m2 l1 lc2 dtheta1^2 sin(theta2)
     * that the NIPS paper drops. */
    double ddtheta2 =
        (torque + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * sin(theta2) - phi2) /
        (m2 * (lc2 * lc2) + i2 - (d2 * d2) / d1);
    double ddtheta1 = -(d2 * ddtheta2 + phi1) / d1;

    ds[0] = dtheta1;
    ds[1] = dtheta2;
    ds[2] = ddtheta1;
    ds[3] = ddtheta2;
}

/* out = s + h * k */
static void acrobot_axpy(const double s[4], double h, const double k[4], double out[4]) {
    for (int j = 0; j < 4; j++)
        out[j] = s[j] + h * k[j];
}

/* Classical RK4 over [0, dt]. The torque stays fixed across the stages, which
 * is what Gymnasium gets by appending it to the state with derivative 0. */
static void acrobot_rk4(double s[4], double torque) {
    const double dt = ACROBOT_DT, half_dt = ACROBOT_DT / 2.0;
    double k1[4], k2[4], k3[4], k4[4], tmp[4];
    acrobot_derivs(s, torque, k1);
    acrobot_axpy(s, half_dt, k1, tmp);
    acrobot_derivs(tmp, torque, k2);
    acrobot_axpy(s, half_dt, k2, tmp);
    acrobot_derivs(tmp, torque, k3);
    acrobot_axpy(s, dt, k3, tmp);
    acrobot_derivs(tmp, torque, k4);
    for (int j = 0; j < 4; j++)
        s[j] = s[j] + dt / 6.0 * (k1[j] + 2 * k2[j] + 2 * k3[j] + k4[j]);
}

/* Gymnasium's wrap(): shifts x by whole turns until -pi <= x <= pi. */
static double acrobot_wrap_angle(double x) {
    while (x > M_PI)
        x -= 2 * M_PI;
    while (x < -M_PI)
        x += 2 * M_PI;
    return x;
}

static double acrobot_clip(double x, double bound) {
    return fmin(fmax(x, -bound), bound);
}

static void acrobot_write_obs(const double s[4], float *obs) {
    obs[0] = (float)cos(s[0]);
    obs[1] = (float)sin(s[0]);
    obs[2] = (float)cos(s[1]);
    obs[3] = (float)sin(s[1]);
    obs[4] = (float)s[2];
    obs[5] = (float)s[3];
}

/* Draws theta1, theta2, dtheta1, dtheta2 in that order, each U(-0.1, 0.1). */
static void acrobot_reset(void *state, rng_state *rng, float *obs) {
    double *s = state;
    for (int j = 0; j < 4; j++)
        s[j] = rng_next_uniform(rng, -ACROBOT_RESET_BOUND, ACROBOT_RESET_BOUND);
    acrobot_write_obs(s, obs);
}

static float acrobot_step(void *state, int32_t action, float *obs, bool *terminated) {
    assert(action >= 0 && action < ACROBOT_N_ACTIONS);
    double *s = state;
    acrobot_rk4(s, acrobot_torque[action]);
    s[0] = acrobot_wrap_angle(s[0]);
    s[1] = acrobot_wrap_angle(s[1]);
    s[2] = acrobot_clip(s[2], ACROBOT_MAX_VEL_1);
    s[3] = acrobot_clip(s[3], ACROBOT_MAX_VEL_2);
    *terminated = -cos(s[0]) - cos(s[1] + s[0]) > 1.0;
    acrobot_write_obs(s, obs);
    return *terminated ? 0.0f : -1.0f;
}

const env_spec env_acrobot_v1 = {
    .name = "Acrobot-v1",
    .obs_dim = ACROBOT_OBS_DIM,
    .n_actions = ACROBOT_N_ACTIONS,
    .max_episode_steps = 500,
    .state_bytes = 4 * sizeof(double),
    .max_step_reward = 0.0f,
    .reset = acrobot_reset,
    .step = acrobot_step,
};
