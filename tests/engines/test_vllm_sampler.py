"""The vLLM sampler path, every piece that needs no GPU: prompt conversion (all three Qwen-VL
families), SamplingParams mapping, output conversion, adapter versioning on a real tiny
LocalEngine, and `check_logprobs` against a CPU emulation of vLLM.

vLLM itself is never imported here unless installed (those tests skip otherwise). The fakes
use the attribute names of vLLM 0.33's RequestOutput / CompletionOutput / Logprob
(vllm/outputs.py, vllm/logprobs.py) and its image-placeholder rule for Qwen-VL token prompts
(one `<|image_pad|>` per image, expanded to prod(grid_thw) / merge**2 by the processor)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

from geospot import prompts
from geospot.engines import make_engine
from geospot.engines.config import EngineConfig
from geospot.engines.rendering import Renderer
from geospot.engines.types import AdamParams, ImageChunk, ModelInput, SampledSequence, SampleParams, TextChunk
from geospot.engines.vllm_sampler import (
    BAN_BIAS,
    VLLMSampler,
    VLLMSamplingEngine,
    check_logprobs,
    expanded_prompt_ids,
    llm_kwargs,
    sampled_sequences,
    sampling_kwargs,
    vllm_installed,
    vllm_lora_rank,
    vllm_prompt,
)
from geospot.models.tiny import FAMILIES

FAMILY = pytest.mark.parametrize("family", FAMILIES)
needs_vllm = pytest.mark.skipif(not vllm_installed(), reason="vllm not installed (optional GPU extra)")


def _image(seed=0, size=(112, 112)):
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8))


_ENGINES: dict = {}


def _local(family):
    """One tiny fp32 CPU LocalEngine per family (the renderer is all most tests need)."""
    if family not in _ENGINES:
        _ENGINES[family] = make_engine(
            EngineConfig(model_name=f"tiny:{family}", lora_rank=4, max_pixels=112 * 112, device="cpu", dtype="float32")
        )
    return _ENGINES[family]


# -- vLLM's side, emulated from its source ---------------------------------------------------------


def vllm_expand(prompt_token_ids, images, image_pad_id, merge, image_processor):
    """What vLLM's Qwen-VL processor does to a token prompt (vllm/multimodal/processing/processor.py
    `_apply_prompt_updates` with qwen2_vl.py's PromptReplacement(target=[pad], replacement=[pad]*N)):
    the k-th single pad becomes N_k = prod(grid_thw_k) // merge**2 pads, N_k from the HF image
    processor's grid for the image it was handed."""
    out, k = [], 0
    for t in prompt_token_ids:
        if t == image_pad_id and k < len(images):
            n = int(np.prod(image_processor.grid_thw(images[k]))) // merge**2
            out.extend([image_pad_id] * n)
            k += 1
        else:
            out.append(t)
    assert k == len(images), "fewer placeholders than images: vLLM raises here"
    return out


def _images_of(prompt):
    mm = (prompt.get("multi_modal_data") or {}).get("image")
    return [] if mm is None else (mm if isinstance(mm, list) else [mm])


# -- prompt conversion --------------------------------------------------------------------------------


@FAMILY
def test_vllm_prompt_is_the_template_tokenisation_with_one_pad_per_image(family):
    """The collapsed prompt is exactly what vLLM's own chat path would build (template text with
    one <|image_pad|> per image, tokenised), and vLLM's expansion of it gives back the trainer's
    tokens — single image and a two-image continuation."""
    e = _local(family)
    r: Renderer = e.renderer
    merge = e.spatial_merge
    msgs = [prompts.user_message(_image(0, (112, 84)), prompts.SINGLE_TURN_PROMPT)]
    mi = r.generation_prompt(msgs)
    p = vllm_prompt(mi, r.image_pad_id)
    text = r.tokenizer.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompts.SINGLE_TURN_PROMPT}]}],
        tokenize=False,
        add_generation_prompt=True,
    )
    assert text.count("<|image_pad|>") == 1
    assert p["prompt_token_ids"] == r.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert p["prompt_token_ids"].count(r.image_pad_id) == 1
    assert isinstance(p["multi_modal_data"]["image"], Image.Image)
    assert p["multi_modal_data"]["image"].size == mi.images()[0].image.size  # the resized image, not the original
    assert (
        vllm_expand(p["prompt_token_ids"], _images_of(p), r.image_pad_id, merge, r.image_processor)
        == r.tokens_of(mi).tolist()
    )
    assert expanded_prompt_ids(mi, r.image_pad_id) == r.tokens_of(mi).tolist()

    # a later turn with a second image: two pads, two images, in order
    mi2 = r.continuation(mi, [5, 6, 7], [prompts.user_message(_image(1, (84, 112)), "again")])
    p2 = vllm_prompt(mi2, r.image_pad_id)
    assert p2["prompt_token_ids"].count(r.image_pad_id) == 2
    imgs = _images_of(p2)
    assert [im.size for im in imgs] == [c.image.size for c in mi2.images()] and imgs[0].size != imgs[1].size
    assert (
        vllm_expand(p2["prompt_token_ids"], imgs, r.image_pad_id, merge, r.image_processor) == r.tokens_of(mi2).tolist()
    )
    # the trap this avoids: handing vLLM the expanded ids would grow each image by N-1 pads
    wrong = vllm_expand(r.tokens_of(mi).tolist(), _images_of(p), r.image_pad_id, merge, r.image_processor)
    assert len(wrong) == mi.length + mi.images()[0].length - 1


