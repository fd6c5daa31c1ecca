"""`model=` for eval / predict / export: one string, four kinds of thing.

  tiny:<family>[:<size>] | hub id | local HF folder   -> a local engine on that model
  a training run folder or one of its checkpoints/<step>/ -> the run's base model (from its
      config.json) + the checkpoint's weights / adapter (engine.load_state, no optimizer)
  tinker://...                                        -> the Tinker engine on that path

A checkpoint records the engine state; the run folder's config.json records which base
model and engine made it, so a checkpoint alone is enough to evaluate or export."""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geospot.config import ConfigError
from geospot.engines import make_engine
from geospot.engines.config import EngineConfig
from geospot.engines.start_checks import model_problem
from geospot.engines.tinker_engine import GeospotTinkerError, check_api_key
from geospot.models.load import image_budget
from geospot.runs.checkpoint import read_checkpoint, resolve_checkpoint
from geospot.runs.folder import read_config
from geospot.runs.model_spec import export_spec, is_export_path, model_spec, saved_engine_config


@dataclass(frozen=True)
class LoadedModel:
    engine: Any
    model: str  # what the user passed
    base_model: str  # the base model name (the checkpoint's, for checkpoints)
    checkpoint: Path | None = None  # checkpoint folder, when loaded from one
    run_dir: Path | None = None  # its training run folder
    step: int | None = None  # optimizer steps of that checkpoint
    run_config: dict | None = None  # the run's config.json "config"


_ENGINE_KEYS = {f.name for f in dataclasses.fields(EngineConfig)}


def _find_engine_fields(cfg: Any) -> dict:
    """EngineConfig fields out of a run's config dict: either nested (cfg["engine"] as a dict)
    or flat (the loop config carries model_name, lora_rank, ...)."""
    if not isinstance(cfg, dict):
        return {}
    for key in ("engine", "engine_config", "model"):
        sub = cfg.get(key)
        if isinstance(sub, dict) and "model_name" in sub:
            return {k: v for k, v in sub.items() if k in _ENGINE_KEYS}
    flat = {k: v for k, v in cfg.items() if k in _ENGINE_KEYS and not isinstance(v, dict)}
    if "model_name" in flat:
        return flat
    for v in cfg.values():
        found = _find_engine_fields(v)
        if found:
            return found
    return {}


def engine_state_fields(engine_path: str) -> dict:
    if "://" in engine_path:
        return {}
    return {k: v for k, v in saved_engine_config(Path(engine_path)).items() if k in _ENGINE_KEYS}


def _tinker_state_config(folder: Path) -> dict:
    record = folder / "tinker.json"
    if not record.exists():
        return {}
    saved = json.loads(record.read_text())
    out = {"engine": "tinker", "model_name": saved.get("base_model")}
    if saved.get("lora_rank"):
        out["lora_rank"] = int(saved["lora_rank"])
    return out if out["model_name"] else {}


def _is_run_without_checkpoint(folder: Path) -> bool:
    """A geospot run folder (its config.json names the loop: "kind") with no checkpoints/ yet."""
    try:
        record = read_config(folder) if folder.is_dir() else None
    except (ValueError, OSError):
        return False
    return isinstance(record, dict) and record.get("kind") in ("sft", "rl") and "config" in record


def run_without_weights(path: str, key: str = "model") -> str | None:
    """The sentence for a training run folder stopped before its first checkpoint; None for anything else."""
    if is_checkpoint_path(path) or not _is_run_without_checkpoint(Path(path)):
        return None
    return (f"{key}={path}: this training run stopped before its first checkpoint, so it holds no weights; train it "
            "again (behavior_if_log_dir_exists=delete), with a smaller save_every if it was stopped early")


def is_checkpoint_path(model: str) -> bool:
    p = Path(model)
    return p.is_dir() and ((p / "state.json").exists() or (p / "checkpoints").is_dir())


