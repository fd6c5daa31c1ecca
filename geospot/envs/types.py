"""Small types that carry the RL design (in the spirit of tinker-cookbook):

- `Env`: one episode for one rollout; single use. Observations are `ModelInput`s — for a
  continuation turn, the previous observation + the *sampled tokens* + the new user turn,
  so a whole telescoping episode is one token sequence and nothing is re-tokenised.
- `EnvGroupBuilder`: makes the G envs of one image — the GRPO group.
- `Transition` / `Trajectory`: what a rollout leaves behind.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from geospot.data.types import Sample
from geospot.engines.types import ModelInput


@dataclass(frozen=True)
class StepResult:
    reward: float
    done: bool
    next_observation: ModelInput | None
    metrics: dict[str, float] = field(default_factory=dict)


class Env(Protocol):
    def initial_observation(self) -> ModelInput: ...

    def step(self, action_tokens: Sequence[int]) -> StepResult: ...


@dataclass(frozen=True)
class Transition:
    observation: ModelInput
    action_tokens: tuple[int, ...]
    action_logprobs: tuple[float, ...]
    reward: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Trajectory:
    transitions: tuple[Transition, ...]

    @property
    def total_reward(self) -> float:
        return float(sum(t.reward for t in self.transitions))


class EnvGroupBuilder(Protocol):
    sample: Sample

    def make_envs(self, group_size: int) -> list[Env]: ...
