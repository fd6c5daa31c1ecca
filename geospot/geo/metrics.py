"""One metrics table from predictions and truth: the numbers every eval and `geospot score` print.

Unparsed predictions (NaN) are misses: infinite distance, GeoGuessr score 0, no threshold
hit, no label hit. So the mean distance is inf as soon as one answer is unparsed, and the
median is inf once more than half are: honest, and the `parsed` column says why.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from geospot.geo.distance import haversine_km
from geospot.geo.geocode import GeoLabels, reverse_geocode
from geospot.geo.scores import THRESHOLDS_KM, accuracy_at, geoguessr_score

Geocoder = Callable[[np.ndarray, np.ndarray], Sequence[GeoLabels]]

METRIC_KEYS: tuple[str, ...] = (
    "n", "parsed", "median_km", "mean_km", "geoscore",
    *(f"acc_{t}km" for t in THRESHOLDS_KM),
    "country_acc", "region_acc", "city_acc",
)
UNPARSED_NOTE = "unparsed answers count as misses: infinite distance, score 0, no hit at any level"


def compute_metrics(pred_lat, pred_lon, true_lat, true_lon, *, geocoder: Geocoder | None = reverse_geocode,
                    true_labels: Sequence[GeoLabels] | None = None) -> dict:
    """n, parsed (fraction), median_km, mean_km, geoscore (mean GeoGuessr score),
    acc_{1,25,200,750,2500}km (strict <), country_acc / region_acc / city_acc.

    `geocoder(lats, lons) -> list[GeoLabels]` labels both predictions and truth (the OSV-5M
    way); pass `true_labels` to give the truth's labels instead. `geocoder=None` skips the
    label accuracies (NaN). With n = 0 every rate is NaN."""
    p_lat, p_lon, t_lat, t_lon = (
        np.asarray(x, dtype=np.float64).reshape(-1) for x in (pred_lat, pred_lon, true_lat, true_lon)
    )
    n = p_lat.size
    if not (p_lon.size == t_lat.size == t_lon.size == n):
        raise ValueError(f"compute_metrics: lengths differ (pred_lat {n}, pred_lon {p_lon.size}, "
                         f"true_lat {t_lat.size}, true_lon {t_lon.size})")
    if not (np.isfinite(t_lat).all() and np.isfinite(t_lon).all()):
        bad = int(np.flatnonzero(~(np.isfinite(t_lat) & np.isfinite(t_lon)))[0])
        raise ValueError(f"compute_metrics: ground truth #{bad} is not a finite coordinate "
                         f"({t_lat[bad]}, {t_lon[bad]}); fix or drop that sample")
    if true_labels is not None and len(true_labels) != n:
        raise ValueError(f"compute_metrics: {len(true_labels)} true_labels for {n} samples")

    parsed = np.isfinite(p_lat) & np.isfinite(p_lon)
    d = np.full(n, np.inf)
    if parsed.any():
        d[parsed] = haversine_km(p_lat[parsed], p_lon[parsed], t_lat[parsed], t_lon[parsed])
    nan = float("nan")
    out: dict = {"n": int(n), "parsed": float(parsed.mean()) if n else nan}
    out["median_km"] = float(np.median(d)) if n else nan
    out["mean_km"] = float(d.mean()) if n else nan
    out["geoscore"] = float(geoguessr_score(d).mean()) if n else nan
    for t in THRESHOLDS_KM:
        out[f"acc_{t}km"] = accuracy_at(d, t)

    if geocoder is None or n == 0:
        out.update(country_acc=nan, region_acc=nan, city_acc=nan)
        return out
    truth = list(true_labels) if true_labels is not None else list(geocoder(t_lat, t_lon))
    guess: list[GeoLabels | None] = [None] * n
    idx = np.flatnonzero(parsed)
    if idx.size:
        for i, labels in zip(idx.tolist(), geocoder(p_lat[idx], p_lon[idx])):
            guess[i] = labels
    for level in ("country", "region", "city"):
        hits = sum(1 for g, t in zip(guess, truth) if g is not None and getattr(g, level) == getattr(t, level))
        out[f"{level}_acc"] = hits / n
    return out


_COLUMNS = (  # (key, header, format)
    ("n", "n", "{:d}"),
    ("parsed", "parsed", "{:.1%}"),
    ("median_km", "median km", "{:.1f}"),
    ("mean_km", "mean km", "{:.1f}"),
    ("geoscore", "GeoScore", "{:.0f}"),
    *((f"acc_{t}km", f"@{t}km", "{:.1%}") for t in THRESHOLDS_KM),
    ("country_acc", "country", "{:.1%}"),
    ("region_acc", "region", "{:.1%}"),
    ("city_acc", "city", "{:.1%}"),
)


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if math.isinf(value):
            return "inf"
    return fmt.format(value)


def format_metrics_table(rows: dict[str, dict]) -> str:
    """An aligned text table, one row per model / stage, plus a footnote on unparsed answers
    and on '-' (not computed)."""
    header = ["", *(h for _, h, _ in _COLUMNS)]
    body = [[name, *(_cell(m.get(k), f) for k, _, f in _COLUMNS)] for name, m in rows.items()]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    rule = "-" * len(line(header))
    notes = [f"* {UNPARSED_NOTE}.", "* '-' = not computed (no geocoder or no samples); accuracies use strict '<'."]
    return "\n".join([line(header), rule, *(line(r) for r in body), *notes])
