"""LocalEngine on the tiny models, the same matrix for all three Qwen-VL families."""

import numpy as np
import pytest
import torch
from engine_helpers import random_image, tiny_engine

from geospot import prompts
from geospot.config import ConfigError
from geospot.engines import make_engine
from geospot.engines.config import EngineConfig
from geospot.engines.datums import make_datum
from geospot.engines.inputs import mrope_positions
from geospot.engines.types import AdamParams, ModelInput, SampleParams
from geospot.models.tiny import FAMILIES

FAMILY = pytest.mark.parametrize("family", FAMILIES)


_engine, _image = tiny_engine, random_image


def _prompt(engine, seed=0, size=(112, 112), text=prompts.SINGLE_TURN_PROMPT):
    return engine.renderer.generation_prompt([prompts.user_message(_image(seed, size), text)])


def _answer_datum(engine, seed=0, lat=12.5, lon=-45.25):
    msgs = [
        prompts.user_message(_image(seed), prompts.SINGLE_TURN_PROMPT),
        prompts.assistant_message(prompts.format_answer(lat, lon)),
    ]
    full, w = engine.renderer.supervised_example(msgs)
    return make_datum(full, weights=w)


def _seq_datum(prompt: ModelInput, tokens, logprobs, advantage: float):
    full = prompt.append_tokens(tokens)
    n_p = prompt.length
    q = np.concatenate([np.zeros(n_p), np.asarray(logprobs)]).astype(np.float32)
    a = np.concatenate([np.zeros(n_p), np.full(len(tokens), advantage)]).astype(np.float32)
    return make_datum(full, logprobs=q, advantages=a)


@FAMILY
def test_positions_match_transformers_get_rope_index(family):
    e = _engine(family)
    r = e.renderer
    turn1 = [prompts.user_message(_image(0, (112, 168)), prompts.TELESCOPING_PROMPTS[0])]
    mi = r.continuation(r.generation_prompt(turn1), [5, 6, 7], [prompts.user_message(_image(1, (140, 112)), "again")])
    assert len(mi.images()) == 2
    ours, _ = mrope_positions(mi, e.spatial_merge)
    ids = torch.from_numpy(r.tokens_of(mi))[None]
    tt = (ids == r.image_pad_id).int()
    grid = torch.tensor([c.grid_thw for c in mi.images()])
    base = e.model.get_base_model() if hasattr(e.model, "get_base_model") else e.model
    theirs, _ = base.model.get_rope_index(ids, mm_token_type_ids=tt, image_grid_thw=grid)
    assert np.array_equal(ours, theirs[:, 0].numpy())


@FAMILY
def test_sampler_logprobs_equal_trainer_logprobs(family):
    e = _engine(family)
    r = e.renderer
    # prompts of different lengths (left padding in the sampler) and a two-turn sequence
    p0 = _prompt(e, 0)
    p1 = _prompt(e, 1, (168, 112), "Where?")
    out = e.sample([p0, p1], 3, SampleParams(max_tokens=6, seed=3))
    assert [len(g) for g in out] == [3, 3]
    p2 = r.continuation(
        p0,
        out[0][0].tokens,
        [prompts.user_message(_image(2), prompts.TELESCOPING_PROMPTS[1].format(prev="(1.0, 2.0)"))],
    )
    out2 = e.sample([p2], 2, SampleParams(max_tokens=6, seed=4))
    datums, expected = [], []
    for prompt, group in [(p0, out[0]), (p1, out[1]), (p2, out2[0])]:
        for s in group:
            assert len(s.tokens) == len(s.logprobs) and s.stop_reason in ("stop", "length")
            datums.append(_seq_datum(prompt, s.tokens, s.logprobs, 1.0))
            expected.append(np.asarray(s.logprobs))
    got = e.forward(datums)
    for lp, exp in zip(got, expected):
        np.testing.assert_allclose(lp[-len(exp) :], exp, atol=1e-4)
    # a training forward agrees too
    fb = e.forward_backward(datums, "importance_sampling")
    for lp, exp in zip(fb.logprobs, expected):
        np.testing.assert_allclose(lp[-len(exp) :], exp, atol=1e-4)


