"""LLaVA-1.5 in its three published layouts, tiny, with logits from the authors' own code.

The oracle is haotian-liu/LLaVA at commit c121f0432da27facab705978f83c4ada465e46fd (LlavaLlamaForCausalLM,
prepare_inputs_labels_for_multimodal, CLIPVisionTower.feature_select, build_vision_projector, process_images with
expand2square, tokenizer_image_token, the vicuna_v1 conversation). Get it and run:
    git clone https://github.com/haotian-liu/LLaVA /tmp/LLaVA && git -C /tmp/LLaVA checkout c121f04
    /usr/bin/python3 tools/reference/import_llava_golden.py --llava /tmp/LLaVA
Nothing of LLaVA is copied here: its modules are imported from that checkout. transformers, which it imports, cannot
be installed, so tools/reference/stubs/transformers stands in (a Llama decoder and a CLIP tower with transformers'
names, run by llm_golden.py's and vision_golden.py's forwards in float64).

Writes, under tests/Graft.Tests/Golden/import/llava/ (the folders in each release's exact file layout and config keys,
at tiny sizes):
  clip-vit-large-patch14-336/   openai's CLIPModel folder: config.json (clip, with text_config and vision_config),
                                pytorch_model.bin (zip, F32), preprocessor_config.json (the old feature-extractor keys)
  vicuna-7b-v1.5/               lmsys' LlamaForCausalLM: two pytorch_model-*.bin shards (F16, with the
                                rotary_emb.inv_freq buffers transformers 4.31 saved) + index, tokenizer.model, ...
  llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5/   stage 1: config.json and mm_projector.bin (BF16)
  llava-v1.5-7b/                stage 2 (LLM fine-tuned): LlavaLlamaForCausalLM, two .bin shards (F16) + index,
                                model.mm_projector.*, model.vision_tower.vision_tower.vision_model.*, tokenizer.model
  llava-1.5-7b-hf/              llava-hf's LlavaForConditionalGeneration, safetensors shards + index in the key layout
                                transformers < 4.52 writes (language_model.model.*, language_model.lm_head,
                                vision_tower.*, multi_modal_projector.linear_{1,2}), vocabulary padded to a multiple
                                of 64 with <image> and <pad> added, tokenizer.json
  llava-1.5-7b-hf-v4.52/        the same weights in the layout of transformers >= 4.52 (model.language_model.*,
                                model.vision_tower.*, model.multi_modal_projector.*, lm_head)
  image.png                     a 40 x 28 picture (not square: expand2square pads it)
  golden.safetensors            text_ids, image_ids (I64, -200 where LLaVA puts the image) and, per case
                                (pretrain, v15, hf), CASE.text_logits and CASE.image_logits (F32 [T, V])
  prompts.json                  the vicuna_v1 prompts the ids encode
"""
import argparse
import collections
import json
import math
import os
import shutil
import sys
from types import SimpleNamespace

import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "stubs"))
sys.path.insert(0, HERE)
import llm_golden  # noqa: E402
import spm_tokenizer  # noqa: E402
import vision_golden  # noqa: E402
from golden import GOLDEN, save_safetensors  # noqa: E402

OUT = os.path.join(GOLDEN, "import", "llava")
LLAVA_COMMIT = "c121f0432da27facab705978f83c4ada465e46fd"

LLM = dict(hidden_size=32, intermediate_size=48, num_attention_heads=4, num_key_value_heads=4, num_hidden_layers=2, vocab_size=400,
           max_position_embeddings=256, rms_norm_eps=1e-05, rope_theta=10000.0, torch_dtype="float16", tie_word_embeddings=False)
VISION = dict(hidden_size=24, intermediate_size=40, num_attention_heads=4, num_hidden_layers=3, image_size=42, patch_size=14,
              projection_dim=16, num_channels=3, hidden_act="quick_gelu", layer_norm_eps=1e-05)
MEAN = [0.48145466, 0.4578275, 0.40821073]
STD = [0.26862954, 0.26130258, 0.27577711]