def engine_config_for(model: str, base_model: str | None = None, **overrides: Any) -> tuple[EngineConfig, dict]:
    """The EngineConfig that serves `model` and, for checkpoints, its metadata.
    `overrides` (device, dtype, max_pixels, seed, ...) win over the run's values."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if model.startswith("tinker://"):
        # A tinker:// path holds weights, not the name of the model they belong to; the
        # engine needs that name (tokenizer, renderer, training client).
        if not base_model:
            raise ConfigError(f"model={model}: also pass base_model=<hub id> (the model this Tinker checkpoint was "
                              "trained from)")
        try:  # said here, before the eval starts (the engine would say it with engine=local, no key of eval's)
            check_api_key(instead="give model= a local model, run folder or export", who="model=tinker://…")
        except GeospotTinkerError as e:
            raise ConfigError(str(e)) from None
        overrides.pop("device", None), overrides.pop("dtype", None)
        return EngineConfig(model_name=base_model, engine="tinker", **overrides), {"engine_path": model}
    if is_export_path(model):
        # a geospot export: an adapter is its base model + the LoRA shape its record keeps, then its
        # weights (LocalEngine.load_adapter); full or merged weights are a transformers folder as is
        spec, record = export_spec(model)
        if record.get("export_kind") == "adapter":
            if record.get("engine", "local") != "local":
                raise ConfigError(f"model={model}: a Tinker adapter export; use it from the run folder "
                                  "(model=<run>) or through Tinker")
            lora = {k: record[k] for k in ("lora_alpha", "lora_targets", "train_vision") if k in record}
            cfg = EngineConfig(model_name=spec.base_model, engine="local",
                               **{"lora_rank": spec.lora_rank, **lora, **overrides})
            return cfg, {"adapter_path": model}
        return EngineConfig(model_name=model, engine="local", **{"lora_rank": 0, **overrides}), {}
    if (Path(model) / "adapter_config.json").is_file() and not (Path(model) / "config.json").is_file():
        raise ConfigError(f"model={model}: a PEFT adapter without geospot's record ({model}/geospot.json); pass the "
                          "run folder it was trained in, or a merged export (geospot export ... merged=true)")
    if why := run_without_weights(model):
        raise ConfigError(why)
    if is_checkpoint_path(model):
        ckpt = resolve_checkpoint(model)
        run_dir = ckpt.parent.parent
        meta = read_checkpoint(ckpt)
        run_cfg = read_config(run_dir) or {}
        # The engine state records the engine that wrote it (the local engine's state.pt,
        # the Tinker engine's tinker.json); else the run's config.json names the model.
        fields = (engine_state_fields(meta.engine_path) or _tinker_state_config(ckpt / "engine")
                  or _find_engine_fields(run_cfg.get("config", run_cfg)))
        if "model_name" not in fields:
            raise ConfigError(
                f"model={model}: cannot tell the base model of checkpoint {ckpt}: neither its engine state nor "
                f"{run_dir}/config.json names a model_name; pass the checkpoint inside its training run folder"
            )
        cfg = EngineConfig(**{**fields, **overrides})
        return cfg, {"checkpoint": ckpt, "run_dir": run_dir, "step": meta.step, "engine_path": meta.engine_path,
                     "run_config": run_cfg}
    p = Path(model)
    # a path that is not there (a hub id is owner/name: a name with more slashes is a path too, and so is
    # one whose first part is a folder here, as runs/<typo>)
    local = model.startswith((".", "/", "~")) or p.exists() or model.count("/") > 1 or (
        "/" in model and Path(model.split("/")[0]).is_dir())
    if local and not p.is_dir():
        raise ConfigError(f"model={model}: no such model folder (expected a HF model folder, a run/checkpoint folder, "
                          "a hub id, `tiny:<family>` or tinker://...)")
    if p.is_dir() and not (p / "config.json").is_file():
        held = sorted(x.name for x in p.iterdir())[:6]
        raise ConfigError(f"model={model}: this folder holds no model ({'it is empty' if not held else 'it holds '}"
                          f"{', '.join(held)}: no config.json, no run's checkpoints/, no export's geospot.json); "
                          "give a run folder, one of its checkpoints/<step>, an export or a HF model folder")
    # a base model is only sampled: no LoRA wrapper (rank 0 adds nothing until a train step)
    return EngineConfig(model_name=model, engine="local", **{"lora_rank": 0, **overrides}), {}


def check_model(model: str, base_model: str | None = None, **overrides: Any) -> None:
    """A ConfigError, before any data is read or model loaded, for a model that cannot be served: what
    engine_config_for refuses (a folder without a model, a run without a checkpoint) and, for a name
    (a hub id, tiny:…), what training's start check says (a tiny typo, a hub id offline)."""
    cfg, meta = engine_config_for(model, base_model, **overrides)
    if cfg.engine == "local" and not meta and cfg.model_name == model:
        model_problem(model, os.environ, key="model")


def load_model(model: str, base_model: str | None = None, **overrides: Any) -> LoadedModel:
    """Build the engine for `model` (see the module docstring). A run or an export of one is loaded at
    the image budget it trained at (unless `max_pixels` is given); the prompts and image shape it was
    trained with are the asker's: eval/predictor.py's Predictor asks a model as `geospot predict` does."""
    if not model:
        raise ConfigError("model= is required: a hub id, a local folder, `tiny:qwen2_5_vl:small`, a run or "
                          "checkpoint folder, or tinker://...")
    cfg, meta = engine_config_for(model, base_model, **overrides)
    if overrides.get("max_pixels") is None and ("run_dir" in meta or is_export_path(model)):
        cfg = dataclasses.replace(cfg, max_pixels=image_budget(model_spec(model)))
    engine = make_engine(cfg)
    for attempt in range(3):  # a run still training prunes old checkpoints (keep_checkpoints): then its newest
        try:
            if "engine_path" in meta:
                engine.load_state(meta["engine_path"], with_optimizer=False)
            break
        except (FileNotFoundError, ValueError):
            ckpt = meta.get("checkpoint")
            if attempt == 2 or ckpt is None or Path(ckpt).exists() or not (Path(model) / "checkpoints").is_dir():
                raise  # (a checkpoint named itself, or one still there: its own error)
            meta = engine_config_for(model, base_model, **overrides)[1]
    if "adapter_path" in meta:
        engine.load_adapter(meta["adapter_path"])
    return LoadedModel(
        engine=engine,
        model=model,
        base_model=cfg.model_name,
        checkpoint=meta.get("checkpoint"),
        run_dir=meta.get("run_dir"),
        step=meta.get("step"),
        run_config=meta.get("run_config"),
    )
