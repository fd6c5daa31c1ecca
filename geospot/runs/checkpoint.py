"""Checkpoints: `<run>/checkpoints/<step>/` holds everything a resumed run needs to
continue as if it had never stopped:

  engine/      the engine's own state (weights or adapter + optimizer), via engine.save_state
  state.json   step, data cursor (the stream's state_dict), loop state (anything the loop
               keeps between steps), and where the engine state lives
  rng.pt       python / numpy / torch RNG states
  extra.pt     optional: objects the loop keeps that JSON cannot hold (async GRPO's batches
               sampled ahead of training), read back with read_extra

The folder is written under a temporary name and renamed at the end: a run killed while
saving leaves a `.tmp-*` folder that `latest_checkpoint` ignores, never a half checkpoint.
`<step>` is the number of optimizer steps done, i.e. the step the resumed run starts at."""

from __future__ import annotations

import errno
import json
import os
import pickle
import random
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError

from geospot.config import ConfigError
from geospot.runs.folder import CHECKPOINTS, json_default, latest_checkpoint, list_checkpoints  # noqa: F401

# (the listing needs no torch: runs/folder.py, which compare and the run-is-the-model reader use too)


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@dataclass
class Checkpoint:
    path: Path
    step: int  # optimizer steps done; the resumed loop starts here
    engine_path: str  # what to pass to engine.load_state
    data_state: dict[str, Any] = field(default_factory=dict)
    loop_state: dict[str, Any] = field(default_factory=dict)


