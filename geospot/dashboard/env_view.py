"""What the page shows of a run's env, worked out from its config by the env kinds themselves
(envs/kinds.py), so the page's JavaScript knows no env by name: the turn layouts its rollouts
can have and what its reward pays.

A config comes from a run folder: a key of the wrong type, or an env this version does not
know, leaves that layout out (the page then numbers the turns) rather than failing the run's
page."""

from __future__ import annotations

from typing import Any

from geospot.envs.kinds import KINDS, as_options
from geospot.envs.registry import reward_name

# SFT's prompt styles that mix envs (train/sft.py MIXES): their held-out eval asks single-turn
_SFT_EVAL_ENV = "single"


def played_envs(config: dict[str, Any]) -> list[str]:
    """The envs a run's rollouts play: RL's env_type and the mix_env_type playing part of each
    batch; an SFT run's prompt_style, a mix of envs (both, all) asking single-turn in its eval."""
    if config.get("env_type"):
        return [e for e in (config.get("env_type"), config.get("mix_env_type")) if isinstance(e, str) and e]
    style = config.get("prompt_style")
    if not isinstance(style, str) or not style:
        return []
    return [style if style in KINDS else _SFT_EVAL_ENV]


def env_view(config: dict[str, Any]) -> dict[str, Any]:
    """{"layouts": per played env, its turns [{field, name, title, weight, partial}] (field "" =
    coordinates); "reward": env_type's {"name" (reward=auto resolved), "kernel" (a kernel of the
    distance, one can draw it), "text" (what it pays, in words)} or None for SFT / an unknown env}."""
    options = as_options(config)
    layouts = []
    for env in played_envs(config):
        try:
            layouts.append([t._asdict() for t in KINDS[env].turns(options)])
        except (KeyError, TypeError, ValueError):  # an env or keys this version cannot read
            continue
    env = config.get("env_type")
    reward = None
    if isinstance(env, str) and env in KINDS:
        kind = KINDS[env]
        given = config.get("reward")
        name = reward_name(env, given if isinstance(given, str) and given else "auto")
        reward = {"name": name, "kernel": kind.distance_reward, "text": kind.reward_text}
    return {"layouts": layouts, "reward": reward}
