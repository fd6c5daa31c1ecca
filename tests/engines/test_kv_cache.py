"""kv_cache.py: a reserved-room decode cache holds exactly what DynamicCache's concatenation holds."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from geospot.engines.kv_cache import ReservedLayer, reserve


def _cache(keys, values):
    return DynamicCache(ddp_cache_data=[(keys.clone(), values.clone())])


def test_reserved_cache_equals_growing_by_concatenation():
    torch.manual_seed(0)
    k, v = torch.randn(2, 3, 5, 4), torch.randn(2, 3, 5, 4)
    plain, reserved = _cache(k, v), reserve(_cache(k, v), extra=2, repeats=3)
    plain.batch_repeat_interleave(3)
    assert isinstance(reserved.layers[0], ReservedLayer)
    for step in range(4):  # the last two steps run past the reserved room: it grows, same values
        nk, nv = torch.randn(6 - (step >= 2), 3, 1, 4), torch.randn(6 - (step >= 2), 3, 1, 4)
        if step == 2:  # a row finishes: dropped from both
            idx = torch.tensor([0, 1, 3, 4, 5])
            plain.batch_select_indices(idx)
            reserved.batch_select_indices(idx)
        a = plain.layers[0].update(nk, nv)
        b = reserved.layers[0].update(nk, nv)
        for x, y in zip(a, b):
            assert torch.equal(x, y)
        assert reserved.get_seq_length() == plain.get_seq_length() == 5 + step + 1
    assert torch.equal(reserved.layers[0].keys[:, :, -2:], plain.layers[0].keys[:, :, -2:])


def test_reserved_layer_crop_and_reset():
    layer = ReservedLayer(torch.ones(1, 1, 4, 2), torch.ones(1, 1, 4, 2), extra=3)
    layer.crop(-1)
    assert layer.get_seq_length() == 3 and layer.keys.shape[2] == 3
    layer.reset()
    assert layer.get_seq_length() == 0


def test_sampling_with_and_without_the_reserved_cache_agrees():
    from geospot import prompts
    from geospot.engines.types import SampleParams
    from tests.engines.engine_helpers import random_image, sample_with_switch, tiny_engine

    e = tiny_engine("qwen2_5_vl")
    e.shared_prefix_decode = False  # the repeated cache is what reserve_kv acts on (prefix_decode.py has its own)
    p = e.renderer.generation_prompt([prompts.user_message(random_image(0, (112, 112)), prompts.SINGLE_TURN_PROMPT)])
    params = SampleParams(max_tokens=6, seed=3)
    out = sample_with_switch(e, "reserve_kv", [p, p], 3, params)
    for ga, gb in zip(out[True], out[False]):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-5


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def test_lean_decode_equals_the_model_forward(family):
    """decode_step.py: the same tokens and logprobs as decoding through the model's forward, with
    padded prompts (two different images -> different lengths) and rows finishing early."""
    from geospot import prompts
    from geospot.engines.types import SampleParams
    from tests.engines.engine_helpers import random_image, sample_with_switch, tiny_engine

    e = tiny_engine(family)
    ps = [e.renderer.generation_prompt([prompts.user_message(random_image(i, size), prompts.SINGLE_TURN_PROMPT)])
          for i, size in enumerate(((112, 112), (168, 112)))]
    assert ps[0].length != ps[1].length
    params = SampleParams(max_tokens=7, seed=5)
    out = sample_with_switch(e, "lean_decode", ps, 3, params)
    assert e.sampler.lean.supported
    for ga, gb in zip(out[True], out[False]):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens and a.stop_reason == b.stop_reason
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) < 1e-5
