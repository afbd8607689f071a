"""Golden cases for the Visual Experts design (Mono-InternVL, docs/designs.md section 5), written from the paper's equations.

ffn_by_token: the FFN term of one layer with a token mask m (1 for IMG_CONTEXT), computed densely as the paper writes it:
    FFN_t(n) (1 - m) + FFN_ve(n) m,   FFN(x) = down(silu(gate(x)) * up(x)),
with FFN_t frozen and FFN_ve trainable; gradients of sum(y * upstream) for n and FFN_ve.
front_end: the patch embedding + pixel shuffle + mlp1 on a batch of tiles, every tensor trainable:
    x = Conv2d(3, d_v, p, stride p)(I) + PE[1:]; InternVL's pixel_shuffle(x, 0.5) (ps_version v2);
    y = Linear(d, d)(GELU(Linear(4 d_v, d)(LayerNorm(4 d_v)(x)))).
attention_experts_qwen2: the whole decoder stream with visual attention experts (Mono-InternVL-1.5) and FFN experts on
    the committed tiny Qwen2 base (2 layers, hidden 64, 4 query heads over 2 KV heads, q/k/v biases, tied head), every
    projection mixed densely by the token mask m as the paper writes it:
        n = RMSNorm(h);  q = W_q^t n (1 - m) + W_q^e n m  (and k, v likewise, biases included);  RoPE on q, k;
        a = softmax(q k^T / sqrt(d_h) + causal) v;  h = h + (W_o^t a (1 - m) + W_o^e a m);
        n' = RMSNorm(h);  h = h + FFN_t(n') (1 - m) + FFN_e(n') m;   logits = RMSNorm(h) E^T.
    Input h_0 = [E[ids_a]; V; E[ids_b]] with V random visual rows; the experts are the base's weights plus random
    perturbations (not the copy they start as); gradients of sum(logits * upstream) for V and every expert tensor.
Computed in float64 from float32-rounded inputs, stored as float32.

Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden_visual_experts.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F

from golden import GOLDEN, load_safetensors, save_case

FOLDER = "plugins_visual_experts"


def rounded(t, grad=True):
    return t.float().double().requires_grad_(grad)


def swiglu_ffn(x, gate, up, down):
    return F.silu(x @ gate.T) * (x @ up.T) @ down.T


def ffn_by_token_case(name, seed, tokens=7, width=8, inner=12):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, scale=1.0: torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    n = rounded(rand(tokens, width))
    text = [rounded(rand(inner, width, scale=0.4), False), rounded(rand(inner, width, scale=0.4), False), rounded(rand(width, inner, scale=0.3), False)]
    expert = [rounded(rand(inner, width, scale=0.4)), rounded(rand(inner, width, scale=0.4)), rounded(rand(width, inner, scale=0.3))]
    mask = torch.tensor([0, 1, 1, 0, 1, 0, 0][:tokens], dtype=torch.float64)[:, None]
    upstream = rand(tokens, width).float().double()
    y = swiglu_ffn(n, *text) * (1 - mask) + swiglu_ffn(n, *expert) * mask
    (y * upstream).sum().backward()
    save_case(FOLDER, name, "visual_experts_ffn_by_token", {"tokens": tokens, "width": width, "inner": inner},
              {"normed": n, "mask": mask[:, 0].to(torch.int32), "text_gate": text[0], "text_up": text[1], "text_down": text[2],
               "gate": expert[0], "up": expert[1], "down": expert[2], "upstream": upstream},
              {"y": y},
              {"normed": n.grad, "gate": expert[0].grad, "up": expert[1].grad, "down": expert[2].grad})


def pixel_shuffle(x, scale_factor=0.5):
    """InternVL's pixel_shuffle (ps_version 'v2'), verbatim."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    x = x.permute(0, 2, 1, 3).contiguous()
    return x


def front_end_case(name, seed, tiles=2, patch=14, grid=4, vision_width=6, hidden=8):
    g = torch.Generator().manual_seed(seed)
    rand = lambda *shape, scale=1.0: torch.randn(*shape, generator=g, dtype=torch.float64) * scale
    size = patch * grid
    pixels = rounded(rand(tiles, 3, size, size), False)
    params = {
        "conv_weight": rounded(rand(vision_width, 3, patch, patch, scale=0.05)),
        "conv_bias": rounded(rand(vision_width, scale=0.1)),
        "position": rounded(rand(1 + grid * grid, vision_width, scale=0.5)),
        "norm_weight": rounded(1 + rand(4 * vision_width, scale=0.1)),
        "norm_bias": rounded(rand(4 * vision_width, scale=0.1)),
        "w1": rounded(rand(hidden, 4 * vision_width, scale=0.3)),
        "b1": rounded(rand(hidden, scale=0.1)),
        "w2": rounded(rand(hidden, hidden, scale=0.3)),
        "b2": rounded(rand(hidden, scale=0.1)),
    }
    p = params
    x = F.conv2d(pixels, p["conv_weight"], p["conv_bias"], stride=patch)        # [B, d_v, g, g]
    x = x.flatten(2).transpose(1, 2) + p["position"][1:]                         # class token dropped: its row unused
    x = pixel_shuffle(x.contiguous().reshape(tiles, grid, grid, vision_width)).reshape(tiles, -1, 4 * vision_width)
    x = F.layer_norm(x, (4 * vision_width,), p["norm_weight"], p["norm_bias"], eps=1e-5)
    pre = x @ p["w1"].T + p["b1"]
    y = (0.5 * pre * (1.0 + torch.erf(pre / 2.0 ** 0.5))) @ p["w2"].T + p["b2"]
    upstream = rand(*y.shape).float().double()
    (y * upstream).sum().backward()
    save_case(FOLDER, name, "visual_experts_front_end",
              {"tiles": tiles, "patch": patch, "grid": grid, "vision_width": vision_width, "hidden": hidden},
              {"pixels": pixels, "upstream": upstream, **params},
              {"y": y},
              {k: v.grad for k, v in params.items()})


