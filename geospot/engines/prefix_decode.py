"""Decode attention that reads each prompt's KV once for all its samples (issue 24).

The G samples of a prompt share the prompt's keys and values (image + text, ~300 positions);
only their sampled tokens differ. Repeating the prompt's cache G times (what a plain batched
decode does) makes every decode step read G copies of it and keeps G copies in memory. Here the
cache is split in two:

- the prefix: the prefill's cache as it is, one row per prompt [B, Hkv, W, d] (its 0/1 padding
  mask beside it);
- the tail: one row per sample, only the tokens it has fed [N, Hkv, t, d] (a `ReservedLayer`,
  kv_cache.py), which the model's own attention layers write as usual.

A step's attention then takes, per prompt, the queries of all its live samples and heads as one
matmul against the prefix's keys ([G * H/Hkv, d] x [d, W] per KV head), each sample's queries
against its own tail, one softmax over both parts, and the two value products summed. That is
the same softmax(q k^T) v over [prefix | tail] as attending the repeated cache (fp32 tolerance;
tests compare sampling with the model's forward), with the prefix read once per prompt. The
prefix is never copied either.

`SharedPrefixKV` travels to the attention layers as the keyword `shared_prefix` through
transformers' forward keywords; packed_attention.py's registered attention hands such calls here.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class SharedPrefixKV:
    """The prompts' KV per layer ([B, Hkv, W, d] keys, values), their padding mask (bool [B, W],
    None: no padding), G samples per prompt, and which sample slot (b * G + j) each live decode
    row is (None: all B * G rows live, in order)."""

    layers: list[tuple[torch.Tensor, torch.Tensor]]
    mask_BW: torch.Tensor | None
    G: int
    slots_N: torch.Tensor | None = None

    def keep(self, slots_N: torch.Tensor) -> None:
        """Rows were dropped: `slots_N` the slots of the rows still decoding, in row order."""
        self.slots_N = None if slots_N.numel() == len(self.layers[0][0]) * self.G else slots_N


def _by_prompt(x: torch.Tensor, B: int, G: int, slots_N: torch.Tensor | None) -> torch.Tensor:
    """[N, Hkv, r, c] per live row -> [B, Hkv, G * r, c]: each prompt's rows side by side (empty
    slots zero)."""
    if slots_N is not None:
        x = x.new_zeros(B * G, *x.shape[1:]).index_copy_(0, slots_N, x)
    _, Hkv, r, c = x.shape
    return x.reshape(B, G, Hkv, r, c).transpose(1, 2).reshape(B, Hkv, G * r, c)


def _by_row(x: torch.Tensor, G: int, slots_N: torch.Tensor | None) -> torch.Tensor:
    """The inverse of _by_prompt: [B, Hkv, G * r, c] -> [N, Hkv, r, c]."""
    B, Hkv, Gr, c = x.shape
    x = x.reshape(B, Hkv, G, Gr // G, c).transpose(1, 2).reshape(B * G, Hkv, Gr // G, c)
    return x if slots_N is None else x.index_select(0, slots_N)


def shared_prefix_attention(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                            prefix: SharedPrefixKV, scaling: float | None = None) -> torch.Tensor:
    """query [N, H, 1, d] (one fed token per row); key/value [N, Hkv, t, d], the rows' tails
    including this token -> attention output [N, 1, H, d]."""
    pk, pv = prefix.layers[module.layer_idx]
    N, H, q_len, d = query.shape
    B, Hkv, W, _ = pk.shape
    rep, G, slots = H // Hkv, prefix.G, prefix.slots_N
    if q_len != 1:
        raise ValueError(f"shared-prefix decode attention takes one token per row, got {q_len}")
    scale = scaling if scaling is not None else d**-0.5
    q = query.reshape(N, Hkv, rep, d) * scale  # head h reads KV head h // rep (grouped-query order)
    # scores and weights stay in the prompts' layout [B, Hkv, G*rep, W + t]: only the small tail
    # parts (t columns) change layout, never the W-wide prefix parts
    s_pre = torch.matmul(_by_prompt(q, B, G, slots), pk.transpose(-1, -2))  # [B, Hkv, G*rep, W]
    if prefix.mask_BW is not None:
        s_pre = s_pre.masked_fill(~prefix.mask_BW[:, None, None, :], float("-inf"))
    s_tail = _by_prompt(torch.matmul(q, key.transpose(-1, -2)), B, G, slots)  # [B, Hkv, G*rep, t]
    p = torch.cat([s_pre, s_tail], dim=-1).softmax(dim=-1, dtype=torch.float32).to(value.dtype)
    out = torch.matmul(_by_row(p[..., W:], G, slots), value)  # [N, Hkv, rep, d]
    out = out + _by_row(torch.matmul(p[..., :W], pv), G, slots)
    return out.reshape(N, 1, H, d)
