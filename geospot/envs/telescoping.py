"""Telescoping geolocation: one policy answers coordinates several times, coarse -> final.

Turn t+1's prompt shows the previous guess (1 decimal after the coarse turn, then 2, as the
seed did). The reward is the *improvement* of the score,

    r_t = S(d_t) - S(d_{t-1}),   S(d_0) = 0,   so   sum_t r_t = S(d_final),

with S the GeoGuessr score / 5000 by default or the τ-kernel (any `Reward`). An unparseable
turn is scored S = 0 plus the format penalty and ends the episode, so its return is just the
penalty: breaking format never keeps the credit of earlier turns.

The next observation is the previous observation + the *sampled tokens* + the new user turn
(`renderer.continuation`), so a whole episode is ONE token sequence: the datum built from it
trains every turn at once and nothing is re-tokenised.

With `zoom` > 1 the turns look closer as they go, as a telescope does: the first turn sees the
photo shrunk `zoom`x per side (1/zoom^2 of its vision tokens), the second turn's message brings
the full photo, and the third refines with both in view. The refine turns then have something
to refine with — detail the first look could not resolve (a sign's pattern, a marking) — and
not only the first answer again. zoom = 1 (the default) is the original: one photo, text turns.

With `reasoning` every turn may think before its answer (the prompts say so); each turn's
reasoning stays in the sequence the next turn sees (its sampled tokens, verbatim) and pays
`reasoning_penalty` per reasoning token on its own reward."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import ModelInput
from geospot.envs.rewards import GeoScoreReward, Reward
from geospot.envs.single_turn import grade, reasoning_step
from geospot.envs.types import StepResult
from geospot.prompts import PREVIOUS_GUESS_DECIMALS, TELESCOPING_PROMPTS, format_previous_guess, user_message

# The default reward: frozen and stateless, so one shared instance is what a call in the signature made anyway.
_GEOSCORE = GeoScoreReward()


def turn_prompt(prompts: Sequence[str], turn: int, prev_guess: tuple[float, float] | None,
                decimals: Sequence[int] = PREVIOUS_GUESS_DECIMALS) -> str:
    """The user text of `turn`; turns after the first show the previous guess, rounded."""
    if turn == 0:
        return prompts[0]
    assert prev_guess is not None
    places = decimals[min(turn - 1, len(decimals) - 1)]
    return prompts[turn].format(prev=format_previous_guess(prev_guess[0], prev_guess[1], places))


def coarse_view(image: Image.Image, zoom: int, max_pixels: int | None = None) -> Image.Image:
    """The photo the first turn sees: `zoom`x smaller per side than the model would see it (the
    photo, or the photo fitted into `max_pixels`, the renderer's budget: a 4000 px photo shrunk
    2x would still be cut to the budget), each pixel the mean of a block (a thumbnail, not a
    crop: the whole scene, less detail). zoom 1: the photo itself."""
    if zoom <= 1:
        return image
    w, h = image.size
    area = min(w * h, max_pixels) if max_pixels else w * h
    scale = math.sqrt(area / (w * h)) / zoom
    return image.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)


def turn_images(image: Image.Image, zoom: int, num_turns: int, max_pixels: int | None = None
                ) -> list[Image.Image | None]:
    """The photo each turn's user message carries (None = text only): the photo on the first
    turn; with zoom > 1 a thumbnail first and the full photo on the second turn."""
    views: list[Image.Image | None] = [None] * num_turns
    views[0] = coarse_view(image, zoom, max_pixels)
    if zoom > 1 and num_turns > 1:
        views[1] = image
    return views


class TelescopingEnv:
    def __init__(self, sample: Sample, renderer, score: Reward = _GEOSCORE, *,
                 prompts: Sequence[str] = TELESCOPING_PROMPTS, format_penalty: float = -0.1,
                 initial: ModelInput | None = None, reasoning: bool = False,
                 reasoning_penalty: float = 0.0, zoom: int = 1,
                 views: Sequence[Image.Image | None] | None = None) -> None:
        if not prompts:
            raise ValueError("TelescopingEnv needs at least one turn prompt")
        self.sample, self.renderer, self.score = sample, renderer, score
        # the photo each turn sees (`turn_images`); the group builder makes them once for all G envs
        self.views = list(views) if views is not None else turn_images(
            sample.image, zoom, len(prompts), getattr(renderer, "max_pixels", None))
        self.prompts, self.format_penalty = tuple(prompts), format_penalty
        self.reasoning, self.reasoning_penalty = reasoning, reasoning_penalty
        self.turn = 0
        self.prev_score = 0.0  # S(d_0) = 0
        self._initial = initial  # the group builder renders the image once for all G envs
        self._obs: ModelInput | None = None
        self._done = False

    @property
    def num_turns(self) -> int:
        return len(self.prompts)

    def initial_observation(self) -> ModelInput:
        if self._initial is None:
            self._initial = self.renderer.generation_prompt([user_message(self.views[0], self.prompts[0])])
        self._obs = self._initial
        return self._obs

    def step(self, action_tokens: Sequence[int]) -> StepResult:
        if self._done or self._obs is None:
            raise RuntimeError("TelescopingEnv: call initial_observation() first; envs are single use")
        guess, d = grade(self.renderer, self.sample, action_tokens)
        parsed = guess is not None
        s = float(self.score(d, guess, (self.sample.lat, self.sample.lon))) if parsed else 0.0
        reward = s - self.prev_score + (0.0 if parsed else self.format_penalty)
        metrics = {"turn": float(self.turn), "parsed": float(parsed), "distance_km": d, "score": s,
                   "lat": guess[0] if parsed else math.nan, "lon": guess[1] if parsed else math.nan}
        extra, cost = reasoning_step(self.renderer, action_tokens, parsed, self.reasoning, self.reasoning_penalty)
        metrics.update(extra)
        reward += cost
        self.prev_score = s
        self.turn += 1
        self._done = (not parsed) or self.turn >= self.num_turns
        if self._done:
            return StepResult(reward=reward, done=True, next_observation=None, metrics=metrics)
        follow = user_message(self.views[self.turn], turn_prompt(self.prompts, self.turn, guess))
        self._obs = self.renderer.continuation(self._obs, list(action_tokens), [follow])
        return StepResult(reward=reward, done=False, next_observation=self._obs, metrics=metrics)


@dataclass(frozen=True, eq=False)
class TelescopingGroupBuilder:
    sample: Sample
    renderer: object
    score: Reward = GeoScoreReward()
    prompts: tuple[str, ...] = TELESCOPING_PROMPTS
    format_penalty: float = -0.1
    reasoning: bool = False  # the prompts ask to reason first (prompts.reasoning_prompt)
    reasoning_penalty: float = 0.0
    zoom: int = 1  # > 1: the first turn sees a thumbnail, the second the full photo

    def make_envs(self, group_size: int) -> list[TelescopingEnv]:
        views = turn_images(self.sample.image, self.zoom, len(self.prompts), getattr(self.renderer, "max_pixels", None))
        initial = self.renderer.generation_prompt([user_message(views[0], self.prompts[0])])
        return [TelescopingEnv(self.sample, self.renderer, self.score, prompts=self.prompts,
                               format_penalty=self.format_penalty, initial=initial, reasoning=self.reasoning,
                               reasoning_penalty=self.reasoning_penalty, views=views) for _ in range(group_size)]
