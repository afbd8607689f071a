"""A Qwen2-shaped decoder's random weights and the pieces both PyTorch peers (decode_peer.py, train_peer.py) share.

Matrices uniform in +-0.05, biases +-0.01, norms 1 (as Graft's bench weights), the rotary table of rotate-half RoPE in
float64 rounded to float32, RMSNorm. transformers is not installed, so the model is written out by the peers.
"""
import torch


class Qwen2Weights:
    def __init__(self, cfg, max_tokens):
        hidden, inter = cfg["hidden"], cfg["intermediate"]
        self.heads, self.kv_heads, self.head_dim = cfg["heads"], cfg["kv_heads"], cfg["head_dim"]
        self.eps = cfg["eps"]
        q, kv = self.heads * self.head_dim, self.kv_heads * self.head_dim
        torch.manual_seed(0)

        def matrix(rows, cols):
            return torch.empty(rows, cols).uniform_(-0.05, 0.05)

        def bias(n):
            return torch.empty(n).uniform_(-0.01, 0.01)

        self.embedding = matrix(cfg["vocab"], hidden)
        self.layers = []
        for _ in range(cfg["layers"]):
            self.layers.append({
                "attn_norm": torch.ones(hidden), "ffn_norm": torch.ones(hidden),
                "wq": matrix(q, hidden), "bq": bias(q), "wk": matrix(kv, hidden), "bk": bias(kv),
                "wv": matrix(kv, hidden), "bv": bias(kv), "wo": matrix(hidden, q),
                "gate": matrix(inter, hidden), "up": matrix(inter, hidden), "down": matrix(hidden, inter),
            })
        self.final_norm = torch.ones(hidden)
        inv_freq = 1.0 / (cfg["rope_theta"] ** (torch.arange(0, self.head_dim, 2, dtype=torch.float64) / self.head_dim))
        angles = torch.outer(torch.arange(max_tokens, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.cos, self.sin = angles.cos().float(), angles.sin().float()

    def rms_norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    @staticmethod
    def rotate_half(x):
        half = x.shape[-1] // 2
        return torch.cat([-x[..., half:], x[..., :half]], dim=-1)
