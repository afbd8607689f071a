from torch import nn

ALL_LAYERNORM_LAYERS = [nn.LayerNorm]
is_torch_greater_or_equal_than_1_13 = True
