"""Golden cases for indexing, vision, loss ops, Linear/MatMul/Add, and an AdamW trajectory.

    /usr/bin/python3 tools/reference/ops_golden_b.py

Writes tests/Graft.Tests/Golden/ops_b/*.safetensors. Each op case stores inputs `in.*`, outputs `out.y` and
gradients `grad.*` of sum(y * in.upstream) (cross-entropy: of the scalar loss). Odd sizes (1, 7, 33, 129)
sit on the dimensions the C# kernels vectorise.
"""
import math
import os
import sys

import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden  # noqa: E402

FOLDER = "ops_b"
torch.manual_seed(20261122)


def rand(*shape):
    return torch.randn(*shape, dtype=torch.float32)


def case(name, op, args, inputs, trainable, forward, ints=None):
    """Runs forward on the float inputs (those in `trainable` get gradients) and saves the case."""
    leaves = {k: v.clone().requires_grad_(k in trainable) for k, v in inputs.items()}
    y = forward(leaves)
    grads = {}
    stored = dict(inputs)
    if trainable:
        if y.dim() == 0:
            y.backward()
        else:
            upstream = rand(*y.shape)
            stored["upstream"] = upstream
            (y * upstream).sum().backward()
        grads = {k: leaves[k].grad for k in trainable}
    stored.update(ints or {})
    golden.save_case(FOLDER, name, op, args, stored, {"y": y}, grads)


