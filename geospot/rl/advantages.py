"""Advantages: who gets credit for what, within a GRPO group.

GRPO's baseline is the group itself: the G rollouts of one image are scored against each
other, so the value of "this image is easy" cancels. The credit assignments, passed as
objects (`CREDITS` names them for the config):

- `TrajectoryCredit` (the seed / tinker-cookbook behaviour): one centred total reward per
  rollout, applied to every token of every turn.
- `PerTurnCredit` (default for telescoping): turn t's tokens get the return-to-go
  G_t = sum_{k>=t} r_k, centred across the group *at that turn index*. G_t = S_final - S_{t-1}
  subtracts the rollout's own earlier score, which depends only on what came before turn t,
  so the gradient stays unbiased while a refine turn is no longer credited for the luck of
  the coarse turn. With a discount gamma < 1, G_t = sum_k gamma^(k-t) r_k.
- `own_turn` = `PerTurnCredit(gamma=0)`: turn t gets its own reward r_t. Under the telescoping
  reward r_t = S(d_t) - S(d_{t-1}) that pays the coarse turn for its own distance and each
  refine turn for how much closer it lands than the turn before. Biased for the final score
  (a turn is not credited for what it makes possible later), but nothing is then left unpaid:
  with gamma = 1 the coarse turn's return is the final score alone, and GRPO turned it into a
  stub the later turns complete (docs/rl_vs_sft.md, "Fourth pass").

Division by the group's std is optional and OFF by default (Dr. GRPO, Liu et al. 2025,
"Understanding R1-Zero-Like Training"): dividing by std up-weights groups whose rewards
barely differ — the very easy and very hard images — and biases the update toward them.

A group whose advantages are all zero (e.g. every rollout got the same reward) teaches
nothing; it is dropped and counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from geospot.envs.types import Trajectory

EPS = 1e-6


def returns_to_go(rewards_T: Sequence[float], gamma: float = 1.0) -> np.ndarray:
    """G_t = sum_{k>=t} gamma^(k-t) r_k, e.g. [0.5, 0.2, 0.1] -> [0.8, 0.3, 0.1] (gamma 1),
    [0.5, 0.2, 0.1] (gamma 0: each turn its own reward)."""
    r = np.asarray(rewards_T, dtype=np.float64)
    out = np.zeros_like(r)
    acc = 0.0
    for t in range(len(r) - 1, -1, -1):
        acc = r[t] + gamma * acc
        out[t] = acc
    return out


def center(values_G: Sequence[float], scale_by_std: bool = False) -> np.ndarray:
    """values - mean(values) [/ (std + eps)]; population std over the group."""
    v = np.asarray(values_G, dtype=np.float64)
    a = v - v.mean()
    if scale_by_std:
        a = a / (v.std() + EPS)
    return a


class Credit(Protocol):
    def __call__(self, rewards_G: list[np.ndarray], scale_by_std: bool) -> list[np.ndarray]:
        """Per-turn rewards of the G rollouts -> per-turn advantages (same ragged shapes)."""
        ...


@dataclass(frozen=True)
class TrajectoryCredit:
    def __call__(self, rewards_G: list[np.ndarray], scale_by_std: bool) -> list[np.ndarray]:
        adv_G = center([r.sum() for r in rewards_G], scale_by_std)
        return [np.full(len(r), a) for r, a in zip(rewards_G, adv_G)]


@dataclass(frozen=True)
class PerTurnCredit:
    gamma: float = 1.0  # discount of later turns' rewards in a turn's return

    def __call__(self, rewards_G: list[np.ndarray], scale_by_std: bool) -> list[np.ndarray]:
        rtg_G = [returns_to_go(r, self.gamma) for r in rewards_G]
        out = [np.zeros(len(r)) for r in rewards_G]
        for t in range(max(len(r) for r in rewards_G)):
            # Rollouts that ended before turn t (format break) have no turn t to credit.
            alive = [i for i, r in enumerate(rtg_G) if len(r) > t]
            adv = center([rtg_G[i][t] for i in alive], scale_by_std)
            for i, a in zip(alive, adv):
                out[i][t] = a
        return out


CREDITS: dict[str, Credit] = {
    "per_turn": PerTurnCredit(),
    "own_turn": PerTurnCredit(gamma=0.0),
    "trajectory": TrajectoryCredit(),
}


@dataclass
class GroupAdvantages:
    """For the kept groups: their index, and per trajectory the per-turn advantages."""

    kept: list[int]
    advantages: list[list[np.ndarray]]  # [kept group][rollout] -> advantages_turns
    dropped: int


def compute_advantages(trajectories_BG: Sequence[Sequence[Trajectory]], credit: Credit,
                       scale_by_std: bool = False) -> GroupAdvantages:
    kept, advs, dropped = [], [], 0
    for b, group in enumerate(trajectories_BG):
        rewards_G = [np.array([t.reward for t in traj.transitions], dtype=np.float64) for traj in group]
        adv_G = credit(rewards_G, scale_by_std)
        if all(np.all(np.abs(a) < 1e-9) for a in adv_G):
            dropped += 1
            continue
        kept.append(b)
        advs.append(adv_G)
    return GroupAdvantages(kept=kept, advantages=advs, dropped=dropped)
