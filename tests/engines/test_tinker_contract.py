"""Offline contract tests for the Tinker engine: the SDK's real types, no service.

What we send Tinker must be the sequence the local engine trains on: same chunks in the
same order, images as JPEG with the expected token count, datums already shifted (never
twice), weights / logprobs / advantages on the positions of the tokens they belong to."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

tinker = pytest.importorskip("tinker")
from tinker.proto.request_conv import forward_backward_request_to_proto  # noqa: E402

from geospot.config import ConfigError  # noqa: E402
from geospot.engines import tinker_convert as tc  # noqa: E402
from geospot.engines import tinker_engine as te  # noqa: E402
from geospot.engines.config import EngineConfig  # noqa: E402
from geospot.engines.types import AdamParams, Datum, ImageChunk, ModelInput, SampleParams, TextChunk  # noqa: E402
from tests.engines.tinker_helpers import IM_END, IM_START, IMAGE_PAD, MERGE, V_END, V_START, image_chunk, user_turn  # noqa: E402


def shift(full: ModelInput, **arrays_T) -> Datum:
    """Tinker semantics, as make_datum implements them: input = full[:-1], targets = tokens[1:]."""
    flat = np.array(tc.flat_tokens(te.to_tinker_model_input(full), IMAGE_PAD), dtype=np.int64)
    last = full.chunks[-1]
    assert isinstance(last, TextChunk)
    inp = ModelInput(full.chunks[:-1] + ((TextChunk(last.tokens[:-1]),) if len(last.tokens) > 1 else ()))
    mask = full.token_mask()[1:]
    out = {"target_tokens": flat[1:]}
    out.update({k: np.where(mask, np.asarray(v, np.float32)[1:], 0).astype(np.float32) for k, v in arrays_T.items()})
    return Datum(inp, out)


def make_datum(full: ModelInput, **arrays_T) -> Datum:
    try:  # the engine helper's, when it exists; the hand-written shift otherwise
        from geospot.engines.datums import make_datum as real
    except ImportError:
        return shift(full, **arrays_T)
    return real(full, **arrays_T)


def to_proto(data, loss_fn, config=None):
    """The SDK's own wire encoding: what forward_backward would send."""
    req = tinker.types.ForwardBackwardRequest(
        forward_backward_input=tinker.types.ForwardBackwardInput(data=data, loss_fn=loss_fn, loss_fn_config=config),
        model_id="m",
        seq_id=1,
    )
    return forward_backward_request_to_proto(req)


# ---------------------------------------------------------------------------------------
# ModelInput


def test_model_input_chunks_map_one_to_one():
    img = image_chunk()
    prompt = ModelInput.from_ints([IM_START, 8948, 198, 100, IM_END, 198]).concat(user_turn([11, 12, 13], img))
    tmi = te.to_tinker_model_input(prompt)

    assert isinstance(tmi, tinker.types.ModelInput)
    kinds = [type(c).__name__ for c in tmi.chunks]
    assert kinds == ["EncodedTextChunk", "ImageChunk", "EncodedTextChunk"]
    assert list(tmi.chunks[0].tokens)[-1] == V_START and list(tmi.chunks[2].tokens)[0] == V_END
    assert tmi.chunks[1].expected_tokens == 48 // MERGE**2 == 12
    assert tmi.chunks[1].format == "jpeg"
    decoded = Image.open(io.BytesIO(tmi.chunks[1].data))
    assert decoded.format == "JPEG" and decoded.size == img.image.size  # never resized: the token count depends on it
    assert tmi.length == prompt.length
    # Text chunks carry exactly our tokens.
    assert list(tmi.chunks[0].tokens) == list(prompt.chunks[0].tokens)
    assert list(tmi.chunks[2].tokens) == list(prompt.chunks[2].tokens)


