"""A minimal stand-in for the pieces of Hugging Face transformers that the authors' code imports.

transformers cannot be installed here (Debian has no package for it and there is no PyPI), so the oracle scripts put
this folder first on sys.path. It provides only what LLaVA-style code touches: configs, a Llama decoder and a CLIP
vision tower with transformers' module and parameter names, and CLIP's image processor. The arithmetic is the oracle's
own, already checked against Graft's golden files: the decoder forward is tools/reference/llm_golden.py's (float64),
the tower is vision_golden.py's clip_forward, the image pipeline is preprocess_golden.py's hf_pipeline.
"""
import json
import os
import sys
from types import SimpleNamespace

import torch
import torch.nn as nn

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
import llm_golden  # noqa: E402
import preprocess_golden  # noqa: E402
import vision_golden  # noqa: E402
from golden import load_safetensors  # noqa: E402


class PretrainedConfig(SimpleNamespace):
    """A config's keys as attributes, with transformers' output switches. The attention implementation reads as
    "eager" whatever code asks for (IAA's sets flash_attention_2): flash attention computes the same softmax(QK^T)V,
    and there is no flash_attn on a CPU."""
    model_type = ""
    output_attentions = False
    output_hidden_states = False
    use_return_dict = True
    is_encoder_decoder = False
    pad_token_id = None
    use_cache = True
    attention_bias = False
    attention_dropout = 0.0

    def __init__(self, **kwargs):
        super().__init__(**kwargs)

    @property
    def _attn_implementation(self):
        return "eager"

    @_attn_implementation.setter
    def _attn_implementation(self, value):
        pass

    @classmethod
    def from_dict(cls, d):
        return cls(**d)

    @classmethod
    def from_pretrained(cls, folder, **_):
        with open(os.path.join(folder, "config.json")) as f:
            d = json.load(f)
        if "vision_config" in d and cls is CLIPVisionConfig:
            d = d["vision_config"]
        return cls(**d)

    def to_dict(self):
        return dict(vars(self))


class LlamaConfig(PretrainedConfig):
    model_type = "llama"

    def __init__(self, **kwargs):
        kwargs.setdefault("pretraining_tp", 1)
        kwargs.setdefault("rms_norm_eps", 1e-6)
        kwargs.setdefault("rope_theta", 10000.0)
        kwargs.setdefault("rope_scaling", None)
        kwargs.setdefault("num_key_value_heads", kwargs.get("num_attention_heads"))
        kwargs.setdefault("tie_word_embeddings", False)
        super().__init__(**kwargs)


class CLIPVisionConfig(PretrainedConfig):
    model_type = "clip_vision_model"


class AutoConfig:
    registry = {}

    @classmethod
    def register(cls, name, config_class):
        cls.registry[name] = config_class


class AutoModelForCausalLM:
    registry = {}

    @classmethod
    def register(cls, config_class, model_class):
        cls.registry[config_class] = model_class


class StoppingCriteria:
    pass


class PreTrainedModel(nn.Module):
    def __init__(self, config, *args, **kwargs):
        super().__init__()
        self.config = config

    def post_init(self):
        pass

    @property
    def dtype(self):
        return next(self.parameters()).dtype

    @property
    def device(self):
        return torch.device("cpu")


class LlamaDecoderLayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        d, heads, kv = c.hidden_size, c.num_attention_heads, c.num_key_value_heads
        hd = getattr(c, "head_dim", None) or d // heads
        bias = getattr(c, "attention_bias", False)
        self.self_attn = nn.Module()
        self.self_attn.q_proj = nn.Linear(d, heads * hd, bias=bias)
        self.self_attn.k_proj = nn.Linear(d, kv * hd, bias=bias)
        self.self_attn.v_proj = nn.Linear(d, kv * hd, bias=bias)
        self.self_attn.o_proj = nn.Linear(heads * hd, d, bias=bias)
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, c.intermediate_size, bias=False)
        self.mlp.up_proj = nn.Linear(d, c.intermediate_size, bias=False)
        self.mlp.down_proj = nn.Linear(c.intermediate_size, d, bias=False)
        self.input_layernorm = nn.Module()
        self.input_layernorm.weight = nn.Parameter(torch.ones(d))
        self.post_attention_layernorm = nn.Module()
        self.post_attention_layernorm.weight = nn.Parameter(torch.ones(d))


