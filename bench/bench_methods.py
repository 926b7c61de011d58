#!/usr/bin/python3
"""PPO, DPO, GRPO and RLOO on the demo task, side by side (issue 16).

Per seed, one SFT model, one simulated-annotator ranking set and one reward
model — built exactly as bench/bench_rlhf_pipeline.py builds them (its code
is imported) — then four policies from that SFT model:

  ppo   the pipeline's PPO (60 updates x 16 prompts, β 0.1, value model);
  dpo   DPO on the same rankings the reward model was trained on (β 0.5,
        lr 3e-4, batch 16, one epoch: the settings docs/algorithms.md
        measured), no reward model and no new samples;
  grpo  4 prompts x 4 completions per step for 60 steps (960 completions,
        PPO's budget), the reward model as the reward, k3 KL at β 0.1;
  rloo  the same budget and reward, the KL (β 0.1) in the reward.

Each final policy is measured with `rlhf-train demo-eval` against the SFT
model (gold score of its samples, k1 KL to SFT, proxy = normalised RM
score) on the same fresh prompts. Prints a markdown table (per seed and
method: gold, gain in SFT standard deviations, KL, proxy, wall time of the
method's training) and a summary over seeds, and writes an SVG of gold
against sqrt(KL) — the Gao et al. frontier — one colour per method.

    /usr/bin/python3 bench/bench_methods.py [--seeds 1,2,3] [--svg bench/methods_frontier.svg]
"""
import argparse
import math
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_rlhf_pipeline as pipe  # noqa: E402

LR, BETA, RESPONSE = "1e-4", "0.1", pipe.ppo_arg("--response-length")
METHODS = {
    "dpo": lambda d, sft, rm, rankings, data, seed: [
        "dpo", "--data", rankings, "--init", sft, "--seed", seed, "--beta", "0.5",
        "--learning-rate", "3e-4", "--batch-size", "16", "--epochs", "1",
        "--max-response-length", RESPONSE],
    "grpo": lambda d, sft, rm, rankings, data, seed: [
        "grpo", "--data", data, "--init", sft, "--reward-model", rm, "--seed", seed,
        "--total-steps", "60", "--prompts-per-step", "4", "--num-generations", "4",
        "--learning-rate", LR, "--beta", BETA, "--max-completion-length", RESPONSE],
    "rloo": lambda d, sft, rm, rankings, data, seed: [
        "rloo", "--data", data, "--init", sft, "--reward-model", rm, "--seed", seed,
        "--total-steps", "60", "--prompts-per-step", "4", "--num-generations", "4",
        "--learning-rate", LR, "--beta", BETA, "--max-completion-length", RESPONSE],
}
COLOURS = {"ppo": "#1f5fbf", "dpo": "#c07000", "grpo": "#2a9d3a", "rloo": "#b0307a"}


def one_seed(exe, work, seed):
    d = os.path.join(work, f"seed{seed}")
    res = pipe.pipeline(exe, d, seed, BETA)  # SFT, rankings, RM, PPO (and their evals)
    sft, rm = res["sft_path"], res["rm_path"]
    rankings, data = os.path.join(d, "rankings.jsonl"), os.path.join(d, "sft.jsonl")
    rows = {"sft": res["sft"], "ppo": dict(res["ppo"], wall_s=res["times"]["ppo"])}
    for name, args in METHODS.items():
        md = os.path.join(d, name)
        os.makedirs(md, exist_ok=True)
        wall = pipe.run([exe] + args(md, sft, rm, rankings, data, str(seed)) +
                        ["--checkpoint-dir", md, "--quiet"], os.path.join(md, "metrics.jsonl"))
        policy, _ = pipe.checkpoint(md, name)
        rows[name] = dict(pipe.demo_eval(exe, policy, sft, rm, seed + 2000), wall_s=wall)
    return rows


