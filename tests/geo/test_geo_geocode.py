"""Reverse geocoding the OSV-5M way."""

import csv
import io
import subprocess
import sys
from contextlib import redirect_stdout

import numpy as np

from geospot.geo import UNKNOWN, GeoLabels, reverse_geocode
from geospot.geo.geocode import reverse_geocode_km


def test_known_places(geocoder):
    paris, london, nan = geocoder([48.8566, 51.5074, np.nan], [2.3522, -0.1278, 0.0])
    assert paris == GeoLabels("FR", "Ile-de-France, FR", "Paris, Paris, Ile-de-France, FR")
    assert london.country == "GB" and london.region == "England, GB" and london.city.startswith("London, ")
    assert nan == UNKNOWN
    assert geocoder([], []) == []


def test_nearest_in_degree_space_like_osv5m(geocoder):
    """The label is the GeoNames place nearest in raw (lat, lon) degrees (cKDTree on degrees,
    as reverse_geocoder mode 1 does): check against a brute-force search over its table."""
    import reverse_geocoder as rg

    with redirect_stdout(io.StringIO()):
        table = rg.RGeocoder(mode=1, verbose=False).locations
    coords = np.array([(float(r["lat"]), float(r["lon"])) for r in table])
    rng = np.random.default_rng(1)
    lats, lons = rng.uniform(-50, 60, 20), rng.uniform(-120, 140, 20)
    got = geocoder(lats, lons)
    for lat, lon, labels in zip(lats, lons, got):
        r = table[int(np.argmin((coords[:, 0] - lat) ** 2 + (coords[:, 1] - lon) ** 2))]
        assert labels == GeoLabels(
            r["cc"], f"{r['admin1']}, {r['cc']}", f"{r['name']}, {r['admin2']}, {r['admin1']}, {r['cc']}"
        )


def test_distance_to_the_labelled_place(geocoder):
    """The km to the place the label names: Paris's centre is ~0 km from GeoNames' Paris; a
    point on the Antarctic ice gets a label (the nearest in degree space) thousands of km away."""
    (paris, ice, nan), km = reverse_geocode_km([48.8566, -75.0, np.nan], [2.3522, 10.8, 0.0])
    assert paris.city.startswith("Paris") and km[0] < 5
    assert ice != UNKNOWN and km[1] > 1000
    assert nan == UNKNOWN and np.isnan(km[2])
    assert [paris, ice, nan] == geocoder([48.8566, -75.0, np.nan], [2.3522, 10.8, 0.0])
    labels, km = reverse_geocode_km([], [])
    assert labels == [] and km.shape == (0,)


def test_labels_of_shared_samples(geocoder, osv5m_labels):
    rows = list(csv.DictReader(open(osv5m_labels)))
    got = geocoder([float(r["latitude"]) for r in rows], [float(r["longitude"]) for r in rows])
    assert [g.country for g in got] == [r["country"] for r in rows]
    assert [g.region for g in got] == [f"{r['region']}, {r['country']}" for r in rows]


def test_loading_keeps_stdout_clean(geocoder):
    """reverse_geocoder prints while it loads; in a fresh process nothing may reach stdout
    (`geospot score --json` output must stay one JSON line)."""
    code = "from geospot.geo import reverse_geocode; reverse_geocode([48.85], [2.35])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout == ""


def test_length_mismatch_is_an_error(geocoder):
    import pytest

    with pytest.raises(ValueError, match="latitudes"):
        reverse_geocode([1.0, 2.0], [1.0])