def test_vllm_prompt_hand_worked_and_rejects_pad_in_text():
    img = _image(0, (56, 56))
    mi = ModelInput((TextChunk((1, 2)), ImageChunk(img, (1, 4, 4), 4), TextChunk((3,))))
    assert vllm_prompt(mi, 9) == {"prompt_token_ids": [1, 2, 9, 3], "multi_modal_data": {"image": img}}
    assert expanded_prompt_ids(mi, 9) == [1, 2, 9, 9, 9, 9, 3]
    assert vllm_prompt(ModelInput.from_ints([4, 5]), 9) == {"prompt_token_ids": [4, 5]}  # text-only: no mm data
    with pytest.raises(ValueError, match="image placeholder"):
        vllm_prompt(ModelInput.from_ints([4, 9, 5]), 9)


# -- SampleParams -> SamplingParams ---------------------------------------------------------------------


def test_sampling_kwargs_mapping():
    vocab = {"<|im_end|>": 5, "<|endoftext|>": 6, "a": 7}
    kw = sampling_kwargs(
        SampleParams(max_tokens=24, temperature=0.7, top_p=0.9, seed=3),
        8,
        default_stop_ids=(5, 6),
        vocab=vocab,
        banned_ids=(11, 12),
    )
    assert kw["n"] == 8 and kw["max_tokens"] == 24 and kw["seed"] == 3
    assert kw["temperature"] == 0.7 and kw["top_p"] == 0.9 and kw["top_k"] == 0 and kw["repetition_penalty"] == 1.0
    assert kw["stop_token_ids"] == [5, 6] and kw["stop"] is None and kw["ignore_eos"] is True
    assert kw["logprobs"] == 0 and kw["detokenize"] is False
    assert kw["logit_bias"] == {11: BAN_BIAS, 12: BAN_BIAS}
    # explicit stops replace the default: one-token strings and ints become ids, other strings stay strings
    kw = sampling_kwargs(
        SampleParams(stop=("<|im_end|>", "\n\n", 42), temperature=0.0), 1, default_stop_ids=(5, 6), vocab=vocab
    )
    assert kw["stop_token_ids"] == [5, 42] and kw["stop"] == ["\n\n"] and kw["detokenize"] is True
    assert kw["temperature"] == 0.0 and kw["seed"] is None and kw["logit_bias"] is None
    assert (
        sampling_kwargs(SampleParams(temperature=0.0), 8, default_stop_ids=(5,), vocab=vocab)["n"] == 1
    )  # vLLM: greedy needs n=1
    assert sampling_kwargs(SampleParams(temperature=-1.0), 1, default_stop_ids=(5,), vocab=vocab)["temperature"] == 0.0
    with pytest.raises(ValueError, match="num_samples"):
        sampling_kwargs(SampleParams(), 0, default_stop_ids=(5,), vocab=vocab)
    with pytest.raises(ValueError, match="top_p"):
        sampling_kwargs(SampleParams(top_p=0.0), 1, default_stop_ids=(5,), vocab=vocab)


def test_llm_kwargs_and_lora_rank():
    assert [vllm_lora_rank(r) for r in (1, 4, 8, 9, 32, 33, 300, 512)] == [1, 8, 8, 16, 32, 64, 320, 512]
    with pytest.raises(ValueError, match="max_lora_rank"):
        vllm_lora_rank(513)
    kw = llm_kwargs("/models/base", lora_rank=32, seed=1, dtype="bfloat16", max_images=2)
    assert kw["model"] == "/models/base" and kw["enable_lora"] is True and kw["max_lora_rank"] == 32
    assert kw["limit_mm_per_prompt"] == {"image": 2} and kw["logprobs_mode"] == "raw_logprobs"
    assert kw["generation_config"] == "vllm" and "max_model_len" not in kw


