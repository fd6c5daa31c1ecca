"""Hierarchical geolocation: one turn per place label, coarse -> fine, then the coordinates
(the original project's MultiTurnGeoEnv and HierarchicalGeoEnv in one env, see envs/config.py).

Turn rewards, with w_t the turn's weight:
  label turn:  w_t if the answer names the true label (geo/labels.py: case-insensitive, ISO code
               or name or alias), else w_t * partial_credit when the previous label was wrong too,
               else 0;
  coords turn: w_t * S(d), S the run's reward (GeoScore / τ-kernel / mixed).
So right country, wrong region, coordinates d km off = w_country + w_coords * S(d). An answer
with no label (or no coordinates) earns the format penalty and ends the episode, as in the
other envs.

Later turns are told what is known ("This photo was taken in Ile-de-France, France."): each
earlier label independently, with probability `teacher_forcing` the truth, else the policy's
own answer. The draw comes from a generator seeded by (seed, sample id, rollout), so a
resumed run repeats it.

Like telescoping, the next observation is the previous one + the sampled tokens + the new
user turn, so an episode is one token sequence."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from geospot.data.types import Sample
from geospot.engines.types import ModelInput
from geospot.envs.rewards import GeoScoreReward, Reward
from geospot.envs.single_turn import first_observation, grade
from geospot.envs.types import StepResult
from geospot.geo.labels import display, label_matches, truth_labels
from geospot.geo.parse_labels import parse_label
from geospot.prompts import hierarchical_prompt, user_message

COORDS = "coords"
NaN = math.nan


@dataclass(frozen=True)
class HierarchySpec:
    turns: tuple[str, ...] = ("country", "region", "city", COORDS)
    weights: tuple[float, ...] = (0.2, 0.2, 0.2, 0.4)
    teacher_forcing: float = 0.0
    partial_credit: float = 0.0
    format_penalty: float = -0.1

    def __post_init__(self) -> None:
        if not self.turns or self.turns[-1] != COORDS or len(self.weights) != len(self.turns):
            raise ValueError(f"HierarchySpec: turns {self.turns} must end with coords and have one weight each "
                             f"(got {len(self.weights)} weights)")

    @property
    def label_fields(self) -> tuple[str, ...]:
        return self.turns[:-1]


DEFAULT_HIERARCHY = HierarchySpec()  # frozen: safe to share as a default
GEOSCORE = GeoScoreReward()


class HierarchicalEnv:
    def __init__(self, sample: Sample, renderer, reward: Reward, truth: Mapping[str, str],
                 spec: HierarchySpec = DEFAULT_HIERARCHY, *, rng: random.Random | None = None,
                 initial: ModelInput | None = None) -> None:
        self.sample, self.renderer, self.reward, self.spec = sample, renderer, reward, spec
        self.truth = dict(truth)
        self.rng = rng if rng is not None else random.Random(0)
        self.turn = 0
        self.answers: dict[str, str] = {}  # the policy's label answers so far
        self.correct: dict[str, bool] = {}
        self._initial = initial  # the group builder renders the image once for all G envs
        self._obs: ModelInput | None = None
        self._done = False

    def initial_observation(self) -> ModelInput:
        if self._initial is None:
            self._initial = first_observation(self.renderer, self.sample, self.prompt(0)[0])
        self._obs = self._initial
        return self._obs

    def prompt(self, turn: int) -> tuple[str, float]:
        """(user text of `turn`, fraction of its hints that were the truth; NaN if none)."""
        known, forced = [], []
        for field in self.spec.turns[:turn]:
            true = self.truth.get(field, "")
            use_truth = bool(true) and self.rng.random() < self.spec.teacher_forcing
            forced.append(float(use_truth))
            known.append(display(field, true) if use_truth else self.answers.get(field, "an unknown place"))
        return hierarchical_prompt(self.spec.turns[turn], tuple(known)), (sum(forced) / len(forced) if forced else NaN)

    def step(self, action_tokens: Sequence[int]) -> StepResult:
        if self._done or self._obs is None:
            raise RuntimeError("HierarchicalEnv: call initial_observation() first; envs are single use")
        field, weight = self.spec.turns[self.turn], self.spec.weights[self.turn]
        metrics: dict[str, float] = {"turn": float(self.turn)}
        if field == COORDS:
            guess, d = grade(self.renderer, self.sample, action_tokens)
            parsed = guess is not None
            score = float(self.reward(d, guess, (self.sample.lat, self.sample.lon))) if parsed else 0.0
            reward = weight * score if parsed else self.spec.format_penalty
            metrics.update({"parsed": float(parsed), "distance_km": d, "score": score,
                            "lat": guess[0] if parsed else NaN, "lon": guess[1] if parsed else NaN})
        else:
            answer = parse_label(self.renderer.decode(list(action_tokens)), field)
            parsed = answer is not None
            right = parsed and label_matches(field, answer, self.truth.get(field, ""))
            prev = self.spec.turns[self.turn - 1] if self.turn > 0 else None
            partial = parsed and not right and prev is not None and not self.correct.get(prev, True)
            score = 1.0 if right else (self.spec.partial_credit if partial else 0.0)
            reward = weight * score if parsed else self.spec.format_penalty
            if parsed:
                self.answers[field] = answer
            self.correct[field] = bool(right)
            metrics.update({"parsed": float(parsed), "score": score, "label_correct": float(right),
                            f"{field}_correct": float(right)})
        self.turn += 1
        self._done = (not parsed) or self.turn >= len(self.spec.turns)
        if self._done:
            return StepResult(reward=float(reward), done=True, next_observation=None, metrics=metrics)
        text, forced = self.prompt(self.turn)
        metrics["next_teacher_forced"] = forced  # how the next prompt was told
        self._obs = self.renderer.continuation(self._obs, list(action_tokens), [user_message(None, text)])
        return StepResult(reward=float(reward), done=False, next_observation=self._obs, metrics=metrics)


@dataclass(frozen=True, eq=False)
class HierarchicalGroupBuilder:
    """The G envs of one image. The true labels are resolved once per image: the sample's own,
    else `geocoder` of the true coordinates (None = use only the sample's labels)."""

    sample: Sample
    renderer: object
    reward: Reward = GEOSCORE
    spec: HierarchySpec = DEFAULT_HIERARCHY
    geocoder: Callable | None = None
    seed: int = 0

    def make_envs(self, group_size: int) -> list[HierarchicalEnv]:
        truth = truth_labels(self.sample.labels or {}, self.sample.lat, self.sample.lon, self.geocoder,
                             self.spec.label_fields)
        initial = first_observation(self.renderer, self.sample, hierarchical_prompt(self.spec.turns[0]))
        return [HierarchicalEnv(self.sample, self.renderer, self.reward, truth, self.spec, initial=initial,
                                rng=random.Random(f"{self.seed}:{self.sample.id}:{g}")) for g in range(group_size)]
