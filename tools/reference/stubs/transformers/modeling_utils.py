from transformers import PreTrainedModel  # noqa: F401
