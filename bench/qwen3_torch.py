#!/usr/bin/python3
"""Plain-PyTorch twin of rlhf-train's LoRA work at Qwen3-0.6B's shape.

The model is tests/reference/llama_reference.py's CausalLM (the block written
from transformers' equations, no transformers library), loaded from the same
Hugging Face directory rlhf-train opens, with PEFT-style LoRA (r, alpha) on
all seven projections; base weights frozen. Two modes, one JSON line each:

  --mode sft   LoRA SFT steps at batch B x T tokens (loss on every position,
               AdamW on the adapters, grad-norm clip 1): tokens/s of the
               timed steps (median) after --warmup steps.
  --mode ppo   one LoRA PPO update the way rlhf-train ppo does it with
               value_model = reward_model: the policy (adapters), the reference
               (the policy with adapters off), a value model (a copy of the
               reward model's base with its own adapters and scalar head) and
               the reward model (frozen, scalar head); sample --new-tokens per
               prompt, score, GAE, then --ppo-epochs passes of minibatches.
               Prints peak RSS (ru_maxrss) at the end and once the models are
               loaded, and wall time.

Run by bench/bench_qwen3.py; by hand:
    /usr/bin/python3 bench/qwen3_torch.py --model DIR --mode sft --threads 1
"""
import argparse
import json
import os
import resource
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import llama_reference as ref  # noqa: E402


def load_safetensors_into(model, path):
    """Copies each tensor of the file into the model's parameter of that name
    as it is read (bf16 widened to fp32), so loading never holds a second
    copy of the model: the reference's peak is its steady state, not a
    load-time state dict."""
    params = dict(model.named_parameters())
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
        for name, h in header.items():
            if name == "__metadata__" or name not in params:
                continue
            a, b = h["data_offsets"]
            f.seek(base + a)
            raw = bytearray(f.read(b - a))
            dt = {"F32": torch.float32, "BF16": torch.bfloat16}[h["dtype"]]
            with torch.no_grad():
                params[name].copy_(torch.frombuffer(raw, dtype=dt).reshape(h["shape"]))
            del raw


def load_model(d):
    with open(os.path.join(d, "config.json")) as f:
        c = json.load(f)
    model = ref.CausalLM(c)
    load_safetensors_into(model, os.path.join(d, "model.safetensors"))
    for p in model.parameters():
        p.requires_grad_(False)
    return model, c