def json_file(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def fresh(name):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def inv_freq():
    d = LLM["hidden_size"] // LLM["num_attention_heads"]
    return 1.0 / (LLM["rope_theta"] ** (torch.arange(0, d, 2).float() / d))


def save_shards(folder, state, stem, ext, save):
    """Two shards and the index, as transformers' save_pretrained writes them."""
    names = list(state)
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, part in enumerate((names[:half], names[half:])):
        file = f"{stem}-{i + 1:05d}-of-00002.{ext}"
        save({n: state[n] for n in part}, os.path.join(folder, file))
        for n in part:
            weight_map[n] = file
            total += state[n].numel() * state[n].element_size()
    json_file(os.path.join(folder, f"{stem}.{'bin' if ext == 'bin' else 'safetensors'}.index.json"),
              {"metadata": {"total_size": total}, "weight_map": weight_map})


def torch_save(state, path):
    torch.save(collections.OrderedDict(state), path)


def clip_folder(gen):
    folder = fresh("clip-vit-large-patch14-336")
    vision = {k: v.float() for k, v in vision_golden.tower_tensors(gen, VISION, "clip", False).items()}
    text = {
        "text_model.embeddings.token_embedding.weight": torch.randn(49408 // 256, 16, generator=gen),
        "text_model.embeddings.position_embedding.weight": torch.randn(77, 16, generator=gen),
        "text_model.final_layer_norm.weight": torch.ones(16),
        "text_model.final_layer_norm.bias": torch.zeros(16),
        "text_projection.weight": torch.randn(16, 16, generator=gen),
        "visual_projection.weight": torch.randn(16, VISION["hidden_size"], generator=gen),
        "logit_scale": torch.tensor(4.6052),
    }
    torch_save({**text, **vision}, os.path.join(folder, "pytorch_model.bin"))
    json_file(os.path.join(folder, "config.json"), {
        "_name_or_path": "openai/clip-vit-large-patch14-336", "architectures": ["CLIPModel"], "initializer_factor": 1.0,
        "logit_scale_init_value": 2.6592, "model_type": "clip", "projection_dim": 16,
        "text_config": {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 0, "projection_dim": 16,
                        "vocab_size": 49408 // 256, "model_type": "clip_text_model"},
        "torch_dtype": "float32", "transformers_version": "4.21.3",
        "vision_config": dict(VISION, model_type="clip_vision_model", dropout=0.0, attention_dropout=0.0, initializer_range=0.02)})
    json_file(os.path.join(folder, "preprocessor_config.json"), {
        "crop_size": VISION["image_size"], "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "feature_extractor_type": "CLIPFeatureExtractor", "image_mean": MEAN, "image_std": STD, "resample": 3, "size": VISION["image_size"]})
    return folder, {k: v for k, v in vision.items()}


def tokenizer_files(folder, model_path):
    shutil.copy(model_path, os.path.join(folder, "tokenizer.model"))
    json_file(os.path.join(folder, "tokenizer_config.json"), {
        "add_bos_token": True, "add_eos_token": False, "bos_token": {"__type": "AddedToken", "content": "<s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "clean_up_tokenization_spaces": False, "eos_token": {"__type": "AddedToken", "content": "</s>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False},
        "legacy": False, "model_max_length": 4096, "pad_token": None, "padding_side": "right", "sp_model_kwargs": {}, "tokenizer_class": "LlamaTokenizer",
        "unk_token": {"__type": "AddedToken", "content": "<unk>", "lstrip": False, "normalized": False, "rstrip": False, "single_word": False}})
    json_file(os.path.join(folder, "special_tokens_map.json"), {"bos_token": "<s>", "eos_token": "</s>", "pad_token": "<unk>", "unk_token": "<unk>"})


def llama_config(**extra):
    return {"architectures": ["LlamaForCausalLM"], "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu", "initializer_range": 0.02,
            "model_type": "llama", "pad_token_id": 0, "pretraining_tp": 1, "rope_scaling": None, "transformers_version": "4.31.0", "use_cache": True,
            **LLM, **extra}


def llava_config(**extra):
    cfg = llama_config(**extra)
    cfg.update({"architectures": ["LlavaLlamaForCausalLM"], "model_type": "llava", "_name_or_path": "./checkpoints/vicuna-7b-v1-5",
                "freeze_mm_mlp_adapter": False, "image_aspect_ratio": "pad", "max_length": 4096, "mm_hidden_size": VISION["hidden_size"],
                "mm_projector_lr": None, "mm_projector_type": "mlp2x_gelu", "mm_use_im_patch_token": False, "mm_use_im_start_end": False,
                "mm_vision_select_feature": "patch", "mm_vision_select_layer": -2, "mm_vision_tower": "openai/clip-vit-large-patch14-336",
                "tokenizer_model_max_length": 2048, "tokenizer_padding_side": "right", "tune_mm_mlp_adapter": False, "tune_mm_vision_resampler": False,
                "unfreeze_mm_vision_tower": False, "use_mm_proj": True})
    return cfg


def with_inv_freq(state):
    out = collections.OrderedDict()
    for name, t in state.items():
        out[name] = t
        if name.endswith("self_attn.o_proj.weight"):
            out[name.replace("o_proj.weight", "rotary_emb.inv_freq")] = inv_freq().half()
    return out


def projector(gen, dtype):
    d, dv = LLM["hidden_size"], VISION["hidden_size"]
    return collections.OrderedDict([
        ("model.mm_projector.0.weight", (torch.randn(d, dv, generator=gen) / math.sqrt(dv)).to(dtype)),
        ("model.mm_projector.0.bias", (0.1 * torch.randn(d, generator=gen)).to(dtype)),
        ("model.mm_projector.2.weight", (torch.randn(d, d, generator=gen) / math.sqrt(d)).to(dtype)),
        ("model.mm_projector.2.bias", (0.1 * torch.randn(d, generator=gen)).to(dtype)),
    ])


class SpTokenizer:
    """The slow LlamaTokenizer's encoding (legacy): BOS, then sentencepiece's pieces."""

    def __init__(self, path):
        import sentencepiece as spm
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.bos_token_id = 1

    def __call__(self, text):
        return SimpleNamespace(input_ids=[1] + self.sp.encode(text))


def oracle(config, state, clip, pixels_from, text_ids, image_ids, projector_file=None, tower=None):
    """Logits of LLaVA's LlavaLlamaForCausalLM for a text prompt and an image prompt (tower: weights replacing the CLIP folder's)."""
    from llava.model.language_model.llava_llama import LlavaConfig, LlavaLlamaForCausalLM
    from llava.mm_utils import process_images
    cfg = LlavaConfig(**dict(config, mm_vision_tower=clip))
    model = LlavaLlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert all(".rotary_emb." in n or ".vision_tower." in n for n in unexpected), unexpected
    assert all(n.startswith("model.mm_projector") and projector_file for n in missing), missing
    model.get_vision_tower().load_model()
    if tower is not None:
        model.get_vision_tower().vision_tower.tensors = {k: v.double() for k, v in tower.items()}
    if projector_file:
        model.get_model().initialize_vision_modules(SimpleNamespace(
            vision_tower=clip, mm_vision_select_layer=-2, mm_vision_select_feature="patch", pretrain_mm_mlp_adapter=projector_file,
            mm_patch_merge_type="flat", mm_projector_type="mlp2x_gelu"))
    model.double().eval()
    pixels = process_images([pixels_from], model.get_vision_tower().image_processor, model.config).double()
    with torch.no_grad():
        text = model(input_ids=torch.tensor([text_ids])).logits[0]
        image = model(input_ids=torch.tensor([image_ids]), images=pixels).logits[0]
    return text.float(), image.float()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--llava", required=True, help=f"a checkout of haotian-liu/LLaVA at {LLAVA_COMMIT}")
    args = parser.parse_args()
    sys.path.insert(0, args.llava)
    from llava.conversation import conv_templates
    from llava.mm_utils import tokenizer_image_token

    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(1505)
    spm_model = spm_tokenizer.train(os.path.join(OUT, ".spm"))
    tokenizer = SpTokenizer(spm_model)
    clip, vision = clip_folder(gen)

    image = Image.new("RGB", (40, 28))
    image.putdata([((x * 37 + y * 11) % 256, (x * 5 + y * 23) % 256, (x * y * 3 + 50) % 256) for y in range(28) for x in range(40)])
    image.save(os.path.join(OUT, "image.png"))

    conv = conv_templates["vicuna_v1"].copy()
    conv.append_message(conv.roles[0], "What is the capital of France?")
    conv.append_message(conv.roles[1], None)
    text_prompt = conv.get_prompt()
    conv = conv_templates["vicuna_v1"].copy()
    conv.append_message(conv.roles[0], "<image>\nWhat is in this picture?")
    conv.append_message(conv.roles[1], None)
    image_prompt = conv.get_prompt()
    text_ids = tokenizer(text_prompt).input_ids
    image_ids = tokenizer_image_token(image_prompt, tokenizer)
    json_file(os.path.join(OUT, "prompts.json"), {"text": text_prompt, "image": image_prompt, "template": "vicuna_v1"})

    # lmsys/vicuna-7b-v1.5: the base LLaVA-1.5 starts from.
    vicuna = collections.OrderedDict(llm_golden.random_weights(dict(LLM, tie_word_embeddings=False), "llama", gen))
    folder = fresh("vicuna-7b-v1.5")
    json_file(os.path.join(folder, "config.json"), llama_config(_name_or_path="vicuna-7b-v1.5"))
    json_file(os.path.join(folder, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
                                                               "temperature": 0.9, "top_p": 0.6, "transformers_version": "4.31.0"})
    save_shards(folder, with_inv_freq(vicuna), "pytorch_model", "bin", torch_save)
    tokenizer_files(folder, spm_model)

    # Stage 1: the projector alone, over the frozen Vicuna.
    folder = fresh("llava-v1.5-mlp2x-336px-pretrain-vicuna-7b-v1.5")
    stage1 = projector(gen, torch.bfloat16)
    torch_save(stage1, os.path.join(folder, "mm_projector.bin"))
    json_file(os.path.join(folder, "config.json"), llava_config(_name_or_path="lmsys/vicuna-7b-v1.5", tune_mm_mlp_adapter=True, torch_dtype="bfloat16",
                                                              tokenizer_model_max_length=2048))
    cases = {"pretrain": oracle(llava_config(), vicuna, clip, image, text_ids, image_ids, projector_file=os.path.join(folder, "mm_projector.bin"))}

    # Stage 2: projector and LLM fine-tuned together.
    tuned = collections.OrderedDict((k, (v.float() + 0.02 * torch.randn(v.shape, generator=gen)).half()) for k, v in vicuna.items())
    head = tuned.pop("lm_head.weight")
    v15 = collections.OrderedDict(list(tuned.items()) + list(projector(gen, torch.float16).items()))
    for name, t in vision.items():
        v15["model.vision_tower.vision_tower." + name] = t.half()
    v15["lm_head.weight"] = head
    folder = fresh("llava-v1.5-7b")
    json_file(os.path.join(folder, "config.json"), llava_config())
    json_file(os.path.join(folder, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": 2, "max_length": 4096, "pad_token_id": 0,
                                                               "transformers_version": "4.31.0"})
    save_shards(folder, with_inv_freq(v15), "pytorch_model", "bin", torch_save)
    tokenizer_files(folder, spm_model)
    cases["v15"] = oracle(llava_config(), v15, clip, image, text_ids, image_ids)

    # llava-hf: transformers' convert_llava_weights_to_hf.py on llava-v1.5-7b (vocabulary + <image>, <pad>, padded to 64).
    vocab = LLM["vocab_size"]
    padded = (vocab + 2 + 63) // 64 * 64
    state = collections.OrderedDict((k, v) for k, v in v15.items())
    for name in ("model.embed_tokens.weight", "lm_head.weight"):
        t = state[name].float()
        extra = t.mean(0) + 0.01 * torch.randn(padded - vocab, t.shape[1], generator=gen)
        state[name] = torch.cat([t, extra]).half()
    hf_llm = dict(LLM, vocab_size=padded)
    # llava-hf ships the tower it took from the checkpoint, in float16.
    hf_tower = {k[len("model.vision_tower.vision_tower."):]: v for k, v in state.items() if k.startswith("model.vision_tower.vision_tower.")}
    cases["hf"] = oracle(dict(llava_config(), vocab_size=padded), state, clip, image, text_ids, image_ids, tower=hf_tower)

    def hf_name(name, new):
        if name.startswith("model.vision_tower.vision_tower."):
            return ("model." if new else "") + "vision_tower." + name[len("model.vision_tower.vision_tower."):]
        if name.startswith("model.mm_projector."):
            rest = name[len("model.mm_projector."):].replace("0.", "linear_1.", 1).replace("2.", "linear_2.", 1)
            return ("model." if new else "") + "multi_modal_projector." + rest
        if name == "lm_head.weight":
            return "lm_head.weight" if new else "language_model.lm_head.weight"
        return ("model.language_model." + name[len("model."):]) if new else "language_model." + name

    for folder_name, new in (("llava-1.5-7b-hf", False), ("llava-1.5-7b-hf-v4.52", True)):
        folder = fresh(folder_name)
        hf_state = collections.OrderedDict((hf_name(k, new), v) for k, v in state.items())
        save_shards(folder, hf_state, "model", "safetensors", lambda s, p: save_safetensors(p, s, {"format": "pt"}))
        text_config = {"_name_or_path": "lmsys/vicuna-7b-v1.5", "architectures": ["LlamaForCausalLM"], "model_type": "llama", "torch_dtype": "float16",
                       **{k: v for k, v in hf_llm.items() if k != "torch_dtype"}}
        json_file(os.path.join(folder, "config.json"), {
            "architectures": ["LlavaForConditionalGeneration"], "ignore_index": -100, "image_token_index": vocab, "model_type": "llava",
            "pad_token_id": vocab + 1, "projector_hidden_act": "gelu", "text_config": text_config, "tie_word_embeddings": False, "torch_dtype": "float16",
            "transformers_version": "4.52.0" if new else "4.36.0.dev0", "vision_config": dict(VISION, model_type="clip_vision_model", vocab_size=32000),
            "vision_feature_layer": -2, "vision_feature_select_strategy": "default", "vocab_size": padded,
            **({"image_seq_length": (VISION["image_size"] // VISION["patch_size"]) ** 2, "multimodal_projector_bias": True} if new else {})})
        json_file(os.path.join(folder, "generation_config.json"), {"bos_token_id": 1, "eos_token_id": 2, "pad_token_id": vocab + 1})
        json_file(os.path.join(folder, "preprocessor_config.json"), {
            "crop_size": {"height": VISION["image_size"], "width": VISION["image_size"]}, "do_center_crop": True, "do_convert_rgb": True,
            "do_normalize": True, "do_rescale": True, "do_resize": True, "image_mean": MEAN, "image_processor_type": "CLIPImageProcessor",
            "image_std": STD, "processor_class": "LlavaProcessor", "resample": 3, "rescale_factor": 0.00392156862745098,
            "size": {"shortest_edge": VISION["image_size"]}})
        tokenizer_files(folder, spm_model)
        spm_tokenizer.write_json(os.path.join(folder, "tokenizer.json"), spm_tokenizer.llama_tokenizer_json(spm_model, [(vocab, "<image>"), (vocab + 1, "<pad>")]))

    golden = {"text_ids": torch.tensor(text_ids), "image_ids": torch.tensor(image_ids)}
    for case, (text, img) in cases.items():
        golden[f"{case}.text_logits"] = text
        golden[f"{case}.image_logits"] = img
    save_safetensors(os.path.join(OUT, "golden.safetensors"), golden, {"llava_commit": LLAVA_COMMIT})
    shutil.rmtree(os.path.join(OUT, ".spm"))
    print({k: tuple(v.shape) for k, v in golden.items()})


if __name__ == "__main__":
    main()
