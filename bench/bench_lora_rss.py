#!/usr/bin/python3
"""Peak RSS of `rlhf-train ppo` with full fine-tuning vs LoRA, same model.

What it measures: the maximum resident set size (/usr/bin/time -v) of one
short PPO run (a few updates) on the same SFT checkpoint, reward model,
prompts and hyperparameters, once with `--lora-r 0` (full fine-tuning: the
policy's gradients and Adam moments, plus a separate reference copy) and
once with `--lora-r R` (adapters only; the reference is the policy with its
adapters disabled). Runs alternate full, LoRA, full, LoRA, ... after a
warm-up pair; it prints the median and min-max of each, the difference, and
the difference in units of one model copy (4 bytes x parameters of the
policy), which is what the issue asks for ("lower by about the size of one
model copy"). What to expect, in model copies: full fine-tuning holds the
policy's weights, gradients and two Adam moments (4), the reference (1),
the reward model (1) and, with value_model = reward_model, a value model
with its own gradients and moments (4); LoRA keeps the frozen policy (1),
the reward model (1) and the value model's frozen base (1), plus adapters
(a few per cent of a copy). Activations differ too: the reference model's
(B, S) activations exist only under full fine-tuning.

The model is built for the purpose: `rlhf-train sft` for one step on the
demo data at the requested shape (byte-level tokenizer: vocab 257, so the
weights are the transformer blocks), and the same checkpoint serves as the
reward model (ppo gives it a fresh scalar head).

    make                                   # builds build/rlhf-train
    /usr/bin/python3 bench/bench_lora_rss.py
    /usr/bin/python3 bench/bench_lora_rss.py --n-layer 6 --d-model 256 --n-head 8 --context 256 \
        --reps 2 --markdown --value-model policy_head
"""
import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.path.join(ROOT, "build", "rlhf-train")


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, errors="replace", **kw)
    if p.returncode != 0:
        sys.exit(f"failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr[-3000:]}")
    return p


def peak_rss_kib(cmd):
    p = run(["/usr/bin/time", "-v"] + cmd)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    if not m:
        sys.exit("no RSS line in /usr/bin/time output:\n" + p.stderr[-2000:])
    return int(m.group(1))


