#!/usr/bin/python3
"""Independent PyTorch reference for engine/gpt2.c.

Builds a tiny GPT-2-family model from a seed with PyTorch's own modules
(nn.Linear, nn.LayerNorm, nn.Embedding, F.gelu(approximate="tanh")), runs a
padded batch through it and writes, as one safetensors file:

  param.<name>     the weights (our layout: Linear weights (out, in))
  input.*          tokens, targets, positions, attention mask, loss mask,
                   value probe (ints stored as F32: exact for these sizes)
  out.logits       (B, T, V)
  out.values       (B, T) scalar head
  out.logp         (B, T) log p(target) at every position
  out.entropy      (B, T) next-token entropy
  out.loss         masked mean cross-entropy
  grad.<name>      ∂(loss + Σ value_probe ⊙ values)/∂param
  adamw.losses     the loss before each of 10 AdamW steps (lr 1e-2, betas
                   (0.9, 0.95), eps 1e-8, weight decay 0.1 on matrices only)

Run by hand (never by make test), with Debian's torch:
    /usr/bin/python3 tests/reference/gpt2_reference.py tests/fixtures/gpt2_tiny.safetensors
"""
import json
import math
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

CONFIG = dict(vocab_size=67, max_seq_len=16, n_layer=2, n_head=2, d_model=16)
B, T = 3, 9
SEED = 1234


class Block(nn.Module):
    def __init__(self, C, NH):
        super().__init__()
        self.NH = NH
        self.ln_1 = nn.LayerNorm(C, eps=1e-5)
        self.c_attn = nn.Linear(C, 3 * C)
        self.attn_proj = nn.Linear(C, C)
        self.ln_2 = nn.LayerNorm(C, eps=1e-5)
        self.c_fc = nn.Linear(C, 4 * C)
        self.mlp_proj = nn.Linear(4 * C, C)

    def attention(self, x, attn_mask):
        Bb, Tt, C = x.shape
        hs = C // self.NH
        q, k, v = self.c_attn(x).split(C, dim=2)
        q = q.view(Bb, Tt, self.NH, hs).transpose(1, 2)
        k = k.view(Bb, Tt, self.NH, hs).transpose(1, 2)
        v = v.view(Bb, Tt, self.NH, hs).transpose(1, 2)
        scores = (q @ k.transpose(-2, -1)) / math.sqrt(hs)
        causal = torch.tril(torch.ones(Tt, Tt, dtype=torch.bool))
        visible = causal[None, None] & attn_mask[:, None, None, :].bool()
        scores = scores.masked_fill(~visible, float("-inf"))
        any_visible = visible.any(dim=-1, keepdim=True)
        # A query that sees no key (a left-pad position) outputs zeros.
        att = torch.where(any_visible, torch.softmax(scores.masked_fill(~any_visible, 0.0), -1),
                          torch.zeros_like(scores))
        y = (att @ v).transpose(1, 2).contiguous().view(Bb, Tt, C)
        return self.attn_proj(y)

    def forward(self, x, attn_mask):
        x = x + self.attention(self.ln_1(x), attn_mask)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, V, maxT, L, NH, C):
        super().__init__()
        self.wte = nn.Embedding(V, C)
        self.wpe = nn.Embedding(maxT, C)
        self.h = nn.ModuleList([Block(C, NH) for _ in range(L)])
        self.ln_f = nn.LayerNorm(C, eps=1e-5)
        self.head = nn.Linear(C, 1)

    def forward(self, tokens, positions, attn_mask):
        x = self.wte(tokens) + self.wpe(positions)
        for block in self.h:
            x = block(x, attn_mask)
        x = self.ln_f(x)
        logits = x @ self.wte.weight.t()
        values = self.head(x).squeeze(-1)
        return logits, values


