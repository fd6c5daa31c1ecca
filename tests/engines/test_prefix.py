"""Shared-prefix scoring/training equals the naive per-sequence computation (issue 7), for all
three Qwen-VL families, single- and multi-turn; and the sampler's shared-prefix KV cache gives
the same logprobs as rescoring each sampled sequence alone."""

import dataclasses

import numpy as np
import pytest
import torch
from engine_helpers import naive_logprobs, random_image, tiny_engine

from geospot import prompts
from geospot.engines.datums import make_datum
from geospot.engines.local_model import TokenCounter
from geospot.engines.losses import importance_sampling
from geospot.engines.prefix import (
    block_mask,
    common_prefix,
    group_datums,
    minimal_tokens,
    shared_prefix_forward,
    supports_packing,
)
from geospot.engines.types import ModelInput, SampleParams
from geospot.models.tiny import FAMILIES

FAMILY = pytest.mark.parametrize("family", FAMILIES)


_engine, _image = tiny_engine, random_image


def _prompt(e, seed=0, size=(112, 112), text=prompts.SINGLE_TURN_PROMPT):
    return e.renderer.generation_prompt([prompts.user_message(_image(seed, size), text)])


def _rl_datum(prompt: ModelInput, tokens, seed: int):
    """prompt + completion, random sampler logprobs/advantages on the completion (zeros over the
    prompt), as rl/datums.py builds them."""
    rng = np.random.default_rng(seed)
    full = prompt.append_tokens(tokens)
    n_p, n_c = prompt.length, full.length - prompt.length
    q = np.concatenate([np.zeros(n_p), rng.normal(-3, 0.5, n_c)]).astype(np.float32)
    a = np.concatenate([np.zeros(n_p), np.full(n_c, rng.normal())]).astype(np.float32)
    return make_datum(full, logprobs=q, advantages=a)


def _loss(lp, d):
    f = lambda k: torch.as_tensor(d.loss_fn_inputs[k])
    return importance_sampling(lp, f("logprobs"), f("advantages"))


def _grads(e, datums, logprobs_fn):
    e.model.zero_grad(set_to_none=True)
    lps = logprobs_fn(datums)
    torch.stack([_loss(lp, d) for lp, d in zip(lps, datums)]).sum().backward()
    grads = {n: p.grad.clone() for n, p in e.trainable if p.grad is not None}
    e.model.zero_grad(set_to_none=True)
    return [lp.detach() for lp in lps], grads


def _assert_equal(e, datums, counter=None):
    naive_lp, naive_g = _grads(e, datums, lambda ds: [naive_logprobs(e, d) for d in ds])
    packed = lambda ds: shared_prefix_forward(
        e.model, ds, renderer=e.renderer, spatial_merge=e.spatial_merge, pad_id=e.pad_id, counter=counter
    )
    shared_lp, shared_g = _grads(e, datums, packed)
    for a, b in zip(naive_lp, shared_lp):
        assert a.shape == b.shape
        assert torch.allclose(a, b, atol=2e-5, rtol=0), float((a - b).abs().max())
    assert naive_g.keys() == shared_g.keys() and len(naive_g) > 0
    scale = max(g.abs().max().item() for g in naive_g.values())
    for n in naive_g:
        diff = (naive_g[n] - shared_g[n]).abs().max().item()
        assert diff <= 1e-4 * scale + 1e-7, (n, diff, scale)
    return naive_g


def _completions(rng, G, lo=3, hi=9):
    return [rng.integers(20, 400, rng.integers(lo, hi)).tolist() for _ in range(G)]


@FAMILY
def test_single_turn_groups_equal_naive(family):
    e = _engine(family)
    rng = np.random.default_rng(0)
    p0, p1 = _prompt(e, 0), _prompt(e, 1, (168, 112), "Where?")
    # two groups of 4, interleaved on purpose (the grouping must not depend on order)
    datums = []
    for k, (c0, c1) in enumerate(zip(_completions(rng, 4), _completions(rng, 4))):
        datums += [_rl_datum(p0, c0, 2 * k), _rl_datum(p1, c1, 2 * k + 1)]
    groups = group_datums(datums)
    assert sorted(len(g.members) for g in groups) == [4, 4]
    assert all(g.prefix_len >= p.length for g, p in zip(groups, (p0, p1)))
    counter = TokenCounter()
    _assert_equal(e, datums, counter)
    needed = sum(g.row_len for g in groups)
    assert counter.by_kind["train"][0] == needed == minimal_tokens(datums)
    naive_tokens = sum(d.model_input.length for d in datums)
    assert needed <= naive_tokens - 3 * (p0.length + p1.length)  # each prompt once, not 4 times


