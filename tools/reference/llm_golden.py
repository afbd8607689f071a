"""Independent oracle for Graft's decoder: tiny random Llama-family checkpoints and their logits.

Writes, under tests/Graft.Tests/Golden/llm/:
  models/<family>/   a real Hugging Face folder (config.json with the family's own keys,
                     generation_config.json, safetensors weights under the family's own names)
  <family>.safetensors  golden values: `ids.N` (I64 [T]) and `logits.N` (F32 [T, V], every position,
                     full forward without cache); `prompt` and `greedy` (I64, 8 greedy tokens by full
                     recomputation); for internlm2 (dynamic NTK) `cached_logits.2`, the
                     logits of ids.2 computed with a KV cache, `cached_prefill` tokens at once and then
                     one at a time past max_position_embeddings; for qwen2 also `embeds.0`, `upstream.0` and `grad_embeds.0`, the
                     gradient of sum(logits.0 * upstream.0) with respect to the input embeddings.

The forward below is written from the published architectures (transformers' modeling_llama.py and
modeling_qwen2.py, InternLM2's modeling_internlm2.py), in float64 from the stored (rounded) weights:
  - RMSNorm: x * rsqrt(mean(x^2) + eps) * w
  - RoPE in the rotate_half convention (first half / second half of each head), cos/sin of
    position * inv_freq; llama3 scaling as transformers' _compute_llama3_parameters; InternLM2's
    dynamic NTK: base * ((factor * L / max_pos) - (factor - 1)) ** (d / (d - 2)) once L > max_pos,
    where L is the sequence length seen so far.
  - attention: softmax(q k^T / sqrt(D) + causal) v with K/V heads repeated for grouped queries
  - MLP: down(silu(gate(x)) * up(x))
  - InternLM2's fused wqkv read exactly as its modeling file does:
    rearrange("b q (h gs d) -> b q h gs d", gs = 2 + groups): per KV group, its query heads, then
    its key head, then its value head.

Run: /usr/bin/python3 tools/reference/llm_golden.py
"""
import json
import math
import os
import shutil

import torch

from golden import GOLDEN, save_safetensors

OUT = os.path.join(GOLDEN, "llm")
MODELS = os.path.join(OUT, "models")

QWEN2 = {
    "architectures": ["Qwen2ForCausalLM"],
    "attention_dropout": 0.0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 96,
    "max_position_embeddings": 512,
    "max_window_layers": 2,
    "model_type": "qwen2",
    "num_attention_heads": 4,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "rms_norm_eps": 1e-06,
    "rope_theta": 1000000.0,
    "sliding_window": 512,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "transformers_version": "4.43.1",
    "use_cache": True,
    "use_sliding_window": False,
    "vocab_size": 384,
}

# head_dim is given explicitly and differs from hidden / heads; the llama3 band (wavelengths between
# original_max_position_embeddings / high_freq_factor and / low_freq_factor) is scaled down so that
# three of the 16 frequencies are smoothed and the rest of the low ones divided by the factor, all
# of which turn by whole radians within a dozen positions.
LLAMA = {
    "architectures": ["LlamaForCausalLM"],
    "attention_bias": False,
    "attention_dropout": 0.0,
    "bos_token_id": 5,
    "eos_token_id": [6, 7],
    "head_dim": 32,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 160,
    "max_position_embeddings": 512,
    "mlp_bias": False,
    "model_type": "llama",
    "num_attention_heads": 4,
    "num_hidden_layers": 3,
    "num_key_value_heads": 2,
    "pretraining_tp": 1,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {
        "factor": 8.0,
        "high_freq_factor": 4.0,
        "low_freq_factor": 1.0,
        "original_max_position_embeddings": 64,
        "rope_type": "llama3",
    },
    "rope_theta": 10000.0,
    "tie_word_embeddings": False,
    "torch_dtype": "bfloat16",
    "transformers_version": "4.45.0",
    "use_cache": True,
    "vocab_size": 320,
}