def test_flat_tokens_equal_local_engine_sequence():
    """The local engine expands an image into expected_tokens placeholders; so does Tinker."""
    img = image_chunk()
    prompt = user_turn([5, 6], img)
    local = np.concatenate(
        [
            np.array(c.tokens) if isinstance(c, TextChunk) else np.full(c.expected_tokens, IMAGE_PAD)
            for c in prompt.chunks
        ]
    )
    assert tc.flat_tokens(te.to_tinker_model_input(prompt), IMAGE_PAD) == local.tolist()
    assert len(local) == prompt.length


def test_image_reencoded_at_lower_quality_when_too_large():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 255, (224, 224, 3), dtype=np.uint8))
    sizes = {q: len(tc.image_to_jpeg(img, max_bytes=10**9, qualities=(q,))) for q in (95, 30)}
    limit = (sizes[95] + sizes[30]) // 2
    data = tc.image_to_jpeg(img, max_bytes=limit)
    assert len(data) <= limit < sizes[95]
    assert Image.open(io.BytesIO(data)).size == (224, 224)
    with pytest.raises(te.GeospotTinkerError, match="max_pixels"):
        tc.image_to_jpeg(img, max_bytes=sizes[30] - 1)


def test_image_cache_reuses_bytes_for_same_image_object():
    img = image_chunk()
    a = te.to_tinker_model_input(ModelInput((img,)))
    b = te.to_tinker_model_input(ModelInput((img,)))
    assert a.chunks[0].data is b.chunks[0].data
    other = ImageChunk(img.image.copy(), img.grid_thw, img.expected_tokens)  # equal pixels, another object
    c = te.to_tinker_model_input(ModelInput((other,)))
    assert c.chunks[0].data == a.chunks[0].data and c.chunks[0].data is not a.chunks[0].data


# ---------------------------------------------------------------------------------------
# Datums


def test_single_turn_sft_datum():
    img = image_chunk()
    prompt = ModelInput.from_ints([IM_START, 8948, 198, 100, IM_END, 198]).concat(user_turn([11, 12], img))
    answer = [30, 31, 32, 33, IM_END]
    full = prompt.append_tokens(answer)
    weights_T = np.r_[np.zeros(prompt.length), np.ones(len(answer))].astype(np.float32)
    datum = make_datum(full, weights=weights_T)

    td = te.to_tinker_datum(datum, "cross_entropy")
    assert isinstance(td, tinker.Datum)
    assert set(td.loss_fn_inputs) == {"target_tokens", "weights"}
    n = td.model_input.length
    assert n == full.length - 1 == datum.model_input.length
    tgt = td.loss_fn_inputs["target_tokens"].to_numpy()
    w = td.loss_fn_inputs["weights"].to_numpy()
    assert tgt.dtype == np.int64 and w.dtype == np.float32 and len(tgt) == len(w) == n
    flat_full = tc.flat_tokens(te.to_tinker_model_input(full), IMAGE_PAD)
    text_T = full.token_mask()[1:]  # targets that are text; image targets are don't-care (weight 0)
    assert tgt[text_T].tolist() == np.array(flat_full[1:])[text_T].tolist()  # shifted once: i predicts i+1
    assert tc.flat_tokens(td.model_input, IMAGE_PAD) == flat_full[:-1]
    # Loss on exactly the answer tokens, the end-of-turn included, predicted from the position before.
    assert w.sum() == len(answer)
    assert tgt[w > 0].tolist() == answer
    # Image positions carry zero weight.
    img_start = td.model_input.chunks[0].length
    assert np.all(w[img_start - 1 : img_start + img.expected_tokens] == 0)
    # The SDK encodes it for the wire.
    msg = to_proto([td], "cross_entropy")
    assert len(msg.data) == 1 and msg.data[0].model_input[1].image.expected_tokens == img.expected_tokens


