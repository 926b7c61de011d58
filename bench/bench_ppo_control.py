#!/usr/bin/python3
"""Control PPO benchmark: our C `rlhf-train ppo-control` vs a PyTorch reference.

What it measures
    For each seed, environment steps and wall-clock seconds until PPO "solves"
    CartPole-v1: a greedy evaluation of eval_episodes (100) fresh episodes,
    run after every update, reaches a mean return >= target_return (475).
    Per pair of runs it reports the wall-clock ratio (reference / ours) and
    the env-steps ratio (reference / ours), then medians and min-max ranges,
    plus milliseconds per update (throughput, whether solved or not).

Why it is fair (see /work/shared/BENCHMARKING.md)
    * Same problem: both sides implement Gymnasium's CartPole-v1 dynamics
      exactly (float64 state, float32 observations, TimeLimit 500, same-step
      autoreset); the reference is bench/ppo_control_torch.py.
    * Same hyperparameters: one JSON config file per seed is written here and
      passed unchanged to both programs (same keys, same output format); both
      echo the resolved config as their first line and the runner checks
      that the two agree.
    * Same evaluation rule, run inside each program after every update, with
      the same early abort once the target has become unreachable; wall_s is
      measured by each program from the start of training (interpreter and
      torch start-up excluded, reported separately as process seconds).
    * Same cores, best setting for the reference: both sides get --threads N
      (default 1); the reference additionally gets OPENBLAS_NUM_THREADS
      (--ref-openblas-threads, default N) before torch is imported, which is
      the best setting on this machine for these 64-wide layers.
    * Same BLAS kernels: both link the system libopenblas.so.0. OpenBLAS
      0.3.21 does not know this machine's CPU and falls back to its generic
      Prescott (SSE3) kernels; by default (--openblas-coretype auto) the
      runner then sets OPENBLAS_CORETYPE=SkylakeX for both sides. The machine
      line says which kernels ran.
    * Runs alternate ours, reference, ours, reference, ... after a warm-up
      pair, and ratios are taken pair by pair (the machine is noisy).
    Random number streams differ between the two programs, so a given seed
    does not give the same trajectory on both sides; compare over seeds.

Usage
    /usr/bin/python3 bench/bench_ppo_control.py [--seeds 1,2,3,4,5] [--reps 1]
        [--config '{"total_steps": 200000}'] [--markdown] [--reference-only]
Every run is bounded by --timeout seconds; logs and configs of every run are
kept in --log-dir (a fresh temporary directory by default).
"""

import argparse
import datetime
import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import choose_coretype, fmt

REPO = Path(__file__).resolve().parent.parent
BENCH_CONFIG = {  # the benchmark's fixed protocol; --config may override
    "env": "CartPole-v1",
    "total_steps": 100000,
    "eval_interval": 1,
    "eval_episodes": 100,
    "target_return": 475,
}


def parse_args():
    p = argparse.ArgumentParser(
        description="PPO on CartPole-v1: steps and seconds to solve, C vs PyTorch reference.")
    p.add_argument("--ours", default=str(REPO / "build" / "rlhf-train"),
                   help="our binary (default: build/rlhf-train)")
    p.add_argument("--reference", default=str(REPO / "bench" / "ppo_control_torch.py"),
                   help="the PyTorch reference script")
    p.add_argument("--python", default="/usr/bin/python3",
                   help="interpreter with torch (default: /usr/bin/python3)")
    p.add_argument("--seeds", default="1,2,3,4,5", help="comma-separated seeds")
    p.add_argument("--reps", type=int, default=1, help="repetitions per seed (pairs)")
    p.add_argument("--warmup", type=int, default=1,
                   help="short warm-up pairs run first and discarded (default 1)")
    p.add_argument("--config", default=None,
                   help="JSON object (or path to a JSON file) of config overrides, "
                        "applied to both sides; 'seed' is set per run")
    p.add_argument("--total-steps", type=int, default=None, help="shortcut for total_steps")
    p.add_argument("--threads", type=int, default=1,
                   help="ours: --threads N; reference: torch.set_num_threads(N)")
    p.add_argument("--ref-openblas-threads", type=int, default=None,
                   help="reference OPENBLAS_NUM_THREADS (default: --threads)")
    p.add_argument("--openblas-coretype", default="auto",
                   help="OPENBLAS_CORETYPE for both sides: a kernel name (e.g. SkylakeX), "
                        "'none' to leave OpenBLAS's own choice, or 'auto' (default): "
                        "SkylakeX/Haswell when OpenBLAS falls back to the generic Prescott "
                        "kernels on a CPU with AVX-512/AVX2 (it does on CPUs newer than it knows)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run (default 600)")
    p.add_argument("--reference-only", action="store_true",
                   help="run only the reference (to test the runner before our binary exists)")
    p.add_argument("--markdown", action="store_true",
                   help="also print a markdown block ready for bench/RESULTS.md")
    p.add_argument("--log-dir", default=None, help="where to keep configs and per-run logs")
    args = p.parse_args()
    try:
        args.seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        p.error("--seeds: comma-separated integers expected")
    if not args.seeds or args.reps < 1 or args.warmup < 0 or args.threads < 1:
        p.error("need at least one seed, --reps >= 1, --warmup >= 0, --threads >= 1")
    if args.ref_openblas_threads is None:
        args.ref_openblas_threads = args.threads
    config = dict(BENCH_CONFIG)
    if args.config:
        text = args.config
        if not text.lstrip().startswith("{"):
            text = Path(text).read_text()
        overrides = json.loads(text)
        if not isinstance(overrides, dict):
            p.error("--config: a JSON object expected")
        config.update(overrides)
    if args.total_steps is not None:
        config["total_steps"] = args.total_steps
    config.pop("seed", None)
    args.bench_config = config
    if not args.reference_only and not os.access(args.ours, os.X_OK):
        p.error(f"{args.ours} not found or not executable: build it with `make`, "
                "or pass --reference-only")
    return args


