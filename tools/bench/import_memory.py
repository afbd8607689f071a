"""A synthetic multi-GB LLaVA-1.5 release (llava-v1.5-7b's widths, 4 layers, F16 .bin shards) to measure graft import's memory.

Writes DIR/llava-big/ (config.json as LLaVA's, two zip-format pytorch_model-*.bin shards + index, a tokenizer.model copied
from the golden fixture) and DIR/clip/ (the golden tiny CLIP: the tower is not what is measured).
Run: /usr/bin/python3 tools/bench/import_memory.py DIR; then
     /usr/bin/time -v graft import DIR/llava-big --vision DIR/clip --out DIR/out   (Maximum resident set size)
"""
import collections
import json
import os
import shutil
import sys

import torch

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIXTURE = os.path.join(REPO, "tests", "Graft.Tests", "Golden", "import", "llava")


def main():
    out = sys.argv[1]
    folder = os.path.join(out, "llava-big")
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(FIXTURE, "llava-v1.5-7b", "config.json")) as f:
        config = json.load(f)
    d, inter, vocab, layers = 4096, 11008, 32000, 4
    config.update(hidden_size=d, intermediate_size=inter, vocab_size=vocab, num_hidden_layers=layers, num_attention_heads=32, num_key_value_heads=32)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)
    for name in ("tokenizer.model", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
        shutil.copy(os.path.join(FIXTURE, "llava-v1.5-7b", name), os.path.join(folder, name))
    shutil.copytree(os.path.join(FIXTURE, "clip-vit-large-patch14-336"), os.path.join(out, "clip"), dirs_exist_ok=True)
    dv = 24
    g = torch.Generator().manual_seed(0)

    def t(*shape):
        return (torch.randn(*shape, generator=g) * 0.02).half()
    shards = [collections.OrderedDict(), collections.OrderedDict()]
    shards[0]["model.embed_tokens.weight"] = t(vocab, d)
    for i in range(layers):
        s = shards[0 if i < layers // 2 else 1]
        p = f"model.layers.{i}."
        for n in ("q", "k", "v", "o"):
            s[p + f"self_attn.{n}_proj.weight"] = t(d, d)
        s[p + "mlp.gate_proj.weight"] = t(inter, d)
        s[p + "mlp.up_proj.weight"] = t(inter, d)
        s[p + "mlp.down_proj.weight"] = t(d, inter)
        s[p + "input_layernorm.weight"] = torch.ones(d).half()
        s[p + "post_attention_layernorm.weight"] = torch.ones(d).half()
    shards[1]["model.norm.weight"] = torch.ones(d).half()
    shards[1]["model.mm_projector.0.weight"] = t(d, dv)
    shards[1]["model.mm_projector.0.bias"] = t(d)
    shards[1]["model.mm_projector.2.weight"] = t(d, d)
    shards[1]["model.mm_projector.2.bias"] = t(d)
    shards[1]["lm_head.weight"] = t(vocab, d)
    weight_map = {}
    for i, s in enumerate(shards):
        file = f"pytorch_model-{i + 1:05d}-of-00002.bin"
        torch.save(s, os.path.join(folder, file))
        weight_map.update({k: file for k in s})
    with open(os.path.join(folder, "pytorch_model.bin.index.json"), "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)
    config["mm_hidden_size"] = dv
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(config, f, indent=2)


if __name__ == "__main__":
    main()
