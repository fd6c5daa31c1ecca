"""What both training loops use between steps: seeding and the progress line."""

from __future__ import annotations

import math
import random
import sys
import time
from collections.abc import Callable
from typing import TextIO

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


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

    def __init__(self, total_steps: int, start_step: int = 0, stream: TextIO | None = None, every: int = 1,
                 seconds_left: Callable[[], float] | None = None) -> None:
        self.total, self.start = total_steps, start_step
        self.seconds_left = seconds_left  # a time limit (max_seconds): the ETA is the nearer end
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
        if self.seconds_left is not None and not eta < (left := self.seconds_left()):  # (NaN: the limit's)
            eta = left
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

    def update(self, step: int, metrics: dict[str, float], last: bool = False) -> str:
        """`last`: the loop's word that this step ends the run (a time limit, the data's end), printed then."""
        text = self.line(step, metrics)
        last = last or step + 1 >= self.total
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


