"""The run folder on disk: creating it (or resuming / refusing an existing one), config.json,
and metrics.jsonl (reading it, trimming it on resume). Training writes it, eval and the
dashboard read it; neither needs the other.

The run folder is decided before any model is loaded, so a typo'd `log_path` or an
existing run costs seconds, not a model load."""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np

from geospot import __version__
from geospot.config import ConfigError
from geospot.runs.store import STORE_FILE, RunReader

LogDirBehavior = Literal["ask", "resume", "delete", "raise"]

# ---------------------------------------------------------------------------------------
# Run folder


# A run folder's claim: the process that starts or resumes a run holds an exclusive lock on the folder
# (flock on the directory itself: nothing is written into it) from before it decides resume / delete
# until the run ends, so a second process started seconds later is refused at once. Before, both
# resumed -- or one deleted the folder under the other -- because a run says `running` only once its
# model has loaded. `delete` empties the folder rather than replacing it, so the lock holds through it.
_CLAIMS: dict[str, int] = {}  # resolved folder -> the lock's file descriptor, this process's


def claim_run_folder(log_path: str | os.PathLike) -> Path:
    """Make `log_path` (if missing) and lock it for this process, or a ConfigError saying another
    process holds it. Re-entrant: a process claims a folder once (a resume in the same process,
    the demo's stages)."""
    path = Path(log_path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"log_path={str(path)!r} is a file, not a folder; pick another log_path")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:  # (read-only, no permission, a file where a parent folder should be)
        raise ConfigError(f"log_path={str(path)!r} cannot be made ({e.strerror or e}); pick a folder you can write "
                          "to") from None
    if not os.access(path, os.W_OK):  # said now, not when config.json is written after the model has loaded
        way = (f"start a new run from its weights with load_checkpoint_path={str(path)!r} and another log_path"
               if latest_checkpoint(path) else "pick another log_path")
        raise ConfigError(f"log_path={str(path)!r} is read-only to you; make it writable, or {way}")
    key = str(path.resolve())
    if key in _CLAIMS:
        return path
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if not isinstance(e, BlockingIOError):  # a file system without locks: the store's live-writer check remains
            return path
        raise ConfigError(f"log_path={str(path)!r} is being started or trained right now by another process; wait "
                          "for it to end or stop it (Ctrl-C), or choose another log_path") from None
    _CLAIMS[key] = fd
    return path


def release_run_folder(log_path: str | os.PathLike) -> None:
    """Let another process start or resume the run in `log_path` (the run ended here)."""
    fd = _CLAIMS.pop(str(Path(log_path).resolve()), None)
    if fd is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)  # (a child forked meanwhile holds a copy of the descriptor)
        os.close(fd)


CHECKPOINTS = "checkpoints"


def list_checkpoints(log_dir: str | os.PathLike) -> list[Path]:
    """A run's complete checkpoints (checkpoints/<step> with its state.json), oldest first
    (temporary and torn folders are skipped)."""
    root = Path(log_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and (p / "state.json").exists()]
    return sorted(found, key=lambda p: int(p.name))


def latest_checkpoint(log_dir: str | os.PathLike) -> Path | None:
    ckpts = list_checkpoints(log_dir)
    return ckpts[-1] if ckpts else None


def prepare_log_dir(
    log_path: str | os.PathLike,
    behavior: LogDirBehavior = "ask",
    *,
    key: str = "behavior_if_log_dir_exists",
    ask: Callable[[str], str] | None = None,
    isatty: Callable[[], bool] | None = None,
    kind: str | None = None,
) -> tuple[Path, bool]:
    """Create or reuse the run folder. Returns (path, resuming). `kind` (sft / rl): the command's, whose own
    start killed before its first checkpoint `resume` starts over.

    An existing non-empty folder is resumed, deleted or refused as `behavior` says.
    `ask` prompts only when stdin is a terminal: in a job script, a pipe or a test
    there is nobody to answer, so it refuses with the message that names the key."""
    path = Path(log_path)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"log_path={str(path)!r} is a file, not a folder; pick another log_path")
    if not path.exists() or not any(path.iterdir()):
        path.mkdir(parents=True, exist_ok=True)
        return path, False
    if behavior == "ask":
        interactive = (isatty or sys.stdin.isatty)()
        if interactive:
            answer = (ask or input)(f"Run folder {path} exists. [r]esume, [d]elete, or [q]uit? ").strip().lower()
            behavior = {"r": "resume", "d": "delete"}.get(answer[:1], "raise")
        else:
            behavior = "raise"
    if behavior == "resume" and kind and latest_checkpoint(path) is None and _never_saved_run(path, kind):
        # a start stopped before its first save (killed, preempted): nothing to resume and nothing to lose, so a
        # scheduler's `resume` re-run starts it over (the command's keys are its config.json's: train/resume.py)
        print(f"note: log_path={str(path)!r} holds a start that stopped before its first checkpoint: starting it over",
              file=sys.stderr)
        behavior = "delete"
    if behavior == "resume":
        return path, True
    if behavior == "delete":  # emptied, not replaced: the claim this process holds is on the folder itself
        for p in path.iterdir():
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        return path, False
    if behavior == "raise":
        raise ConfigError(
            f"log_path={str(path)!r} already holds a run; pass {key}=resume to continue it, "
            f"{key}=delete to start over, or choose another log_path"
        )
    raise ConfigError(f"{key}={behavior!r} is not one of ask, resume, delete, raise")


