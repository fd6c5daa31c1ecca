"""Strict JSON values: the one place that maps NaN / inf to null.

JSON has no NaN or Infinity; SQLite's json functions, browsers and `json.loads(strict)`
consumers reject them. The run store, `geospot eval|predict --json` and `geospot score
--json` all write through `finite_json`, so they agree on what a missing number looks like."""

from __future__ import annotations

import math
from typing import Any


def finite_json(x: Any) -> Any:
    """A JSON-safe copy of `x`: non-finite floats -> None, recursively through dicts (keys
    made str), lists and tuples (-> lists); numpy / torch scalars -> Python numbers."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [finite_json(v) for v in x]
    if hasattr(x, "item") and callable(x.item):  # numpy / torch scalars
        try:
            return finite_json(x.item())
        except Exception:
            return str(x)
    return x
