"""Single-turn geolocation: image + prompt -> one answer -> reward(distance).

An unparseable answer earns the format penalty (default -0.1) and ends the episode — as
every single-turn episode ends after one step anyway, the only difference is the reward.
With `reasoning` (the prompt asks to think first) the turn also reports its reasoning
length and format (envs/reasoning.py) and pays `reasoning_penalty` per reasoning token."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from geospot.data.types import Sample
from geospot.engines.types import ModelInput
from geospot.envs.reasoning import length_penalty, reasoning_turn_metrics
from geospot.envs.rewards import Reward
from geospot.envs.types import StepResult
from geospot.geo import haversine_km, parse_coordinates
from geospot.prompts import SINGLE_TURN_PROMPT, user_message


def grade(renderer, sample: Sample, action_tokens: Sequence[int]):
    """(guess | None, distance_km | nan) of one sampled answer."""
    guess = parse_coordinates(renderer.decode(list(action_tokens)))
    if guess is None:
        return None, math.nan
    return (float(guess[0]), float(guess[1])), float(haversine_km(guess[0], guess[1], sample.lat, sample.lon))


def reasoning_step(renderer, action_tokens: Sequence[int], parsed: bool, reasoning: bool,
                   penalty: float) -> tuple[dict[str, float], float]:
    """(extra metrics, reward change) of a turn: nothing without reasoning."""
    if not reasoning:
        return {}, 0.0
    m = reasoning_turn_metrics(renderer, action_tokens, parsed)
    return m, -length_penalty(penalty, m["reasoning_tokens"])


def first_observation(renderer, sample: Sample, prompt: str) -> ModelInput:
    """The image and the first prompt, ready for the assistant's answer."""
    return renderer.generation_prompt([user_message(sample.image, prompt)])


class SingleTurnEnv:
    def __init__(self, sample: Sample, renderer, reward: Reward, *, prompt: str = SINGLE_TURN_PROMPT,
                 format_penalty: float = -0.1, initial: ModelInput | None = None, reasoning: bool = False,
                 reasoning_penalty: float = 0.0) -> None:
        self.sample, self.renderer, self.reward = sample, renderer, reward
        self.prompt, self.format_penalty = prompt, format_penalty
        self.reasoning, self.reasoning_penalty = reasoning, reasoning_penalty
        self._initial = initial  # the group builder renders the image once for all G envs
        self._done = False

    def initial_observation(self) -> ModelInput:
        if self._initial is None:
            self._initial = first_observation(self.renderer, self.sample, self.prompt)
        return self._initial

    def step(self, action_tokens: Sequence[int]) -> StepResult:
        if self._done:
            raise RuntimeError("SingleTurnEnv is single use: make a new env per rollout")
        self._done = True
        guess, d = grade(self.renderer, self.sample, action_tokens)
        parsed = guess is not None
        reward = self.reward(d, guess, (self.sample.lat, self.sample.lon)) if parsed else self.format_penalty
        metrics = {"turn": 0.0, "parsed": float(parsed), "distance_km": d,
                   "lat": guess[0] if parsed else math.nan, "lon": guess[1] if parsed else math.nan}
        extra, cost = reasoning_step(self.renderer, action_tokens, parsed, self.reasoning, self.reasoning_penalty)
        metrics.update(extra)
        return StepResult(reward=float(reward) + cost, done=True, next_observation=None, metrics=metrics)


@dataclass(frozen=True, eq=False)
class SingleTurnGroupBuilder:
    """The G envs of one image (the GRPO group)."""

    sample: Sample
    renderer: object
    reward: Reward
    prompt: str = SINGLE_TURN_PROMPT
    format_penalty: float = -0.1
    reasoning: bool = False  # the prompt asks to reason first (prompts.reasoning_prompt)
    reasoning_penalty: float = 0.0

    def make_envs(self, group_size: int) -> list[SingleTurnEnv]:
        initial = first_observation(self.renderer, self.sample, self.prompt)
        return [SingleTurnEnv(self.sample, self.renderer, self.reward, prompt=self.prompt,
                              format_penalty=self.format_penalty, initial=initial, reasoning=self.reasoning,
                              reasoning_penalty=self.reasoning_penalty) for _ in range(group_size)]
