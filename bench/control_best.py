#!/usr/bin/env python3
"""Final vs best greedy return of the default CartPole-v1 run, over seeds.

Runs `build/rlhf-train ppo-control` with its defaults (100k steps) and a
greedy evaluation (eval_episodes 100) every --eval-interval updates, per
seed, and prints per seed the last evaluation's mean return, the best one
(what keep_best saves as a checkpoint) and where it happened; then the
median and range of each. --algorithm a2c runs the A2C baseline instead
(with Stable-Baselines3's CartPole settings unless --plain).

    python3 bench/control_best.py --seeds 1-10
"""
import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time

A2C_SETTINGS = ["--num_envs", "8", "--num_steps", "5", "--learning_rate", "7e-4",
                "--anneal_lr", "false", "--gae_lambda", "1", "--ent_coef", "0",
                "--norm_adv", "false"]


def seeds(text):
    if "-" in text:
        lo, hi = text.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in text.split(",")]


def run(binary, seed, args):
    cmd = [binary, "ppo-control", "--seed", str(seed), "--eval_interval", str(args.eval_interval),
           "--checkpoint-dir", tempfile.mkdtemp(prefix="control-best-"), "--algorithm", args.algorithm]
    if args.algorithm == "a2c" and not args.plain:
        cmd += A2C_SETTINGS
    t0 = time.monotonic()
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=600).stdout
    wall = time.monotonic() - t0
    evals = []
    for line in out.splitlines():
        row = json.loads(line)
        if "eval_return" in row and "update" in row:
            evals.append((row["global_step"], row["eval_return"]))
    return evals, wall


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", default="1-10")
    p.add_argument("--eval-interval", type=int, default=5)
    p.add_argument("--algorithm", default="ppo", choices=["ppo", "a2c"])
    p.add_argument("--plain", action="store_true", help="a2c with the ppo defaults")
    p.add_argument("--binary", default="build/rlhf-train")
    args = p.parse_args()
    finals, bests = [], []
    print(f"algorithm {args.algorithm}, eval every {args.eval_interval} updates (100 greedy episodes)")
    print("| seed | final greedy return | best greedy return | best at step | evaluations | wall s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for seed in seeds(args.seeds):
        evals, wall = run(args.binary, seed, args)
        if not evals:
            sys.exit(f"seed {seed}: no evaluation in the output")
        final = evals[-1][1]
        best_step, best = max(evals, key=lambda e: (e[1], -e[0]))
        finals.append(final)
        bests.append(best)
        print(f"| {seed} | {final:.1f} | {best:.1f} | {best_step} | {len(evals)} | {wall:.1f} |")
    def summary(xs):
        return f"median {statistics.median(xs):.1f} (min {min(xs):.1f}, max {max(xs):.1f})"
    print(f"\nfinal: {summary(finals)}; best: {summary(bests)}; "
          f"final >= 475 in {sum(f >= 475 for f in finals)} of {len(finals)} seeds, "
          f"best >= 475 in {sum(b >= 475 for b in bests)}")


if __name__ == "__main__":
    main()