def test_sampling_is_seeded_and_stops():
    e = _engine("qwen2_5_vl")
    p = _prompt(e)
    a = e.sample([p], 4, SampleParams(max_tokens=5, seed=7))
    b = e.sample([p], 4, SampleParams(max_tokens=5, seed=7))
    assert a == b
    assert len({s.tokens for s in a[0]}) > 1  # the 4 samples differ (temperature 1)
    # every token is a stop token -> one token, stop reason "stop", stop token included
    stop_all = tuple(range(len(e.tokenizer)))
    s = e.sample([p], 2, SampleParams(max_tokens=5, seed=1, stop=stop_all))[0]
    assert all(len(x.tokens) == 1 and x.stop_reason == "stop" for x in s)
    # greedy decoding is the argmax of the trainer's distribution
    g = e.sample([p], 2, SampleParams(max_tokens=4, temperature=0.0))[0]
    assert g[0].tokens == g[1].tokens
    assert e.token_stats()["tokens_processed"] > 0


@FAMILY
def test_importance_sampling_zero_advantage_zero_grad_and_positive_raises_logprob(family):
    e = _engine(family)
    p = _prompt(e)
    s = e.sample([p], 1, SampleParams(max_tokens=6, seed=0))[0][0]
    zero = _seq_datum(p, s.tokens, s.logprobs, 0.0)
    e.forward_backward([zero], "importance_sampling")
    grads = [q.grad for _, q in e.trainable]
    assert all(g is None or torch.count_nonzero(g) == 0 for g in grads)
    before = e.forward([zero])[0][-len(s.tokens) :].sum()
    pos = _seq_datum(p, s.tokens, s.logprobs, 1.0)
    e.train_step([pos], "importance_sampling", AdamParams(learning_rate=1e-2))
    after = e.forward([zero])[0][-len(s.tokens) :].sum()
    assert after > before


@FAMILY
def test_lora_changes_only_adapter_params(family):
    e = _engine(family)
    before = {n: p.detach().clone() for n, p in e.model.named_parameters()}
    e.train_step([_answer_datum(e)], "cross_entropy", AdamParams(learning_rate=1e-2))
    changed = {n for n, p in e.model.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n for n in changed)
    assert not any("visual" in n for n in changed)  # vision tower frozen by default
    assert any("lora_B" in n for n in changed)


def test_full_finetune_freezes_vision_by_default():
    e = _engine("qwen2_5_vl", lora_rank=0)
    before = {n: p.detach().clone() for n, p in e.model.named_parameters()}
    e.train_step([_answer_datum(e)], "cross_entropy", AdamParams(learning_rate=1e-3))
    changed = {n for n, p in e.model.named_parameters() if not torch.equal(p, before[n])}
    assert any("language_model" in n for n in changed) and not any("visual" in n for n in changed)
    ev = _engine("qwen2_5_vl", lora_rank=0, train_vision=True)
    assert any("visual" in n for n, _ in ev.trainable)


def test_sft_learns_an_answer():
    e = _engine("qwen2_5_vl")
    d = _answer_datum(e)
    first = e.forward([d])[0]
    w = d.loss_fn_inputs["weights"]
    for _ in range(5):
        e.train_step([d], "cross_entropy", AdamParams(learning_rate=2e-2))
    last = e.forward([d])[0]
    assert (last * w).sum() > (first * w).sum() + 1.0


