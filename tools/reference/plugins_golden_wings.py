"""Golden cases for WINGS (tests/Graft.Tests/Golden/plugins_wings/), written from docs/designs.md section 4.

One layer's branch beside attention, given H = h + Attn(LN1(h)) and the main attention's weights P [1, Hb, T, Tk]:
    O_v = LoRRA_v(Q from H, K = V = F_img)            no mask
    O_t = LoRRA_t(Q from H, K = V = F_txt)            query at position p sees text keys at positions <= p
    (w_v, w_t) = softmax(SiLU(W_r a_t + b_r)),  S = sum over heads of P [T, Tk]
        image-text-mass: a_t = (sum of S[t, image keys], sum of S[t, text keys])
        attention-row:   a_t = S[t, :] zero-padded to the router's row length
    H' = H + w_v O_v + w_t O_t                        (once)
LoRRA: Q = H + H A_q B_q, K = X + X A_k B_k, V = X + X A_v B_v, RoPE (Hugging Face rotate_half, theta 10000) on Q at
the query positions and on K at the keys' own positions, O = softmax(Q K^T / sqrt(d/h) + M) V over h heads,
out = O A_o B_o. Computed in float64, stored as float32; gradients are those of sum(H' * upstream).

Run with Debian's interpreter: /usr/bin/python3 tools/reference/plugins_golden_wings.py
"""
import torch

from golden import save_case

THETA = 10000.0


def rope(x, positions):
    """x [N, h, dh] rotated at positions [N] (split halves, as Hugging Face Llama)."""
    dh = x.shape[-1]
    inv = 1.0 / THETA ** (torch.arange(0, dh, 2, dtype=torch.float64) / dh)
    angles = positions.to(torch.float64)[:, None] * inv[None, :]
    cos = torch.cat([angles.cos(), angles.cos()], -1)[:, None, :]
    sin = torch.cat([angles.sin(), angles.sin()], -1)[:, None, :]
    half = dh // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


def lorra(p, hidden, q_pos, x, k_pos, heads, allowed):
    d = hidden.shape[1]
    dh = d // heads
    q = hidden + hidden @ p["q.a"] @ p["q.b"]
    k = x + x @ p["k.a"] @ p["k.b"]
    v = x + x @ p["v.a"] @ p["v.b"]
    q = rope(q.view(-1, heads, dh), q_pos).transpose(0, 1)  # [h, T, dh]
    k = rope(k.view(-1, heads, dh), k_pos).transpose(0, 1)
    v = v.view(-1, heads, dh).transpose(0, 1)
    scores = q @ k.transpose(1, 2) / dh ** 0.5
    scores = scores.masked_fill(~allowed[None], float("-inf"))
    probs = torch.softmax(scores, -1)
    probs = torch.nan_to_num(probs, nan=0.0)  # a query with no visible key gets 0
    o = (probs @ v).transpose(0, 1).reshape(-1, d)
    return o @ p["o.a"] @ p["o.b"]


def wings_case(name, router_input, row_length, query_positions, seed, d=8, heads=2, rank=2, base_heads=2):
    g = torch.Generator().manual_seed(seed)
    image_mask = torch.tensor([False, False, True, True, True, False, False])
    seq = len(image_mask)
    img_pos = torch.nonzero(image_mask).flatten()
    txt_pos = torch.nonzero(~image_mask).flatten()
    q_pos = torch.tensor(query_positions)
    t = len(q_pos)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g, dtype=torch.float64) * scale).float().double()

    leaves = {"hidden": rnd(t, d), "f_img": rnd(len(img_pos), d), "f_txt": rnd(len(txt_pos), d)}
    raw = rnd(1, base_heads, t, seq)
    causal = torch.arange(seq)[None, :] <= q_pos[:, None]
    leaves["attention"] = torch.softmax(raw.masked_fill(~causal, float("-inf")), -1).float().double()
    for learner in ("visual", "textual"):
        for proj in ("q", "k", "v", "o"):
            leaves[f"{learner}.{proj}.a"] = rnd(d, rank, scale=0.3)
            leaves[f"{learner}.{proj}.b"] = rnd(rank, d, scale=0.3)
    inputs_width = 2 if router_input == "image-text-mass" else row_length
    leaves["router.weight"] = rnd(2, inputs_width, scale=0.5)
    leaves["router.bias"] = rnd(2, scale=0.5)
    upstream = rnd(t, d)
    for v in leaves.values():
        v.requires_grad_(True)

    def params(learner):
        return {k[len(learner) + 1:]: v for k, v in leaves.items() if k.startswith(learner + ".")}

    h = leaves["hidden"]
    o_v = lorra(params("visual"), h, q_pos, leaves["f_img"], img_pos, heads, torch.ones(t, len(img_pos), dtype=torch.bool))
    o_t = lorra(params("textual"), h, q_pos, leaves["f_txt"], txt_pos, heads, txt_pos[None, :] <= q_pos[:, None])
    s = leaves["attention"][0].sum(0)  # [T, Tk]
    if router_input == "image-text-mass":
        a = torch.stack([s[:, image_mask].sum(-1), s[:, ~image_mask].sum(-1)], -1)
    else:
        a = torch.cat([s, torch.zeros(t, row_length - seq, dtype=torch.float64)], -1)
    w = torch.softmax(torch.nn.functional.silu(a @ leaves["router.weight"].T + leaves["router.bias"]), -1)
    y = h + w[:, :1] * o_v + w[:, 1:] * o_t
    (y * upstream).sum().backward()
    inputs = dict(leaves)
    inputs["upstream"] = upstream
    inputs["positions"] = q_pos.to(torch.int64)
    inputs["image_mask"] = image_mask.to(torch.int64)
    save_case("plugins_wings", name, "wings_layer",
              {"router_input": router_input, "row_length": row_length, "heads": heads, "rank": rank, "theta": THETA},
              inputs, {"y": y, "router": w}, {k: v.grad for k, v in leaves.items()})


if __name__ == "__main__":
    wings_case("wings_layer_image_text_mass", "image-text-mass", 0, list(range(7)), seed=1)
    wings_case("wings_layer_attention_row", "attention-row", 10, list(range(7)), seed=2)
    # A decode-like chunk: two queries at positions 5 and 6 against the whole sequence's keys.
    wings_case("wings_layer_chunk", "image-text-mass", 0, [5, 6], seed=3)
