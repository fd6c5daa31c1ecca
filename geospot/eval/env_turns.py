"""Eval's one episode path, for every env type (single, telescoping, hierarchical, geohash):
the training env itself (envs/kinds.py), stepped by the RL rollout loop with the eval's
sampling parameters, so eval asks and grades exactly what training did. What comes back is,
per image and per sample, the (text, guess | None) of each turn it played (as in training, an
unparseable turn ends that conversation), plus what each turn asked (a label field, or "" for
coordinates) and, per label field, whether the first sample named it right."""

from __future__ import annotations

import math
from collections.abc import Sequence

from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs.kinds import KINDS, env_kind


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


def asks_prompt_texts(env_type: str) -> bool:
    """Whether the env asks prompt texts (single / telescoping: the run's own, passed as `turns`)
    rather than building its prompts from its keys (hierarchical / geohash)."""
    return env_kind(env_type, "prompt_style").prompt_key is not None


def turn_fields(env_type: str, env_options, turns: tuple[str, ...] = ()) -> tuple[str, ...]:
    """What each turn of a full episode asks: a label field, or "" for coordinates. An env that asks
    prompt texts plays one coordinate turn per text of `turns`; the others, their kind's turns."""
    if asks_prompt_texts(env_type):
        return ("",) * len(turns)
    return tuple(t.field for t in KINDS[env_type].turns(env_options))


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
