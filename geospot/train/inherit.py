"""A run started from another run's weights (`load_checkpoint_path=<run>`) continues that model:
the keys the command line leaves out are the start run's, in both loops, and stderr says which.

    inherited_engine_fields: the start run's engine keys and data (down a chain sft -> rl -> rl);
    images_from_start_run:   new data is shown as the start run saw its images: its image budget
                             (its training images' area) and, trained on square images, its
                             photos centre-cropped -- as eval and predict ask it;
    sft_from_start_run:      `geospot sft load_checkpoint_path=<run> data=<new photos>`: the model,
                             its adapter, its image budget and shape and its answers' decimals
                             continue (RL's own, env included, is rl.py's env_from_start_run).

Without them a fine-tune of the demo's run on a user's photos silently showed the model
200,704-pixel uncropped photos it had never seen at 12,544 square ones, and parsed 0 % of them."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from geospot import distributed
from geospot.config import ConfigError
from geospot.data.spec_paths import read_here
from geospot.engines.config import ENGINE_KEYS, EngineConfig
from geospot.engines.start_checks import export_problem
from geospot.models.load import image_budget
from geospot.runs.checkpoint import resolve_checkpoint
from geospot.runs.folder import read_config
from geospot.runs.model_spec import data_square, is_run_path, model_spec, start_run_path

# SFT's keys that shape the answers the start run learned to give (besides the engine's)
SFT_ANSWER_KEYS = ("answer_decimals", "telescoping_decimals")


def inherited_engine_fields(load_checkpoint_path: str | None, _seen: frozenset = frozenset()) -> dict:
    """The engine fields (and the data spec) of the run a local checkpoint came from (its
    config.json): a run continues on what its start was trained on unless told. An RL run
    of an older geospot recorded only what it set, so what it inherited is read from its own start run, and so on
    down the chain (sft -> rl -> rl)."""
    if not load_checkpoint_path or "://" in load_checkpoint_path:
        return {}
    if problem := export_problem("load_checkpoint_path", load_checkpoint_path):
        raise ConfigError(problem)
    try:
        ckpt = resolve_checkpoint(load_checkpoint_path)
    except FileNotFoundError as e:
        raise ConfigError(f"load_checkpoint_path: {e}") from None
    rec = read_config(ckpt) or read_config(ckpt.parent.parent)  # a checkpoint folder, or its run's
    saved, started_in = (rec or {}).get("config", {}), (rec or {}).get("started_in")
    own = {k: v for k, v in saved.items() if k in (*ENGINE_KEYS, "data") and v is not None}
    if isinstance(own.get("data"), str) and isinstance(started_in, str):
        own["data"] = read_here(own["data"], started_in)  # its folders, read from here
    parent, here = saved.get("load_checkpoint_path"), ckpt.parent.parent.resolve()
    if isinstance(parent, str) and "://" not in parent and here not in _seen:
        parent = start_run_path(parent, started_in)  # a relative start run is read from where this one began
        if is_run_path(parent):
            own = {**inherited_engine_fields(parent, _seen | {here}), **own}
    return own


def square_from_start_run(data: str | None, start_data: str | None) -> str | None:
    """`data` with `,square=true` added when the start run trained on square images only and
    `data` (new photos) says nothing of its shape; else `data` as it is."""
    if not data or not data_square(start_data) or data_square(data) or "square=" in data:
        return data
    return f"{data},square=true"


def images_from_start_run(path: str, data: str, given: set[str]) -> dict[str, Any]:
    """For new data (a data spec typed) trained from a local run: the keys that show its photos as
    the start run saw its images -- max_pixels capped at its training images' area (a model trained
    on 112 px images saw 16 image tokens, not a 512 px photo's 256), and its square crop -- each
    unless typed. {} when nothing changes."""
    spec = model_spec(path)
    out: dict[str, Any] = {} if "max_pixels" in given else {"max_pixels": image_budget(spec)}
    square = square_from_start_run(data, spec.data)
    if square != data:
        out["data"] = square
    return out


def sft_from_start_run(cfg: Any, given: set[str], resumed: set[str] = frozenset()) -> Any:
    """The SFT config continuing a local start run: every engine key, answer-decimals key and the
    image shape the command line did not give are the run's; said on stderr, recorded in config.json.
    A resumed run (`resumed`: the keys it took from its own config.json) is already what it was; its
    data typed again (the command its Ctrl-C printed) gets the same image shape as at its start."""
    path = cfg.load_checkpoint_path
    if not path or "://" in path or not is_run_path(path):
        return cfg
    if resumed:  # its own keys stand; new data typed again is shown as it was when the run started
        typed = images_from_start_run(path, cfg.data, given | resumed) if "data" in given else {}
        return dataclasses.replace(cfg, **{k: v for k, v in typed.items() if k == "data"})
    inherited = inherited_engine_fields(path)
    spec = model_spec(path)
    defaults = EngineConfig()
    values: dict[str, Any] = {k: v for k, v in inherited.items() if k in ENGINE_KEYS and k not in given}
    values.update({k: tuple(v) if isinstance(v, list) else v for k, v in spec.config.items()
                   if k in SFT_ANSWER_KEYS and k not in given and v is not None})
    if "data" in given:
        values.update(images_from_start_run(path, cfg.data, given))
    else:
        values["data"] = inherited.get("data", cfg.data)
    values = {k: v for k, v in values.items() if getattr(cfg, k) != v}
    if values and distributed.speaks():
        # the model and anything that differs from the defaults are named
        shown = {k: v for k, v in values.items() if k in ("model_name", "lora_rank", "data")
                 or v != getattr(defaults, k, None)}
        if "data" in given and "data" in shown:  # the data is the user's: what the run adds is its square crop
            shown = {("square" if k == "data" else k): (True if k == "data" else v) for k, v in shown.items()}
        print("load_checkpoint_path: from the run: " + ", ".join(f"{k}={v}" for k, v in shown.items())
              + " (a key on the command line overrides)", file=sys.stderr)
    return dataclasses.replace(cfg, **values)
