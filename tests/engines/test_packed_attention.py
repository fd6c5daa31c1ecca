"""packed_attention.py: only the needed blocks of a packed row, equal to the dense block mask."""

from __future__ import annotations

import numpy as np
import torch

from geospot import prompts
from geospot.engines import packed_attention
from geospot.engines.datums import make_datum
from geospot.engines.packed_attention import RowLayout, packed_attention_forward, suffix_mask
from geospot.engines.prefix import block_mask
from tests.engines.engine_helpers import random_image, tiny_engine


def test_suffix_mask_by_hand():
    # prefix of 2, then suffix A (2 tokens) and suffix B (1 token)
    want = torch.tensor([[1, 1, 1, 0, 0],   # A0: prefix, itself
                         [1, 1, 1, 1, 0],   # A1: prefix, A0, itself
                         [1, 1, 0, 0, 1]],  # B0: prefix, itself (never A)
                        dtype=torch.bool)
    assert torch.equal(suffix_mask(2, (2, 1)), want)


class _Module(torch.nn.Module):
    num_key_value_groups = 2  # GQA: 4 query heads over 2 key/value heads


def _dense(q, k, v, segments, scaling):
    """The reference: every pair, the block mask of prefix.py."""
    allowed = torch.from_numpy(block_mask(segments))[:, None]
    k, v = k.repeat_interleave(2, 1), v.repeat_interleave(2, 1)
    out = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scaling)
    return out.transpose(1, 2)


def test_packed_rows_equal_the_dense_block_mask_in_values_and_gradients():
    torch.manual_seed(0)
    layouts = [RowLayout(5, (3, 1, 4)), RowLayout(7, (2,))]  # the second row is padded from 9 to 13
    L, H, d = 13, 4, 8
    seg = np.full((2, L), -1, np.int64)
    for r, lay in enumerate(layouts):
        s = [0] * lay.prefix + [m + 1 for m, n in enumerate(lay.suffixes) for _ in range(n)]
        seg[r, : len(s)] = s
    q = torch.randn(2, H, L, d, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, H // 2, L, d, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, H // 2, L, d, dtype=torch.float64, requires_grad=True)
    valid = torch.from_numpy(seg >= 0)[:, :, None, None]
    w = torch.randn(2, L, H, d, dtype=torch.float64) * valid  # a loss on the real positions only

    def run(fn):
        out = fn()
        (out * w).sum().backward()
        grads = [t.grad.clone() for t in (q, k, v)]
        for t in (q, k, v):
            t.grad = None
        return out.detach() * valid, grads

    got, got_g = run(lambda: packed_attention_forward(_Module(), q, k, v, None, scaling=0.3, packed_layout=layouts)[0])
    want, want_g = run(lambda: _dense(q, k, v, seg, 0.3))
    torch.testing.assert_close(got, want, atol=1e-12, rtol=0)
    for a, b in zip(got_g, want_g):
        torch.testing.assert_close(a, b, atol=1e-12, rtol=0)


def test_without_a_layout_it_is_plain_sdpa():
    torch.manual_seed(1)
    q, k, v = torch.randn(1, 4, 6, 8), torch.randn(1, 2, 6, 8), torch.randn(1, 2, 6, 8)
    got, _ = packed_attention_forward(_Module(), q, k, v, None, scaling=0.5)
    want = torch.nn.functional.scaled_dot_product_attention(q, k.repeat_interleave(2, 1), v.repeat_interleave(2, 1),
                                                            is_causal=True, scale=0.5).transpose(1, 2)
    torch.testing.assert_close(got, want)


def test_the_engine_trains_packed_groups_through_it(monkeypatch):
    e = tiny_engine("qwen2_5_vl")
    assert e.packed_attention
    calls = []
    row_attention = packed_attention._row_attention
    monkeypatch.setattr(packed_attention, "_row_attention", lambda *a: calls.append(a[3]) or row_attention(*a))
    p = e.renderer.generation_prompt([prompts.user_message(random_image(0, (112, 112)), prompts.SINGLE_TURN_PROMPT)])
    datums = []
    for j, toks in enumerate(([21, 22, 23], [31, 32], [41, 42, 43, 44])):
        full = p.append_tokens(toks)
        zeros = np.zeros(p.length)
        datums.append(make_datum(full, logprobs=np.concatenate([zeros, np.full(len(toks), -2.0)]).astype(np.float32),
                                 advantages=np.concatenate([zeros, np.full(len(toks), j - 1.0)]).astype(np.float32)))
    e.forward(datums)
    assert calls and calls[0].prefix >= p.length and len(calls[0].suffixes) == 3