def scatter_svg(path, results):
    W, H, ml, mr, mt, mb = 640, 420, 60, 130, 40, 50
    pts = [(m, math.sqrt(max(r[m]["kl_mean"], 0.0)), r[m]["gold_mean"])
           for r in results.values() for m in ["ppo", *METHODS]]
    sft = [r["sft"]["gold_mean"] for r in results.values()]
    x_hi = 1.1 * max([p[1] for p in pts] + [0.5])
    ys = [p[2] for p in pts] + sft
    y_lo, y_hi = min(ys), max(ys)
    pad = 0.1 * (y_hi - y_lo or 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    pw, ph = W - ml - mr, H - mt - mb
    X = lambda x: ml + pw * x / x_hi  # noqa: E731
    Y = lambda y: mt + ph * (1 - (y - y_lo) / (y_hi - y_lo))  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{ml + pw / 2}" y="22" text-anchor="middle" font-size="14">Demo task: '
           f'gold score against sqrt(KL to SFT), {len(results)} seeds</text>',
           f'<rect x="{ml}" y="{mt}" width="{pw}" height="{ph}" fill="none" stroke="#999"/>']
    for t in pipe.nice_ticks(0, x_hi):
        out.append(f'<text x="{X(t):.1f}" y="{mt + ph + 16}" text-anchor="middle">{t:g}</text>')
    for t in pipe.nice_ticks(y_lo, y_hi):
        out.append(f'<text x="{ml - 6}" y="{Y(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{Y(t):.1f}" y2="{Y(t):.1f}" '
                   f'stroke="#eee"/>')
    out.append(f'<text x="{ml + pw / 2}" y="{H - 10}" text-anchor="middle">sqrt(KL(policy || '
               f'SFT)), nats^0.5</text>')
    for y in sft:
        out.append(f'<circle cx="{X(0):.1f}" cy="{Y(y):.1f}" r="4" fill="#777"/>')
    for m, x, y in pts:
        out.append(f'<circle cx="{X(x):.1f}" cy="{Y(y):.1f}" r="5" fill="{COLOURS[m]}"/>')
    for i, (m, c) in enumerate([("sft", "#777")] + list(COLOURS.items())):
        out.append(f'<circle cx="{W - mr + 20}" cy="{mt + 10 + 18 * i}" r="5" fill="{c}"/>')
        out.append(f'<text x="{W - mr + 30}" y="{mt + 14 + 18 * i}">{m}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exe", default=os.path.join(pipe.ROOT, "build", "rlhf-train"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--work", default=os.path.join(pipe.ROOT, "build", "bench-methods"))
    ap.add_argument("--svg", default=os.path.join(pipe.ROOT, "bench", "methods_frontier.svg"))
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    results = {s: one_seed(a.exe, a.work, s) for s in seeds}
    scatter_svg(a.svg, results)
    print(f"Machine: {pipe.machine_line()}; every CLI call single-threaded")
    print(f"Command: /usr/bin/python3 bench/bench_methods.py --seeds {a.seeds}")
    print()
    print("| seed | method | gold mean | gain (SFT sd) | KL to SFT | proxy | train wall s |")
    print("|---|---|---|---|---|---|---|")
    for s, r in results.items():
        sd = r["sft"]["gold_std"]
        print(f"| {s} | sft | {r['sft']['gold_mean']:.3f} | 0 | 0 | "
              f"{r['sft']['proxy_mean']:.3f} | |")
        for m in ["ppo", *METHODS]:
            e = r[m]
            print(f"| {s} | {m} | {e['gold_mean']:.3f} | "
                  f"{(e['gold_mean'] - r['sft']['gold_mean']) / sd:.2f} | {e['kl_mean']:.2f} | "
                  f"{e['proxy_mean']:.3f} | {e['wall_s']:.0f} |")
    print()
    print("| method | gain (SFT sd), mean (min–max) | KL, mean (min–max) | train wall s, mean |")
    print("|---|---|---|---|")
    for m in ["ppo", *METHODS]:
        gains = [(r[m]["gold_mean"] - r["sft"]["gold_mean"]) / r["sft"]["gold_std"]
                 for r in results.values()]
        kls = [r[m]["kl_mean"] for r in results.values()]
        walls = [r[m]["wall_s"] for r in results.values()]
        print(f"| {m} | {statistics.mean(gains):.2f} ({min(gains):.2f}–{max(gains):.2f}) | "
              f"{statistics.mean(kls):.2f} ({min(kls):.2f}–{max(kls):.2f}) | "
              f"{statistics.mean(walls):.0f} |")
    print(f"\nPlot: {os.path.relpath(a.svg, pipe.ROOT)}")


if __name__ == "__main__":
    main()
