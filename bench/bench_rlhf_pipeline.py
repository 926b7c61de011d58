#!/usr/bin/python3
"""The RLHF pipeline on the demo task, measured against the hidden gold score.

For each seed it runs the whole pipeline with the `rlhf-train` CLI —
demo-data → sft → demo-rankings (the simulated annotator) → reward → ppo —
and measures the SFT and the final PPO policy with `rlhf-train demo-eval`
on the same fresh prompts. It prints a markdown table and checks the
targets of issue 4, one PASS/FAIL line each:

  1. held-out reward-model accuracy against the gold labels >= 0.80 (pairs
     of different gold score in a held-out set the SFT policy sampled with
     another seed, ranked by the gold score itself: demo-rankings
     --temperature 0);
  2. PPO raises the mean gold score of policy samples by >= 1 standard
     deviation of the SFT policy's gold score;
  3. with a final KL(policy || SFT) <= 10 nats (demo-eval's k1 estimate on
     its samples, the quantity ppo reports as objective/kl).

Then the over-optimisation curve (Gao et al. 2022): PPO with kl_coef 0 on
the first seed, a checkpoint every few updates, each checkpoint measured
with demo-eval; gold and proxy (the normalised reward-model score) against
sqrt(KL) go to an SVG written here by hand (no plotting library), with the
same curve for the chosen kl_coef > 0 for contrast.

Why these sizes (they differ from `make demo`, see bench/RESULTS.md):
the demo task is byte-tokenized, and its longest prompt + answer + EOT is
~80 bytes, so the SFT context is 96 (make demo's 64 cuts the longest
answers) and PPO's response length is 56 (make demo's 40 truncates a
third of the SFT policy's answers before their EOS, and the missing-EOS
penalty then teaches the policy to shorten them).

Only the standard library: /usr/bin/python3 bench/bench_rlhf_pipeline.py
"""
import argparse
import json
import math
import os
import platform
import shlex
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SFT = ["--n-layer", "2", "--d-model", "64", "--context", "96", "--max-steps", "800",
       "--learning-rate", "3e-3", "--eval-interval", "200", "--sample-interval", "400",
       "--sample-temperature", "0.8"]
RANKINGS = ["--n", "800", "--k", "4"]
HELDOUT = ["--n", "300", "--k", "4", "--temperature", "0"]
REWARD = ["--epochs", "3", "--learning-rate", "1e-3", "--eval-interval", "100"]
PPO = ["--total-updates", "60", "--batch-size", "16", "--mini-batch-size", "4",
       "--response-length", "56", "--learning-rate", "1e-4", "--sample-interval", "20"]
KL_COEF = "0.1"
EVAL_N = 400


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def run(cmd, out_path=None):
    """Runs one CLI command (stdout to out_path if given); returns seconds."""
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    t0 = time.monotonic()
    if out_path:
        with open(out_path, "w") as out:
            subprocess.run(cmd, stdout=out, check=True)
    else:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - t0


def demo_eval(exe, policy, ref, rm, seed, extra=()):
    cmd = [exe, "demo-eval", "--policy", policy, "--ref", ref, "--reward-model", rm,
           "--n", str(EVAL_N), "--seed", str(seed), "--max-tokens", ppo_arg("--response-length")]
    cmd += list(extra)
    log("$ " + " ".join(shlex.quote(c) for c in cmd))
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def ppo_arg(name):
    return PPO[PPO.index(name) + 1]


def checkpoint(d, prefix):
    """The one final checkpoint prefix-step<N>.safetensors in d."""
    found = sorted((int(f[len(prefix) + 5:-12]), f) for f in os.listdir(d)
                   if f.startswith(prefix + "-step") and f.endswith(".safetensors"))
    if not found:
        sys.exit(f"no {prefix} checkpoint in {d}")
    return os.path.join(d, found[-1][1]), found


def last_metrics(path, key):
    val = None
    with open(path) as f:
        for line in f:
            j = json.loads(line)
            if key in j:
                val = j[key]
    return val


