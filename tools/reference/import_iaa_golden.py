"""IAA (360CVGroup/Inner-Adaptor-Architecture) released as one checkpoint, tiny, with logits from the authors' own code.

The oracle is 360CVGroup/Inner-Adaptor-Architecture at commit c09c044 (IAALlamaForCausalLM, its LlamaModel with
condition_layers after the frozen layers ehce_layers = [0,1,5,6,10,11,15,16,20,21,25,26,30,31], embed_tokens_condition,
norm_condition, lm_head_condtion, the grounding branch, IAAMetaForCausalLM.prepare_inputs_labels_for_multimodal and
its CLIP tower). Get it and run:
    git clone https://github.com/360CVGroup/Inner-Adaptor-Architecture /tmp/IAA && git -C /tmp/IAA checkout c09c044
    /usr/bin/python3 tools/reference/import_iaa_golden.py --iaa /tmp/IAA
Its modules are imported from that checkout; tools/reference/stubs/transformers stands in for transformers (the
pieces its copy of modeling_llama imports: ACT2FN, DynamicCache, the 4-D causal mask, ModelOutput; its attention runs
the eager path, as flash_attn does not exist on a CPU).

Writes, under tests/Graft.Tests/Golden/import/iaa/:
  llama-3-8b-instruct/   the frozen base: a LlamaForCausalLM folder (32 layers as Llama-3-8B, grouped-query attention,
                         rope_theta 500000, BF16 safetensors, the demo's byte-level tokenizer.json standing in for Llama 3's)
  iaa/                   the release: IAALlamaForCausalLM config (mm_* keys, model_type IAA), safetensors shards + index
                         holding the frozen base's tensors and both branches: MM (model.condition_layers.*,
                         model.embed_tokens_condition, model.norm_condition, lm_head_condtion, model.mm_projector) and
                         grounding (*_grounding, model.mm_projector_G)
  llava-pretrain/        a LLaVA stage-1 projector (mm_projector.bin + config.json) over the same base, so that the two
                         imports share one base (the serve test)
  golden.safetensors     ids, text_ids (I64; -200 where the image goes) and MM.image_logits, G.image_logits,
                         Text.text_logits (F32)
The CLIP tower is ../llava/clip-vit-large-patch14-336 (run import_llava_golden.py first).
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
from golden import GOLDEN, REPO, save_safetensors  # noqa: E402

OUT = os.path.join(GOLDEN, "import", "iaa")
CLIP = os.path.join(GOLDEN, "import", "llava", "clip-vit-large-patch14-336")
IAA_COMMIT = "c09c044"
EHCE = [0, 1, 5, 6, 10, 11, 15, 16, 20, 21, 25, 26, 30, 31]
LLM = dict(hidden_size=16, intermediate_size=24, num_attention_heads=2, num_key_value_heads=1, num_hidden_layers=32, vocab_size=691,
           max_position_embeddings=256, rms_norm_eps=1e-05, rope_theta=500000.0, torch_dtype="bfloat16", tie_word_embeddings=False)
VISION_WIDTH = 24


def json_file(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2)
        f.write("\n")


def fresh(name):
    folder = os.path.join(OUT, name)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    return folder


def llama_config():
    return {"architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0, "bos_token_id": 688, "eos_token_id": 690,
            "hidden_act": "silu", "initializer_range": 0.02, "model_type": "llama", "pretraining_tp": 1, "rope_scaling": None,
            "transformers_version": "4.40.0", "use_cache": True, **LLM}


def layer(gen, prefix):
    c, inter = LLM["hidden_size"], LLM["intermediate_size"]
    h, kv = LLM["num_attention_heads"], LLM["num_key_value_heads"]
    d = c // h

    def mat(rows, cols):
        return (torch.randn(rows, cols, generator=gen) / math.sqrt(cols)).bfloat16()
    return {
        prefix + "self_attn.q_proj.weight": mat(h * d, c), prefix + "self_attn.k_proj.weight": mat(kv * d, c),
        prefix + "self_attn.v_proj.weight": mat(kv * d, c), prefix + "self_attn.o_proj.weight": mat(c, h * d),
        prefix + "mlp.gate_proj.weight": mat(inter, c), prefix + "mlp.up_proj.weight": mat(inter, c), prefix + "mlp.down_proj.weight": mat(c, inter),
        prefix + "input_layernorm.weight": (1 + 0.1 * torch.randn(c, generator=gen)).bfloat16(),
        prefix + "post_attention_layernorm.weight": (1 + 0.1 * torch.randn(c, generator=gen)).bfloat16(),
    }


def projector(gen, prefix):
    d = LLM["hidden_size"]
    return {
        prefix + "0.weight": (torch.randn(d, VISION_WIDTH, generator=gen) / math.sqrt(VISION_WIDTH)).bfloat16(),
        prefix + "0.bias": (0.1 * torch.randn(d, generator=gen)).bfloat16(),
        prefix + "2.weight": (torch.randn(d, d, generator=gen) / math.sqrt(d)).bfloat16(),
        prefix + "2.bias": (0.1 * torch.randn(d, generator=gen)).bfloat16(),
    }


def branch(gen, suffix):
    """One workflow's own tensors: condition layers, embedding, norm, head (IAA trains copies of all of them)."""
    v, c = LLM["vocab_size"], LLM["hidden_size"]
    t = {}
    for k in range(len(EHCE)):
        t.update(layer(gen, f"model.condition_layers{suffix}.{k}."))
    t[f"model.embed_tokens_condition{suffix}.weight"] = torch.randn(v, c, generator=gen).bfloat16()
    t[f"model.norm_condition{suffix}.weight"] = (1 + 0.1 * torch.randn(c, generator=gen)).bfloat16()
    t[f"lm_head_condtion{suffix}.weight"] = (2 * torch.randn(v, c, generator=gen) / math.sqrt(c)).bfloat16()
    return t