def our_params(model):
    """Our flat layout's tensors, in engine/gpt2.h order, stacked over layers."""
    h = model.h
    stack = lambda f: torch.stack([f(b) for b in h])
    return [
        ("wte", model.wte.weight), ("wpe", model.wpe.weight),
        ("ln1w", stack(lambda b: b.ln_1.weight)), ("ln1b", stack(lambda b: b.ln_1.bias)),
        ("qkvw", stack(lambda b: b.c_attn.weight)), ("qkvb", stack(lambda b: b.c_attn.bias)),
        ("attprojw", stack(lambda b: b.attn_proj.weight)),
        ("attprojb", stack(lambda b: b.attn_proj.bias)),
        ("ln2w", stack(lambda b: b.ln_2.weight)), ("ln2b", stack(lambda b: b.ln_2.bias)),
        ("fcw", stack(lambda b: b.c_fc.weight)), ("fcb", stack(lambda b: b.c_fc.bias)),
        ("fcprojw", stack(lambda b: b.mlp_proj.weight)),
        ("fcprojb", stack(lambda b: b.mlp_proj.bias)),
        ("lnfw", model.ln_f.weight), ("lnfb", model.ln_f.bias),
        ("headw", model.head.weight.reshape(-1)), ("headb", model.head.bias),
    ]


def our_grads(model):
    h = model.h
    stack = lambda f: torch.stack([f(b).grad for b in h])
    return [
        ("wte", model.wte.weight.grad), ("wpe", model.wpe.weight.grad),
        ("ln1w", stack(lambda b: b.ln_1.weight)), ("ln1b", stack(lambda b: b.ln_1.bias)),
        ("qkvw", stack(lambda b: b.c_attn.weight)), ("qkvb", stack(lambda b: b.c_attn.bias)),
        ("attprojw", stack(lambda b: b.attn_proj.weight)),
        ("attprojb", stack(lambda b: b.attn_proj.bias)),
        ("ln2w", stack(lambda b: b.ln_2.weight)), ("ln2b", stack(lambda b: b.ln_2.bias)),
        ("fcw", stack(lambda b: b.c_fc.weight)), ("fcb", stack(lambda b: b.c_fc.bias)),
        ("fcprojw", stack(lambda b: b.mlp_proj.weight)),
        ("fcprojb", stack(lambda b: b.mlp_proj.bias)),
        ("lnfw", model.ln_f.weight.grad), ("lnfb", model.ln_f.bias.grad),
        ("headw", model.head.weight.grad.reshape(-1)), ("headb", model.head.bias.grad),
    ]


def hf_tensors(model):
    """The same weights as Hugging Face's GPT2LMHeadModel names them, with its
    Conv1D layout (in, out) — written independently of engine/gpt2_checkpoint.c,
    so the C loader's names and transposes are checked, not assumed. The
    prefix-less names of the original openai-community/gpt2 upload are used
    for the first block, "transformer."-prefixed ones elsewhere."""
    out = [("transformer.wte.weight", model.wte.weight),
           ("transformer.wpe.weight", model.wpe.weight)]
    for i, b in enumerate(model.h):
        p = f"h.{i}." if i == 0 else f"transformer.h.{i}."
        out += [(p + "ln_1.weight", b.ln_1.weight), (p + "ln_1.bias", b.ln_1.bias),
                (p + "attn.c_attn.weight", b.c_attn.weight.t()),
                (p + "attn.c_attn.bias", b.c_attn.bias),
                (p + "attn.c_proj.weight", b.attn_proj.weight.t()),
                (p + "attn.c_proj.bias", b.attn_proj.bias),
                (p + "ln_2.weight", b.ln_2.weight), (p + "ln_2.bias", b.ln_2.bias),
                (p + "mlp.c_fc.weight", b.c_fc.weight.t()), (p + "mlp.c_fc.bias", b.c_fc.bias),
                (p + "mlp.c_proj.weight", b.mlp_proj.weight.t()),
                (p + "mlp.c_proj.bias", b.mlp_proj.bias),
                (p + "attn.bias", torch.tril(torch.ones(1, 1, 16, 16)))]  # old exports' mask buffer
    out += [("transformer.ln_f.weight", model.ln_f.weight),
            ("transformer.ln_f.bias", model.ln_f.bias),
            ("score.weight", model.head.weight), ("score.bias", model.head.bias)]
    return out