def _fsync_files(folder: Path) -> None:
    for f in folder.rglob("*"):
        if f.is_file():
            with open(f, "rb") as h:
                os.fsync(h.fileno())


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_checkpoint(
    log_dir: str | os.PathLike,
    step: int,
    engine: Any,
    *,
    data_state: dict[str, Any] | None = None,
    loop_state: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write checkpoints/<step>/ atomically and return its path.

    Call it after the optimizer step and after anything else that consumes randomness
    at this step (eval), so the saved RNG is the one the next step starts from."""
    root = Path(log_dir) / CHECKPOINTS
    root.mkdir(parents=True, exist_ok=True)
    final = root / str(step)
    for stale in list(root.glob(".tmp-*")) + list(root.glob(".old-*")):  # left by a run killed mid-save
        shutil.rmtree(stale, ignore_errors=True)
    tmp = root / f".tmp-{step}-{os.getpid()}"
    tmp.mkdir()
    try:
        return _write(root, final, tmp, step, engine, data_state, loop_state, extra, keep_last)
    except (OSError, RuntimeError, SafetensorError) as e:  # torch says a full disk as "unexpected pos", safetensors
        shutil.rmtree(tmp, ignore_errors=True)  # as its own error ("os error 28"): no errno on either
        free = shutil.disk_usage(root).free
        n = next((k for k in NO_ROOM if getattr(e, "errno", None) == k or f"os error {k})" in str(e)), None)
        if n is None and free >= 2**26:
            raise
        last = latest_checkpoint(root.parent)
        then = f"its last whole checkpoint is step {last.name}" if last else "no checkpoint was saved yet"
        fix = "raise the file-size limit (ulimit -f)" if n == errno.EFBIG else "free space"
        raise ConfigError(f"checkpoint {step} could not be written in {root} ({os.strerror(n or errno.ENOSPC)}; "
                          f"{free // 2**20} MB free there); {fix}, then resume ({then})") from None


NO_ROOM = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a full disk, a quota, a file-size limit (ulimit -f)


def _write(root: Path, final: Path, tmp: Path, step: int, engine: Any, data_state: dict[str, Any] | None,
           loop_state: dict[str, Any] | None, extra: dict[str, Any] | None, keep_last: int | None) -> Path:
    returned = str(engine.save_state(str(tmp / "engine")))
    # A local engine returns a path inside tmp/; store it relative so the rename keeps it
    # valid. A remote engine (Tinker) returns its own URI, stored as is.
    engine_path = os.path.relpath(returned, tmp) if returned.startswith(str(tmp)) else returned
    state = {
        "step": int(step),
        "engine_path": engine_path,
        "data_state": data_state or {},
        "loop_state": loop_state or {},
    }
    torch.save(rng_state(), tmp / "rng.pt")
    if extra:
        torch.save(extra, tmp / "extra.pt")
    _fsync_files(tmp)  # the weights on disk before state.json marks the folder whole (a power cut left them empty)
    with open(tmp / "state.json", "w") as f:  # written last: its presence marks a whole folder
        json.dump(state, f, indent=1, default=json_default)
        f.flush()
        os.fsync(f.fileno())
    _fsync_dir(tmp)

    if final.exists():  # re-saving a step (e.g. the final step after a resume at it)
        old = root / f".old-{step}-{os.getpid()}"
        os.rename(final, old)
        os.rename(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, final)
    _fsync_dir(root)
    if keep_last:
        prune_checkpoints(root.parent, keep_last)
    return final


def prune_checkpoints(log_dir: str | os.PathLike, keep_last: int) -> None:
    for p in list_checkpoints(log_dir)[:-keep_last]:
        shutil.rmtree(p, ignore_errors=True)


def read_checkpoint(path: str | os.PathLike) -> Checkpoint:
    """The checkpoint's metadata, without touching any engine or RNG."""
    path = Path(path)
    state_file = path / "state.json"
    if not state_file.exists():
        raise FileNotFoundError(f"{path} is not a checkpoint folder (no state.json); pass a checkpoints/<step> folder")
    try:
        state = json.loads(state_file.read_text())
        engine_path = state["engine_path"]
    except (ValueError, KeyError, TypeError) as e:
        raise damaged(path, state_file, e) from None
    if "://" not in engine_path and not os.path.isabs(engine_path):
        engine_path = str(path / engine_path)
    return Checkpoint(path, int(state["step"]), engine_path, state.get("data_state", {}), state.get("loop_state", {}))


def load_checkpoint(
    path: str | os.PathLike, engine: Any | None = None, *, with_optimizer: bool = True, restore_rng: bool = True
) -> Checkpoint:
    """Restore the engine (weights + optimizer) and the RNG from `path`; returns the
    metadata so the loop can restore its data cursor and its own state."""
    ckpt = read_checkpoint(path)
    if engine is not None:
        engine.load_state(ckpt.engine_path, with_optimizer=with_optimizer)
    if restore_rng and (ckpt.path / "rng.pt").exists():
        try:
            set_rng_state(torch.load(ckpt.path / "rng.pt", weights_only=False))
        except UNREADABLE as e:
            raise damaged(ckpt.path, ckpt.path / "rng.pt", e) from None
    return ckpt


# what a file cut short or emptied raises as it is read (safetensors' own error is a plain Exception subclass);
# not OSError: a file this user may not read, or a network disk's hiccup, is no damage to delete
UNREADABLE = (ValueError, RuntimeError, EOFError, pickle.UnpicklingError, SafetensorError)


def damaged(checkpoint: Path, file: Path, error: BaseException) -> ConfigError:
    """One sentence for a checkpoint whose `file` does not read (cut short, emptied by a full disk or a
    power cut, edited): which, and the way on (the step before it, where there is one)."""
    run = checkpoint.parent.parent if checkpoint.parent.name == CHECKPOINTS else None
    earlier = [p for p in list_checkpoints(run) if int(p.name) < int(checkpoint.name)] if run and \
        checkpoint.name.isdigit() else []
    way = (f"delete {checkpoint} and its run goes on from step {earlier[-1].name}" if earlier
           else "it holds the only copy of these weights")
    empty = file.is_file() and file.stat().st_size == 0
    why = "it is empty" if empty else f"{type(error).__name__}: {str(error)[:120]}"
    return ConfigError(f"{file} is damaged ({why}); {way}")


def read_extra(path: str | os.PathLike, key: str) -> Any:
    """`extra[key]` as save_checkpoint stored it; None if the checkpoint has no such entry."""
    f = Path(path) / "extra.pt"
    return torch.load(f, weights_only=False).get(key) if f.exists() else None  # our own pickle, not a download


def resolve_checkpoint(path: str | os.PathLike) -> Path:
    """A run folder or a checkpoint folder -> the checkpoint folder (latest of a run)."""
    p = Path(path)
    if (p / "state.json").exists():
        return p
    latest = latest_checkpoint(p)
    if latest is None and not p.exists():
        where = "" if p.is_absolute() else f" (a relative path is read from the current folder, {os.getcwd()})"
        raise FileNotFoundError(f"{p}: no such folder{where}")
    if latest is None:
        raise FileNotFoundError(f"{p} holds no checkpoint (expected {p}/checkpoints/<step>/state.json)")
    return latest
