#!/usr/bin/python3
"""PyTorch reference for `rlhf-train ppo-control`: PPO on CartPole-v1.

What this is
    A CleanRL-style PPO (the algorithm of CleanRL's ppo.py, written afresh)
    that reads the same JSON config and prints the same JSON lines as our C
    command `rlhf-train ppo-control`, so bench/bench_ppo_control.py can run
    both on identical settings and compare environment steps and wall-clock
    seconds to "solve" (greedy evaluation mean return >= target_return).

Why the comparison is fair
    * Same problem: CartPole-v1 with Gymnasium's exact dynamics (euler,
      tau 0.02, float64 state, float32 observations, libm sin/cos/pow where
      Gymnasium calls them -- see the note above cartpole_step), TimeLimit
      500 and same-step autoreset. Checked bit for bit against a scalar
      transliteration of Gymnasium's CartPoleEnv.step.
    * Same algorithm and hyperparameters: every knob comes from the shared
      config file; truncation is bootstrapped (SB3 style: reward +=
      gamma * V(final_obs), then the step counts as done for GAE), which is
      mathematically what the C code does with next_value = V(final_obs).
    * Same evaluation rule: every eval_interval updates, eval_episodes greedy
      episodes run in parallel on fresh seeds; the evaluation stops as soon as
      the target can no longer be met; solved when the mean >= target_return.
    * The reference gets its best setting: one PyTorch (OpenMP) thread
      (two make the optimisation phase ~9x slower on this 2-core machine)
      and OpenBLAS threads set before torch is imported (BENCHMARKING.md);
      Categorical is built with validate_args=False (argument checking only:
      ~65 us per environment step here, no number changes), Adam runs with
      foreach=True, and rollouts skip the unused entropy. Everything else
      follows CleanRL, Python overhead included: that is the reference.
    Random streams (torch, numpy) necessarily differ from the C code's, so
    runs are compared statistically over seeds, not bit for bit.

Usage
    /usr/bin/python3 bench/ppo_control_torch.py [--config FILE.json]
        [--KEY VALUE ...] [--threads N] [--openblas-threads M]

    Config keys (JSON file and/or --key value; unknown keys are an error):
    see DEFAULTS below. Output on stdout, one JSON object a line: first
    {"event": "config", ...} (the resolved config), then one object per
    update, then {"event": "solved", ...} if the target was reached (training
    stops there). A per-phase timing summary goes to stderr at the end.
"""

import json
import math
import os
import sys
import time
from collections import deque

DEFAULTS = {
    "env": "CartPole-v1",
    "seed": 1,
    "total_steps": 100000,
    "num_envs": 4,
    "num_steps": 128,
    "learning_rate": 2.5e-4,
    "anneal_lr": True,
    "gamma": 0.99,
    "gae_lambda": 0.95,
    "num_minibatches": 4,
    "update_epochs": 4,
    "norm_adv": True,
    "clip_coef": 0.2,
    "clip_vloss": True,
    "ent_coef": 0.01,
    "vf_coef": 0.5,
    "max_grad_norm": 0.5,
    "target_kl": 0.0,  # 0 = off
    "hidden_size": 64,
    "hidden_layers": 2,
    "activation": "tanh",  # or "relu"
    "shared_trunk": False,
    "adam_eps": 1e-5,
    "eval_interval": 1,  # updates between evaluations; 0 = never
    "eval_episodes": 100,
    "target_return": 0.0,  # 0 = off
    "checkpoint_interval": 0,  # rlhf-train's resumable checkpoints; the reference writes none
}

USAGE = (
    "usage: /usr/bin/python3 bench/ppo_control_torch.py [--config FILE.json] "
    "[--KEY VALUE ...] [--threads N] [--openblas-threads M]\n"
    "keys: " + ", ".join(DEFAULTS) + "\n"
)


class ConfigError(Exception):
    pass


