#!/usr/bin/python3
"""RLHF PPO update benchmark: `rlhf-train ppo` (ours) vs bench/ppo_lm_torch.py.

What it measures (issue 4, "Performance")
    Seconds per PPO update split by phase, as both programs report them at
    the same boundaries: generation (sampling the responses with the KV
    cache), scoring (policy + reference log-probs, values, reward model) and
    training (rewards, GAE, ppo_epochs x minibatch steps), their sum, and
    tokens/s (B x (P + response_length) per update second). Target: ours
    >= 1.5x the PyTorch loop per update on size M.

Protocol (/work/shared/BENCHMARKING.md)
    Per size (S: 4 layers, d 128, 4 heads, ctx 128; M: 6, 256, 8, 256;
    vocabulary 50257, as bench/bench_gpt2.py): the reference script writes
    random-init (GPT-2 init) policy-with-value-head and reward-model
    checkpoints once, and both programs load the same files, read the same
    prompts file (byte tokenizer: the same token ids) and the same JSON
    config (rlhf-train ppo's defaults: batch 16, minibatch 4, 4 epochs,
    response_length 32, temperature 1; total_updates = --updates). A warm-up
    pair (one update each) first, then --reps pairs alternating ours,
    reference. Per run the first --skip updates are dropped (first-touch
    page faults, thread start) and the median of the rest is taken; ratios
    are reference seconds / ours seconds (> 1: ours faster), pair by pair,
    reported as median (min-max). With random weights almost no row samples
    EOT (p ~ 1/50257 a token), so both sides generate the full
    response_length; the mean response length is printed as a check.
    Threads: ours --threads N (OpenBLAS N threads); the reference
    OPENBLAS_NUM_THREADS=N and torch.set_num_threads(--ref-threads, default
    1: its best on this machine per BENCHMARKING.md). Both sides use the
    same OpenBLAS kernels (OPENBLAS_CORETYPE chosen once, bench/benchlib.py).

Usage
    /usr/bin/python3 bench/bench_ppo_lm.py [--sizes S,M] [--reps 3] [--updates 4]
        [--threads 2] [--ref-threads 1] [--markdown] [--log-dir DIR]
    /usr/bin/python3 bench/bench_ppo_lm.py --report-from DIR [same options]   # report only
"""

import argparse
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import benchlib
from benchlib import choose_coretype, med_range

REPO = Path(__file__).resolve().parent.parent
SIZES = ("S", "M", "L")
PHASES = ("generation", "scoring", "training", "total")
TARGET = {"M": 1.5}
WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls count "
         "stars above quiet hills and rivers").split()


def parse_args():
    p = argparse.ArgumentParser(description="RLHF PPO update: rlhf-train ppo vs PyTorch.")
    p.add_argument("--ours", default=str(REPO / "build" / "rlhf-train"))
    p.add_argument("--reference", default=str(REPO / "bench" / "ppo_lm_torch.py"))
    p.add_argument("--python", default="/usr/bin/python3", help="interpreter with torch")
    p.add_argument("--sizes", default="S,M")
    p.add_argument("--reps", type=int, default=3, help="timed pairs per size (default 3)")
    p.add_argument("--updates", type=int, default=4, help="PPO updates per run (default 4)")
    p.add_argument("--skip", type=int, default=1, help="first updates of a run not timed")
    p.add_argument("--threads", type=int, default=2,
                   help="ours --threads; reference OPENBLAS_NUM_THREADS (default 2)")
    p.add_argument("--ref-threads", type=int, default=1,
                   help="reference torch.set_num_threads (default 1)")
    p.add_argument("--config", default=None,
                   help="JSON object of rlhf-train ppo hyperparameters for both sides")
    p.add_argument("--openblas-coretype", default="auto",
                   help="OPENBLAS_CORETYPE for both sides: a name, 'none' or 'auto'")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per run")
    p.add_argument("--markdown", action="store_true",
                   help="also print a block ready for bench/RESULTS.md")
    p.add_argument("--log-dir", default=None)
    p.add_argument("--report-from", metavar="DIR", default=None,
                   help="run nothing: rebuild the report from the logs of an earlier (possibly "
                        "interrupted) run in DIR, from the pairs that completed")
    a = p.parse_args()
    a.sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    if not a.sizes or any(s not in SIZES for s in a.sizes):
        p.error("--sizes: a comma-separated subset of S,M,L")
    if a.reps < 1 or a.updates <= a.skip or a.skip < 0 or a.threads < 1:
        p.error("need --reps >= 1, --updates > --skip >= 0, --threads >= 1")
    a.bench_config = json.loads(a.config) if a.config else {}
    if not os.access(a.ours, os.X_OK):
        p.error(f"{a.ours} not found: build it with make")
    return a


