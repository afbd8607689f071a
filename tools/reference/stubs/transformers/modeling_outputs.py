from types import SimpleNamespace as CausalLMOutputWithPast  # noqa: F401
