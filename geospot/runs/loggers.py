"""The other RunWriters: JSONL, wandb, and `MultiWriter` to fan one call out to all.

Training loops hold one RunWriter; `open_run_writer(run_dir)` builds the usual set
(store + metrics.jsonl [+ wandb]). Like the store, none of these may crash
training: `MultiWriter` catches, logs and counts a failing writer's exception."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from geospot.runs.writer import ImageRecord, RunWriter

log = logging.getLogger(__name__)


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
                n = self.failures[name] = self.failures.get(name, 0) + 1
                if n == 1 or n % 50 == 0:  # (a full disk fails every write: the first with its traceback, then a count)
                    log.warning("%s.%s failed (%d failures)", name, method, n, exc_info=n == 1)

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


def open_run_writer(run_dir: str | Path, *, jsonl: bool = True, wandb_project: str | None = None,
                    wandb_name: str | None = None) -> MultiWriter:
    """The usual writer set for a run folder: RunStore (+ metrics.jsonl, wandb). The terminal gets
    each loop's own progress line (train/common.py), not a writer's."""
    from geospot.runs.store import RunStore

    writers: list[RunWriter] = [RunStore(run_dir)]
    if jsonl:
        writers.append(JsonlWriter(run_dir))
    if wandb_project:
        writers.append(WandbWriter(wandb_project, name=wandb_name or Path(run_dir).name))
    return MultiWriter(*writers)
