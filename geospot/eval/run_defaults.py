"""How `geospot eval` / `predict` ask a training run's model: the keys the command line does
not give take the run's own values (geospot.runs.model_spec), and the output records which
came from the run and which the command line overrode."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from geospot.runs.model_spec import is_run_path, model_spec

RUN_DEFAULT_KEYS = ("env_type", "max_pixels", "max_tokens", "reasoning", "reasoning_max_tokens")


def given_keys(kv: Sequence[str]) -> set[str]:
    """The config keys named on the command line (`max-pixels=` counts as `max_pixels`)."""
    return {a.split("=", 1)[0].strip().lstrip("-").replace("-", "_") for a in kv}


def with_run_defaults(cfg, given: set[str] | None = None):
    """(cfg, record): for a training run / checkpoint folder, the keys the user did not give
    take the run's values (its ModelSpec: prompt style, image budget, answer length, reasoning), so a
    model is asked the way it was trained. `record` says which came from the run and which
    the command line overrode (written into the eval's config and summary). `given` None =
    every key that differs from the class default counts as given (a programmatic caller)."""
    if not cfg.model or not is_run_path(cfg.model):
        return cfg, {}
    spec = model_spec(cfg.model)
    if given is None:
        defaults = type(cfg)()
        given = {k for k in RUN_DEFAULT_KEYS if getattr(cfg, k) != getattr(defaults, k)}
    run_values = {"env_type": spec.env_type, "max_pixels": spec.image_budget, "max_tokens": spec.max_tokens,
                  "reasoning": spec.reasoning, "reasoning_max_tokens": spec.reasoning_max_tokens}
    taken = {k: v for k, v in run_values.items() if k not in given}
    overridden = {k: getattr(cfg, k) for k in RUN_DEFAULT_KEYS if k in given and getattr(cfg, k) != run_values[k]}
    cfg = dataclasses.replace(cfg, **taken)
    style = cfg.env_type
    record = {"from_run": taken, "overridden": overridden, "turn_prompts": list(spec.turns(style)),
              "trained_styles": list(spec.trained_styles)}
    return cfg, record


def describe_defaults(record: dict) -> str:
    """One line for stderr: what the run decided and what the command line changed."""
    if not record:
        return ""
    took = ", ".join(f"{k}={v}" for k, v in record["from_run"].items()) or "nothing"
    line = f"from the run: {took}"
    if record["overridden"]:
        line += "; overridden on the command line: " + ", ".join(f"{k}={v}" for k, v in record["overridden"].items())
    return line


