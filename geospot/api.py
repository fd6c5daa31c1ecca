"""geospot from Python: the commands as functions that take the command line's keys as keyword
arguments and go the same way (a knob means what it means on the command line):

    from geospot.api import Predictor, rl, sft

    sft(model_name="tiny:qwen2_5_vl", lora_rank=0, data="synthetic:n=400,size=112", max_steps=50, log_path="runs/sft")
    rl(load_checkpoint_path="runs/sft", max_steps=20, log_path="runs/rl")  # the start run's model and keys
    rows = Predictor("runs/rl")(["photo.jpg"])  # asked as the run was trained, as `geospot predict` asks

A key not passed is what the command line leaves it: a start run's (`load_checkpoint_path`), a
resumed run's (`behavior_if_log_dir_exists="resume"`), else the default. Errors are ConfigError,
one sentence each, raised before a model loads. (`geospot.train.sft.train(cfg)` and
`geospot.train.rl.run(cfg)` take a config as it is: no start run's keys are read.)
"""

from __future__ import annotations

from typing import Any

from geospot.config import ConfigError, check_types, field_types, parse_overrides
from geospot.eval.predictor import Predictor
from geospot.train import rl as rl_loop
from geospot.train import sft as sft_loop
from geospot.train.command import settle
from geospot.train.lifecycle import RunResult

__all__ = ["Predictor", "rl", "sft"]


def sft(**keys: Any) -> RunResult:
    """`geospot sft key=value ...`: supervised warm-start; `geospot sft --help` lists the keys."""
    return sft_loop.train(_settled("sft", sft_loop.SFTConfig, sft_loop.prepare_keys, keys))


def rl(**keys: Any) -> RunResult:
    """`geospot rl key=value ...`: GRPO; `geospot rl --help` lists the keys."""
    return rl_loop.run(_settled("rl", rl_loop.RLConfig, rl_loop.prepare_keys, keys))


def _settled(command: str, cls: type, prepare, keys: dict[str, Any]):
    fields, not_read = field_types(cls), getattr(cls, "NOT_READ", {})
    for key, value in keys.items():
        if key not in fields or key in not_read:  # the command line's sentence for it (a close key, an alias)
            parse_overrides(cls, [f"{key}={value}"], validate=False)
            raise ConfigError(f"unknown config key {key!r} for {cls.__name__}")  # (parse_overrides raised already)
    cfg = cls(**keys)
    check_types(cfg)  # before settle reads a start or resumed run with them
    return settle(command, cfg, set(keys), prepare)
