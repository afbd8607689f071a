"""Golden files for Graft's safetensors reader and writer, made and checked with golden.py's independent code.

Write the golden files (tests/Graft.Tests/Golden/safetensors/):
    /usr/bin/python3 tools/reference/safetensors_golden.py
It writes all_dtypes.safetensors (every dtype, NaN/-0/inf/subnormal bits, a 0-d scalar, empty tensors,
metadata), misaligned.safetensors (data not aligned to its element size), sharded/ (two shards and a
model.safetensors.index.json) and expected.json, which holds the exact bits the C# tests compare against,
plus the spec of written_by_graft.safetensors.

Check a file Graft's writer produced (the reverse direction):
    /usr/bin/python3 tools/reference/safetensors_golden.py --check tests/Graft.Tests/Golden/safetensors/written_by_graft.safetensors
The C# test SafeTensorsGoldenTests.WriterOutputMatchesCommittedFile writes that file again from the spec in
expected.json and requires it to be byte-identical to the committed one; when the writer changes on purpose,
the test's failure message says where its new output is: copy it over the committed file and re-run --check.
"""
import json
import os
import struct
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from golden import GOLDEN, load_safetensors, save_safetensors  # noqa: E402

FOLDER = os.path.join(GOLDEN, "safetensors")

F32_BITS = [0x7FC00000, 0x80000000, 0x7F800000, 0xFF800000, 0x00000001, 0x40600000]  # NaN, -0, inf, -inf, min subnormal, 3.5
F16_BITS = [0x7E00, 0x8000, 0x0001, 0x3C00, 0xFC00, 0x7BFF]  # NaN, -0, min subnormal, 1, -inf, max
BF16_BITS = [0x7FC0, 0x8000, 0x0001, 0x3F80]  # NaN, -0, min subnormal, 1

# What the C# writer test writes (and --check verifies), in header order.
WRITTEN_BY_GRAFT = {
    "metadata": {"producer": "graft", "note": "naïve ✓"},
    "tensors": [
        {"name": "weight.f32", "dtype": "F32", "shape": [2, 3], "bits": F32_BITS},
        {"name": "weight.bf16", "dtype": "BF16", "shape": [4], "bits": BF16_BITS},
        {"name": "wëight.f16", "dtype": "F16", "shape": [3, 2], "bits": F16_BITS},
        {"name": "scalar", "dtype": "F32", "shape": [], "bits": [0x3F800000]},
        {"name": "empty", "dtype": "F32", "shape": [0, 3], "bits": []},
    ],
}


def from_bits(dtype, bits, shape):
    """A tensor of a float dtype with exactly the given bit patterns."""
    if dtype == "F32":
        signed = [b - (1 << 32) if b >= 1 << 31 else b for b in bits]
        return torch.tensor(signed, dtype=torch.int32).view(torch.float32).reshape(shape)
    signed = [b - (1 << 16) if b >= 1 << 15 else b for b in bits]
    target = torch.float16 if dtype == "F16" else torch.bfloat16
    return torch.tensor(signed, dtype=torch.int16).view(target).reshape(shape)


def bits_of(t):
    """Exact bits of a float tensor, or values of an integer/bool tensor, flattened."""
    t = t.contiguous().reshape(-1)
    if t.dtype == torch.float32:
        return [v & 0xFFFFFFFF for v in t.view(torch.int32).tolist()]
    if t.dtype in (torch.float16, torch.bfloat16):
        return [v & 0xFFFF for v in t.view(torch.int16).tolist()]
    return [int(v) for v in t.tolist()]


def describe(tensors, metadata):
    names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.int64: "I64",
             torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}
    return {"metadata": metadata or {},
            "tensors": [{"name": n, "dtype": names[t.dtype], "shape": list(t.shape), "bits": bits_of(t)} for n, t in tensors.items()]}


