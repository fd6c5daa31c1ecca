"""What a guess is worth: small reward objects the envs are given (never a mode string).

A reward maps a distance in km to a score in [0, 1]. Unparseable answers never reach it:
the env charges its format penalty instead. The τ-kernel is rebuilt each step with the
schedule's current τ (`KernelReward(tau_km=schedule.tau(step))`), so an env only ever sees a
plain function of distance."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from geospot.geo.scores import GEOGUESSR_MAX, GEOGUESSR_SCALE_KM, geoguessr_score


class Reward(Protocol):
    def __call__(self, distance_km: float) -> float: ...


@dataclass(frozen=True)
class KernelReward:
    """exp(-d/τ): τ sets the distance scale the policy is graded at (τ near the current
    median error gives the most signal; τ far below it makes every reward ~0)."""

    tau_km: float

    def __post_init__(self) -> None:
        if not self.tau_km > 0:
            raise ValueError(f"KernelReward.tau_km={self.tau_km} must be > 0 km")

    def __call__(self, distance_km: float) -> float:
        return math.exp(-float(distance_km) / self.tau_km)


@dataclass(frozen=True)
class GeoScoreReward:
    """The GeoGuessr score / 5000 = exp(-d/1492.7 km): a fixed, continent-scale kernel."""

    scale_km: float = GEOGUESSR_SCALE_KM

    def __call__(self, distance_km: float) -> float:
        return float(geoguessr_score(float(distance_km), scale=self.scale_km)) / GEOGUESSR_MAX
