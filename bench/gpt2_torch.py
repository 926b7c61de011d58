#!/usr/bin/python3
"""PyTorch reference for build/gpt2-bench: the same GPT-2 model, the same work.

What it measures (the same JSON lines as bench/gpt2_bench.c, side "reference")
    * training tokens/s: zero_grad + forward + masked LM loss + backward +
      AdamW step (weight decay on matrices only), warm-up steps then the
      median of timed steps; peak RSS after training;
    * sampling tokens/s with a KV cache at each batch size: the prompt in one
      forward pass (filling the cache), then one token a step, temperature 1
      (inverse-CDF draw, see sample_tokens), no top-k/top-p, no EOS;
    * with --probe-threads: each phase at torch.set_num_threads(1) and (2),
      alternately, to pick the reference's best setting (the runner does
      this once per size, as the reference's warm-up run).

The model (same shapes and parameter count as engine/gpt2.h; the module
layout follows tests/reference/gpt2_reference.py): token + learned position
embeddings, pre-LayerNorm blocks with causal multi-head self-attention and a
GELU(tanh) 4x MLP, final LayerNorm, LM head tied to the token embedding.
fp32 throughout; torch 1.13 has no fused attention, so attention is the
matmul / masked_fill / softmax / matmul of nanoGPT's non-flash path.

Giving the reference its best (BENCHMARKING.md)
    * OPENBLAS_NUM_THREADS is set before torch loads (--openblas-threads,
      default 2); torch's own OpenMP pool is set per phase (--train-threads,
      --sample-threads; the runner picks each from the probe).
    * OPENBLAS_CORETYPE: if the caller has not set it and OpenBLAS would
      fall back to its Prescott (SSE3) kernels on a CPU with AVX-512 or AVX2,
      this script re-executes itself with SkylakeX or Haswell, as
      engine/blas_setup.c does for our programs. The config line names the
      kernels that ran.
    * AdamW(foreach=True), zero_grad(set_to_none=True), the KV cache
      preallocated (written in place, no torch.cat per step), logits of the
      last position only while sampling, torch.inference_mode() for sampling.
    * The loss is F.cross_entropy with ignore_index (Hugging Face's SFT
      labels = -100 convention).

Data: token(i) = (i * 2654435761) mod V, the stream the C benchmark uses;
inputs/targets/loss mask/prompts are laid out as in bench/gpt2_bench.c.

Usage
    /usr/bin/python3 bench/gpt2_torch.py --size S|M|L [--batch 8] [--vocab 50257]
        [--openblas-threads 2] [--train-threads 1] [--sample-threads 1[,1]]
        [--train-warmup 2] [--train-steps 5] [--prompt-len 16] [--new-tokens 128]
        [--sample-batches 1,16] [--sample-reps 1] [--probe-threads]
"""

import argparse
import ctypes
import json
import math
import os
import re
import resource
import statistics
import sys
import time

SIZES = {  # name: (n_layer, d_model, n_head, ctx), as bench/gpt2_bench.c
    "S": (4, 128, 4, 128),
    "M": (6, 256, 8, 256),
    "L": (8, 512, 8, 256),
}


def parse_args(argv):
    p = argparse.ArgumentParser(description="PyTorch twin of build/gpt2-bench.")
    p.add_argument("--size", required=True, choices=sorted(SIZES))
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--openblas-threads", type=int, default=2)
    p.add_argument("--train-threads", type=int, default=1, help="torch.set_num_threads in training")
    p.add_argument("--sample-threads", default="1",
                   help="torch.set_num_threads in sampling: one number, or one per "
                        "--sample-batches entry")
    p.add_argument("--train-warmup", type=int, default=2)
    p.add_argument("--train-steps", type=int, default=5, help="0 skips training")
    p.add_argument("--prompt-len", type=int, default=16)
    p.add_argument("--new-tokens", type=int, default=128, help="capped at ctx - prompt-len")
    p.add_argument("--sample-batches", default="1,16", help="comma-separated; '' skips sampling")
    p.add_argument("--sample-reps", type=int, default=1)
    p.add_argument("--probe-threads", action="store_true",
                   help="time each phase at 1 and 2 torch threads instead")
    a = p.parse_args(argv)
    a.sample_batches = [int(x) for x in a.sample_batches.split(",") if x.strip()]
    a.sample_threads = [int(x) for x in a.sample_threads.split(",") if x.strip()]
    if len(a.sample_threads) == 1:
        a.sample_threads *= len(a.sample_batches)
    if len(a.sample_threads) != len(a.sample_batches) or min(a.sample_threads, default=1) < 1:
        p.error("--sample-threads: one positive number, or one per --sample-batches entry")
    n_layer, d_model, n_head, ctx = SIZES[a.size]
    if not 1 <= a.prompt_len < ctx:
        p.error(f"--prompt-len must be in [1, {ctx})")
    a.new_tokens = min(a.new_tokens, ctx - a.prompt_len)
    return a


