"""What a distance is worth: the GeoGuessr score, the reward kernel and the accuracy thresholds."""

from __future__ import annotations

import numpy as np

# 5000·exp(-d/1492.7): the constant PIGEON and OSV-5M use, so our GeoScore is comparable to
# their tables. The seed project used 2000 km (a softer curve); pass scale=2000 to reproduce it.
GEOGUESSR_SCALE_KM = 1492.7
GEOGUESSR_MAX = 5000.0

# street, city, region, country, continent. Strict `<` (as OSV-5M): a guess exactly 25 km off
# is not a city-level hit.
THRESHOLDS_KM: tuple[int, ...] = (1, 25, 200, 750, 2500)


def geoguessr_score(d_km, scale: float = GEOGUESSR_SCALE_KM):
    """5000·exp(-d/scale). Scalars -> float, arrays -> array. NaN or inf distance (no guess) -> 0."""
    if not scale > 0:
        raise ValueError(f"geoguessr_score scale={scale} must be > 0 km")
    return GEOGUESSR_MAX * kernel_reward(d_km, scale)


def kernel_reward(d_km, tau_km: float):
    """exp(-d/τ) in [0, 1]: the single-turn RL reward; τ is the distance scale being graded.
    Scalars -> float, arrays -> array. NaN or inf distance -> 0."""
    if not tau_km > 0:
        raise ValueError(f"kernel_reward tau_km={tau_km} must be > 0 km")
    d = np.asarray(d_km, dtype=np.float64)
    r = np.exp(-d / tau_km)
    r = np.where(np.isnan(r), 0.0, r)
    return float(r) if r.ndim == 0 else r


def accuracy_at(d_km, threshold_km: float) -> float:
    """Fraction of distances strictly below the threshold (NaN/inf count as misses)."""
    d = np.asarray(d_km, dtype=np.float64)
    if d.size == 0:
        return float("nan")
    with np.errstate(invalid="ignore"):
        return float(np.mean(d < threshold_km))
