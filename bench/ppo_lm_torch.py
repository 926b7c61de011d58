#!/usr/bin/python3
"""PyTorch reference for `rlhf-train ppo`: the same RLHF PPO update.

Written from the math of engine/ppo_lm.c (Ziegler et al. 2019; Ouyang et
al. 2022; the details of Huang et al. 2023), not from TRL. One update:
  generation  B prompts, left-padded with EOT to the longest prompt P, go
              through the policy in one prefill pass that fills a KV cache,
              then one token a step (softmax(logits / T), one inverse-CDF
              draw per row as gpt2_torch.sample_tokens), a row stopping after
              EOT, all rows after response_length tokens;
  scoring     policy log-probs (of logits / T) of the response tokens and
              values (scalar head), reference log-probs (the frozen initial
              policy), reward-model score at the last real token (gain ·
              v + bias, minus missing_eos_penalty without an EOT);
  training    per-token KL (k1, k3 or abs) · -β plus the score on the last
              token, GAE (γ, λ), advantage whitening (optionally reward
              whitening), then ppo_epochs passes of shuffled minibatches
              (gradient_accumulation_steps micro-batches each): the clipped
              surrogate + vf_coef · clipped value loss, means over the
              minibatch's real response tokens, global grad-norm clipping per
              model, Adam (β 0.9, 0.999, ε 1e-5), learning rate annealed
              linearly per update.
Values come from a separate value model initialised from the reward model
(value_model "reward_model", the default: scored in the scoring phase,
trained with its own Adam) or from the policy's scalar head ("policy_head").
The hyperparameters are `rlhf-train ppo`'s, read from the same JSON config
(--config); the JSON lines printed are the C program's: a config line, then
one {"step": u, ...} line per update with the same metric names, including
time/generation_s, time/scoring_s, time/training_s and tokens_per_s (B · S
tokens per update second, S = P + response_length), measured at the same
phase boundaries.

Model: bench/gpt2_torch.py's GPT-2 modules (same shapes, GPT-2 init), with
a forward written here that takes position ids and an attention mask (left
padding) and a scalar head score (C → 1) on the final LayerNorm. Weights
come from safetensors files in Hugging Face's GPT-2 layout, which
`--write-checkpoints` produces for a size so both programs load the same
weights (policy with a value head; a separately seeded reward model).

Giving the reference its best (../shared/BENCHMARKING.md): OPENBLAS_NUM_THREADS
set before torch loads (--openblas-threads), torch.set_num_threads
(--threads, default 1: its best here); the LM head only on the positions
that predict response tokens (the C loop computes it at every position);
inference_mode for generation and scoring; the KV cache preallocated;
Adam(foreach=True); zero_grad(set_to_none=True).

Tokenizer: the byte-level one rlhf-train uses without --tokenizer-dir (token
= UTF-8 byte, EOT = 256), so prompts encode identically on both sides.

Usage
    /usr/bin/python3 bench/ppo_lm_torch.py --write-checkpoints DIR --size S|M [--vocab 50257]
    /usr/bin/python3 bench/ppo_lm_torch.py --config cfg.json --data prompts.jsonl \\
        --init DIR/policy.safetensors --reward-model DIR/reward.safetensors \\
        [--threads 1] [--openblas-threads 2]
"""

import argparse
import json
import math
import os
import struct
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gpt2_torch  # noqa: E402  (SIZES, build_model, sample_tokens, OpenBLAS set-up)

