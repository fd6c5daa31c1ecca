"""SFT examples for the hierarchical and geohash envs: the chat an env would have with a
policy that always answers the truth, built from the envs' own prompts (so a warm start
learns exactly the format RL then grades).

Hierarchical: every label turn's target is the true label as the prompts show it (the
country's name, the region's / city's first comma part), and later turns are told the true
labels (teacher forcing: the targets are the truth anyway). A sample whose label is unknown
(no label in the data, nothing from the geocoder) has no target for that turn: it returns
None and the caller falls back to another style.

Geohash: every turn's target is the truth at its precision — coordinates with 0 / 1 / 2
decimals (2 / 4 / 6 characters), or the geohash itself with `answer="geohash"`; a later
turn is shown `shown(turn)` = the previous guess as the caller wants it faked (the SFT loop
moves the truth by a typical earlier-turn error, as for telescoping)."""

from __future__ import annotations

from collections.abc import Callable

from geospot.envs.geohash import DEFAULT_GEOHASH, GeohashSpec
from geospot.envs.hierarchical import COORDS, DEFAULT_HIERARCHY, HierarchySpec
from geospot.geo.geohash import encode
from geospot.geo.labels import display, truth_labels
from geospot.prompts import (
    PREVIOUS_GUESS_DECIMALS,
    assistant_message,
    format_answer,
    format_geohash,
    format_label,
    format_previous_guess,
    hierarchical_prompt,
    user_message,
)

# decimals of a coordinate target per geohash precision: about the cell size, no finer
DECIMALS_FOR_CHARS = {1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 6: 2, 7: 3, 8: 3}


def hierarchical_messages(sample, spec: HierarchySpec = DEFAULT_HIERARCHY, geocoder: Callable | None = None,
                          answer_decimals: int = 2) -> list[dict] | None:
    truth = truth_labels(sample.labels or {}, sample.lat, sample.lon, geocoder, spec.label_fields)
    if not all(display(f, truth[f]) for f in spec.label_fields):
        return None
    messages, known = [], []
    for t, field in enumerate(spec.turns):
        messages.append(user_message(sample.image if t == 0 else None, hierarchical_prompt(field, tuple(known))))
        if field == COORDS:
            messages.append(assistant_message(format_answer(sample.lat, sample.lon, answer_decimals)))
        else:
            label = display(field, truth[field])
            messages.append(assistant_message(format_label(field, label)))
            known.append(label)
    return messages


def geohash_messages(sample, spec: GeohashSpec = DEFAULT_GEOHASH,
                     shown: Callable[[int], tuple[float, float]] | None = None) -> list[dict]:
    """`shown(turn)` = the (lat, lon) turn `turn` is told was the previous guess (None = the truth)."""
    messages = []
    for t, chars in enumerate(spec.chars):
        prev = ""
        if t > 0:
            lat, lon = shown(t) if shown is not None else (sample.lat, sample.lon)
            if spec.answer == "geohash":
                prev = encode(lat, lon, spec.chars[t - 1])
            else:
                places = PREVIOUS_GUESS_DECIMALS[min(t - 1, len(PREVIOUS_GUESS_DECIMALS) - 1)]
                prev = format_previous_guess(lat, lon, places)
        messages.append(user_message(sample.image if t == 0 else None, spec.prompt(t, prev)))
        if spec.answer == "geohash":
            target = format_geohash(encode(sample.lat, sample.lon, chars))
        else:
            target = format_answer(sample.lat, sample.lon, DECIMALS_FOR_CHARS.get(chars, 4))
        messages.append(assistant_message(target))
    return messages
