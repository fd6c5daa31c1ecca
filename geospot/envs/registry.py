"""env_type -> EnvGroupBuilder and reward name -> Reward: the few lines the RL loop, SFT and
eval call, so no loop branches on the env (the other places an env's name appears: docs/envs.md,
"Adding an env").

`cfg` is any config with the keys of `EnvOptions` (envs/config.py) plus `prompt`,
`turn_prompts` and `format_penalty` (RLConfig has them all; missing ones take the env's
defaults). `env_metrics` turns the per-turn metrics the envs leave on transitions into step
metrics: label accuracy per label turn (`label_country_acc`, ...: the answer named the label;
`country_acc` is the geocoded coordinates'), the mean shared geohash prefix per geohash turn,
the teacher-forcing rate."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from geospot.envs.config import EnvOptions
from geospot.envs.geohash import GeohashGroupBuilder, GeohashSpec
from geospot.envs.hierarchical import HierarchicalGroupBuilder, HierarchySpec
from geospot.envs.rewards import GeoScoreReward, KernelReward, MixedReward, Reward
from geospot.envs.single_turn import SingleTurnGroupBuilder
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.envs.types import EnvGroupBuilder, Trajectory
from geospot.prompts import SINGLE_TURN_PROMPT, TELESCOPING_PROMPTS, reasoning_prompt

REWARDS = ("kernel", "geoscore", "mixed")
_DEFAULTS = EnvOptions()


def _opt(cfg, key: str, default=None):
    return getattr(cfg, key, getattr(_DEFAULTS, key, default))


def reward_name(env_type: str, reward: str) -> str:
    """`auto` -> the τ-kernel for single-turn, GeoScore for the multi-turn envs (as the originals)."""
    return reward if reward != "auto" else ("kernel" if env_type == "single" else "geoscore")


def make_reward(name: str, tau_km: float, cfg=None) -> Reward:
    """The reward object of `name` at this step's τ (τ is unused by geoscore)."""
    if name == "kernel":
        return KernelReward(tau_km)
    if name == "geoscore":
        return GeoScoreReward()
    if name == "mixed":
        w_d, w_g = _opt(cfg, "mixed_weights")
        return MixedReward(KernelReward(tau_km), w_d, w_g, int(_opt(cfg, "mixed_precision")))
    raise ValueError(f"reward={name!r}: use one of {', '.join(REWARDS)}")


def uses_tau(name: str) -> bool:
    return name in ("kernel", "mixed")


def hierarchy_spec(cfg) -> HierarchySpec:
    return HierarchySpec(tuple(_opt(cfg, "hier_turns")), tuple(float(w) for w in _opt(cfg, "hier_weights")),
                         float(_opt(cfg, "teacher_forcing")), float(_opt(cfg, "hier_partial_credit")),
                         float(_opt(cfg, "format_penalty", -0.1)))


def geohash_spec(cfg) -> GeohashSpec:
    return GeohashSpec(tuple(int(c) for c in _opt(cfg, "geohash_chars")),
                       tuple(float(w) for w in _opt(cfg, "geohash_weights")), float(_opt(cfg, "geohash_bonus")),
                       float(_opt(cfg, "teacher_forcing")), _opt(cfg, "geohash_answer"),
                       float(_opt(cfg, "format_penalty", -0.1)))


def num_turns(env_type: str, cfg) -> int:
    return {"single": lambda: 1, "telescoping": lambda: len(_opt(cfg, "turn_prompts", TELESCOPING_PROMPTS)),
            "hierarchical": lambda: len(_opt(cfg, "hier_turns")),
            "geohash": lambda: len(_opt(cfg, "geohash_chars"))}[env_type]()


def coordinate_turns(env_type: str, cfg) -> tuple[bool, ...]:
    """Per turn of `env_type`, whether it answers coordinates (a hierarchical label turn does not;
    a geohash cell is read as its centre): the turns a per-turn distance means something for."""
    if env_type == "hierarchical":
        return tuple(field == "coords" for field in _opt(cfg, "hier_turns"))
    return (True,) * num_turns(env_type, cfg)


def coordinate_prompts(cfg, prompts: Sequence[str]) -> tuple[str, ...]:
    """The single / telescoping turn prompts, asking for reasoning first when `reasoning` is on."""
    return tuple(reasoning_prompt(p) for p in prompts) if _opt(cfg, "reasoning") else tuple(prompts)


def _reasoning(cfg) -> dict:
    return {"reasoning": bool(_opt(cfg, "reasoning")), "reasoning_penalty": float(_opt(cfg, "reasoning_penalty"))}


