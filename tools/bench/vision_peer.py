#!/usr/bin/python3
"""Peer timings for `graft bench vision`: a CLIP-shaped ViT in PyTorch (eager, no_grad, random weights), and
PIL decoding (and resizing) a JPEG that this script writes.

Reads one JSON object on stdin:
  {"layers": int, "width": int, "heads": int, "intermediate": int, "patch": int, "image": int, "batch": int,
   "repeats": int, "threads": int, "jpeg": {"folder": str, "width": int, "height": int, "repeats": int}}
Writes one JSON object on stdout:
  {"torch": version or null, "torch_problem": str or null, "vit_seconds": [float, ...] (one per batch),
   "jpeg": {"path": str, "bytes": int, "decode_seconds": [..], "decode_resize_seconds": [..], "resize_to": int}}
The JPEG is written even when torch is missing, so the caller can time its own decoder on the same file.
"""
import json
import math
import os
import sys
import time

import numpy as np
from PIL import Image


def write_jpeg(spec):
    """A photo-like 4:2:0 JPEG: smooth gradients, a few shapes, mild noise (pure noise would be atypically large)."""
    w, h = spec["width"], spec["height"]
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    rng = np.random.default_rng(1)
    r = 128 + 100 * np.sin(x / 97.0) * np.cos(y / 61.0)
    g = 255 * x / w
    b = 255 * (1 - y / h)
    disc = ((x - w * 0.6) ** 2 + (y - h * 0.4) ** 2) < (min(w, h) * 0.2) ** 2
    r[disc], g[disc], b[disc] = 230, 40, 40
    image = np.stack([r, g, b], axis=-1) + rng.normal(0, 6, (h, w, 3))
    path = os.path.join(spec["folder"], f"bench_{w}x{h}.jpg")
    Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path


def time_pil(path, size, repeats):
    decode, decode_resize = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with Image.open(path) as im:
            im = im.convert("RGB")
        decoded = time.perf_counter()
        scale = size / min(im.size)
        im.resize((max(size, round(im.size[0] * scale)), max(size, round(im.size[1] * scale))), Image.BICUBIC)
        done = time.perf_counter()
        decode.append(decoded - start)
        decode_resize.append(done - start)
    return decode[1:], decode_resize[1:]


def time_vit(spec):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(spec["threads"])
    torch.manual_seed(0)
    w, heads, inner, p, layers = spec["width"], spec["heads"], spec["intermediate"], spec["patch"], spec["layers"]
    tokens = (spec["image"] // p) ** 2 + 1
    d = w // heads

    def linear(n, k):
        return torch.randn(n, k) * k ** -0.5, torch.zeros(n)

    params = {
        "patch": torch.randn(w, 3, p, p) * 0.02, "cls": torch.randn(w), "pos": torch.randn(tokens, w) * 0.02,
        "blocks": [{"q": linear(w, w), "k": linear(w, w), "v": linear(w, w), "o": linear(w, w),
                    "fc1": linear(inner, w), "fc2": linear(w, inner)} for _ in range(layers)],
    }
    ones, zeros = torch.ones(w), torch.zeros(w)

    def forward(pixels):
        b = pixels.shape[0]
        x = F.conv2d(pixels, params["patch"], stride=p).flatten(2).transpose(1, 2)
        x = torch.cat([params["cls"].expand(b, 1, w), x], dim=1) + params["pos"]
        x = F.layer_norm(x, (w,), ones, zeros)
        for blk in params["blocks"]:
            h = F.layer_norm(x, (w,), ones, zeros)
            q = F.linear(h, *blk["q"]).view(b, tokens, heads, d).transpose(1, 2)
            k = F.linear(h, *blk["k"]).view(b, tokens, heads, d).transpose(1, 2)
            v = F.linear(h, *blk["v"]).view(b, tokens, heads, d).transpose(1, 2)
            a = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1) @ v
            x = x + F.linear(a.transpose(1, 2).reshape(b, tokens, w), *blk["o"])
            h = F.linear(F.layer_norm(x, (w,), ones, zeros), *blk["fc1"])
            x = x + F.linear(h * torch.sigmoid(1.702 * h), *blk["fc2"])
        return x

    pixels = torch.randn(spec["batch"], 3, spec["image"], spec["image"])
    seconds = []
    with torch.no_grad():
        forward(pixels)  # warm-up
        for _ in range(spec["repeats"]):
            start = time.perf_counter()
            forward(pixels)
            seconds.append(time.perf_counter() - start)
    return torch.__version__, seconds


def main():
    spec = json.load(sys.stdin)
    result = {"torch": None, "torch_problem": None, "vit_seconds": []}
    jpeg = spec["jpeg"]
    path = write_jpeg(jpeg)
    decode, decode_resize = time_pil(path, spec["image"], jpeg["repeats"])
    result["jpeg"] = {"path": path, "bytes": os.path.getsize(path), "decode_seconds": decode,
                      "decode_resize_seconds": decode_resize, "resize_to": spec["image"]}
    try:
        result["torch"], result["vit_seconds"] = time_vit(spec)
    except ImportError as e:
        result["torch_problem"] = f"torch is not importable by {sys.executable}: {e}"
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
