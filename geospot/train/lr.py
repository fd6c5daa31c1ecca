"""Learning-rate schedules: pure functions of the step, so a resumed run gets exactly
the learning rate the uninterrupted run would have had (nothing to checkpoint).

Warmup is linear from `base/warmup` at step 0 up to `base` at step `warmup-1`; the decay
then runs over the remaining `total - warmup` steps, reaching its end value (0 for
`linear` and `cosine`, times `min_ratio`) one step after the last one — so the last
step still learns a little, as in tinker-cookbook."""

from __future__ import annotations

import math
from typing import Literal

Schedule = Literal["constant", "linear", "cosine"]
SCHEDULES: tuple[str, ...] = ("constant", "linear", "cosine")


def lr_multiplier(
    step: int, total_steps: int, schedule: Schedule = "linear", warmup_steps: int = 0, min_ratio: float = 0.0
) -> float:
    """The factor on the base learning rate at `step` (0-based) of a `total_steps` run."""
    if schedule not in SCHEDULES:
        raise ValueError(f"lr_schedule={schedule!r} is not one of {', '.join(SCHEDULES)}")
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    decay_steps = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / decay_steps)
    if schedule == "linear":
        shape = 1.0 - progress
    else:  # cosine
        shape = 0.5 * (1.0 + math.cos(math.pi * progress))
    return min_ratio + (1.0 - min_ratio) * shape


def learning_rate(
    step: int,
    total_steps: int,
    base_lr: float,
    schedule: Schedule = "linear",
    warmup_steps: int = 0,
    min_ratio: float = 0.0,
) -> float:
    return base_lr * lr_multiplier(step, total_steps, schedule, warmup_steps, min_ratio)


def schedule_step(step: int, total_steps: int, spent: float = 0.0, max_seconds: float = 0.0) -> int:
    """The step a schedule is read at: `step`, or, with a time limit, the share of `total_steps` the
    seconds `spent` are of `max_seconds` when that is further (lifecycle.TimeBudget)."""
    if max_seconds <= 0:
        return step
    return max(step, min(total_steps - 1, int(total_steps * spent / max_seconds)))


def lr_rise(cfg, step: int, max_steps: int, max_seconds: float, spent: float = 0.0) -> str | None:
    """A resume with more max_steps or max_seconds stretches the lr schedule: where it had decayed, the next
    step's lr is higher than the last one's (a cosine at its floor jumps back up). Said with both numbers
    and the way to go on low instead; None when it does not rise. `cfg`: either loop's config, now;
    `max_steps`, `max_seconds`: the run's before; `spent`: the seconds its steps took so far."""
    args = (cfg.learning_rate, cfg.lr_schedule, cfg.warmup_steps, cfg.min_lr_ratio)
    before = learning_rate(schedule_step(step - 1, max_steps, spent, max_seconds), max_steps, *args)
    after = learning_rate(schedule_step(step, cfg.max_steps, spent, cfg.max_seconds), cfg.max_steps, *args)
    if not step or after <= before * 1.01:
        return None
    until = f"max_seconds={cfg.max_seconds:g}" if cfg.max_seconds else f"max_steps={cfg.max_steps}"
    return (f"lr: step {step} trained at {before:.3g}; step {step + 1} trains at {after:.3g}, as lr_schedule="
            f"{cfg.lr_schedule} runs to {until} now. To go on at a low lr instead, start a new run "
            f"from this one's weights (load_checkpoint_path=<this run>, learning_rate=<the lr you want>)")