# max_position_embeddings is tiny so that one golden sequence runs past it and the dynamic NTK base
# applies; prompts and greedy continuations stay within it.
INTERNLM2 = {
    "architectures": ["InternLM2ForCausalLM"],
    "attn_implementation": "eager",
    "auto_map": {
        "AutoConfig": "configuration_internlm2.InternLM2Config",
        "AutoModelForCausalLM": "modeling_internlm2.InternLM2ForCausalLM",
    },
    "bias": False,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "hidden_act": "silu",
    "hidden_size": 64,
    "initializer_range": 0.02,
    "intermediate_size": 128,
    "max_position_embeddings": 16,
    "model_type": "internlm2",
    "num_attention_heads": 8,
    "num_hidden_layers": 2,
    "num_key_value_heads": 2,
    "pad_token_id": 2,
    "rms_norm_eps": 1e-05,
    "rope_scaling": {"type": "dynamic", "factor": 2.0},
    "rope_theta": 1000000,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "transformers_version": "4.41.0",
    "use_cache": True,
    "vocab_size": 352,
}

STORED = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def heads(cfg):
    h = cfg["num_attention_heads"]
    kv = cfg.get("num_key_value_heads", h)
    d = cfg.get("head_dim") or cfg["hidden_size"] // h
    return h, kv, d