@needs_vllm
def test_kwargs_are_accepted_by_real_vllm():
    import inspect

    from vllm import SamplingParams
    from vllm.engine.arg_utils import EngineArgs
    from vllm.lora.request import LoRARequest

    sp = SamplingParams(
        **sampling_kwargs(SampleParams(stop=("\n",)), 4, default_stop_ids=(5,), vocab={}, banned_ids=(9,))
    )
    assert sp.n == 4 and sp.logprobs == 0
    fields = set(inspect.signature(EngineArgs).parameters)
    assert set(llm_kwargs("m", lora_rank=8)) <= fields
    assert LoRARequest(lora_name="geospot-v1", lora_int_id=1, lora_path="/x").lora_int_id == 1


# -- vLLM outputs -> SampledSequence -----------------------------------------------------------------------


def _lp(x, rank=1):
    return SimpleNamespace(logprob=x, rank=rank, decoded_token=None)  # vllm.logprobs.Logprob


def _completion(index, token_ids, logprobs, finish_reason):
    """vllm.outputs.CompletionOutput's fields."""
    return SimpleNamespace(
        index=index,
        text="",
        token_ids=list(token_ids),
        cumulative_logprob=float(sum(logprobs)),
        logprobs=[{t: _lp(lp), 99: _lp(-9.0, 2)} for t, lp in zip(token_ids, logprobs)],
        finish_reason=finish_reason,
        stop_reason=None,
    )


def test_sampled_sequences_from_vllm_shaped_output():
    out = SimpleNamespace(
        request_id="0",
        prompt_token_ids=[1, 2],
        outputs=[
            _completion(1, [7, 8], [-0.5, -1.5], "length"),
            _completion(0, [4, 5], [-0.25, -0.125], "stop"),
        ],
        finished=True,
    )
    seqs = sampled_sequences(out)
    assert seqs == [SampledSequence((4, 5), (-0.25, -0.125), "stop"), SampledSequence((7, 8), (-0.5, -1.5), "length")]
    bad = SimpleNamespace(outputs=[_completion(0, [4], [-0.1], "abort")])
    with pytest.raises(RuntimeError, match="abort"):
        sampled_sequences(bad)
    nolp = SimpleNamespace(outputs=[SimpleNamespace(index=0, token_ids=[4], logprobs=None, finish_reason="stop")])
    with pytest.raises(ValueError, match="logprobs=0"):
        sampled_sequences(nolp)
    missing = SimpleNamespace(
        outputs=[SimpleNamespace(index=0, token_ids=[4], logprobs=[{5: _lp(-1.0)}], finish_reason="stop")]
    )
    with pytest.raises(ValueError, match="sampled token 4"):
        sampled_sequences(missing)


# -- adapter versioning -------------------------------------------------------------------------------------


class FakeLLM:
    """Records `generate` calls and answers like vllm.LLM.generate: one RequestOutput per prompt,
    `n` completions each. `sample_fn(prompt, n, kw) -> list[(tokens, logprobs, finish)]`."""

    def __init__(self, sample_fn=None, expand=None):
        self.calls = []
        self.sample_fn = sample_fn or (lambda p, n, kw: [([3, 4], [-1.0, -2.0], "stop")] * n)
        self.expand = expand or (lambda p: list(p["prompt_token_ids"]))

    def generate(self, prompts, sampling_params, *, lora_request=None, use_tqdm=True):
        self.calls.append(SimpleNamespace(prompts=prompts, params=sampling_params, lora=lora_request))
        kw = sampling_params.kw
        outs = []
        for i, p in enumerate(prompts):
            comps = [_completion(j, t, lp, f) for j, (t, lp, f) in enumerate(self.sample_fn(p, kw["n"], kw))]
            outs.append(
                SimpleNamespace(request_id=str(i), prompt_token_ids=self.expand(p), outputs=comps, finished=True)
            )
        return outs


def _fake_sampling_params(**kw):
    return SimpleNamespace(kw=kw)


def _fake_lora_request(**kw):
    return SimpleNamespace(**kw)


def _sampler(llm, root, image_pad_id=9, **kw):
    return VLLMSampler(
        llm,
        image_pad_id=image_pad_id,
        default_stop_ids=(5,),
        vocab={},
        adapter_root=root,
        sampling_params=_fake_sampling_params,
        lora_request=_fake_lora_request,
        **kw,
    )


