"""make_datum shifts once; the losses match hand-worked numbers."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from geospot.engines import losses
from geospot.engines.datums import make_datum
from geospot.engines.types import ImageChunk, ModelInput, TextChunk


def test_make_datum_shifts_once():
    full = ModelInput.from_ints([10, 11, 12, 13])
    d = make_datum(full, weights=np.array([0, 0, 1, 1], np.float32))
    assert d.model_input.chunks == (TextChunk((10, 11, 12)),)
    assert d.loss_fn_inputs["target_tokens"].tolist() == [11, 12, 13]
    assert d.loss_fn_inputs["weights"].tolist() == [0, 1, 1]


def test_make_datum_zeroes_image_targets():
    img = ImageChunk(Image.new("RGB", (28, 28)), (1, 2, 2), 1)
    full = ModelInput((TextChunk((1, 2)), img, TextChunk((3, 4))))
    d = make_datum(full, advantages=np.ones(5, np.float32), logprobs=np.full(5, -1.0, np.float32))
    # targets: 2, <img>, 3, 4 -> the image target position carries nothing
    assert d.loss_fn_inputs["advantages"].tolist() == [1, 0, 1, 1]
    assert d.loss_fn_inputs["logprobs"].tolist() == [-1, 0, -1, -1]
    assert d.model_input.length == 4


def test_make_datum_rejects_misaligned():
    with pytest.raises(ValueError, match="weights has shape"):
        make_datum(ModelInput.from_ints([1, 2, 3]), weights=np.ones(2))


def test_cross_entropy_sum():
    lp = torch.tensor([-1.0, -2.0, -3.0])
    assert losses.cross_entropy(lp, torch.tensor([0.0, 1.0, 0.5])).item() == pytest.approx(3.5)


def test_importance_sampling_hand():
    lp = torch.tensor([math.log(0.5), math.log(0.2)])
    q = torch.tensor([math.log(0.25), math.log(0.2)])
    # ratios 2 and 1 -> -(2*1.5 + 1*(-1)) = -2
    assert losses.importance_sampling(lp, q, torch.tensor([1.5, -1.0])).item() == pytest.approx(-2.0)


def test_ppo_clipping_hand():
    lp = torch.tensor([1.0, 1.0, -1.0, 0.0])
    q = torch.zeros(4)
    A = torch.tensor([1.0, -1.0, -1.0, 2.0])
    # r = e, e, 1/e, 1
    # t0: A>0: min(e, 1.2)=1.2 ; t1: A<0: min(-e, -1.2) = -e ; t2: A<0: min(-1/e, -0.8) = -0.8 ; t3: 2
    expected = -(1.2 - math.e - 0.8 + 2.0)
    assert losses.ppo(lp, q, A).item() == pytest.approx(expected, rel=1e-6)
    # configurable thresholds: clip to 1.5
    expected2 = -(1.5 - math.e - 0.5 + 2.0)
    assert losses.ppo(lp, q, A, 0.5, 1.5).item() == pytest.approx(expected2, rel=1e-6)
    assert losses.compute_loss(
        "ppo", lp, {"logprobs": q, "advantages": A}, {"clip_high_threshold": 1.5, "clip_low_threshold": 0.5}
    ).item() == pytest.approx(expected2, rel=1e-6)


def test_ppo_gradient_zero_when_clipped():
    lp = torch.tensor([1.0], requires_grad=True)
    losses.ppo(lp, torch.zeros(1), torch.ones(1)).backward()
    assert lp.grad.item() == 0.0


def test_unknown_loss():
    with pytest.raises(ValueError, match="unknown loss_fn"):
        losses.compute_loss("dpo", torch.zeros(1), {})


def test_every_loss_declares_where_it_has_a_gradient():
    assert losses.GRAD_INPUT.keys() == losses.REQUIRED_INPUTS.keys()
    for loss_fn, key in losses.GRAD_INPUT.items():
        assert key is losses.ALL_POSITIONS or key in losses.REQUIRED_INPUTS[loss_fn]


@pytest.mark.parametrize("loss_fn", ["cross_entropy", "importance_sampling", "ppo"])
def test_gradient_is_exactly_zero_where_the_declared_input_is_zero(loss_fn):
    """What the trainer relies on to run the head without gradient there (target_head.py)."""
    rng = np.random.default_rng(0)
    gate = np.array([0.0, 1.3, 0.0, -0.7, 2.0, 0.0], np.float32)
    lp = torch.tensor(rng.normal(-2, 1, 6), dtype=torch.float32, requires_grad=True)
    # sampler logprobs near lp: ratios inside ppo's clip range, where its gradient is -r A (non-zero)
    q = (lp.detach().numpy() + rng.uniform(-0.1, 0.1, 6)).astype(np.float32)
    inputs = {"weights": gate, "advantages": gate, "logprobs": q}
    losses.compute_loss(loss_fn, lp, {k: torch.as_tensor(v) for k, v in inputs.items()}).backward()
    need = losses.grad_positions(loss_fn, inputs)
    assert need.tolist() == [False, True, False, True, True, False]
    assert torch.all(lp.grad[~torch.from_numpy(need)] == 0)
    assert torch.all(lp.grad[torch.from_numpy(need)] != 0)
