"""Attention for packed shared-prefix rows that computes only the blocks a row needs (issue 24).

A packed row is [prefix | suffix_1 .. suffix_G] (prefix.py). Under a dense block mask, attention
runs every query against every key — (P + G*S)^2 pairs — and masks most of them away. Here each
row takes two SDPA calls:

- the prefix against itself, causal (`is_causal`: the kernels skip the blocks above the diagonal);
- all suffix queries against [prefix | suffixes] with a boolean mask: each suffix sees the whole
  prefix and itself causally, never another suffix.

That executes P^2/2 + G*S*(P + G*S) pairs instead of (P + G*S)^2 (with an image prefix of ~300
tokens and 8 x 23 completion tokens: 0.57 of the dense work; the needed minimum is 0.44, which a
per-member call would reach at the price of copying the prefix's keys and values G times per layer,
kept alive for the backward). The outputs equal the dense-mask computation's (tests compare logprobs
and gradients with the naive per-sequence forward).

It is registered with transformers as the attention implementation `geospot_packed`: without a
`packed_layout` keyword it is plain SDPA (sampling, scoring without packing), so the engine can
switch a model to it once. The layout travels from the model call to every attention layer in
transformers' forward keywords.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import AttentionInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from geospot.engines.prefix_decode import SharedPrefixKV, shared_prefix_attention
from geospot.models.compat import peft_base

NAME = "geospot_packed"


@dataclass(frozen=True)
class RowLayout:
    """One packed row: a causal prefix of `prefix` tokens, then the suffixes back to back, each
    (length) tokens; positions past prefix + sum(suffixes) are padding."""

    prefix: int
    suffixes: tuple[int, ...]


@functools.lru_cache(maxsize=64)  # every layer of a forward asks for the same row's mask
def suffix_mask(prefix: int, suffixes: tuple[int, ...], device=None) -> torch.Tensor:
    """bool[Q, prefix + Q] (Q = sum(suffixes)), True = the suffix query may attend the key: every
    prefix key, and the keys of its own suffix up to itself. Read-only (cached)."""
    seg = torch.repeat_interleave(torch.arange(len(suffixes), device=device), torch.tensor(suffixes, device=device))
    Q = int(seg.numel())
    idx = torch.arange(Q, device=device)
    own = (seg[:, None] == seg[None, :]) & (idx[None, :] <= idx[:, None])
    return torch.cat([torch.ones(Q, prefix, dtype=torch.bool, device=device), own], dim=1)


def _row_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, layout: RowLayout, scaling) -> torch.Tensor:
    """q [H, L, d], k, v [Hkv, L, d] -> [H, L, d]. Grouped-query heads go to SDPA as they are
    (enable_gqa), not repeated — except masked on CUDA, where SDPA's GQA would fall back to the math
    kernel: there the suffix call gets repeated keys and values."""
    P, Q = layout.prefix, sum(layout.suffixes)
    L = q.shape[1]
    gqa = k.shape[0] != q.shape[0]
    parts = [torch.nn.functional.scaled_dot_product_attention(q[None, :, :P], k[None, :, :P], v[None, :, :P],
                                                              is_causal=True, scale=scaling, enable_gqa=gqa)[0]]
    if Q:
        mask = suffix_mask(P, layout.suffixes, q.device)
        ks, vs = k[:, :P + Q], v[:, :P + Q]
        if gqa and q.device.type != "cpu":
            ks, vs = (x.repeat_interleave(q.shape[0] // k.shape[0], dim=0) for x in (ks, vs))
        parts.append(torch.nn.functional.scaled_dot_product_attention(
            q[None, :, P:P + Q], ks[None], vs[None], attn_mask=mask, scale=scaling,
            enable_gqa=ks.shape[0] != q.shape[0])[0])
    if P + Q < L:  # padding: attends nothing, its logits are discarded
        parts.append(q.new_zeros(q.shape[0], L - P - Q, q.shape[2]))
    return torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]


def packed_attention_forward(module: torch.nn.Module, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                             attention_mask: torch.Tensor | None, scaling: float | None = None,
                             packed_layout: Sequence[RowLayout] | None = None,
                             shared_prefix: SharedPrefixKV | None = None, **kwargs):
    """transformers' attention signature: query [R, H, L, d], key/value [R, Hkv, L, d] ->
    ([R, L, H, d], None). Plain SDPA when no `packed_layout` is given; a decode step whose
    prompts' KV sits apart from its rows' tails (`shared_prefix`) goes to prefix_decode.py."""
    if shared_prefix is not None:
        return shared_prefix_attention(module, query, key, value, shared_prefix, scaling), None
    if packed_layout is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling, **kwargs)
    rows = [_row_attention(query[r], key[r], value[r], layout, scaling) for r, layout in enumerate(packed_layout)]
    return torch.stack(rows).transpose(1, 2).contiguous(), None


def install(model: torch.nn.Module) -> bool:
    """Switch the language model of a Qwen-VL model from SDPA to `geospot_packed` (same results
    without a layout). Other implementations (eager, flash attention) are left alone: False."""
    base = peft_base(model)
    text = base.config.get_text_config()
    if getattr(text, "_attn_implementation", None) not in ("sdpa", NAME):
        return False
    AttentionInterface.register(NAME, packed_attention_forward)
    ALL_MASK_ATTENTION_FUNCTIONS.register(NAME, sdpa_mask)  # sampling still builds SDPA's masks
    text._attn_implementation = NAME
    return True
