"""Verdicts from a noise band, with numbers worked by hand."""

import numpy as np
import pytest

from geospot.eval.verdict import (
    IMPROVED,
    NO_CHANGE,
    WORSE,
    judge,
    judge_delta,
    paired_bootstrap,
    seed_band,
)


def test_a_change_inside_the_band_is_noise_whatever_its_sign():
    assert judge_delta(+5, 50) == NO_CHANGE  # +5 against a 50-point band
    assert judge_delta(-5, 50) == NO_CHANGE
    assert judge_delta(+49, 50) == NO_CHANGE
    assert judge_delta(+51, 50) == IMPROVED
    assert judge_delta(-51, 50) == WORSE


def test_lower_is_better_flips_the_words():
    assert judge_delta(-300, 100, higher_is_better=False) == IMPROVED  # median km fell by 300 +- 100
    assert judge_delta(+300, 100, higher_is_better=False) == WORSE
    assert judge(-10, 10, higher_is_better=False) == NO_CHANGE


def test_an_interval_touching_zero_or_undefined_is_noise():
    assert judge(0.0, 12.0) == NO_CHANGE
    assert judge(float("nan"), 3.0) == NO_CHANGE
    assert judge(float("-inf"), float("inf")) == NO_CHANGE


def test_seed_band_needs_the_ranges_apart():
    # SFT seeds 2400..2500, GRPO 2550..2600: worst GRPO beats best SFT by 50 -> improved
    c = seed_band([2400, 2450, 2500], [2550, 2580, 2600])
    assert (c.lo, c.hi) == (50.0, 200.0) and c.verdict == IMPROVED
    assert c.delta == pytest.approx(2576.6667 - 2450, abs=1e-3)
    # one GRPO seed (2490) inside SFT's range -> overlap -> noise, though the mean rose by 60
    assert seed_band([2400, 2450, 2500], [2490, 2580, 2600]).verdict == NO_CHANGE
    assert seed_band([1000, 1100], [700, 800], higher_is_better=False).verdict == IMPROVED  # km
    with pytest.raises(ValueError, match="2 seeds"):
        seed_band([1.0], [2.0])


def test_paired_bootstrap_sees_a_shift_every_image_shares():
    # 100 images of very different difficulty; "after" = each image +30: the per-image spread
    # (0..3000) would hide +30 in an unpaired test, pairing cancels it -> a tight interval at 30.
    before = np.linspace(0, 3000, 100)
    c = paired_bootstrap(before, before + 30)
    assert c.delta == pytest.approx(30) and c.lo == pytest.approx(30) and c.hi == pytest.approx(30)
    assert c.verdict == IMPROVED
    assert paired_bootstrap(before, before - 30).verdict == WORSE


def test_paired_bootstrap_calls_a_coin_flip_noise():
    # half the images gain 100, half lose 100 (mean change 0): the interval straddles zero
    before = np.full(128, 2000.0)
    after = before + np.where(np.arange(128) % 2 == 0, 100.0, -100.0)
    c = paired_bootstrap(before, after)
    assert c.delta == 0 and c.lo < 0 < c.hi and c.verdict == NO_CHANGE
    # a single image that gains 5000 among 127 unchanged: mean +39, but one image is luck
    after = before.copy()
    after[0] += 5000
    c = paired_bootstrap(before, after)
    assert c.delta == pytest.approx(5000 / 128) and c.lo == 0 and c.verdict == NO_CHANGE


def test_paired_bootstrap_with_a_median_and_bad_shapes():
    before_km = np.array([100, 200, 300, 400, 500.0] * 10)
    c = paired_bootstrap(before_km, before_km / 2, np.median, higher_is_better=False)
    assert (c.before, c.after) == (300.0, 150.0) and c.verdict == IMPROVED
    with pytest.raises(ValueError, match="same length"):
        paired_bootstrap([1.0, 2.0], [1.0, 2.0, 3.0])
