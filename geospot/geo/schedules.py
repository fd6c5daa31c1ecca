"""τ schedules for the distance kernel exp(-d/τ): small frozen objects with `tau(step)`.

The natural curve is geometric (log-linear) 2000 -> 25 km: each step shrinks τ by the same
factor, so the policy spends as many steps going continent -> country as it does
city -> street. Steps past `total_steps` hold the end value; negative steps hold the start.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


class TauSchedule(Protocol):
    """τ at a step, fed the policy's errors after each batch; its state (what it has observed)
    goes into the checkpoint so a resumed run continues with the same τ."""

    def tau(self, step: int) -> float: ...

    def observe(self, distances_km) -> None: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class _Unobserving:
    """Schedules that depend on the step alone: observing changes nothing, no state."""

    def observe(self, distances_km) -> None:
        pass

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def _progress(step: int, total_steps: int) -> float:
    """step / total in [0, 1]."""
    if total_steps <= 0:
        return 1.0
    return min(max(step / total_steps, 0.0), 1.0)


def _check(name: str, start_km: float, end_km: float, total_steps: int) -> None:
    if not (start_km > 0 and end_km > 0):
        raise ValueError(f"{name}: start_km={start_km} and end_km={end_km} must both be > 0 km")
    if total_steps < 0:
        raise ValueError(f"{name}: total_steps={total_steps} must be >= 0")


@dataclass(frozen=True)
class ConstantTau(_Unobserving):
    tau_km: float = 2000.0

    def __post_init__(self) -> None:
        if not self.tau_km > 0:
            raise ValueError(f"ConstantTau: tau_km={self.tau_km} must be > 0 km")

    def tau(self, step: int) -> float:
        return float(self.tau_km)


@dataclass(frozen=True)
class _Annealed(_Unobserving):
    """What every start -> end schedule shares: its three numbers and their checks."""

    start_km: float = 2000.0
    end_km: float = 25.0
    total_steps: int = 1000

    def __post_init__(self) -> None:
        _check(type(self).__name__, self.start_km, self.end_km, self.total_steps)


@dataclass(frozen=True)
class LinearTau(_Annealed):
    def tau(self, step: int) -> float:
        p = _progress(step, self.total_steps)
        return self.start_km + (self.end_km - self.start_km) * p


@dataclass(frozen=True)
class GeometricTau(_Annealed):
    """τ = start·(end/start)^(step/total): linear in log τ; midpoint = √(start·end)."""

    def tau(self, step: int) -> float:
        p = _progress(step, self.total_steps)
        if p >= 1.0:
            return float(self.end_km)  # exact end value, no pow rounding
        return math.exp(math.log(self.start_km) + (math.log(self.end_km) - math.log(self.start_km)) * p)


@dataclass(frozen=True)
class CosineTau(_Annealed):
    """Half-cosine from start to end: slow at both ends, fastest in the middle."""

    def tau(self, step: int) -> float:
        p = _progress(step, self.total_steps)
        return self.end_km + (self.start_km - self.end_km) * 0.5 * (1.0 + math.cos(math.pi * p))


@dataclass(frozen=True)
class FollowErrorTau:
    """τ follows the policy's own error: the median distance over the last `window` observed
    batches, clipped to [end_km, start_km] of the `base` schedule. Before any parsed answer the
    error is as far as it knows infinite, so τ sits at its ceiling (the larger of the two): it did
    follow the base schedule's annealing there, so a run whose first answers never parsed logged τ
    falling to tens of km while the median error was inf.

    Why (issue 12): exp(-d/τ) gives the most signal when τ is near the current median error;
    a fixed annealing curve can run ahead of the policy (every reward ~0) or lag behind it
    (every reward ~1). Call `.observe(distances_km)` once per batch (unparsed answers as NaN
    or inf are ignored), then `.tau(step)`. The object is frozen; its history deque is the
    only mutable state (`state_dict`, saved in the checkpoint) and it is not part of equality."""

    base: GeometricTau | LinearTau | CosineTau = field(default_factory=GeometricTau)
    window: int = 8
    _recent: deque = field(default_factory=deque, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.window < 1:
            raise ValueError(f"FollowErrorTau: window={self.window} must be >= 1 batches")

    def observe(self, distances_km) -> None:
        d = np.asarray(distances_km, dtype=np.float64).reshape(-1)
        d = d[np.isfinite(d)]
        if d.size:
            self._recent.append(d)
            while len(self._recent) > self.window:
                self._recent.popleft()

    def state_dict(self) -> dict:
        """The observed batches' finite distances, oldest first (at most `window`)."""
        return {"recent_km": [d.tolist() for d in self._recent]}

    def load_state_dict(self, state: dict) -> None:
        self._recent.clear()
        for d in state.get("recent_km", []):
            self.observe(d)

    def tau(self, step: int) -> float:
        lo = min(self.base.start_km, self.base.end_km)
        hi = max(self.base.start_km, self.base.end_km)
        if not self._recent:
            return float(hi)
        median = float(np.median(np.concatenate(list(self._recent))))
        return float(min(max(median, lo), hi))


_SCHEDULES = {"constant": ConstantTau, "linear": LinearTau, "geometric": GeometricTau, "cosine": CosineTau}


def make_tau_schedule(name: str, start_km: float = 2000.0, end_km: float = 25.0, total_steps: int = 1000,
                      **kw) -> TauSchedule:
    """Build a schedule by name: constant (τ = start_km), linear, geometric, cosine, follow_error
    (FollowErrorTau over a geometric base; `window=` passes through)."""
    if name == "constant":
        return ConstantTau(start_km)
    if name in _SCHEDULES:
        return _SCHEDULES[name](start_km, end_km, total_steps)
    if name in ("follow_error", "follow-error"):
        return FollowErrorTau(GeometricTau(start_km, end_km, total_steps), **kw)
    choices = ", ".join([*_SCHEDULES, "follow_error"])
    raise ValueError(f"unknown tau schedule {name!r}; choose one of: {choices}")