@FAMILY
def test_save_load_resumes_bit_identically(family, tmp_path):
    adam = AdamParams(learning_rate=1e-2, weight_decay=0.01, grad_clip_norm=1.0)
    data = [_answer_datum(_engine(family), seed=i, lat=10 * i, lon=-5 * i) for i in range(4)]
    a = _engine(family)
    a.train_step(data[:2], "cross_entropy", adam)
    path = a.save_state(str(tmp_path / "ckpt"))
    a.train_step(data[2:], "cross_entropy", adam)
    sa = a.sample([_prompt(a)], 2, SampleParams(max_tokens=4))
    b = _engine(family)
    with torch.no_grad():  # scramble: everything must come from the checkpoint
        for _, q in b.trainable:
            q.add_(torch.randn_like(q))
    b.load_state(path, with_optimizer=True)
    assert b.step == 1
    b.train_step(data[2:], "cross_entropy", adam)
    for (n, p), (m, q) in zip(a.trainable, b.trainable):
        assert n == m and torch.equal(p, q), n
    assert b.sample([_prompt(b)], 2, SampleParams(max_tokens=4)) == sa  # sampling RNG resumed too
    # without the optimizer state the next step differs (Adam moments restart)
    c = _engine(family)
    c.load_state(path, with_optimizer=False)
    assert c.step == 0  # start weights: a new run, counted from step 0 (a resume above: step 1)
    c.train_step(data[2:], "cross_entropy", adam)
    assert any(not torch.equal(p, q) for (_, p), (_, q) in zip(a.trainable, c.trainable))
    assert not list(tmp_path.glob(".ckpt.tmp*"))


