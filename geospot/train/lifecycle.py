"""The run lifecycle both loops share, one meaning per knob.

    start_run:   run folder (resume / delete / refuse), data, held-out images, geocoder, start
                 weights and wandb checked BEFORE the model loads (a typo costs seconds, and a
                 fresh folder is removed again); config.json; seed; the engine; the start weights
                 (and the KL reference); a resumed run's checkpoint (weights, optimizer, RNG, data
                 cursor, loop state, seconds spent); the writer.
    due:         the eval / checkpoint cadence: every N steps and at the end; 0 = only at the end.
    save:        a checkpoint with the data cursor and the loop's state.
    finishing:   the run ends `done`, or `failed` if anything escapes; writer and stream closed.
    TimeBudget:  `max_seconds`, counted over training steps only.

The keys every loop has mean the same in both (`RUN_HELP`) and are checked by one validator
(`validate_run`); each loop validates its own keys after it."""

from __future__ import annotations

import contextlib
import importlib.util
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geospot import data as gdata
from geospot import engines
from geospot.config import ConfigError, require, to_dict
from geospot.engines.start_checks import check_start
from geospot.eval.geocoding import geocoder_for
from geospot.runs.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    read_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
)
from geospot.runs.folder import prepare_log_dir, truncate_jsonl, write_config
from geospot.runs.loggers import open_run_writer
from geospot.train.common import seed_everything

# One meaning per knob, shared by SFTConfig and RLConfig (their defaults may differ).
RUN_HELP = {
    "load_checkpoint_path": "start from these weights with a fresh optimizer at step 0: an SFT run folder, its "
                            "checkpoints/<step> folder, or a tinker:// path (a resumed run loads its own checkpoint)",
    "eval_n": "held-out images per eval (0 = no eval)",
    "eval_every": "held-out eval every N steps and at the end (0 = only at the end; eval_n=0 = never)",
    "eval_at_start": "also evaluate the starting model first (the baseline row)",
    "save_every": "checkpoint every N steps and at the end (0 = only at the end)",
    "keep_checkpoints": "how many of the latest checkpoints to keep (0 = all)",
    "max_steps": "optimizer steps",
    "max_seconds": "also stop after this many seconds of training steps (not load, evals, checkpoints), ending as at "
                   "max_steps; schedules then follow the time; 0 = no limit (docs/design.md)",
    "behavior_if_log_dir_exists": "when log_path holds a run: `resume` from its last checkpoint, `delete` it, "
                                  "`raise`, or `ask` (a prompt on a terminal; `raise` otherwise)",
    "seed": "seed of data order, sampling and initialisation",
    "wandb_project": "also log to this Weights & Biases project (needs `pip install wandb`)",
    "wandb_name": "W&B run name (default: the run folder's name)",
}


def validate_run(cfg: Any) -> None:
    """The checks of the keys both loops share; each loop's `validate` calls it first."""
    require(cfg, cfg.max_steps >= 1, "max_steps", "must be >= 1")
    require(cfg, 0 <= cfg.max_seconds < float("inf"), "max_seconds", "must be >= 0 (0 = no time limit)")
    for key in ("eval_n", "eval_every", "save_every", "keep_checkpoints"):
        require(cfg, getattr(cfg, key) >= 0, key, "must be >= 0")
    require(cfg, cfg.batch_size >= 1, "batch_size", "must be >= 1")
    require(cfg, cfg.learning_rate > 0 and cfg.learning_rate < float("inf"), "learning_rate",
            "must be a positive number, e.g. learning_rate=2e-4")


def due(every: int, done: int, last: bool) -> bool:
    """Whether an eval / checkpoint is due after `done` steps: every N steps and at the end;
    0 = only at the end."""
    return last or (every > 0 and done % every == 0)


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
# Inputs: everything a run can get wrong in its config, checked before the model loads


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
    eval_spec = cfg.eval_data or cfg.data
    eval_key = "eval_data" if cfg.eval_data else "data"
    held_out = []
    if cfg.eval_n:
        held_out = wrap(eval_key, eval_spec, lambda: gdata.load_samples(eval_spec, split="val", n=cfg.eval_n))
    return stream, list(held_out), geocoder_for(eval_spec)


def initial_weights(path: str | None) -> str | None:
    """The engine state a fresh run starts from (`load_checkpoint_path`), found before the
    model loads so a typo costs seconds."""
    if not path or "://" in path:
        return path
    try:
        return read_checkpoint(resolve_checkpoint(path)).engine_path
    except FileNotFoundError as e:
        raise ConfigError(f"load_checkpoint_path={path!r}: {e}") from None


def open_inputs(cfg: Any, log_dir: Path) -> tuple[Any, list[Any], Any, str | None]:
    """(train stream, held-out samples, geocoder, initial weights). On a ConfigError the fresh,
    still-empty run folder is removed, so a typo leaves nothing behind."""
    try:
        stream, held_out, geocoder = open_data(cfg)
        init_weights = initial_weights(cfg.load_checkpoint_path)
        check_start(getattr(cfg, "engine", None), getattr(cfg, "model_name", None), cfg.load_checkpoint_path)
        if cfg.wandb_project and importlib.util.find_spec("wandb") is None:
            raise ConfigError(
                f"wandb_project={cfg.wandb_project!r} needs the wandb package: `pip install wandb` "
                "(or leave wandb_project unset)"
            )
    except ConfigError:
        if not any(log_dir.iterdir()):
            log_dir.rmdir()
        raise
    return stream, held_out, geocoder, init_weights


