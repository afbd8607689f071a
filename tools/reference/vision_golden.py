"""Golden files for Graft.Models.Vision: tiny random CLIP / SigLIP vision towers written as real Hugging Face
folders (config.json + model.safetensors), a Mono-InternVL patch-embedding front end, and the expected outputs.

The towers are implemented here from the semantics of transformers' modeling_clip.py / modeling_siglip.py
(transformers is not installed), computed in float64 from the stored weights, and stored as float32.

    /usr/bin/python3 tools/reference/vision_golden.py

Writes tests/Graft.Tests/Golden/vision/models/<name>/ and tests/Graft.Tests/Golden/vision/<case>.safetensors.
"""
import json
import math
import os
import shutil

import torch
import torch.nn.functional as F

import numpy as np
from PIL import Image

from golden import GOLDEN, load_safetensors, save_case, save_safetensors

FOLDER = "vision"
MODELS = os.path.join(GOLDEN, FOLDER, "models")
TOWER = dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=3, num_attention_heads=4, num_channels=3)
BATCH = 2


def randn(gen, *shape, std=1.0, mean=0.0):
    return torch.randn(*shape, generator=gen, dtype=torch.float64) * std + mean


def tower_tensors(gen, cfg, kind, head):
    """Random weights under Hugging Face's names (prefix vision_model.)."""
    w, inner, p, c = cfg["hidden_size"], cfg["intermediate_size"], cfg["patch_size"], cfg["num_channels"]
    patches = (cfg["image_size"] // p) ** 2
    t = {}
    e = "vision_model.embeddings."
    t[e + "patch_embedding.weight"] = randn(gen, w, c, p, p, std=0.1)
    if kind == "clip":
        t[e + "class_embedding"] = randn(gen, w, std=0.5)
        t[e + "position_embedding.weight"] = randn(gen, patches + 1, w, std=0.5)
        t["vision_model.pre_layrnorm.weight"] = randn(gen, w, std=0.1, mean=1.0)
        t["vision_model.pre_layrnorm.bias"] = randn(gen, w, std=0.1)
    else:
        t[e + "patch_embedding.bias"] = randn(gen, w, std=0.1)
        t[e + "position_embedding.weight"] = randn(gen, patches, w, std=0.5)
    for i in range(cfg["num_hidden_layers"]):
        l = f"vision_model.encoder.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[l + f"self_attn.{proj}.weight"] = randn(gen, w, w, std=w ** -0.5)
            t[l + f"self_attn.{proj}.bias"] = randn(gen, w, std=0.1)
        for norm in ("layer_norm1", "layer_norm2"):
            t[l + f"{norm}.weight"] = randn(gen, w, std=0.1, mean=1.0)
            t[l + f"{norm}.bias"] = randn(gen, w, std=0.1)
        t[l + "mlp.fc1.weight"] = randn(gen, inner, w, std=w ** -0.5)
        t[l + "mlp.fc1.bias"] = randn(gen, inner, std=0.1)
        t[l + "mlp.fc2.weight"] = randn(gen, w, inner, std=inner ** -0.5)
        t[l + "mlp.fc2.bias"] = randn(gen, w, std=0.1)
    t["vision_model.post_layernorm.weight"] = randn(gen, w, std=0.1, mean=1.0)
    t["vision_model.post_layernorm.bias"] = randn(gen, w, std=0.1)
    if head:
        h = "vision_model.head."
        t[h + "probe"] = randn(gen, 1, 1, w, std=0.5)
        t[h + "attention.in_proj_weight"] = randn(gen, 3 * w, w, std=w ** -0.5)
        t[h + "attention.in_proj_bias"] = randn(gen, 3 * w, std=0.1)
        t[h + "attention.out_proj.weight"] = randn(gen, w, w, std=w ** -0.5)
        t[h + "attention.out_proj.bias"] = randn(gen, w, std=0.1)
        t[h + "layernorm.weight"] = randn(gen, w, std=0.1, mean=1.0)
        t[h + "layernorm.bias"] = randn(gen, w, std=0.1)
        t[h + "mlp.fc1.weight"] = randn(gen, inner, w, std=w ** -0.5)
        t[h + "mlp.fc1.bias"] = randn(gen, inner, std=0.1)
        t[h + "mlp.fc2.weight"] = randn(gen, w, inner, std=inner ** -0.5)
        t[h + "mlp.fc2.bias"] = randn(gen, w, std=0.1)
    return t


def activation(name):
    return {
        "quick_gelu": lambda x: x * torch.sigmoid(1.702 * x),
        "gelu": lambda x: F.gelu(x),
        "gelu_pytorch_tanh": lambda x: F.gelu(x, approximate="tanh"),
    }[name]


def attention(q_in, kv_in, wq, bq, wk, bk, wv, bv, wo, bo, heads):
    """CLIPAttention / SiglipAttention / nn.MultiheadAttention (no mask, no dropout)."""
    b, tq, w = q_in.shape
    tk = kv_in.shape[1]
    d = w // heads
    q = F.linear(q_in, wq, bq).view(b, tq, heads, d).transpose(1, 2)
    k = F.linear(kv_in, wk, bk).view(b, tk, heads, d).transpose(1, 2)
    v = F.linear(kv_in, wv, bv).view(b, tk, heads, d).transpose(1, 2)
    p = torch.softmax(q @ k.transpose(-1, -2) * d ** -0.5, dim=-1)
    o = (p @ v).transpose(1, 2).reshape(b, tq, w)
    return F.linear(o, wo, bo)


def encoder_layer(t, i, x, cfg):
    l = f"vision_model.encoder.layers.{i}."
    eps, act = cfg["layer_norm_eps"], activation(cfg["hidden_act"])
    w = x.shape[-1]
    h = F.layer_norm(x, (w,), t[l + "layer_norm1.weight"], t[l + "layer_norm1.bias"], eps)
    a = l + "self_attn."
    x = x + attention(h, h, *(t[a + f"{n}_proj.{s}"] for n in ("q", "k", "v", "out") for s in ("weight", "bias")), cfg["num_attention_heads"])
    h = F.layer_norm(x, (w,), t[l + "layer_norm2.weight"], t[l + "layer_norm2.bias"], eps)
    h = F.linear(act(F.linear(h, t[l + "mlp.fc1.weight"], t[l + "mlp.fc1.bias"])), t[l + "mlp.fc2.weight"], t[l + "mlp.fc2.bias"])
    return x + h


def clip_forward(t, pixels, cfg):
    """CLIPVisionTransformer: (hidden_states tuple, last_hidden_state, pooler_output)."""
    e = "vision_model.embeddings."
    w, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
    patches = F.conv2d(pixels, t[e + "patch_embedding.weight"], stride=cfg["patch_size"]).flatten(2).transpose(1, 2)
    cls = t[e + "class_embedding"].expand(pixels.shape[0], 1, -1)
    x = torch.cat([cls, patches], dim=1) + t[e + "position_embedding.weight"].unsqueeze(0)
    x = F.layer_norm(x, (w,), t["vision_model.pre_layrnorm.weight"], t["vision_model.pre_layrnorm.bias"], eps)
    hidden = [x]
    for i in range(cfg["num_hidden_layers"]):
        x = encoder_layer(t, i, x, cfg)
        hidden.append(x)
    pooled = F.layer_norm(x[:, 0, :], (w,), t["vision_model.post_layernorm.weight"], t["vision_model.post_layernorm.bias"], eps)
    return hidden, x, pooled


def siglip_forward(t, pixels, cfg):
    """SiglipVisionTransformer: last_hidden_state = post_layernorm(encoder output); pooler = head(last) when present."""
    e = "vision_model.embeddings."
    w, eps = cfg["hidden_size"], cfg["layer_norm_eps"]
    x = F.conv2d(pixels, t[e + "patch_embedding.weight"], t[e + "patch_embedding.bias"], stride=cfg["patch_size"]).flatten(2).transpose(1, 2)
    x = x + t[e + "position_embedding.weight"].unsqueeze(0)
    hidden = [x]
    for i in range(cfg["num_hidden_layers"]):
        x = encoder_layer(t, i, x, cfg)
        hidden.append(x)
    last = F.layer_norm(x, (w,), t["vision_model.post_layernorm.weight"], t["vision_model.post_layernorm.bias"], eps)
    pooled = None
    h = "vision_model.head."
    if h + "probe" in t:
        probe = t[h + "probe"].expand(pixels.shape[0], 1, w)
        qw, kw, vw = t[h + "attention.in_proj_weight"].chunk(3)
        qb, kb, vb = t[h + "attention.in_proj_bias"].chunk(3)
        a = attention(probe, last, qw, qb, kw, kb, vw, vb, t[h + "attention.out_proj.weight"], t[h + "attention.out_proj.bias"], cfg["num_attention_heads"])
        n = F.layer_norm(a, (w,), t[h + "layernorm.weight"], t[h + "layernorm.bias"], eps)
        act = activation(cfg["hidden_act"])
        pooled = (a + F.linear(act(F.linear(n, t[h + "mlp.fc1.weight"], t[h + "mlp.fc1.bias"])), t[h + "mlp.fc2.weight"], t[h + "mlp.fc2.bias"]))[:, 0]
    return hidden, last, pooled


def write_folder(name, config, tensors):
    folder = os.path.join(MODELS, name)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2, sort_keys=True)
        f.write("\n")
    save_safetensors(os.path.join(folder, "model.safetensors"), tensors)


