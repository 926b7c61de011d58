#!/usr/bin/python3
"""DPO, GRPO and RLOO step benchmark: `rlhf-train dpo|grpo|rloo` (ours) vs
bench/pref_lm_torch.py (plain PyTorch, the same loss at the same shapes).

What it measures (issue 16/17 follow-up): optimizer steps per second, and
tokens per second (rows × (P + N) per step: DPO 2·batch_size rows of prompt
+ response; GRPO and RLOO prompts_per_step · num_generations rows of prompt
+ completion, sampled, scored and trained on).

Protocol (/work/shared/BENCHMARKING.md): one size (S of bench/gpt2_torch.py:
4 layers, d 128, 4 heads, ctx 128, vocabulary 50257, random GPT-2 init,
written once by bench/ppo_lm_torch.py --write-checkpoints and loaded by both
sides), byte tokenizer on both sides (the same token ids), the same JSON
config file. Per method a warm-up pair, then --reps pairs alternating ours,
reference. Each side prints one JSON line per step, flushed; this script
timestamps the lines as they arrive and takes (t(last step) - t(step skip))
/ (steps - skip) as the seconds per step, so start-up (torch import, model
load, DPO's reference precomputation) is outside the measure on both sides.
Ratios are reference s/step ÷ ours s/step (> 1: ours faster), pair by pair;
cells are median (min–max). With random weights almost no completion samples
EOT, so both sides generate the full max_completion_length (the mean length
is printed as a check). Threads: ours --threads N; the reference
OPENBLAS_NUM_THREADS=N and torch.set_num_threads(--ref-threads, default 1:
its best here, probed again by --probe-ref-threads). Both sides use the same
OpenBLAS kernels (OPENBLAS_CORETYPE chosen once, bench/benchlib.py).

Usage
    /usr/bin/python3 bench/bench_pref_lm.py [--methods dpo,grpo,rloo] [--reps 3]
        [--steps 6] [--skip 2] [--threads 2] [--ref-threads 1] [--markdown]
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
WORDS = ("the quick brown fox jumps over a lazy dog while seven wise owls count "
         "stars above quiet hills and rivers").split()
GRADER = {"type": "string_check", "name": "has_a", "input": "{{sample.output_text}}",
          "reference": "a", "operation": "like"}
CONFIGS = {
    "dpo": {"seed": 1, "batch_size": 8, "learning_rate": 1e-5, "max_grad_norm": 1.0,
            "beta": 0.1, "max_prompt_length": 32, "max_response_length": 32,
            "eval_fraction": 0, "eval_interval": 0},
    "grpo": {"seed": 1, "prompts_per_step": 4, "num_generations": 4, "learning_rate": 1e-5,
             "max_grad_norm": 1.0, "max_completion_length": 32, "temperature": 1.0,
             "beta": 0.0, "grader": GRADER, "eval_interval": 0, "rollout_samples": 0},
    "rloo": {"seed": 1, "prompts_per_step": 4, "num_generations": 4, "learning_rate": 1e-5,
             "max_grad_norm": 1.0, "max_completion_length": 32, "temperature": 1.0,
             "beta": 0.05, "grader": GRADER, "eval_interval": 0, "rollout_samples": 0},
}


def parse_args():
    p = argparse.ArgumentParser(description="dpo/grpo/rloo steps: rlhf-train vs PyTorch.")
    p.add_argument("--ours", default=str(REPO / "build" / "rlhf-train"))
    p.add_argument("--reference", default=str(REPO / "bench" / "pref_lm_torch.py"))
    p.add_argument("--python", default="/usr/bin/python3")
    p.add_argument("--methods", default="dpo,grpo,rloo")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--skip", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--ref-threads", type=int, default=1)
    p.add_argument("--probe-ref-threads", action="store_true",
                   help="first time the reference at torch threads 1 and 2 (one grpo run each)")
    p.add_argument("--openblas-coretype", default="auto")
    p.add_argument("--timeout", type=float, default=900.0)
    p.add_argument("--markdown", action="store_true")
    p.add_argument("--log-dir", default=None)
    a = p.parse_args()
    a.methods = [m.strip() for m in a.methods.split(",") if m.strip()]
    if any(m not in CONFIGS for m in a.methods) or a.steps <= a.skip or a.reps < 1:
        p.error("--methods from dpo,grpo,rloo; --steps > --skip; --reps >= 1")
    return a


def write_data(log_dir):
    with open(log_dir / "prompts.jsonl", "w") as f:
        for i in range(64):
            f.write(json.dumps({"prompt": " ".join(
                WORDS[(i * 7 + j * 3) % len(WORDS)] for j in range(4 + i % 3))[:32]}) + "\n")
    with open(log_dir / "pairs.jsonl", "w") as f:
        for i in range(64):
            words = [" ".join(WORDS[(i * a + j * b) % len(WORDS)] for j in range(3 + i % c))
                     for a, b, c in ((5, 1, 4), (3, 2, 5), (11, 1, 6))]
            f.write(json.dumps({"prompt": words[0][:32], "responses": [words[1][:31],
                                                                       words[2][:31]],
                                "ranks": [0, 1]}) + "\n")


def run_timed(cmd, env, timeout, log_base):
    """Runs cmd, timestamping each JSON line with a "step" as it arrives:
    ({step: (time, record)}, config record, error or None)."""
    steps, config, error = {}, None, None
    t_end = time.perf_counter() + timeout
    with open(f"{log_base}.err", "w") as err, open(f"{log_base}.out", "w") as out:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=env, text=True,
                                start_new_session=True)
        for line in proc.stdout:
            now = time.perf_counter()
            out.write(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("event") == "config":
                config = rec
            elif "step" in rec and "loss" in rec and rec["step"] not in steps:
                steps[rec["step"]] = (now, rec)
            if now > t_end:
                proc.kill()
                error = "timed out"
        rc = proc.wait()
        if rc != 0 and error is None:
            error = f"exit {rc}: {Path(f'{log_base}.err').read_text()[-400:]}"
    return steps, config, error


def summarise(steps, config, error, n, skip):
    s = {"error": error, "config": config}
    if error is None and (len(steps) != n or skip not in steps or n not in steps):
        s["error"] = f"{len(steps)} of {n} steps"
    if s["error"]:
        return s
    s["s_per_step"] = (steps[n][0] - steps[skip][0]) / (n - skip)
    s["len"] = statistics.median(r.get("completions/mean_length", 0) for _, r in steps.values())
    return s


def main():
    args = parse_args()
    log_dir = Path(args.log_dir or tempfile.mkdtemp(prefix="bench_pref_lm."))
    log_dir.mkdir(parents=True, exist_ok=True)
    env_vars = [f"{k}={shlex.quote(v)}" for k, v in sorted(os.environ.items())
                if k.startswith(("OPENBLAS_", "OMP_", "GOTO", "MKL_"))]
    command = " ".join(env_vars + [shlex.join([sys.executable] + sys.argv)])
    choose_coretype(args)
    base_env = dict(os.environ, **args.openblas_coretype_env)
    ours_env = dict(base_env, OPENBLAS_NUM_THREADS=str(args.threads))
    write_data(log_dir)
    ck = log_dir / "ckpt"
    subprocess.run([args.python, str(REPO / "bench" / "ppo_lm_torch.py"), "--write-checkpoints",
                    str(ck), "--size", "S"], env=base_env, check=True, capture_output=True)
    policy = ck / "policy.safetensors"
    t0 = time.perf_counter()

    def cmds(method, cfg_path, ref_threads):
        data = log_dir / ("pairs.jsonl" if method == "dpo" else "prompts.jsonl")
        out = log_dir / f"ck_{method}"
        out.mkdir(exist_ok=True)
        common = ["--config", str(cfg_path), "--data", str(data), "--init", str(policy)]
        return ([args.ours, method, "--threads", str(args.threads), "--quiet",
                 "--checkpoint-dir", str(out)] + common,
                [args.python, args.reference, method, "--threads", str(ref_threads),
                 "--openblas-threads", str(args.threads)] + common)

    def cfg_file(method, n):
        key = "max_steps" if method == "dpo" else "total_steps"
        path = log_dir / f"{method}.{n}.json"
        path.write_text(json.dumps(dict(CONFIGS[method], **{key: n})) + "\n")
        return path

    def go(tag, cmd, env, n):
        s = summarise(*run_timed(cmd, env, args.timeout, log_dir / tag), n, args.skip)
        print(f"  [{time.perf_counter() - t0:5.0f} s] {tag}: "
              f"{s['error'] or format(s['s_per_step'], '.3f') + ' s/step'}",
              file=sys.stderr, flush=True)
        return s

    probe = []
    if args.probe_ref_threads:
        for th in (1, 2):
            _, ref_c = cmds("grpo", cfg_file("grpo", args.steps), th)
            s = go(f"probe.ref{th}", ref_c, base_env, args.steps)
            probe.append(f"torch threads {th}: {benchlib.fmt(s.get('s_per_step'), '.3f')} s/step")
    results = {}
    for method in args.methods:
        ours_w, ref_w = cmds(method, cfg_file(method, args.skip + 1), args.ref_threads)
        go(f"{method}.warmup.ours", ours_w, ours_env, args.skip + 1)
        go(f"{method}.warmup.reference", ref_w, base_env, args.skip + 1)
        ours_c, ref_c = cmds(method, cfg_file(method, args.steps), args.ref_threads)
        pairs = []
        for rep in range(1, args.reps + 1):
            o = go(f"{method}.rep{rep}.ours", ours_c, ours_env, args.steps)
            r = go(f"{method}.rep{rep}.reference", ref_c, base_env, args.steps)
            pairs.append((o, r))
        results[method] = {"pairs": pairs, "cmds": (ours_c, ref_c)}
    machine = benchlib.machine_line(
        args.python, args.openblas_coretype_env,
        f"ours --threads {args.threads}; reference OPENBLAS_NUM_THREADS={args.threads}, "
        f"torch.set_num_threads({args.ref_threads})")
    rows = ["| method | rows × tokens per step | ours steps/s | reference steps/s | ours tokens/s "
            "| reference tokens/s | speed-up ref/ours s per step (median, min–max) |",
            "|---|---|---:|---:|---:|---:|---:|"]
    notes, bad = [], False
    for method, d in results.items():
        cfg = CONFIGS[method]
        if method == "dpo":
            n_rows, n_tok = 2 * cfg["batch_size"], cfg["max_prompt_length"] + cfg["max_response_length"]
        else:
            n_rows = cfg["prompts_per_step"] * cfg["num_generations"]
            n_tok = 32 + cfg["max_completion_length"]
        ok = [(o, r) for o, r in d["pairs"] if not o["error"] and not r["error"]]
        bad |= len(ok) != len(d["pairs"])
        so = [1 / o["s_per_step"] for o, _ in ok]
        sr = [1 / r["s_per_step"] for _, r in ok]
        rows.append(f"| {method} | {n_rows} × ≤ {n_tok} | {med_range(so, '.2f')} | "
                    f"{med_range(sr, '.2f')} | {med_range([x * n_rows * n_tok for x in so], '.0f')} | "
                    f"{med_range([x * n_rows * n_tok for x in sr], '.0f')} | "
                    f"{med_range([r['s_per_step'] / o['s_per_step'] for o, r in ok], '.2f')} |")
        if method != "dpo":
            notes.append(f"- {method}: mean completion length ours "
                         f"{med_range([o['len'] for o, _ in ok], '.1f')}, reference "
                         f"{med_range([r['len'] for _, r in ok], '.1f')} tokens")
        notes.append(f"- {method} runs: `{shlex.join(d['cmds'][0])}` vs "
                     f"`{shlex.join(d['cmds'][1])}`")
        for i, (o, r) in enumerate(d["pairs"]):
            for side, s in (("ours", o), ("reference", r)):
                if s["error"]:
                    notes.append(f"- FAILED {method} rep {i + 1} {side}: {s['error']}")
    text = [f"Machine: {machine}",
            f"Same work on both sides: GPT-2 size S (4 layers, d 128, 4 heads, ctx 128, vocab "
            f"50257), random init from the same file, byte tokenizer, fp32, the same configs "
            f"{json.dumps(CONFIGS, sort_keys=True)}; {args.steps} steps a run, the first "
            f"{args.skip} not timed; {args.reps} pairs per method after a warm-up pair. "
            f"tokens/s counts every row's P + N columns (P ≤ 32 bytes). The machine was "
            f"shared with other sessions' builds and tests: read the ratios.",
            *(["Reference thread probe (grpo): " + "; ".join(probe)] if probe else []),
            "", *rows, "", *notes]
    print("\n".join(text))
    print(f"\n(total {time.perf_counter() - t0:.0f} s; logs {log_dir})", file=sys.stderr)
    if args.markdown:
        print("\n" + "\n".join([f"### DPO, GRPO and RLOO steps: ours vs PyTorch reference "
                                f"({datetime.date.today().isoformat()})", "", "```", command,
                                "```", "", *text]))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