@FAMILY
def test_multi_turn_telescoping_datums_equal_naive(family):
    """Telescoping-like datums: one image + first prompt shared, then each rollout's own turns
    (sampled tokens + the next user turn) — only the first prompt is shared."""
    e = _engine(family)
    r = e.renderer
    rng = np.random.default_rng(1)
    p = _prompt(e, 3, text=prompts.TELESCOPING_PROMPTS[0])
    datums = []
    for k in range(3):
        mi = p
        for turn in (1, 2):
            mi = r.continuation(
                mi,
                rng.integers(20, 400, 4 + k).tolist(),
                [prompts.user_message(None, prompts.TELESCOPING_PROMPTS[turn].format(prev=f"({k}.0, {turn}.0)"))],
            )
        datums.append(_rl_datum(mi, rng.integers(20, 400, 5).tolist(), k))
    (g,) = group_datums(datums)
    assert p.length <= g.prefix_len < datums[0].model_input.length
    _assert_equal(e, datums)


def test_group_ids_pack_by_group_without_searching():
    """Datums that carry their GRPO group are packed by it: the same rows as the prefix search
    finds for a GRPO batch, and two groups of one prompt stay apart (the id decides, not tokens)."""
    e = _engine("qwen2_5_vl")
    rng = np.random.default_rng(0)
    p0, p1 = _prompt(e, 0), _prompt(e, 1, (168, 112), "Where?")
    datums = []
    for k, (c0, c1) in enumerate(zip(_completions(rng, 3), _completions(rng, 3))):
        datums += [_rl_datum(p0, c0, 2 * k), _rl_datum(p1, c1, 2 * k + 1)]
    tagged = [dataclasses.replace(d, group=i % 2) for i, d in enumerate(datums)]
    by_prefix = sorted((g.members, g.prefix_len) for g in group_datums(datums))
    by_id = sorted((g.members, g.prefix_len) for g in group_datums(tagged))
    assert by_id == by_prefix and [m for m, _ in by_id] == [[0, 2, 4], [1, 3, 5]]
    same_prompt = [dataclasses.replace(d, group=k // 2) for k, d in enumerate(datums[0::2] + datums[0:1])]
    assert sorted(len(g.members) for g in group_datums(same_prompt)) == [2, 2]  # not one row of 4
    longest = max(d.model_input.length for d in tagged)
    rows = group_datums(tagged, max_row_tokens=p0.length + 2 * (longest - p0.length))
    assert len(rows) > 2 and all(g.row_len <= p0.length + 2 * (longest - p0.length) for g in rows)
    _assert_equal(e, tagged)


def test_gradients_reach_the_vision_tower_through_the_shared_prefix():
    e = _engine("qwen2_5_vl", train_vision=True)
    assert any("visual" in n for n, _ in e.trainable)
    rng = np.random.default_rng(2)
    p = _prompt(e, 4)
    datums = [_rl_datum(p, c, i) for i, c in enumerate(_completions(rng, 3))]
    grads = _assert_equal(e, datums)
    assert any("visual" in n and g.abs().sum() > 0 for n, g in grads.items())


def test_second_image_in_a_later_turn_and_ungrouped_datums():
    e = _engine("qwen2_vl")
    r = e.renderer
    rng = np.random.default_rng(3)
    p = _prompt(e, 5)
    turn2 = [prompts.user_message(_image(6, (140, 112)), "again")]
    two_img = [_rl_datum(r.continuation(p, c, turn2), [70, 80, 90], i) for i, c in enumerate(_completions(rng, 2))]
    lone = _rl_datum(_prompt(e, 7), [110, 120, 130], 9)  # another image: a row of its own
    text_only = _rl_datum(r.generation_prompt([prompts.user_message(None, "hi")]), [50, 60], 10)
    datums = two_img + [lone, text_only]
    assert sorted(len(g.members) for g in group_datums(datums)) == [1, 1, 2]
    _assert_equal(e, datums)


def test_common_prefix_and_block_mask_by_hand():
    a = ModelInput.from_ints([1, 2, 3, 4])
    b = ModelInput.from_ints([1, 2, 9])
    assert common_prefix(a, b) == (2, 0)
    assert common_prefix(a, a) == (4, 0)
    # prefix of 2, suffix A of 2, suffix B of 1, one pad
    m = block_mask(np.array([[0, 0, 1, 1, 2, -1]]))[0].astype(int)
    assert m.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],
        [1, 1, 1, 1, 0, 0],
        [1, 1, 0, 0, 1, 0],  # suffix B sees the prefix and itself, not suffix A
        [0, 0, 0, 0, 0, 1],  # padding sees only itself
    ]