def write_prompts(path, n=64):
    """n prompts of 20-32 bytes (the longest sets P = 32), deterministic."""
    lines = []
    for i in range(n):
        words, k = [], i
        while len(" ".join(words)) < 20 + i % 13:
            words.append(WORDS[(k * 7 + len(words) * 3) % len(WORDS)])
            k += 1
        lines.append(json.dumps({"prompt": " ".join(words)[:20 + i % 13]}))
    Path(path).write_text("\n".join(lines) + "\n")


def run(cmd, env, timeout, log_base):
    """Runs cmd with stdout/stderr to log files; (JSON records, error or None)."""
    records, error, _ = benchlib.run_logged(cmd, env, timeout, log_base)
    return records, error


def summarise(records, error, skip):
    """Median seconds per phase over the timed updates, tokens/s, config."""
    s = {"error": error, "config": None}
    ups = []
    for r in records:
        if r.get("event") == "config":
            s["config"] = r.get("config")
        elif "step" in r and "time/generation_s" in r:
            ups.append(r)
    timed = ups[skip:]
    if not timed:
        s["error"] = s["error"] or "no timed updates"
        return s
    for ph in ("generation", "scoring", "training"):
        s[ph] = statistics.median(u[f"time/{ph}_s"] for u in timed)
    s["total"] = statistics.median(
        u["time/generation_s"] + u["time/scoring_s"] + u["time/training_s"] for u in timed)
    s["tokens_per_s"] = statistics.median(u["tokens_per_s"] for u in timed)
    s["len"] = statistics.median(u["tokens/responses_len_mean"] for u in timed)
    s["kl"] = timed[-1].get("objective/kl")
    return s


def config_diff(ours, ref):
    if not isinstance(ours, dict) or not isinstance(ref, dict):
        return ["a side did not echo its config"]
    out = []
    for k, v in ref.items():
        o = ours.get(k)
        same = (o == v or (isinstance(o, (int, float)) and isinstance(v, (int, float))
                           and abs(o - v) <= 1e-9 * max(abs(o), abs(v))))
        if not same:
            out.append(f"{k}: ours {o!r} vs reference {v!r}")
    return out