EOT = 256  # the byte-level tokenizer's <|endoftext|>
BYTE_VOCAB = 257
DEFAULTS = {  # rlhf-train ppo's defaults (engine/ppo_lm.c)
    "seed": 1, "total_updates": 100, "batch_size": 16, "mini_batch_size": 4, "ppo_epochs": 4,
    "learning_rate": 1e-5, "anneal_lr": True, "max_grad_norm": 1.0, "clip_coef": 0.2,
    "vf_clip": 0.2, "vf_coef": 0.1, "gamma": 1.0, "lam": 0.95, "kl_coef": 0.05,
    "kl_estimator": "k1", "target_kl": 0.0, "kl_horizon": 10000.0, "whiten_rewards": False,
    "response_length": 32, "temperature": 1.0, "missing_eos_penalty": 1.0,
    "non_finite_patience": 3, "sample_interval": 10, "checkpoint_interval": 0,
    "value_model": "reward_model", "gradient_accumulation_steps": 1,
}


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch twin of `rlhf-train ppo`.")
    p.add_argument("--write-checkpoints", metavar="DIR",
                   help="write policy.safetensors and reward.safetensors of --size and exit")
    p.add_argument("--size", choices=sorted(gpt2_torch.SIZES))
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--config", help="JSON file of rlhf-train ppo hyperparameters")
    p.add_argument("--data", help="prompts, JSONL with a 'prompt' key")
    p.add_argument("--init", help="policy (SFT) checkpoint")
    p.add_argument("--reward-model", help="reward model checkpoint")
    p.add_argument("--threads", type=int, default=1, help="torch.set_num_threads")
    p.add_argument("--openblas-threads", type=int, default=2)
    a = p.parse_args(argv)
    if a.write_checkpoints:
        if not a.size:
            p.error("--write-checkpoints needs --size")
    elif not (a.config and a.data and a.init and a.reward_model):
        p.error("a run needs --config, --data, --init and --reward-model")
    return a


# ---------------------------------------------------------------------------
# Checkpoints: safetensors in Hugging Face's GPT-2 layout (Conv1D weights
# stored (in, out)), our config in the metadata as engine/gpt2_checkpoint.c.


def hf_names(model):
    """[(name, tensor as stored, module tensor, transposed?)]."""
    out = [("transformer.wte.weight", model.wte.weight, False),
           ("transformer.wpe.weight", model.wpe.weight, False)]
    for i, b in enumerate(model.h):
        p = f"transformer.h.{i}."
        out += [(p + "ln_1.weight", b.ln_1.weight, False), (p + "ln_1.bias", b.ln_1.bias, False),
                (p + "attn.c_attn.weight", b.c_attn.weight, True),
                (p + "attn.c_attn.bias", b.c_attn.bias, False),
                (p + "attn.c_proj.weight", b.attn_proj.weight, True),
                (p + "attn.c_proj.bias", b.attn_proj.bias, False),
                (p + "ln_2.weight", b.ln_2.weight, False), (p + "ln_2.bias", b.ln_2.bias, False),
                (p + "mlp.c_fc.weight", b.c_fc.weight, True),
                (p + "mlp.c_fc.bias", b.c_fc.bias, False),
                (p + "mlp.c_proj.weight", b.mlp_proj.weight, True),
                (p + "mlp.c_proj.bias", b.mlp_proj.bias, False)]
    out += [("transformer.ln_f.weight", model.ln_f.weight, False),
            ("transformer.ln_f.bias", model.ln_f.bias, False)]
    if getattr(model, "score", None) is not None:
        out += [("score.weight", model.score.weight, False),
                ("score.bias", model.score.bias, False)]
    return out


def write_checkpoint(path, model, cfg):
    header, blobs, offset = {"__metadata__": {
        "format": "pt", "model_type": "gpt2", "vocab_size": str(cfg[0]),
        "n_positions": str(cfg[1]), "n_layer": str(cfg[2]), "n_head": str(cfg[3]),
        "n_embd": str(cfg[4])}}, [], 0
    for name, t, transposed in hf_names(model):
        t = t.detach().t() if transposed else t.detach()
        data = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def read_checkpoint(torch, path):
    """(tensors by name, metadata)."""
    data = Path(path).read_bytes()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    tensors = {}
    for name, h in header.items():
        if h["dtype"] != "F32":
            raise SystemExit(f"{path}: {name} is {h['dtype']}, only F32 is read")
        a, b = h["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(data[8 + n + a:8 + n + b]),
                                         dtype=torch.float32).reshape(h["shape"])
    return tensors, meta


def new_model(torch, V, maxT, L, NH, C, head):
    model = gpt2_torch.build_model(torch, V, L, C, NH, maxT)
    model.score = None
    if head:  # as gpt2_init_weights: N(0, 1/sqrt(C + 1)), bias 0
        model.score = torch.nn.Linear(C, 1)
        torch.nn.init.normal_(model.score.weight, 0.0, 1.0 / math.sqrt(C + 1))
        torch.nn.init.zeros_(model.score.bias)
    model.dims = (V, maxT, L, NH, C)
    return model


