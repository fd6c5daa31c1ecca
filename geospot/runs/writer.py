"""The one small interface training and eval write through. The run store (SQLite)
implements it; `NullWriter` and `ListWriter` serve tests and dry runs."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from PIL import Image


@dataclass(frozen=True)
class RolloutRecord:
    text: str  # the decoded answer(s); telescoping joins the turns with "\n---\n"
    guesses: tuple[tuple[float, float] | None, ...]  # one per turn, None = unparsed
    distance_km: float | None  # of the final guess
    reward: float  # total reward of the rollout
    turn_distances_km: tuple[float | None, ...] = ()
    turn_rewards: tuple[float, ...] = ()
    weights_version: int | None = None  # optimizer steps done when it was sampled (async GRPO: < the step)


@dataclass(frozen=True, eq=False)
class ImageRecord:
    image_id: str
    lat: float
    lon: float
    rollouts: tuple[RolloutRecord, ...]
    image: Image.Image | None = None  # thumbnail saved once per image id
    labels: dict[str, str] = field(default_factory=dict)


class RunWriter(Protocol):
    def log_config(self, kind: str, config: dict[str, Any]) -> None: ...

    def log_step(self, step: int, metrics: dict[str, float]) -> None: ...

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None: ...

    def set_status(self, status: str) -> None: ...

    def close(self) -> None: ...


class ListWriter:
    """Keeps everything in memory (tests)."""

    def __init__(self) -> None:
        self.config: dict[str, Any] = {}
        self.kind = ""
        self.steps: list[tuple[int, dict[str, float]]] = []
        self.images: list[tuple[int, str, list[ImageRecord]]] = []
        self.status = "running"

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        self.kind, self.config = kind, dict(config)

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        self.steps.append((step, dict(metrics)))

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        self.images.append((step, split, list(records)))

    def set_status(self, status: str) -> None:
        self.status = status

    def close(self) -> None:
        pass


class NullWriter:
    """Writes nothing: the ranks other than 0 of a torchrun job (rank 0 owns the run folder)."""

    def log_config(self, kind: str, config: dict[str, Any]) -> None:
        pass

    def log_step(self, step: int, metrics: dict[str, float]) -> None:
        pass

    def log_images(self, step: int, records: list[ImageRecord], split: str = "train") -> None:
        pass

    def set_status(self, status: str) -> None:
        pass

    def close(self) -> None:
        pass
