"""KV reuse across sample() calls (issue 7): a telescoping turn reuses the cache of the earlier
turns. Reuse ON must sample exactly what reuse OFF samples (same tokens, logprobs within fp32
tolerance) while prefilling fewer tokens; any weight change must empty the store."""

import numpy as np
import pytest
import torch
from engine_helpers import random_image, tiny_engine

from geospot import prompts
from geospot.engines.datums import make_datum
from geospot.engines.kv_store import KVStore, common_prefix_len, concat_segments, left_padded, match_key, take_segments
from geospot.engines.types import AdamParams, ImageChunk, ModelInput, SampleParams, TextChunk
from geospot.models.tiny import FAMILIES

FAMILY = pytest.mark.parametrize("family", FAMILIES)
TOL = 1e-4


_engine, _image = tiny_engine, random_image


def _prompt(e, seed=0, size=(112, 112)):
    return e.renderer.generation_prompt([prompts.user_message(_image(seed, size), prompts.TELESCOPING_PROMPTS[0])])


def _next_turn(e, prompt, tokens, turn, image=None):
    text = prompts.TELESCOPING_PROMPTS[min(turn, 2)].format(prev="(1.0, 2.0)")
    return e.renderer.continuation(prompt, tokens, [prompts.user_message(image, text)])


def _prefill_counts(e):
    return tuple(e.tokens.by_kind.get("prefill", [0, 0]))


def _telescope(e, reuse: bool, turns: int, G: int = 3):
    """Turn 1: two images, G sampled rollouts each; later turns: every rollout's continuation,
    greedy. -> (per turn the flat list of SampledSequence, prefill (needed, processed) used,
    what a later turn's prompts could reuse: each rollout's earlier prompt + its fed tokens,
    the later prompts' total length)."""
    e.kv_reuse = reuse
    e.kv_store.clear()
    n0, p0 = _prefill_counts(e)
    first = [_prompt(e, 0), _prompt(e, 1, (140, 112))]  # different lengths: left padding too
    out = e.sample(first, G, SampleParams(max_tokens=6, temperature=1.0, seed=3))
    history = [[s for g in out for s in g]]
    current = [p for p in first for _ in range(G)]
    reusable = later_length = 0
    for turn in range(1, turns):
        reusable += sum(p.length + len(s.tokens) - 1 for p, s in zip(current, history[-1]))  # last token never fed
        current = [_next_turn(e, p, s.tokens, turn) for p, s in zip(current, history[-1])]
        later_length += sum(p.length for p in current)
        out = e.sample(current, 1, SampleParams(max_tokens=5, temperature=0.0, stop=(-1,)))
        history.append([g[0] for g in out])
    n1, p1 = _prefill_counts(e)
    return history, (n1 - n0, p1 - p0), reusable, later_length


def _assert_same(a, b):
    for turn_a, turn_b in zip(a, b):
        for x, y in zip(turn_a, turn_b):
            assert x.tokens == y.tokens and x.stop_reason == y.stop_reason
            assert np.abs(np.asarray(x.logprobs) - np.asarray(y.logprobs)).max() < TOL


# -- pure helpers, by hand -------------------------------------------------------------------------


def _seg(values, heads=1, dim=2, layers=2):
    """A segment whose position i holds value values[i] everywhere (keys) and -values[i] (values)."""
    t = torch.tensor(values, dtype=torch.float32)[None, :, None].expand(heads, len(values), dim)
    return tuple((t.clone() + 10 * l, -t.clone()) for l in range(layers))


def test_match_key_tells_pictures_apart_and_common_prefix_len():
    a, b = _image(0), _image(1)
    chunk = lambda im: ImageChunk(im, (1, 4, 4), 4)
    mi_a = ModelInput((TextChunk((5, 6)), chunk(a), TextChunk((7,))))
    mi_b = ModelInput((TextChunk((5, 6)), chunk(b), TextChunk((7,))))
    ka, kb = match_key(mi_a), match_key(mi_b)
    assert ka[:2].tolist() == [5, 6] and ka[-1] == 7 and (ka[2:6] < 0).all() and len(set(ka[2:6])) == 1
    assert common_prefix_len(ka, kb) == 2  # same placeholder tokens, different pixels: no match
    assert common_prefix_len(ka, match_key(ModelInput((TextChunk((5, 6)), chunk(a.copy()), TextChunk((7, 8)))))) == 7
    assert common_prefix_len(np.array([1, 2, 3]), np.array([1, 2])) == 2