def pipeline(exe, d, seed, kl_coef):
    os.makedirs(d, exist_ok=True)
    t = {}
    sft_data = os.path.join(d, "sft.jsonl")
    t["data+sft"] = run([exe, "demo-data", "--out", sft_data, "--n", "3000", "--seed", str(seed)])
    t["data+sft"] += run([exe, "sft", "--data", sft_data, "--seed", str(seed), *SFT,
                          "--checkpoint-dir", d, "--quiet"], os.path.join(d, "sft-metrics.jsonl"))
    sft, _ = checkpoint(d, "sft")
    rankings, heldout = os.path.join(d, "rankings.jsonl"), os.path.join(d, "heldout.jsonl")
    t["rankings"] = run([exe, "demo-rankings", "--policy", sft, "--out", rankings, "--seed",
                         str(seed), *RANKINGS])
    run([exe, "demo-rankings", "--policy", sft, "--out", heldout, "--seed", str(seed + 1000),
         *HELDOUT])
    t["reward"] = run([exe, "reward", "--data", rankings, "--init", sft, "--seed", str(seed),
                       *REWARD, "--checkpoint-dir", d, "--quiet"],
                      os.path.join(d, "reward-metrics.jsonl"))
    rm, _ = checkpoint(d, "reward")
    ppo_dir = os.path.join(d, f"ppo-beta{kl_coef}")
    os.makedirs(ppo_dir, exist_ok=True)
    t["ppo"] = run([exe, "ppo", "--data", sft_data, "--init", sft, "--reward-model", rm,
                    "--seed", str(seed), *PPO, "--kl-coef", kl_coef, "--checkpoint-dir", ppo_dir,
                    "--quiet"], os.path.join(ppo_dir, "ppo-metrics.jsonl"))
    policy, _ = checkpoint(ppo_dir, "ppo")
    ev_sft = demo_eval(exe, sft, sft, rm, seed + 2000, ["--rankings", heldout])
    ev_ppo = demo_eval(exe, policy, sft, rm, seed + 2000)
    return {
        "seed": seed, "times": t, "sft": ev_sft, "ppo": ev_ppo, "sft_path": sft, "rm_path": rm,
        "rm_noisy_eval_acc": last_metrics(os.path.join(d, "reward-metrics.jsonl"),
                                          "eval_accuracy"),
        "ppo_reported_kl": last_metrics(os.path.join(ppo_dir, "ppo-metrics.jsonl"),
                                        "objective/kl"),
        "gain_sd": (ev_ppo["gold_mean"] - ev_sft["gold_mean"]) / ev_sft["gold_std"],
    }


def curve(exe, d, seed, res, kl_coef, updates, interval):
    """PPO at kl_coef with a checkpoint every interval updates; demo-eval each."""
    ppo_dir = os.path.join(d, f"curve-beta{kl_coef}")
    os.makedirs(ppo_dir, exist_ok=True)
    args = [a for a in PPO]
    args[args.index("--total-updates") + 1] = str(updates)
    secs = run([exe, "ppo", "--data", os.path.join(d, "sft.jsonl"), "--init", res["sft_path"],
                "--reward-model", res["rm_path"], "--seed", str(seed), *args, "--kl-coef", kl_coef,
                "--checkpoint-interval", str(interval), "--checkpoint-dir", ppo_dir, "--quiet"],
               os.path.join(ppo_dir, "ppo-metrics.jsonl"))
    _, found = checkpoint(ppo_dir, "ppo")
    points = [(0, res["sft"])]
    samples = {}
    for step, f in found:
        out = os.path.join(ppo_dir, f"samples-step{step}.jsonl")
        points.append((step, demo_eval(exe, os.path.join(ppo_dir, f), res["sft_path"],
                                       res["rm_path"], seed + 2000, ["--samples-out", out])))
        with open(out) as fh:
            samples[step] = [json.loads(line) for _, line in zip(range(3), fh)]
    return {"kl_coef": kl_coef, "seconds": secs, "points": points, "samples": samples}


# ---- the SVG ---------------------------------------------------------------------------


def nice_ticks(lo, hi, n=5):
    span = hi - lo if hi > lo else 1.0
    raw = span / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw), default=10 * mag)
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    x = first
    while x <= hi + 1e-9:
        ticks.append(round(x, 10))
        x += step
    return ticks