# ----------------------------------------------------------------------------
# Configuration (parsed before torch is imported: thread settings must be in
# the environment before libopenblas / libgomp start).


def _coerce(key, value, from_text):
    """Converts value to the type of DEFAULTS[key]; from_text: CLI string."""
    default = DEFAULTS[key]
    if isinstance(default, bool):
        if from_text:
            low = value.lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
        elif isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected a boolean, got {value!r}")
    if isinstance(default, int):
        try:
            if from_text:
                number = float(value)
            elif isinstance(value, bool):
                raise ValueError
            else:
                number = value
            if isinstance(number, float) and not number.is_integer():
                raise ValueError
            return int(number)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
    if isinstance(default, float):
        try:
            if not from_text and isinstance(value, bool):
                raise ValueError
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    return value


def parse_args(argv):
    """Returns (config dict, torch threads, OpenBLAS threads)."""
    config = dict(DEFAULTS)
    overrides = []
    threads, openblas_threads = 1, None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            sys.exit(0)
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument {arg!r}")
        name, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(argv):
                raise ConfigError(f"{arg} needs a value")
            value = argv[i + 1]
            i += 1
        i += 1
        name = name.replace("-", "_")
        if name == "config":
            try:
                with open(value) as f:
                    loaded = json.load(f)
            except (OSError, ValueError) as e:
                raise ConfigError(f"--config {value}: {e}") from None
            if not isinstance(loaded, dict):
                raise ConfigError(f"--config {value}: not a JSON object")
            for key, v in loaded.items():
                if key not in DEFAULTS:
                    raise ConfigError(f"{value}: unknown key {key!r}")
                config[key] = _coerce(key, v, from_text=False)
        elif name in ("threads", "openblas_threads"):
            if not value.isdigit() or int(value) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} needs a positive integer")
            if name == "threads":
                threads = int(value)
            else:
                openblas_threads = int(value)
        elif name in DEFAULTS:
            overrides.append((name, value))
        else:
            raise ConfigError(f"unknown option --{name}")
    for key, value in overrides:  # command line wins over the file
        config[key] = _coerce(key, value, from_text=True)
    validate(config)
    return config, threads, openblas_threads or threads


def validate(c):
    if c["env"] != "CartPole-v1":
        raise ConfigError(f"env {c['env']!r}: the reference implements CartPole-v1 only")
    for key in ("total_steps", "num_envs", "num_steps", "num_minibatches",
                "update_epochs", "hidden_size", "hidden_layers"):
        if c[key] < 1:
            raise ConfigError(f"{key} must be >= 1")
    batch = c["num_envs"] * c["num_steps"]
    if batch % c["num_minibatches"]:
        raise ConfigError(f"num_envs*num_steps ({batch}) must be divisible by num_minibatches")
    if c["total_steps"] < batch:
        raise ConfigError(f"total_steps must be >= num_envs*num_steps ({batch})")
    if c["activation"] not in ("tanh", "relu"):
        raise ConfigError("activation must be 'tanh' or 'relu'")
    if c["eval_interval"] < 0 or c["eval_episodes"] < 1:
        raise ConfigError("eval_interval must be >= 0 and eval_episodes >= 1")
    if c["checkpoint_interval"] != 0:
        raise ConfigError("checkpoint_interval: the reference writes no checkpoints (0 only)")
    for key in ("learning_rate", "adam_eps"):
        if not c[key] > 0:
            raise ConfigError(f"{key} must be > 0")
    for key in ("gamma", "gae_lambda"):
        if not 0 <= c[key] <= 1:
            raise ConfigError(f"{key} must be in [0, 1]")
    for key in ("clip_coef", "ent_coef", "vf_coef", "max_grad_norm", "target_kl", "target_return"):
        if not c[key] >= 0:
            raise ConfigError(f"{key} must be >= 0")