def test_segments_cut_concatenate_and_left_pad():
    segs = [_seg([1, 2, 3]), _seg([4, 5])]
    assert [s[0][0].shape[1] for s in take_segments(segs, 4)] == [3, 1]
    assert take_segments(segs, 3)[0] is segs[0]  # whole segments are shared, not copied
    (k0, v0), (k1, _) = concat_segments(segs, 4)
    assert k0[0, :, 0].tolist() == [1, 2, 3, 4] and v0[0, :, 0].tolist() == [-1, -2, -3, -4]
    assert k1[0, :, 0].tolist() == [11, 12, 13, 14]
    with pytest.raises(ValueError, match="hold 5"):
        concat_segments(segs, 6)
    layers, mask = left_padded([concat_segments(segs, 2), concat_segments(segs, 4)], 4)
    assert mask.tolist() == [[0, 0, 1, 1], [1, 1, 1, 1]]
    assert layers[0][0].shape == (2, 1, 4, 2)
    assert layers[0][0][:, 0, :, 0].tolist() == [[0, 0, 1, 2], [1, 2, 3, 4]]


def test_store_matches_longest_drops_extended_entries_and_evicts_by_tokens():
    s = KVStore(max_tokens=9)
    p = _seg([1, 2, 3, 4])
    s.add(np.array([1, 2, 3, 4]), [p])
    s.add(np.array([1, 2, 3, 4, 5, 6]), [p, _seg([5, 6])])  # extends the first: it goes
    s.add(np.array([1, 2, 3, 4, 7]), [p, _seg([7])])
    assert len(s) == 2 and s.tokens == 4 + 2 + 1  # the shared prompt segment counted once
    key = lambda toks: match_key(ModelInput.from_ints(toks))
    assert s.match(key([1, 2, 3, 4, 5, 6, 9]), min_len=2).key.tolist() == [1, 2, 3, 4, 5, 6]  # the longest it extends
    assert s.match(key([1, 2, 3, 4, 7, 9]), min_len=2).key.tolist() == [1, 2, 3, 4, 7]
    assert s.match(key([1, 2, 3, 4, 5, 6]), min_len=2) is None  # no token left to prefill
    assert s.match(key([1, 2, 3, 4, 5, 0]), min_len=2) is None  # shares a part only: prefilled as usual
    assert s.match(key([1, 2, 3, 4, 5, 6, 9]), min_len=7) is None
    s.match(key([1, 2, 3, 4, 5, 6, 9]), min_len=2)  # now the most recently used
    s.add(np.array([8, 8, 8]), [_seg([8, 8, 8])])  # 10 tokens > 9: the least recently used goes
    assert [e.key.tolist() for e in s.entries] == [[1, 2, 3, 4, 5, 6], [8, 8, 8]]
    assert s.tokens == 4 + 2 + 3  # the evicted entry's own segment left; the shared prompt stayed
    s.sync_weights((1,))
    assert len(s) == 0 and s.tokens == 0
    with pytest.raises(ValueError, match="3-token key"):
        s.add(np.array([1, 2, 3]), [_seg([1])])


# -- the engine: reuse ON == reuse OFF ---------------------------------------------------------------


@FAMILY
@pytest.mark.parametrize("turns", [2, 3])
def test_telescoping_turns_reuse_the_cache_and_sample_the_same(family, turns):
    e = _engine(family)
    off, (need_off, proc_off), _, _ = _telescope(e, reuse=False, turns=turns)
    hits0, reused0 = e.kv_store.hits, e.kv_store.reused_tokens
    on, (need_on, proc_on), reusable, later_length = _telescope(e, reuse=True, turns=turns)
    _assert_same(off, on)
    assert e.kv_store.hits - hits0 == 6 * (turns - 1)  # every continuation found its own earlier turn
    assert e.kv_store.reused_tokens - reused0 == reusable  # ... all of it
    assert proc_on < proc_off and need_on < need_off
    # reused tokens are neither needed nor processed again: later turns need only what they add
    e.kv_reuse = False
    e.kv_store.clear()
    n0 = _prefill_counts(e)[0]
    e.sample([_prompt(e, 0), _prompt(e, 1, (140, 112))], 3, SampleParams(max_tokens=6, temperature=1.0, seed=3))
    turn1_need = _prefill_counts(e)[0] - n0
    assert need_on == turn1_need + (later_length - reusable)