def write_goldens():
    expected = {}

    def save(relative, tensors, metadata=None):
        save_safetensors(os.path.join(FOLDER, relative), tensors, metadata)
        expected[relative] = describe(tensors, metadata)

    save("all_dtypes.safetensors", {
        "f32": from_bits("F32", F32_BITS, [2, 3]),
        "f16": from_bits("F16", F16_BITS, [6]),
        "bf16": from_bits("BF16", BF16_BITS, [2, 2]),
        "i64": torch.tensor([-(1 << 63), (1 << 63) - 1, 0, -1], dtype=torch.int64),
        "i32": torch.tensor([[-(1 << 31), (1 << 31) - 1]], dtype=torch.int32),
        "i8": torch.tensor([-128, 127, 0, -1], dtype=torch.int8),
        "u8": torch.tensor([0, 255, 7, 128], dtype=torch.uint8),
        "bool": torch.tensor([[True, False], [False, True]]),
        "scalar": torch.tensor(2.5, dtype=torch.float32),
        "empty_f32": torch.zeros(0, 4, dtype=torch.float32),
        "empty_i64": torch.zeros(0, dtype=torch.int64),
    }, {"format": "pt", "note": "ünïcode ✓"})
    # A 3-byte tensor first puts the F32 and BF16 data at odd offsets: readers must copy, not wrap.
    save("misaligned.safetensors", {
        "u8": torch.tensor([1, 2, 3], dtype=torch.uint8),
        "f32": torch.tensor([1.5, -2.25], dtype=torch.float32),
        "bf16": from_bits("BF16", [0x3F80, 0xC000, 0x7FC0], [3]),
    })

    shards = {
        "model-00001-of-00002.safetensors": {
            "embed.weight": torch.arange(12, dtype=torch.float32).reshape(3, 4),
            "layers.0.weight": from_bits("BF16", BF16_BITS, [4]),
        },
        "model-00002-of-00002.safetensors": {
            "layers.1.weight": torch.tensor([[0.5, -0.5]], dtype=torch.float16),
            "positions": torch.tensor([0, 1, 2], dtype=torch.int64),
        },
    }
    weight_map = {}
    total = 0
    for shard, tensors in shards.items():
        save(os.path.join("sharded", shard), tensors)
        for name, t in tensors.items():
            weight_map[name] = shard
            total += t.numel() * t.element_size()
    with open(os.path.join(FOLDER, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)

    with open(os.path.join(FOLDER, "expected.json"), "w") as f:
        json.dump({"files": expected, "written_by_graft": WRITTEN_BY_GRAFT}, f, indent=1, ensure_ascii=False)


def check(path):
    """Reads a file Graft wrote with golden.py's reader; verifies the layout and every bit against the spec."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0, f"header length {n} is not a multiple of 8"
    header_text = data[8:8 + n].decode("utf-8")
    assert header_text == header_text.rstrip(" ") + " " * (len(header_text) - len(header_text.rstrip(" "))), "padding is not spaces"
    header = json.loads(header_text)
    order = [k for k in header if k != "__metadata__"]
    assert order == [t["name"] for t in WRITTEN_BY_GRAFT["tensors"]], f"header order {order}"
    offset = 0
    for name in order:
        begin, end = header[name]["data_offsets"]
        assert begin == offset, f"{name}: begins at {begin}, expected {offset}"
        offset = end
    assert 8 + n + offset == len(data), f"data section is {len(data) - 8 - n} bytes, tensors cover {offset}"

    tensors, metadata = load_safetensors(path)
    assert metadata == WRITTEN_BY_GRAFT["metadata"], f"metadata {metadata}"
    for spec in WRITTEN_BY_GRAFT["tensors"]:
        t = tensors[spec["name"]]
        assert header[spec["name"]]["dtype"] == spec["dtype"], f"{spec['name']}: dtype {header[spec['name']]['dtype']}"
        assert list(t.shape) == spec["shape"], f"{spec['name']}: shape {list(t.shape)}"
        assert bits_of(t) == spec["bits"], f"{spec['name']}: bits {bits_of(t)} != {spec['bits']}"
    print(f"{path}: OK ({len(order)} tensors, {len(metadata)} metadata entries, bit-exact)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        write_goldens()
    else:
        sys.exit(__doc__)
