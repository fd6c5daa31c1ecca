"""Place labels (country / region / city) as the hierarchical env grades them.

A label answer is right when, after normalising both sides (accents dropped, case folded,
punctuation to spaces), one of its forms equals one of the truth's forms. The forms of a
label are the whole text and its first comma part — so the reverse geocoder's
`"Ile-de-France, FR"` (region = "admin1, cc") and `"Paris, Paris, Ile-de-France, FR"` (city)
accept "Ile-de-France" and "Paris" — and, for a country, its ISO-2 code, name and aliases
(`countries.tsv`: "FR" = "France"; "US" = "USA" = "United States of America"). Nothing fuzzier
on purpose: a substring rule would let "a" match every label with an "a" in it.

Where the truth comes from: the sample's own labels when present (OSV-5M's columns, the
unified shards' json, the synthetic world's names), else the geocoder's labels of the true
coordinates (`geospot.geo.reverse_geocode`, OSV-5M's way)."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from geospot.geo.geocode import GeoLabels

LABEL_FIELDS = ("country", "region", "city")
_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalize(text: str) -> str:
    """'Île-de-France, FR.' -> 'ile de france fr'."""
    plain = unicodedata.normalize("NFKD", str(text)).encode("ascii", "ignore").decode("ascii")
    return _NON_WORD.sub(" ", plain.casefold()).strip()


@functools.lru_cache(maxsize=1)
def _countries() -> tuple[dict[str, str], dict[str, str]]:
    """(code -> name, normalised name/alias/code -> code) from countries.tsv."""
    names, lookup = {}, {}
    for line in (Path(__file__).with_name("countries.tsv")).read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        code, name, aliases = (line.split("\t") + [""])[:3]
        names[code] = name
        for form in (code, name, *[a for a in aliases.split("|") if a]):
            lookup.setdefault(normalize(form), code)
    return names, lookup


def country_code(text: str) -> str | None:
    """The ISO-2 code of a country code, name or alias; None if unknown."""
    return _countries()[1].get(normalize(text))


def country_name(code_or_name: str) -> str:
    """A country's English name for prompts ('FR' -> 'France'); unknown text comes back as is."""
    code = country_code(code_or_name)
    return _countries()[0][code] if code else str(code_or_name).strip()


def forms(field: str, label: str) -> frozenset[str]:
    """Every normalised form a right answer for this label may take (see the module doc)."""
    whole, head = normalize(label), normalize(str(label).split(",")[0])
    if not head:  # "" or the geocoder's ", FR" for a place without an admin1: no answer can be right
        return frozenset()
    out = {whole, head}
    if field == "country":
        for f in list(out):
            code = _countries()[1].get(f)
            if code is not None:
                out |= {normalize(code), normalize(_countries()[0][code])}
    return frozenset(out)


def label_matches(field: str, answer: str | None, truth: str) -> bool:
    """Whether an answer names the true label (case-insensitive, through the aliases above)."""
    if not answer:
        return False
    return bool(forms(field, answer) & forms(field, truth))


def display(field: str, label: str) -> str:
    """How a label reads in a prompt: the country's name, the first comma part of a region / city."""
    if field == "country":
        return country_name(label)
    return str(label).split(",")[0].strip() or str(label).strip()


def truth_labels(labels: Mapping[str, str], lat: float, lon: float,
                 geocoder: Callable[[Sequence[float], Sequence[float]], list[GeoLabels]] | None,
                 fields: Sequence[str] = LABEL_FIELDS) -> dict[str, str]:
    """The true label of each field: the sample's own when present, else the geocoder's of
    (lat, lon) (called at most once, only if a field is missing); "" when neither has it."""
    out = {f: str(labels.get(f, "") or "").strip() for f in fields}
    missing = [f for f in fields if not out[f]]
    if missing and geocoder is not None:
        found = geocoder([lat], [lon])[0]
        for f in missing:
            out[f] = str(getattr(found, f, "") or "")
    return out