def telescoping_trajectory():
    """3 turns: coarse -> refine -> final; each observation extends the previous one with
    the sampled tokens, as renderer.continuation builds it."""
    img = image_chunk(seed=3)
    obs = [ModelInput.from_ints([IM_START, 8948, 198, 100, IM_END, 198]).concat(user_turn([11, 12], img))]
    acts = [[40, 41, IM_END], [42, 43, 44, IM_END], [45, 46, IM_END]]
    lps = [[-0.5, -1.0, -0.1], [-0.2, -0.3, -0.4, -0.05], [-1.5, -0.7, -0.01]]
    advs = [0.5, -0.25, 1.0]
    for a in acts[:-1]:
        obs.append(obs[-1].append_tokens(a + [198]).concat(user_turn([20 + len(obs)])))
    full = obs[-1].append_tokens(acts[-1])
    lp_T = np.zeros(full.length, np.float32)
    adv_T = np.zeros(full.length, np.float32)
    for o, a, lp, adv in zip(obs, acts, lps, advs):
        lp_T[o.length : o.length + len(a)] = lp
        adv_T[o.length : o.length + len(a)] = adv
    return img, obs, acts, lps, advs, full, lp_T, adv_T


@pytest.mark.parametrize("loss_fn", ["importance_sampling", "ppo"])
def test_telescoping_rl_datum(loss_fn):
    img, obs, acts, lps, advs, full, lp_T, adv_T = telescoping_trajectory()
    datum = make_datum(full, logprobs=lp_T, advantages=adv_T)
    td = te.to_tinker_datum(datum, loss_fn)

    assert set(td.loss_fn_inputs) == {"target_tokens", "logprobs", "advantages"}
    n = td.model_input.length
    tgt = td.loss_fn_inputs["target_tokens"].to_numpy()
    lp = td.loss_fn_inputs["logprobs"].to_numpy()
    adv = td.loss_fn_inputs["advantages"].to_numpy()
    assert len(tgt) == len(lp) == len(adv) == n == full.length - 1
    # One image chunk, in the first user turn; the later turns are text.
    assert [type(c).__name__ for c in td.model_input.chunks] == ["EncodedTextChunk", "ImageChunk", "EncodedTextChunk"]
    assert td.model_input.chunks[1].expected_tokens == img.expected_tokens
    # Each turn's sampled tokens: at target positions obs_len-1 .. obs_len+k-2, with the
    # sampler's logprobs and the turn's advantage.
    for o, a, l, A in zip(obs, acts, lps, advs):
        s = o.length - 1
        assert tgt[s : s + len(a)].tolist() == a
        np.testing.assert_allclose(lp[s : s + len(a)], l, rtol=0, atol=1e-7)
        assert np.all(adv[s : s + len(a)] == np.float32(A))
    assert np.count_nonzero(adv) == sum(len(a) for a in acts)
    assert np.count_nonzero(lp) == sum(len(a) for a in acts)
    config = te.loss_fn_config(
        loss_fn, {"clip_low_threshold": 0.8, "clip_high_threshold": 1.2} if loss_fn == "ppo" else None
    )
    msg = to_proto([td], loss_fn, config)
    assert msg.loss_fn == loss_fn
    if loss_fn == "ppo":
        assert dict(msg.loss_fn_config) == pytest.approx({"clip_low_threshold": 0.8, "clip_high_threshold": 1.2})


def test_datum_missing_input_or_nan_is_a_clear_error():
    full = ModelInput.from_ints([1, 2, 3, 4])
    d = make_datum(full, weights=np.ones(4, np.float32))
    with pytest.raises(ValueError, match=r"needs loss_fn_inputs\[.logprobs.\]"):
        te.to_tinker_datum(d, "importance_sampling")
    bad = Datum(
        d.model_input,
        {"target_tokens": d.loss_fn_inputs["target_tokens"], "weights": np.array([1, np.nan, 1], np.float32)},
    )
    with pytest.raises(ValueError, match="NaN"):
        te.to_tinker_datum(bad, "cross_entropy")
    with pytest.raises(ConfigError, match="loss_fn"):
        te.to_tinker_datum(d, "dpo")