def test_sampler_versions_adapters_and_prunes(tmp_path):
    llm = FakeLLM()
    s = _sampler(llm, tmp_path, keep_versions=2)
    with pytest.raises(RuntimeError, match="sync"):
        s.sample([ModelInput.from_ints([1, 2])], 2, SampleParams())

    def export(path):
        Path(path).mkdir()
        (Path(path) / "adapter_config.json").write_text("{}")
        return path

    for v in (1, 2, 3):
        req = s.sync(export)
        assert (req.lora_int_id, req.lora_name, req.lora_path) == (v, f"geospot-v{v}", str(tmp_path / f"v{v:06d}"))
        out = s.sample([ModelInput.from_ints([1, 2]), ModelInput.from_ints([3])], 2, SampleParams(max_tokens=5))
        assert llm.calls[-1].lora is req
        assert len(out) == 2 and all(len(g) == 2 for g in out)
        assert out[0][0] == SampledSequence((3, 4), (-1.0, -2.0), "stop")
    call = llm.calls[-1]
    assert call.prompts == [{"prompt_token_ids": [1, 2]}, {"prompt_token_ids": [3]}]
    assert call.params.kw["n"] == 2 and call.params.kw["max_tokens"] == 5 and call.params.kw["stop_token_ids"] == [5]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v000002", "v000003"]  # v1 pruned after v3 was served


def test_greedy_sampling_asks_vllm_once_and_copies(tmp_path):
    llm = FakeLLM()
    s = _sampler(llm, tmp_path)
    s.sync(lambda path: path)
    out = s.sample([ModelInput.from_ints([1]), ModelInput.from_ints([2])], 4, SampleParams(temperature=0.0))
    assert llm.calls[-1].params.kw["n"] == 1
    assert [len(g) for g in out] == [4, 4] and all(q == out[0][0] for q in out[0])


def test_sampler_rejects_wrong_sample_count(tmp_path):
    s = _sampler(FakeLLM(sample_fn=lambda p, n, kw: [([3], [-1.0], "stop")] * (n - 1)), tmp_path)
    s.sync(lambda path: path)
    with pytest.raises(RuntimeError, match="returned 1 samples"):
        s.sample([ModelInput.from_ints([1])], 2, SampleParams())


def _lora_b_norm(folder) -> float:
    from safetensors.torch import load_file

    w = load_file(str(Path(folder) / "adapter_model.safetensors"))
    return float(sum(v.float().norm() ** 2 for k, v in w.items() if "lora_B" in k) ** 0.5)


def _sft_datum(e):
    msgs = [
        prompts.user_message(_image(0), prompts.SINGLE_TURN_PROMPT),
        prompts.assistant_message(prompts.format_answer(12.5, -45.25)),
    ]
    full, w = e.renderer.supervised_example(msgs)
    from geospot.engines.datums import make_datum

    return make_datum(full, weights=w)


def test_engine_syncs_the_real_adapter_after_each_weight_change(tmp_path):
    inner = make_engine(
        EngineConfig(model_name="tiny:qwen2_5_vl", lora_rank=4, max_pixels=112 * 112, device="cpu", dtype="float32")
    )
    llm = FakeLLM()
    eng = VLLMSamplingEngine(
        inner, _sampler(llm, tmp_path / "lora", image_pad_id=inner.renderer.image_pad_id, keep_versions=10)
    )
    assert eng.renderer is inner.renderer and eng.step == 0  # delegated
    p = eng.renderer.generation_prompt([prompts.user_message(_image(0), prompts.SINGLE_TURN_PROMPT)])

    eng.sample([p], 2, SampleParams(max_tokens=4))
    v1 = Path(llm.calls[-1].lora.lora_path)
    cfg = json.loads((v1 / "adapter_config.json").read_text())
    assert cfg["r"] == 4 and cfg["peft_type"] == "LORA"
    assert _lora_b_norm(v1) == 0.0  # fresh LoRA: B = 0
    assert llm.calls[-1].prompts[0]["prompt_token_ids"].count(eng.renderer.image_pad_id) == 1

    eng.sample([p], 2, SampleParams(max_tokens=4))  # no weight change: same adapter, no export
    assert llm.calls[-1].lora.lora_int_id == 1 and len(list((tmp_path / "lora").iterdir())) == 1

    eng.forward_backward([_sft_datum(inner)], "cross_entropy")
    eng.optim_step(AdamParams(learning_rate=1e-2))
    eng.sample([p], 2, SampleParams(max_tokens=4))
    v2 = Path(llm.calls[-1].lora.lora_path)
    assert llm.calls[-1].lora.lora_int_id == 2 and v2 != v1
    assert _lora_b_norm(v2) > 0.0  # the trained weights, not a cached copy

    state = inner.save_state(str(tmp_path / "state"))
    eng.train_step([_sft_datum(inner)], "cross_entropy", AdamParams(learning_rate=1e-2))
    eng.sample([p], 1, SampleParams(max_tokens=4))
    assert llm.calls[-1].lora.lora_int_id == 3
    eng.load_state(state)
    eng.sample([p], 1, SampleParams(max_tokens=4))
    v4 = Path(llm.calls[-1].lora.lora_path)
    assert llm.calls[-1].lora.lora_int_id == 4 and _lora_b_norm(v4) == pytest.approx(_lora_b_norm(v2), rel=1e-6)
    with pytest.raises(ValueError, match="context"):  # the inner engine's input checks still apply
        eng.sample([ModelInput.from_ints([1] * (inner.max_context + 1))], 1, SampleParams())


