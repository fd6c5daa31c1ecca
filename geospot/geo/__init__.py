"""Geo core: distance, scores & thresholds, τ schedules, answer parsing, reverse geocoding,
metrics. Pure, vectorised, and importable without loading anything heavy (the reverse
geocoder's data is read lazily on first use)."""

from geospot.geo.distance import EARTH_RADIUS_KM, haversine_km, haversine_scalar_km
from geospot.geo.geocode import UNKNOWN, GeoLabels, reverse_geocode
from geospot.geo.metrics import METRIC_KEYS, UNPARSED_NOTE, compute_metrics, format_metrics_table
from geospot.geo.parse import LatLon, parse_coordinates
from geospot.geo.schedules import (
    ConstantTau,
    CosineTau,
    FollowErrorTau,
    GeometricTau,
    LinearTau,
    TauSchedule,
    make_tau_schedule,
)
from geospot.geo.scores import GEOGUESSR_SCALE_KM, THRESHOLDS_KM, accuracy_at, geoguessr_score, kernel_reward

__all__ = [
    "EARTH_RADIUS_KM", "haversine_km", "haversine_scalar_km",
    "GEOGUESSR_SCALE_KM", "THRESHOLDS_KM", "accuracy_at", "geoguessr_score", "kernel_reward",
    "TauSchedule", "ConstantTau", "LinearTau", "GeometricTau", "CosineTau", "FollowErrorTau", "make_tau_schedule",
    "LatLon", "parse_coordinates",
    "GeoLabels", "UNKNOWN", "reverse_geocode",
    "METRIC_KEYS", "UNPARSED_NOTE", "compute_metrics", "format_metrics_table",
]
