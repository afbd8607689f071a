"""Golden cases for Graft's image preprocessing (src/Graft.Models/Imaging/Preprocessing).

Run with Debian's interpreter (PIL 9.4, numpy, torch):
    /usr/bin/python3 tools/reference/preprocess_golden.py
Writes tests/Graft.Tests/Golden/preprocess/: the source images as PNG, one safetensors file per case, and
manifest.json (cases, plus a table of InternVL grid choices).

transformers and torchvision are not installed here, so the steps Graft reproduces are re-written below from
their published code: transformers' CLIPImageProcessor / SiglipImageProcessor (image_transforms.resize, which is
PIL's Image.resize on the uint8 image; center_crop; rescale; normalize), LLaVA-1.5's expand2square, and InternVL's
dynamic_preprocess + build_transform (torchvision Resize on a PIL image is PIL's resize; ToTensor; Normalize).
"""
import json
import math
import os

import numpy as np
import torch
from PIL import Image

from golden import GOLDEN, save_safetensors

OUT = os.path.join(GOLDEN, "preprocess")
RESAMPLE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC,
            "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}
OPENAI_CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def make_image(width, height, seed):
    """Smooth gradients, a hard-edged checkerboard (drives the negative lobes into clipping) and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    r = 255 * x / max(width - 1, 1)
    g = 255 * y / max(height - 1, 1)
    b = np.where(((x // 3) + (y // 4)) % 2 == 0, 250, 5)
    img = np.stack([r, g, b], axis=-1) + rng.normal(0, 25, (height, width, 3))
    img[rng.random((height, width)) < 0.05] = [255, 255, 255]
    img[rng.random((height, width)) < 0.05] = [0, 0, 0]
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def u8(img):
    return torch.from_numpy(np.array(img, dtype=np.uint8).copy())


# --- transformers, re-written from image_transforms.py and image_processing_clip.py / image_processing_siglip.py ---

def get_resize_output_image_size(height, width, size, default_to_square):
    if isinstance(size, (tuple, list)):
        return tuple(size)
    if default_to_square:
        return (size, size)
    short, long = (width, height) if width <= height else (height, width)
    new_short, new_long = size, int(size * long / short)
    return (new_long, new_short) if width <= height else (new_short, new_long)


def hf_center_crop(image, size):
    """image is (C, H, W) here, as transformers crops in channels-first."""
    orig_height, orig_width = image.shape[-2:]
    crop_height, crop_width = size
    top = (orig_height - crop_height) // 2
    bottom = top + crop_height
    left = (orig_width - crop_width) // 2
    right = left + crop_width
    if top >= 0 and bottom <= orig_height and left >= 0 and right <= orig_width:
        return image[..., top:bottom, left:right]
    new_height = max(crop_height, orig_height)
    new_width = max(crop_width, orig_width)
    new_image = np.zeros_like(image, shape=image.shape[:-2] + (new_height, new_width))
    top_pad = math.ceil((new_height - orig_height) / 2)
    left_pad = math.ceil((new_width - orig_width) / 2)
    new_image[..., top_pad:top_pad + orig_height, left_pad:left_pad + orig_width] = image
    top += top_pad
    bottom += top_pad
    left += left_pad
    right += left_pad
    return new_image[..., max(0, top):min(new_height, bottom), max(0, left):min(new_width, right)]


def hf_rescale(image, scale):
    return (image.astype(np.float64) * scale).astype(np.float32)


def hf_normalize(image, mean, std):
    """image is (C, H, W) float32; transformers normalises channels-first as ((image.T - mean) / std).T."""
    if not np.issubdtype(image.dtype, np.floating):
        image = image.astype(np.float32)
    mean = np.array(mean, dtype=image.dtype)
    std = np.array(std, dtype=image.dtype)
    return ((image.T - mean) / std).T


def hf_pipeline(img, cfg):
    """CLIPImageProcessor.preprocess (or Siglip's, which has no crop) on one PIL RGB image, returning (C, H, W) float32."""
    kind = cfg["image_processor_type"]
    resample = cfg.get("resample", 3)
    if cfg.get("do_resize", True):
        size = cfg["size"]
        if kind == "SiglipImageProcessor":
            target = (size["height"], size["width"])
        elif "shortest_edge" in size:
            target = get_resize_output_image_size(img.height, img.width, size["shortest_edge"], default_to_square=False)
        else:
            target = (size["height"], size["width"])
        img = img.resize((target[1], target[0]), resample=resample)
    image = np.array(img).transpose(2, 0, 1)
    if kind == "CLIPImageProcessor" and cfg.get("do_center_crop", True):
        crop = cfg["crop_size"]
        image = hf_center_crop(image, (crop["height"], crop["width"]))
    if cfg.get("do_rescale", True):
        image = hf_rescale(image, cfg.get("rescale_factor", 1 / 255))
    if cfg.get("do_normalize", True):
        default_mean, default_std = (OPENAI_CLIP_MEAN, OPENAI_CLIP_STD) if kind == "CLIPImageProcessor" else ([0.5] * 3, [0.5] * 3)
        image = hf_normalize(image, cfg.get("image_mean", default_mean), cfg.get("image_std", default_std))
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32))


