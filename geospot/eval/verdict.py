"""Did a metric move beyond noise? Verdicts from a noise band, never from the sign of a difference.

Two ways to get the band, both for a change `after - before` of one metric:

  * `paired_bootstrap(before_N, after_N, stat)`: one run, the same N held-out images scored
    before and after. Resampling the *images* (the same draw for both arms) gives a 95 %
    interval of the change; what every image shares (its difficulty) cancels, which is what
    makes a 128-image eval able to tell a real change from the luck of the draw.
  * `seed_band(before_S, after_S)`: several runs (seeds). The change counts only when the
    ranges do not overlap (the worst seed of one arm beats the best of the other).

`judge(lo, hi, higher_is_better)` turns an interval of the change into one of three words:
"improved" or "worse" only when the whole interval lies on one side of zero, else
"no change beyond noise". A +5 change with a ±50 band is noise, whatever its sign.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

IMPROVED, NO_CHANGE, WORSE = "improved", "no change beyond noise", "worse"


def judge(lo: float, hi: float, higher_is_better: bool = True) -> str:
    """The word for a change whose noise interval is [lo, hi] (a NaN bound: no verdict but noise)."""
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo > hi:
        return NO_CHANGE
    if lo > 0:
        return IMPROVED if higher_is_better else WORSE
    if hi < 0:
        return WORSE if higher_is_better else IMPROVED
    return NO_CHANGE


def judge_delta(delta: float, band: float, higher_is_better: bool = True) -> str:
    """`delta ± band` (band = the half-width of the noise band, >= 0)."""
    return judge(delta - abs(band), delta + abs(band), higher_is_better)


@dataclass(frozen=True)
class Change:
    """A metric before and after, the change's 95 % interval and its verdict."""

    before: float
    after: float
    lo: float
    hi: float
    verdict: str

    @property
    def delta(self) -> float:
        return self.after - self.before


def paired_bootstrap(before_N, after_N, stat: Callable = np.mean, *, higher_is_better: bool = True,
                     n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> Change:
    """Change of `stat` over N paired per-image values (image i scored before and after).

    `stat` maps an (..., N) array to (...) along the last axis (np.mean, np.median, ...).
    Non-finite values are kept (a miss stays a miss); pass finite stand-ins if `stat`
    cannot take them."""
    b_N, a_N = np.asarray(before_N, dtype=float), np.asarray(after_N, dtype=float)
    if b_N.shape != a_N.shape or b_N.ndim != 1 or len(b_N) < 2:
        raise ValueError(f"paired_bootstrap needs two 1-D arrays of the same length >= 2, "
                         f"got {b_N.shape} and {a_N.shape}")
    idx_BN = np.random.default_rng(seed).integers(0, len(b_N), size=(n_boot, len(b_N)))
    diff_B = stat(a_N[idx_BN], axis=-1) - stat(b_N[idx_BN], axis=-1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(diff_B, [tail, 100 - tail])
    return Change(float(stat(b_N)), float(stat(a_N)), float(lo), float(hi), judge(lo, hi, higher_is_better))


def seed_band(before_S, after_S, *, higher_is_better: bool = True) -> Change:
    """Change of the seed means, judged by the seed ranges: beyond noise only when the ranges
    do not overlap. The interval is [min(after) - max(before), max(after) - min(before)]."""
    b_S, a_S = np.asarray(before_S, dtype=float), np.asarray(after_S, dtype=float)
    if b_S.size < 2 or a_S.size < 2:  # one value has no spread: any difference would pass as a change
        raise ValueError(f"seed_band needs >= 2 seeds per arm to measure a spread, got {b_S.size} and {a_S.size}")
    lo, hi = float(a_S.min() - b_S.max()), float(a_S.max() - b_S.min())
    return Change(float(b_S.mean()), float(a_S.mean()), lo, hi, judge(lo, hi, higher_is_better))
