#!/usr/bin/python3
"""Plain-PyTorch twin of build/llama-bench: the same Qwen3-0.6B-shaped model
(random weights, fp32), prompt prefill with logits of the last column only,
then N sampled tokens (temperature 1) with a preallocated KV cache. Same
JSON line as the C program.

    OPENBLAS_NUM_THREADS=2 /usr/bin/python3 bench/llama_torch.py --batch 1 --threads 1
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F


def rms(x, w, eps=1e-6):
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def rotate(x, cos, sin):
    h = x.shape[-1] // 2
    return x * cos + torch.cat((-x[..., h:], x[..., :h]), dim=-1) * sin


class Model:
    def __init__(self, L, V, C=1024, NH=16, NKV=8, hd=128, Fd=3072, maxT=64):
        g = torch.Generator().manual_seed(1)
        n = lambda *s: torch.randn(*s, generator=g) * 0.02
        self.L, self.NH, self.NKV, self.hd = L, NH, NKV, hd
        self.embed = n(V, C)
        self.layers = [dict(ln1=torch.ones(C), wqkv=n((NH + 2 * NKV) * hd, C), qn=torch.ones(hd),
                            kn=torch.ones(hd), wo=n(C, NH * hd), ln2=torch.ones(C),
                            wgu=n(2 * Fd, C), wd=n(C, Fd)) for _ in range(L)]
        self.norm = torch.ones(C)
        inv = 1.0 / (1e6 ** (torch.arange(0, hd, 2).float() / hd))
        f = torch.arange(maxT).float()[:, None] * inv[None]
        emb = torch.cat((f, f), -1)
        self.cos, self.sin = emb.cos(), emb.sin()

    def forward(self, tokens, t0, kc, vc):
        """tokens (B, n) at positions t0..t0+n-1; writes K/V into the caches
        (L, B, NKV, maxT, hd); returns last-column logits (B, V)."""
        B, n = tokens.shape
        NH, NKV, hd = self.NH, self.NKV, self.hd
        G = NH // NKV
        cos, sin = self.cos[t0:t0 + n], self.sin[t0:t0 + n]
        causal = torch.ones(n, t0 + n, dtype=torch.bool).tril(t0)
        x = self.embed[tokens]
        for l, p in enumerate(self.layers):
            qkv = F.linear(rms(x, p["ln1"]), p["wqkv"])
            q = qkv[..., :NH * hd].view(B, n, NH, hd)
            k = qkv[..., NH * hd:(NH + NKV) * hd].view(B, n, NKV, hd)
            v = qkv[..., (NH + NKV) * hd:].view(B, n, NKV, hd)
            q = rotate(rms(q, p["qn"]), cos[:, None], sin[:, None])
            k = rotate(rms(k, p["kn"]), cos[:, None], sin[:, None])
            kc[l, :, :, t0:t0 + n] = k.transpose(1, 2)
            vc[l, :, :, t0:t0 + n] = v.transpose(1, 2)
            K, Vv = kc[l, :, :, :t0 + n], vc[l, :, :, :t0 + n]  # (B, NKV, t, hd)
            qg = q.view(B, n, NKV, G, hd).permute(0, 2, 3, 1, 4)  # (B, NKV, G, n, hd)
            s = (qg @ K[:, :, None].transpose(-2, -1)) * hd ** -0.5
            s = s.masked_fill(~causal, float("-inf")).softmax(-1)
            y = (s @ Vv[:, :, None]).permute(0, 3, 1, 2, 4).reshape(B, n, NH * hd)
            x = x + F.linear(y, p["wo"])
            gu = F.linear(rms(x, p["ln2"]), p["wgu"])
            gate, up = gu.chunk(2, -1)
            x = x + F.linear(F.silu(gate) * up, p["wd"])
        return F.linear(rms(x[:, -1], self.norm), self.embed)


def main():
    ap = argparse.ArgumentParser()
    for k, v in dict(batch=1, prompt_len=32, new_tokens=16, layers=28, vocab=151936, threads=1,
                     reps=3).items():
        ap.add_argument("--" + k.replace("_", "-"), type=int, default=v)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    B, P, N = a.batch, a.prompt_len, a.new_tokens
    m = Model(a.layers, a.vocab, maxT=P + N)
    prompts = torch.tensor([(1103515245 * i + 12345) % (2 ** 32) % a.vocab
                            for i in range(B * P)]).view(B, P)
    pre, dec = [], []
    with torch.no_grad():
        for rep in range(a.reps + 1):
            kc = torch.empty(a.layers, B, 8, P + N, 128)
            vc = torch.empty_like(kc)
            t0 = time.perf_counter()
            logits = m.forward(prompts, 0, kc, vc)
            t1 = time.perf_counter()
            for s in range(N):
                nxt = torch.multinomial(torch.softmax(logits, -1), 1)
                if s < N - 1:
                    logits = m.forward(nxt, P + s, kc, vc)
            t2 = time.perf_counter()
            if rep > 0:
                pre.append(t1 - t0)
                dec.append(t2 - t1)
    pf, dc = sorted(pre)[len(pre) // 2], sorted(dec)[len(dec) // 2]
    print(json.dumps(dict(impl="torch", batch=B, prompt_len=P, new_tokens=N, layers=a.layers,
                          vocab=a.vocab, threads=a.threads, reps=a.reps, prefill_s=round(pf, 4),
                          prefill_tok_s=round(B * P / pf, 1), decode_s=round(dc, 4),
                          decode_tok_s=round(B * N / dc, 2), torch=torch.__version__)))


if __name__ == "__main__":
    main()
