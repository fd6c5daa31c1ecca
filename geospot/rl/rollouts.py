"""Rollouts: B images x G envs, stepped turn by turn in lockstep.

Every turn makes ONE `engine.sample` call holding the prompts of all groups, so the engine
batches across images (a local engine pads them into one generate; Tinker runs them in
parallel). On the first turn the G envs of an image share one prompt, so we send it once
with `num_samples=G`; later turns differ per rollout (each continues its own sampled tokens)
and go as one prompt each with `num_samples=1`."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from geospot.engines.types import SampleParams
from geospot.envs.types import EnvGroupBuilder, Trajectory, Transition


@dataclass
class RolloutStats:
    sample_s: float = 0.0
    sampled_tokens: int = 0
    turns: int = 0


def stream_seed(*keys: int) -> int:
    """A sampling seed that is a pure function of `keys` (e.g. run seed, turn, group, rollout)."""
    return int(np.random.SeedSequence([int(k) for k in keys]).generate_state(1, np.uint64)[0])


def do_group_rollouts(engine, builders: Sequence[EnvGroupBuilder], group_size: int,
                      params: SampleParams, stats: RolloutStats | None = None,
                      group_ids: Sequence[int] | None = None) -> list[list[Trajectory]]:
    """Returns trajectories_BG: for each builder (image), its G trajectories.

    `group_ids` (with a `params.seed`): each group's global index in the step. Every prompt then
    samples from its own seed — (seed, turn, group) on the first turn, (seed, turn, group,
    rollout) after — so a group draws the same tokens whichever rank, and whichever other
    groups, it is sampled with (data-parallel RL: 2 ranks reproduce 1 process's rollouts)."""
    stats = stats if stats is not None else RolloutStats()
    envs_BG = [b.make_envs(group_size) for b in builders]
    B, G = len(envs_BG), group_size
    transitions: dict[tuple[int, int], list[Transition]] = {(b, g): [] for b in range(B) for g in range(G)}
    # First turn: one prompt per group, G samples each.
    obs_BG = [[env.initial_observation() for env in envs] for envs in envs_BG]
    active = [(b, g) for b in range(B) for g in range(G)]
    prompts = [obs_BG[b][0] for b in range(B)]
    turn = 0
    # FSDP2 resharding (engines/parallel.py): each sample call is a collective, so every rank takes
    # a turn while any rank has rollouts left (a rank with none samples nothing, keeping company)
    lock = engine.lockstep

    def more_turns() -> bool:
        return bool(active) if lock is None else lock.any_rank(bool(active))

    while more_turns():
        first = turn == 0
        turn_params = replace(params, seed=None if params.seed is None else params.seed + 1000 * turn)
        if group_ids is not None and params.seed is not None:
            keys = [(group_ids[b],) for b in range(B)] if first else [(group_ids[b], g) for b, g in active]
            turn_params = replace(turn_params, seeds=tuple(stream_seed(params.seed, turn, *k) for k in keys))
        t0 = time.perf_counter()
        seqs = engine.sample(prompts, G if first else 1, turn_params)
        stats.sample_s += time.perf_counter() - t0
        # back to the flat (b, g) order of `active`
        flat = [seqs[b][g] for b in range(B) for g in range(G)] if first else [s[0] for s in seqs]
        next_active, next_prompts = [], []
        for (b, g), seq in zip(active, flat):
            env, obs = envs_BG[b][g], obs_BG[b][g]
            stats.sampled_tokens += len(seq.tokens)
            res = env.step(seq.tokens)
            # `truncated`: the engine stopped the turn at max_tokens (what the env cannot see)
            metrics = {**res.metrics, "truncated": float(seq.stop_reason == "length")}
            transitions[(b, g)].append(Transition(observation=obs, action_tokens=tuple(seq.tokens),
                                                  action_logprobs=tuple(seq.logprobs), reward=res.reward,
                                                  metrics=metrics))
            if not res.done:
                obs_BG[b][g] = res.next_observation
                next_active.append((b, g))
                next_prompts.append(res.next_observation)
        active, prompts = next_active, next_prompts
        turn += 1
    stats.turns = max(stats.turns, turn)
    return [[Trajectory(tuple(transitions[(b, g)])) for g in range(G)] for b in range(B)]
