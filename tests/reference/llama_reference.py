#!/usr/bin/python3
"""Independent plain-PyTorch reference for engine/llama.c (no transformers).

The Llama / Qwen2 / Qwen3 / Mistral block written from the equations of
transformers' modeling_llama.py, modeling_qwen2.py and modeling_qwen3.py
(RMSNorm, rotate-half RoPE with the llama3 rope_scaling rule, grouped-query
attention by repeat_kv, SwiGLU MLP, q/k/v bias, per-head q/k RMSNorm, tied or
untied LM head). For each config below it writes a tiny random model as a
Hugging Face directory, IN THE LAYOUT transformers' save_pretrained writes:

  tests/fixtures/llama/<name>/config.json             real config keys
  tests/fixtures/llama/<name>/generation_config.json  (llama only)
  tests/fixtures/llama/<name>/model.safetensors       {"format": "pt"} metadata only

qwen3_lora/ (a PEFT adapter directory, r 4 alpha 8 on all seven projections,
with qwen3_lora.expect.safetensors: logits, loss, adapter gradients, AdamW),
plus qwen3_bf16/ (the same weights stored BF16; the qwen3 weights are rounded
to bfloat16 first so both files hold the same values) and qwen3_sharded/
(model-0000{1,2}-of-00002.safetensors + model.safetensors.index.json), and
for each config tests/fixtures/llama/<name>.expect.safetensors with

  input.*        tokens, targets, positions, attn_mask, loss_mask (as F32)
  out.logits     (B, T, V)
  out.logp       (B, T) log p(target);  out.entropy (B, T)
  out.loss       masked mean cross-entropy
  grad.<hf name> ∂loss/∂param (a tied embedding: the sum of both uses)
  adamw.losses   loss before each of 10 AdamW steps (lr 1e-2, betas
                 (0.9, 0.95), eps 1e-8, weight decay 0.1 on ndim >= 2)
  adamw.<hf name> every parameter after those 10 steps

Run by hand (never by make test), with Debian's torch:
    /usr/bin/python3 tests/reference/llama_reference.py tests/fixtures/llama
"""
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T = 3, 7
SEED = 4321

# transformers' config.json for each family (keys as its configs write them)
CONFIGS = {
    "llama": {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 1, "eos_token_id": [2, 3], "head_dim": 6,
        "hidden_act": "silu", "hidden_size": 24, "initializer_range": 0.02,
        "intermediate_size": 40, "max_position_embeddings": 512, "mlp_bias": False,
        "model_type": "llama", "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        # wavelengths 6.3, 135 and 2920 against 256/4 and 256/1: one
        # frequency of each llama3 branch (kept, interpolated, divided)
        "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                         "original_max_position_embeddings": 256, "rope_type": "llama3"},
        "rope_theta": 10000.0, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": "4.51.0", "use_cache": True, "vocab_size": 48,
    },
    "qwen2": {
        "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 5,
        "eos_token_id": 7, "hidden_act": "silu", "hidden_size": 16,
        "initializer_range": 0.02, "intermediate_size": 32, "max_position_embeddings": 128,
        "max_window_layers": 2, "model_type": "qwen2", "num_attention_heads": 4,
        "num_hidden_layers": 2, "num_key_value_heads": 1, "rms_norm_eps": 1e-06,
        "rope_scaling": None, "rope_theta": 1000000.0, "sliding_window": 32768,
        "tie_word_embeddings": True, "torch_dtype": "float32",
        "transformers_version": "4.51.0", "use_cache": True, "use_sliding_window": False,
        "vocab_size": 48,
    },
    "qwen3": {
        "architectures": ["Qwen3ForCausalLM"], "attention_bias": False,
        "attention_dropout": 0.0, "bos_token_id": 5, "eos_token_id": 7, "head_dim": 8,
        "hidden_act": "silu", "hidden_size": 16, "initializer_range": 0.02,
        "intermediate_size": 32, "max_position_embeddings": 128, "max_window_layers": 2,
        "model_type": "qwen3", "num_attention_heads": 4, "num_hidden_layers": 2,
        "num_key_value_heads": 2, "rms_norm_eps": 1e-06, "rope_scaling": None,
        "rope_theta": 1000000, "sliding_window": None, "tie_word_embeddings": True,
        "torch_dtype": "bfloat16", "transformers_version": "4.51.0", "use_cache": True,
        "use_sliding_window": False, "vocab_size": 48,
    },
    "mistral": {
        "architectures": ["MistralForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 1,
        "eos_token_id": 2, "head_dim": 4, "hidden_act": "silu", "hidden_size": 16,
        "initializer_range": 0.02, "intermediate_size": 24, "max_position_embeddings": 64,
        "model_type": "mistral", "num_attention_heads": 4, "num_hidden_layers": 1,
        "num_key_value_heads": 4, "rms_norm_eps": 1e-05, "rope_theta": 10000.0,
        "sliding_window": None, "tie_word_embeddings": False, "torch_dtype": "float32",
        "transformers_version": "4.51.0", "use_cache": True, "vocab_size": 48,
    },
}


class RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        var = x.pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(var + self.eps))


