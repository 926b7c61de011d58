#!/usr/bin/python3
"""Independent PyTorch reference for engine/lora.c (LoRA on engine/gpt2.c).

The tiny GPT-2 of gpt2_reference.py (its modules, seeded the same way but
with another seed) gets PEFT-style LoRA on the four projections, written
here in plain torch (the peft package is not needed):

    y = base(x) + (alpha / r) * lora_B(lora_A(x)),  lora_A: Linear(in, r),
    lora_B: Linear(r, out), no bias, no dropout

with A from PEFT's init (kaiming_uniform_(a=sqrt(5))) and B random (not
PEFT's zeros, so every gradient carries signal). The base is frozen; the
scalar head is trained with the adapters. Writes:

  tests/fixtures/gpt2_tiny_lora.safetensors
    param.<name>           base weights, our layout (as gpt2_tiny.safetensors)
    lora.<target>.A        (L, r, in) stacked over layers; target is one of
    lora.<target>.B        (L, out, r)  c_attn, attn_c_proj, mlp_c_fc, mlp_c_proj
    input.*                as gpt2_tiny.safetensors
    out.logits, out.values with the adapters
    out.base_logits        the same batch with the adapters disabled
    grad.lora.<target>.A/B ∂(loss + Σ value_probe ⊙ values)/∂adapter
    grad.headw, grad.headb the scalar head's gradients
    adamw.losses           the loss before each of 8 AdamW steps on adapters +
                           head only (lr 1e-2, betas (0.9, 0.95), eps 1e-8,
                           weight decay 0)
    metadata: r, alpha and the model config
  tests/fixtures/gpt2_tiny_lora_peft.safetensors
    the adapters alone under PEFT's names for GPT2LMHeadModel
    (base_model.model.transformer.h.{i}.attn.c_attn.lora_A.weight, ...), as
    PEFT's save_pretrained writes adapter_model.safetensors

Run by hand (never by make test), with Debian's torch:
    /usr/bin/python3 tests/reference/gpt2_lora_reference.py
"""
import math
import os
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gpt2_reference as ref  # noqa: E402  (the model and the safetensors writer)

R, ALPHA = 3, 5.0
SEED = 4321
# our target name, the block's module attribute, the PEFT module path
TARGETS = [("c_attn", "c_attn", "attn.c_attn"), ("attn_c_proj", "attn_proj", "attn.c_proj"),
           ("mlp_c_fc", "c_fc", "mlp.c_fc"), ("mlp_c_proj", "mlp_proj", "mlp.c_proj")]


class LoraLinear(nn.Module):
    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))  # PEFT's default init
        self.scaling = alpha / r
        self.enabled = True

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + self.lora_B(self.lora_A(x)) * self.scaling
        return y


