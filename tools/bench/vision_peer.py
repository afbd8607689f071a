#!/usr/bin/python3
"""Peer timings for `graft bench vision`: a CLIP-shaped ViT in PyTorch (eager, no_grad, random weights), and
PIL decoding a JPEG that this script writes, then CLIP preprocessing (resize, crop, normalize) in PIL + numpy.

Reads one JSON object on stdin:
  {"layers": int, "width": int, "heads": int, "intermediate": int, "patch": int, "image": int, "batch": int,
   "repeats": int, "threads": int, "jpeg": {"folder": str, "width": int, "height": int, "repeats": int}}
Writes one JSON object on stdout:
  {"torch": version or null, "torch_problem": str or null, "vit_seconds": [float, ...] (one per batch),
   "jpeg": {"path": str, "bytes": int, "decode_seconds": [..], "decode_preprocess_seconds": [..], "resize_to": int}}
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


CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], dtype=np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], dtype=np.float32)


def time_pil(path, size, repeats):
    """PIL decode, then CLIPImageProcessor's steps: shortest edge to `size` (bicubic), center crop, rescale, normalize."""
    decode, preprocess = [], []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        with Image.open(path) as im:
            im = im.convert("RGB")
        decoded = time.perf_counter()
        w, h = im.size
        scale = size / min(w, h)
        resized = np.asarray(im.resize((int(w * scale) if w > h else size, int(h * scale) if h > w else size), Image.BICUBIC))
        top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
        x = (resized[top:top + size, left:left + size].astype(np.float64) * (1 / 255)).astype(np.float32)
        np.ascontiguousarray(((x - CLIP_MEAN) / CLIP_STD).transpose(2, 0, 1))
        done = time.perf_counter()
        decode.append(decoded - start)
        preprocess.append(done - start)
    return decode[1:], preprocess[1:]


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
    decode, preprocess = time_pil(path, spec["image"], jpeg["repeats"])
    result["jpeg"] = {"path": path, "bytes": os.path.getsize(path), "decode_seconds": decode,
                      "decode_preprocess_seconds": preprocess, "size": spec["image"]}
    try:
        result["torch"], result["vit_seconds"] = time_vit(spec)
    except ImportError as e:
        result["torch_problem"] = f"torch is not importable by {sys.executable}: {e}"
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