def internvl_pixel_shuffle(x, scale_factor=0.5):
    """InternVL's InternVLChatModel.pixel_shuffle with ps_version 'v2', verbatim apart from self."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    x = x.permute(0, 2, 1, 3).contiguous()
    return x


def op_cases():
    # Embedding: F32 trainable (repeated ids accumulate), BF16 and F16 weights read in place (forward only).
    for name, dtype, vocab, channels, id_shape in (("f32_c129", None, 11, 129, (2, 7)), ("bf16_c33", torch.bfloat16, 9, 33, (7,)),
                                                   ("f16_c7", torch.float16, 5, 7, (1, 3))):
        weight = rand(vocab, channels)
        if dtype is not None:
            weight = weight.to(dtype).to(torch.float32)
        ids = torch.randint(0, vocab, id_shape)
        ids.view(-1)[0] = ids.view(-1)[-1]
        case(f"embedding_{name}", "embedding", {"dtype": "f32" if dtype is None else str(dtype).split(".")[1], "idShape": list(id_shape)},
             {"weight": weight}, ["weight"] if dtype is None else [], lambda t, ids=ids: F.embedding(ids, t["weight"]), {"ids": ids})

    for name, shapes, axis in (("axis1", [(2, 3, 7), (2, 1, 7), (2, 5, 7)], 1), ("last_33", [(3, 1), (3, 33), (3, 7)], -1),
                               ("axis0", [(1, 129), (2, 129)], 0)):
        inputs = {f"part{i}": rand(*s) for i, s in enumerate(shapes)}
        case(f"concat_{name}", "concat", {"axis": axis, "parts": len(shapes)}, inputs, list(inputs),
             lambda t, n=len(shapes), axis=axis: torch.cat([t[f"part{i}"] for i in range(n)], dim=axis))

    for name, shape, axis, start, length in (("mid", (3, 33, 5), 1, 4, 7), ("last", (2, 129), -1, 33, 1), ("first", (7, 3), 0, 0, 7)):
        case(f"slice_{name}", "slice", {"axis": axis, "start": start, "length": length}, {"x": rand(*shape)}, ["x"],
             lambda t, axis=axis, start=start, length=length: t["x"].narrow(axis, start, length).contiguous())

    for name, shape, a0, a1 in (("bthd", (2, 7, 3, 5), 1, 2), ("outer_inner1", (2, 3, 4, 33), 0, -1), ("inner1", (3, 7, 2, 1), 1, 3),
                                ("matrix", (33, 7), 0, 1)):
        case(f"transpose_{name}", "transpose", {"axis0": a0, "axis1": a1}, {"x": rand(*shape)}, ["x"],
             lambda t, a0=a0, a1=a1: t["x"].transpose(a0, a1).contiguous())

    x = rand(2, 7, 33)
    rows = torch.tensor([3, 0, 13, 3, 7, 3], dtype=torch.int64)
    case("gather_rows_repeated", "gather_rows", {}, {"x": x}, ["x"], lambda t: t["x"].reshape(-1, 33)[rows], {"rows": rows})
    x = rand(129, 1)
    rows = torch.tensor([128, 5], dtype=torch.int64)
    case("gather_rows_width1", "gather_rows", {}, {"x": x}, ["x"], lambda t: t["x"][rows], {"rows": rows})

    for name, shape, rows in (("c33", (13, 33), [4, 0, 12, 7, 9]), ("batched_c7", (2, 3, 7), [5, 1])):
        rows = torch.tensor(rows, dtype=torch.int64)
        width = shape[-1]

        def scatter(t, rows=rows, width=width):
            flat = t["x"].reshape(-1, width)
            return flat.index_copy(0, rows, t["source"]).reshape(t["x"].shape)
        case(f"scatter_rows_{name}", "scatter_rows", {}, {"x": rand(*shape), "source": rand(len(rows), width)}, ["x", "source"], scatter,
             {"rows": rows})

    for name, images, cout, patch, bias in (("bias", (2, 3, 8, 12), 7, 4, True), ("nobias_c33", (1, 2, 6, 4), 33, 2, False),
                                            ("patch1", (1, 1, 1, 3), 1, 1, True)):
        cin = images[1]
        inputs = {"images": rand(*images), "weight": rand(cout, cin, patch, patch)}
        if bias:
            inputs["bias"] = rand(cout)

        def patchify(t, patch=patch):
            y = F.conv2d(t["images"], t["weight"], t.get("bias"), stride=patch)
            return y.flatten(2).transpose(1, 2)
        case(f"patchify_{name}", "patchify", {"patch": patch}, inputs, list(inputs), patchify)

    case("pixel_shuffle_internvl", "pixel_shuffle", {"factor": 2}, {"x": rand(2, 4, 6, 7)}, ["x"],
         lambda t: internvl_pixel_shuffle(t["x"], 0.5))
    case("pixel_shuffle_factor3", "pixel_shuffle", {"factor": 3}, {"x": rand(1, 6, 3, 5)}, ["x"],
         lambda t: internvl_pixel_shuffle(t["x"], 1 / 3))

    for name, rows, vocab, scale, ignored in (("v33", 7, 33, 1.0, [2, 5]), ("v129_large", 5, 129, 40.0, [0]), ("row1_v7", 1, 7, 1.0, []),
                                              ("v1", 3, 1, 1.0, [1])):
        targets = torch.randint(0, vocab, (rows,))
        for i in ignored:
            targets[i] = -100
        case(f"cross_entropy_{name}", "cross_entropy", {"ignoreIndex": -100}, {"logits": rand(rows, vocab) * scale}, ["logits"],
             lambda t, targets=targets: F.cross_entropy(t["logits"], targets, ignore_index=-100), {"targets": targets})
    targets = torch.tensor([1, 4, 0, 4])
    case("cross_entropy_ignore4", "cross_entropy", {"ignoreIndex": 4}, {"logits": rand(4, 5)}, ["logits"],
         lambda t: F.cross_entropy(t["logits"], targets, ignore_index=4), {"targets": targets})

    case("linear_bias", "linear", {}, {"x": rand(2, 7, 33), "weight": rand(129, 33), "bias": rand(129)}, ["x", "weight", "bias"],
         lambda t: F.linear(t["x"], t["weight"], t["bias"]))
    case("linear_nobias", "linear", {}, {"x": rand(1, 7), "weight": rand(33, 7)}, ["x", "weight"], lambda t: F.linear(t["x"], t["weight"]))
    case("linear_bf16_frozen", "linear", {"dtype": "bfloat16"}, {"x": rand(3, 33), "weight": rand(7, 33).to(torch.bfloat16).float()}, ["x"],
         lambda t: F.linear(t["x"], t["weight"]))

    case("matmul_batched", "matmul", {}, {"a": rand(2, 3, 7, 33), "b": rand(2, 3, 33, 5)}, ["a", "b"], lambda t: t["a"] @ t["b"])
    case("matmul_shared_b", "matmul", {}, {"a": rand(3, 7, 33), "b": rand(33, 1)}, ["a", "b"], lambda t: t["a"] @ t["b"])

    case("add_bias", "add", {}, {"a": rand(2, 7, 33), "b": rand(33)}, ["a", "b"], lambda t: t["a"] + t["b"])
    case("add_trailing2d", "add", {}, {"a": rand(3, 7, 129), "b": rand(7, 129)}, ["a", "b"], lambda t: t["a"] + t["b"])
    case("add_same", "add", {}, {"a": rand(1, 33), "b": rand(1, 33)}, ["a", "b"], lambda t: t["a"] + t["b"])


def warmup_cosine(base_lr, warmup, total, min_lr):
    """transformers' get_cosine_schedule_with_warmup lambda (num_cycles 0.5), with its min-lr variant, as lr."""
    def lr(step):
        if step < warmup:
            return base_lr * float(step) / float(max(1, warmup))
        progress = float(step - warmup) / float(max(1, total - warmup))
        factor = max(0.0, 0.5 * (1.0 + math.cos(math.pi * 0.5 * 2.0 * progress)))
        return min_lr + (base_lr - min_lr) * factor
    return lr