def make_writer(log_dir: Path, cfg: Any, start_step: int) -> Any:
    """The run store + metrics.jsonl (+ wandb) through one RunWriter. A resumed run first
    drops the metrics lines past its checkpoint, so the file reads like one run."""
    truncate_jsonl(log_dir / "metrics.jsonl", start_step)
    return open_run_writer(log_dir, console=False, wandb_project=cfg.wandb_project, wandb_name=cfg.wandb_name)


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """What a loop holds from start to finish."""

    cfg: Any
    log_dir: Path
    stream: Any
    held_out: list[Any]
    geocoder: Any
    engine: Any
    writer: Any
    budget: TimeBudget
    start_step: int = 0  # optimizer steps already done (a resumed run's checkpoint)
    loop_state: dict[str, Any] = field(default_factory=dict)  # what the loop saved with that checkpoint
    checkpoint: Path | None = None  # the checkpoint a resumed run started from (its extra.pt: runs/checkpoint.py)
    own_writer: bool = True

    def steps(self) -> Iterator[int]:
        """The 0-based steps left to run, each timed by the budget until `end_step`; stops at
        max_steps, or before a step when a time-limited run (e.g. a resumed one) has no time left."""
        for step in range(self.start_step, self.cfg.max_steps):
            if self.budget.expired():
                return
            self.budget.begin_step()
            yield step

    def end_step(self, done: int) -> bool:
        """Stop timing the step; whether it was the last (the time limit ends a run as max_steps does)."""
        self.budget.end_step()
        return done == self.cfg.max_steps or self.budget.expired()

    def save(self, done: int, loop_state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """checkpoints/<done>/ with the data cursor, the loop's state and the seconds spent (and
        `extra`: objects JSON cannot hold, e.g. async GRPO's batches sampled ahead)."""
        return save_checkpoint(
            self.log_dir,
            done,
            self.engine,
            data_state=self.stream.state_dict(),
            loop_state={**loop_state, "train_seconds": self.budget.spent},
            extra=extra,
            keep_last=self.cfg.keep_checkpoints or None,
        )


@dataclass
class RunResult:
    """What both loops return."""

    log_dir: Path
    steps: int  # optimizer steps done
    metrics: dict[str, float]  # the last step's (RL: with the last eval's under `eval/`)
    eval_history: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> held-out metrics

    @property
    def final_loss(self) -> float:
        return float(self.metrics.get("loss", float("nan")))


def start_run(
    cfg: Any,
    kind: str,
    log_path: str,
    engine_config: Any,
    *,
    writer: Any = None,
    set_reference: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    stderr: Any = None,
) -> Run:
    """Everything before the first step (see the module docstring). `set_reference`: load the
    start weights even when resuming and freeze them as the KL reference."""
    log_dir, resuming = prepare_log_dir(log_path, cfg.behavior_if_log_dir_exists)
    stream, held_out, geocoder, init_weights = open_inputs(cfg, log_dir)
    write_config(log_dir, kind, cfg)
    seed_everything(cfg.seed)

    engine = engines.make_engine(engine_config)
    ckpt_dir = latest_checkpoint(log_dir) if resuming else None
    if init_weights and (ckpt_dir is None or set_reference):
        engine.load_state(init_weights, with_optimizer=False)
    if set_reference:
        engine.set_reference()  # KL to where this run started (the SFT policy), not the untrained base
    run = Run(cfg, log_dir, stream, held_out, geocoder, engine, writer, TimeBudget(cfg.max_seconds, clock=clock))
    if ckpt_dir is not None:
        ckpt = load_checkpoint(ckpt_dir, engine, with_optimizer=True)
        stream.load_state_dict(ckpt.data_state)
        run.start_step, run.loop_state, run.checkpoint = ckpt.step, dict(ckpt.loop_state), ckpt_dir
        run.budget.spent = float(ckpt.loop_state.get("train_seconds", 0.0))
        print(f"resuming {log_dir} from step {ckpt.step}", file=stderr or sys.stderr)
    if writer is None:
        run.writer = make_writer(log_dir, cfg, run.start_step if ckpt_dir is not None else -1)
    run.own_writer = writer is None
    run.writer.log_config(kind, to_dict(cfg))
    return run


@contextlib.contextmanager
def finishing(writer: Any, stream: Any, close_writer: bool = True):
    """The loop runs inside: the run ends `done`, or `failed` if anything escapes (the
    dashboard shows a crashed run as failed, not as running); the writer and the data
    stream's worker threads are closed either way."""
    try:
        yield
        writer.set_status("done")
    except BaseException:
        writer.set_status("failed")
        raise
    finally:
        if close_writer:
            writer.close()
        stream.close()
