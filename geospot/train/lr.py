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


def lr_rise(cfg, step: int, old_total: int) -> str | None:
    """A resume with more max_steps stretches the lr schedule: where it had decayed, the next step's lr is
    higher than the last one's (a cosine at its floor jumps back up). Said with both numbers and the way to
    go on low instead; None when it does not rise. `cfg`: either loop's config (the same lr keys)."""
    args = (cfg.learning_rate, cfg.lr_schedule, cfg.warmup_steps, cfg.min_lr_ratio)
    before, after = learning_rate(step - 1, old_total, *args), learning_rate(step, cfg.max_steps, *args)
    if not step or after <= before * 1.01 or cfg.max_seconds:  # (a time limit: the schedule follows the clock)
        return None
    return (f"lr: step {step} trained at {before:.3g}; step {step + 1} trains at {after:.3g}, as lr_schedule="
            f"{cfg.lr_schedule} runs to max_steps={cfg.max_steps} now. To go on at a low lr instead, start a new run "
            f"from this one's weights (load_checkpoint_path=<this run>, learning_rate=<the lr you want>)")
