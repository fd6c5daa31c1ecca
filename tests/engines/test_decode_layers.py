"""decode_layers.py: the decode step's layers as tensor operations on their weights sample the same
tokens with the same logprobs as the layer modules, for the three families, with LoRA and full
fine-tuning, fp32 and bf16, shared-prefix or repeated cache; and it steps aside for what it
does not reproduce."""

from __future__ import annotations

import pytest
import torch

from geospot import prompts
from geospot.engines import decode_layers, lean_lora
from geospot.engines.types import SampleParams
from tests.engines.engine_helpers import random_image, sample_with_switch, tiny_engine


def _engine(family, **kw):
    """A tiny engine whose LoRA adapters do something: PEFT starts B at zero, where a wrong
    LoRA term would go unseen."""
    e = tiny_engine(family, **kw)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in e.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.05)
    return e


def _prompts(e):
    ps = [e.renderer.generation_prompt([prompts.user_message(random_image(i, size), prompts.SINGLE_TURN_PROMPT)])
          for i, size in enumerate(((112, 112), (168, 112)))]
    assert ps[0].length != ps[1].length  # left padding in the prefill
    return ps


def _assert_same(out, tol):
    for ga, gb in zip(out[True], out[False]):
        for a, b in zip(ga, gb):
            assert a.tokens == b.tokens and a.stop_reason == b.stop_reason
            assert max(abs(x - y) for x, y in zip(a.logprobs, b.logprobs)) <= tol


def _ran_functional(e, ps, monkeypatch) -> bool:
    """Whether sampling (with the switch on) went through decode_layers.run."""
    calls = []
    run = decode_layers.run
    monkeypatch.setattr(decode_layers, "run", lambda *a, **k: calls.append(1) or run(*a, **k))
    e.sample(ps[:1], 1, SampleParams(max_tokens=3, seed=0))
    monkeypatch.setattr(decode_layers, "run", run)
    assert e.sampler.lean.plans is None  # released after the call
    return len(calls) > 0


@pytest.mark.parametrize("family", ["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
@pytest.mark.parametrize("shared_prefix_decode", [True, False])
def test_functional_decode_equals_the_layer_modules(family, shared_prefix_decode, monkeypatch):
    """LoRA, padded prompts, rows stopping at different steps (dropped from the batch)."""
    e = _engine(family)
    e.shared_prefix_decode = shared_prefix_decode
    ps = _prompts(e)
    first = e.sample(ps, 3, SampleParams(max_tokens=8, seed=5))
    params = SampleParams(max_tokens=8, seed=5, stop=(first[0][0].tokens[2], first[1][1].tokens[4]))
    out = sample_with_switch(e, "functional_decode", ps, 3, params)
    assert len({len(s.tokens) for g in out[True] for s in g}) > 1  # rows did finish at different steps
    _assert_same(out, 1e-5)
    assert _ran_functional(e, ps, monkeypatch)


@pytest.mark.parametrize("kw, tol", [(dict(lora_rank=0), 1e-5),  # full fine-tuning: plain linears
                                     # PEFT's fp32 adapters under a bf16 base, as on a GPU: its casts
                                     (dict(dtype="bfloat16"), 1e-6),
                                     (dict(dtype="bfloat16", lora_rank=0), 1e-6)])
def test_functional_decode_equals_the_layer_modules_full_ft_and_bf16(kw, tol, monkeypatch):
    e = _engine("qwen2_5_vl", **kw)
    ps = _prompts(e)
    _assert_same(sample_with_switch(e, "functional_decode", ps, 3, SampleParams(max_tokens=6, seed=1)), tol)
    assert _ran_functional(e, ps, monkeypatch)


def test_plan_steps_aside_for_what_it_does_not_reproduce():
    e = _engine("qwen3_vl")
    lm = e.model.get_base_model().model.language_model
    assert decode_layers.plan(lm) is not None
    with e.model.disable_adapter():  # the base model alone: PEFT's forward knows, the plan must not guess
        assert decode_layers.plan(lm) is None
    lean_lora.uninstall(e.model)  # PEFT's own forward on the linears
    assert decode_layers.plan(lm) is None
    lean_lora.install(e.model)
    handle = lm.layers[1].mlp.register_forward_hook(lambda *a: None)  # a hook must still run
    assert decode_layers.plan(lm) is None
    handle.remove()
    plans = decode_layers.plan(lm)
    assert plans is not None and len(plans) == len(lm.layers)
    q = lm.layers[0].self_attn.q_proj
    # a view of the live weight, not a copy: an optimizer step between sample() calls is seen
    assert plans[0].qkv.lins[0].Wt.data_ptr() == q.base_layer.weight.data_ptr()


def test_rotary_by_roll_is_rotate_half():
    """rotate_half(x) * sin == roll(x, d/2) * [-sin_1, sin_2], bit for bit."""
    torch.manual_seed(0)
    x, sin = torch.randn(5, 3, 8), torch.randn(5, 1, 8)
    rotate_half = torch.cat([-x[..., 4:], x[..., :4]], dim=-1)
    signed = torch.cat([-sin[..., :4], sin[..., 4:]], dim=-1)
    assert torch.equal(rotate_half * sin, x.roll(4, dims=-1) * signed)