def adamw_trajectory():
    """Two groups (decay 0.1 and 0), warm-up + cosine lr, clipping to 1.0, one parameter without a gradient at step 2."""
    steps, base_lr, warmup, total, min_lr, max_norm = 5, 0.05, 2, 5, 0.005, 1.0
    shapes = {"w1": (7, 33), "w2": (5, 3), "b1": (33,)}
    initial = {k: rand(*s) for k, s in shapes.items()}
    params = {k: v.clone().requires_grad_(True) for k, v in initial.items()}
    opt = torch.optim.AdamW([{"params": [params["w1"], params["w2"]], "weight_decay": 0.1},
                             {"params": [params["b1"]], "weight_decay": 0.0}], lr=base_lr, betas=(0.9, 0.95), eps=1e-8)
    schedule = warmup_cosine(base_lr, warmup, total, min_lr)
    inputs = {f"initial.{k}": v for k, v in initial.items()}
    outputs = {}
    for step in range(steps):
        # Steps 0 and 3 have large gradients (clipped); the others small (not clipped).
        size = 0.5 if step in (0, 3) else 0.01
        for k, p in params.items():
            if step == 2 and k == "b1":
                p.grad = None
                continue
            g = rand(*shapes[k]) * size
            inputs[f"grad{step}.{k}"] = g
            p.grad = g.clone()
        for group in opt.param_groups:
            group["lr"] = schedule(step)
        norm = torch.nn.utils.clip_grad_norm_([params["w1"], params["w2"], params["b1"]], max_norm)
        opt.step()
        outputs[f"norm{step}"] = norm.reshape(1)
        outputs[f"lr{step}"] = torch.tensor([schedule(step)], dtype=torch.float32)
        for k, p in params.items():
            outputs[f"step{step}.{k}"] = p.detach().clone()
    args = {"steps": steps, "baseLr": base_lr, "warmup": warmup, "total": total, "minLr": min_lr, "maxNorm": max_norm,
            "beta1": 0.9, "beta2": 0.95, "eps": 1e-8, "weightDecay": 0.1}
    golden.save_case(FOLDER, "adamw_trajectory", "adamw", args, inputs, outputs, {})


if __name__ == "__main__":
    op_cases()
    adamw_trajectory()
    folder = os.path.join(golden.GOLDEN, FOLDER)
    files = sorted(os.listdir(folder))
    print(f"{len(files)} cases, {sum(os.path.getsize(os.path.join(folder, f)) for f in files)} bytes in {folder}")
