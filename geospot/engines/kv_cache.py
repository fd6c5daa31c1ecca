"""A decode KV cache with its room reserved up front (issue 24).

transformers' DynamicCache grows by `torch.cat` at every decoded token: each step copies every
layer's whole K and V (rows x heads x context x head dim) to add one column — the copying grows
with the context and dominates a decode step's memory traffic. `reserve` swaps each layer of a
prefilled cache for a `ReservedLayer` whose buffer already holds room for `extra` more tokens:
a step writes its column in place and the layer's `keys`/`values` are views of the filled part.
It can repeat each row G times on the way (the G samples of a prompt), in the same single copy.

Everything else keeps working on the views: row dropping (`batch_select_indices`), the KV store's
reads of `layer.keys[...]`, mask sizes. Past the reserved room it falls back to growing by
concatenation, so a caller that under-reserves is slower, never wrong.
"""

from __future__ import annotations

import torch
from transformers.cache_utils import DynamicLayer


class ReservedLayer(DynamicLayer):
    """A DynamicLayer over a preallocated [B, H, capacity, d] buffer; keys/values are the first
    `length` columns."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, extra: int, repeats: int = 1):
        super().__init__()
        B, H, T, d = keys.shape
        self.device = keys.device
        self._k = keys.new_empty(B * repeats, H, T + extra, d)
        self._v = values.new_empty(B * repeats, H, T + extra, values.shape[-1])
        # one copy that also repeats each row `repeats` times (row b -> rows b*repeats .. b*repeats+repeats-1)
        self._k[:, :, :T].view(B, repeats, H, T, d).copy_(keys[:, None])
        self._v[:, :, :T].view(B, repeats, H, T, values.shape[-1]).copy_(values[:, None])
        self._len = T
        self.is_initialized = True
        self._view()

    def _view(self) -> None:
        self.keys = self._k[:, :, : self._len]
        self.values = self._v[:, :, : self._len]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        n = key_states.shape[-2]
        if self._len + n > self._k.shape[2]:  # out of room: grow like DynamicLayer (slower, same values)
            grow = max(n, self._k.shape[2])
            self._k = torch.cat([self._k, self._k.new_empty(*self._k.shape[:2], grow, self._k.shape[3])], dim=2)
            self._v = torch.cat([self._v, self._v.new_empty(*self._v.shape[:2], grow, self._v.shape[3])], dim=2)
        self._k[:, :, self._len : self._len + n].copy_(key_states)
        self._v[:, :, self._len : self._len + n].copy_(value_states)
        self._len += n
        self._view()
        return self.keys, self.values

    def get_seq_length(self) -> int:
        return self._len

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._k = self._k.repeat_interleave(repeats, dim=0)
        self._v = self._v.repeat_interleave(repeats, dim=0)
        self._view()

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._k = self._k[indices]
        self._v = self._v[indices]
        self._view()

    def crop(self, tokens_to_remove: int) -> None:
        if tokens_to_remove > 0:
            raise ValueError(f"crop({tokens_to_remove}): pass a negative number of tokens to remove")
        self._len = max(0, self._len + tokens_to_remove)
        self._view()

    def reset(self) -> None:
        self._len = 0
        self._view()


def reserve(cache, extra: int, repeats: int = 1):
    """Give every layer of a prefilled cache room for `extra` more tokens (in place; returns the
    cache), repeating each row `repeats` times in the same copy."""
    for i, layer in enumerate(cache.layers):
        cache.layers[i] = ReservedLayer(layer.keys, layer.values, extra, repeats)
    return cache
