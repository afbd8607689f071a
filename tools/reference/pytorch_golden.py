"""Golden PyTorch checkpoint files, written by Debian's PyTorch (1.13) in both of torch.save's layouts.

Writes, under tests/Graft.Tests/Golden/pytorch/:
  state_zip.pt, state_legacy.pt   the same object saved with torch.save, zip format (the default since 1.6) and the
                                  legacy pickle format (_use_new_zipfile_serialization=False):
                                  {"model": OrderedDict state dict (every storage dtype, a transposed view, a slice
                                  at a storage offset sharing its storage, a scalar, an empty tensor, an
                                  nn.Parameter, a row-strided view), "epoch": 3, "names": [...], "blob": bytes,
                                  "nested": [tensor, {"deep": tensor}]}
  plain_zip.bin, plain_legacy.bin a bare state dict (as pytorch_model.bin and mm_projector.bin are), bf16 weights
  expected.safetensors            every tensor of state_*.pt by its dotted name, made contiguous (float64 narrowed to
                                  float32, the others in their own dtype)
  hostile_*.pt                    objects whose pickles name other globals (os.system, builtins.eval, a class of
                                  this script, argparse.Namespace), in both formats
  hostile.json                    for each hostile file: the global's name and the byte offset (in the file) of the
                                  opcode that names it, found with pickletools
Run: /usr/bin/python3 tools/reference/pytorch_golden.py
"""
import argparse
import collections
import json
import os
import pickletools
import zipfile

import torch

from golden import GOLDEN, save_safetensors

OUT = os.path.join(GOLDEN, "pytorch")


def state():
    g = torch.Generator().manual_seed(17)
    base = torch.randn(6, 5, generator=g)
    shared = torch.randn(40, generator=g)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f64"] = torch.randn(2, 3, generator=g, dtype=torch.float64)
    sd["f16"] = torch.randn(4, 2, generator=g).half()
    sd["bf16"] = torch.randn(2, 2, 3, generator=g).bfloat16()
    sd["i64"] = torch.arange(-3, 9, dtype=torch.int64).reshape(3, 4)
    sd["i32"] = torch.tensor([7, -8, 2 ** 31 - 1], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-128, 127, 0], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 255, 9], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    sd["transposed"] = base.t()                 # stride (1, 5)
    sd["rows"] = base[::2, 1:4]                 # offset 1, stride (10, 1)
    sd["shared_a"] = shared[3:15].view(3, 4)    # offset 3 in a shared storage
    sd["shared_b"] = shared[20:26]              # offset 20 in the same storage
    sd["scalar"] = torch.tensor(2.5)
    sd["empty"] = torch.zeros(0, 3)
    sd["param"] = torch.nn.Parameter(torch.randn(2, 2, generator=g))
    sd["expanded"] = torch.randn(1, 3, generator=g).expand(4, 3)   # stride (0, 1)
    sd._metadata = collections.OrderedDict([("", {"version": 1})])
    return {
        "model": sd,
        "epoch": 3,
        "names": ["a", "b", 1.5, None, True],
        "blob": b"\x00\x01bytes",
        "nested": [torch.randn(2, generator=g), {"deep": torch.randn(1, 2, generator=g)}],
    }


def flatten(obj, prefix=""):
    out = {}
    if isinstance(obj, torch.Tensor):
        out[prefix or "tensor"] = obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            out.update(flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out.update(flatten(v, f"{prefix}.{i}" if prefix else str(i)))
    return out


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class Evaluating:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("1+1",))


class Custom:
    def __init__(self):
        self.x = 1


def global_offset(path, name):
    """File offset of the first GLOBAL/STACK_GLOBAL opcode naming `name` in the object's pickle."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:2] == b"PK":
        with zipfile.ZipFile(path) as z:
            info = next(i for i in z.infolist() if i.filename.endswith("/data.pkl"))
            local = data[info.header_offset:info.header_offset + 30]
            start = info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")
            pkl = z.read(info)
    else:
        # legacy: the object is the fourth pickle
        import io
        f = io.BytesIO(data)
        for _ in range(3):
            for _op in pickletools.genops(f):
                pass
        start = f.tell()
        pkl = data[start:]
    attr = name.rpartition(".")[2]
    for op, arg, pos in pickletools.genops(pkl):
        if op.name == "GLOBAL" and arg.split(" ")[1] == attr:
            return arg.replace(" ", "."), start + pos
    raise AssertionError(f"{name} not found in {path}")


def main():
    os.makedirs(OUT, exist_ok=True)
    obj = state()
    torch.save(obj, os.path.join(OUT, "state_zip.pt"))
    torch.save(obj, os.path.join(OUT, "state_legacy.pt"), _use_new_zipfile_serialization=False)
    for fmt, new in (("zip", True), ("legacy", False)):
        path = os.path.join(OUT, f"state_{fmt}.pt")
        again = flatten(torch.load(path))
        mine = flatten(obj)
        assert again.keys() == mine.keys()
        for k in mine:
            assert torch.equal(again[k], mine[k]), k

    g = torch.Generator().manual_seed(5)
    plain = collections.OrderedDict((f"model.mm_projector.{i}.weight", torch.randn(4, 3, generator=g).bfloat16()) for i in (0, 2))
    torch.save(plain, os.path.join(OUT, "plain_zip.bin"))
    torch.save(plain, os.path.join(OUT, "plain_legacy.bin"), _use_new_zipfile_serialization=False)

    expected = {}
    for name, t in flatten(obj).items():
        t = t.detach().contiguous()
        expected[name] = t.float() if t.dtype == torch.float64 else (t.to(torch.int32) if t.dtype == torch.int16 else t)
    for name, t in plain.items():
        expected["plain." + name] = t
    save_safetensors(os.path.join(OUT, "expected.safetensors"), expected)

    hostile = {}
    for case, value, name in (
        ("system", {"w": torch.zeros(2), "x": Evil()}, "posix.system"),
        ("eval", [Evaluating()], "__builtin__.eval"),
        ("class", {"obj": Custom()}, "__main__.Custom"),
        ("namespace", {"args": argparse.Namespace(lr=0.1), "model": {"w": torch.ones(1)}}, "argparse.Namespace"),
    ):
        for fmt, new in (("zip", True), ("legacy", False)):
            file = f"hostile_{case}_{fmt}.pt"
            path = os.path.join(OUT, file)
            torch.save(value, path, _use_new_zipfile_serialization=new)
            found, offset = global_offset(path, name)
            hostile[file] = {"global": found, "offset": offset}
    with open(os.path.join(OUT, "hostile.json"), "w") as f:
        json.dump(hostile, f, indent=2, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