def write_svg(path, curves, title):
    """Gold and proxy against sqrt(KL), one panel per curve (same y axis)."""
    W, H, panel_w = 1000, 430, 440
    ml, mr, mt, mb = 60, 20, 60, 60
    ys = []
    for c in curves:
        for _, e in c["points"]:
            ys += [e["gold_mean"], e["proxy_mean"]]
    y_lo, y_hi = min(ys), max(ys)
    pad = 0.08 * (y_hi - y_lo or 1.0)
    y_lo, y_hi = y_lo - pad, y_hi + pad
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
           f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="15">{title}</text>']
    colours = {"gold": "#c07000", "proxy": "#1f5fbf"}
    for i, c in enumerate(curves):
        x0 = ml + i * (panel_w + ml)
        # each panel its own x range (β > 0 stays at a small KL); the same y range
        x_hi = 1.05 * max([math.sqrt(max(e["kl_mean"], 0.0)) for _, e in c["points"]] + [0.1])
        pw, ph = panel_w - mr, H - mt - mb

        def px(x):
            return x0 + pw * x / x_hi

        def py(y):
            return mt + ph * (1 - (y - y_lo) / (y_hi - y_lo))
        out.append(f'<text x="{x0 + pw / 2}" y="{mt - 12}" text-anchor="middle" '
                   f'font-size="13">kl_coef (β) = {c["kl_coef"]}</text>')
        out.append(f'<rect x="{x0}" y="{mt}" width="{pw}" height="{ph}" fill="none" '
                   'stroke="#444"/>')
        for t in nice_ticks(0, x_hi):
            out.append(f'<line x1="{px(t):.1f}" y1="{mt + ph}" x2="{px(t):.1f}" '
                       f'y2="{mt + ph + 5}" stroke="#444"/>')
            out.append(f'<text x="{px(t):.1f}" y="{mt + ph + 18}" '
                       f'text-anchor="middle">{t:g}</text>')
        for t in nice_ticks(y_lo, y_hi):
            out.append(f'<line x1="{x0 - 5}" y1="{py(t):.1f}" x2="{x0}" y2="{py(t):.1f}" '
                       'stroke="#444"/>')
            out.append(f'<line x1="{x0}" y1="{py(t):.1f}" x2="{x0 + pw}" y2="{py(t):.1f}" '
                       'stroke="#eee"/>')
            out.append(f'<text x="{x0 - 8}" y="{py(t) + 4:.1f}" text-anchor="end">{t:g}</text>')
        out.append(f'<text x="{x0 + pw / 2}" y="{H - 18}" text-anchor="middle">'
                   'sqrt(KL(policy ‖ SFT)), sqrt(nats)</text>')
        if i == 0:
            out.append(f'<text transform="translate(16 {mt + ph / 2}) rotate(-90)" '
                       'text-anchor="middle">score (gold: #pos − #neg − 2·bad form; '
                       'proxy: normalised RM)</text>')
        for key in ("gold", "proxy"):
            pts = [(px(math.sqrt(max(e["kl_mean"], 0.0))), py(e[key + "_mean"]))
                   for _, e in c["points"]]
            out.append('<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>'.format(
                colours[key], " ".join(f"{x:.1f},{y:.1f}" for x, y in pts)))
            if key == "gold" and len(pts) <= 20:  # few points: name each by its PPO update
                for (step, _), (x, y) in zip(c["points"], pts):
                    out.append(f'<text x="{x + 5:.1f}" y="{y + 13:.1f}" fill="#888" '
                               f'font-size="9">{step}</text>')
            for x, y in pts:
                if key == "gold":
                    out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3.5" '
                               f'fill="{colours[key]}"/>')
                else:
                    out.append(f'<rect x="{x - 3.5:.1f}" y="{y - 3.5:.1f}" width="7" height="7" '
                               f'fill="{colours[key]}"/>')
        # legend
        lx, ly = x0 + 12, mt + 14
        for j, (key, label) in enumerate((("proxy", "proxy (reward model)"),
                                          ("gold", "gold (hidden rule)"))):
            y = ly + 18 * j
            out.append(f'<line x1="{lx}" y1="{y}" x2="{lx + 22}" y2="{y}" '
                       f'stroke="{colours[key]}" stroke-width="2"/>')
            out.append(f'<text x="{lx + 28}" y="{y + 4}">{label}</text>')
        steps = [s for s, _ in c["points"]]
        out.append(f'<text x="{x0 + pw - 6}" y="{mt + ph - 8}" text-anchor="end" fill="#666" '
                   f'font-size="10">{len(steps)} points: the SFT model and PPO checkpoints at '
                   f'updates {steps[1]}, {steps[2]}, …, {steps[-1]}</text>'
                   if len(steps) > 2 else "")
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


