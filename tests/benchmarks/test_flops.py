"""benchmarks/flops.py: the minimal-FLOP formula of a GRPO step, against torch's FlopCounterMode.

FlopCounterMode counts the matmuls torch executes (mm/addmm for linears, convolution for the
patch embedding, bmm for eager attention; taught addmm_, the in-place addmm the lean LoRA linears
use, which its registry lacks). Each check runs a computation that does exactly the
minimal work (the head only where needed, eager attention only where every pair is needed) and
compares the count with the formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from bench_scripts import load
from PIL import Image
from torch.utils.flop_counter import FlopCounterMode

from geospot.engines.config import EngineConfig
from geospot.engines.local import LocalEngine

flops = load("flops")

LINEAR_OPS = {"aten.mm", "aten.addmm", "aten.addmm_", "aten.convolution"}
ATTENTION_OPS = {"aten.bmm"}  # eager attention's QK^T and AV


def _addmm_inplace_flop(self_shape, a_shape, b_shape, *args, out_shape=None, **kwargs) -> int:
    """FlopCounterMode's count of addmm, for the in-place addmm_: 2 m k n (the add not counted)."""
    return 2 * a_shape[0] * a_shape[1] * b_shape[1]


def _counted(fn) -> dict[str, int]:
    """{"linear", "attention"} FLOPs torch executed in fn: attention = eager attention's bmm (a
    head applied to a strided slice also runs as bmm: that one is a linear)."""
    with FlopCounterMode(display=False, custom_mapping={torch.ops.aten.addmm_: _addmm_inplace_flop}) as fc:
        fn()
    by_module = {m: {str(k): v for k, v in ops.items()} for m, ops in fc.get_flop_counts().items()}
    counts = by_module["Global"]
    unknown = set(counts) - LINEAR_OPS - ATTENTION_OPS
    assert not unknown, f"ops the test does not classify: {unknown}"
    head_bmm = sum(ops.get("aten.bmm", 0) for m, ops in by_module.items() if m.endswith(".lm_head"))
    attention = counts.get("aten.bmm", 0) - head_bmm
    return {"linear": sum(counts.values()) - attention, "attention": attention}


def test_pairs_by_hand():
    assert flops.causal_pairs(4) == 10  # 1 + 2 + 3 + 4
    # prefix 3 causally (6); suffix of 2: 2 x 3 prefix keys + 1 + 2 (9); suffix of 1: 3 + 1 (4)
    assert flops.packed_pairs(3, [2, 1]) == 19
    # a 5 x 5 merged grid in 4 x 4 tiles: 4x4, 4x1, 1x4, 1x1
    assert flops.window_sizes(5, 5, 4) == [16, 4, 4, 1]
    assert sum(flops.window_sizes(16, 16, 4)) == 256


@pytest.fixture(scope="module", params=["qwen2_vl", "qwen2_5_vl", "qwen3_vl"])
def engine(request):
    e = LocalEngine(EngineConfig(model_name=f"tiny:{request.param}:tiny", lora_rank=8, max_pixels=448 * 448))
    e.model.get_base_model().set_attn_implementation("eager")  # attention as bmm: FlopCounterMode sees it
    return e


def test_vision_tower_matches_flop_counter(engine):
    s = flops.model_shapes(engine.model)
    inner = engine.model.get_base_model().model
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (448, 392, 3), dtype=np.uint8))
    pv, grid = engine.image_processor([engine.image_processor.resize(image)])  # a grid with edge windows
    with torch.no_grad():
        got = _counted(lambda: inner.visual(pv, grid_thw=grid))
    assert got == flops.vision_flops(s, tuple(grid[0].tolist()))


def test_prefill_and_decode_match_flop_counter(engine):
    """Two rows each (FlopCounterMode does not count matrix-vector products, which a single
    row's head or decode step becomes)."""
    s = flops.model_shapes(engine.model)
    base = engine.model.get_base_model()
    P = 37
    ids = torch.randint(20, 300, (2, P + 1))
    with torch.no_grad():
        # prefill, logits at the last position only; eager attention runs dense P x P, the formula
        # counts the causal pairs: the linears must agree exactly
        got = _counted(lambda: base(input_ids=ids[:, :P], use_cache=True, logits_to_keep=1))
        assert got["linear"] == 2 * flops.prefill_flops(s, P)["linear"]
        out = base(input_ids=ids[:, :P], use_cache=True, logits_to_keep=1)
        # one decode step: every key is needed, so attention agrees too
        got = _counted(lambda: base(input_ids=ids[:, P:], past_key_values=out.past_key_values, use_cache=True))
    assert got == {k: 2 * v for k, v in flops.decode_flops(s, P, completion=2).items()}


def test_training_matches_flop_counter(engine):
    """Forward + backward with a frozen base and LoRA, the head at H positions: the linears equal
    the formula (input gradients only for frozen weights); eager attention's backward is twice its
    forward (checked over the dense pairs eager computes)."""
    s = flops.model_shapes(engine.model)
    base = engine.model.get_base_model()
    N, H = 29, 11
    ids = torch.randint(20, 300, (1, N))
    where = torch.arange(N - H, N)

    def step():
        hidden = base.model.language_model(input_ids=ids, use_cache=False).last_hidden_state
        logits = base.lm_head(hidden[0, where])
        torch.log_softmax(logits, -1)[torch.arange(H), ids[0, where]].sum().backward()

    got = _counted(step)
    f = flops.train_flops(s, N, [], head_positions=H)
    assert got["linear"] == f["forward_linear"] + f["backward_linear"]
    dense = 4 * s.attn_dim * s.layers * N * N
    assert got["attention"] == 3 * dense  # forward 1x, backward 2x
    assert f["backward_attention"] == 2 * f["forward_attention"]
    engine.model.zero_grad(set_to_none=True)
    assert s.lora > 0 and s.lora_first_a > 0 and s.lm_first_qkv > 0  # the frozen-input refinements are live


def test_grpo_step_sums_the_phases(engine):
    s = flops.model_shapes(engine.model)
    f = flops.grpo_step_flops(s, [(1, 32, 32), (1, 32, 32)], prompt=300, group=8, completion=24)
    assert f["step"] == f["vision"] + f["prefill"] + f["decode"] + f["train"]
    assert f["vision"] == 2 * sum(flops.vision_flops(s, (1, 32, 32)).values())
    # decode: 23 fed tokens per rollout, 16 rollouts
    assert f["decode"] == 16 * sum(flops.decode_flops(s, 300, 24).values())


def test_matmul_peak_reports_a_positive_rate():
    peak = flops.matmul_peak(shapes=((64, 64, 64),), repeats=2)
    assert peak["gflops"] > 0 and peak["by_shape"]["64x64x64"] == peak["gflops"]
