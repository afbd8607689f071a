"""Golden cases for the elementwise, activation, norm, RoPE and attention ops (tests/Graft.Tests/Golden/ops_a).

    /usr/bin/python3 tools/reference/ops_golden_a.py            # writes the cases
    /usr/bin/python3 tools/reference/ops_golden_a.py --fit-erf  # prints the erf coefficients used in Kernels/Activations.cs

Inputs are drawn from a seeded generator and rounded to float32 (what the C# side reads); the oracle is
computed in float64 and stored as float32. Gradients are of sum(out.y * in.upstream) (+ sum(out.weights *
in.upstream_weights) for attention weights) with respect to every float input listed in the case's grads.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402

FOLDER = "ops_a"
gen = torch.Generator().manual_seed(20261122)


def rnd(*shape, scale=1.0):
    return (torch.randn(tuple(shape), generator=gen, dtype=torch.float64) * scale).float().double()


def case(name, op, args, inputs, fn, grads):
    """inputs: float64 or integer tensors; fn(inputs) -> {output name: tensor}; grads: names of inputs to differentiate."""
    leaves = {k: (v.clone().requires_grad_(k in grads) if v.is_floating_point() else v) for k, v in inputs.items()}
    outs = fn(leaves)
    upstream = {}
    loss = 0
    for out_name, out in outs.items():
        up_name = "upstream" if out_name == "y" else "upstream_" + out_name
        upstream[up_name] = rnd(*out.shape)
        loss = loss + (out * upstream[up_name]).sum()
    grad_values = torch.autograd.grad(loss, [leaves[g] for g in grads]) if grads else []
    golden.save_case(FOLDER, name, op, args, {**inputs, **upstream}, outs, dict(zip(grads, grad_values)))


def binary_cases():
    for op, f in (("mul", torch.mul), ("sub", torch.sub)):
        for i, (sa, sb) in enumerate((((7,), (7,)), ((3, 33), (33,)), ((2, 3, 129), (3, 129)), ((1,), (1,)))):
            case(f"{op}_{i}", op, {}, {"a": rnd(*sa), "b": rnd(*sb)}, lambda t, f=f: {"y": f(t["a"], t["b"])}, ["a", "b"])
    for i, shape in enumerate(((1,), (5, 33), (129,))):
        case(f"scale_{i}", "scale", {"s": -0.75}, {"x": rnd(*shape)}, lambda t: {"y": t["x"] * -0.75}, ["x"])


def activation_cases():
    functions = {
        "silu": F.silu,
        "gelu": lambda x: F.gelu(x),
        "gelu_tanh": lambda x: F.gelu(x, approximate="tanh"),
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
    }
    for op, f in functions.items():
        for i, shape in enumerate(((1,), (7,), (3, 33), (129,))):
            x = rnd(*shape, scale=3.0)
            if i == 3:  # cover the erf pieces' edges, the float saturation of erf and large magnitudes
                x[:12] = torch.tensor([0.0, -0.0, 1.41421, -1.41422, 5.6568, -5.6569, 6.0, -6.0, 12.0, -12.0, 30.0, -30.0], dtype=torch.float64)
            case(f"{op}_{i}", op, {}, {"x": x}, lambda t, f=f: {"y": f(t["x"])}, ["x"])
    for i, shape in enumerate(((7,), (33,), (3, 129))):
        case(f"swiglu_{i}", "swiglu", {}, {"gate": rnd(*shape, scale=2.0), "up": rnd(*shape)},
             lambda t: {"y": F.silu(t["gate"]) * t["up"]}, ["gate", "up"])
    for i, shape in enumerate(((1,), (4, 7), (2, 33), (129,))):
        case(f"softmax_{i}", "softmax", {}, {"x": rnd(*shape, scale=3.0)}, lambda t: {"y": torch.softmax(t["x"], -1)}, ["x"])


def round_to(t, dtype):
    return t.to(dtype).double() if dtype is not None else t


def norm_cases():
    shapes = ((3, 7), (2, 33), (1, 129), (2, 2, 8))
    dtypes = ((None, "F32"), (torch.bfloat16, "BF16"), (torch.float16, "F16"))
    for i, shape in enumerate(shapes):
        dtype, dname = dtypes[i % 3]
        c = shape[-1]
        trainable = dtype is None
        w = round_to(1 + 0.3 * rnd(c), dtype)
        grads = ["x", "weight"] if trainable else ["x"]

        def rms(t):
            x = t["x"]
            return {"y": x / torch.sqrt((x * x).mean(-1, keepdim=True) + 1e-6) * t["weight"]}

        case(f"rms_norm_{i}", "rms_norm", {"eps": 1e-6, "weight_dtype": dname}, {"x": rnd(*shape, scale=2.0), "weight": w.clone()}, rms, grads)
        with_bias = i != 1
        inputs = {"x": rnd(*shape, scale=2.0) + 0.5, "weight": w.clone()}
        if with_bias:
            inputs["bias"] = round_to(0.2 * rnd(c), dtype)
        case(f"layer_norm_{i}", "layer_norm", {"eps": 1e-5, "weight_dtype": dname, "bias": with_bias}, inputs,
             lambda t: {"y": F.layer_norm(t["x"], (t["x"].shape[-1],), t["weight"], t.get("bias"), 1e-5)},
             grads + (["bias"] if with_bias and trainable else []))


def hf_inverse_frequencies(dim, theta):
    # transformers' _compute_default_rope_parameters, in float32
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))


def rope_reference(x, inv_freq, positions, scaling, batch_positions):
    """HF Llama apply_rotary_pos_emb on the first 2·len(inv_freq) features of x [B, T, H, D] (float64)."""
    rot = 2 * inv_freq.numel()
    b, t = x.shape[0], x.shape[1]
    pos = positions.reshape(b if batch_positions else 1, t).float()
    angle = pos[..., None] * inv_freq.float()  # float32, as HF's matmul of inv_freq and position ids
    emb = torch.cat((angle, angle), -1).double()
    cos = (emb.cos() * scaling)[:, :, None, :]
    sin = (emb.sin() * scaling)[:, :, None, :]
    xr, rest = x[..., :rot], x[..., rot:]
    half = rot // 2
    rotated = torch.cat((-xr[..., half:], xr[..., :half]), -1)
    return torch.cat((xr * cos + rotated * sin, rest), -1)


def rope_cases():
    specs = [
        # name, x shape, rotary dim, theta, positions, batch positions, scaling
        ("rope_basic", (2, 5, 3, 8), 8, 10000.0, list(range(5)), False, 1.0),
        ("rope_partial", (1, 4, 2, 10), 6, 10000.0, [3, 7, 8, 20], False, 1.0),
        ("rope_batch_positions", (2, 3, 2, 16), 16, 1000000.0, [5, 6, 7, 0, 1, 4000], True, 1.0),
        ("rope_rank3_scaled", (7, 2, 66), 66, 500000.0, [10, 11, 12, 13, 2047, 4095, 3], False, 1.25),
        ("rope_partial_odd", (1, 3, 1, 33), 16, 10000.0, [1, 129, 33], False, 1.0),
    ]
    for name, shape, rot, theta, positions, batch_positions, scaling in specs:
        inv = hf_inverse_frequencies(rot, theta)
        x = rnd(*shape)
        pos = torch.tensor(positions, dtype=torch.int64)

        def f(t, inv=inv, pos=pos, scaling=scaling, batch_positions=batch_positions):
            x4 = t["x"] if t["x"].dim() == 4 else t["x"][None]
            y = rope_reference(x4, inv, pos, scaling, batch_positions)
            return {"y": y if t["x"].dim() == 4 else y[0]}

        case(name, "rope", {"scaling": scaling, "theta": theta},
             {"x": x, "inv_freq": inv.double(), "positions": pos}, f, ["x"])
    for dim, theta in ((64, 10000.0), (128, 500000.0), (6, 1000000.0)):
        golden.save_case(FOLDER, f"rope_default_{dim}", "rope_default", {"head_dim": dim, "theta": theta}, {},
                         {"inv_freq": hf_inverse_frequencies(dim, theta)}, {})


def attention_reference(q, k, v, allowed, scale):
    """q [B, Tq, Hq, D], k/v [B, Tk, Hkv, D], allowed [B|1, Tq, Tk] -> output, weights [B, Hq, Tq, Tk]; empty rows give zeros."""
    group = q.shape[2] // k.shape[2]
    k = k.repeat_interleave(group, dim=2)
    v = v.repeat_interleave(group, dim=2)
    scores = torch.einsum("bqhd,bkhd->bhqk", q, k) * scale
    mask = allowed[:, None, :, :]
    any_allowed = mask.any(-1, keepdim=True)
    probabilities = torch.softmax(scores.masked_fill(~mask, -1e300), -1) * any_allowed
    return torch.einsum("bhqk,bkhd->bqhd", probabilities, v), probabilities


def attention_cases():
    def make(name, b, tq, tk, hq, hkv, d, causal=False, offset=0, pattern=None, weights=False):
        q, k, v = rnd(b, tq, hq, d), rnd(b, tk, hkv, d), rnd(b, tk, hkv, d)
        scale = 1.0 / math.sqrt(d)
        allowed = torch.ones(1, tq, tk, dtype=torch.bool) if pattern is None else pattern
        if causal:
            rows = torch.arange(tq)[:, None] + offset
            allowed = allowed & (torch.arange(tk)[None, :] <= rows)[None]
        args = {"scale": scale, "causal": causal, "query_offset": offset, "pattern": pattern is not None, "weights": weights}
        inputs = {"q": q, "k": k, "v": v}
        if pattern is not None:
            inputs["allowed"] = pattern

        def f(t):
            out, p = attention_reference(t["q"], t["k"], t["v"], allowed, scale)
            return {"y": out, "weights": p} if weights else {"y": out}

        case(name, "attention", args, inputs, f, ["q", "k", "v"])

    make("attention_full", 1, 3, 33, 2, 2, 8)
    make("attention_causal", 2, 7, 7, 2, 2, 8, causal=True)
    make("attention_kv_cache_1", 2, 1, 9, 2, 1, 8, causal=True, offset=8)
    make("attention_kv_cache_3", 1, 3, 9, 2, 2, 4, causal=True, offset=6)
    make("attention_gqa", 2, 5, 5, 4, 2, 5, causal=True)
    column0 = torch.ones(1, 6, 6, dtype=torch.bool)
    column0[0, 1:, 0] = False
    make("attention_column0_blocked", 2, 6, 6, 2, 1, 4, causal=True, pattern=column0)
    subsets = torch.rand(2, 4, 7, generator=gen) < 0.6
    subsets[:, :, 3] = True
    make("attention_batch_key_subsets", 2, 4, 7, 2, 2, 4, pattern=subsets)
    empty_row = torch.rand(1, 5, 5, generator=gen) < 0.7
    empty_row[0, 2, :] = False
    empty_row[0, [0, 1, 3, 4], 0] = True
    make("attention_fully_masked_row", 1, 5, 5, 2, 2, 4, pattern=empty_row)
    make("attention_weights_grad", 2, 4, 4, 4, 2, 8, causal=True, weights=True)
    make("attention_weights_grad_masked", 1, 3, 6, 2, 2, 4, pattern=subsets[:1, :3, :6] | torch.eye(3, 6, dtype=torch.bool)[None], weights=True)


def reduction_cases():
    case("sum_0", "sum", {}, {"x": rnd(129)}, lambda t: {"y": t["x"].sum()}, ["x"])
    case("sum_1", "sum", {}, {"x": rnd(3, 7)}, lambda t: {"y": t["x"].sum()}, ["x"])
    case("mean_0", "mean", {}, {"x": rnd(2, 33)}, lambda t: {"y": t["x"].mean()}, ["x"])
    case("mean_1", "mean", {}, {"x": rnd(1)}, lambda t: {"y": t["x"].mean()}, ["x"])
    for i, (shape, axis) in enumerate((((2, 7, 3), 1), ((4, 33), -1), ((5, 2), 0), ((129,), 0), ((2, 3, 4), 2))):
        case(f"mean_axis_{i}", "mean_axis", {"axis": axis}, {"x": rnd(*shape)}, lambda t, axis=axis: {"y": t["x"].mean(axis)}, ["x"])


def fit_erf():
    """The least-squares fits behind Kernels/Activations.cs ErfCore (printed, to be pasted there)."""
    import numpy as np
    erf = np.vectorize(math.erf)
    erfc = np.vectorize(math.erfc)
    x = np.cos(np.linspace(0, np.pi, 4000)) * 0.5 + 0.5
    ratio = np.where(x > 0, erf(x) / np.where(x > 0, x, 1), 2 / math.sqrt(math.pi))
    print("P(x^2), |x| < 1:", ", ".join("%.9e" % c for c in np.polyfit(x * x, ratio, 7)))
    x = np.linspace(1, 4, 20001)
    print("Q(t), 1 <= |x| < 4:", ", ".join("%.9e" % c for c in np.polyfit((x - 2.5) / 1.5, erfc(x) * np.exp(x * x), 12)))


if __name__ == "__main__":
    if "--fit-erf" in sys.argv:
        fit_erf()
    else:
        folder = os.path.join(golden.GOLDEN, FOLDER)
        if os.path.isdir(folder):
            for old in os.listdir(folder):
                if old.endswith(".safetensors"):
                    os.remove(os.path.join(folder, old))
        binary_cases()
        activation_cases()
        norm_cases()
        rope_cases()
        attention_cases()
        reduction_cases()
        print(len(os.listdir(folder)), "cases,", sum(os.path.getsize(os.path.join(folder, f)) for f in os.listdir(folder)), "bytes")