# ----------------------------------------------------------------------------
# Machine description: bench/benchlib.py


def machine_line(args):
    threads = (f"ours --threads {args.threads}; reference torch.set_num_threads({args.threads}), "
               f"OPENBLAS_NUM_THREADS={args.ref_openblas_threads}")
    return benchlib.machine_line(args.python, args.openblas_coretype_env, threads)


# ----------------------------------------------------------------------------
# Running one program


def run_one(side, cmd, env, timeout, log_base):
    """Runs cmd with stdout/stderr to log files; returns a summary dict."""
    out_path, err_path = Path(f"{log_base}.out"), Path(f"{log_base}.err")
    timed_out = False
    t0 = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, start_new_session=True)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)  # the group of the child started above
            rc = proc.wait()
    process_s = time.perf_counter() - t0

    result = {"side": side, "cmd": cmd, "rc": rc, "timed_out": timed_out,
              "process_s": process_s, "solved": False, "log": str(out_path)}
    best_eval, last, bad_lines = None, None, 0
    for line in out_path.read_text().splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            bad_lines += 1
            continue
        if not isinstance(rec, dict):
            bad_lines += 1
        elif rec.get("event") == "config":
            result["config"] = rec.get("config")
        elif rec.get("event") == "solved":
            result.update(solved=True, steps=rec["global_step"], wall_s=rec["wall_s"],
                          eval_return=rec.get("eval_return"))
        elif "update" in rec:
            last = rec
            if rec.get("eval_return") is not None:
                value = rec["eval_return"]
                best_eval = value if best_eval is None else max(best_eval, value)
    result["bad_lines"] = bad_lines
    result["best_eval"] = best_eval
    if last is not None:
        result.update(updates=last["update"], last_step=last["global_step"],
                      last_wall_s=last["wall_s"],
                      ms_per_update=1e3 * last["wall_s"] / last["update"])
    if rc != 0 or last is None:
        tail = err_path.read_text()[-800:]
        result["error"] = ("timed out" if timed_out else f"exit {rc}") + (
            f"; stderr: {tail.strip()}" if tail.strip() else "")
    return result


def commands(args, config_path):
    ours = [args.ours, "ppo-control", "--config", str(config_path),
            "--threads", str(args.threads)]
    reference = [args.python, args.reference, "--config", str(config_path),
                 "--threads", str(args.threads),
                 "--openblas-threads", str(args.ref_openblas_threads)]
    ours_env = dict(os.environ, OPENBLAS_NUM_THREADS=str(args.threads),
                    **args.openblas_coretype_env)
    ref_env = dict(os.environ, **args.openblas_coretype_env)
    return [("ours", ours, ours_env), ("reference", reference, ref_env)]


