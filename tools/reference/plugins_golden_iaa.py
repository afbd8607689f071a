"""Golden cases for IAA, the Inner-Adaptor Architecture (tests/Graft.Tests/Golden/plugins_iaa/), from docs/designs.md section 3.

On the committed tiny Qwen2 base (tests/Graft.Tests/Golden/llm/models/qwen2: 2 layers, hidden 64, tied head):
    H_v = W2 . GELU(W1 . Z_v + b1) + b2                      (mlp2x_gelu, GELU in its erf form)
    h_0 = [E[ids_a]; H_v; E[ids_b]]
    u_l = Frozen_l(h_l),   h_{l+1} = Inner_k(u_l) if l = s_k else u_l
    Layer(x) = v + W_down(silu(W_gate n') * W_up n'),  n' = RMSNorm(v),  v = x + W_o Attn(RoPE(W_q n), RoPE(W_k n), W_v n),
               n = RMSNorm(x), causal grouped-query attention; the same equation for frozen and inner layers.
    logits = RMSNorm(h_L) . Head^T    (the base's norm and head, or the plug-in's own copies)
Computed in float64 from float32 inputs, stored as float32; gradients are those of sum(logits * upstream).

Cases:
  iaa_qwen2_inner: one inner layer after frozen layer 0, every weight random and non-zero; gradients of the projector
                   and of every inner-layer tensor.
  iaa_qwen2_own_head: one inner layer after frozen layer 1 at its initialisation (a copy of frozen layer 1 with o_proj
                   and down_proj zero, rebuilt by the test), own embedding = the base's (tied head), own final norm
                   perturbed; gradients of the projector, the own embedding/head and norm, and the zeroed projections.

Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden_iaa.py
"""
import json
import math
import os

import torch

from golden import GOLDEN, load_safetensors, save_case

QWEN2 = os.path.join(GOLDEN, "llm", "models", "qwen2")
IDS_A = [1, 17]
IDS_B = [9, 3, 88]
TOKENS, VISION_WIDTH = 4, 12