class LlamaPreTrainedModel(PreTrainedModel):
    pass


class LlamaModel(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList([LlamaDecoderLayer(config) for _ in range(config.num_hidden_layers)])
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(config.hidden_size))


class LlamaForCausalLM(LlamaPreTrainedModel):
    def __init__(self, config):
        super().__init__(config)
        self.model = LlamaModel(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)

    def get_model(self):
        return self.model

    def decoder_config(self):
        c = self.config
        return {k: getattr(c, k) for k in ("hidden_size", "num_attention_heads", "num_key_value_heads", "num_hidden_layers", "rms_norm_eps",
                                           "rope_theta", "rope_scaling", "max_position_embeddings") if hasattr(c, k)} | (
            {"head_dim": c.head_dim} if getattr(c, "head_dim", None) else {})

    def forward(self, input_ids=None, attention_mask=None, position_ids=None, past_key_values=None, inputs_embeds=None, labels=None,
                use_cache=None, output_attentions=None, output_hidden_states=None, return_dict=None, **_):
        if inputs_embeds is None:
            inputs_embeds = self.model.embed_tokens(input_ids)
        weights = {name: p.detach() for name, p in self.state_dict().items() if name.startswith("model.layers.") or name in ("model.norm.weight", "lm_head.weight", "model.embed_tokens.weight")}
        logits = torch.stack([llm_golden.forward(self.decoder_config(), "llama", weights, e.detach().double()) for e in inputs_embeds])
        return SimpleNamespace(logits=logits, past_key_values=None)


class CLIPVisionModel(PreTrainedModel):
    """A CLIP vision tower read from a folder, run by vision_golden.clip_forward."""

    def __init__(self, config, tensors):
        super().__init__(config)
        self.tensors = {k: v.double() for k, v in tensors.items() if k.startswith("vision_model.")}
        self._dtype = next(iter(tensors.values())).dtype
        self.anchor = nn.Parameter(torch.zeros(1, dtype=self._dtype), requires_grad=False)

    @classmethod
    def from_pretrained(cls, folder, **_):
        config = CLIPVisionConfig.from_pretrained(folder)
        if os.path.exists(os.path.join(folder, "model.safetensors")):
            tensors, _ = load_safetensors(os.path.join(folder, "model.safetensors"))
        else:
            tensors = torch.load(os.path.join(folder, "pytorch_model.bin"))
        return cls(config, tensors)

    def forward(self, pixels, output_hidden_states=False, **_):
        hidden, last, pooled = vision_golden.clip_forward(self.tensors, pixels.double(), vars(self.config))
        return SimpleNamespace(hidden_states=tuple(hidden), last_hidden_state=last, pooler_output=pooled)


class CLIPImageProcessor:
    def __init__(self, cfg):
        self.cfg = dict(cfg)
        self.cfg["image_processor_type"] = "CLIPImageProcessor"
        # get_size_dict: the old feature-extractor files give sizes as numbers
        if isinstance(self.cfg.get("size"), int):
            self.cfg["size"] = {"shortest_edge": self.cfg["size"]}
        if isinstance(self.cfg.get("crop_size"), int):
            self.cfg["crop_size"] = {"height": self.cfg["crop_size"], "width": self.cfg["crop_size"]}
        self.image_mean = cfg.get("image_mean", preprocess_golden.OPENAI_CLIP_MEAN)
        self.image_std = cfg.get("image_std", preprocess_golden.OPENAI_CLIP_STD)
        self.crop_size = cfg.get("crop_size")

    @classmethod
    def from_pretrained(cls, folder, **_):
        with open(os.path.join(folder, "preprocessor_config.json")) as f:
            return cls(json.load(f))

    def preprocess(self, image, return_tensors=None):
        images = image if isinstance(image, list) else [image]
        return {"pixel_values": torch.stack([preprocess_golden.hf_pipeline(i.convert("RGB"), self.cfg) for i in images])}

    __call__ = preprocess
