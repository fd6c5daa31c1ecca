"""Which reverse geocoder labels guesses and truth for country/region/city accuracy."""

from __future__ import annotations

from collections.abc import Callable

from geospot.data.spec import build_source, parse_spec
from geospot.geo.geocode import reverse_geocode


def geocoder_for(data_spec: str, kind: str = "auto") -> Callable | None:
    """The callable compute_metrics uses for country/region/city accuracy: a synthetic
    world's own names for a synthetic spec (reverse geocoding knows nothing of them), else
    offline reverse geocoding (the OSV-5M way, as `geospot score` does). kind: auto|reverse|none."""
    if kind == "none":
        return None
    if kind == "auto":
        parts = parse_spec(data_spec)
        if parts and all(p.kind == "synthetic" for p in parts):
            worlds = {id(w): w for w in (build_source(p).world for p in parts)}
            if len(worlds) == 1:
                return next(iter(worlds.values())).geocoder
    return reverse_geocode