# --- LLaVA-1.5 (llava/mm_utils.py) ---

def expand2square(pil_img, background_color):
    width, height = pil_img.size
    if width == height:
        return pil_img
    elif width > height:
        result = Image.new(pil_img.mode, (width, width), background_color)
        result.paste(pil_img, (0, (width - height) // 2))
        return result
    else:
        result = Image.new(pil_img.mode, (height, height), background_color)
        result.paste(pil_img, ((height - width) // 2, 0))
        return result


# --- InternVL (chat example: build_transform, find_closest_aspect_ratio, dynamic_preprocess) ---

def build_transform(input_size):
    def transform(img):
        img = img.resize((input_size, input_size), Image.BICUBIC)                       # T.Resize on a PIL image
        t = torch.from_numpy(np.array(img)).permute(2, 0, 1).contiguous().float().div(255)  # T.ToTensor
        mean = torch.as_tensor(IMAGENET_MEAN, dtype=torch.float32).view(-1, 1, 1)
        std = torch.as_tensor(IMAGENET_STD, dtype=torch.float32).view(-1, 1, 1)
        return t.sub(mean).div(std)                                                      # T.Normalize
    return transform


def find_closest_aspect_ratio(aspect_ratio, target_ratios, width, height, image_size):
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        target_aspect_ratio = ratio[0] / ratio[1]
        ratio_diff = abs(aspect_ratio - target_aspect_ratio)
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff:
            if area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
                best_ratio = ratio
    return best_ratio


def target_ratios(min_num, max_num):
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                 if i * j <= max_num and i * j >= min_num)
    return sorted(ratios, key=lambda x: x[0] * x[1])


def dynamic_preprocess(image, min_num=1, max_num=12, image_size=448, use_thumbnail=False):
    orig_width, orig_height = image.size
    aspect_ratio = orig_width / orig_height
    ratios = target_ratios(min_num, max_num)
    target_aspect_ratio = find_closest_aspect_ratio(aspect_ratio, ratios, orig_width, orig_height, image_size)
    target_width = image_size * target_aspect_ratio[0]
    target_height = image_size * target_aspect_ratio[1]
    blocks = target_aspect_ratio[0] * target_aspect_ratio[1]
    resized_img = image.resize((target_width, target_height))
    processed_images = []
    for i in range(blocks):
        box = ((i % (target_width // image_size)) * image_size,
               (i // (target_width // image_size)) * image_size,
               ((i % (target_width // image_size)) + 1) * image_size,
               ((i // (target_width // image_size)) + 1) * image_size)
        processed_images.append(resized_img.crop(box))
    assert len(processed_images) == blocks
    if use_thumbnail and len(processed_images) != 1:
        processed_images.append(image.resize((image_size, image_size)))
    return target_aspect_ratio, processed_images


# --- cases ---

SOURCES = {
    "a_37x23": (37, 23, 1),
    "b_23x37": (23, 37, 2),
    "c_64x48": (64, 48, 3),
    "wide_90x31": (90, 31, 4),
    "tall_29x75": (29, 75, 5),
    "square_41x41": (41, 41, 6),
    "wide_150x60": (150, 60, 7),
}

RESIZES = [
    ("a_37x23", "bicubic", 64, 40), ("a_37x23", "bicubic", 16, 9), ("a_37x23", "bicubic", 1, 23),
    ("a_37x23", "bicubic", 37, 1), ("a_37x23", "bicubic", 37, 50), ("a_37x23", "bicubic", 20, 23),
    ("a_37x23", "bilinear", 50, 31), ("a_37x23", "bilinear", 13, 7), ("a_37x23", "bilinear", 1, 1),
    ("a_37x23", "nearest", 61, 29), ("a_37x23", "nearest", 11, 17), ("a_37x23", "nearest", 1, 1),
    ("a_37x23", "lanczos", 20, 30), ("a_37x23", "box", 19, 12), ("a_37x23", "hamming", 19, 12),
    ("b_23x37", "bicubic", 32, 32), ("b_23x37", "bilinear", 7, 70), ("b_23x37", "nearest", 46, 74),
    ("c_64x48", "bicubic", 48, 36), ("c_64x48", "bicubic", 17, 13), ("c_64x48", "bicubic", 3, 2),
    ("c_64x48", "bilinear", 33, 25), ("c_64x48", "nearest", 40, 30), ("c_64x48", "lanczos", 100, 75),
]

PIPELINES = [
    ("clip_a", "a_37x23", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
                           "crop_size": {"height": 32, "width": 32}, "resample": 3}, False),
    ("clip_b", "b_23x37", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
                           "crop_size": {"height": 32, "width": 32}, "resample": 3}, False),
    ("clip_c_bilinear", "c_64x48", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 33},
                                    "crop_size": {"height": 31, "width": 30}, "resample": 2}, False),
    ("clip_pad_crop", "a_37x23", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 24},
                                  "crop_size": {"height": 33, "width": 20}, "resample": 3}, False),
    ("clip_no_crop", "tall_29x75", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 16},
                                    "do_center_crop": False, "resample": 3,
                                    "image_mean": [0.5, 0.4, 0.3], "image_std": [0.2, 0.3, 0.25]}, False),
    ("clip_expand2square", "a_37x23", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 32},
                                       "crop_size": {"height": 32, "width": 32}, "resample": 3}, True),
    ("clip_expand2square_tall", "tall_29x75", {"image_processor_type": "CLIPImageProcessor", "size": {"shortest_edge": 24},
                                               "crop_size": {"height": 24, "width": 24}, "resample": 3}, True),
    ("siglip_a", "a_37x23", {"image_processor_type": "SiglipImageProcessor", "size": {"height": 40, "width": 24},
                             "resample": 3}, False),
    ("siglip_c", "c_64x48", {"image_processor_type": "SiglipImageProcessor", "size": {"height": 32, "width": 32},
                             "resample": 2, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}, False),
]

TILINGS = [
    ("tile_wide", "wide_90x31", 32, 6), ("tile_tall", "tall_29x75", 32, 6), ("tile_square", "square_41x41", 32, 6),
    ("tile_c", "c_64x48", 32, 6), ("tile_wide_448", "wide_150x60", 448, 2),
]

# Band of rows stored in full for 448-pixel tiles; the rest is checked through per-row sums.
BAND_ROWS = 16


def grid_table():
    rows = []
    sizes = [(1, 1), (448, 448), (1000, 1000), (896, 448), (448, 896), (1344, 448), (640, 480), (480, 640),
             (1920, 1080), (1080, 1920), (500, 200), (200, 500), (37, 23), (23, 37), (3000, 100), (100, 3000),
             (1300, 1000), (1000, 1300), (800, 600), (1200, 400), (900, 451), (449, 448), (2560, 1440), (300, 301)]
    for (w, h) in sizes:
        for max_num in (1, 2, 6, 12):
            for min_num in (1, 2):
                if min_num > max_num:
                    continue
                for image_size in (448, 32):
                    ratios = target_ratios(min_num, max_num)
                    c, r = find_closest_aspect_ratio(w / h, ratios, w, h, image_size)
                    rows.append({"width": w, "height": h, "min_num": min_num, "max_num": max_num,
                                 "image_size": image_size, "columns": c, "rows": r})
    return rows


def main():
    os.makedirs(OUT, exist_ok=True)
    for name in os.listdir(OUT):
        os.remove(os.path.join(OUT, name))
    images = {}
    for name, (w, h, seed) in SOURCES.items():
        images[name] = make_image(w, h, seed)
        images[name].save(os.path.join(OUT, name + ".png"))
    manifest = {"resize": [], "pipeline": [], "tiling": [], "grids": grid_table()}

    for source, filter_name, w, h in RESIZES:
        case = f"resize_{source.split('_')[0]}_{filter_name}_{w}x{h}"
        out = images[source].resize((w, h), RESAMPLE[filter_name])
        save_safetensors(os.path.join(OUT, case + ".safetensors"), {"out.pixels": u8(out)})
        manifest["resize"].append({"name": case, "source": source + ".png", "filter": filter_name, "width": w, "height": h})

    for case, source, cfg, pad in PIPELINES:
        img = images[source]
        tensors = {}
        if pad:
            background = tuple(int(x * 255) for x in cfg.get("image_mean", OPENAI_CLIP_MEAN))
            img = expand2square(img, background)
            tensors["out.padded"] = u8(img)
        tensors["out.pixels"] = hf_pipeline(img, cfg)
        save_safetensors(os.path.join(OUT, case + ".safetensors"), tensors)
        manifest["pipeline"].append({"name": case, "source": source + ".png", "config": cfg, "pad_to_square": pad})

    for case, source, image_size, max_num in TILINGS:
        grid, tiles = dynamic_preprocess(images[source], min_num=1, max_num=max_num, image_size=image_size, use_thumbnail=True)
        transform = build_transform(image_size)
        pixels = torch.stack([transform(t) for t in tiles])
        stacked = torch.stack([u8(t) for t in tiles])
        if image_size <= 64:
            tensors = {"out.tiles": stacked, "out.pixels": pixels}
        else:
            tensors = {"out.tile_band": stacked[:, :BAND_ROWS].contiguous(),
                       "out.tile_row_sums": stacked.to(torch.int64).sum(dim=(2, 3)),
                       "out.pixels_band": pixels[:, :, :BAND_ROWS].contiguous()}
        save_safetensors(os.path.join(OUT, case + ".safetensors"), tensors)
        manifest["tiling"].append({"name": case, "source": source + ".png", "image_size": image_size, "max_num": max_num,
                                   "columns": grid[0], "rows": grid[1], "tiles": len(tiles), "band_rows": BAND_ROWS})

    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")


if __name__ == "__main__":
    main()
