"""Golden images for Graft.Models.Imaging: small PNG / JPEG / PPM files and the RGB pixels PIL decodes them to.

Run with Debian's interpreter (PIL 9.4, libjpeg-turbo, numpy):
    /usr/bin/python3 tools/reference/images_golden.py
Writes tests/Graft.Tests/Golden/images/: each case's encoded file, `<case>.rgb` (expected 8-bit RGB, row-major,
interleaved) and manifest.json (file, width, height, tolerance). The C# tests never run Python.

What "expected" means (our API's definition; PIL is the oracle for the decoding itself):
- Alpha is composited onto white: out = (c * a + 255 * (255 - a) + 127) // 255 (round to nearest).
  PIL's Image.convert("RGB") drops alpha instead, so the script composites PIL's RGBA itself.
- 16-bit samples keep their high byte (PIL does so for RGB/RGBA/LA PNGs; for 16-bit gray PIL opens mode "I"
  and its convert("RGB") clips, so we take value >> 8 from PIL's "I" data). tRNS colour keys compare the full
  16-bit sample (PNG spec), so those alphas come from the raw data this script wrote.
- Sub-byte gray is scaled v * 255 / (2^depth - 1) (PIL's L;1/L;2/L;4); its tRNS key compares the raw sample.
- PPM/PGM samples are scaled round(v / maxval * 255) in doubles, halves to even (PIL's PpmDecoder for RGB and 8-bit
  gray; PIL opens gray with maxval > 255 as mode "I" and clips on convert("RGB"), we scale it the same way).
- JPEG: PIL's decode (libjpeg-turbo, islow IDCT, fancy upsampling), then ImageOps.exif_transpose.
  Tolerance: max |diff| <= 2 and mean |diff| <= 0.5. PNG and PPM: exact.
PNG variants PIL cannot write (bit depths, Adam7, tRNS keys, multiple IDATs, all five filters) are written here
with zlib + struct; JPEG variants PIL cannot write (restart markers, 4:4:0, 4:1:1, 16-bit DQT, YCCK, Adobe RGB)
come from the small baseline encoder below, and are decoded by PIL for the expected pixels.
"""
import heapq
import io
import json
import math
import os
import struct
import zlib

import numpy as np
from PIL import Image, ImageOps

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "tests", "Graft.Tests", "Golden", "images")
JPEG_TOL = (2, 0.5)
EXACT = (0, 0.0)


