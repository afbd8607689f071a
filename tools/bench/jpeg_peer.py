#!/usr/bin/python3
"""Peer timings for `graft bench vision`'s image rows: PIL decoding a JPEG that this script writes, then CLIP
preprocessing (resize, crop, normalize) in PIL + numpy. (The ViT's peer is libtorch, in bench/Graft.Peers.)

Reads one JSON object on stdin:
  {"image": int, "jpeg": {"folder": str, "width": int, "height": int, "repeats": int}}
Writes one JSON object on stdout:
  {"jpeg": {"path": str, "bytes": int, "decode_seconds": [..], "decode_preprocess_seconds": [..], "size": int}}
"""
import json
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


def main():
    spec = json.load(sys.stdin)
    result = {}
    jpeg = spec["jpeg"]
    path = write_jpeg(jpeg)
    decode, preprocess = time_pil(path, spec["image"], jpeg["repeats"])
    result["jpeg"] = {"path": path, "bytes": os.path.getsize(path), "decode_seconds": decode,
                      "decode_preprocess_seconds": preprocess, "size": spec["image"]}
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
