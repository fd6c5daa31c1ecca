"""What differs between the transformers releases geospot runs on (5.20 and newer).

transformers 5.24 renamed the KV-cache argument and output field `past_key_values` -> `cache`
(the old names keep working, with a deprecation warning, until 5.40). geospot supports 5.20+
because vLLM 0.33, the sampler of the optional GPU path, pins transformers < 5.21; the tests
run on both sides of the rename (tests/models/test_compat.py checks the switch itself)."""

from __future__ import annotations

from typing import Any

import transformers
from packaging.version import Version

CACHE_RENAMED = Version(transformers.__version__).release >= (5, 24)
CACHE_ARG = "cache" if CACHE_RENAMED else "past_key_values"  # model(..., **{CACHE_ARG: cache})


def output_cache(out: Any):
    """The KV cache a forward pass returned."""
    return out.cache if CACHE_RENAMED else out.past_key_values
