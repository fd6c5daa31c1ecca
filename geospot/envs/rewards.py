"""What a guess is worth: small reward objects the envs are given (never a mode string).

A reward maps a guess to a score in [0, 1], given its distance in km to the truth (computed
once by the env) and, for rewards that look at more than the distance (`MixedReward`'s
geohash cells), the guess and the truth themselves. Unparseable answers never reach it:
the env charges its format penalty instead. The τ-kernel is rebuilt each step with the
schedule's current τ (`KernelReward(tau_km=schedule.tau(step))`), so an env only ever sees a
plain function of distance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from geospot.geo.geohash import MAX_PRECISION, shared_cells
from geospot.geo.scores import GEOGUESSR_MAX, GEOGUESSR_SCALE_KM, geoguessr_score

LatLon = tuple[float, float]


class Reward(Protocol):
    def __call__(self, distance_km: float, guess: LatLon | None = None, truth: LatLon | None = None) -> float: ...


@dataclass(frozen=True)
class KernelReward:
    """exp(-d/τ): τ sets the distance scale the policy is graded at (τ near the current
    median error gives the most signal; τ far below it makes every reward ~0)."""

    tau_km: float

    def __post_init__(self) -> None:
        if not self.tau_km > 0:
            raise ValueError(f"KernelReward.tau_km={self.tau_km} must be > 0 km")

    def __call__(self, distance_km: float, guess: LatLon | None = None, truth: LatLon | None = None) -> float:
        return math.exp(-float(distance_km) / self.tau_km)


@dataclass(frozen=True)
class GeoScoreReward:
    """The GeoGuessr score / 5000 = exp(-d/1492.7 km): a fixed, continent-scale kernel."""

    scale_km: float = GEOGUESSR_SCALE_KM

    def __call__(self, distance_km: float, guess: LatLon | None = None, truth: LatLon | None = None) -> float:
        return float(geoguessr_score(float(distance_km), scale=self.scale_km)) / GEOGUESSR_MAX


@dataclass(frozen=True)
class MixedReward:
    """The original project's single-step reward:

        (w_d * D(d) + w_g * shared / precision) / (w_d + w_g)

    with D a distance reward (the τ-kernel by default: 0.7 * exp(-d/τ) + 0.3 * prefix/5) and
    `shared` the common prefix length of the guess's and the truth's `precision`-character
    geohashes: a cell-level signal that still pays when exp(-d/τ) has gone flat. It needs the
    guess and the truth; called with a distance alone it raises (the envs always pass both)."""

    distance: Reward
    distance_weight: float = 0.7
    geohash_weight: float = 0.3
    precision: int = 5

    def __post_init__(self) -> None:
        if self.distance_weight < 0 or self.geohash_weight < 0 or self.distance_weight + self.geohash_weight <= 0:
            raise ValueError(f"MixedReward weights ({self.distance_weight}, {self.geohash_weight}) must be >= 0, "
                             "not both 0")
        if not 1 <= self.precision <= MAX_PRECISION:
            raise ValueError(f"MixedReward.precision={self.precision} must be in 1..{MAX_PRECISION}")

    def __call__(self, distance_km: float, guess: LatLon | None = None, truth: LatLon | None = None) -> float:
        if guess is None or truth is None:
            raise ValueError("MixedReward grades the guess's geohash cell: pass guess= and truth=")
        cells = shared_cells(guess[0], guess[1], truth[0], truth[1], self.precision) / self.precision
        total = self.distance_weight * float(self.distance(distance_km, guess, truth)) + self.geohash_weight * cells
        return total / (self.distance_weight + self.geohash_weight)
