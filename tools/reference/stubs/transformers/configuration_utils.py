from transformers import PretrainedConfig  # noqa: F401
