"""The benchmark scripts as modules, for their tests (benchmarks/ is not a package: each script
runs as `python benchmarks/<name>.py`), and a JSON reader that refuses NaN / Infinity."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

BENCH = Path(__file__).parents[2] / "benchmarks"


def load(name: str):
    """benchmarks/<name>.py, imported as the module `name`."""
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))  # envs.py imports rl_vs_sft by name, as when run as a script
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, mod)  # dataclasses look their module up by name
    spec.loader.exec_module(mod)
    return mod


def strict_loads(s: str):
    """json.loads that fails on NaN / Infinity (what a strict parser, e.g. jq, refuses)."""
    def reject(c):
        raise ValueError(f"not strict JSON: {c}")

    return json.loads(s, parse_constant=reject)