# ----------------------------------------------------------------------------
# CartPole-v1, vectorised with numpy. Gymnasium's CartPoleEnv.step, term by
# term, in the same operation order, so float64 results match it bit for bit
# on the same libm. Two details matter for that: Gymnasium calls math.cos /
# math.sin (numpy's SIMD cos/sin differ in the last bit for most inputs here),
# and its squares `theta_dot**2`, `costheta**2` go through libm pow(), which in
# glibc 2.36 differs from the correctly rounded x*x by 1 ulp for ~0.1% of
# inputs. So those four come from libm element by element.
# numpy arrives as a parameter: it is imported in main(), only after the
# OpenBLAS/OpenMP thread variables are set (numpy loads OpenBLAS too).

GRAVITY = 9.8
MASSCART = 1.0
MASSPOLE = 0.1
TOTAL_MASS = MASSPOLE + MASSCART
LENGTH = 0.5  # half the pole's length
POLEMASS_LENGTH = MASSPOLE * LENGTH
FORCE_MAG = 10.0
TAU = 0.02
THETA_THRESHOLD = 12 * 2 * math.pi / 360
X_THRESHOLD = 2.4
MAX_EPISODE_STEPS = 500
OBS_DIM, N_ACTIONS = 4, 2
MAX_RETURN = 500.0  # reward 1 per step, at most MAX_EPISODE_STEPS steps


def cartpole_step(state, action, np):
    """state: (4, n) float64 rows x, x_dot, theta, theta_dot; action: (n,) ints.
    Returns (new state, terminated bool array). Reward is 1 for every step."""
    x, x_dot, theta, theta_dot = state
    force = np.where(action == 1, FORCE_MAG, -FORCE_MAG)
    cos_list = [math.cos(t) for t in theta.tolist()]
    costheta = np.array(cos_list)
    sintheta = np.array([math.sin(t) for t in theta.tolist()])
    theta_dot_sq = np.array([v ** 2 for v in theta_dot.tolist()])  # libm pow
    costheta_sq = np.array([v ** 2 for v in cos_list])
    temp = (force + POLEMASS_LENGTH * theta_dot_sq * sintheta) / TOTAL_MASS
    thetaacc = (GRAVITY * sintheta - costheta * temp) / (
        LENGTH * (4.0 / 3.0 - MASSPOLE * costheta_sq / TOTAL_MASS))
    xacc = temp - POLEMASS_LENGTH * thetaacc * costheta / TOTAL_MASS
    new = np.stack((x + TAU * x_dot, x_dot + TAU * xacc,
                    theta + TAU * theta_dot, theta_dot + TAU * thetaacc))
    x, theta = new[0], new[2]
    terminated = ((x < -X_THRESHOLD) | (x > X_THRESHOLD)
                  | (theta < -THETA_THRESHOLD) | (theta > THETA_THRESHOLD))
    return new, terminated


class CartPoleVec:
    """n copies of CartPole-v1 with TimeLimit(500) and same-step autoreset.
    Env i draws its initial states from its own generator (seed, i)."""

    def __init__(self, n, seed, np):
        self.np, self.n = np, n
        self.rngs = [np.random.default_rng([seed, i]) for i in range(n)]
        self.state = np.empty((OBS_DIM, n))
        self.elapsed = np.zeros(n, dtype=np.int64)
        self.running_return = np.zeros(n)

    def reset(self):
        for i in range(self.n):
            self.state[:, i] = self.rngs[i].uniform(-0.05, 0.05, size=OBS_DIM)
        self.elapsed[:] = 0
        self.running_return[:] = 0
        return self.state.T.astype(self.np.float32)

    def step(self, action):
        """Returns obs (n,4) f32, reward (n,) f32, terminated, truncated,
        final_obs (n,4) f32 (valid where an episode ended), finished returns."""
        np = self.np
        self.state, terminated = cartpole_step(self.state, action, np)
        self.elapsed += 1
        self.running_return += 1.0
        truncated = (self.elapsed >= MAX_EPISODE_STEPS) & ~terminated
        done = terminated | truncated
        final_obs = self.state.T.astype(np.float32)
        finished = []
        if done.any():
            for i in np.flatnonzero(done):
                finished.append(float(self.running_return[i]))
                self.state[:, i] = self.rngs[i].uniform(-0.05, 0.05, size=OBS_DIM)
            self.elapsed[done] = 0
            self.running_return[done] = 0
        obs = self.state.T.astype(np.float32)
        reward = np.ones(self.n, dtype=np.float32)
        return obs, reward, terminated, truncated, final_obs, finished


