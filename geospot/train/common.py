"""What every training loop shares: the run folder, config.json, seeding, the progress
line and a minimal JSONL metrics writer.

The run folder is decided before any model is loaded, so a typo'd `log_path` or an
existing run costs seconds, not a model load."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Callable, Literal, TextIO

import numpy as np

from geospot.config import ConfigError

LogDirBehavior = Literal["ask", "resume", "delete", "raise"]

# ---------------------------------------------------------------------------------------
# Run folder


def prepare_log_dir(
    log_path: str | os.PathLike,
    behavior: LogDirBehavior = "ask",
    *,
    key: str = "behavior_if_log_dir_exists",
    ask: Callable[[str], str] | None = None,
    isatty: Callable[[], bool] | None = None,
) -> tuple[Path, bool]:
    """Create or reuse the run folder. Returns (path, resuming).

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
    if behavior == "resume":
        return path, True
    if behavior == "delete":
        shutil.rmtree(path)
        path.mkdir(parents=True)
        return path, False
    if behavior == "raise":
        raise ConfigError(
            f"log_path={str(path)!r} already holds a run; pass {key}=resume to continue it, "
            f"{key}=delete to start over, or choose another log_path"
        )
    raise ConfigError(f"{key}={behavior!r} is not one of ask, resume, delete, raise")


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


def write_config(log_dir: str | os.PathLike, kind: str, config: Any) -> dict[str, Any]:
    """Write `config.json` (the full resolved config) and return the dict written."""
    from geospot import __version__

    record = {"kind": kind, "geospot_version": __version__, "config": _jsonable(config)}
    tmp = Path(log_dir) / "config.json.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=json_default) + "\n")
    os.replace(tmp, Path(log_dir) / "config.json")
    return record


def read_config(log_dir: str | os.PathLike) -> dict[str, Any] | None:
    p = Path(log_dir) / "config.json"
    return json.loads(p.read_text()) if p.exists() else None


# ---------------------------------------------------------------------------------------
# Seeding and RNG state (the checkpoint stores it so a resumed run draws the same numbers)


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ---------------------------------------------------------------------------------------
# Progress line


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "--:--"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """One line per step: `step 12/50 | loss 1.234 | 8,123 tok/s | eta 01:23`.

    Rewrites the line in place on a terminal, prints every `every` steps otherwise
    (logs stay readable). The ETA uses steps run in *this* process only, so a resumed
    run does not count the checkpointed steps as instantaneous."""

    def __init__(self, total_steps: int, start_step: int = 0, stream: TextIO | None = None, every: int = 1) -> None:
        self.total, self.start = total_steps, start_step
        self.stream = stream if stream is not None else sys.stderr
        self.every = max(1, every)
        self.t0 = time.perf_counter()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def restart(self) -> None:
        self.t0 = time.perf_counter()

    def line(self, step: int, metrics: dict[str, float]) -> str:
        """`step` is the 0-based step just finished."""
        done = step + 1 - self.start
        elapsed = time.perf_counter() - self.t0
        eta = elapsed / done * (self.total - step - 1) if done > 0 else float("nan")
        parts = [f"step {step + 1}/{self.total}"]
        for k, v in metrics.items():
            if k.endswith("tok_per_s") or k == "tokens_per_s":
                parts.append(f"{v:,.0f} tok/s")
            elif isinstance(v, float):
                parts.append(f"{k} {v:.4g}")
            else:
                parts.append(f"{k} {v}")
        parts.append(f"eta {format_duration(eta)}")
        return " | ".join(parts)

    def update(self, step: int, metrics: dict[str, float]) -> str:
        text = self.line(step, metrics)
        last = step + 1 >= self.total
        if self.tty:
            self.stream.write("\r\033[K" + text + ("\n" if last else ""))
        elif (step + 1) % self.every == 0 or last or step == self.start:
            self.stream.write(text + "\n")
        self.stream.flush()
        return text

    def note(self, text: str) -> None:
        """A message on its own line (eval table, checkpoint) without mangling the bar."""
        self.stream.write(("\n" if self.tty else "") + text + "\n")
        self.stream.flush()


# ---------------------------------------------------------------------------------------
# Time limit (the loops' `max_seconds`)


class TimeBudget:
    """Seconds spent in training steps, against `max_seconds` (0 = no limit).

    Only the steps count (between `begin_step` and `end_step`), not the model load, the evals
    or the checkpoints; a resumed run starts from the seconds its checkpoint holds. `clock`
    is wall time unless a caller passes another (benchmarks/rl_vs_sft.py: process CPU time,
    so neighbours on a shared machine are not charged to the run)."""

    def __init__(self, max_seconds: float, spent: float = 0.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.max_seconds, self.spent, self.clock = float(max_seconds), float(spent), clock
        self._t0: float | None = None

    def begin_step(self) -> None:
        self._t0 = self.clock()

    def end_step(self) -> None:
        if self._t0 is not None:
            self.spent += self.clock() - self._t0
            self._t0 = None

    def expired(self) -> bool:
        return self.max_seconds > 0 and self.spent >= self.max_seconds

    def schedule_step(self, step: int, total_steps: int) -> int:
        """The step the lr / tau schedules are evaluated at: `step`, or, when the time spent is
        further along max_seconds than `step` is along `total_steps`, that fraction of
        `total_steps` — so a run the clock stops still finishes its decay, as a run that
        reaches max_steps does. No limit: exactly `step`."""
        if self.max_seconds <= 0:
            return step
        return max(step, min(total_steps - 1, int(total_steps * self.spent / self.max_seconds)))


# ---------------------------------------------------------------------------------------
# metrics.jsonl (written by geospot.runs.loggers.JsonlWriter): reading it, and trimming it on resume


def read_jsonl(path: str | os.PathLike) -> list[dict[str, Any]]:
    """Lines of a JSONL file; a torn last line (SIGKILL mid-write) is skipped."""
    out = []
    p = Path(path)
    if not p.exists():
        return out
    for line in p.read_text().splitlines():
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
