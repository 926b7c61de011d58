#!/usr/bin/python3
"""The online RLHF loop (POST /v1/loops) on the demo task: gold per round,
per settings and seed, against a running rlhfd.

It needs what `scripts/demo-api.sh` leaves behind (run it with
DEMO_LOOP_ROUNDS=0): an sft job, its reward job, the prompts dataset, and an
admin token. For each settings variant (VARIANTS below, or --variant) and
seed it creates a fresh annotation project (k 2), an annotator token
granted to it, and the loop; whenever the loop waits for rankings it runs
the simulated annotator (`rlhfctl annotate --simulate demo --noise 0.5`)
through the API, as `make demo` does.

Per run it prints the loop's own gold signals (the gold of round 1's
samples, i.e. the SFT policy, and each round's `gold_score`: 16 evaluation
prompts, 4 samples each (eval_samples' default; one each before it) — still
noisy, sd ≈ 1 per sample) and, since 64 samples barely tell one round from
the next, the gold of each round's
new policy measured by `rlhf-train demo-eval` over --eval-n samples of the
same fresh prompts (seed 2001, as bench/RESULTS.md's pipeline section);
the reference, measured in the same run, is the SFT model's demo-eval gold.
Per variant: the mean ± sd over seeds per round, how many round-over-round
steps (SFT → 1 → 2 → 3) raised the gold, and the wall time as a ratio to
the first variant's.

    bench/bench_loop.py --url URL --token ADMIN --sft-job 1 --reward-job 2 --prompts 2 \\
        [--variant demo] [--variant warm_ppo20] ... [--seeds 1 2 3] [--eval-n 400] [--json FILE]
    bench/bench_loop.py ... --from-json FILE   # evaluate and tabulate runs made before
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request

from benchlib import mean_sd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# scripts/demo-api.sh's loop before issue 17's tuning: round 1 random (no
# reward model), 8 rankings a round, 4 PPO updates of 8 responses.
DEMO = {
    "rounds": 3, "prompts_per_round": 4, "samples_per_prompt": 4, "rankings_per_round": 8,
    "deadline_seconds": 300, "max_tokens": 40, "gold": True, "eval_prompts": 16,
    "selection": "uncertainty",
    "reward_hyperparameters": {"max_steps": 30, "batch_size": 8, "learning_rate": 1e-4,
                               "eval_interval": 0},
    "policy_hyperparameters": {"total_updates": 4, "batch_size": 8, "mini_batch_size": 4,
                               "response_length": 40, "learning_rate": 5e-5, "kl_coef": 0.1},
}


def variant(base, reward_model=False, **changes):
    """base with changes; nested dicts are merged one level deep."""
    out = json.loads(json.dumps(base))
    for key, value in changes.items():
        if isinstance(value, dict):
            out[key].update(value)
        else:
            out[key] = value
    if reward_model:
        out["reward_model"] = "REWARD_JOB"  # replaced by job:<--reward-job>
    return out


# A round's policy step as large as a third of the demo's ppo job (60
# updates of 16 responses, lr 1e-4, β 0.1, 56 tokens).
PPO20 = {"total_updates": 20, "batch_size": 16, "mini_batch_size": 4, "response_length": 56,
         "learning_rate": 1e-4, "kl_coef": 0.1}

VARIANTS = {
    "demo": DEMO,
    # the demo's reward model (800 rankings) as the loop's first one
    "warm": variant(DEMO, reward_model=True),
    # warm; 16 rankings a round from 8 prompts, a gentle reward fine-tune;
    # 20 PPO updates a round
    "warm_ppo20": variant(DEMO, reward_model=True, prompts_per_round=8, rankings_per_round=16,
                          max_tokens=56,
                          reward_hyperparameters={"max_steps": 20, "learning_rate": 3e-5},
                          policy_hyperparameters=PPO20),
    # the same with β 0.2: examples/loops/demo.json, what `make demo` runs
    "warm_ppo20_kl2": variant(DEMO, reward_model=True, prompts_per_round=8,
                              rankings_per_round=16, max_tokens=56,
                              reward_hyperparameters={"max_steps": 20, "learning_rate": 3e-5},
                              policy_hyperparameters=dict(PPO20, kl_coef=0.2)),
    # no reward model to start from: 128 rankings a round (16 prompts × 8
    # samples), the reward job as the demo's (3 epochs at lr 1e-3), 20 PPO
    # updates a round
    "cold128": variant(DEMO, prompts_per_round=16, samples_per_prompt=8, rankings_per_round=128,
                       max_tokens=56,
                       reward_hyperparameters={"max_steps": 0, "epochs": 3, "learning_rate": 1e-3,
                                               "batch_size": 8},
                       policy_hyperparameters=PPO20),
    # the same with β 0.2
    "cold128_kl2": variant(DEMO, prompts_per_round=16, samples_per_prompt=8,
                           rankings_per_round=128, max_tokens=56,
                           reward_hyperparameters={"max_steps": 0, "epochs": 3,
                                                   "learning_rate": 1e-3, "batch_size": 8},
                           policy_hyperparameters=dict(PPO20, kl_coef=0.2)),
}


class Api:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def __call__(self, method, path, body=None, token=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + (token or self.token),
            "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            sys.exit(f"bench_loop: {method} {path}: HTTP {e.code} {e.read().decode()[:400]}")


def run_loop(api, args, name, body, seed):
    """One loop to its end, annotated by the simulated annotator: its JSON
    and wall seconds."""
    project = api("POST", "/v1/projects", {"name": f"bench-loop {name} {seed}", "k": 2})["id"]
    token = api("POST", "/v1/tokens", {"name": f"sim-{name}-{seed}-{time.time_ns()}",
                                       "role": "annotator"})
    api("POST", f"/v1/projects/{project}/members", {"token_id": token["id"]})
    body = dict(body, name=f"{name} seed {seed}", model=f"job:{args.sft_job}", project=project,
                prompts=args.prompts, seed=seed)
    if body.get("reward_model") == "REWARD_JOB":
        body["reward_model"] = f"job:{args.reward_job}"
    t0 = time.monotonic()
    loop = api("POST", "/v1/loops", body)
    while loop["status"] == "running":
        if loop["phase"] == "annotating":
            subprocess.run([args.rlhfctl, "--url", api.url, "--token", token["token"], "annotate",
                            str(project), "--simulate", "demo", "--noise", "0.5", "--seed",
                            str(seed)], check=True, stdout=subprocess.DEVNULL)
        time.sleep(0.5)
        loop = api("GET", f"/v1/loops/{loop['id']}")
    return loop, time.monotonic() - t0


def fmt(x, spec=".2f"):
    return "—" if x is None else format(x, spec)


def demo_eval(args, api, checkpoint, sft_path):
    """rlhf-train demo-eval of a checkpoint (downloaded once) against the
    SFT model: the gold mean and the KL over --eval-n samples of the same
    fresh prompts (seed 2001) for every policy."""
    path = os.path.join(args.out, f"checkpoint-{checkpoint}.safetensors")
    if not os.path.exists(path):
        subprocess.run([args.rlhfctl, "--url", api.url, "--token", api.token, "checkpoints",
                        "download", str(checkpoint), "-o", path], check=True,
                       stdout=subprocess.DEVNULL)
    out = subprocess.run([args.rlhf_train, "demo-eval", "--policy", path, "--ref",
                          sft_path or path, "--n", str(args.eval_n), "--max-tokens", "56",
                          "--seed", "2001"], check=True, capture_output=True, text=True).stdout
    ev = json.loads(out.strip().splitlines()[-1])
    return path, ev["gold_mean"], ev["kl_mean"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True, help="an admin token")
    p.add_argument("--sft-job", type=int, required=True)
    p.add_argument("--reward-job", type=int, help="for the warm variants")
    p.add_argument("--prompts", type=int, required=True, help="the prompts dataset")
    p.add_argument("--variant", action="append", choices=sorted(VARIANTS),
                   help="settings to run (repeatable; the first is the reference)")
    p.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    p.add_argument("--eval-n", type=int, default=400,
                   help="demo-eval samples per round's policy (0: only the loop's own gold)")
    p.add_argument("--from-json", help="evaluate and tabulate the runs of this file (--json's) "
                   "instead of running loops")
    p.add_argument("--json", help="append each run as a JSON line to this file")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "bench-loop"))
    p.add_argument("--rlhfctl", default=os.path.join(ROOT, "build", "rlhfctl"))
    p.add_argument("--rlhf-train", default=os.path.join(ROOT, "build", "rlhf-train"))
    args = p.parse_args()
    api = Api(args.url, args.token)
    os.makedirs(args.out, exist_ok=True)
    runs = {}
    if args.from_json:
        for line in open(args.from_json):
            run = json.loads(line)
            runs.setdefault(run["variant"], []).append(run)
        names = list(runs)
    else:
        names = args.variant or ["demo", "warm_ppo20"]
        if any("reward_model" in VARIANTS[n] for n in names) and args.reward_job is None:
            p.error("a warm variant needs --reward-job")
        runs = {n: [] for n in names}
        for seed in args.seeds:
            for name in names:
                loop, wall = run_loop(api, args, name, VARIANTS[name], seed)
                run = {"variant": name, "seed": seed, "loop": loop["id"],
                       "status": loop["status"], "wall_s": wall}
                runs[name].append(run)
                if args.json:
                    with open(args.json, "a") as f:
                        f.write(json.dumps(run) + "\n")
    sft_path, sft_gold = None, None
    if args.eval_n:
        sft_path, sft_gold, _ = demo_eval(
            args, api, api("GET", f"/v1/jobs/{args.sft_job}")["fine_tuned_model"], None)
        print(f"SFT (job {args.sft_job}): demo-eval gold {sft_gold:.2f} (n={args.eval_n})")
    for name in names:
        for run in runs[name]:
            loop = api("GET", f"/v1/loops/{run['loop']}")
            run["rounds"] = [{k: r[k] for k in (
                "round", "selection", "rankings", "rm_accuracy", "rm_pairs", "proxy_score", "kl",
                "sample_gold_score", "gold_score", "new_policy_checkpoint")}
                for r in loop["rounds"]]
            for r in run["rounds"]:
                r["eval_gold"] = r["eval_kl"] = None
                if args.eval_n and r["new_policy_checkpoint"]:
                    _, r["eval_gold"], r["eval_kl"] = demo_eval(
                        args, api, r["new_policy_checkpoint"], sft_path)
            rs = run["rounds"]
            print(f"{name} seed {run['seed']} (loop {run['loop']}, {run['status']}, "
                  f"{run['wall_s']:.0f} s): loop gold {fmt(rs[0]['sample_gold_score'])} (SFT "
                  f"samples) → {' → '.join(fmt(r['gold_score']) for r in rs)}; demo-eval gold "
                  f"{fmt(sft_gold)} → {' → '.join(fmt(r['eval_gold']) for r in rs)}; KL "
                  f"{' '.join(fmt(r['kl']) for r in rs)}; RM acc on new "
                  f"{' '.join(fmt(r['rm_accuracy']) for r in rs)}", flush=True)
    ref_wall = statistics.mean(r["wall_s"] for r in runs[names[0]])
    n_rounds = max(len(r["rounds"]) for rs in runs.values() for r in rs)
    gold = "eval_gold" if args.eval_n else "gold_score"
    print(f"\n{'demo-eval gold, n=' + str(args.eval_n) if args.eval_n else 'the loop gold'} per "
          "round (mean ± sd over seeds):\n")
    print("| settings | seeds | SFT | " + " | ".join(f"round {i + 1}" for i in range(n_rounds)) +
          f" | final KL | rounds with gold up | wall s | wall / {names[0]} |")
    print("|---|---:|---:|" + "---:|" * n_rounds + "---:|---:|---:|---:|")
    for name in names:
        rs = runs[name]
        cells = [mean_sd([r["rounds"][i][gold] if i < len(r["rounds"]) else None for r in rs])
                 for i in range(n_rounds)]
        ups = steps = 0
        for r in rs:
            series = [sft_gold if args.eval_n else r["rounds"][0]["sample_gold_score"]] + \
                [x[gold] for x in r["rounds"]]
            ups += sum(1 for a, b in zip(series, series[1:]) if b > a)
            steps += len(series) - 1
        wall = statistics.mean(r["wall_s"] for r in rs)
        sft = fmt(sft_gold) if args.eval_n else mean_sd([r["rounds"][0]["sample_gold_score"]
                                                         for r in rs])
        print(f"| {name} | {len(rs)} | {sft} | " + " | ".join(cells) +
              f" | {mean_sd([r['rounds'][-1]['kl'] for r in rs if r['rounds']])} | "
              f"{ups} of {steps} | {wall:.0f} | {wall / ref_wall:.2f} |")


if __name__ == "__main__":
    main()