def test_loss_config_and_adam_mapping():
    assert te.loss_fn_config("importance_sampling", None) is None
    assert te.loss_fn_config("ppo", {"clip_low_threshold": 0.7}) == {"clip_low_threshold": 0.7}
    with pytest.raises(ConfigError, match="clip_low_threshold"):
        te.loss_fn_config("ppo", {"clip_eps": 0.2})
    a = te.to_tinker_adam(AdamParams(learning_rate=3e-4, weight_decay=0.01))
    assert isinstance(a, tinker.AdamParams)
    assert (a.learning_rate, a.beta1, a.beta2, a.eps, a.weight_decay, a.grad_clip_norm) == (
        3e-4,
        0.9,
        0.95,
        1e-8,
        0.01,
        0.0,
    )
    assert te.to_tinker_adam(AdamParams(1e-4, grad_clip_norm=1.0)).grad_clip_norm == 1.0


# ---------------------------------------------------------------------------------------
# Sampling


def test_sampling_params_and_sequences():
    sp = te.to_tinker_sampling_params(SampleParams(max_tokens=24, temperature=1.0, seed=7), default_stop=[IM_END])
    assert isinstance(sp, tinker.SamplingParams)
    assert (sp.max_tokens, sp.temperature, sp.top_p, sp.seed, list(sp.stop)) == (24, 1.0, 1.0, 7, [IM_END])
    assert list(te.to_tinker_sampling_params(SampleParams(stop=("\n\n",)), [IM_END]).stop) == ["\n\n"]
    with pytest.raises(ConfigError, match="mixes"):
        te.to_tinker_sampling_params(SampleParams(stop=("x", 5)), [IM_END])

    seq = tinker.SampledSequence(
        stop_reason="stop", sequence_id="s0", _tokens_list=[30, 31, IM_END], _logprobs_list=[-0.1, -0.2, -0.3]
    )
    ours = te.from_tinker_sequence(seq)
    assert ours.tokens == (30, 31, IM_END) and ours.logprobs == (-0.1, -0.2, -0.3) and ours.stop_reason == "stop"
    cut = tinker.SampledSequence(stop_reason="length", sequence_id="s1", _tokens_list=[30], _logprobs_list=[-0.1])
    assert te.from_tinker_sequence(cut).stop_reason == "length"
    with pytest.raises(te.GeospotTinkerError, match="logprobs"):
        te.from_tinker_sequence(tinker.SampledSequence(stop_reason="stop", sequence_id="s2", _tokens_list=[1]))


# ---------------------------------------------------------------------------------------
# With the real renderer on the tiny offline models: one renderer, two outputs


FAMILIES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


@pytest.fixture(scope="module", params=FAMILIES)
def renderer(request):
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    return te.default_renderer(EngineConfig(model_name=f"tiny:{request.param}", engine="tinker", max_pixels=112 * 112))


def photo(seed=0, w=150, h=100):
    return Image.fromarray(np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8))


def hf_style_ids(renderer, messages, add_generation_prompt):
    """What the HF processor feeds the model: the template text with each image pad
    repeated expected_tokens times, tokenised — independent of our chunking."""
    from geospot.engines.rendering import IMAGE_PAD

    text = renderer.tokenizer.apply_chat_template(
        [
            {**m, "content": [({"type": "image"} if p.get("type") == "image" else p) for p in m["content"]]}
            for m in messages
        ],
        tokenize=False,
        add_generation_prompt=add_generation_prompt,
    )
    images = [p["image"] for m in messages for p in m["content"] if p.get("type") == "image"]
    pieces = text.split(IMAGE_PAD)
    assert len(pieces) == len(images) + 1
    out = pieces[0]
    for img, rest in zip(images, pieces[1:]):
        out += (
            IMAGE_PAD * renderer.image_processor.num_tokens(renderer.image_processor.resize(img, renderer.max_pixels))
            + rest
        )
    return renderer.tokenizer(out, add_special_tokens=False)["input_ids"]


