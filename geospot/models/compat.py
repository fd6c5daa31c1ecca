"""What differs between the transformers releases geospot runs on (5.20 and newer).

transformers 5.24 renamed the KV-cache argument and output field `past_key_values` -> `cache`
(the old names keep working, with a deprecation warning, until 5.40). geospot supports 5.20+
because vLLM 0.33, the sampler of the optional GPU path, pins transformers < 5.21; the tests
run on both sides of the rename (tests/models/test_compat.py checks the switch itself)."""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import transformers
from packaging.version import Version

CACHE_RENAMED = Version(transformers.__version__).release >= (5, 24)
CACHE_ARG = "cache" if CACHE_RENAMED else "past_key_values"  # model(..., **{CACHE_ARG: cache})


def output_cache(out: Any):
    """The KV cache a forward pass returned."""
    return out.cache if CACHE_RENAMED else out.past_key_values


@contextlib.contextmanager
def peft_wrap_quietly():
    """PEFT reads `model.is_gradient_checkpointing` when it wraps a model, a property transformers
    5 deprecated with a FutureWarning on every read (71 of them in one test run). Nothing a
    user can act on, so exactly that warning is ignored while PEFT wraps, nothing else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`is_gradient_checkpointing` is deprecated", category=FutureWarning)
        yield


def peft_base(model: Any) -> Any:
    """The transformers model under PEFT's wrapper (a LoRA engine's), or `model` itself (full fine-tuning,
    a plain model): what the engine's own passes walk to find the layers, the vision tower and the head."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


@contextlib.contextmanager
def no_progress_bars(quiet: bool = True):
    """transformers' weight-loading bars, off while `quiet` (a tiny test model loads in
    milliseconds: a bar per load is noise). Restored afterwards."""
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    if quiet:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if quiet and was:
            hf_logging.enable_progress_bar()
