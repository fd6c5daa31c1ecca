"""Checks a run makes before anything slow: what would otherwise fail only after the data is
opened or a model is half loaded, each as one ConfigError sentence naming the key and the fix."""

from __future__ import annotations

import os

from geospot.config import TRUE_WORDS, ConfigError
from geospot.engines.tinker_engine import GeospotTinkerError, check_api_key
from geospot.runs.model_spec import export_spec, is_export_path, is_run_path


def check_start(engine: str | None, model_name: str | None, load_checkpoint_path: str | None,
                env: dict[str, str] | None = None) -> None:
    """What would otherwise fail only after data is opened or a model is half loaded, checked
    first, each as one ConfigError sentence naming the key and the fix: a Tinker key for
    engine=tinker, a tinker:// start with engine=local, a local model that is neither a folder
    nor obtainable from the hub (or its cache when HF_HUB_OFFLINE is set). None = inherited
    (RL from its SFT run): only the tinker:// start is checked then (no run to inherit from)."""
    env = os.environ if env is None else env
    if engine == "tinker":
        try:
            check_api_key(env)
        except GeospotTinkerError as e:
            raise ConfigError(str(e)) from None
    # engine None: nothing given, and a tinker:// path is no run folder to inherit one from (the local
    # engine would take it and fail on it after the model loads)
    if engine in ("local", None) and load_checkpoint_path and load_checkpoint_path.startswith("tinker://"):
        which = "engine=local" if engine == "local" else "the local engine (the default)"
        raise ConfigError(f"load_checkpoint_path={load_checkpoint_path!r} is weights saved on the Tinker service, "
                          f"which {which} cannot load; add engine=tinker (and model_name=<its base model>) to train on "
                          "the service from them")
    if model_name and (problem := export_problem("model_name", model_name)):
        raise ConfigError(problem)
    if engine == "local" and model_name is not None:
        model_problem(model_name, env)


def export_problem(key: str, path: str) -> str | None:
    """Why an export folder cannot start training as `key` (None = it can, or it is no export): an
    adapter export is no whole model and no engine state, and a full or merged one is a model, not
    a checkpoint. Each sentence names the key that takes it."""
    if not is_export_path(path):
        return None
    try:
        record = export_spec(path)[1]
    except FileNotFoundError:  # not a geospot export record after all: what reads it next says so
        return None
    run = record.get("source_run") or "<its run>"
    if record.get("export_kind") == "adapter":
        return (f"{key}={path!r} is a LoRA adapter export, not a whole model; to train on from its weights give its "
                f"run: load_checkpoint_path={run} (or export that run with merged=true and pass "
                "model_name=<that folder>)")
    if key == "load_checkpoint_path":
        return (f"load_checkpoint_path={path!r} is an export ({record.get('export_kind')} weights: a whole model), "
                f"not a checkpoint; pass model_name={path} to train on from it, or load_checkpoint_path={run}")
    return None


def model_problem(name: str, env: dict[str, str] | os._Environ, key: str = "model_name") -> None:
    """ConfigError unless `name` is tiny:…, a local folder, or a hub repo we can get; the sentence
    names it as `key` (eval / predict call it model=)."""
    if name.startswith("tiny:"):  # built offline in seconds: only its family and size can be wrong
        from geospot.models.tiny import FAMILIES, SIZES

        family, _, size = name[len("tiny:"):].partition(":")
        if family not in FAMILIES or (size and size not in SIZES):
            raise ConfigError(f"{key}={name!r}: the tiny offline models are tiny:<{'|'.join(FAMILIES)}>"
                              f"[:<{'|'.join(SIZES)}>], e.g. tiny:qwen2_5_vl")
        return
    path = os.path.expanduser(name)
    if not name.strip():
        raise ConfigError(f"{key}= is empty; give a hub id (owner/name), a model folder, or tiny:qwen2_5_vl offline")
    if os.path.isdir(path):
        if is_run_path(path):  # a run's weights are not a model folder: they start a run
            raise ConfigError(f"{key}={name!r} is a training run, not a model folder; to train on from its weights "
                              f"pass load_checkpoint_path={name} (its model comes with it)")
        if not os.path.isfile(os.path.join(path, "config.json")):
            held = sorted(os.listdir(path))[:6]
            raise ConfigError(f"{key}={name!r} holds no model ({'it is empty' if not held else 'it holds '}"
                              f"{', '.join(held)}: no config.json); give a HF model folder, a hub id or "
                              "tiny:qwen2_5_vl")
        return
    if os.path.exists(path) or name.startswith(("/", "./", "../", "~")) or name.count("/") != 1:
        raise ConfigError(f"{key}={name!r} is not a model folder (no such folder) nor a hub id like "
                          "owner/name; pass a folder holding config.json, a hub id, or tiny:qwen2_5_vl offline")
    # lazy: huggingface_hub is only needed for hub models
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        raise ConfigError(f"{key}={name!r} is not a valid hub id (owner/name) nor a local folder") from None
    if isinstance(cached, str):
        return
    if env.get("HF_HUB_OFFLINE", "").lower() in TRUE_WORDS:
        raise ConfigError(f"{key}={name!r} is neither a local folder nor in the Hugging Face cache, and "
                          "HF_HUB_OFFLINE is set; unset it to download the model, pass a local folder, or use "
                          f"{key}=tiny:qwen2_5_vl offline")
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=30)
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ConfigError(f"{key}={name!r} is neither a local folder nor a model on the hub you can read "
                          f"({type(e).__name__}); check the spelling, or set HF_TOKEN for a private or gated "
                          "model") from None
    except Exception as e:  # noqa: BLE001 -- any network failure: say so in one sentence
        raise ConfigError(f"{key}={name!r} is not a local folder and the Hugging Face hub could not be "
                          f"reached ({type(e).__name__}); check the network, or pass a local folder") from None


def random_tiny(name: str | None) -> bool:
    """A tiny:<family>[:<size>] model that builds, or a folder `geospot model tiny --out` wrote (its
    geospot_tiny.json): random weights (a wrong name is its own sentence, model_problem's, with no
    note before it)."""
    if os.path.isfile(os.path.join(os.path.expanduser(str(name or "")), "geospot_tiny.json")):
        return True
    if not str(name or "").startswith("tiny:"):
        return False
    try:
        model_problem(str(name), {})
    except ConfigError:
        return False
    return True