def test_rendered_single_turn_same_tokens_both_engines(renderer):
    from geospot.prompts import SINGLE_TURN_PROMPT, assistant_message, format_answer, user_message

    img = photo()
    messages = [user_message(img, SINGLE_TURN_PROMPT), assistant_message(format_answer(48.86, 2.35))]
    ours, weights_T = renderer.supervised_example(messages)
    tmi = te.to_tinker_model_input(ours)

    local = renderer.tokens_of(ours).tolist()  # what the local engine embeds
    assert tc.flat_tokens(tmi, renderer.image_pad_id) == local == hf_style_ids(renderer, messages, False)
    assert tmi.length == ours.length == len(local)
    (ic,) = [c for c in tmi.chunks if c.type == "image"]
    (oc,) = ours.images()
    t, h, w = oc.grid_thw
    assert ic.expected_tokens == t * h * w // renderer.image_processor.merge_size**2
    assert Image.open(io.BytesIO(ic.data)).size == oc.image.size
    # Chunk order: text (..<|vision_start|>), image, text (<|vision_end|>..).
    assert [c.type for c in tmi.chunks] == ["encoded_text", "image", "encoded_text"]
    vocab = renderer.tokenizer.get_vocab()
    assert tmi.chunks[0].tokens[-1] == vocab["<|vision_start|>"] and tmi.chunks[2].tokens[0] == vocab["<|vision_end|>"]

    datum = make_datum(ours, weights=weights_T)
    td = te.to_tinker_datum(datum, "cross_entropy")
    tgt = td.loss_fn_inputs["target_tokens"].to_numpy()
    w = td.loss_fn_inputs["weights"].to_numpy()
    assert len(tgt) == len(w) == td.model_input.length == ours.length - 1
    answer = renderer.tokenizer(format_answer(48.86, 2.35), add_special_tokens=False)["input_ids"]
    assert renderer.decode(tgt[w > 0].tolist()) == format_answer(48.86, 2.35)
    assert tgt[w > 0].tolist()[-1] == renderer.end_of_turn_id and int(w.sum()) >= len(answer)

    prompt = renderer.generation_prompt(messages[:1])
    assert tc.flat_tokens(te.to_tinker_model_input(prompt), renderer.image_pad_id) == hf_style_ids(
        renderer, messages[:1], True
    )


def test_rendered_telescoping_trajectory(renderer):
    from geospot.prompts import TELESCOPING_PROMPTS, user_message

    tok = renderer.tokenizer
    img = photo(seed=5)
    obs = [renderer.generation_prompt([user_message(img, TELESCOPING_PROMPTS[0])])]
    answers = ["Latitude: 40.0\nLongitude: 0.0", "Latitude: 45.50\nLongitude: 2.10", "Latitude: 48.86\nLongitude: 2.35"]
    acts = [tok(a, add_special_tokens=False)["input_ids"] + [renderer.end_of_turn_id] for a in answers]
    acts[1] = acts[1][:-1]  # a turn cut by max_tokens: the renderer appends the end-of-turn itself
    for turn in (1, 2):
        follow = user_message(None, TELESCOPING_PROMPTS[turn].format(prev="(1.0, 2.0)"))
        obs.append(renderer.continuation(obs[-1], acts[turn - 1], [follow]))
    full = obs[-1].append_tokens(acts[-1])
    lp_T = np.zeros(full.length, np.float32)
    adv_T = np.zeros(full.length, np.float32)
    for o, a, A in zip(obs, acts, (0.3, -0.2, 0.9)):
        assert renderer.tokens_of(full)[o.length : o.length + len(a)].tolist() == a  # sampled tokens kept verbatim
        lp_T[o.length : o.length + len(a)] = -0.25
        adv_T[o.length : o.length + len(a)] = A

    td = te.to_tinker_datum(make_datum(full, logprobs=lp_T, advantages=adv_T), "importance_sampling")
    assert [c.type for c in td.model_input.chunks] == ["encoded_text", "image", "encoded_text"]
    assert tc.flat_tokens(td.model_input, renderer.image_pad_id) == renderer.tokens_of(full).tolist()[:-1]
    tgt = td.loss_fn_inputs["target_tokens"].to_numpy()
    adv = td.loss_fn_inputs["advantages"].to_numpy()
    lp = td.loss_fn_inputs["logprobs"].to_numpy()
    assert len(tgt) == len(adv) == len(lp) == td.model_input.length
    for o, a, A in zip(obs, acts, (0.3, -0.2, 0.9)):
        s = o.length - 1
        assert tgt[s : s + len(a)].tolist() == a and np.all(adv[s : s + len(a)] == np.float32(A))
    assert np.count_nonzero(adv) == sum(map(len, acts)) == np.count_nonzero(lp)
    # The appended end-of-turn after the cut turn is context, not an action: no advantage.
    s1 = obs[1].length - 1
    assert tgt[s1 + len(acts[1])] == renderer.end_of_turn_id and adv[s1 + len(acts[1])] == 0