def rope_inv_freq(c, hd):
    """_compute_default_rope_parameters, then _compute_llama3_parameters."""
    base = c.get("rope_theta", 10000.0)
    inv_freq = 1.0 / (base ** (torch.arange(0, hd, 2, dtype=torch.int64).float() / hd))
    rs = c.get("rope_scaling")
    if rs and rs.get("rope_type", rs.get("type")) == "llama3":
        factor, low, high = rs["factor"], rs["low_freq_factor"], rs["high_freq_factor"]
        old = rs["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv_freq
        llama = torch.where(wavelen > low_wavelen, inv_freq / factor, inv_freq)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * llama / factor + smooth * llama
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv_freq = torch.where(medium, smoothed, llama)
    return inv_freq


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


class Attention(nn.Module):
    def __init__(self, c, hd):
        super().__init__()
        C, NH, NKV = c["hidden_size"], c["num_attention_heads"], c["num_key_value_heads"]
        qkv_bias = c["model_type"] == "qwen2" or c.get("attention_bias", False)
        o_bias = c["model_type"] != "qwen2" and c.get("attention_bias", False)
        self.NH, self.NKV, self.hd = NH, NKV, hd
        self.q_proj = nn.Linear(C, NH * hd, bias=qkv_bias)
        self.k_proj = nn.Linear(C, NKV * hd, bias=qkv_bias)
        self.v_proj = nn.Linear(C, NKV * hd, bias=qkv_bias)
        self.o_proj = nn.Linear(NH * hd, C, bias=o_bias)
        self.qk_norm = c["model_type"] == "qwen3"
        if self.qk_norm:
            self.q_norm = RMSNorm(hd, c["rms_norm_eps"])
            self.k_norm = RMSNorm(hd, c["rms_norm_eps"])

    def forward(self, x, cos, sin, attn_mask):
        Bb, Tt, _ = x.shape
        q = self.q_proj(x).view(Bb, Tt, self.NH, self.hd)
        k = self.k_proj(x).view(Bb, Tt, self.NKV, self.hd)
        v = self.v_proj(x).view(Bb, Tt, self.NKV, self.hd)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
        cos, sin = cos[:, None], sin[:, None]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        group = self.NH // self.NKV  # repeat_kv
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = (q @ k.transpose(-2, -1)) * self.hd ** -0.5
        causal = torch.tril(torch.ones(Tt, Tt, dtype=torch.bool))
        visible = causal[None, None] & attn_mask[:, None, None, :].bool()
        scores = scores.masked_fill(~visible, float("-inf"))
        any_visible = visible.any(dim=-1, keepdim=True)
        # a query that sees no key (a left-pad position) outputs zeros
        att = torch.where(any_visible, torch.softmax(scores.masked_fill(~any_visible, 0.0), -1),
                          torch.zeros_like(scores))
        y = (att @ v).transpose(1, 2).reshape(Bb, Tt, self.NH * self.hd)
        return self.o_proj(y)


class MLP(nn.Module):
    def __init__(self, c):
        super().__init__()
        C, Fd = c["hidden_size"], c["intermediate_size"]
        self.gate_proj = nn.Linear(C, Fd, bias=False)
        self.up_proj = nn.Linear(C, Fd, bias=False)
        self.down_proj = nn.Linear(Fd, C, bias=False)

    def forward(self, x):
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Layer(nn.Module):
    def __init__(self, c, hd):
        super().__init__()
        self.self_attn = Attention(c, hd)
        self.mlp = MLP(c)
        self.input_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])
        self.post_attention_layernorm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])

    def forward(self, x, cos, sin, attn_mask):
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, attn_mask)
        return x + self.mlp(self.post_attention_layernorm(x))


