"""Moving a point a random distance in a random direction on the sphere."""

from __future__ import annotations

import math

import numpy as np

from geospot.geo.distance import EARTH_RADIUS_KM


def perturb(lat: float, lon: float, scale_km: float, rng: np.random.Generator) -> tuple[float, float]:
    """(lat, lon) moved a Rayleigh(scale_km)-distributed distance along a uniformly random
    bearing on the sphere (median distance ~1.18 x scale). Longitude wrapped to [-180, 180)."""
    d = scale_km * math.sqrt(-2.0 * math.log(1.0 - rng.random())) / EARTH_RADIUS_KM  # angular distance
    bearing = 2.0 * math.pi * rng.random()
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 180.0) % 360.0 - 180.0