# -- check_logprobs against a CPU emulation of vLLM -------------------------------------------------------


def _emulated_vllm(inner, temperature_logprobs=False):
    """A FakeLLM that does what vLLM does with our prompt: expands each single pad to the image's
    tokens (from the image it was given), then samples with the torch sampler. With
    temperature_logprobs it reports processed (temperature-scaled) logprobs instead of raw: the
    mistake `logprobs_mode=raw_logprobs` avoids, which check_logprobs must catch."""
    r = inner.renderer

    def to_model_input(p):
        imgs, chunks, run = iter(_images_of(p)), [], []
        for t in p["prompt_token_ids"]:
            if t == r.image_pad_id:
                if run:
                    chunks.append(TextChunk(tuple(run)))
                    run = []
                chunks.append(r.image_chunk(next(imgs)))
            else:
                run.append(t)
        if run:
            chunks.append(TextChunk(tuple(run)))
        return ModelInput(tuple(chunks))

    def sample_fn(p, n, kw):
        params = SampleParams(
            max_tokens=kw["max_tokens"],
            temperature=kw["temperature"],
            top_p=kw["top_p"],
            stop=tuple(kw["stop_token_ids"]),
            seed=kw["seed"],
        )
        seqs = inner.sample([to_model_input(p)], n, params)[0]
        out = []
        for s in seqs:
            lps = list(s.logprobs)
            if temperature_logprobs:  # rescore under softmax(logits / T): not what the trainer computes
                full = to_model_input(p).append_tokens(s.tokens)
                from geospot.engines.datums import make_datum

                lp_T = inner.forward([make_datum(full)])[0][-len(s.tokens) :]
                lps = [float(x) / kw["temperature"] for x in lp_T]  # a deliberate, visible distortion
            out.append((list(s.tokens), lps, s.stop_reason))
        return out

    def expand(p):
        return vllm_expand(p["prompt_token_ids"], _images_of(p), r.image_pad_id, inner.spatial_merge, r.image_processor)

    return FakeLLM(sample_fn=sample_fn, expand=expand)


@FAMILY
def test_check_logprobs_on_emulated_vllm(family, tmp_path):
    inner = _local(family)
    prompts_ = [
        inner.renderer.generation_prompt([prompts.user_message(_image(s), prompts.SINGLE_TURN_PROMPT)]) for s in (0, 1)
    ]
    eng = VLLMSamplingEngine(
        inner,
        VLLMSampler(
            _emulated_vllm(inner),
            image_pad_id=inner.renderer.image_pad_id,
            default_stop_ids=inner.renderer.stop_token_ids,
            vocab=inner.tokenizer.get_vocab(),
            adapter_root=tmp_path,
            sampling_params=_fake_sampling_params,
            lora_request=_fake_lora_request,
        ),
    )
    res = check_logprobs(eng, prompts_, num_samples=3, params=SampleParams(max_tokens=6, temperature=1.0, seed=0))
    assert res["prompts_match"] is True and res["sequences"] == 6 and res["tokens"] > 6
    assert res["max_abs_diff"] < 1e-4

    wrong = VLLMSamplingEngine(
        inner,
        VLLMSampler(
            _emulated_vllm(inner, temperature_logprobs=True),
            image_pad_id=inner.renderer.image_pad_id,
            default_stop_ids=inner.renderer.stop_token_ids,
            vocab=inner.tokenizer.get_vocab(),
            adapter_root=tmp_path / "w",
            sampling_params=_fake_sampling_params,
            lora_request=_fake_lora_request,
        ),
    )
    res = check_logprobs(wrong, prompts_, num_samples=2, params=SampleParams(max_tokens=6, temperature=0.5, seed=0))
    assert res["max_abs_diff"] > 0.1
