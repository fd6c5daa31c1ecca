"""What the page shows of a run's env, worked out from its config by the env kinds themselves
(envs/kinds.py), so the page's JavaScript knows no env by name: the turn layouts its rollouts
can have and what its reward pays.

A config comes from a run folder: a key of the wrong type, or an env this version does not
know, leaves that layout out (the page then numbers the turns) rather than failing the run's
page."""

from __future__ import annotations

from typing import Any

from geospot.envs.kinds import KINDS, as_options, eval_env, opt
from geospot.envs.registry import reward_name, uses_tau


def played_envs(config: dict[str, Any]) -> list[str]:
    """The envs a run's rollouts play: RL's env_type and the mix_env_type playing part of each
    batch; for an SFT run, the env its held-out eval asks (envs/kinds.py eval_env)."""
    if config.get("env_type"):
        return [e for e in (config.get("env_type"), config.get("mix_env_type")) if isinstance(e, str) and e]
    style = config.get("prompt_style")
    if not isinstance(style, str) or not style:
        return []
    return [eval_env(style)]


def _reward(env: Any, config: dict[str, Any], options: Any) -> dict[str, Any] | None:
    """How `env` pays a turn: {"env", "name" (reward=auto resolved; "own" where the env grades itself),
    "tau" (the distance reward is exp(-d/τ) at the run's logged τ), "kernel" (the reward is a kernel of
    the distance, one can draw it), "text" (what a turn earns beyond that, in words)}; None for an
    env this version does not know."""
    if not isinstance(env, str) or env not in KINDS:
        return None
    kind = KINDS[env]
    given = config.get("reward")
    try:
        name = "own" if kind.own_reward else reward_name(env, given if isinstance(given, str) and given else "auto")
        text = kind.reward_text(options, name)
        if name == "mixed":  # the page draws its τ-kernel, which is only a share of what a turn earns
            (w_d, w_g), chars = opt(options, "mixed_weights"), int(opt(options, "mixed_precision"))
            w_d, w_g = w_d / (w_d + w_g), w_g / (w_d + w_g)  # MixedReward's weighted mean
            text = (f"With reward=mixed that kernel is {w_d:.2g} of what a turn earns; the other {w_g:.2g} is the "
                    f"share of its first {chars} geohash characters that match the truth's (mixed_weights, "
                    "mixed_precision). "
                    + text).strip()
    except (TypeError, ValueError):  # keys this version cannot read
        return None
    if ":" in name:  # reward=module:function, the user's own: no kernel of the distance to draw
        text = f"Each parsed guess is graded by your function {name}(distance_km, guess, truth). {text}".strip()
        return {"env": env, "name": name, "tau": False, "kernel": False, "text": text}
    return {"env": env, "name": name, "tau": uses_tau(name), "kernel": kind.distance_reward, "text": text}


def env_view(config: dict[str, Any]) -> dict[str, Any]:
    """{"layouts": per played env, its turns [{field, name, title, weight, partial}] (field "" =
    coordinates); "reward": env_type's reward (`_reward`), None for SFT / an unknown env; "mix": the
    reward of the mix_env_type playing a share of each batch, with that share ("share"), or None}."""
    options = as_options(config)
    layouts = []
    for env in played_envs(config):
        try:
            layouts.append([t._asdict() for t in KINDS[env].turns(options)])
        except (KeyError, TypeError, ValueError):  # an env or keys this version cannot read
            continue
    mix = _reward(config.get("mix_env_type"), config, options) if config.get("env_type") else None
    share = config.get("mix_share")
    if mix is not None:
        mix["share"] = share if isinstance(share, (int, float)) and not isinstance(share, bool) else None
    return {"layouts": layouts, "reward": _reward(config.get("env_type"), config, options), "mix": mix}