def config_differences(a, b):
    """Keys whose values differ between two echoed configs (None if either
    program did not echo one)."""
    if not isinstance(a, dict) or not isinstance(b, dict):
        return None
    diff = []
    for key in sorted(set(a) | set(b)):
        x, y = a.get(key), b.get(key)
        same = (isinstance(x, (int, float)) and isinstance(y, (int, float))
                and not isinstance(x, bool) and not isinstance(y, bool)
                and abs(x - y) <= 1e-12 * max(abs(x), abs(y))) or x == y
        if not same:
            diff.append(f"{key}: ours {x!r} vs reference {y!r}")
    return diff


def describe(r):
    if r.get("error") and not r["solved"]:
        return f"{r['side']}: FAILED ({r['error'][:200]})"
    if r["solved"]:
        return f"{r['side']}: solved at {r['steps']} steps, {r['wall_s']:.2f} s"
    return (f"{r['side']}: not solved within {r.get('last_step', '?')} steps "
            f"(best full eval {fmt(r['best_eval'], '.1f')})")


# ----------------------------------------------------------------------------
# Report


def med_range(values, spec):
    return benchlib.med_range(values, spec, with_n=True)


def cell_steps(r):
    if r is None:
        return "—"
    if r["solved"]:
        return str(r["steps"])
    if r.get("error"):
        return "failed"
    best = "" if r["best_eval"] is None else f" (best eval {r['best_eval']:.0f})"
    return f"not solved in {r.get('last_step', '?')}{best}"


def cell_wall(r):
    if r is None or not r["solved"]:
        return "—"
    return f"{r['wall_s']:.2f}"


def ratio(ref, ours, key):
    if ref is None or ours is None or not (ref["solved"] and ours["solved"]):
        return None
    return ref[key] / ours[key] if ours[key] > 0 else None


def report(args, pairs, machine, command):
    sides = ["reference"] if args.reference_only else ["ours", "reference"]
    lines = []
    if args.reference_only:
        lines.append("| seed | rep | ref steps | ref s | ref ms/update |")
        lines.append("|---:|---:|---:|---:|---:|")
    else:
        lines.append("| seed | rep | ours steps | ours s | ref steps | ref s "
                     "| wall ratio ref/ours | steps ratio ref/ours |")
        lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for p in pairs:
        ref, ours = p.get("reference"), p.get("ours")
        if args.reference_only:
            lines.append(f"| {p['seed']} | {p['rep']} | {cell_steps(ref)} | {cell_wall(ref)} "
                         f"| {fmt(ref.get('ms_per_update'), '.1f')} |")
        else:
            lines.append(
                f"| {p['seed']} | {p['rep']} | {cell_steps(ours)} | {cell_wall(ours)} "
                f"| {cell_steps(ref)} | {cell_wall(ref)} "
                f"| {fmt(ratio(ref, ours, 'wall_s'), '.2f')} "
                f"| {fmt(ratio(ref, ours, 'steps'), '.2f')} |")

    summary = []
    for side in sides:
        runs = [p[side] for p in pairs if side in p]
        solved = [r for r in runs if r["solved"]]
        summary.append(
            f"- {side}: solved {len(solved)}/{len(runs)}; steps to solve "
            f"{med_range([r['steps'] for r in solved], '.0f')}; seconds to solve "
            f"{med_range([r['wall_s'] for r in solved], '.2f')}; ms/update "
            f"{med_range([r.get('ms_per_update') for r in runs], '.1f')}; process seconds "
            f"(incl. start-up) {med_range([r['process_s'] for r in runs], '.2f')}")
    if not args.reference_only:
        both = [p for p in pairs if p["ours"]["solved"] and p["reference"]["solved"]]
        summary.append(
            f"- wall-clock ratio reference/ours (pairs where both solved): "
            f"{med_range([ratio(p['reference'], p['ours'], 'wall_s') for p in both], '.2f')}")
        summary.append(
            f"- env-steps ratio reference/ours (pairs where both solved): "
            f"{med_range([ratio(p['reference'], p['ours'], 'steps') for p in both], '.2f')}")
        checked = [p.get("config_diff") for p in pairs]
        if all(d == [] for d in checked):
            summary.append(f"- config check: both programs echoed identical configs "
                           f"in all {len(pairs)} pairs")
        else:
            bad = [f"seed {p['seed']} rep {p['rep']}: "
                   + ("no config echoed" if p.get("config_diff") is None
                      else "; ".join(p["config_diff"]))
                   for p in pairs if p.get("config_diff") != []]
            summary.append("- CONFIG CHECK FAILED: " + " | ".join(bad))
        per_update = []
        for p in pairs:
            a, b = p["reference"].get("ms_per_update"), p["ours"].get("ms_per_update")
            if a is not None and b:
                per_update.append(a / b)
        summary.append(f"- time-per-update ratio reference/ours (all pairs): "
                       f"{med_range(per_update, '.2f')}")

    config_line = json.dumps(args.bench_config, sort_keys=True)
    runs = " vs ".join(f"`{shlex.join(c)}`" for side, c, _ in commands(args, "seedN.json")
                       if side in sides)
    text = [
        f"Machine: {machine}",
        f"Config (both sides, seed set per run; other keys at their defaults): {config_line}",
        f"Runs: {runs}",
        "Steps and seconds are to the first greedy evaluation with mean >= target_return; "
        "seconds from the start of training as each program reports it (wall_s). "
        "Ratios are reference/ours (> 1: ours is faster / needs fewer steps); "
        "ms/update includes the per-update evaluation.",
        "",
        *lines,
        "",
        *summary,
    ]
    plain = "\n".join(text)
    markdown = "\n".join([
        f"### Control PPO, CartPole-v1: ours vs PyTorch reference "
        f"({datetime.date.today().isoformat()})",
        "",
        "```",
        command,
        "```",
        "",
        *text,
    ])
    return plain, markdown