def write_safetensors(path, tensors, metadata):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in tensors:
        data = t.detach().to(torch.float32).contiguous().numpy().tobytes()
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


def main(path):
    torch.manual_seed(SEED)
    c = CONFIG
    model = GPT(c["vocab_size"], c["max_seq_len"], c["n_layer"], c["n_head"], c["d_model"])
    with torch.no_grad():  # O(1) weights so every path carries signal
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        for b in model.h:
            b.ln_1.weight.add_(1.0)
            b.ln_2.weight.add_(1.0)
        model.ln_f.weight.add_(1.0)

    V = c["vocab_size"]
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    attn_mask = torch.ones(B, T, dtype=torch.long)
    attn_mask[1, :3] = 0  # row 1 left-padded by 3
    attn_mask[2, 7:] = 0  # row 2 right-padded by 2
    positions = (attn_mask.cumsum(-1) - 1).clamp(min=0)
    loss_mask = attn_mask.clone()
    loss_mask[0, :2] = 0  # a prompt: no loss on its tokens
    value_probe = torch.randn(B, T) * attn_mask

    logits, values = model(tokens, positions, attn_mask)
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    ce = -(logp * loss_mask).sum() / loss_mask.sum()
    total = ce + (values * value_probe).sum()
    total.backward()
    grads = [(n, g.detach().clone()) for n, g in our_grads(model)]  # before zero_grad reuses them
    params_before = [(n, t.detach().clone()) for n, t in our_params(model)]
    hf_before = [(n, t.detach().clone()) for n, t in hf_tensors(model)]

    # 10 AdamW steps on the LM loss alone; decay only matrices (ndim >= 2).
    # The scalar head's (1, C) weight is a vector in our layout: not decayed.
    model.zero_grad()
    is_matrix = lambda n, p: p.dim() >= 2 and not n.startswith("head.")
    decay = [p for n, p in model.named_parameters() if is_matrix(n, p)]
    no_decay = [p for n, p in model.named_parameters() if not is_matrix(n, p)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        lg, _ = model(tokens, positions, attn_mask)
        lp = torch.log_softmax(lg, -1).gather(-1, targets[..., None]).squeeze(-1)
        loss = -(lp * loss_mask).sum() / loss_mask.sum()
        losses.append(loss.item())
        loss.backward()
        opt.step()

    tensors = [("param." + n, t) for n, t in params_before]
    tensors += [("input.tokens", tokens.float()), ("input.targets", targets.float()),
                ("input.positions", positions.float()), ("input.attn_mask", attn_mask.float()),
                ("input.loss_mask", loss_mask.float()), ("input.value_probe", value_probe)]
    tensors += [("out.logits", logits), ("out.values", values), ("out.logp", logp),
                ("out.entropy", entropy), ("out.loss", ce.reshape(1))]
    tensors += [("grad." + n, t) for n, t in grads]
    tensors += [("adamw.losses", torch.tensor(losses))]
    meta = {k: str(v) for k, v in CONFIG.items()}
    meta.update(B=str(B), T=str(T), seed=str(SEED), torch=torch.__version__)
    write_safetensors(path, tensors, meta)
    hf_path = path.replace(".safetensors", "_hf.safetensors")
    hf_meta = {"format": "pt", "vocab_size": str(c["vocab_size"]),
               "n_positions": str(c["max_seq_len"]), "n_layer": str(c["n_layer"]),
               "n_head": str(c["n_head"]), "n_embd": str(c["d_model"])}
    write_safetensors(hf_path, hf_before, hf_meta)
    print(f"wrote {path}: loss {ce.item():.6f}, AdamW losses {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/gpt2_tiny.safetensors")
