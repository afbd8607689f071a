from collections import OrderedDict


class ModelOutput(OrderedDict):
    """Fields by name and, as transformers' ModelOutput, by position among those that are not None."""

    def __init__(self, **kwargs):
        super().__init__((k, v) for k, v in kwargs.items() if v is not None)
        for k, v in kwargs.items():
            object.__setattr__(self, k, v)

    def __getitem__(self, key):
        return list(self.values())[key] if isinstance(key, (int, slice)) else super().__getitem__(key)

    def to_tuple(self):
        return tuple(self.values())


class BaseModelOutputWithPast(ModelOutput):
    pass


class CausalLMOutputWithPast(ModelOutput):
    pass


class SequenceClassifierOutputWithPast(ModelOutput):
    pass
