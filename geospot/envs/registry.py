"""env_type -> a batch's EnvGroupBuilders and reward name -> Reward: the few lines the RL loop
and eval call (what each env is: envs/kinds.py), so no loop branches on the env.

`cfg` is any config with the keys of `EnvOptions` (envs/config.py) plus `prompt`,
`turn_prompts` and `format_penalty` (RLConfig has them all; missing ones take the env's
defaults). `env_metrics` turns the per-turn metrics the envs leave on transitions into step
metrics: label accuracy per label turn (`label_country_acc`, ...: the answer named the label;
`country_acc` is the geocoded coordinates'), the mean shared geohash prefix per geohash turn,
the teacher-forcing rate."""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import numbers
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from geospot.config import ConfigError
from geospot.envs.kinds import env_kind, opt
from geospot.envs.rewards import GeoScoreReward, KernelReward, LatLon, MixedReward, Reward
from geospot.envs.types import EnvGroupBuilder, Trajectory

REWARDS = ("kernel", "geoscore", "mixed")


def reward_name(env_type: str, reward: str) -> str:
    """`auto` -> the env's default: the τ-kernel for single-turn, GeoScore for the multi-turn envs (as the
    originals)."""
    return reward if reward != "auto" else env_kind(env_type).default_reward


def make_reward(name: str, tau_km: float, cfg=None) -> Reward:
    """The reward object of `name` at this step's τ (τ is unused by geoscore; `module:function`:
    the user's own function, `custom_reward`)."""
    if ":" in name:
        return custom_reward(name)
    if name == "kernel":
        return KernelReward(tau_km)
    if name == "geoscore":
        return GeoScoreReward()
    if name == "mixed":
        w_d, w_g = opt(cfg, "mixed_weights")
        return MixedReward(KernelReward(tau_km), w_d, w_g, int(opt(cfg, "mixed_precision")))
    raise ValueError(f"reward={name!r} {reward_problem(name)}")


def uses_tau(name: str) -> bool:
    return name in ("kernel", "mixed")


@dataclass(frozen=True)
class CustomReward:
    """The user's own reward, `reward=module:function`: function(distance_km, guess, truth) -> a
    number, guess and truth (lat, lon) in degrees (what the envs give every Reward). Named in the
    error when it returns no finite number: a NaN reward would centre every advantage of its group
    into NaN."""

    name: str
    function: Callable[..., float]

    def __call__(self, distance_km: float, guess: LatLon | None = None, truth: LatLon | None = None) -> float:
        inputs = f"distance_km={distance_km:.1f}, guess={guess}, truth={truth}"
        try:
            value = self.function(distance_km, guess, truth)
        except Exception as e:  # the user's code: said with its inputs (a ConfigError stops the run in one sentence)
            raise ConfigError(f"reward={self.name} raised {type(e).__name__}: {e} for {inputs}") from e
        ok = isinstance(value, numbers.Real) and math.isfinite(value)  # (a bool or a numpy float is a number too)
        if not ok:
            raise ConfigError(f"reward={self.name} returned {value!r} for {inputs}; a reward is a finite number")
        return float(value)


@functools.cache  # (make_reward asks for it each step: imported and checked once)
def custom_reward(name: str) -> CustomReward:
    """`module:function` -> its CustomReward; ValueError in one sentence when it cannot be one."""
    if problem := reward_problem(name):
        raise ValueError(f"reward={name!r} {problem}")
    module, _, attr = name.partition(":")
    return CustomReward(name, getattr(_import(module), attr))


def _import(module: str):
    """The module, found on sys.path or in the current folder (the `geospot` command's sys.path starts
    at its own bin/, not where it runs, as `python -m` does)."""
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    return importlib.import_module(module)


def reward_problem(name: str) -> str | None:
    """Why `name` names no reward (one of REWARDS, `auto`, or an importable `module:function` taking
    (distance_km, guess, truth)), said after `reward=<name> `; None when it does."""
    if name in (*REWARDS, "auto"):
        return None
    module, colon, attr = name.partition(":")
    if not colon or not module or not attr:
        return (f"is none of auto, {', '.join(REWARDS)}, nor your own function as module:function (e.g. "
                "reward=my_rewards:hemisphere, my_rewards.py on PYTHONPATH)")
    try:
        function = getattr(_import(module), attr)
    except ModuleNotFoundError as e:
        return f"cannot be imported: no module {e.name!r} in the current folder or on PYTHONPATH"
    except AttributeError:
        return f"names nothing: module {module!r} has no {attr!r}"
    except Exception as e:  # the module's own code failed on import
        return f"cannot be imported: {module} raised {type(e).__name__}: {e}"
    try:
        inspect.signature(function).bind(0.0, (0.0, 0.0), (0.0, 0.0))
    except TypeError:
        return "is not a function of (distance_km, guess, truth): geospot calls it with those three"
    except ValueError:  # (a builtin without a signature: called as it is)
        pass
    return None


def make_group_builders(env_type: str, samples: Sequence, renderer, reward: Reward, cfg=None, *,
                        geocoder=None, seed: int = 0) -> list[EnvGroupBuilder]:
    """One builder per sample. `geocoder` labels samples that lack country/region/city
    (hierarchical only; e.g. `geospot.geo.reverse_geocode` or a synthetic world's); `seed`
    seeds the teacher-forcing draws, per image and rollout (the RL loop passes its seed: resume repeats them)."""
    kind = env_kind(env_type)
    return [kind.build(s, renderer, reward, cfg, geocoder, seed) for s in samples]


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
    the turn counts as wrong), `turn_<k>_geohash_shared` = mean shared prefix at turn k among
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
            out[f"turn_{k + 1}_geohash_shared"] = _mean(shared)
    forced = [tr.metrics.get("next_teacher_forced", math.nan) for t in trajs for tr in t.transitions]
    if any(math.isfinite(x) for x in forced):
        out["teacher_forced"] = _mean(forced)
    return out