# ----------------------------------------------------------------------------


def main():
    args = parse_args()
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench_ppo_control."))
    log_dir.mkdir(parents=True, exist_ok=True)
    # The exact command, with the environment variables that change the result.
    env_vars = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                if k.startswith(("OPENBLAS_", "OMP_", "GOTO", "MKL_"))]
    command = " ".join(env_vars + [shlex.join([sys.executable] + sys.argv)])
    choose_coretype(args)
    machine = machine_line(args)
    print(f"# {machine}", file=sys.stderr)
    print(f"# logs: {log_dir}", file=sys.stderr)

    def write_config(name, **extra):
        path = log_dir / f"{name}.json"
        path.write_text(json.dumps(dict(args.bench_config, **extra), indent=1) + "\n")
        return path

    def run_pair(config_path, tag):
        pair = {}
        for side, cmd, env in commands(args, config_path):
            if args.reference_only and side == "ours":
                continue
            r = run_one(side, cmd, env, args.timeout, log_dir / f"{tag}.{side}")
            print(f"  {tag} {describe(r)}", file=sys.stderr, flush=True)
            pair[side] = r
        if len(pair) == 2:
            diff = config_differences(pair["ours"].get("config"),
                                      pair["reference"].get("config"))
            pair["config_diff"] = diff
            if diff:
                print(f"  {tag} WARNING: configs differ: {'; '.join(diff)}", file=sys.stderr)
        return pair

    # Warm-up: a few updates on the first seed, discarded; it also checks that
    # both programs accept the config before the long runs start.
    batch = args.bench_config.get("num_envs", 4) * args.bench_config.get("num_steps", 128)
    for w in range(args.warmup):
        warm = write_config(f"warmup{w}", seed=args.seeds[0],
                            total_steps=min(4 * batch, args.bench_config["total_steps"]))
        pair = run_pair(warm, f"warmup{w}")
        failed = [pair[s] for s in ("ours", "reference") if s in pair and pair[s].get("error")]
        if failed:
            for r in failed:
                print(f"warm-up failed: {r['side']}: {' '.join(r['cmd'])}: {r['error']}",
                      file=sys.stderr)
            return 1

    pairs = []
    total = args.reps * len(args.seeds)
    for rep in range(1, args.reps + 1):  # reps outermost: a seed's repeats spread in time
        for seed in args.seeds:
            config_path = write_config(f"seed{seed}", seed=seed)
            print(f"[{len(pairs) + 1}/{total}] seed {seed} rep {rep}", file=sys.stderr, flush=True)
            pair = run_pair(config_path, f"seed{seed}.rep{rep}")
            pairs.append(dict(pair, seed=seed, rep=rep))

    (log_dir / "results.json").write_text(json.dumps(
        {"command": command, "machine": machine, "config": args.bench_config,
         "pairs": pairs}, indent=1) + "\n")
    plain, markdown = report(args, pairs, machine, command)
    print(plain)
    if args.markdown:
        print("\n" + markdown)
    failures = sum(1 for p in pairs for s in ("ours", "reference")
                   if s in p and p[s].get("error"))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