# ---------------------------------------------------------------------------
# OpenBLAS set-up: before torch (and with it libopenblas) loads.

def openblas():
    lib = ctypes.CDLL("libopenblas.so.0")
    lib.openblas_get_corename.restype = ctypes.c_char_p
    lib.openblas_get_config.restype = ctypes.c_char_p
    return lib


def ensure_fast_kernels():
    """Re-executes with OPENBLAS_CORETYPE=SkylakeX/Haswell when OpenBLAS
    would use Prescott on a CPU that has the newer kernels' instructions."""
    if "OPENBLAS_CORETYPE" in os.environ or os.environ.get("RLHF_BLAS_AUTOCORE") == "0":
        return
    if openblas().openblas_get_corename().decode() != "Prescott":
        return
    try:
        flags = set(re.search(r"^flags\s*:(.*)$", open("/proc/cpuinfo").read(), re.M)
                    .group(1).split())
    except (OSError, AttributeError):
        return
    for needed, core in (({"avx512f", "avx512bw", "avx512dq", "avx512vl"}, "SkylakeX"),
                         ({"avx2", "fma"}, "Haswell")):
        if needed <= flags:
            os.environ["OPENBLAS_CORETYPE"] = core
            os.execv(sys.executable, [sys.executable] + sys.argv)


# ---------------------------------------------------------------------------
# The model


def build_model(torch, V, L, C, NH, ctx):
    nn, F = torch.nn, torch.nn.functional
    hs = C // NH
    scale = 1.0 / math.sqrt(hs)

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(C, eps=1e-5)
            self.c_attn = nn.Linear(C, 3 * C)
            self.attn_proj = nn.Linear(C, C)
            self.ln_2 = nn.LayerNorm(C, eps=1e-5)
            self.c_fc = nn.Linear(C, 4 * C)
            self.mlp_proj = nn.Linear(4 * C, C)

        def mlp(self, x):
            return self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))

        def forward(self, x, causal, cache=None):
            """x (B, T, C) from position 0; fills cache[0:T] when given."""
            B, T, _ = x.shape
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            q = q.view(B, T, NH, hs).transpose(1, 2)
            k = k.view(B, T, NH, hs).transpose(1, 2)
            v = v.view(B, T, NH, hs).transpose(1, 2)
            if cache is not None:
                cache[0][:, :, :T] = k
                cache[1][:, :, :T] = v
            att = (q @ k.transpose(-2, -1)) * scale
            att = att.masked_fill(causal[:T, :T], float("-inf")).softmax(dim=-1)
            y = (att @ v).transpose(1, 2).reshape(B, T, C)
            x = x + self.attn_proj(y)
            return x + self.mlp(x)

        def decode(self, x, cache, t):
            """x (B, 1, C) at cache column t; attends to columns 0..t."""
            B = x.shape[0]
            q, k, v = self.c_attn(self.ln_1(x)).split(C, dim=2)
            kc, vc = cache
            kc[:, :, t] = k.view(B, NH, hs)
            vc[:, :, t] = v.view(B, NH, hs)
            q = q.view(B, NH, 1, hs)
            att = ((q @ kc[:, :, :t + 1].transpose(-2, -1)) * scale).softmax(dim=-1)
            y = (att @ vc[:, :, :t + 1]).reshape(B, 1, C)
            x = x + self.attn_proj(y)
            return x + self.mlp(x)

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(V, C)
            self.wpe = nn.Embedding(ctx, C)
            self.h = nn.ModuleList([Block() for _ in range(L)])
            self.ln_f = nn.LayerNorm(C, eps=1e-5)
            # True above the diagonal: the future a query may not see
            self.register_buffer("future", torch.ones(ctx, ctx, dtype=torch.bool).triu(1),
                                 persistent=False)
            # GPT-2 initialisation, as gpt2_init_weights
            for name, p in self.named_parameters():
                if name.endswith("bias"):
                    nn.init.zeros_(p)
                elif ".ln_" in name or name.startswith("ln_f"):
                    nn.init.ones_(p)
                elif name.endswith("attn_proj.weight") or name.endswith("mlp_proj.weight"):
                    nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * L))
                else:
                    nn.init.normal_(p, 0.0, 0.02)

        def logits(self, x):
            return F.linear(self.ln_f(x), self.wte.weight)  # tied LM head

        def forward(self, tokens, caches=None):
            T = tokens.shape[1]
            x = self.wte(tokens) + self.wpe.weight[:T]
            for i, block in enumerate(self.h):
                x = block(x, self.future, None if caches is None else caches[i])
            return x

        def decode(self, tokens, caches, t):
            x = self.wte(tokens) + self.wpe.weight[t]
            for block, cache in zip(self.h, caches):
                x = block.decode(x, cache, t)
            return self.logits(x)[:, -1]

    return GPT()