def report(args, per_size, machine, command):
    rows = ["| size | phase | ours s/update | reference s/update | speed-up ref/ours "
            "(median, min–max) | target |", "|---|---|---:|---:|---:|---|"]
    extra = []
    for size, d in per_size.items():
        pairs = [(o, r) for o, r in d["pairs"] if not o["error"] and not r["error"]]
        for ph in PHASES:
            ratios = [r[ph] / o[ph] for o, r in pairs if o.get(ph) and r.get(ph)]
            tgt = TARGET.get(size) if ph == "total" else None
            verdict = "—" if tgt is None or not ratios else (
                f"≥ {tgt:g}: {'yes' if statistics.median(ratios) >= tgt else 'NO'}")
            rows.append(f"| {size} | {ph} | {med_range([o.get(ph) for o, _ in pairs], '.3f')} "
                        f"| {med_range([r.get(ph) for _, r in pairs], '.3f')} "
                        f"| {med_range(ratios, '.2f')} | {verdict} |")
        tps = [(o["tokens_per_s"], r["tokens_per_s"]) for o, r in pairs]
        extra.append(
            f"- {size}: tokens/s ours {med_range([a for a, _ in tps], '.0f')}, reference "
            f"{med_range([b for _, b in tps], '.0f')}; mean response length ours "
            f"{med_range([o['len'] for o, _ in pairs], '.1f')}, reference "
            f"{med_range([r['len'] for _, r in pairs], '.1f')} tokens")
    failures = [f"- {size} {side} rep {i + 1}: {run_[side]['error']}"
                for size, d in per_size.items() for i, run_ in enumerate(
                    {"ours": o, "reference": r} for o, r in d["pairs"])
                for side in ("ours", "reference") if run_[side]["error"]]
    mism = [f"- {size}: {m}" for size, d in per_size.items() for m in d["mismatch"]]
    shown = list(per_size)[-1]
    cfg = per_size[shown]["config"]
    text = [
        f"Machine: {machine}",
        f"Same work on both sides: the same checkpoints (random GPT-2 init; vocab 50257), "
        f"the same {per_size[shown]['n_prompts']} prompts (20–32 bytes, byte tokenizer, "
        f"P = 32), the same config {json.dumps(cfg, sort_keys=True)}, fp32; ours "
        f"--threads {args.threads}, reference OPENBLAS_NUM_THREADS={args.threads} and "
        f"torch.set_num_threads({args.ref_threads}).",
        f"Per run: {args.updates} updates, the first {args.skip} not timed, median of the "
        f"rest. {args.reps} pairs per size after a warm-up pair, alternating ours, "
        f"reference; cells are median (min–max) over pairs, speed-ups taken pair by pair. "
        f"The machine was shared with other sessions' builds and tests: read the ratios.",
        f"Runs ({shown}): `{shlex.join(per_size[shown]['cmds'][0])}` vs "
        f"`{shlex.join(per_size[shown]['cmds'][1])}`",
        "", *rows, "", *extra]
    if mism:
        text += ["", "CONFIG MISMATCH:", *mism]
    if failures:
        text += ["", "FAILED runs:", *failures]
    plain = "\n".join(text)
    md = "\n".join([f"### RLHF PPO update: ours vs PyTorch reference "
                    f"({datetime.date.today().isoformat()})", "", "```", command, "```", "",
                    *text])
    return plain, md, bool(failures or mism)


def rel(path):
    try:
        return str(Path(path).relative_to(REPO))
    except ValueError:
        return str(path)


def run_cmds(args, log_dir, size, cfg_path):
    ck, prompts = log_dir / f"ckpt_{size}", log_dir / "prompts.jsonl"
    common = ["--data", str(prompts), "--init", str(ck / "policy.safetensors"),
              "--reward-model", str(ck / "reward.safetensors"), "--config", str(cfg_path)]
    return ([args.ours, "ppo", "--threads", str(args.threads), "--quiet"] + common,
            [args.python, args.reference, "--threads", str(args.ref_threads),
             "--openblas-threads", str(args.threads)] + common)


def report_from_logs(args, command, machine):
    """The report of the pairs an earlier run in args.report_from completed."""
    log_dir = Path(args.report_from)
    per_size = {}
    for size in args.sizes:
        cfg_path = log_dir / f"{size}.timed.json"
        if not cfg_path.exists():
            continue
        d = per_size[size] = {"pairs": [], "mismatch": [],
                              "config": json.loads(cfg_path.read_text()),
                              "n_prompts": len((log_dir / "prompts.jsonl").read_text().splitlines()),
                              "cmds": [[rel(x) for x in c]
                                       for c in run_cmds(args, log_dir, size, cfg_path)]}
        rep = 1
        while True:
            runs = []
            for side in ("ours", "reference"):
                out = log_dir / f"{size}.rep{rep}.{side}.out"
                recs = [json.loads(x) for x in out.read_text().splitlines()
                        if x.startswith("{")] if out.exists() else []
                n = sum(1 for r in recs if "step" in r)
                runs.append(summarise(recs, None if n == d["config"]["total_updates"]
                                      else "incomplete", args.skip))
            if any(r["error"] for r in runs):
                break
            diff = config_diff(runs[0].get("config"), runs[1].get("config"))
            if diff:
                d["mismatch"].append(f"rep {rep}: " + "; ".join(diff))
            d["pairs"].append(tuple(runs))
            rep += 1
        args.reps = len(d["pairs"])
    plain, md, bad = report(args, per_size, machine, command)
    print(plain)
    if args.markdown:
        print("\n" + md)
    return 1 if bad else 0


