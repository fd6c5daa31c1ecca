"""prefix_decode.py: attending each prompt's KV once for its G samples equals attending the
repeated cache, with padding in the prompts and rows dropped."""

from __future__ import annotations

import types

import pytest
import torch

from geospot.engines.prefix_decode import SharedPrefixKV, shared_prefix_attention


@pytest.mark.parametrize("dropped", [False, True])
def test_shared_prefix_attention_equals_sdpa_over_the_repeated_cache(dropped):
    torch.manual_seed(0)
    B, G, H, Hkv, W, t, d = 2, 3, 4, 2, 7, 3, 8
    pk, pv = torch.randn(B, Hkv, W, d), torch.randn(B, Hkv, W, d)
    mask_BW = torch.ones(B, W, dtype=torch.bool)
    mask_BW[1, :2] = False  # prompt 1 is left-padded by 2
    slots = torch.tensor([0, 2, 3, 5]) if dropped else torch.arange(B * G)
    N = len(slots)
    q, tk, tv = torch.randn(N, H, 1, d), torch.randn(N, Hkv, t, d), torch.randn(N, Hkv, t, d)
    prefix = SharedPrefixKV([(pk, pv)], mask_BW, G)
    prefix.keep(slots)
    assert (prefix.slots_N is None) == (not dropped)
    got = shared_prefix_attention(types.SimpleNamespace(layer_idx=0), q, tk, tv, prefix, scaling=0.3)

    b = slots // G  # each row's prompt: the naive way repeats the prompt's KV per row
    k, v = torch.cat([pk[b], tk], dim=2), torch.cat([pv[b], tv], dim=2)
    m = torch.cat([mask_BW[b], torch.ones(N, t, dtype=torch.bool)], dim=1)[:, None, None, :]
    ref = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=m, scale=0.3, enable_gqa=True)
    assert got.shape == (N, 1, H, d)
    assert torch.allclose(got, ref.transpose(1, 2), atol=1e-6)
    # the padded positions really are excluded: changing them changes nothing
    pk[1, :, :2] = 100.0
    again = shared_prefix_attention(types.SimpleNamespace(layer_idx=0), q, tk, tv, prefix, scaling=0.3)
    assert torch.allclose(again, got, atol=1e-6)


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_sampling_with_the_shared_prefix_decode_equals_the_repeated_cache(family):
    """Padded prompts (two image sizes), rows stopping at different steps."""
    from geospot import prompts
    from geospot.engines.types import SampleParams
    from tests.engines.engine_helpers import random_image, sample_with_switch, tiny_engine

    e = tiny_engine(family)
    ps = [e.renderer.generation_prompt([prompts.user_message(random_image(i, size), prompts.SINGLE_TURN_PROMPT)])
          for i, size in enumerate(((112, 112), (168, 112)))]
    # stop tokens picked from a first run so that rows finish at different steps (dropped mid-decode)
    first = e.sample(ps, 4, SampleParams(max_tokens=9, seed=2))
    params = SampleParams(max_tokens=9, seed=2, stop=(first[0][0].tokens[2], first[1][2].tokens[5]))
    out = sample_with_switch(e, "shared_prefix_decode", ps, 4, params)
    assert e.sampler.lean.shares_prefix
    lengths = [len(s.tokens) for g in out[True] for s in g]
    assert min(lengths) < 9 and len(set(lengths)) > 1  # rows did finish early, at different steps
    for ga, gb in zip(out[True], out[False]):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens and a.stop_reason == b.stop_reason
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-5
