"""compute_metrics and the table, with hand-worked numbers."""

import math

import numpy as np
import pytest

from geospot.geo import METRIC_KEYS, GeoLabels, compute_metrics, format_metrics_table


def fake_geocoder(lats, lons):
    """Country = hemisphere of the latitude, region = 10° band, city = 1° cell: easy to reason about."""
    return [
        GeoLabels("N" if la >= 0 else "S", f"{int(la // 10)}", f"{int(la // 1)},{int(lo // 1)}")
        for la, lo in zip(lats, lons)
    ]


def test_hand_worked():
    # truth: four points on the equator at lon 0. predictions: exact, 0.5° east (55.6 km),
    # 10° east (1111.95 km), unparsed.
    true_lat, true_lon = [0.0] * 4, [0.0] * 4
    pred_lat, pred_lon = [0.0, 0.0, 0.0, np.nan], [0.0, 0.5, 10.0, np.nan]
    m = compute_metrics(pred_lat, pred_lon, true_lat, true_lon, geocoder=fake_geocoder)
    assert list(m) == list(METRIC_KEYS)
    deg = 2 * math.pi * 6371.0088 / 360  # 111.195 km
    assert m["n"] == 4 and m["parsed"] == 0.75
    assert m["median_km"] == pytest.approx((0.5 * deg + 10 * deg) / 2)  # middle two of 0, 55.6, 1112, inf
    assert m["mean_km"] == math.inf  # an unparsed answer is an infinite miss
    assert m["geoscore"] == pytest.approx(
        (5000 + 5000 * math.exp(-0.5 * deg / 1492.7) + 5000 * math.exp(-10 * deg / 1492.7) + 0) / 4
    )
    assert (m["acc_1km"], m["acc_25km"], m["acc_200km"],
            m["acc_750km"], m["acc_2500km"]) == (0.25, 0.25, 0.5, 0.5, 0.75)
    assert m["country_acc"] == 0.75  # unparsed is a miss at every level
    assert m["region_acc"] == 0.75
    assert m["city_acc"] == 0.5  # (0, 0.5) is the same 1° cell as (0, 0); (0, 10) is not


def test_true_labels_and_no_geocoder():
    m = compute_metrics([10.0], [10.0], [10.0], [10.0], geocoder=fake_geocoder, true_labels=[GeoLabels("N", "x", "y")])
    assert (m["country_acc"], m["region_acc"], m["city_acc"]) == (1.0, 0.0, 0.0)
    m = compute_metrics([10.0], [10.0], [10.0], [10.0], geocoder=None)
    assert math.isnan(m["country_acc"]) and m["acc_1km"] == 1.0
    empty = compute_metrics([], [], [], [], geocoder=None)
    assert empty["n"] == 0 and math.isnan(empty["median_km"])


def test_bad_input():
    with pytest.raises(ValueError, match="lengths differ"):
        compute_metrics([1.0], [1.0, 2.0], [1.0], [1.0], geocoder=None)
    with pytest.raises(ValueError, match="ground truth #1"):
        compute_metrics([1.0, 1.0], [1.0, 1.0], [1.0, np.nan], [1.0, 1.0], geocoder=None)


def test_default_geocoder_is_osv5m(geocoder):
    # Paris guessed for Versailles (17 km): same country and region, different city
    m = compute_metrics([48.8566], [2.3522], [48.8049], [2.1204])
    assert (m["country_acc"], m["region_acc"], m["city_acc"]) == (1.0, 1.0, 0.0)
    assert m["acc_1km"] == 0.0 and m["acc_25km"] == 1.0


def test_table():
    a = compute_metrics([0.0, np.nan], [0.0, np.nan], [0.0, 0.0], [0.0, 0.0], geocoder=None)
    b = compute_metrics([0.0], [0.0], [0.0], [0.0], geocoder=fake_geocoder)
    text = format_metrics_table({"base": a, "after-rl": b})
    lines = text.splitlines()
    assert lines[0].split()[:3] == ["n", "parsed", "median"]
    assert len({len(lines[0]), len(lines[2]), len(lines[3])}) == 1  # aligned
    assert lines[2].split()[:5] == ["base", "2", "50.0%", "inf", "inf"]
    assert lines[3].split()[-3:] == ["100.0%"] * 3
    assert "unparsed answers count as misses" in text
