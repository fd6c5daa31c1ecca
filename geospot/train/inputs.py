"""A run's inputs, checked before the model loads (a typo costs seconds, not a model load):
the start weights and their shape, the engine's start checks and wandb, then the training
stream and the held-out images (a separate `eval_data` held out whole; an empty held-out set
said or refused) and the geocoder. train/lifecycle.py's start_run calls `open_inputs` and
`check_start_weights`."""

from __future__ import annotations

import importlib.util
import itertools
import sys
from typing import Any

from geospot import data as gdata
from geospot import distributed
from geospot.config import ConfigError
from geospot.engines.start_checks import check_start, export_problem
from geospot.eval.geocoding import geocoder_for
from geospot.eval.loading import engine_state_fields
from geospot.models.load import model_identity
from geospot.runs.checkpoint import read_checkpoint, resolve_checkpoint


def open_data(cfg: Any) -> tuple[Any, list[Any], Any]:
    """(train stream, held-out samples, geocoder) — or a ConfigError naming `data` / `eval_data`."""

    def wrap(key: str, spec: str, fn):
        try:
            return fn()
        except ConfigError:
            raise
        except (FileNotFoundError, ValueError, KeyError, OSError, ImportError) as e:
            raise ConfigError(f"{key}={spec!r}: {e}") from e

    stream = wrap("data", cfg.data, lambda: gdata.open_stream(cfg.data, split="train", seed=cfg.seed, repeat=True))
    # A separate eval set is held out whole: its own 5 % val split would leave a small labelled
    # folder with nothing to evaluate. The train data's held-out images are its eval_split ids.
    separate = bool(cfg.eval_data) and cfg.eval_data != cfg.data
    eval_spec, eval_key = (cfg.eval_data, "eval_data") if separate else (cfg.data, "data")
    held_out: list[Any] = []
    if cfg.eval_n:
        try:
            split = "all" if separate else cfg.eval_split
            held_out, skipped = wrap(eval_key, eval_spec, lambda: _held_out(eval_spec, split, cfg.eval_n))
        except BaseException:
            stream.close()
            raise
        why = f" ({gdata.skip_reasons(skipped)})" if skipped else ""
        if not held_out and separate:
            stream.close()
            raise ConfigError(f"eval_data={eval_spec!r} gives no usable sample{why}; fix it (see `geospot data "
                              f"inspect '{eval_spec}'`) or set eval_n=0 for no held-out eval")
        # eval_data equal to data is data's eval_split: a training image is never evaluated
        what, frac, share = {"val": ("val split", "val_frac", "5 %"), "test": ("test split", "test_frac", "5 %")}.get(
            cfg.eval_split, ("held-out ids (val + test)", "val_frac + test_frac", "5 % each"))
        same = f" (eval_data is the same as data, so it is data's {what})" if cfg.eval_data and not separate else ""
        if not held_out and distributed.speaks():  # (under torchrun every rank finds it; rank 0 says it)
            print(f"no held-out eval: data={eval_spec!r} has no usable sample in its {what} ({frac} of its ids by "
                  f"hash, {share} by default){why}{same}; give eval_data=<other labelled data>, raise "
                  f"{frac.replace(' + ', ' or ')} in the data spec, or set eval_n=0", file=sys.stderr)
        elif len(held_out) < cfg.eval_n and distributed.speaks():
            where = f"eval_data={eval_spec!r}" if separate else f"the {what} of data={eval_spec!r}"
            print(f"held-out eval: {len(held_out)} images, not eval_n={cfg.eval_n}: {where} has no more usable "
                  f"sample{why}{same}", file=sys.stderr)
    return stream, held_out, geocoder_for(eval_spec)


def _held_out(spec: str, split: str, n: int) -> tuple[list[Any], dict[str, int]]:
    """The first n usable samples of `split` in source order, and what was skipped on the way."""
    with gdata.open_stream(spec, split, force={"repeat": False}, shuffle=False) as s:
        return list(itertools.islice(s, n)), dict(s.skipped)


def initial_weights(path: str | None) -> str | None:
    """The engine state a fresh run starts from (`load_checkpoint_path`), found before the
    model loads so a typo costs seconds."""
    if not path or "://" in path:
        return path
    if problem := export_problem("load_checkpoint_path", path):
        raise ConfigError(problem)
    try:
        return read_checkpoint(resolve_checkpoint(path)).engine_path
    except FileNotFoundError as e:
        raise ConfigError(f"load_checkpoint_path={path!r}: {e}") from None


SHAPE_KEYS = ("lora_rank", "lora_targets", "train_vision")  # which weights are trainable, and their shapes


def check_start_weights(engine_config: Any, init_weights: str | None, load_path: str | None) -> None:
    """The start weights (a local engine state) fit only an engine of the shape that saved them:
    a ConfigError naming the key, before the model loads, instead of a mismatch after it."""
    if not init_weights:
        return
    saved = engine_state_fields(init_weights)  # {} for tinker:// or a folder without a local engine state
    was, now = saved.get("model_name"), engine_config.model_name
    if was and now and was != now and None not in (a := model_identity(was), b := model_identity(now)) and a != b:
        other = f"a {a[0]} model, not {b[0]}" if a[0] != b[0] else "a model of another size"
        raise ConfigError(f"model_name={now!r}, but load_checkpoint_path={load_path!r} was trained on {was!r} "
                          f"({other}) and its weights fit only that; leave model_name out where the run is "
                          f"inherited, or set model_name={was!r}")
    for key in SHAPE_KEYS:
        if key == "lora_targets" and not (saved.get("lora_rank") and engine_config.lora_rank):
            continue  # no adapter on one side: lora_rank already differs or the targets mean nothing
        if key in saved and saved[key] != getattr(engine_config, key):
            raise ConfigError(f"{key}={getattr(engine_config, key)!r}, but load_checkpoint_path={load_path!r} was "
                              f"trained with {key}={saved[key]!r} and its weights fit only that; set "
                              f"{key}={saved[key]!r} (or leave it out where the run is inherited)")


def open_inputs(cfg: Any, start_weights: bool = True) -> tuple[Any, list[Any], Any, str | None]:
    """(train stream, held-out samples, geocoder, initial weights), or a ConfigError. `start_weights`
    False (a resume: its own checkpoint holds the weights) neither needs nor looks for the start run's."""
    # the checks that read no data first: a mistyped model costs no data scan
    init_weights = initial_weights(cfg.load_checkpoint_path) if start_weights else None
    check_start(getattr(cfg, "engine", None), getattr(cfg, "model_name", None), cfg.load_checkpoint_path)
    if cfg.wandb_project and importlib.util.find_spec("wandb") is None:
        raise ConfigError(
            f"wandb_project={cfg.wandb_project!r} needs the wandb package: `pip install wandb` "
            "(or leave wandb_project unset)"
        )
    stream, held_out, geocoder = open_data(cfg)
    try:
        if not stream.repeat and not stream.has_more():
            raise ConfigError(f"data={cfg.data!r} gives no sample to train on (repeat=false and nothing usable in "
                              "its train split); check it with `geospot data inspect`")
    except BaseException:
        stream.close()
        raise
    return stream, held_out, geocoder, init_weights
