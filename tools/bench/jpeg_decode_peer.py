"""Peer for `graft bench jpeg` (decode only; jpeg_peer.py is bench vision's): PIL (libjpeg-turbo) decode times of the given JPEG files.

Reads {"files": [...], "repeats": N} on stdin; for each file times Image.open(BytesIO(data)).load() (decode, upsampling
and colour conversion to RGB, what Graft's ImageDecoder.Decode does) N times after one warm-up, single-threaded.
Writes {"pil": version, "libjpeg_turbo": version, "seconds": [[...], ...]} to stdout.
"""
import io
import json
import sys
import time

from PIL import Image, features

request = json.load(sys.stdin)
out = []
for path in request["files"]:
    data = open(path, "rb").read()
    Image.open(io.BytesIO(data)).load()
    times = []
    for _ in range(request["repeats"]):
        start = time.perf_counter()
        im = Image.open(io.BytesIO(data))
        im.load()
        times.append(time.perf_counter() - start)
    out.append(times)
json.dump({"pil": Image.__version__, "libjpeg_turbo": features.version("libjpeg_turbo"), "seconds": out}, sys.stdout)
