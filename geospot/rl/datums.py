"""Datums: one per trajectory — the whole multi-turn episode is one sequence.

The last observation already holds every earlier turn's prompt and *sampled tokens* (the env
builds it with `renderer.continuation`), so the episode's full sequence is that observation
plus the last action. Sampled tokens carry the sampler's logprobs and their turn's advantage;
everything else (system, image, user turns, an end-of-turn the renderer appended after a
length stop) carries zero. `make_datum` shifts once (Tinker semantics)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geospot.engines.datums import make_datum
from geospot.engines.types import Datum, ModelInput
from geospot.envs.types import Trajectory


def trajectory_arrays(traj: Trajectory, advantages_turns: Sequence[float]) -> tuple[ModelInput, np.ndarray, np.ndarray]:
    """(full sequence, logprobs_T, advantages_T), unshifted: position i holds token i's values."""
    if len(advantages_turns) != len(traj.transitions):
        raise ValueError(f"{len(advantages_turns)} advantages for {len(traj.transitions)} turns")
    last = traj.transitions[-1]
    full = last.observation.append_tokens(last.action_tokens)
    logprobs_T = np.zeros(full.length, dtype=np.float32)
    advantages_T = np.zeros(full.length, dtype=np.float32)
    for tr, adv in zip(traj.transitions, advantages_turns):
        start, n = tr.observation.length, len(tr.action_tokens)
        if start + n > full.length:
            raise ValueError("trajectory observations are not prefixes of one sequence; "
                             "envs must build next observations with renderer.continuation")
        logprobs_T[start:start + n] = tr.action_logprobs
        advantages_T[start:start + n] = adv
    return full, logprobs_T, advantages_T


def trajectory_to_datum(traj: Trajectory, advantages_turns: Sequence[float], group: int | None = None) -> Datum:
    full, logprobs_T, advantages_T = trajectory_arrays(traj, advantages_turns)
    return make_datum(full, logprobs=logprobs_T, advantages=advantages_T, group=group)


def build_datums(trajectories_BG, group_advantages) -> list[Datum]:
    """Datums for the kept groups (dropped groups carry no gradient), each tagged with its group
    so the engine packs the group's shared image + prompt once without searching for it."""
    datums_D = []
    for b, adv_G in zip(group_advantages.kept, group_advantages.advantages):
        for traj, adv in zip(trajectories_BG[b], adv_G):
            if np.any(adv != 0):  # a zero-advantage rollout contributes nothing but compute
                datums_D.append(trajectory_to_datum(traj, adv, group=b))
    return datums_D