def inv_freq(cfg, seq_len):
    """Rotary inverse frequencies [D/2] for a sequence of seq_len positions seen so far."""
    _, _, d = heads(cfg)
    base = float(cfg["rope_theta"])
    scaling = cfg.get("rope_scaling")
    kind = None if scaling is None else scaling.get("rope_type", scaling.get("type"))
    if kind == "dynamic":
        max_pos = cfg["max_position_embeddings"]
        if seq_len > max_pos:
            f = scaling["factor"]
            base = base * ((f * seq_len / max_pos) - (f - 1)) ** (d / (d - 2))
    inv = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.int64).double() / d))
    if kind == "linear":
        inv = inv / scaling["factor"]
    if kind == "llama3":
        factor = scaling["factor"]
        low, high = scaling["low_freq_factor"], scaling["high_freq_factor"]
        old = scaling["original_max_position_embeddings"]
        low_wavelen, high_wavelen = old / low, old / high
        wavelen = 2 * math.pi / inv
        scaled = torch.where(wavelen > low_wavelen, inv / factor, inv)
        smooth = (old / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = ~(wavelen < high_wavelen) * ~(wavelen > low_wavelen)
        inv = torch.where(medium, smoothed, scaled)
    return inv


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rms_norm(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def random_weights(cfg, family, gen):
    """Weights under the family's Hugging Face names, in the stored dtype."""
    c, inter, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    h, kv, d = heads(cfg)

    def mat(rows, cols, scale=1.0):
        return torch.randn(rows, cols, generator=gen) * scale / math.sqrt(cols)

    def vec(n, center=0.0, scale=0.1):
        return center + scale * torch.randn(n, generator=gen)

    # A tied head reads the embedding table, so a large table makes every token predict itself again.
    embed_scale = 0.15 if cfg.get("tie_word_embeddings", True) else 1.0
    w = {}
    if family == "internlm2":
        w["model.tok_embeddings.weight"] = torch.randn(v, c, generator=gen)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            w[p + "attention.wqkv.weight"] = mat((h + 2 * kv) * d, c)
            w[p + "attention.wo.weight"] = mat(c, h * d)
            w[p + "feed_forward.w1.weight"] = mat(inter, c)
            w[p + "feed_forward.w3.weight"] = mat(inter, c)
            w[p + "feed_forward.w2.weight"] = mat(c, inter)
            w[p + "attention_norm.weight"] = vec(c, 1.0)
            w[p + "ffn_norm.weight"] = vec(c, 1.0)
        w["model.norm.weight"] = vec(c, 1.0)
        w["output.weight"] = mat(v, c, 2.0)
    else:
        w["model.embed_tokens.weight"] = torch.randn(v, c, generator=gen) * embed_scale
        bias = family == "qwen2" or cfg.get("attention_bias", False)
        for i in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{i}."
            w[p + "self_attn.q_proj.weight"] = mat(h * d, c)
            w[p + "self_attn.k_proj.weight"] = mat(kv * d, c)
            w[p + "self_attn.v_proj.weight"] = mat(kv * d, c)
            w[p + "self_attn.o_proj.weight"] = mat(c, h * d)
            if bias:
                w[p + "self_attn.q_proj.bias"] = vec(h * d, scale=0.5)
                w[p + "self_attn.k_proj.bias"] = vec(kv * d, scale=0.5)
                w[p + "self_attn.v_proj.bias"] = vec(kv * d, scale=0.5)
            w[p + "mlp.gate_proj.weight"] = mat(inter, c)
            w[p + "mlp.up_proj.weight"] = mat(inter, c)
            w[p + "mlp.down_proj.weight"] = mat(c, inter)
            w[p + "input_layernorm.weight"] = vec(c, 1.0)
            w[p + "post_attention_layernorm.weight"] = vec(c, 1.0)
        w["model.norm.weight"] = vec(c, 1.0)
        if not cfg.get("tie_word_embeddings", True):
            w["lm_head.weight"] = mat(v, c, 2.0)
    stored = STORED[cfg["torch_dtype"]]
    return {k: t.to(stored) for k, t in w.items()}


def empty_cache(cfg):
    _, kv, d = heads(cfg)
    return [[torch.zeros(kv, 0, d, dtype=torch.float64)] * 2 for _ in range(cfg["num_hidden_layers"])]


def forward(cfg, family, w, embeds, past=None):
    """Logits [T, V] (float64) for input embeddings [T, C] at positions P..P+T-1.

    past: per layer [keys, values] ([H_kv, P, D], keys already rotated) of P earlier tokens, extended in
    place. As in Hugging Face generation, the rotary table is the one for P+T positions, so with dynamic
    NTK past its limit earlier keys keep the rotation of the step that computed them.
    """
    w = {k: t.double() for k, t in w.items()}
    h, kv, d = heads(cfg)
    groups = h // kv
    eps = cfg["rms_norm_eps"]
    t_len = embeds.shape[0]
    if past is None:
        past = empty_cache(cfg)
    start = past[0][0].shape[1]
    positions = torch.arange(start, start + t_len, dtype=torch.float64)
    freqs = torch.outer(positions, inv_freq(cfg, start + t_len))
    emb = torch.cat((freqs, freqs), dim=-1)
    cos, sin = emb.cos(), emb.sin()
    causal = torch.full((t_len, start + t_len), float("-inf"), dtype=torch.float64).triu(start + 1)
    x = embeds
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        if family == "internlm2":
            normed = rms_norm(x, w[p + "attention_norm.weight"], eps)
            qkv = (normed @ w[p + "attention.wqkv.weight"].T).view(t_len, kv, groups + 2, d)
            q = qkv[:, :, :groups, :].reshape(t_len, h, d)
            k = qkv[:, :, -2, :]
            v = qkv[:, :, -1, :]
        else:
            normed = rms_norm(x, w[p + "input_layernorm.weight"], eps)

            def proj(name):
                y = normed @ w[p + f"self_attn.{name}.weight"].T
                b = w.get(p + f"self_attn.{name}.bias")
                return y if b is None else y + b

            q = proj("q_proj").view(t_len, h, d)
            k = proj("k_proj").view(t_len, kv, d)
            v = proj("v_proj").view(t_len, kv, d)
        q, k, v = q.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1)  # [H, T, D]
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        past[i][0] = k = torch.cat((past[i][0], k), dim=1)
        past[i][1] = v = torch.cat((past[i][1], v), dim=1)
        k = k.repeat_interleave(groups, dim=0)
        v = v.repeat_interleave(groups, dim=0)
        scores = q @ k.transpose(1, 2) / math.sqrt(d) + causal
        attn = torch.softmax(scores, dim=-1) @ v  # [H, T, D]
        attn = attn.transpose(0, 1).reshape(t_len, h * d)
        if family == "internlm2":
            x = x + attn @ w[p + "attention.wo.weight"].T
            normed = rms_norm(x, w[p + "ffn_norm.weight"], eps)
            gate = normed @ w[p + "feed_forward.w1.weight"].T
            up = normed @ w[p + "feed_forward.w3.weight"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "feed_forward.w2.weight"].T
        else:
            x = x + attn @ w[p + "self_attn.o_proj.weight"].T
            normed = rms_norm(x, w[p + "post_attention_layernorm.weight"], eps)
            gate = normed @ w[p + "mlp.gate_proj.weight"].T
            up = normed @ w[p + "mlp.up_proj.weight"].T
            x = x + (torch.nn.functional.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    x = rms_norm(x, w["model.norm.weight"], eps)
    if family == "internlm2":
        head = w["output.weight"]
    else:
        head = w.get("lm_head.weight", w["model.embed_tokens.weight"])
    return x @ head.T


def embed(family, w, ids):
    table = w["model.tok_embeddings.weight" if family == "internlm2" else "model.embed_tokens.weight"]
    return table.double()[ids]


def greedy(cfg, family, w, prompt, steps):
    """Greedy tokens by full recomputation; fails when a choice is too close to call in float32."""
    ids = list(prompt)
    out = []
    for _ in range(steps):
        logits = forward(cfg, family, w, embed(family, w, torch.tensor(ids)))[-1]
        top = torch.topk(logits, 2).values
        assert top[0] - top[1] > 1e-3, f"{family}: greedy choice too close to call ({top.tolist()})"
        token = int(torch.argmax(logits))
        out.append(token)
        ids.append(token)
    return out


def write_model(family, cfg, w, shards):
    folder = os.path.join(MODELS, family)
    shutil.rmtree(folder, ignore_errors=True)
    os.makedirs(folder)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    generation = {"bos_token_id": cfg["bos_token_id"], "eos_token_id": cfg["eos_token_id"], "do_sample": False}
    with open(os.path.join(folder, "generation_config.json"), "w") as f:
        json.dump(generation, f, indent=2)
    if shards == 1:
        save_safetensors(os.path.join(folder, "model.safetensors"), w, {"format": "pt"})
        return
    names = list(w)
    per = (len(names) + shards - 1) // shards
    weight_map = {}
    total = 0
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: w[n] for n in names[s * per:(s + 1) * per]}
        save_safetensors(os.path.join(folder, file), part, {"format": "pt"})
        for n, t in part.items():
            weight_map[n] = file
            total += t.numel() * t.element_size()
    with open(os.path.join(folder, "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)


def make(family, cfg, shards, lengths, prompt_length, seed):
    gen = torch.Generator().manual_seed(seed)
    w = random_weights(cfg, family, gen)
    write_model(family, cfg, w, shards)
    golden = {}
    for n, t_len in enumerate(lengths):
        ids = torch.randint(0, cfg["vocab_size"], (t_len,), generator=gen)
        golden[f"ids.{n}"] = ids
        golden[f"logits.{n}"] = forward(cfg, family, w, embed(family, w, ids)).float()
    prompt = torch.randint(0, cfg["vocab_size"], (prompt_length,), generator=gen)
    golden["prompt"] = prompt
    golden["greedy"] = torch.tensor(greedy(cfg, family, w, prompt.tolist(), 8), dtype=torch.int64)
    if cfg.get("rope_scaling", {}).get("type") == "dynamic":
        # Prefill within max_position_embeddings, then one token at a time past it.
        ids = golden[f"ids.{len(lengths) - 1}"]
        prefill = cfg["max_position_embeddings"] // 2
        past = empty_cache(cfg)
        rows = []
        for chunk in [ids[:prefill]] + [ids[i:i + 1] for i in range(prefill, len(ids))]:
            rows.append(forward(cfg, family, w, embed(family, w, chunk), past))
        golden["cached_prefill"] = torch.tensor(prefill, dtype=torch.int64)
        golden[f"cached_logits.{len(lengths) - 1}"] = torch.cat(rows).float()
    if family == "qwen2":
        embeds = embed(family, w, golden["ids.0"]).clone().requires_grad_(True)
        logits = forward(cfg, family, w, embeds)
        upstream = torch.randn(logits.shape, generator=gen, dtype=torch.float64)
        (logits * upstream).sum().backward()
        golden["embeds.0"] = embeds.detach().float()
        golden["upstream.0"] = upstream.float()
        golden["grad_embeds.0"] = embeds.grad.float()
    save_safetensors(os.path.join(OUT, family + ".safetensors"), golden, {"model": "models/" + family})
    print(family, {k: list(v.shape) for k, v in golden.items()}, "greedy", golden["greedy"].tolist())


def main():
    make("qwen2", QWEN2, shards=1, lengths=[5, 9, 12], prompt_length=4, seed=3)
    make("llama", LLAMA, shards=2, lengths=[4, 11, 14], prompt_length=5, seed=2)
    make("internlm2", INTERNLM2, shards=1, lengths=[6, 12, 21], prompt_length=5, seed=3)
    inv = inv_freq(LLAMA, 1)
    plain = 1.0 / (LLAMA["rope_theta"] ** (torch.arange(0, 32, 2).double() / 32))
    ratio = inv / plain
    print("llama3 frequencies kept/smoothed/divided:",
          int(torch.isclose(ratio, torch.tensor(1.0, dtype=torch.float64)).sum()),
          int(((ratio < 0.999) & (ratio > 0.126)).sum()),
          int(torch.isclose(ratio, torch.tensor(0.125, dtype=torch.float64)).sum()))


if __name__ == "__main__":
    main()
