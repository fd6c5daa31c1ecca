import math

import pytest

from geospot.train.lr import learning_rate, lr_multiplier


def test_constant_is_flat_after_warmup():
    assert [lr_multiplier(s, 10, "constant") for s in (0, 5, 9)] == [1.0, 1.0, 1.0]


def test_linear_hand_worked():
    # total 4, no warmup: 1 - s/4
    assert [lr_multiplier(s, 4, "linear") for s in range(4)] == [1.0, 0.75, 0.5, 0.25]


def test_cosine_hand_worked():
    # total 4: 0.5 * (1 + cos(pi * s / 4))
    got = [lr_multiplier(s, 4, "cosine") for s in range(4)]
    want = [1.0, 0.5 * (1 + math.sqrt(0.5)), 0.5, 0.5 * (1 - math.sqrt(0.5))]
    assert got == pytest.approx(want)


def test_warmup_then_linear_decay():
    # warmup 2 of 6: 1/2, 2/2, then decay over 4 steps: 1, .75, .5, .25
    got = [lr_multiplier(s, 6, "linear", warmup_steps=2) for s in range(6)]
    assert got == pytest.approx([0.5, 1.0, 1.0, 0.75, 0.5, 0.25])


def test_min_ratio_floor_and_base_lr():
    # linear over 2 steps with floor 0.1: 0.1 + 0.9 * (1, 0.5)
    assert learning_rate(1, 2, 2e-3, "linear", min_ratio=0.1) == pytest.approx(2e-3 * 0.55)
    assert learning_rate(5, 2, 1.0, "cosine", min_ratio=0.1) == pytest.approx(0.1)  # past the end


def test_unknown_schedule_names_key():
    with pytest.raises(ValueError, match="lr_schedule='step'"):
        lr_multiplier(0, 10, "step")
