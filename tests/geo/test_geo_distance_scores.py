"""Distances, scores, thresholds: hand-worked numbers."""

import math

import numpy as np
import pytest

from geospot.geo import EARTH_RADIUS_KM, THRESHOLDS_KM, accuracy_at, geoguessr_score, haversine_km, kernel_reward

PARIS, LONDON = (48.8566, 2.3522), (51.5074, -0.1278)


def test_paris_london():
    # Δφ = 2.6508°, Δλ = -2.48°: a = sin²(1.3254°) + cos 48.8566° cos 51.5074° sin²(1.24°)
    #   = 5.3505e-4 + 0.65835 · 0.62251 · 4.6836e-4 = 7.2700e-4 ; d = 2R asin(√a) = 343.56 km
    d = haversine_km(*PARIS, *LONDON)
    assert isinstance(d, float)
    assert d == pytest.approx(343.56, abs=0.05)
    assert haversine_km(*LONDON, *PARIS) == pytest.approx(d, rel=1e-12)


def test_quarter_and_half_circumference():
    quarter = math.pi * EARTH_RADIUS_KM / 2  # 10007.557 km
    assert haversine_km(0.0, 0.0, 0.0, 90.0) == pytest.approx(quarter, rel=1e-12)
    assert haversine_km(0.0, 0.0, 90.0, 0.0) == pytest.approx(quarter, rel=1e-12)
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(2 * quarter, rel=1e-12)  # antipodes
    assert haversine_km(90.0, 0.0, -90.0, 77.0) == pytest.approx(2 * quarter, rel=1e-12)
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    # one degree of longitude at the equator = 2πR/360 = 111.195 km; the dateline wraps
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(111.1951, abs=1e-3)


def test_vectorised_matches_scalar_and_broadcasts():
    rng = np.random.default_rng(0)
    lat1, lat2 = rng.uniform(-90, 90, (2, 50_000))
    lon1, lon2 = rng.uniform(-180, 180, (2, 50_000))
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert d.shape == (50_000,) and d.dtype == np.float64
    idx = rng.integers(0, 50_000, 200)
    expected = [haversine_km(float(lat1[i]), float(lon1[i]), float(lat2[i]), float(lon2[i])) for i in idx]
    np.testing.assert_allclose(d[idx], expected, rtol=1e-10, atol=1e-9)
    grid = haversine_km(np.zeros((3, 1)), np.zeros((3, 1)), np.array([0.0, 1.0]), 0.0)  # (3,1) x (2,)
    assert grid.shape == (3, 2)
    np.testing.assert_allclose(grid[:, 1], 2 * math.pi * EARTH_RADIUS_KM / 360)
    # small distances stay precise (no cancellation): 1e-6° of latitude = 0.1112 m
    assert haversine_km(np.array([45.0]), 7.0, 45.000001, 7.0)[0] == pytest.approx(1.111951e-4, rel=1e-6)


def test_nan_propagates():
    assert math.isnan(haversine_km(float("nan"), 0.0, 0.0, 0.0))
    d = haversine_km(np.array([np.nan, 0.0]), 0.0, 0.0, 1.0)
    assert math.isnan(d[0]) and d[1] > 0


def test_geoguessr_score():
    assert geoguessr_score(0.0) == 5000.0
    assert geoguessr_score(1492.7) == pytest.approx(5000 / math.e)  # 1839.40
    assert geoguessr_score(2000.0, scale=2000.0) == pytest.approx(5000 / math.e)  # the seed's scale
    np.testing.assert_allclose(geoguessr_score(np.array([0.0, np.inf, np.nan])), [5000.0, 0.0, 0.0])
    with pytest.raises(ValueError, match="scale"):
        geoguessr_score(1.0, scale=0.0)


def test_kernel_reward():
    assert kernel_reward(0.0, 25.0) == 1.0
    assert kernel_reward(25.0, 25.0) == pytest.approx(math.exp(-1))
    assert kernel_reward(50.0, 25.0) == pytest.approx(math.exp(-2))  # 0.1353
    np.testing.assert_allclose(kernel_reward(np.array([2000.0, np.inf]), 2000.0), [math.exp(-1), 0.0])
    with pytest.raises(ValueError, match="tau_km"):
        kernel_reward(1.0, 0.0)


def test_thresholds_are_strict():
    assert THRESHOLDS_KM == (1, 25, 200, 750, 2500)
    d = np.array([0.5, 1.0, 24.99, 25.0, np.inf, np.nan])
    assert accuracy_at(d, 1) == pytest.approx(1 / 6)  # exactly 1 km is not a street-level hit
    assert accuracy_at(d, 25) == pytest.approx(3 / 6)
    assert accuracy_at(d, 2500) == pytest.approx(4 / 6)  # inf and NaN are misses
    assert math.isnan(accuracy_at([], 25))