# ---- main --------------------------------------------------------------------------------


def machine_line():
    model = "?"
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, {platform.system()} {platform.release()}"


def hacking_summary(c):
    """Where gold peaks along the curve, and what proxy and gold do after it."""
    pts = c["points"]
    best = max(range(len(pts)), key=lambda i: pts[i][1]["gold_mean"])
    last = pts[-1][1]
    peak = pts[best][1]
    hacked = (best < len(pts) - 1 and last["gold_mean"] < peak["gold_mean"] - 0.1
              and last["proxy_mean"] > peak["proxy_mean"])
    return {
        "peak_update": pts[best][0],
        "peak_sqrt_kl": math.sqrt(max(peak["kl_mean"], 0.0)),
        "peak_gold": peak["gold_mean"], "peak_proxy": peak["proxy_mean"],
        "last_update": pts[-1][0], "last_sqrt_kl": math.sqrt(max(last["kl_mean"], 0.0)),
        "last_gold": last["gold_mean"], "last_proxy": last["proxy_mean"],
        "hacked": hacked,
    }


def main():
    global KL_COEF, EVAL_N
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--exe", default=os.path.join(ROOT, "build", "rlhf-train"))
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--work", default=os.path.join(ROOT, "build", "bench-rlhf"),
                    help="where the runs' data, metrics and checkpoints go")
    ap.add_argument("--kl-coef", default=KL_COEF, help="β of the main runs")
    ap.add_argument("--sft-context", help="override the SFT context (96)")
    ap.add_argument("--response-length", help="override PPO's response length (56)")
    ap.add_argument("--ppo-updates", help="override PPO's total updates of the main runs (60)")
    ap.add_argument("--eval-n", type=int, default=EVAL_N, help="demo-eval samples per policy")
    ap.add_argument("--curve-updates", type=int, default=40,
                    help="PPO updates of the kl_coef 0 curve (the β > 0 one runs as the main runs)")
    ap.add_argument("--curve-interval", type=int, default=1,
                    help="checkpoint interval of the kl_coef 0 curve (the β > 0 one: 4)")
    ap.add_argument("--no-curves", action="store_true")
    ap.add_argument("--svg", default=os.path.join(ROOT, "bench", "reward_hacking.svg"))
    ap.add_argument("--json", help="also write every measurement here")
    ap.add_argument("--replot", metavar="JSON",
                    help="only redraw --svg and reprint the report from a --json file")
    args = ap.parse_args()
    if args.replot:
        with open(args.replot) as f:
            saved = json.load(f)
        curves = saved["curves"]
        seeds = [r["seed"] for r in saved["results"]]
        if curves:
            write_svg(args.svg, curves, f"Over-optimisation on the demo task (seed {seeds[0]}): "
                      "gold and proxy score of PPO checkpoints vs sqrt(KL)")
        report(saved["results"], curves, seeds, args)
        return
    KL_COEF, EVAL_N = args.kl_coef, args.eval_n
    for lst, flag, val in ((SFT, "--context", args.sft_context),
                           (PPO, "--response-length", args.response_length),
                           (PPO, "--total-updates", args.ppo_updates)):
        if val is not None:
            lst[lst.index(flag) + 1] = val
    seeds = [int(s) for s in args.seeds.split(",")]
    results = []
    for s in seeds:
        results.append(pipeline(args.exe, os.path.join(args.work, f"seed{s}"), s, KL_COEF))
        r = results[-1]
        log(f"seed {s}: RM acc vs gold {r['sft']['rm_accuracy_gold']:.3f}, gold "
            f"{r['sft']['gold_mean']:.3f} -> {r['ppo']['gold_mean']:.3f} "
            f"({r['gain_sd']:.2f} SFT sd), KL {r['ppo']['kl_mean']:.2f}")
    curves = []
    if not args.no_curves:
        s = seeds[0]
        for beta, updates, interval in (("0", args.curve_updates, args.curve_interval),
                                        (KL_COEF, int(ppo_arg("--total-updates")), 4)):
            curves.append(curve(args.exe, os.path.join(args.work, f"seed{s}"), s, results[0],
                                beta, updates, interval))
        write_svg(args.svg, curves, f"Over-optimisation on the demo task (seed {s}): gold and "
                  "proxy score of PPO checkpoints vs sqrt(KL)")
    report(results, curves, seeds, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "curves": curves}, f, indent=1)