def save_shards(folder, state):
    names = list(state)
    half = len(names) // 2
    weight_map, total = {}, 0
    for i, part in enumerate((names[:half], names[half:])):
        file = f"model-{i + 1:05d}-of-00002.safetensors"
        save_safetensors(os.path.join(folder, file), {n: state[n] for n in part}, {"format": "pt"})
        for n in part:
            weight_map[n] = file
            total += state[n].numel() * state[n].element_size()
    json_file(os.path.join(folder, "model.safetensors.index.json"), {"metadata": {"total_size": total}, "weight_map": weight_map})


def copy_tokenizer(folder):
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(os.path.join(REPO, "assets", "demo", "base", name), os.path.join(folder, name))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iaa", required=True, help=f"a checkout of 360CVGroup/Inner-Adaptor-Architecture at {IAA_COMMIT}")
    args = parser.parse_args()
    sys.path.insert(0, args.iaa)
    from iaa.model.language_model.iaa_llama import IAAConfig, IAALlamaForCausalLM

    os.makedirs(OUT, exist_ok=True)
    gen = torch.Generator().manual_seed(2408)
    base = collections.OrderedDict(llm_golden.random_weights(dict(LLM), "llama", gen))
    folder = fresh("llama-3-8b-instruct")
    json_file(os.path.join(folder, "config.json"), llama_config())
    json_file(os.path.join(folder, "generation_config.json"), {"bos_token_id": 688, "eos_token_id": 690, "do_sample": True, "temperature": 0.6, "top_p": 0.9})
    save_safetensors(os.path.join(folder, "model.safetensors"), base, {"format": "pt"})
    copy_tokenizer(folder)

    state = collections.OrderedDict(base)
    state.update(projector(gen, "model.mm_projector."))
    state.update(projector(gen, "model.mm_projector_G."))
    state.update(branch(gen, ""))
    state.update(branch(gen, "_grounding"))
    config = dict(llama_config(), architectures=["IAALlamaForCausalLM"], model_type="IAA", _name_or_path="qihoo360/Inner-Adaptor-Architecture",
                  auto_map={"AutoConfig": "configuration_llama.LlamaConfig", "AutoModelForCausalLM": "iaa_llama.IAALlamaForCausalLM"},
                  freeze_backbone=True, image_aspect_ratio="pad", mm_hidden_size=VISION_WIDTH, mm_projector_type="mlp2x_gelu",
                  mm_use_im_patch_token=False, mm_use_im_start_end=False, mm_vision_select_feature="patch", mm_vision_select_layer=-2,
                  mm_vision_tower="openai/clip-vit-large-patch14-336", tune_mm_mlp_adapter=False, use_mm_proj=True)
    folder = fresh("iaa")
    json_file(os.path.join(folder, "config.json"), config)
    json_file(os.path.join(folder, "generation_config.json"), {"bos_token_id": 688, "eos_token_id": 690})
    save_shards(folder, state)
    copy_tokenizer(folder)

    # The authors' model on these weights.
    cfg = IAAConfig(**dict(config, mm_vision_tower=CLIP))
    model = IAALlamaForCausalLM(cfg)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    model.get_vision_tower().load_model()
    model.double().eval()
    from iaa.mm_utils import process_images
    image = Image.open(os.path.join(GOLDEN, "import", "llava", "image.png")).convert("RGB")
    pixels = process_images([image], model.get_vision_tower().image_processor, model.config).double()
    ids = [1, 40, 41, -200, 13, 250, 7, 99, 400, 12]
    text_ids = [1, 40, 41, 13, 250, 7, 99, 400, 12, 5, 6]
    golden = {"ids": torch.tensor(ids), "text_ids": torch.tensor(text_ids)}
    with torch.no_grad():
        for task in ("MM", "G"):
            out = model(input_ids=torch.tensor([ids]), images=pixels, task_type=task, use_cache=False, return_dict=True)
            golden[f"{task}.image_logits"] = out.logits[0].float()
        out = model(input_ids=torch.tensor([text_ids]), task_type="Text", use_cache=False, return_dict=True)
        golden["Text.text_logits"] = out.logits[0].float()
    # The Text workflow is the frozen base: the same numbers as the base alone.
    reference = llm_golden.forward(dict(LLM), "llama", dict(base), llm_golden.embed("llama", dict(base), torch.tensor(text_ids)))
    assert torch.allclose(golden["Text.text_logits"].double(), reference, rtol=1e-5, atol=1e-5)

    # A LLaVA stage-1 projector over the same base, so that both plug-ins share it.
    folder = fresh("llava-pretrain")
    torch.save(collections.OrderedDict((k.replace("model.mm_projector.", "model.mm_projector."), v) for k, v in projector(gen, "model.mm_projector.").items()),
               os.path.join(folder, "mm_projector.bin"))
    json_file(os.path.join(folder, "config.json"), dict(config, architectures=["LlavaLlamaForCausalLM"], model_type="llava", tune_mm_mlp_adapter=True,
                                                     auto_map=None))
    save_safetensors(os.path.join(OUT, "golden.safetensors"), golden, {"iaa_commit": IAA_COMMIT})
    print({k: tuple(v.shape) for k, v in golden.items()})


if __name__ == "__main__":
    main()