def num_params(path):
    """Parameters stored in a safetensors checkpoint (F32)."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
    total = 0
    for name, t in header.items():
        if name == "__metadata__":
            continue
        k = 1
        for d in t["shape"]:
            k *= d
        total += k
    return total


def machine_line():
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    git = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True,
                         text=True).stdout.strip()
    return f"{model}, {os.cpu_count()} CPUs, {platform.machine()}; git {git}"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-layer", type=int, default=8)
    ap.add_argument("--d-model", type=int, default=512)
    ap.add_argument("--n-head", type=int, default=8)
    ap.add_argument("--context", type=int, default=128)
    ap.add_argument("--lora-r", type=int, default=8)
    ap.add_argument("--lora-alpha", type=float, default=16)
    ap.add_argument("--reps", type=int, default=2, help="timed pairs after the warm-up pair")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ppo", default="--total-updates 2 --batch-size 8 --mini-batch-size 4 "
                    "--ppo-epochs 1 --response-length 32",
                    help="extra ppo flags, the same on both sides")
    ap.add_argument("--value-model", default="reward_model", choices=["reward_model", "policy_head"],
                    help="ppo's value_model, the same on both sides")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    if not os.path.exists(BIN):
        sys.exit("build/rlhf-train is missing: run make first")

    work = tempfile.mkdtemp(prefix="bench-lora-rss-")
    try:
        data = os.path.join(work, "demo.jsonl")
        run([BIN, "demo-data", "--out", data, "--n", "64"])
        run([BIN, "sft", "--data", data, "--n-layer", str(args.n_layer), "--d-model",
             str(args.d_model), "--n-head", str(args.n_head), "--context", str(args.context),
             "--max-steps", "1", "--batch-size", "2", "--quiet", "--threads", str(args.threads),
             "--checkpoint-dir", work])
        sft = os.path.join(work, "sft-step1.safetensors")
        n = num_params(sft)
        copy_mib = 4 * n / 2**20
        base = [BIN, "ppo", "--data", data, "--init", sft, "--reward-model", sft, "--quiet",
                "--threads", str(args.threads), "--seed", "1", "--value-model",
                args.value_model] + args.ppo.split()
        full_cmd = base + ["--checkpoint-dir", os.path.join(work, "full"), "--lora-r", "0"]
        lora_cmd = base + ["--checkpoint-dir", os.path.join(work, "lora"), "--lora-r",
                           str(args.lora_r), "--lora-alpha", str(args.lora_alpha)]
        os.makedirs(os.path.join(work, "full"))
        os.makedirs(os.path.join(work, "lora"))
        full, lora = [], []
        for i in range(args.reps + 1):  # the first pair is the warm-up
            f = peak_rss_kib(full_cmd)
            l = peak_rss_kib(lora_cmd)
            print(f"pair {i}{' (warm-up)' if i == 0 else ''}: full {f / 1024:.1f} MiB, "
                  f"LoRA {l / 1024:.1f} MiB", file=sys.stderr)
            if i > 0:
                full.append(f / 1024)
                lora.append(l / 1024)
        diffs = [a - b for a, b in zip(full, lora)]
        # What the weights, gradients and Adam moments alone imply, in MiB
        # (activations, the rollout and the allocator's own come on top).
        sep = args.value_model == "reward_model"
        adapters = args.n_layer * args.lora_r * 16 * args.d_model  # A and B of the 4 targets
        implied_full = copy_mib * (4 + 1 + 1 + (4 if sep else 0))
        implied_lora = copy_mib * (1 + 1 + (1 if sep else 0)) + \
            4 * 4 * adapters * (2 if sep else 1) / 2**20
        med = statistics.median
        rng = lambda xs: f"{med(xs):.1f} ({min(xs):.1f}–{max(xs):.1f})"
        lines = [
            f"Machine: {machine_line()}",
            f"Model: {args.n_layer} layers, d_model {args.d_model}, {args.n_head} heads, "
            f"context {args.context}, byte-level vocab; {n / 1e6:.2f}M parameters = one copy of "
            f"{copy_mib:.1f} MiB (fp32). LoRA r {args.lora_r}, alpha {args.lora_alpha:g} on "
            "c_attn, attn.c_proj, mlp.c_fc, mlp.c_proj. Same ppo flags both sides: "
            f"`{args.ppo} --value-model {args.value_model}`, {args.threads} threads. {args.reps} alternating pairs after a warm-up "
            "pair; median (min–max). The machine is shared and noisy (peak RSS is not).",
            "",
            "| run | peak RSS MiB | weights + grads + Adam moments MiB (implied) |",
            "|---|---:|---:|",
            f"| full fine-tuning (`--lora-r 0`) | {rng(full)} | {implied_full:.1f} |",
            f"| LoRA (`--lora-r {args.lora_r}`) | {rng(lora)} | {implied_lora:.1f} |",
            f"| difference | {rng(diffs)} | {implied_full - implied_lora:.1f} |",
            f"| difference / one model copy ({copy_mib:.1f} MiB) | "
            f"{med(diffs) / copy_mib:.2f} ({min(diffs) / copy_mib:.2f}–"
            f"{max(diffs) / copy_mib:.2f}) | {(implied_full - implied_lora) / copy_mib:.2f} |",
            "",
            "Implied: full = policy weights, gradients, 2 moments (4 copies) + reference (1) + "
            "reward model (1)" + (" + value model weights, gradients, 2 moments (4)" if sep else "")
            + "; LoRA = frozen policy (1) + reward model (1)" +
            (" + frozen value base (1)" if sep else "") + " + adapters x 4 (weights, gradients, "
            "2 moments). The measured difference beyond it is the reference model's "
            "activation buffers for the rollout batch (LoRA allocates none) and allocator effects.",
        ]
        if args.markdown:
            print("```\n/usr/bin/python3 bench/bench_lora_rss.py " + " ".join(sys.argv[1:]) +
                  "\n```\n")
        print("\n".join(lines))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
