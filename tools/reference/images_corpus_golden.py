"""Golden pixels for Graft's default image loading (transformers' load_image) over real and derived files.

Run with Debian's interpreter (PIL 9.4):
    /usr/bin/python3 tools/reference/images_corpus_golden.py
Needs the Debian packages that ship the real GIFs (cmake-data, cscope, libxslt1-dev, tk8.6, python3-sphinx) and
gifsicle; files that are missing are skipped and the count printed.

Writes tests/Graft.Tests/Golden/image_corpus/: each input file and manifest.json with, per file, the width, height
and SHA-256 of the RGB bytes that transformers' load_image produces:
    img = PIL.Image.open(f); img = PIL.ImageOps.exif_transpose(img); img = img.convert("RGB")
(alpha dropped, EXIF orientation applied: JPEG APP1, PNG eXIf or XMP, WebP EXIF), or "animated": true where PIL
reports more than one frame for a GIF or WebP (Graft refuses those, as OpenAI's API does). The C# tests never run Python.
"""
import glob
import hashlib
import io
import json
import os
import shutil
import subprocess
import tempfile
import zlib
import struct

import numpy as np
from PIL import Image, ImageOps

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
OUT = os.path.join(REPO, "tests", "Graft.Tests", "Golden", "image_corpus")
MAX_BYTES = 24 << 10

REAL_GIFS = sorted(glob.glob("/usr/share/doc/cmake-data/*.gif") + glob.glob("/usr/share/doc/cscope/contrib/webcscope/icons/*.gif")
                   + glob.glob("/usr/share/doc/libxslt1-dev/html/*.gif") + glob.glob("/usr/share/tcltk/tk8.6/images/*.gif")
                   + glob.glob("/usr/share/sphinx/themes/*/static/*.gif"))


def pattern(w, h, seed):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([255 * x / max(w - 1, 1), 255 * y / max(h - 1, 1), 128 + 100 * np.sin((x + 2 * y) / 3.0)], axis=-1)
    img += rng.normal(0, 6, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def png_chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)


def with_chunk_before_idat(png, kind, body):
    at = png.index(b"IDAT") - 4
    return png[:at] + png_chunk(kind, body) + png[at:]


def tiff_orientation(value, little):
    e = "<" if little else ">"
    return (b"II" if little else b"MM") + struct.pack(e + "HI", 42, 8) + struct.pack(e + "H", 1) + \
        struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", value, 0) + struct.pack(e + "I", 0)


def derived(tmp):
    """Files made here from patterns or from the real GIFs: the cases real files rarely show."""
    cases = {}
    rgba = np.concatenate([pattern(29, 19, 1), np.zeros((19, 29, 1), np.uint8)], axis=-1)
    rgba[..., 3] = np.linspace(0, 255, 29, dtype=np.uint8)[None, :]
    rgba[:3, :5, 3] = 0
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    cases["png_rgba_alpha_dropped.png"] = buf.getvalue()
    la = Image.fromarray(rgba[..., :2].copy(), "LA")
    buf = io.BytesIO()
    la.save(buf, "PNG")
    cases["png_la_alpha_dropped.png"] = buf.getvalue()
    pal = Image.fromarray(pattern(23, 17, 2)).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=bytes([0, 128] + [255] * 14))
    cases["png_palette_trns_dropped.png"] = buf.getvalue()
    base = io.BytesIO()
    Image.fromarray(pattern(21, 13, 3)).save(base, "PNG")
    for value in (3, 6, 8):
        cases[f"png_exif_orientation{value}.png"] = with_chunk_before_idat(base.getvalue(), b"eXIf", tiff_orientation(value, value != 6))
    cases["png_exif_after_idat5.png"] = base.getvalue()[:-12] + png_chunk(b"eXIf", tiff_orientation(5, False)) + base.getvalue()[-12:]
    xmp = b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:Description tiff:Orientation="7"/></x:xmpmeta>'
    cases["png_xmp_orientation7.png"] = with_chunk_before_idat(base.getvalue(), b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp)
    # GIFs: PIL-written with transparency; gifsicle variants of real files (interlaced, cropped/offset, local palette).
    img = Image.fromarray(pattern(31, 22, 4)).convert("P", palette=Image.Palette.ADAPTIVE, colors=64)
    buf = io.BytesIO()
    img.save(buf, "GIF", transparency=5)
    cases["gif_pil_transparency.gif"] = buf.getvalue()
    buf = io.BytesIO()
    Image.fromarray(pattern(16, 9, 5)).convert("L").save(buf, "GIF")
    cases["gif_pil_gray.gif"] = buf.getvalue()
    buf = io.BytesIO()
    img.save(buf, "GIF", save_all=True, append_images=[img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)], duration=100, loop=0)
    cases["gif_animated_two_frames.gif"] = buf.getvalue()
    source = "/usr/share/tcltk/tk8.6/images/logo64.gif"
    if os.path.exists(source) and shutil.which("gifsicle"):
        for name, args in [("gif_interlaced", ["-i"]), ("gif_cropped_offset", ["--crop", "5,7+30x20"]),
                           ("gif_local_palette", ["--change-color", "0", "#102030", "--colors", "8", "--use-colormap", "web"]),
                           ("gif_transparent_white", ["--transparent", "#FFFFFF"])]:
            out = os.path.join(tmp, name + ".gif")
            subprocess.run(["gifsicle", *args, source, "-o", out], check=True)
            cases[name + ".gif"] = open(out, "rb").read()
        # A frame placed past the logical screen (PIL widens its canvas) and one smaller than it (the rest is index 0).
        data = bytearray(cases["gif_cropped_offset.gif"])
        struct.pack_into("<HH", data, 6, 20, 10)
        cases["gif_frame_past_screen.gif"] = bytes(data)
    return cases


def expected(data):
    img = Image.open(io.BytesIO(data))
    if getattr(img, "n_frames", 1) > 1 and img.format in ("GIF", "WEBP"):
        return {"animated": True}
    img = ImageOps.exif_transpose(img).convert("RGB")
    return {"width": img.width, "height": img.height, "sha256": hashlib.sha256(img.tobytes()).hexdigest()}


def main():
    if os.path.isdir(OUT):
        shutil.rmtree(OUT)
    os.makedirs(OUT)
    manifest = []
    with tempfile.TemporaryDirectory() as tmp:
        files = {}
        for path in REAL_GIFS:
            data = open(path, "rb").read()
            if len(data) <= MAX_BYTES:
                files["real_" + os.path.basename(os.path.dirname(path)) + "_" + os.path.basename(path)] = (data, path)
        for name, data in derived(tmp).items():
            files[name] = (data, "derived")
        for name, (data, origin) in sorted(files.items()):
            open(os.path.join(OUT, name), "wb").write(data)
            manifest.append({"file": name, "origin": origin, **expected(data)})
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"{len(manifest)} files ({sum(1 for m in manifest if m['origin'] != 'derived')} real) -> {OUT}")


if __name__ == "__main__":
    main()
