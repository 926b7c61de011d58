/* CartPole-v1 — a pole hinged on a cart that is pushed left or right; keep
 * the pole up and the cart on the track.
 *
 * Dynamics, constants, integrator, thresholds and reward are Gymnasium's
 * (gymnasium/envs/classic_control/cartpole.py): the frictionless cart-pole of
 * Barto, Sutton & Anderson (1983) in the corrected form of Florian (2007),
 * advanced by explicit Euler with tau = 0.02 s.
 *
 * State layout (the tests rely on it): 4 doubles
 *   [x, x_dot, theta, theta_dot]
 * and nothing else. x is the cart position (m), theta the pole angle from
 * upright (rad, positive clockwise). The observation is the state as float32.
 *
 * Actions: 0 pushes left (-force_mag), 1 pushes right (+force_mag).
 * Reward: 1 every step, including the one that terminates the episode.
 */
#include <assert.h>
#include <math.h>

#include "env.h"

enum { CARTPOLE_OBS_DIM = 4 };

typedef struct cartpole_state {
    double x;         /* cart position (m) */
    double x_dot;     /* cart velocity (m/s) */
    double theta;     /* pole angle from upright (rad) */
    double theta_dot; /* pole angular velocity (rad/s) */
} cartpole_state;

#define CARTPOLE_GRAVITY          9.8
#define CARTPOLE_MASS_CART        1.0
#define CARTPOLE_MASS_POLE        0.1
#define CARTPOLE_TOTAL_MASS       (CARTPOLE_MASS_POLE + CARTPOLE_MASS_CART)
#define CARTPOLE_HALF_LENGTH      0.5 /* half the pole's length (m) */
#define CARTPOLE_POLE_MASS_LENGTH (CARTPOLE_MASS_POLE * CARTPOLE_HALF_LENGTH)
#define CARTPOLE_FORCE_MAG        10.0 /* N */
#define CARTPOLE_TAU              0.02 /* seconds per step */
#define CARTPOLE_X_THRESHOLD      2.4
#define CARTPOLE_THETA_THRESHOLD  (12 * 2 * M_PI / 360) /* 12 degrees, as Gymnasium groups it */
#define CARTPOLE_RESET_BOUND      0.05

static void cartpole_write_obs(const cartpole_state *s, float *obs) {
    obs[0] = (float)s->x;
    obs[1] = (float)s->x_dot;
    obs[2] = (float)s->theta;
    obs[3] = (float)s->theta_dot;
}

/* Draws x, x_dot, theta, theta_dot in that order, each U(-0.05, 0.05). */
static void cartpole_reset(void *state, rng_state *rng, float *obs) {
    cartpole_state *s = state;
    s->x = rng_next_uniform(rng, -CARTPOLE_RESET_BOUND, CARTPOLE_RESET_BOUND);
    s->x_dot = rng_next_uniform(rng, -CARTPOLE_RESET_BOUND, CARTPOLE_RESET_BOUND);
    s->theta = rng_next_uniform(rng, -CARTPOLE_RESET_BOUND, CARTPOLE_RESET_BOUND);
    s->theta_dot = rng_next_uniform(rng, -CARTPOLE_RESET_BOUND, CARTPOLE_RESET_BOUND);
    cartpole_write_obs(s, obs);
}

static float cartpole_step(void *state, int32_t action, float *obs, bool *terminated) {
    assert(action == 0 || action == 1);
    cartpole_state *s = state;
    double force = action == 1 ? CARTPOLE_FORCE_MAG : -CARTPOLE_FORCE_MAG;
    double cos_theta = cos(s->theta);
    double sin_theta = sin(s->theta);

    /* Florian 2007, frictionless case. Operations are grouped as Gymnasium
     * groups them (squares first), so the rounding matches too. */
    double temp = (force + CARTPOLE_POLE_MASS_LENGTH * (s->theta_dot * s->theta_dot) * sin_theta) /
                  CARTPOLE_TOTAL_MASS;
    double theta_acc =
        (CARTPOLE_GRAVITY * sin_theta - cos_theta * temp) /
        (CARTPOLE_HALF_LENGTH *
         (4.0 / 3.0 - CARTPOLE_MASS_POLE * (cos_theta * cos_theta) / CARTPOLE_TOTAL_MASS));
    double x_acc = temp - CARTPOLE_POLE_MASS_LENGTH * theta_acc * cos_theta / CARTPOLE_TOTAL_MASS;

    /* Explicit Euler: positions advance with the old velocities. */
    s->x = s->x + CARTPOLE_TAU * s->x_dot;
    s->x_dot = s->x_dot + CARTPOLE_TAU * x_acc;
    s->theta = s->theta + CARTPOLE_TAU * s->theta_dot;
    s->theta_dot = s->theta_dot + CARTPOLE_TAU * theta_acc;

    *terminated = s->x < -CARTPOLE_X_THRESHOLD || s->x > CARTPOLE_X_THRESHOLD ||
                  s->theta < -CARTPOLE_THETA_THRESHOLD || s->theta > CARTPOLE_THETA_THRESHOLD;
    cartpole_write_obs(s, obs);
    return 1.0f;
}

const env_spec env_cartpole_v1 = {
    .name = "CartPole-v1",
    .obs_dim = CARTPOLE_OBS_DIM,
    .n_actions = 2,
    .max_episode_steps = 500,
    .state_bytes = sizeof(cartpole_state),
    .max_step_reward = 1.0f,
    .reset = cartpole_reset,
    .step = cartpole_step,
};
