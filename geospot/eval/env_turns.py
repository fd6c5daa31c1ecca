"""Eval's one episode path, for every env type (single, telescoping, hierarchical, geohash):
the training env itself (envs/registry.py), stepped by the RL rollout loop with the eval's
sampling parameters, so eval asks and grades exactly what training did. What comes back is,
per image and per sample, the (text, guess | None) of each turn it played (as in training, an
unparseable turn ends that conversation), plus what each turn asked (a label field, or "" for
coordinates) and, per label field, whether the first sample named it right."""

from __future__ import annotations

import math
from collections.abc import Sequence

from geospot.data.types import Sample
from geospot.engines.types import SampleParams

LABEL_STYLES = ("hierarchical", "geohash")  # the envs whose turns are the env keys' (not prompt texts)


class _Asked:
    """The env keys of `options` (None = defaults; `reasoning` too) with the prompts eval asks
    with: a run's own prompts (geospot.runs.model_spec) or the defaults, never an RL config's
    `prompt` by accident."""

    def __init__(self, options, turns: tuple[str, ...]) -> None:
        self._options, self.prompt, self.turn_prompts = options, turns[0], tuple(turns)

    def __getattr__(self, key: str):
        if self._options is None:
            raise AttributeError(key)
        return getattr(self._options, key)


def _guess(metrics: dict) -> tuple[float, float] | None:
    if not metrics.get("parsed", 1.0):
        return None
    lat, lon = metrics.get("lat", math.nan), metrics.get("lon", math.nan)
    return (float(lat), float(lon)) if math.isfinite(lat) and math.isfinite(lon) else None


def turn_fields(env_type: str, env_options) -> tuple[str, ...]:
    """What each turn asks: a label field, or "" for coordinates; () for single / telescoping
    (their turns are prompt texts: see `num_turns`)."""
    from geospot.envs.registry import hierarchy_spec, num_turns

    if env_type == "hierarchical":
        return tuple("" if t == "coords" else t for t in hierarchy_spec(env_options).turns)
    return ("",) * num_turns(env_type, env_options) if env_type in LABEL_STYLES else ()


def num_turns(env_type: str, env_options, turns: tuple[str, ...]) -> int:
    """Turns a full episode plays (a shorter one stopped on an unparseable answer)."""
    from geospot.envs import registry

    return len(turns) if env_type not in LABEL_STYLES else registry.num_turns(env_type, env_options)


def env_batch(engine, samples: Sequence[Sample], env_type: str, env_options, params: SampleParams, k: int,
              geocoder=None, turns: tuple[str, ...] = ()):
    """(histories[image][sample] = [(text, guess | None) per turn], label_correct[image] = {field: 0/1}
    of the first sample ({} without label turns), reasoning[image] = the (reasoning tokens, truncated,
    answer format) of every turn of every sample (() without reasoning=true)). `turns`: the prompt
    texts of single (1) / telescoping (n), before the env asks to reason first. The reward is
    GeoScore: eval reports distances, not rewards."""
    from geospot.envs import registry
    from geospot.rl.rollouts import do_group_rollouts

    reward = registry.make_reward("geoscore", 1.0)
    options = _Asked(env_options, turns) if turns else env_options
    builders = registry.make_group_builders(env_type, samples, engine.renderer, reward, options,
                                            geocoder=geocoder, seed=0)
    trajectories_BG = do_group_rollouts(engine, builders, k, params)
    histories, correct, reasoning = [], [], []
    for group in trajectories_BG:
        reasoning.append(tuple((tr.metrics["reasoning_tokens"], tr.metrics["truncated"], tr.metrics["answer_format"])
                               for traj in group for tr in traj.transitions if "reasoning_tokens" in tr.metrics))
        histories.append([[(engine.renderer.decode(list(tr.action_tokens)), _guess(tr.metrics)) for tr in t.transitions]
                          for t in group])
        first = group[0].transitions
        correct.append({key[: -len("_correct")]: float(tr.metrics[key]) for tr in first for key in tr.metrics
                        if key.endswith("_correct") and key != "label_correct"})
    return histories, correct, reasoning