# ----------------------------------------------------------------------------
# PPO


def main(argv):
    try:
        config, threads, openblas_threads = parse_args(argv)
    except ConfigError as e:
        sys.stderr.write(f"ppo_control_torch: {e}\n{USAGE}")
        return 2
    os.environ["OPENBLAS_NUM_THREADS"] = str(openblas_threads)
    os.environ["OMP_NUM_THREADS"] = str(threads)

    import numpy as np
    import torch
    import torch.nn as nn
    from torch.distributions.categorical import Categorical

    torch.set_num_threads(threads)
    c = config
    # First line, as rlhf-train prints it: the resolved config (the runner
    # checks that both programs ran the same one).
    print(json.dumps({"event": "config", "job_type": "ppo-control", "config": c,
                      "threads": threads, "openblas_threads": openblas_threads,
                      "torch": torch.__version__}), flush=True)

    def init_linear(n_in, n_out, gain):
        layer = nn.Linear(n_in, n_out)
        nn.init.orthogonal_(layer.weight, gain)
        nn.init.zeros_(layer.bias)
        return layer

    def body():
        act = nn.Tanh if c["activation"] == "tanh" else nn.ReLU
        layers, width = [], OBS_DIM
        for _ in range(c["hidden_layers"]):
            layers += [init_linear(width, c["hidden_size"], math.sqrt(2)), act()]
            width = c["hidden_size"]
        return nn.Sequential(*layers)

    class Agent(nn.Module):
        """Separate actor and critic MLPs (CleanRL), or one shared trunk with
        two heads when shared_trunk is set."""

        def __init__(self):
            super().__init__()
            self.critic_body = body()
            self.actor_body = self.critic_body if c["shared_trunk"] else body()
            self.critic_head = init_linear(c["hidden_size"], 1, 1.0)
            self.actor_head = init_linear(c["hidden_size"], N_ACTIONS, 0.01)

        def value(self, x):
            return self.critic_head(self.critic_body(x)).view(-1)

        def logits(self, x):
            return self.actor_head(self.actor_body(x))

        def act_and_value(self, x, action=None, with_entropy=True):
            if c["shared_trunk"]:
                h = self.critic_body(x)
                logits, value = self.actor_head(h), self.critic_head(h).view(-1)
            else:
                logits, value = self.logits(x), self.value(x)
            dist = Categorical(logits=logits, validate_args=False)
            if action is None:
                action = dist.sample()
            entropy = dist.entropy() if with_entropy else None  # unused in rollouts
            return action, dist.log_prob(action), entropy, value

    seed = c["seed"]
    torch.manual_seed(seed)
    shuffle_rng = np.random.default_rng([seed, 7])
    n_envs, n_steps = c["num_envs"], c["num_steps"]
    batch_size = n_envs * n_steps
    minibatch_size = batch_size // c["num_minibatches"]
    num_updates = c["total_steps"] // batch_size
    gamma, lam = c["gamma"], c["gae_lambda"]

    agent = Agent()
    optimizer = torch.optim.Adam(agent.parameters(), lr=c["learning_rate"], eps=c["adam_eps"],
                                 foreach=True)

    obs_buf = torch.zeros((n_steps, n_envs, OBS_DIM))
    act_buf = torch.zeros((n_steps, n_envs), dtype=torch.long)
    logp_buf = torch.zeros((n_steps, n_envs))
    rew_buf = torch.zeros((n_steps, n_envs))
    done_buf = torch.zeros((n_steps, n_envs))  # 1 where the episode ended at this step
    val_buf = torch.zeros((n_steps, n_envs))

    envs = CartPoleVec(n_envs, seed, np)
    next_obs = torch.from_numpy(envs.reset())
    recent_returns = deque(maxlen=100)
    eval_count = 0

    def evaluate():
        """Greedy evaluation on eval_episodes fresh episodes run in parallel.
        Returns (mean return, True) or (None, False) if aborted because the
        target can no longer be reached."""
        nonlocal eval_count
        eval_count += 1
        n = c["eval_episodes"]
        target = c["target_return"]
        rng = np.random.default_rng([seed, 1_000_003, eval_count])
        state = rng.uniform(-0.05, 0.05, size=(OBS_DIM, n))
        active = np.arange(n)  # episodes still running
        returns = np.zeros(n)
        finished_total, n_finished = 0.0, 0
        for t in range(MAX_EPISODE_STEPS):
            with torch.no_grad():
                obs = torch.from_numpy(state[:, active].T.astype(np.float32))
                action = agent.logits(obs).argmax(dim=1).numpy()
            new, terminated = cartpole_step(state[:, active], action, np)
            state[:, active] = new
            returns[active] += 1.0
            ended = terminated if t + 1 < MAX_EPISODE_STEPS else np.ones_like(terminated)
            if ended.any():
                finished_total += returns[active[ended]].sum()
                n_finished += int(ended.sum())
                active = active[~ended]
                # best achievable mean: every unfinished episode scores the max
                if target > 0 and finished_total + MAX_RETURN * (n - n_finished) < target * n:
                    return None, False
            if active.size == 0:
                break
        return float(returns.mean()), True

    global_step = 0
    phase_s = {"rollout": 0.0, "optimise": 0.0, "eval": 0.0}  # reported on stderr
    start = time.perf_counter()
    for update in range(1, num_updates + 1):
        if c["anneal_lr"]:
            frac = 1.0 - (update - 1.0) / num_updates
            optimizer.param_groups[0]["lr"] = frac * c["learning_rate"]

        t0 = time.perf_counter()
        # Rollout: num_steps vector steps of num_envs environments.
        for step in range(n_steps):
            global_step += n_envs
            obs_buf[step] = next_obs
            with torch.no_grad():
                action, logp, _, value = agent.act_and_value(next_obs, with_entropy=False)
            act_buf[step] = action
            logp_buf[step] = logp
            val_buf[step] = value
            obs, reward, terminated, truncated, final_obs, finished = envs.step(action.numpy())
            if truncated.any():  # SB3: bootstrap the time-limit cut
                with torch.no_grad():
                    v_final = agent.value(torch.from_numpy(final_obs[truncated])).numpy()
                reward[truncated] += np.float32(gamma) * v_final
            rew_buf[step] = torch.from_numpy(reward)
            done_buf[step] = torch.from_numpy((terminated | truncated).astype(np.float32))
            next_obs = torch.from_numpy(obs)
            recent_returns.extend(finished)

        t1 = time.perf_counter()
        phase_s["rollout"] += t1 - t0
        # GAE(lambda) over the rollout.
        with torch.no_grad():
            next_value = agent.value(next_obs)
            advantages = torch.zeros_like(rew_buf)
            last = torch.zeros(n_envs)
            for t in reversed(range(n_steps)):
                following = next_value if t == n_steps - 1 else val_buf[t + 1]
                nonterminal = 1.0 - done_buf[t]
                delta = rew_buf[t] + gamma * following * nonterminal - val_buf[t]
                last = delta + gamma * lam * nonterminal * last
                advantages[t] = last
            returns = advantages + val_buf

        b_obs = obs_buf.reshape(-1, OBS_DIM)
        b_act = act_buf.reshape(-1)
        b_logp = logp_buf.reshape(-1)
        b_adv = advantages.reshape(-1)
        b_ret = returns.reshape(-1)
        b_val = val_buf.reshape(-1)

        # Optimisation: update_epochs passes over shuffled minibatches.
        clipfracs = []
        clip = c["clip_coef"]
        for epoch in range(c["update_epochs"]):
            order = torch.from_numpy(shuffle_rng.permutation(batch_size))
            for begin in range(0, batch_size, minibatch_size):
                mb = order[begin:begin + minibatch_size]
                _, new_logp, entropy, new_value = agent.act_and_value(b_obs[mb], b_act[mb])
                logratio = new_logp - b_logp[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    old_approx_kl = (-logratio).mean()
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > clip).float().mean().item())

                adv = b_adv[mb]
                if c["norm_adv"]:
                    adv = (adv - adv.mean()) / (adv.std() + 1e-8)
                pg_loss = torch.max(-adv * ratio,
                                    -adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()

                if c["clip_vloss"]:
                    unclipped = (new_value - b_ret[mb]) ** 2
                    v_clipped = b_val[mb] + torch.clamp(new_value - b_val[mb], -clip, clip)
                    clipped = (v_clipped - b_ret[mb]) ** 2
                    v_loss = 0.5 * torch.max(unclipped, clipped).mean()
                else:
                    v_loss = 0.5 * ((new_value - b_ret[mb]) ** 2).mean()

                entropy_mean = entropy.mean()
                loss = pg_loss - c["ent_coef"] * entropy_mean + c["vf_coef"] * v_loss
                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), c["max_grad_norm"])
                optimizer.step()

            if c["target_kl"] > 0 and approx_kl.item() > c["target_kl"]:
                break

        y_pred, y_true = b_val.numpy(), b_ret.numpy()
        var_y = np.var(y_true)
        explained_var = None if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)

        record = {"update": update, "global_step": global_step}
        if recent_returns:
            record["episodic_return"] = sum(recent_returns) / len(recent_returns)
        record.update({
            "policy_loss": pg_loss.item(),
            "value_loss": v_loss.item(),
            "entropy": entropy_mean.item(),
            "old_approx_kl": old_approx_kl.item(),
            "approx_kl": approx_kl.item(),
            "clipfrac": float(np.mean(clipfracs)),
            "explained_variance": explained_var,
            "learning_rate": optimizer.param_groups[0]["lr"],
        })

        t2 = time.perf_counter()
        phase_s["optimise"] += t2 - t1
        solved = False
        eval_return = None
        if c["eval_interval"] > 0 and update % c["eval_interval"] == 0:
            eval_return, complete = evaluate()
            solved = complete and c["target_return"] > 0 and eval_return >= c["target_return"]
        t3 = time.perf_counter()
        phase_s["eval"] += t3 - t2
        wall = t3 - start
        record["sps"] = int(global_step / wall)
        record["wall_s"] = round(wall, 4)
        if eval_return is not None:
            record["eval_return"] = eval_return
        elif c["eval_interval"] > 0 and update % c["eval_interval"] == 0:
            record["eval_pass"] = 0
        print(json.dumps(record), flush=True)
        if solved:
            print(json.dumps({"event": "solved", "global_step": global_step,
                              "wall_s": round(wall, 4), "eval_return": eval_return}), flush=True)
            break
    sys.stderr.write(
        f"ppo_control_torch: {update} updates, {global_step} steps in {wall:.2f} s; "
        f"per update: rollout {1e3 * phase_s['rollout'] / update:.1f} ms, GAE + optimise "
        f"{1e3 * phase_s['optimise'] / update:.1f} ms, eval {1e3 * phase_s['eval'] / update:.1f} ms\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
