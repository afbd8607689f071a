#!/usr/bin/python3
"""Peer timings for `graft bench train`: one plug-in training step of a Bridge (LLaVA projector) in plain PyTorch.

transformers is not installed, so the model is written here: a frozen Qwen2-style decoder (RMSNorm, q/k/v projections
with bias, rotary embedding (rotate-half), grouped-query causal attention, SwiGLU MLP, tied head) whose weights do not
require gradients, and a trainable projector mlp2x_gelu (Linear(d_v, d) -> GELU -> Linear(d, d)). Each sequence is
[text][image rows from the projector][text][answer]; the loss is the mean cross-entropy over the answer tokens, with
the head applied to those positions only (as Graft's trainer does). A step = forward and backward of the batch, then
torch.optim.AdamW on the projector. The batch runs as one [B, T] tensor, torch's natural way. Random f32 weights;
eager mode, as many threads as the machine has cores. f32 only: Debian's torch 1.13 crashes on bf16 matmul here.

Reads one JSON object on stdin:
  {"vocab", "hidden", "intermediate", "layers", "heads", "kv_heads", "head_dim", "rope_theta", "eps", "vision_width",
   "threads", "batch", "lead_tokens", "image_tokens", "context_tokens", "answer_tokens", "warmup_steps", "steps"}
Writes one JSON object on stdout:
  {"torch": version, "step_seconds": median of the timed steps, "tokens_per_s": positions of a step / its median time}
"""
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F

from qwen2_weights import Qwen2Weights


class FrozenDecoder(Qwen2Weights):
    def __init__(self, cfg, max_tokens):
        super().__init__(cfg, max_tokens)
        self.causal = torch.ones(max_tokens, max_tokens, dtype=torch.bool).tril()

    def attention(self, layer, x):
        b, t = x.shape[0], x.shape[1]
        q = F.linear(x, layer["wq"], layer["bq"]).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = F.linear(x, layer["wk"], layer["bk"]).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        v = F.linear(x, layer["wv"], layer["bv"]).view(b, t, self.kv_heads, self.head_dim).transpose(1, 2)
        cos, sin = self.cos[:t], self.sin[:t]
        q = q * cos + self.rotate_half(q) * sin
        k = k * cos + self.rotate_half(k) * sin
        group = self.heads // self.kv_heads
        k = k.repeat_interleave(group, dim=1)
        v = v.repeat_interleave(group, dim=1)
        scores = torch.matmul(q, k.transpose(-1, -2)) / (self.head_dim ** 0.5)
        scores = scores.masked_fill(~self.causal[:t, :t], float("-inf"))
        out = torch.matmul(torch.softmax(scores, dim=-1), v)
        return F.linear(out.transpose(1, 2).reshape(b, t, -1), layer["wo"])

    def hidden(self, h):
        for layer in self.layers:
            h = h + self.attention(layer, self.rms_norm(h, layer["attn_norm"]))
            x = self.rms_norm(h, layer["ffn_norm"])
            h = h + F.linear(F.silu(F.linear(x, layer["gate"])) * F.linear(x, layer["up"]), layer["down"])
        return self.rms_norm(h, self.final_norm)


def main():
    cfg = json.load(sys.stdin)
    torch.set_num_threads(cfg["threads"])
    lead, image, context, answer = cfg["lead_tokens"], cfg["image_tokens"], cfg["context_tokens"], cfg["answer_tokens"]
    length = lead + image + context + answer
    batch, hidden = cfg["batch"], cfg["hidden"]
    model = FrozenDecoder(cfg, length)
    generator = torch.Generator().manual_seed(2)
    projector = [torch.nn.Linear(cfg["vision_width"], hidden), torch.nn.Linear(hidden, hidden)]
    optimizer = torch.optim.AdamW([p for layer in projector for p in layer.parameters()], lr=1e-4, weight_decay=0.0)
    features = torch.randn(batch, image, cfg["vision_width"], generator=generator)
    ids = torch.randint(0, cfg["vocab"], (batch, length), generator=generator)
    # Position i predicts token i + 1: the answer tokens are predicted from the positions just before them.
    rows = torch.arange(length - answer - 1, length - 1)
    targets = ids[:, length - answer:]

    def step():
        text = F.embedding(ids, model.embedding)
        projected = projector[1](F.gelu(projector[0](features)))
        h = torch.cat([text[:, :lead], projected, text[:, lead + image:]], dim=1)
        out = model.hidden(h)[:, rows]
        logits = F.linear(out, model.embedding)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    for _ in range(cfg["warmup_steps"]):
        step()
    times = []
    for _ in range(cfg["steps"]):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    seconds = statistics.median(times)
    json.dump({"torch": torch.__version__, "step_seconds": seconds, "tokens_per_s": batch * length / seconds}, sys.stdout)


if __name__ == "__main__":
    main()
