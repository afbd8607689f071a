"""Golden cases for MMA / LaVIN (tests/Graft.Tests/Golden/plugins_mma/), written from docs/designs.md section 2.

RepAdapter with router on a stream X [T, W] (B, D: 1x1 conv1d with `groups` groups, as LaVIN's conv_B / conv_D):
    w  = softmax((W_r X[0] + b_r) / tau)
    H  = A X + a                                  (dropout off: evaluation)
    X' = X + s * (w0 * convB(H) + w1 * convD(H))
ViT batch: each image routed from its OWN class token (row 0 of that image).
AdapterMLP: W2 SiLU(W1 Z + b1) + b2.
Stream: the qwen2 test checkpoint with a modality token at position 0 (hidden from every later row), the adapter on the
normed attention input of every layer, logits [T, V] and gradients of sum(logits * upstream).

Computed in float64 from float32-rounded inputs, stored as float32.
Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden_mma.py
"""
import math
import os

import torch
import torch.nn.functional as F

from golden import GOLDEN, load_safetensors, save_case

FOLDER = "plugins_mma"


def f32(t):
    return t.float().double()


def adapter_params(gen, width, rank, groups, prefix=""):
    """Random non-zero adapter tensors under LaVIN's names (conv weights without the kernel axis)."""
    p = {
        "conv_A.weight": torch.randn(rank, width, generator=gen, dtype=torch.float64) / math.sqrt(width),
        "conv_A.bias": torch.randn(rank, generator=gen, dtype=torch.float64) * 0.1,
        "conv_B.weight": torch.randn(width, rank // groups, generator=gen, dtype=torch.float64) * 0.3,
        "conv_B.bias": torch.randn(width, generator=gen, dtype=torch.float64) * 0.1,
        "conv_D.weight": torch.randn(width, rank // groups, generator=gen, dtype=torch.float64) * 0.3,
        "conv_D.bias": torch.randn(width, generator=gen, dtype=torch.float64) * 0.1,
        "expert_weights.weight": torch.randn(2, width, generator=gen, dtype=torch.float64) * 2.0,
        "expert_weights.bias": torch.randn(2, generator=gen, dtype=torch.float64) * 0.5,
    }
    return {prefix + k: f32(v).requires_grad_(True) for k, v in p.items()}


def adapter(x, p, prefix, groups, tau, scale, route_from=None):
    """x [T, W] -> [T, W], routed from route_from [W] (default x[0]); conv1d over the token axis with kernel 1."""
    first = x[0] if route_from is None else route_from
    w = torch.softmax((first @ p[prefix + "expert_weights.weight"].T + p[prefix + "expert_weights.bias"]) / tau, dim=-1)
    seq = x.T.unsqueeze(0)  # [1, W, T]: conv1d's (batch, channels, length)
    h = F.conv1d(seq, p[prefix + "conv_A.weight"].unsqueeze(-1), p[prefix + "conv_A.bias"])
    b = F.conv1d(h, p[prefix + "conv_B.weight"].unsqueeze(-1), p[prefix + "conv_B.bias"], groups=groups)
    d = F.conv1d(h, p[prefix + "conv_D.weight"].unsqueeze(-1), p[prefix + "conv_D.bias"], groups=groups)
    return x + scale * (w[0] * b + w[1] * d)[0].T


def adapter_case(name, tokens, width, rank, groups, tau, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    x = f32(torch.randn(tokens, width, generator=gen, dtype=torch.float64)).requires_grad_(True)
    p = adapter_params(gen, width, rank, groups)
    upstream = f32(torch.randn(tokens, width, generator=gen, dtype=torch.float64))
    y = adapter(x, p, "", groups, tau, scale)
    (y * upstream).sum().backward()
    save_case(FOLDER, name, "mma_adapter", {"rank": rank, "groups": groups, "temperature": tau, "scale": scale},
              {"x": x, "upstream": upstream, **p}, {"y": y}, {"x": x.grad, **{k: v.grad for k, v in p.items()}})


def vit_batch_case(name, batch, tokens, width, rank, groups, tau, scale, seed):
    gen = torch.Generator().manual_seed(seed)
    x = f32(torch.randn(batch, tokens, width, generator=gen, dtype=torch.float64) * 2).requires_grad_(True)
    p = adapter_params(gen, width, rank, groups)
    upstream = f32(torch.randn(batch, tokens, width, generator=gen, dtype=torch.float64))
    y = torch.stack([adapter(x[b], p, "", groups, tau, scale, route_from=x[b, 0]) for b in range(batch)])
    (y * upstream).sum().backward()
    # What LaVIN's CLIP code computes (every image routed from image 0), so the test can show Graft differs from it.
    with torch.no_grad():
        from_first = torch.stack([adapter(x[b], p, "", groups, tau, scale, route_from=x[0, 0]) for b in range(batch)])
    save_case(FOLDER, name, "mma_adapter_batch", {"rank": rank, "groups": groups, "temperature": tau, "scale": scale},
              {"x": x, "upstream": upstream, **p}, {"y": y, "y_routed_from_image_0": from_first},
              {"x": x.grad, **{k: v.grad for k, v in p.items()}})


def mlp_case(name, tokens, vision_width, hidden, width, seed):
    gen = torch.Generator().manual_seed(seed)
    z = f32(torch.randn(tokens, vision_width, generator=gen, dtype=torch.float64)).requires_grad_(True)
    w1 = f32(torch.randn(hidden, vision_width, generator=gen, dtype=torch.float64) * 0.4).requires_grad_(True)
    b1 = f32(torch.randn(hidden, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    w2 = f32(torch.randn(width, hidden, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    b2 = f32(torch.randn(width, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    upstream = f32(torch.randn(tokens, width, generator=gen, dtype=torch.float64))
    y = F.silu(z @ w1.T + b1) @ w2.T + b2
    (y * upstream).sum().backward()
    save_case(FOLDER, name, "mma_adapter_mlp", {},
              {"features": z, "w1": w1, "b1": b1, "w2": w2, "b2": b2, "upstream": upstream}, {"y": y},
              {"features": z.grad, "w1": w1.grad, "b1": b1.grad, "w2": w2.grad, "b2": b2.grad})


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def stream_case(name, with_image, seed, rank=8, groups=2, tau=5.0, scale=1.0, projection=128, vision_width=12):
    """Qwen2 test checkpoint + MMA: [m] ids1 [visual] ids2 (or [m] ids1 ids2 without the image)."""
    import json
    folder = os.path.join(GOLDEN, "llm", "models", "qwen2")
    cfg = json.load(open(os.path.join(folder, "config.json")))
    base, _ = load_safetensors(os.path.join(folder, "model.safetensors"))
    base = {k: v.double() for k, v in base.items()}
    c, layers = cfg["hidden_size"], cfg["num_hidden_layers"]
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    hd = c // h
    eps = cfg["rms_norm_eps"]

    gen = torch.Generator().manual_seed(seed)
    p = {}
    for i in range(layers):
        p.update(adapter_params(gen, c, rank, groups, prefix=f"layers.{i}.adapter_attn."))
    p["adapter_proj.conv_A.weight"] = f32(torch.randn(projection, vision_width, generator=gen, dtype=torch.float64) * 0.3).requires_grad_(True)
    p["adapter_proj.conv_A.bias"] = f32(torch.randn(projection, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    p["adapter_proj.conv_B.weight"] = f32(torch.randn(c, projection, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    p["adapter_proj.conv_B.bias"] = f32(torch.randn(c, generator=gen, dtype=torch.float64) * 0.1).requires_grad_(True)
    p["adapter_modality_embedding.weight"] = f32(torch.randn(2, c, generator=gen, dtype=torch.float64)).requires_grad_(True)
    ids1 = torch.tensor([5, 17, 42])
    ids2 = torch.tensor([9, 3, 88, 6])
    z = f32(torch.randn(3, vision_width, generator=gen, dtype=torch.float64))

    table = base["model.embed_tokens.weight"]
    pieces = [p["adapter_modality_embedding.weight"][1 if with_image else 0].unsqueeze(0), table[ids1]]
    if with_image:
        pieces.append(F.silu(z @ p["adapter_proj.conv_A.weight"].T + p["adapter_proj.conv_A.bias"]) @ p["adapter_proj.conv_B.weight"].T
                      + p["adapter_proj.conv_B.bias"])
    pieces.append(table[ids2])
    x = torch.cat(pieces)
    t = x.shape[0]

    positions = torch.arange(t, dtype=torch.float64)
    inv = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, hd, 2, dtype=torch.float64) / hd))
    freqs = torch.outer(positions, inv)
    emb = torch.cat((freqs, freqs), -1)
    cos, sin = emb.cos(), emb.sin()
    mask = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    mask[1:, 0] = float("-inf")  # nobody after position 0 sees the modality token
    for i in range(layers):
        q_ = f"model.layers.{i}."
        normed = rms_norm(x, base[q_ + "input_layernorm.weight"], eps)
        normed = adapter(normed, p, f"layers.{i}.adapter_attn.", groups, tau, scale)
        q = (normed @ base[q_ + "self_attn.q_proj.weight"].T + base[q_ + "self_attn.q_proj.bias"]).view(t, h, hd).transpose(0, 1)
        k = (normed @ base[q_ + "self_attn.k_proj.weight"].T + base[q_ + "self_attn.k_proj.bias"]).view(t, kv, hd).transpose(0, 1)
        v = (normed @ base[q_ + "self_attn.v_proj.weight"].T + base[q_ + "self_attn.v_proj.bias"]).view(t, kv, hd).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        k = k.repeat_interleave(h // kv, 0)
        v = v.repeat_interleave(h // kv, 0)
        attn = torch.softmax(q @ k.transpose(1, 2) / math.sqrt(hd) + mask, -1) @ v
        x = x + attn.transpose(0, 1).reshape(t, c) @ base[q_ + "self_attn.o_proj.weight"].T
        normed = rms_norm(x, base[q_ + "post_attention_layernorm.weight"], eps)
        x = x + (F.silu(normed @ base[q_ + "mlp.gate_proj.weight"].T) * (normed @ base[q_ + "mlp.up_proj.weight"].T)) @ base[q_ + "mlp.down_proj.weight"].T
    head = base.get("lm_head.weight", table)
    logits = rms_norm(x, base["model.norm.weight"], eps) @ head.T
    upstream = f32(torch.randn(logits.shape, generator=gen, dtype=torch.float64))
    (logits * upstream).sum().backward()
    grads = {k: v.grad for k, v in p.items() if v.grad is not None}
    save_case(FOLDER, name, "mma_stream",
              {"family": "qwen2", "with_image": with_image, "rank": rank, "groups": groups, "temperature": tau, "scale": scale,
               "projection_width": projection, "vision_width": vision_width},
              {"ids1": ids1, "ids2": ids2, "features": z, "upstream": upstream, **p}, {"logits": logits}, grads)


if __name__ == "__main__":
    adapter_case("adapter_width16", tokens=5, width=16, rank=8, groups=2, tau=5.0, scale=1.0, seed=1)
    adapter_case("adapter_width12_scaled", tokens=4, width=12, rank=4, groups=1, tau=10.0, scale=0.5, seed=2)
    vit_batch_case("adapter_vit_batch3", batch=3, tokens=5, width=12, rank=8, groups=2, tau=5.0, scale=1.0, seed=3)
    mlp_case("adapter_mlp", tokens=6, vision_width=12, hidden=16, width=64, seed=4)
    stream_case("stream_qwen2_image", with_image=True, seed=5)
    stream_case("stream_qwen2_text", with_image=False, seed=6)
