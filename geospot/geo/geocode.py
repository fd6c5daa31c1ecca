"""Offline reverse geocoding, computed the way OSV-5M computes its hierarchical accuracy.

OSV-5M labels a coordinate with the `reverse_geocoder` package: the nearest GeoNames
"cities1000" place (every place with more than 1000 inhabitants; GeoNames, CC-BY 4.0) found by
a single-process K-D tree (mode 1) over raw (lat, lon) degrees, and compares labels exactly:
  country = cc,  region = admin1 + cc,  city = name + admin2 + admin1 + cc.
Ground truth and prediction go through the same function, so the numbers are comparable to
published OSV-5M tables. (Nearest in *degree* space, not on the sphere: that is their
definition, kept on purpose, quirks near the poles and the dateline included.)

We load the package's own data and tree once, lazily (its loader prints to stdout: we
redirect that), then precompute one GeoLabels per place, so a batch lookup is one vectorised
tree query plus a list index: several 100k points/s on one core.
"""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from geospot.geo.distance import haversine_km


class GeoLabels(NamedTuple):
    country: str  # ISO-2 code, e.g. "FR"
    region: str  # "admin1, cc", e.g. "Ile-de-France, FR"
    city: str  # "name, admin2, admin1, cc" (empty parts kept so the match stays exact)


UNKNOWN = GeoLabels("", "", "")  # for non-finite coordinates (no guess): matches no real place

_lock = threading.Lock()
_state: tuple | None = None  # (tree, labels list, float64 [N, 2] place coordinates)


def _labels_of(row: dict) -> GeoLabels:
    cc, admin1, admin2, name = row["cc"], row["admin1"], row["admin2"], row["name"]
    return GeoLabels(cc, f"{admin1}, {cc}", f"{name}, {admin2}, {admin1}, {cc}")


def _load() -> tuple:
    global _state
    with _lock:
        if _state is None:
            try:
                import reverse_geocoder as rg
            except ImportError as e:  # pragma: no cover - it is a core dependency
                raise ImportError(
                    "reverse geocoding needs the `reverse_geocoder` package: pip install reverse_geocoder"
                ) from e
            with contextlib.redirect_stdout(io.StringIO()):  # "Loading formatted geocoded file..."
                geocoder = rg.RGeocoder(mode=1, verbose=False)
            coords = np.array([(float(r["lat"]), float(r["lon"])) for r in geocoder.locations], dtype=np.float64)
            _state = (geocoder.tree, [_labels_of(row) for row in geocoder.locations], coords)
    return _state


def reverse_geocode(lats: Sequence[float] | np.ndarray, lons: Sequence[float] | np.ndarray) -> list[GeoLabels]:
    """GeoLabels of the nearest GeoNames place for each (lat, lon) in degrees.
    Non-finite coordinates (unparsed guesses) get UNKNOWN."""
    return reverse_geocode_km(lats, lons)[0]


def reverse_geocode_km(lats: Sequence[float] | np.ndarray,
                       lons: Sequence[float] | np.ndarray) -> tuple[list[GeoLabels], np.ndarray]:
    """reverse_geocode's labels, and the great-circle km from each point to the place they name
    (NaN for non-finite points). The nearest place is the label whatever its distance — a guess
    in the Southern Ocean is labelled with a coastal town thousands of km away, which is OSV-5M's
    definition for the metrics; the distance is what tells a reader that no place is near."""
    lat = np.asarray(lats, dtype=np.float64).reshape(-1)
    lon = np.asarray(lons, dtype=np.float64).reshape(-1)
    if lat.shape != lon.shape:
        raise ValueError(f"reverse_geocode: {lat.size} latitudes but {lon.size} longitudes")
    km = np.full(lat.size, np.nan)
    if lat.size == 0:
        return [], km
    tree, labels, coords = _load()
    ok = np.isfinite(lat) & np.isfinite(lon)
    out = [UNKNOWN] * lat.size
    if ok.any():
        idx = _nearest(tree, lat[ok], lon[ok])
        km[ok] = haversine_km(lat[ok], lon[ok], coords[idx, 0], coords[idx, 1])
        for pos, i in zip(np.flatnonzero(ok).tolist(), idx.tolist()):
            out[pos] = labels[i]
    return out, km


def _nearest(tree, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
    """Index of the nearest place per point. Large batches are queried in 2°-cell order:
    neighbouring queries then walk the same tree nodes while they are still in cache (~1.5x);
    each query's answer is unchanged, we only undo the permutation."""
    points = np.column_stack((lat, lon))
    if lat.size < 4096:
        return tree.query(points, k=1)[1]
    cell = np.floor((lat + 90.0) * 0.5) * 1000.0 + np.floor((lon + 180.0) * 0.5)
    order = np.argsort(cell, kind="stable")
    idx = np.empty(lat.size, dtype=np.intp)
    idx[order] = tree.query(points[order], k=1)[1]
    return idx