def main():
    args = parse_args()
    if args.report_from:
        choose_coretype(args)
        command = shlex.join([sys.executable] + sys.argv)
        machine = benchlib.machine_line(
            args.python, args.openblas_coretype_env,
            f"ours --threads {args.threads}; reference OPENBLAS_NUM_THREADS={args.threads}, "
            f"torch.set_num_threads({args.ref_threads})")
        return report_from_logs(args, command, machine)
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench_ppo_lm."))
    log_dir.mkdir(parents=True, exist_ok=True)
    env_vars = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                if k.startswith(("OPENBLAS_", "OMP_", "GOTO", "MKL_"))]
    command = " ".join(env_vars + [shlex.join([sys.executable] + sys.argv)])
    choose_coretype(args)
    machine = benchlib.machine_line(
        args.python, args.openblas_coretype_env,
        f"ours --threads {args.threads}; reference OPENBLAS_NUM_THREADS={args.threads}, "
        f"torch.set_num_threads({args.ref_threads})")
    print(f"# {machine}\n# logs: {log_dir}", file=sys.stderr, flush=True)
    base_env = dict(os.environ, **args.openblas_coretype_env)
    ours_env = dict(base_env, OPENBLAS_NUM_THREADS=str(args.threads))
    prompts = log_dir / "prompts.jsonl"
    write_prompts(prompts)
    t_start = time.perf_counter()
    per_size = {}
    for size in args.sizes:
        ck = log_dir / f"ckpt_{size}"
        recs, err = run([args.python, args.reference, "--write-checkpoints", str(ck), "--size",
                         size], base_env, args.timeout, log_dir / f"{size}.checkpoints")
        if err:
            sys.exit(f"writing the {size} checkpoints failed: {err}")
        cfg = dict(args.bench_config, total_updates=args.updates, sample_interval=0)
        files = {}
        for tag, c in (("warmup", dict(cfg, total_updates=1)), ("timed", cfg)):
            files[tag] = log_dir / f"{size}.{tag}.json"
            files[tag].write_text(json.dumps(c) + "\n")

        def cmds(cfg_path):
            return run_cmds(args, log_dir, size, cfg_path)

        d = per_size[size] = {"pairs": [], "mismatch": [], "config": cfg,
                              "n_prompts": len(prompts.read_text().splitlines()),
                              "cmds": [[rel(x) for x in c] for c in cmds(files["timed"])]}

        def go(tag, cmd, env):
            recs, err = run(cmd, env, args.timeout, log_dir / tag)
            s = summarise(recs, err, args.skip if "warmup" not in tag else 0)
            status = s["error"] or ", ".join(f"{ph} {s[ph]:.3f}" for ph in PHASES)
            print(f"  [{time.perf_counter() - t_start:5.0f} s] {tag}: {status}",
                  file=sys.stderr, flush=True)
            return s

        ours_c, ref_c = cmds(files["warmup"])
        go(f"{size}.warmup.ours", ours_c, ours_env)
        go(f"{size}.warmup.reference", ref_c, base_env)
        ours_c, ref_c = cmds(files["timed"])
        for rep in range(1, args.reps + 1):
            o = go(f"{size}.rep{rep}.ours", ours_c, ours_env)
            r = go(f"{size}.rep{rep}.reference", ref_c, base_env)
            diff = config_diff(o.get("config"), r.get("config"))
            if diff:
                d["mismatch"].append(f"rep {rep}: " + "; ".join(diff))
            d["pairs"].append((o, r))
    (log_dir / "results.json").write_text(json.dumps(
        {"command": command, "machine": machine, "sizes": per_size}, indent=1, default=str))
    plain, md, bad = report(args, per_size, machine, command)
    print(plain)
    print(f"\n(total {time.perf_counter() - t_start:.0f} s)", file=sys.stderr)
    if args.markdown:
        print("\n" + md)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