def stream_tokens(torch, start, count, V):
    i = torch.arange(start, start + count, dtype=torch.int64)
    return (i * 2654435761) % V


# ---------------------------------------------------------------------------
# Measurements


def train_data(torch, B, T, V):
    rows = [stream_tokens(torch, b * (T + 1), T + 1, V) for b in range(B)]
    seq = torch.stack(rows)
    tokens, targets = seq[:, :T].contiguous(), seq[:, 1:].clone()
    targets[:, :T // 4] = -100  # the prompt: no loss (ignore_index)
    return tokens, targets


def make_train_step(torch, model, tokens, targets, V):
    F = torch.nn.functional
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=6e-4, betas=(0.9, 0.95), eps=1e-8, foreach=True)

    def step():
        opt.zero_grad(set_to_none=True)
        logits = model.logits(model(tokens))
        loss = F.cross_entropy(logits.view(-1, V), targets.view(-1), ignore_index=-100)
        loss.backward()
        opt.step()
        return loss.item()

    return step


def time_train(step, warmup, steps):
    losses, times = [], []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        losses.append(step())
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return times, losses


def sample_tokens(torch, logits, temperature):
    """One token per row from softmax(logits / temperature), (B, 1), by the
    inverse CDF with one uniform draw per row, as gpt2_sample_tokens does.
    torch.multinomial (Hugging Face's choice) gives the same distribution but
    draws an exponential variate per vocabulary entry: 4x slower at batch 16
    here (15 vs 3.6 ms a step), so the reference does not use it."""
    cdf = torch.softmax(logits / temperature, dim=-1).cumsum_(dim=-1)
    u = torch.rand(logits.shape[0], 1) * cdf[:, -1:]
    return torch.searchsorted(cdf, u).clamp_(max=logits.shape[1] - 1)


def generate(torch, model, prompts, new_tokens, L, NH, hs):
    """Prompt in one pass, then one token a step with the KV cache;
    temperature 1, no top-k/top-p, no EOS. Returns (B, new_tokens)."""
    B, P = prompts.shape
    cap = P + new_tokens
    caches = [(torch.empty(B, NH, cap, hs), torch.empty(B, NH, cap, hs)) for _ in range(L)]
    logits = model.logits(model(prompts, caches)[:, -1])
    out = torch.empty(B, new_tokens, dtype=torch.int64)
    for s in range(new_tokens):
        nxt = sample_tokens(torch, logits, temperature=1.0)
        out[:, s] = nxt[:, 0]
        if s == new_tokens - 1:
            break
        logits = model.decode(nxt, caches, P + s)
    return out