@FAMILY
def test_shared_prefix_sampling_equals_naive_rescoring(family):
    """The engine prefills each prompt once and repeats the KV cache for the G samples; every
    sampled sequence, rescored alone from scratch, has the sampler's logprobs."""
    e = _engine(family)
    p0, p1 = _prompt(e, 0), _prompt(e, 1, (168, 112), "Where?")  # different lengths: left padding too
    before = e.token_stats().get("prefill_processed", 0)
    out = e.sample([p0, p1], 4, SampleParams(max_tokens=8, seed=5))
    # prefill ran over 2 rows (one per prompt), not 8
    assert e.token_stats()["prefill_processed"] - before == 2 * max(p0.length, p1.length)
    for prompt, group in zip((p0, p1), out):
        assert len(group) == 4
        for s in group:
            d = _rl_datum(prompt, s.tokens, 0)
            with torch.no_grad():
                lp = naive_logprobs(e, d)[prompt.length - 1 :].numpy()
            assert np.abs(lp - np.asarray(s.logprobs)).max() < 1e-4


@FAMILY
def test_image_feature_cache_encodes_each_image_once_and_changes_nothing(family):
    """Frozen vision tower: sampling encodes each image once, later turns and the training pass
    reuse the features; logprobs and gradients equal the uncached ones."""
    from geospot.engines.vision_cache import install_image_feature_cache

    e = _engine(family)
    e.kv_reuse = False  # a later turn must prefill its image again here (KV kept across calls skips the tower)
    r = e.renderer
    p0, p1 = _prompt(e, 0), _prompt(e, 1, text="Where?")  # same size, different pixels: keys must differ
    out = e.sample([p0, p1], 2, SampleParams(max_tokens=4, seed=1))
    nxt = [prompts.user_message(None, "again")]
    datums = [
        _rl_datum(r.continuation(p, s.tokens, nxt), [30, 40], k)
        for k, (p, g) in enumerate([(p0, out[0]), (p1, out[1])])
        for s in g
    ]
    packed = lambda ds: shared_prefix_forward(
        e.model, ds, renderer=e.renderer, spatial_merge=e.spatial_merge, pad_id=e.pad_id
    )
    cache = install_image_feature_cache(e.model)
    assert install_image_feature_cache(e.model) is cache  # idempotent (the engine may have installed it)
    cache.enabled = False
    plain_lp, plain_g = _grads(e, datums, packed)

    cache.enabled, cache.hits, cache.misses = True, 0, 0
    cache.store.clear()
    e.sample([p0, p1], 2, SampleParams(max_tokens=4, seed=1))
    assert (cache.misses, cache.hits) == (2, 0)  # two images, each encoded once
    e.sample([d.model_input for d in datums], 1, SampleParams(max_tokens=3, seed=2))  # a later turn: all hits
    cached_lp, cached_g = _grads(e, datums, packed)
    assert cache.misses == 2 and cache.hits >= 4
    for a, b in zip(plain_lp, cached_lp):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)
    for n in plain_g:
        assert torch.allclose(plain_g[n], cached_g[n], atol=1e-7, rtol=1e-5), n


def test_image_feature_cache_steps_aside_when_the_vision_tower_trains():
    from geospot.engines.vision_cache import install_image_feature_cache

    e = _engine("qwen3_vl", train_vision=True)
    cache = install_image_feature_cache(e.model)
    p = _prompt(e, 4)
    datums = [_rl_datum(p, c, i) for i, c in enumerate(_completions(np.random.default_rng(5), 2))]
    grads = _assert_equal(e, datums)
    assert cache.misses == cache.hits == 0
    assert any("visual" in n and g.abs().sum() > 0 for n, g in grads.items())


def test_packing_refuses_attention_without_4d_masks():
    e = _engine("qwen2_vl")
    assert supports_packing(e.model)
    text = e.model.get_base_model().config.get_text_config()
    saved, text._attn_implementation = text._attn_implementation, "flash_attention_2"
    try:
        assert not supports_packing(e.model)
        with pytest.raises(ValueError, match="4-D mask"):
            shared_prefix_forward(
                e.model, [_rl_datum(_prompt(e), [30, 40], 0)], renderer=e.renderer, spatial_merge=e.spatial_merge
            )
    finally:
        text._attn_implementation = saved