def load_model(torch, path, head):
    tensors, meta = read_checkpoint(torch, path)
    V, maxT, L, NH, C = (int(meta[k]) for k in
                         ("vocab_size", "n_positions", "n_layer", "n_head", "n_embd"))
    model = new_model(torch, V, maxT, L, NH, C, head)
    with torch.no_grad():
        for name, t, transposed in hf_names(model):
            if name not in tensors:
                if name.startswith("score."):
                    continue  # a fresh head, as the C loader
                raise SystemExit(f"{path}: no tensor {name}")
            src = tensors[name].t() if transposed else tensors[name]
            t.copy_(src)
    gain = float(meta.get("reward_gain", 1.0))
    bias = float(meta.get("reward_bias", 0.0))
    return model, gain, bias


def write_checkpoints(torch, args):
    L, C, NH, ctx = gpt2_torch.SIZES[args.size]
    out = Path(args.write_checkpoints)
    out.mkdir(parents=True, exist_ok=True)
    cfg = (args.vocab, ctx, L, NH, C)
    for name, seed in (("policy", 1), ("reward", 2)):
        torch.manual_seed(seed)
        model = new_model(torch, args.vocab, ctx, L, NH, C, head=True)
        write_checkpoint(out / f"{name}.safetensors", model, cfg)
    print(json.dumps({"event": "checkpoints", "dir": str(out), "size": args.size,
                      "params": sum(p.numel() for p in model.parameters())}))


# ---------------------------------------------------------------------------
# Forward with position ids and an attention mask (left padding)


def attn(torch, q, k, v, bias, scale):
    """q (B, NH, Tq, hs), k/v (B, NH, Tk, hs), bias broadcastable to
    (B, NH, Tq, Tk): 0 where a key is visible, a large negative otherwise."""
    att = torch.baddbmm(bias.expand(q.shape[0], q.shape[1], q.shape[2], k.shape[2])
                        .reshape(-1, q.shape[2], k.shape[2]),
                        q.reshape(-1, q.shape[2], q.shape[3]),
                        k.reshape(-1, k.shape[2], k.shape[3]).transpose(1, 2), alpha=scale)
    att = att.softmax(dim=-1)
    return torch.bmm(att, v.reshape(-1, v.shape[2], v.shape[3])).view(q.shape)


def trunk(torch, model, tokens, positions, mask, caches=None):
    """Hidden states before ln_f (B, T, C); fills caches[l][0/1][:, :, :T]
    when given. A query with no visible key (a left pad) attends to every
    column with equal weight instead of C's zeros: it is never scored."""
    V, maxT, L, NH, C = model.dims
    hs = C // NH
    B, T = tokens.shape
    x = model.wte(tokens) + model.wpe(positions)
    visible = (~model.future[:T, :T])[None] & mask[:, None, :].bool()  # (B, T, T)
    bias = torch.zeros(B, 1, T, T).masked_fill_(~visible[:, None], torch.finfo(torch.float32).min)
    scale = 1.0 / math.sqrt(hs)
    for i, blk in enumerate(model.h):
        q, k, v = blk.c_attn(blk.ln_1(x)).split(C, dim=2)
        q = q.view(B, T, NH, hs).transpose(1, 2)
        k = k.view(B, T, NH, hs).transpose(1, 2)
        v = v.view(B, T, NH, hs).transpose(1, 2)
        if caches is not None:
            caches[i][0][:, :, :T] = k
            caches[i][1][:, :, :T] = v
        y = attn(torch, q, k, v, bias, scale).transpose(1, 2).reshape(B, T, C)
        x = x + blk.attn_proj(y)
        x = x + blk.mlp(x)
    return x


def decode(torch, model, tokens, positions, caches, key_bias, t):
    """One column of tokens (B) at cache column t; next-token logits (B, V)."""
    V, maxT, L, NH, C = model.dims
    hs = C // NH
    B = tokens.shape[0]
    x = (model.wte(tokens) + model.wpe(positions))[:, None]  # (B, 1, C)
    bias = key_bias[:, None, None, :t + 1]
    scale = 1.0 / math.sqrt(hs)
    for blk, (kc, vc) in zip(model.h, caches):
        q, k, v = blk.c_attn(blk.ln_1(x)).split(C, dim=2)
        kc[:, :, t] = k.view(B, NH, hs)
        vc[:, :, t] = v.view(B, NH, hs)
        y = attn(torch, q.view(B, NH, 1, hs), kc[:, :, :t + 1], vc[:, :, :t + 1], bias, scale)
        x = x + blk.attn_proj(y.reshape(B, 1, C))
        x = x + blk.mlp(x)
    return model.logits(x[:, 0])


