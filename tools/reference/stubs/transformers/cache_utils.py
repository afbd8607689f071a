import torch


class Cache:
    pass


class DynamicCache(Cache):
    """transformers' DynamicCache, enough for a forward with or without a cache."""

    def __init__(self):
        self.key_cache, self.value_cache = [], []

    @classmethod
    def from_legacy_cache(cls, past=None):
        cache = cls()
        for k, v in past or ():
            cache.key_cache.append(k)
            cache.value_cache.append(v)
        return cache

    def get_seq_length(self, layer_idx=0):
        return self.key_cache[layer_idx].shape[-2] if len(self.key_cache) > layer_idx else 0

    def get_usable_length(self, new_seq_length, layer_idx=0):
        return self.get_seq_length(layer_idx)

    def update(self, key_states, value_states, layer_idx, cache_kwargs=None):
        if len(self.key_cache) <= layer_idx:
            self.key_cache.append(key_states)
            self.value_cache.append(value_states)
        else:
            self.key_cache[layer_idx] = torch.cat([self.key_cache[layer_idx], key_states], dim=-2)
            self.value_cache[layer_idx] = torch.cat([self.value_cache[layer_idx], value_states], dim=-2)
        return self.key_cache[layer_idx], self.value_cache[layer_idx]

    def to_legacy_cache(self):
        return tuple(zip(self.key_cache, self.value_cache))