class LoRA(nn.Module):
    """PEFT's LoRA Linear with an on/off switch (the reference = adapters off)."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base, self.scaling, self.enabled = base, alpha / r, True
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features))
        nn.init.kaiming_uniform_(self.lora_A, a=5 ** 0.5)
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, r))

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + self.scaling * (x @ self.lora_A.t()) @ self.lora_B.t()
        return y


def add_lora(model, r, alpha):
    adapters = []
    for layer in model.model.layers:
        for part, name in ref.LORA_TARGETS:
            mod = getattr(layer, part)
            lo = LoRA(getattr(mod, name), r, alpha)
            setattr(mod, name, lo)
            adapters.append(lo)
    return adapters


def hidden(model, tokens):
    """The final hidden states (B, T, C) of CausalLM.forward without the head."""
    B, T = tokens.shape
    pos = torch.arange(T)[None].expand(B, T)
    mask = torch.ones(B, T, dtype=torch.long)
    freqs = pos[..., None].float() * model.inv_freq[None, None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    x = model.model.embed_tokens(tokens)
    for layer in model.model.layers:
        x = layer(x, cos, sin, mask)
    return model.model.norm(x)


def lm_head(model, h):
    w = model.model.embed_tokens.weight if model.tied else model.lm_head.weight
    return h @ w.t()


def sft(a):
    model, c = load_model(a.model)
    params = [p for lo in add_lora(model, a.lora_r, a.lora_alpha) for p in (lo.lora_A, lo.lora_B)]
    opt = torch.optim.AdamW(params, lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    g = torch.Generator().manual_seed(1)
    times = []
    for step in range(a.warmup + a.steps):
        tokens = torch.randint(0, c["vocab_size"], (a.batch, a.seq + 1), generator=g)
        t0 = time.perf_counter()
        logits = lm_head(model, hidden(model, tokens[:, :-1]))
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        del logits, loss
        if step >= a.warmup:
            times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    print(json.dumps({"mode": "sft", "threads": a.threads, "step_s": s,
                      "tokens_per_s": a.batch * a.seq / s, "steps": a.steps}), flush=True)


def ppo(a):
    t_start = time.perf_counter()
    policy, c = load_model(a.model)
    pol_adapters = add_lora(policy, a.lora_r, a.lora_alpha)
    rm, _ = load_model(a.model)
    rm_head = nn.Linear(c["hidden_size"], 1)
    vm, _ = load_model(a.model)
    vm_adapters = add_lora(vm, a.lora_r, a.lora_alpha)
    vm_head = nn.Linear(c["hidden_size"], 1)
    load_peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    params = [p for lo in pol_adapters + vm_adapters for p in (lo.lora_A, lo.lora_B)]
    params += list(vm_head.parameters())
    opt = torch.optim.AdamW(params, lr=1e-5)
    g = torch.Generator().manual_seed(1)
    B, P, N = a.batch, a.prompt_len, a.new_tokens
    seq = torch.randint(0, c["vocab_size"], (B, P), generator=g)

    def set_adapters(on):
        for lo in pol_adapters:
            lo.enabled = on

    def logp_of(model, tokens):
        logits = lm_head(model, hidden(model, tokens)[:, P - 1:-1])
        return torch.log_softmax(logits, -1).gather(-1, tokens[:, P:, None])[..., 0]

    with torch.no_grad():
        for _ in range(N):  # sampling (no KV cache: its time is not measured here)
            logits = lm_head(policy, hidden(policy, seq)[:, -1:])
            nxt = torch.multinomial(torch.softmax(logits[:, 0], -1), 1, generator=g)
            seq = torch.cat([seq, nxt], 1)
        old_logp = logp_of(policy, seq)
        set_adapters(False)
        ref_logp = logp_of(policy, seq)
        set_adapters(True)
        score = rm_head(hidden(rm, seq)[:, -1])[:, 0]
        values = vm_head(hidden(vm, seq)[:, P - 1:-1])[..., 0]
        rewards = -a.kl_coef * (old_logp - ref_logp)
        rewards[:, -1] += score
        adv = torch.zeros_like(rewards)
        last = torch.zeros(B)
        for t in reversed(range(N)):
            nv = values[:, t + 1] if t + 1 < N else torch.zeros(B)
            delta = rewards[:, t] + nv - values[:, t]
            last = delta + 0.95 * last
            adv[:, t] = last
        returns = adv + values
        adv = (adv - adv.mean()) / (adv.std() + 1e-8)
    mb = a.mini_batch
    for _ in range(a.ppo_epochs):
        for i in range(0, B, mb):
            s = slice(i, i + mb)
            logp = logp_of(policy, seq[s])
            ratio = torch.exp(logp - old_logp[s])
            pg = torch.max(-adv[s] * ratio, -adv[s] * ratio.clamp(0.8, 1.2)).mean()
            v = vm_head(hidden(vm, seq[s])[:, P - 1:-1])[..., 0]
            vloss = 0.5 * ((v - returns[s]) ** 2).mean()
            opt.zero_grad(set_to_none=True)
            (pg + 0.1 * vloss).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            opt.step()
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"mode": "ppo", "threads": a.threads, "peak_rss_mib": peak_kib / 1024,
                      "peak_rss_after_load_mib": load_peak_kib / 1024,
                      "wall_s": time.perf_counter() - t_start}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--mode", choices=("sft", "ppo"), required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=256)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--lora-r", type=int, default=16)
    ap.add_argument("--lora-alpha", type=float, default=32.0)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--new-tokens", type=int, default=10)
    ap.add_argument("--mini-batch", type=int, default=2)
    ap.add_argument("--ppo-epochs", type=int, default=4)
    ap.add_argument("--kl-coef", type=float, default=0.05)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    sft(a) if a.mode == "sft" else ppo(a)


if __name__ == "__main__":
    main()