QWEN2 = os.path.join(GOLDEN, "llm", "models", "qwen2")


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def by_mask(x, m, text, expert):
    """The paper's dense form: text(x) (1 - m) + expert(x) m."""
    return text(x) * (1 - m) + expert(x) * m


def linear(w, name):
    def apply(x):
        y = x @ w[name + ".weight"].T
        return y + w[name + ".bias"] if name + ".bias" in w else y
    return apply


def expert_layer(cfg, base, experts, l, x, m):
    h, kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    d = cfg["hidden_size"] // h
    eps = cfg["rms_norm_eps"]
    t = x.shape[0]
    inv = 1.0 / (float(cfg["rope_theta"]) ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    freqs = torch.outer(torch.arange(t, dtype=torch.float64), inv)
    cos, sin = torch.cat((freqs, freqs), -1).cos(), torch.cat((freqs, freqs), -1).sin()
    p, e = f"model.layers.{l}.", f"layers.{l}."

    n = rms_norm(x, base[p + "input_layernorm.weight"], eps)
    q = by_mask(n, m, linear(base, p + "self_attn.q_proj"), linear(experts, e + "attn_ve.q")).view(t, h, d).transpose(0, 1)
    k = by_mask(n, m, linear(base, p + "self_attn.k_proj"), linear(experts, e + "attn_ve.k")).view(t, kv, d).transpose(0, 1)
    v = by_mask(n, m, linear(base, p + "self_attn.v_proj"), linear(experts, e + "attn_ve.v")).view(t, kv, d).transpose(0, 1)
    q = q * cos + rotate_half(q) * sin
    k = k * cos + rotate_half(k) * sin
    k = k.repeat_interleave(h // kv, dim=0)
    v = v.repeat_interleave(h // kv, dim=0)
    causal = torch.full((t, t), float("-inf"), dtype=torch.float64).triu(1)
    a = (torch.softmax(q @ k.transpose(1, 2) / math.sqrt(d) + causal, -1) @ v).transpose(0, 1).reshape(t, h * d)
    x = x + by_mask(a, m, linear(base, p + "self_attn.o_proj"), linear(experts, e + "attn_ve.o"))
    n = rms_norm(x, base[p + "post_attention_layernorm.weight"], eps)
    text_ffn = lambda y: swiglu_ffn(y, base[p + "mlp.gate_proj.weight"], base[p + "mlp.up_proj.weight"], base[p + "mlp.down_proj.weight"])
    expert_ffn = lambda y: swiglu_ffn(y, experts[e + "ffn_ve.gate.weight"], experts[e + "ffn_ve.up.weight"], experts[e + "ffn_ve.down.weight"])
    return x + by_mask(n, m, text_ffn, expert_ffn)


def attention_experts_case(name, seed, ids_a=(1, 17), ids_b=(9, 3, 88), visual=5):
    with open(os.path.join(QWEN2, "config.json")) as f:
        cfg = json.load(f)
    weights, _ = load_safetensors(os.path.join(QWEN2, "model.safetensors"))
    base = {k: v.double() for k, v in weights.items()}
    g = torch.Generator().manual_seed(seed)
    experts = {}
    pairs = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
             "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
    for l in range(cfg["num_hidden_layers"]):
        for short, long in pairs.items():
            group = "ffn_ve" if short in ("gate", "up", "down") else "attn_ve"
            for kind in ("weight", "bias"):
                source = f"model.layers.{l}.{long}.{kind}"
                if source in base:
                    t = base[source]
                    experts[f"layers.{l}.{group}.{short}.{kind}"] = t + 0.3 * t.abs().mean() * torch.randn(t.shape, generator=g, dtype=torch.float64)
    experts = {k: rounded(v) for k, v in experts.items()}
    embedding = base["model.embed_tokens.weight"]
    rows = rounded(torch.randn(visual, cfg["hidden_size"], generator=g, dtype=torch.float64) * 0.5)
    h = torch.cat([embedding[list(ids_a)], rows, embedding[list(ids_b)]], 0)
    m = torch.tensor([0.0] * len(ids_a) + [1.0] * visual + [0.0] * len(ids_b), dtype=torch.float64)[:, None]
    for l in range(cfg["num_hidden_layers"]):
        h = expert_layer(cfg, base, experts, l, h, m)
    logits = rms_norm(h, base["model.norm.weight"], cfg["rms_norm_eps"]) @ embedding.T
    upstream = torch.randn(logits.shape, generator=g, dtype=torch.float64).float().double()
    (logits * upstream).sum().backward()
    save_case(FOLDER, name, "visual_experts_attention_stream", {"ids_a": list(ids_a), "ids_b": list(ids_b), "visual": visual},
              {"visual_rows": rows, "upstream": upstream, **experts},
              {"logits": logits},
              {"visual_rows": rows.grad, **{k: v.grad for k, v in experts.items()}})


if __name__ == "__main__":
    ffn_by_token_case("ffn_by_token", seed=1)
    front_end_case("front_end", seed=2)
    attention_experts_case("attention_experts_qwen2", seed=3)
