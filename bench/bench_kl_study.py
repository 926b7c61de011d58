#!/usr/bin/python3
"""The KL β study (examples/studies/kl_beta_demo.json) through rlhfd's API,
with the gold score of every run's final policy: does reward hacking show?

It needs what `scripts/demo-api.sh` leaves behind (run it with
DEMO_LOOP_ROUNDS=0): the sft job, its reward job and the prompts dataset
the example names (job:1, job:2, dataset 2 on a fresh demo database), and an
admin token. It submits the example (POST /v1/studies, --seeds /
--total-updates / --grid override it), waits for its jobs, then per job
reads the last `objective/scores` (the proxy: the reward model's score) and
`objective/kl` the job logged, downloads its final checkpoint and runs
`rlhf-train demo-eval` against the SFT model: the hidden gold score, the
proxy and the KL to the SFT model over --n samples of fresh prompts (the
same prompts for every run: seed 2001). The reference, measured in the
same run, is the SFT policy itself (demo-eval of the sft checkpoint): each
β's gold is printed as its difference to the SFT's, in SFT standard
deviations, as bench/RESULTS.md's pipeline section does.

    bench/bench_kl_study.py --url URL --token ADMIN [--study FILE] [--seeds 1 2]
        [--total-updates N] [--grid 0,0.02,0.1,0.5] [--n 200] [--out DIR] [--existing ID]
"""

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from benchlib import mean_sd

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Api:
    def __init__(self, url, token):
        self.url, self.token = url.rstrip("/"), token

    def __call__(self, method, path, body=None):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method, headers={
            "Authorization": "Bearer " + self.token, "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            sys.exit(f"bench_kl_study: {method} {path}: HTTP {e.code} {e.read().decode()[:400]}")


def last_metric(api, job, name):
    """The value of metric name at the job's last step that logged it."""
    q = urllib.parse.urlencode({"names": name, "limit": 1000})
    rows = api("GET", f"/v1/jobs/{job}/metrics?{q}")["data"]
    values = [r["metrics"][name] for r in rows if name in r["metrics"]]
    return values[-1] if values else None


def demo_eval(args, policy, sft, reward):
    out = subprocess.run([args.rlhf_train, "demo-eval", "--policy", policy, "--ref", sft,
                          "--reward-model", reward, "--n", str(args.n), "--max-tokens", "56",
                          "--seed", "2001"], check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def download(args, checkpoint, path):
    if not os.path.exists(path):
        subprocess.run([args.rlhfctl, "--url", args.url, "--token", args.token, "checkpoints",
                        "download", str(checkpoint), "-o", path], check=True,
                       stdout=subprocess.DEVNULL)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", required=True)
    p.add_argument("--token", required=True, help="an admin token")
    p.add_argument("--study", default=os.path.join(ROOT, "examples/studies/kl_beta_demo.json"))
    p.add_argument("--seeds", type=int, nargs="+", help="override the example's seeds")
    p.add_argument("--total-updates", type=int, help="override the example's total_updates")
    p.add_argument("--grid", help="override the example's kl_coef grid: 0,0.1")
    p.add_argument("--existing", type=int, help="evaluate this study instead of submitting one")
    p.add_argument("--n", type=int, default=200, help="demo-eval samples per policy")
    p.add_argument("--out", default=os.path.join(ROOT, "build", "bench-kl-study"))
    p.add_argument("--rlhfctl", default=os.path.join(ROOT, "build", "rlhfctl"))
    p.add_argument("--rlhf-train", default=os.path.join(ROOT, "build", "rlhf-train"))
    args = p.parse_args()
    api = Api(args.url, args.token)
    os.makedirs(args.out, exist_ok=True)
    if args.existing:
        study_id = args.existing
    else:
        body = json.load(open(args.study))
        if args.seeds:
            body["seeds"] = args.seeds
        if args.total_updates:
            body["base"]["hyperparameters"]["total_updates"] = args.total_updates
        if args.grid:
            body["grid"] = {"kl_coef": [float(x) for x in args.grid.split(",")]}
        study_id = api("POST", "/v1/studies", body)["id"]
        print(f"study {study_id}: {json.dumps(body)}", flush=True)
    t0 = time.monotonic()
    while True:
        study = api("GET", f"/v1/studies/{study_id}")
        if study["status"] not in ("queued", "running"):
            break
        time.sleep(5)
    print(f"study {study_id} {study['status']} ({time.monotonic() - t0:.0f} s waited)", flush=True)
    base = study["base"]
    sft_job = int(str(base["model"]).split(":")[1])
    rm_job = int(str(base["reward_model"]).split(":")[1])
    sft = download(args, api("GET", f"/v1/jobs/{sft_job}")["fine_tuned_model"],
                   os.path.join(args.out, "sft.safetensors"))
    reward = download(args, api("GET", f"/v1/jobs/{rm_job}")["fine_tuned_model"],
                      os.path.join(args.out, "reward.safetensors"))
    ref = demo_eval(args, sft, sft, reward)
    print(f"SFT: gold {ref['gold_mean']:.3f} ± {ref['gold_std']:.3f} (sd over samples), "
          f"proxy {ref['proxy_mean']:.3f}", flush=True)
    labels = {v["variation"]: v["label"] for v in study["variations"]}
    per_label = {}
    for job in study["jobs"]:
        if job["status"] != "succeeded":
            print(f"job {job['id']} {labels[job['variation']]} seed {job['seed']}: "
                  f"{job['status']}", flush=True)
            continue
        ckpt = api("GET", f"/v1/jobs/{job['id']}")["fine_tuned_model"]
        ev = demo_eval(args, download(args, ckpt, os.path.join(args.out, f"job{job['id']}.st")),
                       sft, reward)
        row = {"job": job["id"], "seed": job["seed"],
               "proxy": last_metric(api, job["id"], "objective/scores"),
               "kl": last_metric(api, job["id"], "objective/kl"),
               "gold": ev["gold_mean"], "eval_proxy": ev["proxy_mean"], "eval_kl": ev["kl_mean"],
               "eos": ev["eos_fraction"]}
        per_label.setdefault(labels[job["variation"]], []).append(row)
        print(f"job {job['id']} {labels[job['variation']]} seed {job['seed']}: {json.dumps(row)}",
              flush=True)
    print(f"\n| β | runs | final proxy (job) | final KL (job) | gold (demo-eval, n={args.n}) | "
          f"gold − SFT (SFT sd) | proxy (demo-eval) | KL (demo-eval) | EOS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    print(f"| SFT (reference) | 1 | — | — | {ref['gold_mean']:.2f} | 0 | "
          f"{ref['proxy_mean']:.2f} | 0 | {ref['eos_fraction']:.2f} |")
    for label, rows in per_label.items():
        gains = [(r["gold"] - ref["gold_mean"]) / ref["gold_std"] for r in rows]
        print(f"| {label} | {len(rows)} | {mean_sd([r['proxy'] for r in rows])} | "
              f"{mean_sd([r['kl'] for r in rows])} | {mean_sd([r['gold'] for r in rows])} | "
              f"{mean_sd(gains)} | {mean_sd([r['eval_proxy'] for r in rows])} | "
              f"{mean_sd([r['eval_kl'] for r in rows])} | {mean_sd([r['eos'] for r in rows])} |")


if __name__ == "__main__":
    main()