def report(results, curves, seeds, args):
    p = print
    p(f"Machine: {machine_line()}; every CLI call single-threaded (OpenBLAS 1 thread); "
      "the machine was shared with other jobs, so wall times are noisy.")
    p()
    p("| seed | RM held-out acc vs gold (pairs) | RM acc on its noisy held-out rankings "
      "| SFT gold mean ± sd | PPO gold mean | gain (SFT sd) | SFT → PPO proxy | final KL "
      "(demo-eval / ppo) | PPO EOS | wall s: data+SFT / rankings / RM / PPO |")
    p("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        a, b, t = r["sft"], r["ppo"], r["times"]
        p(f"| {r['seed']} | {a['rm_accuracy_gold']:.3f} ({a['rm_pairs_gold']}) "
          f"| {r['rm_noisy_eval_acc']:.3f} | {a['gold_mean']:.3f} ± {a['gold_std']:.3f} "
          f"| {b['gold_mean']:.3f} | {r['gain_sd']:.2f} | {a['proxy_mean']:.2f} → "
          f"{b['proxy_mean']:.2f} | {b['kl_mean']:.2f} / {r['ppo_reported_kl']:.2f} "
          f"| {b['eos_fraction']:.2f} | {t['data+sft']:.0f} / {t['rankings']:.0f} / "
          f"{t['reward']:.0f} / {t['ppo']:.0f} |")
    p()
    checks = [
        ("held-out RM accuracy vs gold >= 0.80", [r["sft"]["rm_accuracy_gold"] for r in results],
         lambda v: v >= 0.80),
        ("PPO gold gain >= 1 SFT sd", [r["gain_sd"] for r in results], lambda v: v >= 1.0),
        ("final KL <= 10 nats", [r["ppo"]["kl_mean"] for r in results], lambda v: v <= 10.0),
    ]
    for name, vals, ok in checks:
        verdict = "PASS" if all(ok(v) for v in vals) else "FAIL"
        p(f"- {verdict}: {name} on every seed ({', '.join(f'{v:.3f}' for v in vals)})")
    for c in curves:
        h = hacking_summary(c)
        p()
        p(f"Curve, seed {seeds[0]}, kl_coef {c['kl_coef']} ({c['seconds']:.0f} s of PPO):")
        p()
        p("| PPO update | KL | sqrt(KL) | proxy | gold | gold sd | EOS |")
        p("| --- | --- | --- | --- | --- | --- | --- |")
        for step, e in c["points"]:
            p(f"| {step} | {e['kl_mean']:.2f} | {math.sqrt(max(e['kl_mean'], 0)):.2f} "
              f"| {e['proxy_mean']:.3f} | {e['gold_mean']:.3f} | {e['gold_std']:.3f} "
              f"| {e['eos_fraction']:.2f} |")
        p()
        p(f"- gold peaks at update {h['peak_update']} (sqrt(KL) {h['peak_sqrt_kl']:.2f}, gold "
          f"{h['peak_gold']:.3f}, proxy {h['peak_proxy']:.3f}); at update {h['last_update']} "
          f"sqrt(KL) {h['last_sqrt_kl']:.2f}, gold {h['last_gold']:.3f}, proxy "
          f"{h['last_proxy']:.3f}: "
          + ("proxy still up, gold down — over-optimisation" if h["hacked"]
             else "no proxy-up / gold-down divergence"))
        for step in (h["peak_update"], h["last_update"]):
            for e in c["samples"].get(step) or c["samples"].get(str(step), []):  # JSON: str keys
                p(f"- update {step} sample (gold {e['gold']:g}, proxy {e['proxy']:.2f}, "
                  f"KL {e['kl']:.1f}): {e['prompt']} -> {json.dumps(e['response'])}")
    if curves:
        p()
        p(f"SVG: {os.path.relpath(args.svg, ROOT)}")


if __name__ == "__main__":
    main()
