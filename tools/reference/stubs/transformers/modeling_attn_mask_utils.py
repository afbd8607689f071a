import torch


class AttentionMaskConverter:
    @staticmethod
    def _make_causal_mask(input_ids_shape, dtype, device, past_key_values_length=0):
        bsz, tgt_len = input_ids_shape
        mask = torch.full((tgt_len, tgt_len), torch.finfo(dtype).min, dtype=dtype, device=device)
        mask = torch.triu(mask, diagonal=1).to(dtype)
        if past_key_values_length > 0:
            mask = torch.cat([torch.zeros(tgt_len, past_key_values_length, dtype=dtype, device=device), mask], dim=-1)
        return mask[None, None, :, :].expand(bsz, 1, tgt_len, tgt_len + past_key_values_length)

    @staticmethod
    def _unmask_unattended(expanded_mask, attention_mask, unmasked_value):
        return expanded_mask


def _prepare_4d_attention_mask(mask, dtype, tgt_len=None):
    bsz, src_len = mask.shape
    tgt_len = tgt_len or src_len
    expanded = mask[:, None, None, :].expand(bsz, 1, tgt_len, src_len).to(dtype)
    return (1.0 - expanded).masked_fill((1.0 - expanded).bool(), torch.finfo(dtype).min)


def _prepare_4d_causal_attention_mask(attention_mask, input_shape, inputs_embeds, past_key_values_length):
    """The additive causal mask [B, 1, T, P + T] (min where a key is in the future or padded), as transformers builds it."""
    dtype = inputs_embeds.dtype
    causal = AttentionMaskConverter._make_causal_mask(input_shape, dtype, inputs_embeds.device, past_key_values_length)
    if attention_mask is not None:
        padding = _prepare_4d_attention_mask(attention_mask, dtype, input_shape[-1])
        causal = causal.masked_fill(padding.bool(), torch.finfo(dtype).min)
    return causal


_prepare_4d_causal_attention_mask_for_sdpa = _prepare_4d_causal_attention_mask
