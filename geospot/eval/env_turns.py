"""Eval of the envs that ask more than coordinates (hierarchical, geohash): the training env
itself, stepped by the RL rollout loop with the eval's sampling parameters, so eval asks and
grades exactly what training did. What comes back has the shape the runner's own loop gives
(per image, per sample, the (text, guess | None) of each turn), plus what each turn asked
(a label field, or "" for coordinates) and, per label field, whether it was right."""

from __future__ import annotations

import math
from collections.abc import Sequence

from geospot.data.types import Sample
from geospot.engines.types import SampleParams

ENV_STYLES = ("hierarchical", "geohash")


def _guess(metrics: dict) -> tuple[float, float] | None:
    lat, lon = metrics.get("lat", math.nan), metrics.get("lon", math.nan)
    return (float(lat), float(lon)) if math.isfinite(lat) and math.isfinite(lon) else None


def turn_fields(env_type: str, env_options) -> tuple[str, ...]:
    """What each turn asks: a label field, or "" for coordinates."""
    from geospot.envs.registry import hierarchy_spec, num_turns

    if env_type == "hierarchical":
        return tuple("" if t == "coords" else t for t in hierarchy_spec(env_options).turns)
    return ("",) * num_turns(env_type, env_options)


def env_batch(engine, samples: Sequence[Sample], env_type: str, env_options, params: SampleParams, k: int,
              geocoder=None):
    """(histories[image][sample] = [(text, guess | None) per turn], label_correct[image] = {field: 0/1}
    of the first sample). The reward is the env's GeoScore default: eval reports distances, not rewards."""
    from geospot.envs import registry
    from geospot.rl.rollouts import do_group_rollouts

    reward = registry.make_reward("geoscore", 1.0)
    builders = registry.make_group_builders(env_type, samples, engine.renderer, reward, env_options,
                                            geocoder=geocoder, seed=0)
    trajectories_BG = do_group_rollouts(engine, builders, k, params)
    histories, correct = [], []
    for group in trajectories_BG:
        histories.append([[(engine.renderer.decode(list(tr.action_tokens)), _guess(tr.metrics)) for tr in t.transitions]
                          for t in group])
        first = group[0].transitions
        correct.append({key[: -len("_correct")]: float(tr.metrics[key]) for tr in first for key in tr.metrics
                        if key.endswith("_correct") and key != "label_correct"})
    return histories, correct