_Factory = Callable[..., EnvGroupBuilder]
_BUILDERS: dict[str, _Factory] = {
    "single": lambda s, r, reward, cfg, geocoder, seed: SingleTurnGroupBuilder(
        s, r, reward, coordinate_prompts(cfg, [_opt(cfg, "prompt", SINGLE_TURN_PROMPT)])[0],
        float(_opt(cfg, "format_penalty", -0.1)), **_reasoning(cfg)),
    "telescoping": lambda s, r, reward, cfg, geocoder, seed: TelescopingGroupBuilder(
        s, r, reward, coordinate_prompts(cfg, _opt(cfg, "turn_prompts", TELESCOPING_PROMPTS)),
        float(_opt(cfg, "format_penalty", -0.1)), **_reasoning(cfg), zoom=int(_opt(cfg, "zoom"))),
    "hierarchical": lambda s, r, reward, cfg, geocoder, seed: HierarchicalGroupBuilder(
        s, r, reward, hierarchy_spec(cfg), geocoder, seed),
    # the geohash curriculum's reward is its own (shared cells + bonus): `reward` is not used
    "geohash": lambda s, r, reward, cfg, geocoder, seed: GeohashGroupBuilder(s, r, geohash_spec(cfg), seed),
}
# the env_type values every config accepts (RLConfig's and EvalConfig's Literal), in this order
ENV_TYPES: tuple[str, ...] = tuple(_BUILDERS)


def make_group_builders(env_type: str, samples: Sequence, renderer, reward: Reward, cfg=None, *,
                        geocoder=None, seed: int = 0) -> list[EnvGroupBuilder]:
    """One builder per sample. `geocoder` labels samples that lack country/region/city
    (hierarchical only; e.g. `geospot.geo.reverse_geocode` or a synthetic world's); `seed`
    seeds the teacher-forcing draws, per image and rollout (the RL loop passes its seed: resume repeats them)."""
    if env_type not in _BUILDERS:
        raise ValueError(f"env_type={env_type!r}: use one of {', '.join(ENV_TYPES)}")
    make = _BUILDERS[env_type]
    return [make(s, renderer, reward, cfg, geocoder, seed) for s in samples]


def mixed_count(batch_size: int, mix_env_type: str | None, mix_share: float) -> int:
    """How many of a batch's images play `mix_env_type` (0 without one)."""
    return round(mix_share * batch_size) if mix_env_type else 0


def split_batch(samples: Sequence, env_type: str, mix_env_type: str | None = None,
                mix_share: float = 0.0) -> list[tuple[str, Sequence]]:
    """[(env_type, its images)] in batch order: the first round(mix_share * B) images play
    `mix_env_type`, the rest `env_type` (the batch order is already random, so which images
    play which env is too; no draw to checkpoint). No mix: one part, the whole batch."""
    n = mixed_count(len(samples), mix_env_type, mix_share)
    return [(env, part) for env, part in ((mix_env_type, samples[:n]), (env_type, samples[n:])) if len(part)]


def _mean(values: list[float]) -> float:
    v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
    return float(v.mean()) if v.size else math.nan


def env_metrics(trajectories_BG: Sequence[Sequence[Trajectory]]) -> dict[str, float]:
    """Step metrics from the envs' per-turn metrics (empty for single / telescoping):
    `label_<field>_acc` = share of rollouts that answered <field> right (a rollout that ended before
    the turn counts as wrong), `turn<k>_geohash_shared` = mean shared prefix at turn k among
    rollouts that reached it, `teacher_forced` = share of hints that were the truth."""
    trajs = [t for g in trajectories_BG for t in g]
    out: dict[str, float] = {}
    fields = sorted({k[: -len("_correct")] for t in trajs for tr in t.transitions for k in tr.metrics
                     if k.endswith("_correct") and k != "label_correct"})
    for field in fields:
        key = f"{field}_correct"
        out[f"label_{field}_acc"] = float(np.mean([max((tr.metrics.get(key, 0.0) for tr in t.transitions), default=0.0)
                                             for t in trajs]))
    turns = max((len(t.transitions) for t in trajs), default=0)
    for k in range(turns):
        shared = [t.transitions[k].metrics.get("geohash_shared", math.nan) for t in trajs if len(t.transitions) > k]
        if any(math.isfinite(x) for x in shared):
            out[f"turn{k + 1}_geohash_shared"] = _mean(shared)
    forced = [tr.metrics.get("next_teacher_forced", math.nan) for t in trajs for tr in t.transitions]
    if any(math.isfinite(x) for x in forced):
        out["teacher_forced"] = _mean(forced)
    return out
