#!/usr/bin/env python3
"""Data-parallel scaling of rlhf-train sft on this machine: 1 rank vs 2 ranks
under mpirun, the cores never oversubscribed (threads per rank = cores / ranks).

For each configuration it runs the same SFT job (same global batch, same
steps) and takes the median wall time per optimizer step after the first
(warm-up) step from the JSON metrics; 2-rank runs also report the time rank 0
spends in the gradient all-reduce (metric allreduce_s). Configurations are
interleaved, `--repeats` times, so machine noise hits them alike.

    python3 bench/bench_dist.py [--repeats 3] [--steps 8] [--markdown]

Prints a ratio against the 1-rank run measured in the same invocation:
speed-up = t(1 rank) / t(2 ranks), efficiency = speed-up / 2 (with the same
total thread count). bench/RESULTS.md's scaling model uses the measured
compute time per step and the all-reduce volume (4 bytes x parameters).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN = os.path.join(ROOT, "build", "rlhf-train")


def run(ranks, threads, data, steps, model):
    cmd = [TRAIN, "sft", "--data", data, "--threads", str(threads), "--quiet",
           "--max-steps", str(steps), "--eval-interval", "0", "--eval-fraction", "0",
           "--sample-interval", "0", "--sample-max-tokens", "1"] + model
    env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads))
    if ranks > 1:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
        cmd = ["mpirun", "--oversubscribe", "--bind-to", "none", "-np", str(ranks)] + cmd
    out = subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout
    walls, reduce_s, params = [], [], None
    for line in out.splitlines():
        j = json.loads(line)
        if "wall_s" in j:
            walls.append(j["wall_s"])
            if "allreduce_s" in j:
                reduce_s.append(j["allreduce_s"])
    per_step = [b - a for a, b in zip(walls, walls[1:])]  # drops step 1 (warm-up)
    return statistics.median(per_step), (statistics.median(reduce_s[1:]) if reduce_s else 0.0)


def allreduce_time(n_floats, reps=20):
    """Median time of one MPI_Allreduce of n_floats on 2 local ranks
    (bench/allreduce_bench.c, shared memory), after a barrier."""
    exe = os.path.join(ROOT, "build", "allreduce-bench")
    subprocess.run(["mpicc", "-O2", os.path.join(ROOT, "bench", "allreduce_bench.c"), "-o", exe],
                   check=True)
    env = dict(os.environ, OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    out = subprocess.run(["mpirun", "--oversubscribe", "--bind-to", "none", "-np", "2", exe,
                          str(n_floats), str(reps)], env=env, check=True, capture_output=True,
                         text=True).stdout
    return json.loads(out.splitlines()[-1])["median_s"]


def scaling_model(t_c, n_params):
    """Expected efficiency on N machines, from compute time per step t_c (one
    machine, the whole global batch) and the gradient all-reduce of 4 bytes x
    parameters: t(N) = t_c / N + 2 (N - 1) / N x V / BW (ring all-reduce, the
    bandwidth term; latency is microseconds against megabytes), no overlap of
    communication with backward. Efficiency = t_c / (N t(N))."""
    gpt2_small = 124_439_808
    flops_ratio = gpt2_small / n_params  # 6 x params x tokens per step, same batch
    cases = [
        (f"this model ({n_params / 1e6:.2f}M), t_c = {t_c:.2f} s (this machine)", n_params, t_c),
        (f"GPT-2 124M, t_c = {t_c * flops_ratio:.0f} s (this machine, scaled by FLOPs)",
         gpt2_small, t_c * flops_ratio),
        ("GPT-2 124M, t_c = 1.5 s (a server at ~1 TFLOP/s fp32)", gpt2_small, 1.5),
    ]
    lines = ["| model, compute per step | all-reduce | N | 10 Gbit/s | 25 Gbit/s | 100 Gbit/s |",
             "|---|---|---|---|---|---|"]
    for name, p, tc in cases:
        v = 4 * p
        for n in (2, 4, 8):
            effs = []
            for gbit in (10, 25, 100):
                t_ar = 2 * (n - 1) / n * v / (gbit * 1e9 / 8)
                effs.append(f"{tc / (n * (tc / n + t_ar)):.2f} ({t_ar * 1000:.0f} ms)")
            lines.append(f"| {name} | {v / 1e6:.0f} MB | {n} | " + " | ".join(effs) + " |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    cores = os.cpu_count() or 2
    # ~3.3M parameters, global batch 16 x 128 tokens
    model = ["--n-layer", "4", "--d-model", "256", "--n-head", "4", "--context", "128",
             "--batch-size", "16", "--loss-on", "all"]
    n_params = 4 * 12 * 256 * 256 + 4 * 13 * 256 + (257 + 128) * 256 + 2 * 256
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "sft.jsonl")
        with open(data, "w") as f:  # long examples: every row fills the context
            for i in range(400):
                text = " ".join(f"word{(i * 7 + k) % 97}" for k in range(40))
                f.write(json.dumps({"prompt": f"Q{i}:", "response": text}) + "\n")
        configs = [(1, cores), (2, max(1, cores // 2)), (1, max(1, cores // 2))]
        times = {c: [] for c in configs}
        reduces, pure = [], []
        for _ in range(args.repeats):
            pure.append(allreduce_time(n_params))
            for c in configs:
                t, r = run(c[0], c[1], data, args.steps, model)
                times[c].append(t)
                if c[0] > 1:
                    reduces.append(r)
    med = {c: statistics.median(v) for c, v in times.items()}
    one, two, one_half = med[configs[0]], med[configs[1]], med[configs[2]]
    reduce_s = statistics.median(reduces)
    pure_s = statistics.median(pure)
    rows = [
        (f"1 rank x {configs[0][1]} threads", one, 1.0),
        (f"2 ranks x {configs[1][1]} thread(s)", two, one / two),
        (f"1 rank x {configs[2][1]} thread(s)", one_half, one / one_half),
    ]
    mb = 4 * n_params / 1e6
    if args.markdown:
        print("| configuration | s / step (median) | speed-up vs 1 rank |")
        print("|---|---|---|")
        for name, t, s in rows:
            print(f"| {name} | {t:.3f} | {s:.2f}x |")
        print()
        print(f"2 ranks: efficiency {one / two / 2:.2f} (speed-up / 2); rank 0 waits "
              f"{reduce_s * 1000:.1f} ms per step in the all-reduce of {mb:.1f} MB "
              f"({n_params / 1e6:.2f}M parameters) — the all-reduce alone, after a barrier, takes "
              f"{pure_s * 1000:.1f} ms (bench/allreduce_bench.c; the rest is waiting for the "
              f"other rank); compute per step on 1 rank {one:.3f} s.")
        print()
        print(scaling_model(one, n_params))
    else:
        for name, t, s in rows:
            print(f"{name:28s} {t:.3f} s/step  {s:.2f}x")
        print(f"efficiency(2 ranks) = {one / two / 2:.2f}; rank 0 in all-reduce "
              f"{reduce_s * 1000:.1f} ms of {mb:.1f} MB per step; all-reduce alone "
              f"{pure_s * 1000:.1f} ms")


if __name__ == "__main__":
    sys.exit(main())
