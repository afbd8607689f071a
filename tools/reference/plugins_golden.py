"""Golden cases for the plug-in designs (tests/Graft.Tests/Golden/plugins/), written from docs/designs.md's equations.

Bridge (LLaVA-1.5 mlp2x_gelu projector): H_v = W2 . GELU(W1 . Z_v + b1) + b2, GELU in its erf form (nn.GELU()).
Computed in float64, stored as float32; gradients are those of sum(H_v * upstream).

Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden.py
"""
import torch

from golden import save_case


def bridge_case(name, tokens, vision_width, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(tokens, vision_width, generator=g, dtype=torch.float64)
    w1 = torch.randn(hidden, vision_width, generator=g, dtype=torch.float64) * 0.5
    b1 = torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1
    w2 = torch.randn(hidden, hidden, generator=g, dtype=torch.float64) * 0.3
    b2 = torch.randn(hidden, generator=g, dtype=torch.float64) * 0.1
    upstream = torch.randn(tokens, hidden, generator=g, dtype=torch.float64)
    # Round the inputs to float32 first so C# and Python start from the same values.
    leaves = [t.float().double().requires_grad_(True) for t in (z, w1, b1, w2, b2)]
    z, w1, b1, w2, b2 = leaves
    upstream = upstream.float().double()
    pre = z @ w1.T + b1
    gelu = 0.5 * pre * (1.0 + torch.erf(pre / 2.0 ** 0.5))
    y = gelu @ w2.T + b2
    (y * upstream).sum().backward()
    save_case("plugins", name, "bridge_projector", {"tokens": tokens, "vision_width": vision_width, "hidden": hidden},
              {"features": z, "w1": w1, "b1": b1, "w2": w2, "b2": b2, "upstream": upstream},
              {"y": y},
              {"features": z.grad, "w1": w1.grad, "b1": b1.grad, "w2": w2.grad, "b2": b2.grad})


if __name__ == "__main__":
    bridge_case("bridge_projector_small", tokens=5, vision_width=6, hidden=8, seed=1)
    bridge_case("bridge_projector_qwen2_width", tokens=4, vision_width=12, hidden=64, seed=2)
