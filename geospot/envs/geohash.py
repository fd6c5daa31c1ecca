"""Geohash curriculum (the original project's GeohashCurriculumEnv): three turns, each graded
by how many characters of the truth's geohash the guess shares at the turn's precision
(2 / 4 / 6 characters by default):

    r_t = w_t * (shared_t / chars_t + bonus * [d_t < d_{t-1}])

with weights 0.2 / 0.3 / 0.5 and bonus 0.1 (never on the first turn). A turn answers
coordinates (graded through their geohash) or, with `answer="geohash"`, a geohash string
(graded as is, its distance measured from the cell's centre); either form is accepted in
both modes. An unparseable turn earns the format penalty and ends the episode.

Turn t+1 is shown the previous guess (1 decimal, then 2; or the previous geohash) — the
policy's own, or with probability `teacher_forcing` the truth at that precision."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from geospot.data.types import Sample
from geospot.engines.types import ModelInput
from geospot.envs.single_turn import first_observation
from geospot.envs.types import StepResult
from geospot.geo import haversine_km, parse_coordinates
from geospot.geo.geohash import common_prefix_len, decode, encode
from geospot.geo.parse_labels import parse_geohash
from geospot.prompts import (
    GEOHASH_CELL_PROMPTS,
    GEOHASH_PROMPTS,
    PREVIOUS_GUESS_DECIMALS,
    format_previous_guess,
    user_message,
)

NaN = math.nan


@dataclass(frozen=True)
class GeohashSpec:
    chars: tuple[int, ...] = (2, 4, 6)
    weights: tuple[float, ...] = (0.2, 0.3, 0.5)
    bonus: float = 0.1
    teacher_forcing: float = 0.0
    answer: Literal["coordinates", "geohash"] = "coordinates"
    format_penalty: float = -0.1

    def __post_init__(self) -> None:
        if not 1 <= len(self.chars) <= len(GEOHASH_PROMPTS) or len(self.weights) != len(self.chars):
            raise ValueError(f"GeohashSpec: 1..{len(GEOHASH_PROMPTS)} turns with one weight each "
                             f"(got chars {self.chars}, weights {self.weights})")

    def prompt(self, turn: int, prev: str = "") -> str:
        table = GEOHASH_CELL_PROMPTS if self.answer == "geohash" else GEOHASH_PROMPTS
        return table[turn].format(prev=prev, chars=self.chars[turn])


DEFAULT_GEOHASH = GeohashSpec()  # frozen: safe to share as a default


def read_guess(text: str) -> tuple[float, float] | None:
    """Coordinates, else the centre of a geohash's cell, else None."""
    ll = parse_coordinates(text)
    if ll is not None:
        return float(ll[0]), float(ll[1])
    cell = parse_geohash(text)
    return (decode(cell).lat, decode(cell).lon) if cell else None


class GeohashEnv:
    def __init__(self, sample: Sample, renderer, spec: GeohashSpec = DEFAULT_GEOHASH, *,
                 rng: random.Random | None = None, initial: ModelInput | None = None) -> None:
        self.sample, self.renderer, self.spec = sample, renderer, spec
        # a photo without a known place (predict) has no truth cell: every turn shares 0 characters
        known = math.isfinite(sample.lat) and math.isfinite(sample.lon)
        self.truth_hash = encode(sample.lat, sample.lon, max(spec.chars)) if known else ""
        self.rng = rng if rng is not None else random.Random(0)
        self.turn = 0
        self.prev_km: float | None = None
        self.prev_guess: tuple[float, float] | None = None
        self._initial = initial
        self._obs: ModelInput | None = None
        self._done = False

    def initial_observation(self) -> ModelInput:
        if self._initial is None:
            self._initial = first_observation(self.renderer, self.sample, self.spec.prompt(0))
        self._obs = self._initial
        return self._obs

    def _shown(self, guess: tuple[float, float]) -> tuple[str, float]:
        """(the previous guess as the next prompt shows it, 1.0 if that was the truth)."""
        forced = self.rng.random() < self.spec.teacher_forcing
        lat, lon = (self.sample.lat, self.sample.lon) if forced else guess
        if self.spec.answer == "geohash":
            return encode(lat, lon, self.spec.chars[self.turn - 1]), float(forced)
        places = PREVIOUS_GUESS_DECIMALS[min(self.turn - 1, len(PREVIOUS_GUESS_DECIMALS) - 1)]
        return format_previous_guess(lat, lon, places), float(forced)

    def step(self, action_tokens: Sequence[int]) -> StepResult:
        if self._done or self._obs is None:
            raise RuntimeError("GeohashEnv: call initial_observation() first; envs are single use")
        n, weight = self.spec.chars[self.turn], self.spec.weights[self.turn]
        guess = read_guess(self.renderer.decode(list(action_tokens)))
        metrics: dict[str, float] = {"turn": float(self.turn), "parsed": float(guess is not None)}
        if guess is None:
            reward, d = self.spec.format_penalty, NaN
            metrics.update({"distance_km": NaN, "lat": NaN, "lon": NaN})
        else:
            d = float(haversine_km(guess[0], guess[1], self.sample.lat, self.sample.lon))
            shared = common_prefix_len(encode(guess[0], guess[1], n), self.truth_hash[:n])
            improved = self.prev_km is not None and d < self.prev_km
            score = shared / n + (self.spec.bonus if improved else 0.0)
            reward = weight * score
            metrics.update({"distance_km": d, "lat": guess[0], "lon": guess[1], "score": score,
                            "geohash_shared": float(shared), "improved": float(improved)})
        self.turn += 1
        self._done = guess is None or self.turn >= len(self.spec.chars)
        if self._done:
            return StepResult(reward=float(reward), done=True, next_observation=None, metrics=metrics)
        self.prev_km, self.prev_guess = d, guess
        shown, forced = self._shown(guess)
        metrics["next_teacher_forced"] = forced
        follow = user_message(None, self.spec.prompt(self.turn, shown))
        self._obs = self.renderer.continuation(self._obs, list(action_tokens), [follow])
        return StepResult(reward=float(reward), done=False, next_observation=self._obs, metrics=metrics)


@dataclass(frozen=True, eq=False)
class GeohashGroupBuilder:
    sample: Sample
    renderer: object
    spec: GeohashSpec = DEFAULT_GEOHASH
    seed: int = 0

    def make_envs(self, group_size: int) -> list[GeohashEnv]:
        initial = first_observation(self.renderer, self.sample, self.spec.prompt(0))
        return [GeohashEnv(self.sample, self.renderer, self.spec, initial=initial,
                           rng=random.Random(f"{self.seed}:{self.sample.id}:{g}")) for g in range(group_size)]
