"""Golden cases for the Visual Experts design (Mono-InternVL, SEEDS.md section 5), written from the paper's equations.

ffn_by_token: the FFN term of one layer with a token mask m (1 for IMG_CONTEXT), computed densely as the paper writes it:
    FFN_t(n) (1 - m) + FFN_ve(n) m,   FFN(x) = down(silu(gate(x)) * up(x)),
with FFN_t frozen and FFN_ve trainable; gradients of sum(y * upstream) for n and FFN_ve.
front_end: the patch embedding + pixel shuffle + mlp1 on a batch of tiles, every tensor trainable:
    x = Conv2d(3, d_v, p, stride p)(I) + PE[1:]; InternVL's pixel_shuffle(x, 0.5) (ps_version v2);
    y = Linear(d, d)(GELU(Linear(4 d_v, d)(LayerNorm(4 d_v)(x)))).
Computed in float64 from float32-rounded inputs, stored as float32.

Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden_visual_experts.py
"""
import torch
import torch.nn.functional as F

from golden import save_case

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


if __name__ == "__main__":
    ffn_by_token_case("ffn_by_token", seed=1)
    front_end_case("front_end", seed=2)
