"""The other RunWriters: console, JSONL, wandb, and `MultiWriter` to fan one call out to all.

Training loops hold one RunWriter; `open_run_writer(run_dir)` builds the usual set
(store + metrics.jsonl + console [+ wandb]). Like the store, none of these may crash
training: `MultiWriter` catches, logs and counts a failing writer's exception."""

from __future__ import annotations

import json
import logging
import math
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from geospot.runs.writer import ImageRecord, RunWriter

log = logging.getLogger(__name__)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:.4g}"
    return str(v)


class ConsoleWriter:
    """One line per step (every `every` steps): `step 12 | reward 0.41 | median_km 830 ...`."""

    def __init__(self, every: int = 1, stream: TextIO | None = None, keys: tuple[str, ...] | None = None) -> None:
        self.every, self.stream, self.keys = max(1, every), stream, keys

    def _print(self, line: str) -> None:
        print(line, file=self.stream or sys.stdout, flush=True)

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        self._print(f"[{kind}] " + " ".join(f"{k}={_fmt(v)}" for k, v in config.items()))

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        if step % self.every:
            return
        items = [(k, metrics[k]) for k in self.keys if k in metrics] if self.keys else list(metrics.items())
        self._print(f"step {step} | " + " | ".join(f"{k} {_fmt(v)}" for k, v in items))

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        pass  # images belong in the store / dashboard, not the terminal

    def set_status(self, status: str) -> None:
        self._print(f"status: {status}")

    def close(self) -> None:
        pass


class JsonlWriter:
    """`run_dir/metrics.jsonl`: one `{"step": N, "time": t, ...metrics}` line per log_step,
    flushed per line so `tail -f` and crashed runs keep everything logged so far."""

    def __init__(self, run_dir: str | Path, filename: str = "metrics.jsonl") -> None:
        self.path = Path(run_dir) / filename
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = self.path.open("a", encoding="utf-8")

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        pass  # the config lives in the store and in config.json (written by the trainer)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in metrics.items()}
        self._f.write(json.dumps({"step": int(step), "time": time.time(), **clean}, default=str) + "\n")
        self._f.flush()

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        pass

    def set_status(self, status: str) -> None:
        pass

    def close(self) -> None:
        self._f.close()


class WandbWriter:
    """Weights & Biases, if installed (`pip install wandb`). Images go as one table per
    logged step: id, truth, mean distance and reward of the group."""

    def __init__(self, project: str, name: str | None = None, **init_kwargs: Any) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ImportError("wandb logging needs the wandb package: `pip install wandb` "
                              "(or leave wandb_project unset)") from e
        self._wandb = wandb
        self._run = wandb.init(project=project, name=name, **init_kwargs)

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        self._run.config.update({"kind": kind, **config}, allow_val_change=True)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._run.log(dict(metrics), step=int(step))

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        rows = []
        for r in records:
            d = [x.distance_km for x in r.rollouts if x.distance_km is not None]
            rows.append([r.image_id, r.lat, r.lon, sum(d) / len(d) if d else None,
                         sum(x.reward for x in r.rollouts) / max(1, len(r.rollouts))])
        table = self._wandb.Table(columns=["image_id", "lat", "lon", "mean_km", "mean_reward"], data=rows)
        self._run.log({f"{split}/images": table}, step=int(step))

    def set_status(self, status: str) -> None:
        self._run.summary["status"] = status

    def close(self) -> None:
        self._run.finish()


class MultiWriter:
    """Fans each call out to every writer; one failing writer is logged and counted
    (`failures[writer_class]`) and never stops the others or the caller."""

    def __init__(self, *writers: RunWriter) -> None:
        self.writers = list(writers)
        self.failures: dict[str, int] = {}

    def _each(self, method: str, *args: Any, **kwargs: Any) -> None:
        for w in self.writers:
            try:
                getattr(w, method)(*args, **kwargs)
            except Exception:
                name = type(w).__name__
                self.failures[name] = self.failures.get(name, 0) + 1
                log.warning("%s.%s failed (%d failures)", name, method, self.failures[name], exc_info=True)

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        self._each("log_config", kind, config)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self._each("log_step", step, metrics)

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        self._each("log_images", step, records, split)

    def set_status(self, status: str) -> None:
        self._each("set_status", status)

    def close(self) -> None:
        self._each("close")


def open_run_writer(run_dir: str | Path, *, console_every: int = 1, console: bool = True, jsonl: bool = True,
                    wandb_project: str | None = None, wandb_name: str | None = None) -> MultiWriter:
    """The usual writer set for a run folder: RunStore (+ metrics.jsonl, console, wandb)."""
    from geospot.runs.store import RunStore

    writers: list[RunWriter] = [RunStore(run_dir)]
    if jsonl:
        writers.append(JsonlWriter(run_dir))
    if console:
        writers.append(ConsoleWriter(every=console_every))
    if wandb_project:
        writers.append(WandbWriter(wandb_project, name=wandb_name or Path(run_dir).name))
    return MultiWriter(*writers)