class Inner(nn.Module):
    def __init__(self, c, hd):
        super().__init__()
        self.embed_tokens = nn.Embedding(c["vocab_size"], c["hidden_size"])
        self.layers = nn.ModuleList([Layer(c, hd) for _ in range(c["num_hidden_layers"])])
        self.norm = RMSNorm(c["hidden_size"], c["rms_norm_eps"])


class CausalLM(nn.Module):
    """named_parameters() gives transformers' state-dict names."""

    def __init__(self, c):
        super().__init__()
        self.c = c
        self.hd = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
        self.model = Inner(c, self.hd)
        self.tied = c["tie_word_embeddings"]
        if not self.tied:
            self.lm_head = nn.Linear(c["hidden_size"], c["vocab_size"], bias=False)
        self.register_buffer("inv_freq", rope_inv_freq(c, self.hd), persistent=False)

    def forward(self, tokens, positions, attn_mask):
        freqs = positions[..., None].float() * self.inv_freq[None, None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        cos, sin = emb.cos(), emb.sin()
        x = self.model.embed_tokens(tokens)
        for layer in self.model.layers:
            x = layer(x, cos, sin, attn_mask)
        x = self.model.norm(x)
        head = self.model.embed_tokens.weight if self.tied else self.lm_head.weight
        return x @ head.t()


# ---- safetensors as transformers writes it -----------------------------------------

DTYPES = {torch.float32: "F32", torch.bfloat16: "BF16"}


def tensor_bytes(t):
    t = t.detach().contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()
    return t.numpy().tobytes()


def write_safetensors(path, tensors, metadata):
    """The safetensors library's layout: tensors sorted by name (one dtype),
    data in that order, header padded with spaces to 8 bytes."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name, t in sorted(tensors, key=lambda nt: nt[0]):
        data = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def write_json(path, obj):
    with open(path, "w") as f:  # PretrainedConfig.to_json_string
        f.write(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_model_dir(d, c, state, dtype=torch.float32, shards=1, generation=None):
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "config.json"), c)
    if generation is not None:
        write_json(os.path.join(d, "generation_config.json"), generation)
    items = [(n, t.detach().to(dtype)) for n, t in state]
    if shards == 1:
        write_safetensors(os.path.join(d, "model.safetensors"), items, {"format": "pt"})
        return
    # shard_checkpoint: consecutive state-dict entries per shard
    per = math.ceil(len(items) / shards)
    weight_map, total = {}, 0
    for s in range(shards):
        fname = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = items[s * per:(s + 1) * per]
        write_safetensors(os.path.join(d, fname), part, {"format": "pt"})
        for n, t in part:
            weight_map[n] = fname
            total += t.numel() * t.element_size()
    write_json(os.path.join(d, "model.safetensors.index.json"),
               {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))})


def build_case(c, bf16_weights):
    """The seeded model and batch of a config (the LoRA case rebuilds qwen3's)."""
    torch.manual_seed(SEED)
    model = CausalLM(c)
    with torch.no_grad():  # O(1) weights so every path carries signal
        for n, p in model.named_parameters():
            p.normal_(0.0, 0.3)
            if n.endswith("norm.weight"):
                p.add_(1.0)
            if bf16_weights:
                p.copy_(p.to(torch.bfloat16).float())
    V = c["vocab_size"]
    tokens = torch.randint(0, V, (B, T))
    targets = torch.randint(0, V, (B, T))
    attn_mask = torch.ones(B, T, dtype=torch.long)
    attn_mask[1, :2] = 0  # row 1 left-padded by 2
    attn_mask[2, 6:] = 0  # row 2 right-padded by 1
    positions = (attn_mask.cumsum(-1) - 1).clamp(min=0)
    loss_mask = attn_mask.clone()
    loss_mask[0, :2] = 0  # a prompt: no loss on its tokens
    return model, (tokens, targets, positions, attn_mask, loss_mask)


def masked_ce(logits, targets, loss_mask):
    lp = torch.log_softmax(logits, -1).gather(-1, targets[..., None]).squeeze(-1)
    return -(lp * loss_mask).sum() / loss_mask.sum()


def adamw_steps(model, params, batch):
    """10 AdamW steps (lr 1e-2, betas (0.9, 0.95), eps 1e-8, weight decay 0.1
    on parameters with ndim >= 2); returns the loss before each."""
    tokens, targets, positions, attn_mask, loss_mask = batch
    decay = [p for _, p in params if p.dim() >= 2]
    no_decay = [p for _, p in params if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=1e-2, betas=(0.9, 0.95), eps=1e-8)
    losses = []
    for _ in range(10):
        opt.zero_grad()
        step_loss = masked_ce(model(tokens, positions, attn_mask), targets, loss_mask)
        losses.append(step_loss.item())
        step_loss.backward()
        opt.step()
    return losses


def input_tensors(batch):
    names = ["tokens", "targets", "positions", "attn_mask", "loss_mask"]
    return [("input." + n, t.float()) for n, t in zip(names, batch)]


def make_case(out_dir, name, c, bf16_weights=False):
    model, batch = build_case(c, bf16_weights)
    tokens, targets, positions, attn_mask, loss_mask = batch
    state = [(n, p.detach().clone()) for n, p in model.named_parameters()]
    logits = model(tokens, positions, attn_mask)
    logp_all = torch.log_softmax(logits, -1)
    logp = logp_all.gather(-1, targets[..., None]).squeeze(-1)
    entropy = -(logp_all.exp() * logp_all).sum(-1)
    loss = -(logp * loss_mask).sum() / loss_mask.sum()
    loss.backward()
    grads = [("grad." + n, p.grad.detach().clone()) for n, p in model.named_parameters()]

    model.zero_grad()
    losses = adamw_steps(model, list(model.named_parameters()), batch)
    after = [("adamw." + n, p.detach().clone()) for n, p in model.named_parameters()]

    generation = None
    if name == "llama":
        generation = {"bos_token_id": 1, "eos_token_id": [2, 3],
                      "transformers_version": "4.51.0"}
    write_model_dir(os.path.join(out_dir, name), c, state, generation=generation)
    if name == "qwen3":
        write_model_dir(os.path.join(out_dir, "qwen3_bf16"), c, state, dtype=torch.bfloat16)
        write_model_dir(os.path.join(out_dir, "qwen3_sharded"), c, state, shards=2)
    tensors = input_tensors(batch)
    tensors += [("out.logits", logits.detach()), ("out.logp", logp.detach()),
                ("out.entropy", entropy.detach()), ("out.loss", loss.detach().reshape(1)),
                ("adamw.losses", torch.tensor(losses))]
    tensors += grads + after
    meta = {"B": str(B), "T": str(T), "seed": str(SEED), "torch": torch.__version__}
    write_safetensors(os.path.join(out_dir, name + ".expect.safetensors"), tensors, meta)
    print(f"{name}: loss {loss.item():.6f}, AdamW {losses[0]:.4f} -> {losses[-1]:.4f}")


class LoRALinear(nn.Module):
    """PEFT's LoRA Linear: base(x) + (alpha / r) · lora_B(lora_A(x)), base frozen."""

    def __init__(self, base, r, alpha):
        super().__init__()
        self.base = base
        self.scaling = alpha / r
        bound = 1.0 / math.sqrt(base.in_features)
        self.lora_A = nn.Parameter(torch.empty(r, base.in_features).uniform_(-bound, bound))
        # PEFT starts B at zero; a trained adapter is not, and B = 0 would hide
        # every path through A
        self.lora_B = nn.Parameter(torch.randn(base.out_features, r) * 0.3)

    def forward(self, x):
        return self.base(x) + self.scaling * (x @ self.lora_A.t()) @ self.lora_B.t()


LORA_TARGETS = [("self_attn", "q_proj"), ("self_attn", "k_proj"), ("self_attn", "v_proj"),
                ("self_attn", "o_proj"), ("mlp", "gate_proj"), ("mlp", "up_proj"),
                ("mlp", "down_proj")]


def make_lora_case(out_dir, r=4, alpha=8.0):
    """qwen3's model and batch with adapters on all seven projections."""
    model, batch = build_case(CONFIGS["qwen3"], True)
    tokens, targets, positions, attn_mask, loss_mask = batch
    for p in model.parameters():
        p.requires_grad_(False)
    adapters = []  # (PEFT name prefix, LoRALinear)
    for i, layer in enumerate(model.model.layers):
        for parent, proj in LORA_TARGETS:
            owner = getattr(layer, parent)
            lora = LoRALinear(getattr(owner, proj), r, alpha)
            setattr(owner, proj, lora)
            adapters.append((f"base_model.model.model.layers.{i}.{parent}.{proj}", lora))
    params = []
    for prefix, lora in adapters:
        params += [(prefix + ".lora_A.weight", lora.lora_A), (prefix + ".lora_B.weight", lora.lora_B)]
    state = [(n, p.detach().clone()) for n, p in params]
    logits = model(tokens, positions, attn_mask)
    loss = masked_ce(logits, targets, loss_mask)
    loss.backward()
    grads = [("grad." + n, p.grad.detach().clone()) for n, p in params]
    losses = adamw_steps(model, params, batch)
    after = [("adamw." + n, p.detach().clone()) for n, p in params]
    d = os.path.join(out_dir, "qwen3_lora")
    os.makedirs(d, exist_ok=True)
    write_json(os.path.join(d, "adapter_config.json"), {
        "alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": "qwen3",
        "bias": "none", "fan_in_fan_out": False, "inference_mode": True,
        "init_lora_weights": True, "layers_pattern": None, "layers_to_transform": None,
        "lora_alpha": alpha, "lora_dropout": 0.0, "modules_to_save": None, "peft_type": "LORA",
        "r": r, "rank_pattern": {}, "revision": None,
        "target_modules": sorted(p for _, p in LORA_TARGETS), "task_type": "CAUSAL_LM",
        "use_dora": False, "use_rslora": False})
    write_safetensors(os.path.join(d, "adapter_model.safetensors"), state, {"format": "pt"})
    tensors = input_tensors(batch)
    tensors += [("out.logits", logits.detach()), ("out.loss", loss.detach().reshape(1)),
                ("adamw.losses", torch.tensor(losses))]
    tensors += grads + after
    meta = {"B": str(B), "T": str(T), "seed": str(SEED), "torch": torch.__version__}
    write_safetensors(os.path.join(out_dir, "qwen3_lora.expect.safetensors"), tensors, meta)
    print(f"qwen3_lora: loss {loss.item():.6f}, AdamW {losses[0]:.4f} -> {losses[-1]:.4f}")


def main(out_dir):
    os.makedirs(out_dir, exist_ok=True)
    for name, c in CONFIGS.items():
        make_case(out_dir, name, c, bf16_weights=(name == "qwen3"))
    make_lora_case(out_dir)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures/llama")