RUN_FILES = {"config.json", "metrics.jsonl", "store.sqlite", "store.sqlite-shm", "store.sqlite-wal", "thumbs",
             "checkpoints"}  # what a run writes into its folder before its first checkpoint (eval/ comes after one)


def _never_saved_run(path: Path, kind: str) -> bool:
    """A `kind` run's folder (its config.json says so) holding nothing but what a run writes before its first
    checkpoint, and not a finished run (its checkpoints deleted since): emptying it loses nothing. Anything
    else -- other files, another kind of run -- is left for check_resume to refuse."""
    try:
        saved = (read_config(path) or {}).get("kind")
    except ValueError:
        return False
    if saved != kind or not {p.name for p in path.iterdir()} <= RUN_FILES:
        return False
    return not (path / STORE_FILE).exists() or RunReader(path).status().get("stored") != "done"


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {k: _jsonable(v) for k, v in dataclasses.asdict(x).items()}
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    return x


def json_default(x: Any) -> Any:
    """`json.dumps(..., default=json_default)` for numpy scalars/arrays and paths."""
    out = _jsonable(x)
    if out is x:
        raise TypeError(f"{type(x).__name__} is not JSON serialisable")
    return out


def write_config(log_dir: str | os.PathLike, kind: str, config: Any,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Write `config.json` (the full resolved config, plus `extra` top-level entries such as a
    resumed run's `resumes`) and return the dict written."""

    record = {"kind": kind, "geospot_version": __version__, "config": _jsonable(config), **(extra or {})}
    tmp = Path(log_dir) / "config.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=json_default) + "\n")
    os.replace(tmp, Path(log_dir) / "config.json")
    return record


def read_config(log_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(log_dir) / "config.json"
    return json.loads(p.read_text()) if p.exists() else None


# ---------------------------------------------------------------------------------------
# metrics.jsonl (written by geospot.runs.loggers.JsonlWriter): reading it, and trimming it on resume


def weights_mode_from_umask(folder: str | os.PathLike) -> None:
    """Give the weights files in `folder` the mode any new file gets under the umask (usually
    -rw-r--r--). safetensors writes its files owner-only (0600), so an export or checkpoint shared
    with a colleague or a group was readable except for its weights. The mode is read from a file
    created here, not from os.umask (setting the umask to read it is not thread-safe)."""
    folder = Path(folder)
    probe = folder / f".mode-probe-{os.getpid()}"
    probe.touch()
    try:
        mode = probe.stat().st_mode & 0o777
    finally:
        probe.unlink()
    for f in folder.glob("*.safetensors"):
        if f.stat().st_mode & 0o777 != mode:
            f.chmod(mode)


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Lines of a JSONL file; a torn last line (SIGKILL mid-write) or a line of damaged bytes is
    skipped, never an error: a run folder stays readable whatever happened to one line."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_jsonl(path: str | os.PathLike, after_step: int) -> None:
    """Drop the lines whose `step` is past `after_step` (and torn lines): a resumed run
    rewinds its metrics to its checkpoint. No file, nothing to do."""
    p = Path(path)
    if not p.exists():
        return
    keep = [r for r in read_jsonl(p) if r.get("step", -1) <= after_step]
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, default=json_default) + "\n" for r in keep))
    os.replace(tmp, p)