def tower_case(name, kind, gen, config, vision_cfg, dtype, head, extra_tensors=None, with_grad=False):
    tensors = tower_tensors(gen, vision_cfg, kind, head)
    stored = {k: v.to(dtype) for k, v in tensors.items()}
    if extra_tensors:
        stored.update({k: v.to(dtype) for k, v in extra_tensors.items()})
    write_folder(name, config, stored)
    weights = {k: v.to(torch.float64) for k, v in stored.items()}  # exactly what the file holds
    pixels = randn(gen, BATCH, vision_cfg["num_channels"], vision_cfg["image_size"], vision_cfg["image_size"])
    pixels.requires_grad_(with_grad)
    forward = clip_forward if kind == "clip" else siglip_forward
    hidden, last, pooled = forward(weights, pixels, vision_cfg)
    upstream = randn(gen, *last.shape)
    outputs = {f"hidden.{i}": h for i, h in enumerate(hidden)}
    outputs["last"] = last
    if pooled is not None:
        outputs["pooled"] = pooled
    if kind == "clip":
        outputs["layer_m2_no_cls"] = hidden[-2][:, 1:]
        outputs["layer_m2_cls"] = hidden[-2]
        layers = vision_cfg["num_hidden_layers"]
        outputs["cls_every_3"] = torch.stack([hidden[(k + 1) * layers // 3][:, 0] for k in range(3)], dim=1)
    else:
        outputs["layer_m2_no_cls"] = hidden[-2]
    grads = {}
    if with_grad:
        (last * upstream).sum().backward()
        grads["pixels"] = pixels.grad
    args = {"model": name, "kind": kind, "layers": vision_cfg["num_hidden_layers"], "dtype": str(dtype).replace("torch.", "")}
    save_case(FOLDER, name, "vision_tower", args, {"pixels": pixels.detach(), "upstream": upstream}, outputs, grads)


def vision_config(kind, **changes):
    cfg = dict(TOWER)
    cfg.update(hidden_act="quick_gelu" if kind == "clip" else "gelu_pytorch_tanh", layer_norm_eps=1e-5 if kind == "clip" else 1e-6)
    cfg.update(changes)
    return cfg


def towers():
    gen = torch.Generator().manual_seed(20240611)
    cfg = vision_config("clip")
    tower_case("clip_vision", "clip", gen,
               dict(cfg, architectures=["CLIPVisionModel"], model_type="clip_vision_model", torch_dtype="float32", projection_dim=16),
               cfg, torch.float32, head=False, with_grad=True)

    cfg = vision_config("clip", hidden_act="gelu")
    text = {
        "text_model.embeddings.token_embedding.weight": randn(gen, 40, 16),
        "text_model.embeddings.position_embedding.weight": randn(gen, 8, 16),
        "text_model.final_layer_norm.weight": randn(gen, 16, mean=1.0),
        "text_projection.weight": randn(gen, 16, 16),
        "visual_projection.weight": randn(gen, 16, TOWER["hidden_size"]),
        "logit_scale": torch.tensor(2.6592, dtype=torch.float64),
    }
    full = dict(architectures=["CLIPModel"], model_type="clip", projection_dim=16, torch_dtype="float32",
                text_config=dict(model_type="clip_text_model", hidden_size=16, num_hidden_layers=0, vocab_size=40),
                vision_config=dict(cfg, model_type="clip_vision_model"))
    tower_case("clip_full", "clip", gen, full, cfg, torch.float32, head=False, extra_tensors=text)

    cfg = vision_config("siglip")
    tower_case("siglip_head", "siglip", gen,
               dict(cfg, architectures=["SiglipVisionModel"], model_type="siglip_vision_model", torch_dtype="float32", vision_use_head=True),
               cfg, torch.float32, head=True)

    cfg = vision_config("siglip")
    text = {"text_model.embeddings.token_embedding.weight": randn(gen, 40, 16), "logit_bias": torch.zeros(1, dtype=torch.float64)}
    full = dict(architectures=["SiglipModel"], model_type="siglip", torch_dtype="bfloat16",
                text_config=dict(model_type="siglip_text_model", hidden_size=16, vocab_size=40),
                vision_config=dict(cfg, model_type="siglip_vision_model", vision_use_head=False))
    tower_case("siglip_bf16", "siglip", gen, full, cfg, torch.bfloat16, head=False, extra_tensors=text)


# ---- Mono-InternVL patch-embedding front end ----------------------------------------------------------------

FRONT = dict(image_size=32, patch_size=8, hidden_size=32, llm_hidden=64)


def internvl_pixel_shuffle(x, scale_factor=0.5):
    """InternVLChatModel.pixel_shuffle with ps_version 'v2', verbatim semantics."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    return x.permute(0, 2, 1, 3).contiguous()


def front_forward(t, pixels):
    """InternVisionEmbeddings (class token + bicubic position embedding) then extract_feature's shuffle and mlp1."""
    e = "vision_model.embeddings."
    grid = FRONT["image_size"] // FRONT["patch_size"]
    patch = F.conv2d(pixels, t[e + "patch_embedding.weight"], t[e + "patch_embedding.bias"], stride=FRONT["patch_size"])
    b, _, h, w = patch.shape
    patch = patch.flatten(2).transpose(1, 2)
    cls = t[e + "class_embedding"].expand(b, 1, -1)
    x = torch.cat([cls, patch], dim=1)
    table = t[e + "position_embedding"]
    grid_pos = table[:, 1:, :].reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
    grid_pos = F.interpolate(grid_pos, size=(h, w), mode="bicubic", align_corners=False).reshape(1, -1, h * w).permute(0, 2, 1)
    x = x + torch.cat([table[:, :1, :], grid_pos], dim=1)
    x = x[:, 1:, :]
    side = int(x.shape[1] ** 0.5)
    x = internvl_pixel_shuffle(x.reshape(b, side, side, -1)).reshape(b, -1, 4 * FRONT["hidden_size"])
    x = F.layer_norm(x, (x.shape[-1],), t["mlp1.0.weight"], t["mlp1.0.bias"], 1e-5)
    x = F.gelu(F.linear(x, t["mlp1.1.weight"], t["mlp1.1.bias"]))
    return F.linear(x, t["mlp1.3.weight"], t["mlp1.3.bias"])


def front():
    gen = torch.Generator().manual_seed(7)
    w, p, d = FRONT["hidden_size"], FRONT["patch_size"], FRONT["llm_hidden"]
    grid = FRONT["image_size"] // p
    e = "vision_model.embeddings."
    t = {
        e + "class_embedding": randn(gen, 1, 1, w),
        e + "patch_embedding.weight": randn(gen, w, 3, p, p, std=0.1),
        e + "patch_embedding.bias": randn(gen, w, std=0.1),
        e + "position_embedding": randn(gen, 1, 1 + grid * grid, w, std=0.5),
        "mlp1.0.weight": randn(gen, 4 * w, std=0.1, mean=1.0),
        "mlp1.0.bias": randn(gen, 4 * w, std=0.1),
        "mlp1.1.weight": randn(gen, d, 4 * w, std=(4 * w) ** -0.5),
        "mlp1.1.bias": randn(gen, d, std=0.1),
        "mlp1.3.weight": randn(gen, d, d, std=d ** -0.5),
        "mlp1.3.bias": randn(gen, d, std=0.1),
        "language_model.model.tok_embeddings.weight": randn(gen, 10, d),
    }
    config = dict(architectures=["InternVLChatModel"], model_type="internvl_chat", downsample_ratio=0.5, ps_version="v2",
                  force_image_size=48, select_layer=-1, template="internlm2-chat",
                  vision_config=dict(architectures=["InternVisionPatchModel"], model_type="intern_vit_patch",
                                     image_size=FRONT["image_size"], patch_size=p, hidden_size=w),
                  llm_config=dict(architectures=["InternLM2VEForCausalLM"], model_type="internlm2", hidden_size=d))
    stored = {k: v.to(torch.float32) for k, v in t.items()}
    write_folder("mono_front", config, stored)
    trained = ["vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.patch_embedding.bias",
               "vision_model.embeddings.position_embedding"]
    for case, tile in (("mono_front_resized", 48), ("mono_front_base", 32)):
        weights = {k: v.to(torch.float64).clone().requires_grad_(k in trained) for k, v in stored.items()}
        pixels = randn(gen, BATCH, 3, tile, tile)
        out = front_forward(weights, pixels)
        upstream = randn(gen, *out.shape)
        (out * upstream).sum().backward()
        grads = {k: weights[k].grad for k in trained}
        save_case(FOLDER, case, "patch_front_end", {"model": "mono_front", "tile": tile}, {"pixels": pixels, "upstream": upstream}, {"y": out}, grads)

    # The bicubic map alone, to an odd non-square grid (upsampling and downsampling axes at once).
    table = randn(gen, 1, w, grid, grid)
    resized = F.interpolate(table, size=(7, 3), mode="bicubic", align_corners=False)
    save_case(FOLDER, "bicubic_4x4_to_7x3", "bicubic", {"in_h": grid, "in_w": grid, "out_h": 7, "out_w": 3},
              {"table": table[0].permute(1, 2, 0).reshape(grid * grid, w)}, {"y": resized[0].permute(1, 2, 0).reshape(21, w)}, {})


# ---- End to end: PNG -> Hugging Face preprocessing -> tower -------------------------------------------------

CLIP_MEAN, CLIP_STD = [0.48145466, 0.4578275, 0.40821073], [0.26862954, 0.26130258, 0.27577711]


def hf_pixels(image, kind, size):
    """CLIPImageProcessor (shortest edge + center crop) or SiglipImageProcessor (square resize), then rescale and
    normalize as transformers does (float64 rescale, float32 result)."""
    if kind == "clip":
        w, h = image.size
        short, long = min(w, h), max(w, h)
        new_long = int(size * long / short)
        target = (new_long, size) if w >= h else (size, new_long)
        resized = np.asarray(image.resize(target, Image.BICUBIC))
        top, left = (resized.shape[0] - size) // 2, (resized.shape[1] - size) // 2
        resized = resized[top:top + size, left:left + size]
        mean, std = CLIP_MEAN, CLIP_STD
    else:
        resized = np.asarray(image.resize((size, size), Image.BICUBIC))
        mean, std = [0.5] * 3, [0.5] * 3
    x = (resized.astype(np.float64) * (1 / 255)).astype(np.float32)
    x = (x - np.array(mean, dtype=np.float32)) / np.array(std, dtype=np.float32)
    return torch.from_numpy(x.transpose(2, 0, 1).copy()).to(torch.float64).unsqueeze(0)


def end_to_end():
    size = TOWER["image_size"]
    y, x = np.mgrid[0:30, 0:40]
    rgb = np.stack([(x * 6) % 256, (y * 8) % 256, ((x + y) * 5) % 256], axis=-1).astype(np.uint8)
    png = os.path.join(GOLDEN, FOLDER, "photo_40x30.png")
    Image.fromarray(rgb).save(png)
    image = Image.open(png).convert("RGB")
    processors = {
        "clip_vision": dict(image_processor_type="CLIPImageProcessor", do_resize=True, size={"shortest_edge": size}, resample=3,
                            do_center_crop=True, crop_size={"height": size, "width": size}, do_rescale=True, rescale_factor=1 / 255,
                            do_normalize=True, image_mean=CLIP_MEAN, image_std=CLIP_STD, do_convert_rgb=True),
        "siglip_head": dict(image_processor_type="SiglipImageProcessor", do_resize=True, size={"height": size, "width": size}, resample=3,
                            do_rescale=True, rescale_factor=1 / 255, do_normalize=True, image_mean=[0.5] * 3, image_std=[0.5] * 3),
    }
    for name, processor in processors.items():
        folder = os.path.join(MODELS, name)
        with open(os.path.join(folder, "preprocessor_config.json"), "w") as f:
            json.dump(processor, f, indent=2, sort_keys=True)
            f.write("\n")
        with open(os.path.join(folder, "config.json")) as f:
            cfg = json.load(f)
        kind = "clip" if name.startswith("clip") else "siglip"
        weights = {k: v.to(torch.float64) for k, v in load_safetensors(os.path.join(folder, "model.safetensors"))[0].items()}
        pixels = hf_pixels(image, kind, size)
        hidden, _, _ = (clip_forward if kind == "clip" else siglip_forward)(weights, pixels, cfg)
        save_case(FOLDER, "e2e_" + name, "encode_image", {"model": name, "image": "photo_40x30.png"}, {"pixels": pixels[0]},
                  {"features_last": hidden[-1][0], "features_m2": hidden[-2][0]}, {})


if __name__ == "__main__":
    shutil.rmtree(os.path.join(GOLDEN, FOLDER), ignore_errors=True)
    towers()
    front()
    end_to_end()
    total = sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(os.path.join(GOLDEN, FOLDER)) for f in fs)
    print(f"wrote {os.path.join(GOLDEN, FOLDER)} ({total / 1024:.0f} KiB)")