def load_base():
    with open(os.path.join(QWEN2, "config.json")) as f:
        cfg = json.load(f)
    weights, _ = load_safetensors(os.path.join(QWEN2, "model.safetensors"))
    return cfg, {k: v.double() for k, v in weights.items()}


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def layer(cfg, w, p, x):
    """One Llama/Qwen2 decoder layer with weights w[p + name], x [T, C] at positions 0..T-1."""
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // h
    eps = cfg["rms_norm_eps"]
    t = x.shape[0]
    inv = 1.0 / (float(cfg["rope_theta"]) ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()

    def linear(v, name):
        y = v @ w[p + name + ".weight"].T
        return y + w[p + name + ".bias"] if p + name + ".bias" in w else y

    n = rms_norm(x, w[p + "input_layernorm.weight"], eps)
    q = linear(n, "self_attn.q_proj").view(t, h, d).transpose(0, 1)
    k = linear(n, "self_attn.k_proj").view(t, kv, d).transpose(0, 1)
    v = linear(n, "self_attn.v_proj").view(t, kv, d).transpose(0, 1)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(h // kv, dim=0)
    v = v.repeat_interleave(h // kv, dim=0)
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + mask, -1) @ v
    x = x + linear(attn.transpose(0, 1).reshape(t, h * d), "self_attn.o_proj")
    n = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
    return x + linear(torch.nn.functional.silu(linear(n, "mlp.gate_proj")) * linear(n, "mlp.up_proj"), "mlp.down_proj")


def projector(z, w):
    pre = z @ w["mm_projector.0.weight"].T + w["mm_projector.0.bias"]
    return (0.5 * pre * (1.0 + torch.erf(pre / 2.0 ** 0.5))) @ w["mm_projector.2.weight"].T + w["mm_projector.2.bias"]


def iaa_logits(cfg, base, plugin, insert_after, z, own_head):
    embedding = plugin["model.embed_tokens_condition.weight"] if own_head else base["model.embed_tokens.weight"]
    h = torch.cat([embedding[IDS_A], projector(z, plugin), embedding[IDS_B]], 0)
    for l in range(cfg["num_hidden_layers"]):
        h = layer(cfg, base, f"model.layers.{l}.", h)
        if l in insert_after:
            h = layer(cfg, plugin, f"model.condition_layers.{insert_after.index(l)}.", h)
    norm = plugin["model.norm_condition.weight"] if own_head else base["model.norm.weight"]
    return rms_norm(h, norm, cfg["rms_norm_eps"]) @ embedding.T  # Qwen2 ties its head to the embedding


def leaf(t):
    """Rounded to float32 first, so C# and Python start from the same values."""
    return t.float().double().requires_grad_(True)


def random_projector(g, hidden):
    return {
        "mm_projector.0.weight": torch.randn(hidden, VISION_WIDTH, generator=g, dtype=torch.float64) * 0.3,
        "mm_projector.0.bias": torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1,
        "mm_projector.2.weight": torch.randn(hidden, hidden, generator=g, dtype=torch.float64) * 0.15,
        "mm_projector.2.bias": torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1,
    }


def inner_case(cfg, base):
    g = torch.Generator().manual_seed(11)
    hidden = cfg["hidden_size"]
    plugin = random_projector(g, hidden)
    for name, t in base.items():
        if name.startswith("model.layers.0."):
            inner = "model.condition_layers.0." + name[len("model.layers.0."):]
            plugin[inner] = t + 0.1 * t.abs().mean() * torch.randn(t.shape, generator=g, dtype=torch.float64)
    plugin = {k: leaf(v) for k, v in plugin.items()}
    z = torch.randn(TOKENS, VISION_WIDTH, generator=g, dtype=torch.float64).float().double()
    logits = iaa_logits(cfg, base, plugin, [0], z, own_head=False)
    upstream = torch.randn(logits.shape, generator=g, dtype=torch.float64).float().double()
    (logits * upstream).sum().backward()
    save_case("plugins_iaa", "iaa_qwen2_inner", "iaa", {"insert_after": [0], "own_head": False, "ids_a": IDS_A, "ids_b": IDS_B},
              {"features": z, "upstream": upstream, **plugin},
              {"logits": logits},
              {k: v.grad for k, v in plugin.items()})


def own_head_case(cfg, base):
    g = torch.Generator().manual_seed(12)
    hidden = cfg["hidden_size"]
    plugin = random_projector(g, hidden)
    for name, t in base.items():
        if name.startswith("model.layers.1."):
            suffix = name[len("model.layers.1."):]
            zeroed = suffix in ("self_attn.o_proj.weight", "mlp.down_proj.weight")
            plugin["model.condition_layers.0." + suffix] = torch.zeros_like(t) if zeroed else t.clone()
    plugin["model.embed_tokens_condition.weight"] = base["model.embed_tokens.weight"].clone()
    plugin["model.norm_condition.weight"] = base["model.norm.weight"] * (1 + 0.2 * torch.randn(hidden, generator=g, dtype=torch.float64))
    plugin = {k: leaf(v) for k, v in plugin.items()}
    z = torch.randn(TOKENS, VISION_WIDTH, generator=g, dtype=torch.float64).float().double()
    logits = iaa_logits(cfg, base, plugin, [1], z, own_head=True)
    upstream = torch.randn(logits.shape, generator=g, dtype=torch.float64).float().double()
    (logits * upstream).sum().backward()
    kept = [k for k in plugin if k.startswith("mm_projector") or "condition" in k and not k.startswith("model.condition_layers")]
    kept += ["model.condition_layers.0.self_attn.o_proj.weight", "model.condition_layers.0.mlp.down_proj.weight"]
    save_case("plugins_iaa", "iaa_qwen2_own_head", "iaa", {"insert_after": [1], "own_head": True, "ids_a": IDS_A, "ids_b": IDS_B},
              {"features": z, "upstream": upstream, "model.norm_condition.weight": plugin["model.norm_condition.weight"],
               **{k: v for k, v in plugin.items() if k.startswith("mm_projector")}},
              {"logits": logits},
              {k: plugin[k].grad for k in kept})


if __name__ == "__main__":
    cfg, base = load_base()
    inner_case(cfg, base)
    own_head_case(cfg, base)
