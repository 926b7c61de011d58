#!/usr/bin/python3
"""PyTorch reference for `rlhf-train dpo`, `grpo` and `rloo`: the same step.

Written from the math in docs/algorithms.md and engine/dpo.h, engine/ppo.h
(not from TRL), on bench/ppo_lm_torch.py's GPT-2 forward (position ids,
left padding, KV-cache generation, log-probs of the response tokens only):

  dpo   batch_size pairs of the shuffled stream, chosen and rejected rows in
        one forward, summed response log-probs, the sigmoid loss
        -log σ(β((π_c - π_r) - (ref_c - ref_r))) averaged over pairs, the
        reference log-probs precomputed once from a frozen copy (rlhf-train's
        default), clipping, Adam (ε 1e-8), linear decay from learning_rate.
  grpo  prompts_per_step prompts × num_generations completions sampled in one
        batch (temperature, stop at EOT, at most max_completion_length), the
        grader's reward, group-normalised advantages (std with Bessel + 1e-4),
        one optimizer step (num_iterations 1, β 0: the ratio is exp(logp -
        logp.detach()) = 1 as TRL does, so no separate old-log-prob pass),
        per-sequence aggregation, clipping, Adam, linear annealing.
  rloo  k completions per prompt, reference log-probs from a frozen copy,
        r = score - β Σ_t (logp - ref), leave-one-out advantages, the
        REINFORCE loss -(1/B) Σ_b A_b Σ_t logp (the KL from the same forward's
        detached log-probs: no separate pass), clipping, Adam, annealing.

The grader is the one string_check the benchmark uses: 1 if the completion's
text (EOT dropped, bytes decoded with replacement) contains --grader-like,
else 0. Prints a config line, then {"step": s, "loss": …} per step, flushed
at the end of the step, as rlhf-train does.

Best settings (../shared/BENCHMARKING.md): OPENBLAS_NUM_THREADS before torch
loads, torch.set_num_threads(--threads, default 1), inference_mode for
sampling and reference passes, Adam(foreach=True), zero_grad(set_to_none).

Usage
    /usr/bin/python3 bench/pref_lm_torch.py dpo|grpo|rloo --config cfg.json --data FILE
        --init policy.safetensors [--grader-like a] [--threads 1] [--openblas-threads 2]
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpt2_torch  # noqa: E402
import ppo_lm_torch as pl  # noqa: E402

EOT = pl.EOT


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch twin of rlhf-train dpo / grpo / rloo.")
    p.add_argument("method", choices=("dpo", "grpo", "rloo"))
    p.add_argument("--config", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--init", required=True)
    p.add_argument("--grader-like", default="a")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--openblas-threads", type=int, default=2)
    return p.parse_args(argv)


def rows_tensors(torch, prompts, responses, P, N):
    """Left-padded prompts then right-padded responses: seq, positions, mask,
    response ids (B, N) and the response mask (B, N)."""
    B = len(prompts)
    seq = torch.full((B, P + N), EOT, dtype=torch.long)
    smask = torch.zeros(B, P + N, dtype=torch.long)
    for b, (p, r) in enumerate(zip(prompts, responses)):
        seq[b, P - len(p):P] = torch.tensor(p)
        seq[b, P:P + len(r)] = torch.tensor(r)
        smask[b, P - len(p):P + len(r)] = 1
    positions = ((smask.cumsum(1) - 1).clamp_(min=0) * smask).long()
    return seq, positions, smask, seq[:, P:], smask[:, P:].float()


def token_logps(torch, model, seq, positions, smask, P, N, T=1.0):
    h = pl.trunk(torch, model, seq, positions, smask)
    return pl.response_heads(torch, model, h, P, N, T, seq[:, P:])[0]


def step_lr(cfg, step, total):
    return cfg["learning_rate"] * max(0.0, 1.0 - step / total)


def run_dpo(torch, cfg, args, policy, ref, opt, params):
    rows = [json.loads(x) for x in Path(args.data).read_text().splitlines() if x.strip()]
    pcap, rcap = cfg["max_prompt_length"], cfg["max_response_length"]
    pairs = []
    for r in rows:
        p = list(r["prompt"].encode())[-pcap:]
        by_rank = [x for _, x in sorted(zip(r["ranks"], r["responses"]))]
        c, l = ((list(x.encode()) + [EOT])[:rcap] for x in by_rank[:2])
        pairs.append((p, c, l))
    P = max(len(p) for p, _, _ in pairs)
    N = max(max(len(c), len(l)) for _, c, l in pairs)
    B, beta = cfg["batch_size"], cfg["beta"]
    ref_seq = torch.empty(len(pairs), 2)
    with torch.inference_mode():
        for i0 in range(0, len(pairs), B):
            chunk = pairs[i0:i0 + B]
            seq, pos, sm, _, rm = rows_tensors(torch, [p for p, _, _ in chunk] * 2,
                                               [c for _, c, _ in chunk] + [l for _, _, l in chunk],
                                               P, N)
            s = (token_logps(torch, ref, seq, pos, sm, P, N) * rm).sum(1)
            ref_seq[i0:i0 + len(chunk), 0], ref_seq[i0:i0 + len(chunk), 1] = s[:len(chunk)], s[len(chunk):]
    gen = torch.Generator().manual_seed(cfg["seed"])
    order, cursor = [], len(pairs)
    total = cfg["max_steps"]
    for step in range(total):
        idx = []
        for _ in range(B):
            if cursor >= len(pairs):
                order, cursor = torch.randperm(len(pairs), generator=gen).tolist(), 0
            idx.append(order[cursor])
            cursor += 1
        chunk = [pairs[i] for i in idx]
        seq, pos, sm, _, rm = rows_tensors(torch, [p for p, _, _ in chunk] * 2,
                                           [c for _, c, _ in chunk] + [l for _, _, l in chunk],
                                           P, N)
        s = (token_logps(torch, policy, seq, pos, sm, P, N) * rm).sum(1)
        rs = ref_seq[idx]
        h = (s[:B] - s[B:]) - (rs[:, 0] - rs[:, 1])
        loss = -torch.nn.functional.logsigmoid(beta * h).mean()
        for g in opt.param_groups:
            g["lr"] = step_lr(cfg, step, total)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        opt.step()
        print(json.dumps({"step": step + 1, "loss": float(loss),
                          "rewards/accuracies": float((h > 0).float().mean())}), flush=True)


def run_group(torch, cfg, args, method, policy, ref, opt, params):
    prompts = [list(json.loads(x)["prompt"].encode())
               for x in Path(args.data).read_text().splitlines() if x.strip()]
    G, N, T = cfg["num_generations"], cfg["max_completion_length"], cfg["temperature"]
    n_prompts = cfg["prompts_per_step"]
    B = n_prompts * G
    P = max(len(p) for p in prompts)
    gen = torch.Generator().manual_seed(cfg["seed"])
    order, cursor = [], len(prompts)
    total = cfg["total_steps"]
    like = args.grader_like
    for step in range(total):
        batch = []
        for _ in range(n_prompts):
            if cursor >= len(prompts):
                order, cursor = torch.randperm(len(prompts), generator=gen).tolist(), 0
            batch += [prompts[order[cursor]]] * G
            cursor += 1
        prompt_ids = torch.tensor([[EOT] * (P - len(p)) + p for p in batch], dtype=torch.long)
        pmask = torch.tensor([[0] * (P - len(p)) + [1] * len(p) for p in batch], dtype=torch.long)
        with torch.inference_mode():
            resp, lengths = pl.generate(torch, policy, prompt_ids, pmask, N, T, EOT)
        resp, lengths = resp.clone(), lengths.clone()
        score = torch.zeros(B)
        for b in range(B):
            ids = resp[b, :int(lengths[b])].tolist()
            if ids and ids[-1] == EOT:
                ids = ids[:-1]
            score[b] = float(like in bytes(i for i in ids if i < 256).decode("utf-8", "replace"))
        seq = torch.cat([prompt_ids, resp], 1)
        rmask = (torch.arange(N)[None] < lengths[:, None]).float()
        smask = torch.cat([pmask, rmask.long()], 1)
        positions = ((smask.cumsum(1) - 1).clamp_(min=0) * smask).long()
        logp = token_logps(torch, policy, seq, positions, smask, P, N, T)
        r = score.view(n_prompts, G)
        if method == "grpo":
            adv = ((r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)).view(B)
            ratio = torch.exp(logp - logp.detach())
            per_tok = -adv[:, None] * ratio * rmask
            loss = (per_tok.sum(1) / rmask.sum(1).clamp(min=1)).mean()
        else:
            with torch.inference_mode():
                ref_logp = token_logps(torch, ref, seq, positions, smask, P, N, T)
            kl = ((logp.detach() - ref_logp) * rmask).sum(1)
            r = (score - cfg["beta"] * kl).view(n_prompts, G)
            adv = (r - (r.sum(1, keepdim=True) - r) / (G - 1)).view(B)
            loss = -(adv * (logp * rmask).sum(1)).mean()
        lr = step_lr(cfg, step, total) if cfg.get("anneal_lr", True) else cfg["learning_rate"]
        for g in opt.param_groups:
            g["lr"] = lr
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, cfg["max_grad_norm"])
        opt.step()
        print(json.dumps({"step": step + 1, "loss": float(loss), "reward": float(score.mean()),
                          "completions/mean_length": float(lengths.float().mean())}), flush=True)


def main(argv):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)
    gpt2_torch.ensure_fast_kernels()
    import torch
    torch.set_num_threads(args.threads)
    cfg = json.loads(Path(args.config).read_text())
    lib = gpt2_torch.openblas()
    print(json.dumps({"event": "config", "job_type": args.method, "config": cfg,
                      "threads": args.threads, "openblas_threads": lib.openblas_get_num_threads(),
                      "blas_core": lib.openblas_get_corename().decode(),
                      "torch": torch.__version__}), flush=True)
    torch.manual_seed(cfg.get("seed", 1))
    policy = pl.load_model(torch, args.init, head=False)[0]
    ref = None
    if args.method == "dpo" or (args.method == "rloo" and cfg["beta"] > 0):
        ref = pl.load_model(torch, args.init, head=False)[0]
        for p in ref.parameters():
            p.requires_grad_(False)
    params = list(policy.parameters())
    opt = torch.optim.Adam(params, lr=cfg["learning_rate"], betas=(0.9, 0.999), eps=1e-8,
                           foreach=True)
    if args.method == "dpo":
        run_dpo(torch, cfg, args, policy, ref, opt, params)
    else:
        run_group(torch, cfg, args, args.method, policy, ref, opt, params)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