def test_local_engine_and_tinker_engine_render_the_same_sequence():
    """The local engine's renderer (from its loaded model) and the Tinker engine's (from the
    same model id, without weights) give the same ModelInput, hence the same tokens."""
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from geospot.engines.local import LocalEngine
    from geospot.prompts import TELESCOPING_PROMPTS, user_message

    cfg = EngineConfig(model_name="tiny:qwen2_5_vl", engine="local", max_pixels=112 * 112)
    local = LocalEngine(cfg)
    remote_renderer = te.default_renderer(cfg)
    messages = [user_message(photo(9), TELESCOPING_PROMPTS[0])]
    a = local.renderer.generation_prompt(messages)
    b = remote_renderer.generation_prompt(messages)
    assert local.renderer.tokens_of(a).tolist() == tc.flat_tokens(
        te.to_tinker_model_input(b), remote_renderer.image_pad_id
    )
    assert [c.grid_thw for c in a.images()] == [c.grid_thw for c in b.images()]


def test_rendered_reasoning_same_tokens_both_engines(renderer):
    """reasoning=true: the think-then-answer SFT example and a reasoning turn's continuation
    render to the same tokens for the local engine, Tinker and the HF processor, and the
    template keeps the <think> block verbatim (it is trained on, not stripped)."""
    from geospot import prompts as P

    img = photo(seed=3)
    target = P.format_reasoned_answer("The scene looks like Paris, France.", P.format_answer(48.86, 2.35))
    messages = [P.user_message(img, P.reasoning_prompt(P.SINGLE_TURN_PROMPT)), P.assistant_message(target)]
    ours, weights_T = renderer.supervised_example(messages)
    local = renderer.tokens_of(ours).tolist()
    assert tc.flat_tokens(te.to_tinker_model_input(ours), renderer.image_pad_id) == local
    assert local == hf_style_ids(renderer, messages, False)
    td = te.to_tinker_datum(make_datum(ours, weights=weights_T), "cross_entropy")
    tgt, w = td.loss_fn_inputs["target_tokens"].to_numpy(), td.loss_fn_inputs["weights"].to_numpy()
    assert renderer.decode(tgt[w > 0].tolist()) == target
    # a reasoning turn continued: its sampled tokens (think block included) stay verbatim
    prompt = renderer.generation_prompt(messages[:1])
    act = renderer.tokenizer(target, add_special_tokens=False)["input_ids"]
    follow = P.user_message(None, P.reasoning_prompt(P.TELESCOPING_PROMPTS[1]).format(prev="(48.9, 2.4)"))
    nxt = renderer.continuation(prompt, act, [follow])
    assert renderer.tokens_of(nxt)[prompt.length : prompt.length + len(act)].tolist() == act
    assert tc.flat_tokens(te.to_tinker_model_input(nxt), renderer.image_pad_id) == renderer.tokens_of(nxt).tolist()