@FAMILY
def test_export_reloads_in_plain_transformers_with_identical_logits(family, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    e = _engine(family)
    d = _answer_datum(e)
    e.train_step([d], "cross_entropy", AdamParams(learning_rate=1e-2))
    p = _prompt(e)
    e.sample([p], 2, SampleParams(max_tokens=3))
    batch = e._batch([d.model_input], left_pad=False)
    with torch.no_grad():
        ref = e.model(**batch.model_kwargs()).logits
    merged_dir = e.export(str(tmp_path / "merged"), merged=True)
    merged = AutoModelForImageTextToText.from_pretrained(merged_dir)
    with torch.no_grad():
        got = merged(**batch.model_kwargs()).logits
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    # the exported folder is a model name our engine loads too (tokenizer + processor inside)
    again = make_engine(
        EngineConfig(model_name=merged_dir, lora_rank=0, device="cpu", dtype="float32", max_pixels=112 * 112)
    )
    np.testing.assert_allclose(again.forward([d])[0], e.forward([d])[0], atol=1e-4)
    adapter = e.export(str(tmp_path / "adapter"), merged=False)
    base = AutoModelForImageTextToText.from_pretrained(e.folder)
    peft_model = PeftModel.from_pretrained(base, adapter)
    with torch.no_grad():
        got2 = peft_model(**batch.model_kwargs()).logits
    # fp32 rounding only: the engine's LoRA (addmm, lean_lora.py) and patch embedding (a matmul,
    # patch_linear.py) sum the same products as PEFT's and the Conv3d in another order
    torch.testing.assert_close(got2, ref, atol=1e-5, rtol=1e-5)
    # save_state -> fresh engine -> load_state: identical logits
    s = e.save_state(str(tmp_path / "state"))
    f = _engine(family, seed=5)
    f.load_state(s)
    with torch.no_grad():
        assert torch.equal(f.model(**batch.model_kwargs()).logits, ref)


def test_clear_errors():
    e = _engine("qwen2_5_vl")
    big = _image(0, (112, 112)).resize((448, 448))
    mi = ModelInput((e.renderer.image_chunk(big),)).append_tokens([1, 2])
    object.__setattr__(mi.chunks[0], "image", big)  # bypass the renderer's resize
    with pytest.raises(ValueError, match="pixel budget"):
        e.sample([mi], 1, SampleParams(max_tokens=2))
    long = ModelInput.from_ints([5] * (e.max_context + 1))
    with pytest.raises(ConfigError, match="context"):  # the commands say a ConfigError in one sentence
        e.sample([long], 1, SampleParams(max_tokens=2))
    p = _prompt(e)
    good = _seq_datum(p, [5, 6], [-1.0, -1.0], 1.0)
    bad = _seq_datum(p, [5, 6], [-1.0, float("nan")], 1.0)
    with pytest.raises(FloatingPointError, match=r"step 0 for datum 1"):
        e.forward_backward([good, bad], "importance_sampling")
    with pytest.raises(ValueError, match="lacks"):
        e.forward_backward([good], "cross_entropy")
    with pytest.raises(ValueError, match="unknown engine"):
        make_engine(EngineConfig(model_name="tiny:qwen2_5_vl", engine="nope"))  # type: ignore[arg-type]


def _grads(e):
    return {n: (p.grad.clone() if p.grad is not None else torch.zeros_like(p)) for n, p in e.trainable}


@FAMILY
@pytest.mark.parametrize("turns", [1, 2])
def test_shared_prefix_training_equals_naive(family, turns):
    e = _engine(family)
    r = e.renderer
    groups = []
    for k in range(2):  # two GRPO groups (different images) of 3 rollouts each
        p = _prompt(e, seed=k)
        seqs = e.sample([p], 3, SampleParams(max_tokens=5, seed=k))[0]
        for j, s in enumerate(seqs):
            prompt = p
            tokens = list(s.tokens)
            lps = list(s.logprobs)
            if turns == 2:  # a telescoping episode: turn 2 appended to the sampled turn 1
                prompt = r.continuation(
                    p, s.tokens, [prompts.user_message(None, prompts.TELESCOPING_PROMPTS[1].format(prev="(1.0, 2.0)"))]
                )
                s2 = e.sample([prompt], 1, SampleParams(max_tokens=4, seed=10 + j))[0][0]
                tokens, lps = list(s2.tokens), list(s2.logprobs)
            groups.append(_seq_datum(prompt, tokens, lps, float(j) - 1.0))
    loner = _seq_datum(_prompt(e, seed=9), [5, 6, 7], [-1.0, -1.0, -1.0], 0.5)
    datums = groups + [loner]
    plan = e.trainer.plan(datums)
    assert sorted(len(idx) for idx, P in plan if P) == [3, 3]  # both groups share a prefix, the loner does not
    e.shared_prefix = True
    before = e.tokens.processed
    shared = e.forward_backward(datums, "importance_sampling")
    shared_tokens = e.tokens.processed - before
    g_shared = _grads(e)
    for _, p in e.trainable:
        p.grad = None
    e.shared_prefix = False
    assert all(P == 0 for _, P in e.trainer.plan(datums))
    before = e.tokens.processed
    naive = e.forward_backward(datums, "importance_sampling")
    naive_tokens = e.tokens.processed - before
    g_naive = _grads(e)
    for a, b in zip(shared.logprobs, naive.logprobs):
        np.testing.assert_allclose(a, b, atol=1e-5)
    assert shared.metrics["loss:sum"] == pytest.approx(naive.metrics["loss:sum"], abs=1e-4)
    for n in g_naive:
        torch.testing.assert_close(g_shared[n], g_naive[n], atol=1e-5, rtol=1e-4)
    assert any(torch.count_nonzero(g) for g in g_shared.values())
    assert shared_tokens < 0.75 * naive_tokens  # each group prefix ran once, not three times


@FAMILY
def test_rows_finishing_at_different_steps_keep_exact_logprobs(family):
    e = _engine(family)
    p0, p1 = _prompt(e, 0), _prompt(e, 1, (168, 112), "Where?")
    half = tuple(range(0, len(e.tokenizer), 3))  # ~1/3 of tokens stop: rows end at different steps
    out = e.sample([p0, p1], 4, SampleParams(max_tokens=8, seed=2, stop=half))
    lengths = {len(s.tokens) for g in out for s in g}
    assert len(lengths) > 1 and {s.stop_reason for g in out for s in g} == {"stop", "length"} or len(lengths) > 2
    datums, expected = [], []
    for prompt, group in [(p0, out[0]), (p1, out[1])]:
        for s in group:
            if s.stop_reason == "stop":
                assert s.tokens[-1] in half
            datums.append(_seq_datum(prompt, s.tokens, s.logprobs, 1.0))
            expected.append(np.asarray(s.logprobs))
    for lp, exp in zip(e.forward(datums), expected):
        np.testing.assert_allclose(lp[-len(exp) :], exp, atol=1e-4)


@pytest.mark.parametrize("rank", [4, 0])
def test_forward_base_is_the_untrained_model(rank):
    e = _engine("qwen2_5_vl", lora_rank=rank)
    d = _answer_datum(e)
    start = e.forward([d])[0]
    for _ in range(2):
        e.train_step([d], "cross_entropy", AdamParams(learning_rate=1e-2))
    assert not np.allclose(e.forward([d])[0], start, atol=1e-3)
    np.testing.assert_allclose(e.forward_base([d])[0], start, atol=1e-5)


@pytest.mark.parametrize("rank", [4, 0])
def test_set_reference_freezes_the_starting_policy_for_kl(rank):
    e = _engine("qwen2_5_vl", lora_rank=rank)
    d = _answer_datum(e)
    base = e.forward([d])[0]
    e.train_step([d], "cross_entropy", AdamParams(learning_rate=1e-2))  # "SFT"
    sft = e.forward([d])[0]
    e.set_reference()  # RL starts here
    for _ in range(2):
        e.train_step([d], "cross_entropy", AdamParams(learning_rate=1e-2))  # "RL"
    now = e.forward([d])[0]
    assert not np.allclose(now, sft, atol=1e-3) and not np.allclose(sft, base, atol=1e-3)
    np.testing.assert_allclose(e.forward_base([d])[0], sft, atol=1e-5)  # the reference, not the base
    np.testing.assert_allclose(e.forward([d])[0], now, atol=1e-6)  # the policy's weights are back
    before = [p.detach().clone() for _, p in e.trainable]
    e.train_step([d], "cross_entropy", AdamParams(learning_rate=1e-2))  # the optimizer still owns them
    assert any(not torch.equal(b, p) for b, (_, p) in zip(before, e.trainable))


@FAMILY
def test_later_turn_sampling_shares_the_group_prefix(family):
    """Turn 2 of a telescoping group: G continuations share image + turn 1 prompt; the sampler
    prefills that prefix once and the logprobs still equal the trainer's."""
    e = _engine(family)
    e.kv_reuse = False  # the in-call shared prefix; KV kept across calls is tests/engines/test_kv_reuse.py
    r = e.renderer
    p0, p1 = _prompt(e, 0), _prompt(e, 1)
    first = e.sample([p0, p1], 3, SampleParams(max_tokens=5, seed=1))
    nxt = [prompts.user_message(None, prompts.TELESCOPING_PROMPTS[1].format(prev="(1.0, 2.0)"))]
    conts = [r.continuation(p, s.tokens, nxt) for p, g in [(p0, first[0]), (p1, first[1])] for s in g]
    conts.append(_prompt(e, 5, text="alone"))  # a prompt that shares nothing rides along
    clusters = e.sampler.prefix_clusters(conts)
    assert sorted(len(i) for i, P in clusters if P) == [3, 3]
    before = list(e.tokens.by_kind.get("prefill", [0, 0]))
    out = e.sample(conts, 2, SampleParams(max_tokens=5, seed=2))
    needed = e.tokens.by_kind["prefill"][0] - before[0]
    # each group's image + turn 1 ran once: needed = all tokens minus the (G-1) repeated prefixes
    assert needed == sum(c.length for c in conts) - sum((len(i) - 1) * P for i, P in clusters)
    datums, expected = [], []
    for c, g in zip(conts, out):
        for s in g:
            datums.append(_seq_datum(c, s.tokens, s.logprobs, 1.0))
            expected.append(np.asarray(s.logprobs))
    e.shared_prefix = False  # score the naive way
    for lp, exp in zip(e.forward(datums), expected):
        np.testing.assert_allclose(lp[-len(exp) :], exp, atol=1e-4)
