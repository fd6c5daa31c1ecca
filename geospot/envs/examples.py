"""SFT examples for every env: the chat an env would have with a policy that always answers the
truth, built from the envs' own prompts (so a warm start learns exactly the format RL then
grades). envs/kinds.py picks the one of each env type.

Single-turn and telescoping: below (`telescoping_messages` says why a later turn is shown a
noisy earlier guess, not the truth).

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

from collections.abc import Callable, Sequence

import numpy as np

from geospot.envs.geohash import DEFAULT_GEOHASH, GeohashSpec
from geospot.envs.hierarchical import COORDS, DEFAULT_HIERARCHY, HierarchySpec
from geospot.envs.telescoping import turn_images, turn_prompt
from geospot.geo.geohash import encode
from geospot.geo.labels import display, truth_labels
from geospot.geo.perturb import perturb
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


def single_turn_messages(sample, prompt: str, decimals: int) -> list[dict]:
    return [user_message(sample.image, prompt), assistant_message(format_answer(sample.lat, sample.lon, decimals))]


def telescoping_messages(sample, texts: Sequence[str], turn_decimals: Sequence[int], noise_km: Sequence[float] = (),
                         rng: np.random.Generator | None = None, zoom: int = 1,
                         max_pixels: int | None = None) -> list[dict]:
    """Coarse -> refine -> final: every turn's target is the truth at its turn's precision,
    and every turn after the first sees a previous guess exactly as the telescoping env
    shows it (its own `turn_prompt` of `texts`). One sequence, so every turn's answer is trained given
    the turns before it — what the telescoping env samples.

    The shown previous guess is NOT the previous target: it is the truth moved
    `noise_km[t-1]` (typical distance, a Rayleigh draw in a random direction) away. Shown
    the (rounded) truth, a model learns that the answer is "copy the previous guess" and at
    inference repeats its first turn forever; shown a guess that is off by about as much
    as a real earlier turn (large for the coarse guess, smaller for the refine one), it has
    to combine the image with the guess. Measured on the tiny CPU model (demo world, 160
    held-out images, greedy): the copy is gone and the final turn lands 1-7 % closer than
    the first (the gain shrinks as the first turn gets better); sampled turns do not improve.
    noise 0 (or no rng) shows the truth, the old behaviour. `zoom`: the photos each turn sees, as
    the env shows them (envs/telescoping.py: a thumbnail first, the full photo on turn 2), the
    thumbnail relative to the engine's `max_pixels` as the env's renderer has it."""
    messages: list[dict] = []
    prev: tuple[float, float] | None = None
    views = turn_images(sample.image, zoom, len(turn_decimals), max_pixels)
    for t, dec in enumerate(turn_decimals):
        text = turn_prompt(texts, t, prev)
        messages.append(user_message(views[t], text))
        messages.append(assistant_message(format_answer(sample.lat, sample.lon, dec)))
        scale = float(noise_km[t]) if t < len(noise_km) else 0.0
        lat, lon = sample.lat, sample.lon
        if scale > 0 and rng is not None:
            lat, lon = perturb(sample.lat, sample.lon, scale, rng)
        prev = (round(lat, dec), round(lon, dec))
    return messages


def noisy_truth(sample, noise_km: Sequence[float], rng: np.random.Generator | None
                ) -> Callable[[int], tuple[float, float]]:
    """shown(turn) = the truth moved by noise_km[turn - 1] (the last value for later turns), as
    `telescoping_messages` shows an earlier guess; the truth itself without noise or rng."""
    def shown(turn: int) -> tuple[float, float]:
        scale = float(noise_km[min(turn - 1, len(noise_km) - 1)]) if len(noise_km) else 0.0
        if scale > 0 and rng is not None:
            return perturb(sample.lat, sample.lon, scale, rng)
        return sample.lat, sample.lon

    return shown


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
