#!/usr/bin/python3
"""Peer timings for `graft bench decode`: a minimal Qwen2-style decoder in plain PyTorch with a KV cache.

transformers is not installed, so the model is written here: RMSNorm, q/k/v projections with bias, rotary
embedding (rotate-half), grouped-query causal attention over a preallocated cache, SwiGLU MLP, tied head
applied to the last position only (as `graft bench decode` does). Random f32 weights; eager mode,
torch.no_grad, 2 threads. f32 only: Debian's torch 1.13 crashes on bf16 matmul on this CPU.

Reads one JSON object on stdin:
  {"vocab", "hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "rope_theta", "eps",
   "prompt_tokens", "decode_tokens"}
Writes one JSON object on stdout:
  {"torch": version, "prefill_tokens_per_s": one prompt forward after a warm-up,
   "decode_tokens_per_s": 1 / median single-token step}
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from qwen2_weights import Qwen2Weights


class Qwen2Like(Qwen2Weights):
    def __init__(self, cfg, max_tokens):
        super().__init__(cfg, max_tokens)
        for layer in self.layers:
            layer["k_cache"] = torch.zeros(self.kv_heads, max_tokens, self.head_dim)
            layer["v_cache"] = torch.zeros(self.kv_heads, max_tokens, self.head_dim)
        self.length = 0

    def attention(self, layer, x, start):
        t = x.shape[0]
        q = F.linear(x, layer["wq"], layer["bq"]).view(t, self.heads, self.head_dim).transpose(0, 1)
        k = F.linear(x, layer["wk"], layer["bk"]).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        v = F.linear(x, layer["wv"], layer["bv"]).view(t, self.kv_heads, self.head_dim).transpose(0, 1)
        cos, sin = self.cos[start:start + t], self.sin[start:start + t]
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        end = start + t
        layer["k_cache"][:, start:end] = k
        layer["v_cache"][:, start:end] = v
        group = self.heads // self.kv_heads
        keys = layer["k_cache"][:, :end].repeat_interleave(group, dim=0)
        values = layer["v_cache"][:, :end].repeat_interleave(group, dim=0)
        scores = torch.matmul(q, keys.transpose(1, 2)) / (self.head_dim ** 0.5)
        if t > 1:
            causal = torch.ones(t, end, dtype=torch.bool).tril(diagonal=start)
            scores = scores.masked_fill(~causal, float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), values)
        return F.linear(out.transpose(0, 1).reshape(t, -1), layer["wo"])

    def forward(self, ids):
        start = self.length
        h = F.embedding(ids, self.embedding)
        for layer in self.layers:
            h = h + self.attention(layer, self.rms_norm(h, layer["attn_norm"]), start)
            x = self.rms_norm(h, layer["ffn_norm"])
            h = h + F.linear(F.silu(F.linear(x, layer["gate"])) * F.linear(x, layer["up"]), layer["down"])
        self.length = start + ids.shape[0]
        return F.linear(self.rms_norm(h[-1:], self.final_norm), self.embedding)


def main():
    cfg = json.load(sys.stdin)
    torch.set_num_threads(2)
    prompt_tokens, decode_tokens = cfg["prompt_tokens"], cfg["decode_tokens"]
    model = Qwen2Like(cfg, prompt_tokens + decode_tokens)
    prompt = torch.randint(0, cfg["vocab"], (prompt_tokens,), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # Warm-up, as ours: a short prompt and a few steps, then the cache is emptied.
        model.forward(prompt[:32])
        for i in range(4):
            model.forward(prompt[i:i + 1])
        model.length = 0

        start = time.perf_counter()
        logits = model.forward(prompt)
        prefill = time.perf_counter() - start

        steps = []
        token = logits.argmax(-1)
        for _ in range(decode_tokens):
            start = time.perf_counter()
            logits = model.forward(token)
            token = logits.argmax(-1)
            steps.append(time.perf_counter() - start)
    json.dump({"torch": torch.__version__, "prefill_tokens_per_s": prompt_tokens / prefill,
               "decode_tokens_per_s": 1.0 / statistics.median(steps)}, sys.stdout)


if __name__ == "__main__":
    main()