@FAMILY
def test_telescoping_with_reuse_samples_the_same_with_the_shared_prefix_decode_off(family):
    """prefix_decode.py on the prefills KV reuse assembles (stored rows left-padded, suffixes on
    top): the same turns as attending the repeated cache."""
    e = _engine(family)
    e.shared_prefix_decode = False
    off = _telescope(e, reuse=True, turns=3)[0]
    e.shared_prefix_decode = True
    on = _telescope(e, reuse=True, turns=3)[0]
    assert e.sampler.lean.shares_prefix
    _assert_same(off, on)


@FAMILY
def test_mixed_batch_some_prompts_extend_stored_sequences(family):
    """Turn-2 prompts that extend stored sequences, a fresh prompt, and a continuation with a new
    photo in its turn, in one batch: the same as reuse OFF."""
    e = _engine(family)

    def run(reuse):
        e.kv_reuse = reuse
        e.kv_store.clear()
        p0 = _prompt(e, 0)
        first = e.sample([p0], 2, SampleParams(max_tokens=4, temperature=1.0, seed=7))[0]
        batch = [_next_turn(e, p0, first[0].tokens, 1), _prompt(e, 2, (140, 112)),
                 _next_turn(e, p0, first[1].tokens, 1, image=_image(3, (112, 140)))]
        hits = e.kv_store.hits
        out = e.sample(batch, 2, SampleParams(max_tokens=4, temperature=1.0, seed=8))
        return [first] + out, e.kv_store.hits - hits

    off, _ = run(False)
    on, hits = run(True)
    assert hits == 2
    for a, b in zip(off, on):
        _assert_same([a], [b])


# -- invalidation ------------------------------------------------------------------------------------


def _train_once(e, prompt, seq):
    full = prompt.append_tokens(seq.tokens)
    q = np.concatenate([np.zeros(prompt.length), seq.logprobs]).astype(np.float32)
    a = np.concatenate([np.zeros(prompt.length), np.ones(len(seq.tokens))]).astype(np.float32)
    e.train_step([make_datum(full, logprobs=q, advantages=a)], "importance_sampling", AdamParams(learning_rate=5e-2))


def test_a_weight_change_empties_the_store_and_stale_kv_would_be_wrong(tmp_path):
    e = _engine("qwen2_5_vl")
    p = _prompt(e, 0)
    greedy = SampleParams(max_tokens=5, temperature=0.0, stop=(-1,))
    seq = e.sample([p], 1, greedy)[0][0]
    saved = e.save_state(str(tmp_path / "s0"))
    assert len(e.kv_store) == 1
    stale = list(e.kv_store.entries)
    _train_once(e, p, seq)
    assert len(e.kv_store) == 0  # optim_step cleared it
    nxt = _next_turn(e, p, seq.tokens, 1)
    e.kv_reuse = False
    fresh = e.sample([nxt], 1, greedy)[0][0]
    # the store would be wrong with stale entries: put them back behind the engine's back
    e.kv_reuse = True
    e.kv_store.entries = list(stale)
    e.kv_store.weights_version = e._weights_version()
    wrong = e.sample([nxt], 1, greedy)[0][0]
    assert np.abs(np.asarray(wrong.logprobs) - np.asarray(fresh.logprobs)).max() > 10 * TOL
    # a change the engine did not make itself (in-place on a trainable tensor) is seen too
    e.kv_store.entries = list(stale)
    with torch.no_grad():
        e.trainable[0][1].add_(0.0)
    hits = e.kv_store.hits
    right = e.sample([nxt], 1, greedy)[0][0]
    assert e.kv_store.hits == hits  # no reuse: the version changed, the store was emptied first
    assert np.abs(np.asarray(right.logprobs) - np.asarray(fresh.logprobs)).max() < TOL
    # load_state changes the weights back: cleared as well
    assert len(e.kv_store) > 0
    e.load_state(saved)
    assert len(e.kv_store) == 0


def test_reuse_off_by_config():
    e = _engine("qwen2_vl", kv_reuse_tokens=0)
    assert not e.kv_reuse
    e.sample([_prompt(e, 0)], 2, SampleParams(max_tokens=3, seed=0))
    assert len(e.kv_store) == 0
