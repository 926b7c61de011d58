#!/usr/bin/python3
"""Prefill and KV-cache sampling at Qwen3-0.6B's shape: build/llama-bench
(ours, OpenBLAS 2 threads) against bench/llama_torch.py (plain PyTorch at its
best setting here: torch.set_num_threads(1), OPENBLAS_NUM_THREADS=2), both
fp32, same shape, batch, prompt and token counts, run alternately (ours,
torch, ours, torch, ...) in one run. Each child does a warm-up and --reps
timed reps and reports medians; ratios are taken pair by pair.

Each round also runs build/gemm-ceiling --qwen3 (bench/gemm_ceiling.c): the
summed cblas_sgemm time of the forward's projections alone at that batch, the
fastest prefill ANY implementation on this OpenBLAS kernel could reach (both
sides' projections are this sgemm). "bound / torch" is thus the highest
prefill ratio over torch that is possible here at all.

    /usr/bin/python3 bench/bench_llama.py [--rounds 2] [--batches 1,16] [--markdown]
"""
import argparse
import os
import statistics
import sys
import tempfile

import benchlib


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batches", default="1,16")
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=16)
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--openblas-coretype", default="auto")
    ap.add_argument("--markdown", action="store_true")
    a = ap.parse_args()
    benchlib.choose_coretype(a)
    env = dict(os.environ, OPENBLAS_NUM_THREADS="2", **a.openblas_coretype_env)
    common = ["--prompt-len", str(a.prompt_len), "--new-tokens", str(a.new_tokens),
              "--layers", str(a.layers), "--reps", str(a.reps)]
    ours_bin = str(benchlib.REPO / "build" / "llama-bench")
    torch_py = str(benchlib.REPO / "bench" / "llama_torch.py")
    results = {}  # batch -> list of (ours, torch) records
    bounds = {}  # batch -> list of prefill tok/s bounds
    ceiling_bin = str(benchlib.REPO / "build" / "gemm-ceiling")
    logs = tempfile.mkdtemp(prefix="bench-llama-")
    for r in range(a.rounds):
        for b in [int(x) for x in a.batches.split(",")]:
            pair = []
            for name, cmd in (("ours", [ours_bin, "--batch", str(b), "--threads", "2"] + common),
                              ("torch", ["/usr/bin/python3", torch_py, "--batch", str(b),
                                         "--threads", "1"] + common)):
                recs, err, _ = benchlib.run_logged(cmd, env, 1800, f"{logs}/{name}-b{b}-r{r}")
                if err or not recs:
                    sys.exit(f"{name} batch {b}: {err or 'no output'}")
                pair.append(recs[-1])
                print(f"round {r} batch {b} {name}: {recs[-1]}", file=sys.stderr)
            results.setdefault(b, []).append(pair)
            recs, err, _ = benchlib.run_logged(
                [ceiling_bin, "--qwen3", str(b), str(a.prompt_len), str(a.layers)], env, 1800,
                f"{logs}/bound-b{b}-r{r}")
            if err or not recs:
                sys.exit(f"gemm-ceiling batch {b}: {err or 'no output'}")
            bounds.setdefault(b, []).append(recs[-1]["prefill_tok_s_bound"])
            print(f"round {r} batch {b} bound: {recs[-1]}", file=sys.stderr)
    print(f"Machine: {benchlib.machine_line('/usr/bin/python3', a.openblas_coretype_env, 'ours: OpenBLAS 2 threads; torch: set_num_threads(1) + OPENBLAS_NUM_THREADS=2')}")
    print(f"Command: /usr/bin/python3 bench/bench_llama.py --rounds {a.rounds} --batches "
          f"{a.batches} --prompt-len {a.prompt_len} --new-tokens {a.new_tokens} --layers "
          f"{a.layers} --reps {a.reps}")
    print()
    print("| batch | phase | ours tok/s | torch tok/s | ratio (pairwise) |")
    print("|---|---|---|---|---|")
    for b, pairs in results.items():
        for phase in ("prefill", "decode"):
            key = phase + "_tok_s"
            ours = [p[0][key] for p in pairs]
            ref = [p[1][key] for p in pairs]
            ratios = [o / t for o, t in zip(ours, ref)]
            print(f"| {b} | {phase} | {benchlib.med_range(ours, '.1f')} | "
                  f"{benchlib.med_range(ref, '.1f')} | {benchlib.med_range(ratios, '.2f')}× |")
    print()
    print("| batch | prefill bound tok/s (projections' sgemm alone) | ours / bound | "
          "bound / torch (the most any implementation could reach) |")
    print("|---|---|---|---|")
    for b, pairs in results.items():
        bound = bounds[b]
        ours = [p[0]["prefill_tok_s"] / x for p, x in zip(pairs, bound)]
        best = [x / p[1]["prefill_tok_s"] for p, x in zip(pairs, bound)]
        print(f"| {b} | {benchlib.med_range(bound, '.1f')} | {benchlib.med_range(ours, '.2f')} | "
              f"{benchlib.med_range(best, '.2f')}× |")


if __name__ == "__main__":
    main()
