"""Resuming a run: a folder with a checkpoint, continued with what it was trained on.

    resume_config:        behavior_if_log_dir_exists=resume takes every key the command line does not
                          give from the run's config.json;
    check_resume:         refuses, in one sentence, a folder with no checkpoint or a change of what is
                          trained (any key outside `RESUME_MAY_CHANGE`);
    write_resumed_config: config.json keeps the config the run continues with and each resume's changes.
A resume from another folder than the run's start (config.json's `started_in`) reads the run's
saved relative paths from that folder, and a path spelled another way names the same data.

train/lifecycle.py's start_run calls them; both loops share them."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import time
from pathlib import Path
from typing import Any

from geospot.config import ConfigError
from geospot.data.spec import SpecError, parse_spec
from geospot.data.spec_paths import rebase_spec, same_data
from geospot.engines.config import ENGINE_KEYS, EngineConfig
from geospot.envs.config import unread_keys
from geospot.models.load import tiny_name
from geospot.runs.checkpoint import latest_checkpoint
from geospot.runs.folder import json_default, read_config, write_config
from geospot.runs.model_spec import start_run_path
from geospot.train.inherit import inherited_engine_fields

# The keys a resumed run may change; every other key is refused (a key added later too, until
# someone decides it belongs here), because it changes what is trained and the folder would no
# longer describe one run:
#   the model and its weights' shape: model_name, engine, lora_rank/alpha/targets, train_vision,
#     dtype, max_pixels (a checkpoint of one model is not another's start), load_checkpoint_path
#     (RL reloads its KL reference from it on every start);
#   the data and the examples built from it: data, prompt_style / env_type, prompts, decimals,
#     noise, seed (the saved cursor counts records of THAT spec in THAT order);
#   the optimisation and the reward: learning_rate, lr_schedule, batch_size, Adam,
#     loss_fn, kl_coef, reward, tau_*, ... (a different update is a different run);
#   sampler: torch and vLLM sample the same policy, but not the same numbers.
# To change any of them, start a new run from this one's weights (load_checkpoint_path).
RESUME_MAY_CHANGE = frozenset({
    # how long it runs (the lr / tau schedules stretch to the new length from the step reached)
    "max_steps", "max_seconds",
    # how it is measured: evals read the weights, they never change them (not eval_split: compare and the
    # model card say every eval of a run was read from its one eval_split)
    "eval_n", "eval_every", "eval_at_start", "eval_data", "eval_batch_size", "eval_max_tokens", "eval_temperature",
    # how often it is saved and what is kept
    "save_every", "keep_checkpoints",
    # what is logged and where (log_path: the same folder, perhaps spelled another way)
    "log_every", "log_images_every", "wandb_project", "wandb_name", "log_path", "behavior_if_log_dir_exists",
    # where and with how much memory the same computation runs (grad_accum: the same step in micro-batches)
    "device", "kv_reuse_tokens", "vllm_gpu_memory_utilization", "tinker_base_url", "grad_accum",
    # how far sampling runs ahead of training: in-flight groups too old for a smaller k are sampled
    # again with the checkpoint's weights and counted (async/stale_dropped; docs/async.md)
    "max_steps_off_policy",
})
# ... and per kind: what that loop reads for its evals only (SFT trains on the truth's answers; its
# reasoning_max_tokens is the held-out eval's budget, as eval_max_tokens is)
RESUME_MAY_CHANGE_IN = {"sft": frozenset({"reasoning_max_tokens"}), "rl": frozenset()}


def _as_saved(cfg: Any) -> dict[str, Any]:
    """The config as config.json holds it (tuples as lists, paths as strings)."""
    return json.loads(json.dumps(cfg, default=json_default))


def resume_config(cfg: Any, given: set[str], kind: str) -> tuple[Any, set[str]]:
    """behavior_if_log_dir_exists=resume: every key the command line does not give takes the run's
    saved value (its config.json), so `geospot sft log_path=runs/x behavior_if_log_dir_exists=resume`
    continues the run as it was started; a key typed is a change, which check_resume then allows
    or refuses. -> (cfg, the keys taken from the run: they count as given from here on, e.g. for
    RL's inheritance from its start run). Anything else (no such run of this kind yet): (cfg, set())."""
    if cfg.behavior_if_log_dir_exists != "resume" or not cfg.log_path:
        return cfg, set()
    try:
        record = read_config(cfg.log_path) or {}
    except (ValueError, OSError):
        return cfg, set()  # an unreadable config.json: check_resume's own sentence says so
    typed_only_the_folder = not given - {"log_path", "behavior_if_log_dir_exists"}
    if not record and typed_only_the_folder and latest_checkpoint(cfg.log_path) is None:
        # no run there: a new run of every default (the hub's 3B model, say) is not what was asked
        # (checkpoints without a config.json: check_resume says so)
        what = "is no folder" if not os.path.exists(cfg.log_path) else "holds no config.json"
        raise ConfigError(f"log_path={cfg.log_path!r} {what}, so there is no run to resume; check the path (a run "
                          "stopped before its first step kept nothing), or give the keys of a new run")
    saved = record.get("config") if record.get("kind") == kind else None
    if not isinstance(saved, dict):
        return cfg, set()
    values = {}
    for f in dataclasses.fields(cfg):
        if f.name in given or f.name not in saved:
            continue
        value, current = saved[f.name], getattr(cfg, f.name)
        if not _same_kind(value, f.default):  # a hand edit ("four" for a number): said, not a TypeError later
            kind_of = {"int": "an int", "float": "a number", "str": "a text", "bool": "true / false"}.get(
                type(f.default).__name__, f"a {type(f.default).__name__}")
            raise ConfigError(f"{Path(cfg.log_path) / 'config.json'}: {f.name}={value!r} is not {kind_of} (this "
                              f"key's default is {f.default!r}); fix it or restore it")
        values[f.name] = tuple(value) if isinstance(current, tuple) and isinstance(value, list) else value
    _rebase_moved_paths(cfg.log_path, record.get("started_in"), values)
    unread = unread_keys(dataclasses.replace(cfg, **values))  # (an older run's inherited hier_*, say)
    values = {k: v for k, v in values.items() if k not in unread}
    return dataclasses.replace(cfg, **values), set(values)


def _same_kind(value: Any, default: Any) -> bool:
    """Whether a saved value is of the kind its key's default is (None either side: any; an int where a float
    is; a JSON list where a tuple is)."""
    if value is None or default in (None, dataclasses.MISSING) or isinstance(value, type(default)):
        return True
    return (isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(default, tuple) and isinstance(value, list))


# The keys whose saved value may be a path relative to the folder the run was started in.
PATH_KEYS = ("data", "eval_data", "load_checkpoint_path", "model_name")


def _relative_targets(key: str, value: Any) -> list[str]:
    """The relative local paths a saved `key` names ("photos" in data="photos,max_side=224");
    a data spec's synthetic: and hf: parts, absolute paths and hub ids name none."""
    if not isinstance(value, str) or not value or "://" in value or value.startswith("tiny:"):
        return []
    if key in ("data", "eval_data"):
        try:
            targets = [p.target for p in parse_spec(value, infer=False) if p.kind not in ("synthetic", "hf")]
        except SpecError:
            return []
    else:
        targets = [value]
    return [t for t in targets if t and not os.path.isabs(os.path.expanduser(t))]


def _rebase_moved_paths(log_path: str, started_in: Any, taken: dict[str, Any]) -> None:
    """A resume from another folder than the run's start reads its saved relative paths (its data,
    its start weights) from the folder it was started in: `taken` is rewritten with them made
    absolute, so the run reads what it was started on, not another folder of the same name (or
    none). A data spec that cannot be rewritten (quotes, escapes) is refused in one sentence that
    says where to resume from. A hub id ("owner/name") counts only when the start folder holds a
    path of that name (the start read that, not the hub)."""
    if not isinstance(started_in, str) or os.path.realpath(started_in) == os.path.realpath(os.getcwd()):
        return
    for key in PATH_KEYS:
        value = taken.get(key)
        moved = [t for t in _relative_targets(key, value) if _exists_in(started_in, t)]
        if not moved:
            continue
        rebased = rebase_spec(value, started_in) if key in ("data", "eval_data") else os.path.join(started_in, value)
        if rebased is None:
            raise ConfigError(f"log_path={log_path!r} was started in {started_in}, and its {key}={value!r} "
                              f"is a path relative to that folder; resume from there (cd {started_in}), so the "
                              "run reads what it was started on")
        taken[key] = rebased


def _exists_in(folder: str, target: str) -> bool:
    head = os.path.join(folder, target.split("/")[0])
    return os.path.exists(head) or bool(glob.glob(head))


def same_value(key: str, saved: Any, new: Any, started_in: Any) -> bool:
    """Whether a saved config value and a new one say the same: equal, or for a path key the same
    file or folder, the saved value's relative paths read from where the run was started (the same
    text read from another folder may name another folder; a hub id is text, a tiny: name its family and size)."""
    if key == "model_name" and all(isinstance(v, str) and v.startswith("tiny:") for v in (saved, new)):
        return tiny_name(saved) == tiny_name(new)
    if key not in (*PATH_KEYS, "log_path") or not isinstance(saved, str) or not isinstance(new, str) or not isinstance(
            started_in, str):
        return saved == new
    if key == "log_path":  # the same folder, spelled from here (the resume command names it absolute)
        return os.path.realpath(os.path.join(started_in, saved)) == os.path.realpath(new)
    moved = any(_exists_in(started_in, t) for t in _relative_targets(key, saved))
    if saved == new and not moved:  # nothing there to compare (gone since): the data's own error names it
        return True
    if key in ("data", "eval_data"):
        return same_data(saved, started_in, new)
    if not moved:
        return saved == new or os.path.realpath(os.path.expanduser(saved)) == os.path.realpath(
            os.path.expanduser(new))
    return os.path.realpath(os.path.join(started_in, saved)) == os.path.realpath(os.path.expanduser(new))


def check_resume(log_dir: Path, kind: str, cfg: Any, processes: int = 1) -> dict[str, list[Any]]:
    """Refuse, with one sentence, a resume that has nothing to resume or that would change what
    is trained; -> the harmless keys that changed, {key: [saved, new]}, `processes` among them when
    the run now runs in another number (the same steps, equal to rounding: docs/distributed.md).
    Keys only one side has (a geospot version added or dropped them) are not compared."""
    key = "behavior_if_log_dir_exists"
    latest = latest_checkpoint(log_dir)
    if latest is None:
        raise ConfigError(f"log_path={str(log_dir)!r} holds no checkpoint (its start failed or it stopped before its "
                          f"first save), so there is nothing to resume; pass {key}=delete to start over, or choose "
                          "another log_path")
    try:
        saved = read_config(log_dir) or {}
    except ValueError as e:  # (a hand edit, a disk that filled while it was written)
        raise ConfigError(f"{log_dir / 'config.json'} is not valid JSON ({e}); restore it (its keys are what the run "
                          "trains with) to resume") from None
    if not saved.get("config"):  # its keys unknown: a resume would train with this command's defaults instead
        raise ConfigError(f"log_path={str(log_dir)!r} has checkpoints but no config.json, so what it trained with is "
                          f"unknown; restore its config.json to resume, or start a new run from its weights with "
                          f"load_checkpoint_path={str(log_dir)!r} and another log_path")
    if saved.get("kind", kind) != kind:  # the other loop's run: said first, in one sentence, not as key changes
        other = saved["kind"]
        raise ConfigError(f"log_path={str(log_dir)!r} is an {other.upper()} run, not an {kind.upper()} one: resume "
                          f"it with `geospot {other} log_path={log_dir} {key}=resume`, or start {kind.upper()} from "
                          f"its weights with load_checkpoint_path={log_dir} and another log_path")
    reached = int(latest.name)
    if cfg.max_steps < reached:  # (== is a finished run resumed as it was: it says `done` and trains nothing)
        raise ConfigError(f"log_path={str(log_dir)!r} is at step {reached} already, past max_steps={cfg.max_steps}: "
                          f"a resumed run goes on from its step, so it would train nothing; pass max_steps above "
                          f"{reached} to train further")
    old, new = saved.get("config", {}), _as_saved(cfg)
    # (behavior_if_log_dir_exists is how this start treats the folder, not what is trained)
    # (nor a key nothing asked reads: envs.config.unread_keys)
    if kind == "rl":  # an RL run of an older geospot saved its inherited engine keys as null: their values
        old = _inherited_resolved(old, new, saved.get("started_in"))  # then were its start run's, as now
    changed = {k: [old[k], new[k]] for k in sorted(old.keys() & new.keys() - unread_keys(cfg))
               if not same_value(k, old[k], new[k], saved.get("started_in")) and k != "behavior_if_log_dir_exists"}
    refused = {k: v for k, v in changed.items() if k not in RESUME_MAY_CHANGE | RESUME_MAY_CHANGE_IN[kind]}
    if refused:
        what = "; ".join(f"{k}: saved {a!r}, now {b!r}" for k, (a, b) in refused.items())
        raise ConfigError(f"log_path={str(log_dir)!r} cannot resume with a changed {', '.join(refused)} ({what}): "
                          "a resumed run trains what it started with; pass the saved value(s), or start a new run "
                          f"from its weights with load_checkpoint_path={str(log_dir)!r} and another log_path")
    before = saved.get("processes", 1)
    return changed if before == processes else {**changed, "processes": [before, processes]}


def _inherited_resolved(old: dict, new: dict, started_in: Any) -> dict:
    """`old` with each engine key saved as null (inherited) as its start run resolves it (the
    engine's default where the start run names none); where the start run is gone, as `new` has it
    (nothing left to compare with: its checkpoint holds the weights)."""
    nulls = [k for k in ENGINE_KEYS if k in old and old[k] is None and new.get(k) is not None]  # (null both: same)
    if not nulls:
        return old
    start = old.get("load_checkpoint_path")
    try:
        fields = inherited_engine_fields(start_run_path(start, started_in) if isinstance(start, str) else None)
    except ConfigError:
        return {**old, **{k: new.get(k) for k in nulls}}
    defaults = _as_saved(EngineConfig())
    return {**old, **{k: fields.get(k, defaults.get(k)) for k in nulls}}


def write_resumed_config(log_dir: Path, kind: str, cfg: Any, changed: dict[str, list[Any]], step: int,
                         processes: int = 1, group_seeds: bool | None = None) -> None:
    """config.json holds the config the run continues with, the processes it runs in now, and under
    `resumes` every resume that changed a key (`processes` too): the step it resumed from and
    {key: [before, after]}."""
    record = read_config(log_dir) or {}
    history = list(record.get("resumes", []))
    if changed:
        history.append({"step": step, "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "changed": changed})
    extra = {k: v for k, v in (("started_in", record.get("started_in")), ("processes", processes),
                                ("resumes", history)) if v}
    if record.get("group_seeds") is not None:  # the run's GRPO sampling scheme (lifecycle.Run.group_seeds): kept,
        extra["group_seeds"] = record["group_seeds"] or bool(group_seeds)  # or per-group from a resume that took it
    write_config(log_dir, kind, cfg, extra=extra or None)
