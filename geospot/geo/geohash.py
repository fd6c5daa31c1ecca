"""Geohash: a point as a string of base-32 characters, each one a finer cell.

The bits interleave longitude and latitude (longitude first), each bit halving the cell's
interval; 5 bits make one character of the alphabet below (no a, i, l, o). Precision ->
cell size at the equator: 1 ~ 5000 km, 2 ~ 1250 x 625 km, 4 ~ 39 x 20 km, 5 ~ 4.9 km,
6 ~ 1.2 x 0.6 km. Two points sharing a k-character prefix lie in the same k-cell (the
converse fails at cell borders: neighbours across a border can share nothing).

Pure Python on purpose: one point per call is what the envs need, and it is tested against
known cells (Wikipedia's `ezs42`, `u4pruydqqvj`)."""

from __future__ import annotations

import math
from typing import NamedTuple

ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
MAX_PRECISION = 12  # 60 bits: sub-centimetre; more would outrun a float's mantissa
# the width of a cell per precision at the equator (odd lengths are square, even ones half as tall)
CELL_SIZE = {1: "5000 km", 2: "1250 km", 3: "156 km", 4: "40 km", 5: "5 km", 6: "1.2 km", 7: "150 m", 8: "38 m",
             9: "5 m", 10: "1.2 m", 11: "15 cm", 12: "4 cm"}


class Cell(NamedTuple):
    lat: float  # centre
    lon: float
    lat_err: float  # half the cell's height / width, degrees
    lon_err: float


def encode(lat: float, lon: float, precision: int = 6) -> str:
    """The geohash of (lat, lon) with `precision` characters. Raises ValueError on
    non-finite or out-of-range coordinates or a precision outside 1..12."""
    if not 1 <= int(precision) <= MAX_PRECISION:
        raise ValueError(f"geohash precision={precision} must be in 1..{MAX_PRECISION}")
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        raise ValueError(f"geohash of ({lat}, {lon}): need -90 <= lat <= 90 and -180 <= lon <= 180")
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    out, value, bits, even = [], 0, 0, True
    while len(out) < precision:
        if even:  # longitude bit
            mid = (lon_lo + lon_hi) / 2
            bit = lon >= mid
            lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
        else:
            mid = (lat_lo + lat_hi) / 2
            bit = lat >= mid
            lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
        value, bits, even = (value << 1) | int(bit), bits + 1, not even
        if bits == 5:
            out.append(ALPHABET[value])
            value, bits = 0, 0
    return "".join(out)


def is_geohash(text: str) -> bool:
    """True for a non-empty string of geohash characters (any case), at most 12 long."""
    return 0 < len(text) <= MAX_PRECISION and all(c in _INDEX for c in text.lower())


def decode(geohash: str) -> Cell:
    """The cell of a geohash: its centre and half-extents. Case-insensitive; raises
    ValueError naming the first bad character."""
    if not is_geohash(geohash):
        bad = next((c for c in geohash.lower() if c not in _INDEX), None)
        why = f"character {bad!r} is not in {ALPHABET!r}" if bad else f"length must be 1..{MAX_PRECISION}"
        raise ValueError(f"not a geohash: {geohash!r} ({why})")
    lat_lo, lat_hi, lon_lo, lon_hi = -90.0, 90.0, -180.0, 180.0
    even = True
    for c in geohash.lower():
        value = _INDEX[c]
        for shift in range(4, -1, -1):
            bit = (value >> shift) & 1
            if even:
                mid = (lon_lo + lon_hi) / 2
                lon_lo, lon_hi = (mid, lon_hi) if bit else (lon_lo, mid)
            else:
                mid = (lat_lo + lat_hi) / 2
                lat_lo, lat_hi = (mid, lat_hi) if bit else (lat_lo, mid)
            even = not even
    return Cell((lat_lo + lat_hi) / 2, (lon_lo + lon_hi) / 2, (lat_hi - lat_lo) / 2, (lon_hi - lon_lo) / 2)


def common_prefix_len(a: str, b: str) -> int:
    """How many leading characters two geohashes share (case-insensitive)."""
    n = 0
    for x, y in zip(a.lower(), b.lower()):
        if x != y:
            break
        n += 1
    return n


def shared_cells(lat1: float, lon1: float, lat2: float, lon2: float, precision: int) -> int:
    """Common prefix length of the two points' `precision`-character geohashes (0..precision)."""
    return common_prefix_len(encode(lat1, lon1, precision), encode(lat2, lon2, precision))