def test_pattern(w, h, seed, channels=3):
    """Gradients, a disc with hard edges and mild noise: smooth areas and edges for every codec path."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 255 * x / max(w - 1, 1)
    g = 255 * y / max(h - 1, 1)
    b = 128 + 100 * np.sin((x + 2 * y) / 3.0)
    disc = (x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(w, h) / 3) ** 2
    img = np.stack([r, g, b, 255 - r][:channels], axis=-1)
    img[disc] = np.array([250, 30, 60, 90][:channels])
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def composite(rgb, alpha):
    rgb = rgb.astype(np.int64)
    a = alpha.astype(np.int64)[..., None]
    return ((rgb * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


# ----------------------------------------------------------------------------------------------- PNG writer
def _chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def _pack_rows(samples, depth):
    """samples: (rows, width * channels) integers -> packed bytes per row (big-endian, MSB-first bits)."""
    rows = []
    for row in samples:
        if depth == 16:
            rows.append(row.astype(">u2").tobytes())
        elif depth == 8:
            rows.append(row.astype(np.uint8).tobytes())
        else:
            per = 8 // depth
            padded = np.concatenate([row, np.zeros((-len(row)) % per, dtype=row.dtype)]).astype(np.int64)
            packed = np.zeros(len(padded) // per, dtype=np.int64)
            for i in range(per):
                packed = packed | (padded[i::per] << (8 - depth * (i + 1)))
            rows.append(packed.astype(np.uint8).tobytes())
    return rows


def _filter_rows(rows, bpp, first_filter):
    """Applies filters 0..4 in turn (starting at first_filter) so every filter is exercised."""
    out = b""
    prior = bytes(len(rows[0])) if rows else b""
    for i, row in enumerate(rows):
        ftype = (first_filter + i) % 5
        cur = bytearray(len(row))
        for j in range(len(row)):
            a = row[j - bpp] if j >= bpp else 0
            b = prior[j]
            c = prior[j - bpp] if j >= bpp else 0
            if ftype == 0:
                pred = 0
            elif ftype == 1:
                pred = a
            elif ftype == 2:
                pred = b
            elif ftype == 3:
                pred = (a + b) // 2
            else:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[j] = (row[j] - pred) & 0xFF
        out += bytes([ftype]) + bytes(cur)
        prior = row
    return out


ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]


def write_png(path, samples, depth, color_type, palette=None, trns=None, interlace=False):
    """samples: (H, W, C) raw sample values at `depth` bits."""
    h, w, c = samples.shape
    bpp = max(1, c * depth // 8)
    raw = b""
    passes = ADAM7 if interlace else [(0, 0, 1, 1)]
    for n, (x0, y0, dx, dy) in enumerate(passes):
        sub = samples[y0::dy, x0::dx]
        if sub.size == 0:
            continue
        rows = _pack_rows(sub.reshape(sub.shape[0], -1), depth)
        raw += _filter_rows(rows, bpp, n)
    data = zlib.compress(raw, 9)
    png = b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, color_type, 0, 0, int(interlace)))
    png += _chunk(b"tEXt", b"Comment\x00ancillary chunks are skipped")
    if palette is not None:
        png += _chunk(b"PLTE", np.asarray(palette, dtype=np.uint8).tobytes())
    if trns is not None:
        png += _chunk(b"tRNS", trns)
    for i in range(0, len(data), 64):  # several IDAT chunks
        png += _chunk(b"IDAT", data[i:i + 64])
    png += _chunk(b"IEND", b"")
    with open(path, "wb") as f:
        f.write(png)


# ------------------------------------------------------------------------------------ baseline JPEG encoder
ZIGZAG = [0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20, 13, 6, 7, 14,
          21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59, 52, 45, 38, 31, 39, 46, 53,
          60, 61, 54, 47, 55, 62, 63]
DCT = np.array([[(math.sqrt(1 / 8) if u == 0 else math.sqrt(2 / 8)) * math.cos((2 * x + 1) * u * math.pi / 16)
                 for x in range(8)] for u in range(8)])


def _huffman_table(freq, all_symbols):
    """Code lengths by Huffman's algorithm limited to 16 bits (T.81 Annex K.2). Every legal symbol gets a code,
    the unused ones with weight 1, so tables have long (> 9 bit) codes too."""
    weights = {s: 1 for s in all_symbols}
    for s, n in freq.items():
        weights[s] = n * 1000
    weights[256] = 0  # reserved: keeps the all-ones code out
    heap = [(n, i, [s]) for i, (s, n) in enumerate(weights.items())]
    heapq.heapify(heap)
    lengths = {s: 0 for s in weights}
    order = len(heap)
    while len(heap) > 1:
        n1, _, s1 = heapq.heappop(heap)
        n2, _, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (n1 + n2, order, s1 + s2))
        order += 1
    bits = [0] * 40
    for s, n in lengths.items():
        bits[n] += 1
    for i in range(39, 16, -1):
        while bits[i] > 0:
            j = i - 2
            while bits[j] == 0:
                j -= 1
            bits[i] -= 2
            bits[i - 1] += 1
            bits[j + 1] += 2
            bits[j] -= 1
    i = 16
    while bits[i] == 0:
        i -= 1
    bits[i] -= 1  # drop the reserved symbol (longest code)
    symbols = sorted((s for s in weights if s != 256), key=lambda s: (lengths[s], s))
    codes, code, k = {}, 0, 0
    for length in range(1, 17):
        for _ in range(bits[length]):
            codes[symbols[k]] = (code, length)
            code += 1
            k += 1
        code <<= 1
    return bits[1:17], symbols, codes


def _category(v):
    return 0 if v == 0 else int(abs(v)).bit_length()


def encode_jpeg(path, planes, sampling, quality_scale, restart=0, q16=False, app=(b"JFIF",), adobe_transform=None,
                ids=None):
    """Baseline (or SOF1 with 16-bit DQT) Huffman JPEG of full-resolution component planes (H, W) uint8."""
    h, w = planes[0].shape
    hmax, vmax = max(s[0] for s in sampling), max(s[1] for s in sampling)
    mcux, mcuy = -(-w // (8 * hmax)), -(-h // (8 * vmax))
    base = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14,
                     17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49,
                     64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
    quant = [np.clip(np.rint(base * quality_scale), 1, 65535 if q16 else 255).astype(np.int64),
             np.clip(np.rint(base[::-1].copy() * quality_scale), 1, 65535 if q16 else 255).astype(np.int64)]
    comps = []
    for ci, (plane, (sh, sv)) in enumerate(zip(planes, sampling)):
        fx, fy = hmax // sh, vmax // sv
        cw, ch = -(-w // fx), -(-h // fy)
        full = np.pad(plane.astype(np.float64), ((0, ch * fy - h), (0, cw * fx - w)), mode="edge")
        small = full.reshape(ch, fy, cw, fx).mean(axis=(1, 3))
        bw, bh = mcux * sh * 8, mcuy * sv * 8
        comps.append((np.pad(small, ((0, bh - ch), (0, bw - cw)), mode="edge"), sh, sv, cw, ch, quant[min(ci, 1)]))

    def block_coefficients(comp, bx, by):
        data, _, _, _, _, q = comp
        blk = data[by * 8:by * 8 + 8, bx * 8:bx * 8 + 8] - 128
        f = (DCT @ blk @ DCT.T).reshape(64)
        return [int(np.rint(f[ZIGZAG[k]] / q[ZIGZAG[k]])) for k in range(64)]

    units = []  # per MCU: list of (component index, block coefficients)
    if len(comps) == 1:
        _, _, _, cw, ch, _ = comps[0]
        for by in range(-(-ch // 8)):
            for bx in range(-(-cw // 8)):
                units.append([(0, block_coefficients(comps[0], bx, by))])
    else:
        for my in range(mcuy):
            for mx in range(mcux):
                mcu = []
                for ci, comp in enumerate(comps):
                    for v in range(comp[2]):
                        for u in range(comp[1]):
                            mcu.append((ci, block_coefficients(comp, mx * comp[1] + u, my * comp[2] + v)))
                units.append(mcu)

    events = []  # ("dc"/"ac", table, symbol, value bits, nbits) or ("rst", n)
    pred = [0] * len(comps)
    for n, mcu in enumerate(units):
        if restart and n > 0 and n % restart == 0:
            events.append(("rst", (n // restart - 1) % 8))
            pred = [0] * len(comps)
        for ci, coef in mcu:
            table = min(ci, 1)
            diff = coef[0] - pred[ci]
            pred[ci] = coef[0]
            s = _category(diff)
            events.append(("dc", table, s, diff - 1 if diff < 0 else diff, s))
            run = 0
            last = max([k for k in range(1, 64) if coef[k] != 0], default=0)
            for k in range(1, last + 1):
                if coef[k] == 0:
                    run += 1
                    continue
                while run > 15:
                    events.append(("ac", table, 0xF0, 0, 0))
                    run -= 16
                s = _category(coef[k])
                events.append(("ac", table, (run << 4) | s, coef[k] - 1 if coef[k] < 0 else coef[k], s))
                run = 0
            if last < 63:
                events.append(("ac", table, 0x00, 0, 0))

    tables = {}
    for kind, legal in (("dc", list(range(12))), ("ac", [0, 0xF0] + [(r << 4) | s for r in range(16) for s in range(1, 11)])):
        for t in range(min(len(comps), 2)):
            freq = {}
            for e in events:
                if e[0] == kind and e[1] == t:
                    freq[e[2]] = freq.get(e[2], 0) + 1
            tables[(kind, t)] = _huffman_table(freq, legal)

    out = bytearray()
    acc, nacc = 0, 0

    def put(value, nbits):
        nonlocal acc, nacc
        acc = (acc << nbits) | (value & ((1 << nbits) - 1))
        nacc += nbits
        while nacc >= 8:
            byte = (acc >> (nacc - 8)) & 0xFF
            out.append(byte)
            if byte == 0xFF:
                out.append(0)
            nacc -= 8

    def flush():
        nonlocal nacc
        if nacc % 8:
            put(0x7F, 8 - nacc % 8)  # pad with 1 bits

    for e in events:
        if e[0] == "rst":
            flush()
            out += bytes([0xFF, 0xD0 + e[1]])
            continue
        code, length = tables[(e[0], e[1])][2][e[2]]
        put(code, length)
        if e[4]:
            put(e[3], e[4])
    flush()

    def segment(marker, body):
        return bytes([0xFF, marker]) + struct.pack(">H", len(body) + 2) + body

    f = bytearray(b"\xff\xd8")
    if b"JFIF" in app:
        f += segment(0xE0, b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")
    if adobe_transform is not None:
        f += segment(0xEE, b"Adobe" + struct.pack(">HHHB", 100, 0, 0, adobe_transform))
    for t in range(min(len(comps), 2)):
        q = quant[t]
        body = bytes([(16 if q16 else 0) | t]) + b"".join(
            struct.pack(">H" if q16 else ">B", int(q[ZIGZAG[k]])) for k in range(64))
        f += segment(0xDB, body)
    ids = ids or list(range(1, len(comps) + 1))
    sof = struct.pack(">BHHB", 8, h, w, len(comps)) + b"".join(
        bytes([ids[i], (s[0] << 4) | s[1], min(i, 1)]) for i, s in enumerate(sampling))
    f += segment(0xC1 if q16 else 0xC0, sof)
    for (kind, t), (bits, symbols, _) in sorted(tables.items()):
        f += segment(0xC4, bytes([(0 if kind == "dc" else 16) | t] + bits + symbols))
    if restart:
        f += segment(0xDD, struct.pack(">H", restart))
    sos = bytes([len(comps)]) + b"".join(bytes([ids[i], (min(i, 1) << 4) | min(i, 1)]) for i in range(len(comps)))
    f += segment(0xDA, sos + bytes([0, 63, 0]))
    f += out + b"\xff\xd9"
    with open(path, "wb") as fh:
        fh.write(bytes(f))


# --------------------------------------------------------------------------------------------------- cases
manifest = []


def record(name, file, expected, tolerance):
    expected = np.ascontiguousarray(expected, dtype=np.uint8)
    assert expected.ndim == 3 and expected.shape[2] == 3, (name, expected.shape)
    with open(os.path.join(OUT, name + ".rgb"), "wb") as f:
        f.write(expected.tobytes())
    manifest.append({"name": name, "file": file, "width": int(expected.shape[1]), "height": int(expected.shape[0]),
                     "max_abs": tolerance[0], "max_mean": tolerance[1]})


def pil_rgb(path):
    return np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))


def png_cases():
    sizes = [(17, 13), (33, 21)]
    n = 0
    for color_type, depths in ((0, (1, 2, 4, 8, 16)), (2, (8, 16)), (3, (1, 2, 4, 8)), (4, (8, 16)), (6, (8, 16))):
        for depth in depths:
            for interlace in (False, True):
                if interlace and (color_type, depth) not in ((0, 1), (0, 2), (2, 8), (3, 4), (6, 16), (4, 8)):
                    continue
                w, h = sizes[n % 2]
                n += 1
                png_case(f"png_ct{color_type}_{depth}bit{'_adam7' if interlace else ''}", w, h, color_type, depth,
                         interlace, trns=False, seed=n)
    for color_type, depth in ((0, 8), (0, 16), (0, 2), (2, 8), (2, 16), (3, 8), (3, 2)):
        w, h = sizes[n % 2]
        n += 1
        png_case(f"png_ct{color_type}_{depth}bit_trns", w, h, color_type, depth, False, trns=True, seed=n)


def png_case(name, w, h, color_type, depth, interlace, trns, seed):
    rng = np.random.default_rng(seed)
    top = (1 << depth) - 1
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[color_type]
    if color_type == 3:
        entries = min(1 << depth, 200)
        palette = rng.integers(0, 256, (entries, 3))
        samples = rng.integers(0, entries, (h, w, 1))
    else:
        pattern = test_pattern(w, h, seed, 4).astype(np.int64)
        if depth == 16:
            samples = pattern * 256 + rng.integers(0, 256, pattern.shape)
        else:
            samples = pattern >> (8 - depth)
        samples = {0: samples[..., :1], 2: samples[..., :3], 4: samples[..., [0, 3]], 6: samples}[color_type]
        if color_type in (4, 6):  # make sure both fully transparent and opaque alphas occur
            samples[0, :3, -1] = 0
            samples[1, :3, -1] = top
    trns_bytes, key = None, None
    if trns and color_type == 3:
        alphas = rng.integers(0, 256, len(palette) - 1)
        trns_bytes = bytes(alphas.astype(np.uint8))
    elif trns:
        key = samples[h // 2, w // 3].copy()
        samples[:2, :2] = key  # the key occurs for sure
        trns_bytes = b"".join(struct.pack(">H", int(v)) for v in key)
    path = os.path.join(OUT, name + ".png")
    write_png(path, samples, depth, color_type, palette if color_type == 3 else None, trns_bytes, interlace)

    # Expected pixels by our definition, then checked against PIL's decode where PIL shares it.
    im = Image.open(path)
    if color_type == 3:
        rgb = palette[samples[..., 0]]
        alpha = np.full((h, w), 255)
        if trns_bytes is not None:
            full_alpha = np.concatenate([np.frombuffer(trns_bytes, np.uint8), np.full(256, 255)])
            alpha = full_alpha[samples[..., 0]]
        pil = np.asarray(im.convert("RGBA")).astype(np.int64)
        assert (pil[..., :3] == rgb).all() and (pil[..., 3] == alpha).all(), name
    else:
        eight = samples >> 8 if depth == 16 else samples * (255 // top)
        if color_type in (0, 4):
            rgb = np.repeat(eight[..., :1], 3, axis=-1)
        else:
            rgb = eight[..., :3]
        alpha = eight[..., -1] if color_type in (4, 6) else np.full((h, w), 255)
        if key is not None:
            alpha = np.where((samples == key).all(axis=-1), 0, 255)
        if color_type == 0 and depth == 16:
            assert im.mode == "I" and ((np.asarray(im).astype(np.int64) >> 8) == rgb[..., 0]).all(), name
        else:
            pil = np.asarray(im.convert("RGBA")).astype(np.int64)
            assert (pil[..., :3] == rgb).all(), name
            if key is None:
                assert (pil[..., 3] == alpha).all(), name
    record(name, name + ".png", composite(rgb, alpha), EXACT)


def jpeg_cases():
    def save(name, img, **kw):
        path = os.path.join(OUT, name + ".jpg")
        img.save(path, "JPEG", **kw)
        record(name, name + ".jpg", pil_rgb(path), JPEG_TOL)

    rgb_small = Image.fromarray(test_pattern(17, 13, 1))
    rgb_large = Image.fromarray(test_pattern(33, 21, 2))
    save("jpeg_444_q90", rgb_small, quality=90, subsampling=0)
    save("jpeg_422_q75", rgb_large, quality=75, subsampling=1)
    save("jpeg_420_q50", rgb_large, quality=50, subsampling=2)
    save("jpeg_420_q95_odd", rgb_small, quality=95, subsampling=2)
    save("jpeg_420_q100", rgb_large, quality=100, subsampling=2)
    save("jpeg_444_q5", rgb_small, quality=5, subsampling=0)
    save("jpeg_420_3x2", Image.fromarray(test_pattern(3, 2, 3)), quality=85, subsampling=2)
    save("jpeg_420_1x1", Image.fromarray(test_pattern(1, 1, 4)), quality=85, subsampling=2)
    save("jpeg_gray_q80", rgb_small.convert("L"), quality=80)
    save("jpeg_progressive_420", rgb_large, quality=80, subsampling=2, progressive=True)
    save("jpeg_progressive_444", rgb_small, quality=92, subsampling=0, progressive=True)
    save("jpeg_progressive_gray", rgb_large.convert("L"), quality=70, progressive=True)
    save("jpeg_optimized_422", rgb_small, quality=60, subsampling=1, optimize=True)
    save("jpeg_cmyk", Image.fromarray(test_pattern(17, 13, 5, 4), "CMYK"), quality=90)
    save("jpeg_cmyk_progressive", Image.fromarray(test_pattern(33, 21, 6, 4), "CMYK"), quality=85, progressive=True)
    for orientation in (2, 3, 4, 5, 6, 7, 8):
        exif = Image.Exif()
        exif[0x0112] = orientation
        save(f"jpeg_exif_orientation{orientation}", rgb_large, quality=90, subsampling=2, exif=exif.tobytes())

    def encoded(name, planes, sampling, scale, **kw):
        path = os.path.join(OUT, name + ".jpg")
        encode_jpeg(path, planes, sampling, scale, **kw)
        record(name, name + ".jpg", pil_rgb(path), JPEG_TOL)

    ycc = np.asarray(rgb_large.convert("YCbCr"))
    planes = [ycc[..., i] for i in range(3)]
    encoded("jpeg_restart_420", planes, [(2, 2), (1, 1), (1, 1)], 0.5, restart=1)
    encoded("jpeg_restart_444", planes, [(1, 1), (1, 1), (1, 1)], 0.3, restart=5)
    encoded("jpeg_restart_gray", [planes[0]], [(1, 1)], 0.4, restart=2)
    encoded("jpeg_440", planes, [(1, 2), (1, 1), (1, 1)], 0.5)
    encoded("jpeg_411", planes, [(4, 1), (1, 1), (1, 1)], 0.5)
    encoded("jpeg_gray_sampled_2x2", [planes[0]], [(2, 2)], 0.5)
    encoded("jpeg_dqt16_sof1", planes, [(2, 1), (1, 1), (1, 1)], 3.0, q16=True)
    rgb = np.asarray(rgb_small)
    encoded("jpeg_adobe_rgb", [rgb[..., i] for i in range(3)], [(1, 1)] * 3, 0.5, app=(), adobe_transform=0)
    cmyk = test_pattern(33, 21, 7, 4)
    ycck_planes = [np.asarray(Image.fromarray(255 - cmyk[..., :3]).convert("YCbCr"))[..., i] for i in range(3)]
    encoded("jpeg_ycck", ycck_planes + [255 - cmyk[..., 3]], [(2, 2), (1, 1), (1, 1), (2, 2)], 0.5, app=(),
            adobe_transform=2)


def pnm_cases():
    rgb = test_pattern(17, 13, 8)
    gray = test_pattern(33, 21, 9)[..., 0]

    def scaled(v, maxval):
        return np.round(v.astype(np.float64) / maxval * 255).astype(np.uint8)  # PIL: round(v / maxval * 255), half to even

    def write(name, ext, data, expected, pil_check=True):
        path = os.path.join(OUT, name + ext)
        with open(path, "wb") as f:
            f.write(data)
        if pil_check:
            assert (pil_rgb(path) == expected).all(), name
        record(name, name + ext, expected, EXACT)

    def header(magic, w, h, maxval):
        return f"{magic}\n# made by images_golden.py\n{w} {h}\n# comment before maxval\n{maxval}\n".encode()

    write("ppm_p6", ".ppm", header("P6", 17, 13, 255) + rgb.tobytes(), rgb)
    write("pgm_p5", ".pgm", header("P5", 33, 21, 255) + gray.tobytes(), np.repeat(gray[..., None], 3, -1))
    text = " ".join(str(v) for v in rgb.reshape(-1))
    write("ppm_p3_ascii", ".ppm", header("P3", 17, 13, 255) + text.encode() + b"\n", rgb)
    small = (gray.astype(np.int64) * 100) // 255
    text = "\n".join(" ".join(str(v) for v in row) for row in small)
    write("pgm_p2_maxval100", ".pgm", header("P2", 33, 21, 100) + text.encode(),
          np.repeat(scaled(small, 100)[..., None], 3, -1))
    wide = rgb.astype(np.int64) * 257 + 100
    wide = np.minimum(wide, 65535)
    write("ppm_p6_16bit", ".ppm", header("P6", 17, 13, 65535) + wide.astype(">u2").tobytes(), scaled(wide, 65535))
    thousand = (rgb.astype(np.int64) * 1000) // 255
    write("ppm_p6_maxval1000", ".ppm", header("P6", 17, 13, 1000) + thousand.astype(">u2").tobytes(),
          scaled(thousand, 1000))
    gray1000 = (gray.astype(np.int64) * 1000) // 255
    # PIL opens 16-bit gray as mode "I" and clips on convert("RGB"); we scale, so PIL is not the check here.
    write("pgm_p5_maxval1000", ".pgm", header("P5", 33, 21, 1000) + gray1000.astype(">u2").tobytes(),
          np.repeat(scaled(gray1000, 1000)[..., None], 3, -1), pil_check=False)


def main():
    os.makedirs(OUT, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(os.path.join(OUT, f))
    png_cases()
    jpeg_cases()
    pnm_cases()
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print(f"{len(manifest)} cases, {total} bytes in {OUT}")


if __name__ == "__main__":
    main()