def generate(torch, model, prompts, pmask, N, temperature, eos):
    """(tokens (B, N) with EOT filler after a row's EOT, lengths (B) incl. EOT)."""
    V, maxT, L, NH, C = model.dims
    B, P = prompts.shape
    cap = P + N
    caches = [(torch.empty(B, NH, cap, C // NH), torch.empty(B, NH, cap, C // NH))
              for _ in range(L)]
    positions = ((pmask.cumsum(1) - 1).clamp_(min=0) * pmask).long()
    next_pos = pmask.sum(1).long()
    h = trunk(torch, model, prompts, positions, pmask, caches)
    logits = model.logits(h[:, -1])
    key_bias = torch.zeros(B, cap)
    key_bias[:, :P].masked_fill_(~pmask.bool(), torch.finfo(torch.float32).min)
    out = torch.full((B, N), eos, dtype=torch.long)
    lengths = torch.zeros(B, dtype=torch.long)
    done = torch.zeros(B, dtype=torch.bool)
    for s in range(N):
        nxt = gpt2_torch.sample_tokens(torch, logits, temperature)[:, 0]
        nxt.masked_fill_(done, eos)
        out[:, s] = nxt
        lengths += (~done).long()
        done |= nxt == eos
        if s == N - 1 or bool(done.all()):
            break
        logits = decode(torch, model, nxt, next_pos, caches, key_bias, P + s)
        next_pos += 1
    return out, lengths


def response_heads(torch, model, h, P, N, temperature, targets, want_entropy=False):
    """From trunk states h (B, S, C): log-probs at temperature of the response
    tokens targets (B, N), values (B, N) when the model has a head, entropy."""
    hn = model.ln_f(h[:, P - 1:P + N - 1])  # the positions that predict the response
    logits = torch.nn.functional.linear(hn, model.wte.weight) / temperature
    logp_all = logits.log_softmax(dim=-1)
    logp = logp_all.gather(-1, targets[..., None])[..., 0]
    values = model.score(hn)[..., 0] if model.score is not None else None
    entropy = None
    if want_entropy:
        with torch.no_grad():
            entropy = -(logp_all.exp() * logp_all).sum(-1)
    return logp, values, entropy


# ---------------------------------------------------------------------------
# The PPO pieces (engine/ppo.c)


def whiten(torch, x, m, shift_mean):
    n = m.sum()
    if n < 2:
        return x
    mean = (x * m).sum() / n
    var = (((x - mean) * m) ** 2).sum() / (n - 1)  # Bessel, as ppo_whiten
    w = (x - mean) * torch.rsqrt(var + 1e-8) + (0.0 if shift_mean else mean)
    return torch.where(m.bool(), w, x)


def gae(torch, rewards, values, lengths, gamma, lam):
    B, N = rewards.shape
    adv = torch.zeros(B, N)
    next_value = torch.zeros(B)
    next_adv = torch.zeros(B)
    for t in range(N - 1, -1, -1):
        real = t < lengths
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        a = delta + gamma * lam * next_adv
        adv[:, t] = torch.where(real, a, torch.zeros(()))
        next_adv = torch.where(real, a, next_adv)
        next_value = torch.where(real, values[:, t], next_value)
    return adv, adv + values * (torch.arange(N)[None] < lengths[:, None])


def main(argv):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)
    gpt2_torch.ensure_fast_kernels()
    import torch
    torch.set_num_threads(args.threads)
    if args.write_checkpoints:
        write_checkpoints(torch, args)
        return 0

    cfg = dict(DEFAULTS)
    given = json.loads(Path(args.config).read_text())
    unknown = set(given) - set(DEFAULTS)
    if unknown:
        raise SystemExit(f"{args.config}: unknown keys {sorted(unknown)}")
    cfg.update(given)
    lib = gpt2_torch.openblas()
    print(json.dumps({"event": "config", "job_type": "ppo", "config": cfg,
                      "threads": args.threads, "openblas_threads": lib.openblas_get_num_threads(),
                      "blas_core": lib.openblas_get_corename().decode(),
                      "torch": torch.__version__}), flush=True)

    torch.manual_seed(cfg["seed"])
    policy, _, _ = load_model(torch, args.init, head=True)
    ref, _, _ = load_model(torch, args.init, head=False)
    rm, gain, bias = load_model(torch, args.reward_model, head=True)
    for p in list(ref.parameters()) + list(rm.parameters()):
        p.requires_grad_(False)
    separate = cfg["value_model"] == "reward_model"
    critic = load_model(torch, args.reward_model, head=True)[0] if separate else policy
    V = policy.dims[0]
    prompts = [json.loads(line)["prompt"] for line in Path(args.data).read_text().splitlines()
               if line.strip()]
    B, M, N = cfg["batch_size"], cfg["mini_batch_size"], cfg["response_length"]
    if B % M:
        raise SystemExit("mini_batch_size must divide batch_size")
    ctx = min(policy.dims[1], rm.dims[1])
    cap = ctx - N
    encoded = [list(p.encode())[:cap] for p in prompts]  # byte tokenizer; keep the start
    if BYTE_VOCAB > V or cap < 1 or any(len(e) < 1 for e in encoded):
        raise SystemExit("prompts / vocabulary / response_length do not fit")
    P = max(len(e) for e in encoded)
    S = P + N
    T = cfg["temperature"]
    G = cfg["gradient_accumulation_steps"]
    if M % G:
        raise SystemExit("gradient_accumulation_steps must divide mini_batch_size")
    U = M // G
    groups = [list(policy.parameters())] + ([list(critic.parameters())] if separate else [])
    opts = [torch.optim.Adam(ps, lr=cfg["learning_rate"], betas=(0.9, 0.999), eps=1e-5,
                             foreach=True) for ps in groups]
    gen = torch.Generator().manual_seed(cfg["seed"])
    order, cursor = [], len(prompts)
    beta = cfg["kl_coef"]
    start = time.perf_counter()
    for update in range(1, cfg["total_updates"] + 1):
        t0 = time.perf_counter()
        rows = []
        for _ in range(B):
            if cursor >= len(prompts):
                order = torch.randperm(len(prompts), generator=gen).tolist()
                cursor = 0
            rows.append(encoded[order[cursor]])
            cursor += 1
        prompt_ids = torch.tensor([[EOT] * (P - len(r)) + r for r in rows], dtype=torch.long)
        pmask = torch.tensor([[0] * (P - len(r)) + [1] * len(r) for r in rows], dtype=torch.long)
        with torch.inference_mode():
            resp, lengths = generate(torch, policy, prompt_ids, pmask, N, T, EOT)
        resp, lengths = resp.clone(), lengths.clone()  # normal tensors, usable by autograd
        seq = torch.cat([prompt_ids, resp], 1)
        rmask = (torch.arange(N)[None] < lengths[:, None]).long()  # real response tokens
        smask = torch.cat([pmask, rmask], 1)
        positions = ((smask.cumsum(1) - 1).clamp_(min=0) * smask).long()
        t1 = time.perf_counter()
        with torch.inference_mode():
            logp, values, _ = response_heads(torch, policy, trunk(torch, policy, seq, positions,
                                                                  smask), P, N, T, resp)
            if separate:
                h = critic.ln_f(trunk(torch, critic, seq, positions, smask)[:, P - 1:S - 1])
                values = critic.score(h)[..., 0]
            ref_logp, _, _ = response_heads(torch, ref, trunk(torch, ref, seq, positions, smask),
                                            P, N, T, resp)
            h = rm.ln_f(trunk(torch, rm, seq, positions, smask))
            last = P + lengths - 1
            v_last = rm.score(h[torch.arange(B), last])[:, 0]
            has_eos = resp[torch.arange(B), lengths - 1] == EOT
            score = gain * v_last + bias - cfg["missing_eos_penalty"] * (~has_eos).float()
        t2 = time.perf_counter()
        logp, values, ref_logp = logp.clone(), values.clone(), ref_logp.clone()
        m = rmask.float()
        d = logp - ref_logp
        est = cfg["kl_estimator"]
        kl = (d if est == "k1" else torch.expm1(-d) + d if est == "k3" else d.abs()) * m
        rewards = -beta * kl
        rewards[torch.arange(B), lengths - 1] += score
        if cfg["whiten_rewards"]:
            rewards = whiten(torch, rewards, m, False)
        adv, returns = gae(torch, rewards, values, lengths, cfg["gamma"], cfg["lam"])
        adv = whiten(torch, adv, m, True)
        seq_kl = float(kl.sum(1).mean())
        lr = (cfg["learning_rate"] * max(0.0, 1.0 - (update - 1) / cfg["total_updates"])
              if cfg["anneal_lr"] else cfg["learning_rate"])
        for opt in opts:
            for g in opt.param_groups:
                g["lr"] = lr
        clip, vclip = cfg["clip_coef"], cfg["vf_clip"]
        stats = {"pg": 0.0, "vl": 0.0, "approxkl": 0.0, "clipfrac": 0.0, "entropy": 0.0}
        steps = 0
        for _ in range(cfg["ppo_epochs"]):
            perm = torch.randperm(B, generator=gen)
            for s0 in range(0, B, M):
                n_total = m[perm[s0:s0 + M]].sum().clamp(min=1)
                for opt in opts:
                    opt.zero_grad(set_to_none=True)
                for u0 in range(s0, s0 + M, U):
                    idx = perm[u0:u0 + U]
                    mm = m[idx]
                    h = trunk(torch, policy, seq[idx], positions[idx], smask[idx])
                    newlogp, vpred, ent = response_heads(torch, policy, h, P, N, T, resp[idx],
                                                         True)
                    if separate:
                        hv = critic.ln_f(trunk(torch, critic, seq[idx], positions[idx],
                                               smask[idx])[:, P - 1:S - 1])
                        vpred = critic.score(hv)[..., 0]
                    ratio = torch.exp(newlogp - logp[idx])
                    a = adv[idx]
                    pg = (torch.max(-a * ratio, -a * ratio.clamp(1 - clip, 1 + clip)) * mm).sum()
                    oldv, ret = values[idx], returns[idx]
                    vc = oldv + (vpred - oldv).clamp(-vclip, vclip)
                    vl = 0.5 * (torch.max((vpred - ret) ** 2, (vc - ret) ** 2) * mm).sum()
                    loss = (pg + cfg["vf_coef"] * vl) / n_total
                    loss.backward()
                    with torch.no_grad():
                        lr_ = newlogp - logp[idx]
                        stats["pg"] += float(pg / n_total)
                        stats["vl"] += float(vl / n_total)
                        stats["approxkl"] += float((0.5 * lr_ ** 2 * mm).sum() / n_total)
                        stats["clipfrac"] += float((((ratio - 1).abs() > clip).float() * mm).sum()
                                                   / n_total)
                        stats["entropy"] += float((ent * mm).sum() / n_total)
                for ps, opt in zip(groups, opts):
                    torch.nn.utils.clip_grad_norm_(ps, cfg["max_grad_norm"])
                    opt.step()
                steps += 1
        if cfg["target_kl"] > 0:
            e = min(0.2, max(-0.2, seq_kl / cfg["target_kl"] - 1.0))
            beta *= 1.0 + e * B / cfg["kl_horizon"]
        t3 = time.perf_counter()
        ns = max(steps, 1)
        rec = {"step": update, "objective/kl": seq_kl, "objective/kl_coef": beta,
               "objective/scores": float(score.mean()),
               "policy/approxkl_avg": stats["approxkl"] / ns,
               "policy/clipfrac_avg": stats["clipfrac"] / ns,
               "policy/entropy_avg": stats["entropy"] / ns,
               "loss/policy_avg": stats["pg"] / ns, "loss/value_avg": stats["vl"] / ns,
               "val/num_eos_tokens": int(has_eos.sum()),
               "tokens/responses_len_mean": float(lengths.float().mean()), "lr": lr,
               "episode": update * B, "time/generation_s": t1 - t0, "time/scoring_s": t2 - t1,
               "time/training_s": t3 - t2, "tokens_per_s": B * S / (t3 - t0),
               "wall_s": t3 - start}
        print(json.dumps(rec), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
