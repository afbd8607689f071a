"""Shared helpers for the PyTorch oracle: an independent safetensors writer/reader and golden cases.

Run the scripts in this folder with Debian's interpreter and packages:
    apt-get install python3-torch python3-numpy
    /usr/bin/python3 tools/reference/ops_golden.py
They write files under tests/Graft.Tests/Golden/, which are committed; the C# tests never run Python.
References are computed in float32 (Debian's torch crashes on bf16 matmul on this CPU) and float64
where a tighter oracle is wanted, then stored as float32.
"""
import json
import os
import struct

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
GOLDEN = os.path.join(REPO, "tests", "Graft.Tests", "Golden")

_DTYPES = {
    torch.float32: ("F32", 4),
    torch.float16: ("F16", 2),
    torch.bfloat16: ("BF16", 2),
    torch.int64: ("I64", 8),
    torch.int32: ("I32", 4),
    torch.int8: ("I8", 1),
    torch.uint8: ("U8", 1),
    torch.bool: ("BOOL", 1),
}
_BY_NAME = {name: dtype for dtype, (name, _) in _DTYPES.items()}


def _raw_bytes(t):
    t = t.detach().contiguous().cpu()
    if t.dtype in (torch.bfloat16, torch.float16):
        return t.view(torch.int16).numpy().tobytes()
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy().tobytes()
    return t.numpy().tobytes()


def save_safetensors(path, tensors, metadata=None):
    """Writes {name: tensor} in the safetensors format, header padded to 8 bytes."""
    header = {}
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    blobs = []
    offset = 0
    for name, t in tensors.items():
        raw = _raw_bytes(t)
        header[name] = {"dtype": _DTYPES[t.dtype][0], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * ((8 - len(encoded) % 8) % 8)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)))
        f.write(encoded)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def load_safetensors(path):
    """Reads a safetensors file into ({name: tensor}, metadata); used to check files Graft wrote."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    metadata = header.pop("__metadata__", {})
    out = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        raw = bytearray(data[8 + n + begin:8 + n + end])
        dtype = _BY_NAME[info["dtype"]]
        if dtype in (torch.bfloat16, torch.float16):
            t = torch.frombuffer(raw, dtype=torch.int16).view(dtype) if raw else torch.empty(0, dtype=dtype)
        elif dtype == torch.bool:
            t = torch.frombuffer(raw, dtype=torch.uint8).to(torch.bool) if raw else torch.empty(0, dtype=dtype)
        else:
            t = torch.frombuffer(raw, dtype=dtype) if raw else torch.empty(0, dtype=dtype)
        out[name] = t.reshape(info["shape"]).clone()
    return out, metadata


def save_case(folder, case, op, args, inputs, outputs, grads):
    """One golden case: inputs `in.*`, outputs `out.*`, gradients `grad.*` of sum(out.y * in.upstream)."""
    tensors = {}
    for prefix, group in (("in", inputs), ("out", outputs), ("grad", grads)):
        for name, t in group.items():
            tensors[f"{prefix}.{name}"] = t.detach().to(torch.float32) if t.is_floating_point() else t.detach()
    save_safetensors(os.path.join(GOLDEN, folder, case + ".safetensors"), tensors, {"op": op, "args": json.dumps(args)})
