"""The names a table's id and coordinate columns go by, in every reader (data sources, `geospot
score`): matched in any case, the first that a table holds wins (OSV-5M writes latitude/longitude,
IM2GPS3K and YFCC4K LAT/LON/IMG_ID, many exports lat/lng or lat/long)."""

from __future__ import annotations

LAT_KEYS = ("lat", "latitude")
LON_KEYS = ("lon", "lng", "long", "longitude")
ID_KEYS = ("id", "img_id", "image_id")


def find_column(names: list[str], candidates: tuple[str, ...]) -> str | None:
    """The first of `candidates` that `names` holds, in any case, as `names` spells it."""
    lower = {n.lower(): n for n in names}
    return next((lower[c] for c in candidates if c in lower), None)


def matching_columns(names: list[str], candidates: tuple[str, ...]) -> list[str]:
    """Every one of `candidates` that `names` holds, in any case, as `names` spells them: a table with
    two (lat and latitude) cannot say which one is meant."""
    return [n for n in names if n.lower() in candidates]
