"""Great-circle distance on a spherical Earth (haversine).

R = 6371.0088 km, the IUGG mean Earth radius R1 = (2a + b) / 3 of WGS84. A sphere of this
radius has the smallest mean error against the ellipsoid over all point pairs (~0.3 %), and it
is the value geopy / scikit-learn-style haversines and most geolocation papers quote as "the
mean radius". The 8.8 m above the round 6371 km changes a 20 000 km distance by ~28 m: far
below any geolocation error we report, but we fix one constant so numbers are reproducible.

`haversine_km` takes scalars or arrays (broadcast like NumPy). Large arrays are processed in
cache-sized chunks with preallocated buffers and in-place ufuncs (no full-size temporaries),
with sin² from a polynomial instead of np.sin: ~20 M pairs/s on one core, several times the
textbook NumPy expression (benchmarks/geo.py measures both).
"""

from __future__ import annotations

import math

import numpy as np

EARTH_RADIUS_KM = 6371.0088
_DEG = math.pi / 180.0
_CHUNK = 1 << 15  # 32k float64 = 256 KiB per array: the ~2 MiB working set stays in L2, and
# ~45 ufunc calls per chunk keep the per-call overhead under 2 ns per pair


def haversine_scalar_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """One pair, pure Python (math module). NaN in -> NaN out."""
    s_dlat = math.sin((lat2 - lat1) * (_DEG / 2))
    s_dlon = math.sin((lon2 - lon1) * (_DEG / 2))
    a = s_dlat * s_dlat + math.cos(lat1 * _DEG) * math.cos(lat2 * _DEG) * s_dlon * s_dlon
    # min(): rounding can push `a` a hair above 1 for antipodal points; asin would fail.
    return 2.0 * EARTH_RADIUS_KM * math.asin(math.sqrt(min(a, 1.0)))


# sin(y) = y·Σ_k (-1)^k y^2k / (2k+1)!  for |y| <= π/2: 11 Taylor terms reach double precision
# (the first omitted term is (π/2)^23/23! ≈ 1e-18). Two cheap ufuncs per term beat NumPy's
# float64 np.sin (~15 ns/element, not vectorised in NumPy 2) by 2x, and sin is most of the cost.
_SIN_TAYLOR = tuple((-1) ** k / math.factorial(2 * k + 1) for k in range(11))


def _sin_sq_into(y, acc) -> None:
    """acc = sin²(y) elementwise; `y` is clobbered. sin² has period π, so y is first reduced
    to [-π/2, π/2] (a few ulps of error for the |y| <= π we see from valid coordinates)."""
    np.multiply(y, 1.0 / math.pi, out=acc)
    np.rint(acc, out=acc)
    acc *= math.pi
    y -= acc
    np.square(y, out=y)  # y²
    acc.fill(_SIN_TAYLOR[-1])
    for c in _SIN_TAYLOR[-2::-1]:
        acc *= y
        acc += c
    np.square(acc, out=acc)
    acc *= y  # (sin y / y)² · y² = sin² y


def _haversine_into(lat1, lon1, lat2, lon2, out, t1, t2, t3) -> None:
    """Contiguous float64 1-D inputs of equal length -> `out`; t1..t3 are scratch buffers.

    a = sin²(Δφ/2) + cos φ1 cos φ2 sin²(Δλ/2), and cos φ1 cos φ2 = 1 - sin²(Δφ/2) - sin²(Σφ/2),
    so three sin² evaluations and no cosines. All terms are non-negative: nothing cancels."""
    np.subtract(lat2, lat1, out=t1)
    t1 *= _DEG / 2
    _sin_sq_into(t1, t2)  # t2 = s = sin²(Δφ/2)
    np.add(lat2, lat1, out=out)
    out *= _DEG / 2
    _sin_sq_into(out, t1)  # t1 = q = sin²(Σφ/2)
    np.subtract(1.0, t1, out=t1)
    t1 -= t2  # t1 = cos φ1 cos φ2
    np.subtract(lon2, lon1, out=out)
    out *= _DEG / 2
    _sin_sq_into(out, t3)  # t3 = w = sin²(Δλ/2)
    t1 *= t3
    t1 += t2  # a
    np.clip(t1, 0.0, 1.0, out=t1)  # rounding can leave a a hair outside [0, 1]
    np.sqrt(t1, out=t1)
    np.arcsin(t1, out=out)
    out *= 2.0 * EARTH_RADIUS_KM


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between (lat1, lon1) and (lat2, lon2), degrees.

    Scalars in -> Python float out; arrays in -> float64 array of the broadcast shape.
    NaN anywhere in a pair gives NaN for that pair (callers treat it as "no guess")."""
    if all(isinstance(x, (int, float)) for x in (lat1, lon1, lat2, lon2)):
        return haversine_scalar_km(float(lat1), float(lon1), float(lat2), float(lon2))
    arrays = np.broadcast_arrays(*(np.asarray(x, dtype=np.float64) for x in (lat1, lon1, lat2, lon2)))
    shape = arrays[0].shape
    if not shape:
        return haversine_scalar_km(*(float(a) for a in arrays))
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    n = flat[0].size
    out = np.empty(n, dtype=np.float64)
    size = min(n, _CHUNK)
    t1, t2, t3 = np.empty(size), np.empty(size), np.empty(size)
    for i in range(0, n, _CHUNK):
        j = min(i + _CHUNK, n)
        m = j - i
        _haversine_into(*(a[i:j] for a in flat), out[i:j], t1[:m], t2[:m], t3[:m])
    return out.reshape(shape)