def main(out_dir):
    torch.manual_seed(SEED)
    c = ref.CONFIG
    model = ref.GPT(c["vocab_size"], c["max_seq_len"], c["n_layer"], c["n_head"], c["d_model"])
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
        for b in model.h:
            b.ln_1.weight.add_(1.0)
            b.ln_2.weight.add_(1.0)
        model.ln_f.weight.add_(1.0)
    base_params = [(n, t.detach().clone()) for n, t in ref.our_params(model)]
    for p in model.parameters():
        p.requires_grad_(False)
    loras = []
    for b in model.h:
        for _, attr, _ in TARGETS:
            m = LoraLinear(getattr(b, attr), R, ALPHA)
            with torch.no_grad():
                m.lora_B.weight.normal_(0.0, 0.3)
            setattr(b, attr, m)
            loras.append(m)
    model.head.weight.requires_grad_(True)
    model.head.bias.requires_grad_(True)

    V, B, T = c["vocab_size"], ref.B, ref.T
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    attn_mask = torch.ones(B, T, dtype=torch.long)
    attn_mask[1, :3] = 0
    attn_mask[2, 7:] = 0
    positions = (attn_mask.cumsum(-1) - 1).clamp(min=0)
    loss_mask = attn_mask.clone()
    loss_mask[0, :2] = 0
    value_probe = torch.randn(B, T) * attn_mask

    def ce_of(logits):
        lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
        return -(lp * loss_mask).sum() / loss_mask.sum()

    def lora_tensors(which, grad=False):
        """(name, (L, ...) stack over layers) of every target's A or B (or their grads)."""
        pick = lambda b, attr: getattr(getattr(b, attr), "lora_" + which).weight
        return [(f"lora.{name}.{which}",
                 torch.stack([pick(b, attr).grad if grad else pick(b, attr) for b in model.h]))
                for name, attr, _ in TARGETS]
    init_A = [(n, t.detach().clone()) for n, t in lora_tensors("A")]
    init_B = [(n, t.detach().clone()) for n, t in lora_tensors("B")]
    head0 = [("param.headw", model.head.weight.detach().reshape(-1).clone()),
             ("param.headb", model.head.bias.detach().clone())]

    logits, values = model(tokens, positions, attn_mask)
    ce = ce_of(logits)
    (ce + (values * value_probe).sum()).backward()
    grads = [("grad." + n, t.detach().clone()) for n, t in lora_tensors("A", grad=True)]
    grads += [("grad." + n, t.detach().clone()) for n, t in lora_tensors("B", grad=True)]
    grads += [("grad.headw", model.head.weight.grad.reshape(-1).clone()),
              ("grad.headb", model.head.bias.grad.clone())]
    for m in loras:
        m.enabled = False
    with torch.no_grad():
        base_logits, _ = model(tokens, positions, attn_mask)
    for m in loras:
        m.enabled = True

    trainable = [p for p in model.parameters() if p.requires_grad]
    assert len(trainable) == 2 * len(loras) + 2
    opt = torch.optim.AdamW(trainable, lr=1e-2, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.0)
    losses = []
    for _ in range(8):
        opt.zero_grad()
        lg, _ = model(tokens, positions, attn_mask)
        loss = ce_of(lg)
        losses.append(loss.item())
        loss.backward()
        opt.step()

    tensors = [(n, t) for n, t in base_params if not n.startswith("head")] + head0
    tensors = [(n if n.startswith("param.") else "param." + n, t) for n, t in tensors]
    tensors += init_A + init_B
    tensors += [("input.tokens", tokens.float()), ("input.targets", targets.float()),
                ("input.positions", positions.float()), ("input.attn_mask", attn_mask.float()),
                ("input.loss_mask", loss_mask.float()), ("input.value_probe", value_probe)]
    tensors += [("out.logits", logits), ("out.values", values), ("out.base_logits", base_logits),
                ("out.loss", ce.reshape(1))]
    tensors += grads
    tensors += [("adamw.losses", torch.tensor(losses))]
    meta = {k: str(v) for k, v in c.items()}
    meta.update(B=str(B), T=str(T), seed=str(SEED), r=str(R), alpha=str(ALPHA),
                torch=torch.__version__)
    path = os.path.join(out_dir, "gpt2_tiny_lora.safetensors")
    ref.write_safetensors(path, tensors, meta)

    # The initial adapters as PEFT names them in adapter_model.safetensors.
    peft = []
    for i in range(c["n_layer"]):
        for k, (_, _, module) in enumerate(TARGETS):
            peft.append((f"base_model.model.transformer.h.{i}.{module}.lora_A.weight",
                         init_A[k][1][i]))
            peft.append((f"base_model.model.transformer.h.{i}.{module}.lora_B.weight",
                         init_B[k][1][i]))
    ref.write_safetensors(os.path.join(out_dir, "gpt2_tiny_lora_peft.safetensors"), peft,
                          {"format": "pt", "lora_alpha": str(ALPHA)})
    print(f"wrote {path}: loss {ce.item():.6f}, AdamW losses {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures")
