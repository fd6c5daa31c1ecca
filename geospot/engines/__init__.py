"""Engines: one interface (geospot.engines.types.Engine), two implementations.

`make_engine(cfg)` picks by `cfg.engine`: 'local' (torch + transformers + PEFT) or 'tinker'
(the Tinker service). Both are imported lazily so importing geospot.engines stays cheap
and the tinker SDK is only needed when used. `cfg.sampler='vllm'` wraps the local engine so
vLLM samples (geospot/engines/vllm_sampler.py; GPU only)."""

from __future__ import annotations

import importlib

from geospot.engines.config import EngineConfig

ENGINES = {
    "local": "geospot.engines.local:LocalEngine",
    "tinker": "geospot.engines.tinker_engine:TinkerEngine",
}


def make_engine(cfg: EngineConfig):
    if cfg.engine not in ENGINES:
        raise ValueError(f"unknown engine {cfg.engine!r}; choose one of {', '.join(ENGINES)}")
    # each engine validates cfg first thing, so sampler=vllm problems (engine=local, LoRA, CUDA,
    # vllm installed) are raised before any model is loaded
    module, name = ENGINES[cfg.engine].split(":")
    engine = getattr(importlib.import_module(module), name)(cfg)
    if cfg.sampler == "vllm":
        from geospot.engines.vllm_sampler import VLLMSamplingEngine  # delayed: only for sampler=vllm

        engine = VLLMSamplingEngine.from_local(engine)
    return engine


__all__ = ["make_engine", "EngineConfig", "ENGINES"]
