"""geospot from Python: the commands as functions that take the command line's keys as keyword
arguments and go the same way (a knob means what it means on the command line):

    from geospot.api import Predictor, rl, sft

    sft(model_name="tiny:qwen2_5_vl", lora_rank=0, data="synthetic:n=400,size=112", max_steps=50, log_path="runs/sft")
    rl(load_checkpoint_path="runs/sft", max_steps=20, log_path="runs/rl")  # the start run's model and keys
    rows = Predictor("runs/rl")(["photo.jpg"])  # asked as the run was trained, as `geospot predict` asks

A key not passed is what the command line leaves it: a start run's (`load_checkpoint_path`), a
resumed run's (`behavior_if_log_dir_exists="resume"`), else the default. Errors are ConfigError,
one sentence each, raised before a model loads; Ctrl-C saves the step being trained, then raises
KeyboardInterrupt. (`geospot.train.sft.train(cfg)` and
`geospot.train.rl.run(cfg)` take a config as it is: no start run's keys are read.)
"""

from __future__ import annotations

import os
from typing import Any

from geospot.config import ConfigError, config_from
from geospot.data.spec import SpecError, parse_spec
from geospot.eval.predictor import Predictor
from geospot.train import rl as rl_loop
from geospot.train import sft as sft_loop
from geospot.train.command import settle, stop_signals
from geospot.train.lifecycle import RunResult

__all__ = ["Predictor", "rl", "sft"]


def sft(**keys: Any) -> RunResult:
    """`geospot sft key=value ...`: supervised warm-start; `geospot sft --help` lists the keys."""
    return _train("sft", sft_loop.train, _settled("sft", sft_loop.SFTConfig, sft_loop.prepare_keys, keys))


def rl(**keys: Any) -> RunResult:
    """`geospot rl key=value ...`: GRPO; `geospot rl --help` lists the keys."""
    return _train("rl", rl_loop.run, _settled("rl", rl_loop.RLConfig, rl_loop.prepare_keys, keys))


def _train(command: str, train: Any, cfg: Any) -> RunResult:
    """Ctrl-C / SIGTERM as on the command line: the step is trained and saved, then KeyboardInterrupt."""
    restore = stop_signals(command)
    try:
        return train(cfg)
    finally:
        restore()


def _settled(command: str, cls: type, prepare, keys: dict[str, Any]):
    if callable(keys.get("reward")):
        keys = {**keys, "reward": _importable_name(keys["reward"])}
    if keys.get("data") is not None and not isinstance(keys["data"], (str, os.PathLike)):
        try:  # a DataFrame, a list of samples: the data spec's own sentence, with the way in
            parse_spec(keys["data"])
        except SpecError as e:
            raise ConfigError(str(e)) from None
    return settle(command, config_from(cls, keys), set(keys), prepare)


def _importable_name(function: Any) -> str:
    """A reward function as the module:function a run records (a resume imports it again)."""
    module, name = getattr(function, "__module__", None), getattr(function, "__qualname__", "")
    if not module or module == "__main__" or "<" in name:  # a script's, a notebook's, a lambda: nothing imports it
        raise ConfigError(f"reward={function!r} is not in a module a resume can import; put it in a file (e.g. "
                          "my_rewards.py) and pass it from there, or reward='my_rewards:hemisphere'")
    return f"{module}:{name}"