def time_sampling(torch, model, args, B, reps):
    L, C, NH, ctx = SIZES[args.size]
    rows = [stream_tokens(torch, b * (ctx + 1), args.prompt_len, args.vocab) for b in range(B)]
    prompts = torch.stack(rows)
    with torch.inference_mode():
        generate(torch, model, prompts, min(8, args.new_tokens), L, NH, C // NH)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            out = generate(torch, model, prompts, args.new_tokens, L, NH, C // NH)
            times.append(time.perf_counter() - t0)
            assert out.shape == (B, args.new_tokens)
    return times


def emit(**record):
    print(json.dumps(record), flush=True)


def main(argv):
    args = parse_args(argv)
    os.environ["OPENBLAS_NUM_THREADS"] = str(args.openblas_threads)
    ensure_fast_kernels()
    t_start = time.perf_counter()
    import torch
    import_s = time.perf_counter() - t_start
    lib = openblas()
    torch.manual_seed(1)
    L, C, NH, ctx = SIZES[args.size]
    V, B, T = args.vocab, args.batch, ctx
    model = build_model(torch, V, L, C, NH, ctx)
    n_params = sum(p.numel() for p in model.parameters())
    config = re.search(r"OpenBLAS\s+(\S+)", lib.openblas_get_config().decode())
    emit(event="config", side="reference", size=args.size, vocab=V, n_layer=L, d_model=C,
         n_head=NH, ctx=ctx, batch=B, seq_len=T, params=n_params, prompt_len=args.prompt_len,
         new_tokens=args.new_tokens, train_warmup=args.train_warmup,
         train_steps=args.train_steps, sample_reps=args.sample_reps,
         openblas_threads=lib.openblas_get_num_threads(),
         openblas_core=lib.openblas_get_corename().decode(),
         openblas_version=config.group(1) if config else "?",
         openblas_coretype_env=os.environ.get("OPENBLAS_CORETYPE"),
         train_threads=args.train_threads, sample_threads=args.sample_threads,
         torch=torch.__version__, torch_import_s=round(import_s, 3), dtype="fp32")

    if args.probe_threads:
        probe(torch, model, args)
        return 0

    if args.train_steps > 0:
        torch.set_num_threads(args.train_threads)
        tokens, targets = train_data(torch, B, T, V)
        step = make_train_step(torch, model, tokens, targets, V)
        times, losses = time_train(step, args.train_warmup, args.train_steps)
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        med = statistics.median(times)
        emit(event="memory", peak_rss_bytes=rss)
        emit(event="train", tokens_per_step=B * T, step_s_median=med, step_s_min=min(times),
             step_s_max=max(times), tokens_per_s=B * T / med, threads=args.train_threads,
             first_loss=losses[0], last_loss=losses[-1])
    for SB, threads in zip(args.sample_batches, args.sample_threads):
        torch.set_num_threads(threads)
        times = time_sampling(torch, model, args, SB, args.sample_reps)
        med = statistics.median(times)
        emit(event="sample", batch=SB, prompt_len=args.prompt_len, new_tokens=args.new_tokens,
             seconds_median=med, tokens_per_s=SB * args.new_tokens / med,
             threads=threads)
    return 0


def probe(torch, model, args):
    """Each phase at 1 and 2 torch threads, alternating 1, 2, 1, 2 (after one
    untimed warm-up) so drift hits both; one thread_probe line per phase with
    the tokens/s of every timed step or call."""
    L, C, NH, ctx = SIZES[args.size]
    V, B, T = args.vocab, args.batch, ctx
    settings = (1, 2)
    if args.train_steps > 0:
        tokens, targets = train_data(torch, B, T, V)
        step = make_train_step(torch, model, tokens, targets, V)
        torch.set_num_threads(settings[0])
        time_train(step, max(args.train_warmup, 1), 0)
        rates = {n: [] for n in settings}
        for _ in range(args.train_steps):
            for n in settings:
                torch.set_num_threads(n)
                times, _ = time_train(step, 0, 1)
                rates[n].append(B * T / times[0])
        report_probe("train", rates)
    for SB in args.sample_batches:  # time_sampling warms up before each timed call
        rates = {n: [] for n in settings}
        for _ in range(args.sample_reps):
            for n in settings:
                torch.set_num_threads(n)
                times = time_sampling(torch, model, args, SB, 1)
                rates[n].append(SB * args.new_tokens / times[0])
        report_probe(f"sample{SB}", rates)


def report_probe(phase, rates):
    emit(event="thread_probe", phase=phase,
         tokens_per_s={str(n): statistics.median(r) for n, r in rates.items()},
         samples={str(n): r for n, r in rates.items()})


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
