"""Samplers pinned to a weights version, for async GRPO (geospot/rl/pipeline.py): the trainer
moves on while a thread samples the next steps with the weights of the moment the sampler was made.

On the local engine there is ONE model: the snapshot holds a copy of the trainable tensors and
swaps them in for the length of a sample call, under the engine's lock (so a train step never
runs on swapped weights, and the two threads never run the model at once: one device gains
overlap only where the GIL is released between calls, see docs/async.md)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from geospot.engines.types import ModelInput, SampledSequence, SampleParams


def locked(method):
    """Run the engine method holding `self.lock` (an RLock; engines made without __init__ have none)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        lock = getattr(self, "lock", None)
        if lock is None:
            return method(self, *args, **kwargs)
        with lock:
            return method(self, *args, **kwargs)

    return wrapper


class SnapshotSampler:
    """A local engine's sampler on the trainable tensors `tensors` (by name), taken at weights
    version `version` (LocalEngine._weights_version)."""

    def __init__(self, engine, tensors: dict, version: tuple) -> None:
        self.engine, self.tensors, self.version = engine, tensors, version

    @property
    def renderer(self):
        return self.engine.renderer

    @property
    def lockstep(self):
        return self.engine.lockstep  # it samples through the engine's own calls

    def sample(self, prompts: Sequence[ModelInput], num_samples: int = 1,
               params: SampleParams | None = None) -> list[list[SampledSequence]]:
        eng, params = self.engine, params or SampleParams()
        with eng.lock:
            if eng._weights_version() == self.version:  # nothing trained since: the live weights are ours
                return eng.sample(prompts, num_samples, params)
            # Swapping storage does not move the tensors' version counters, so the KV store would take
            # the snapshot's KV for the live weights': no cross-call KV reuse on swapped weights.
            reuse, eng.kv_reuse = eng.kv_reuse, False
            _swap(eng.trainable, self.tensors)
            try:
                return eng.sample(prompts, num_samples, params)
            finally:
                _swap(eng.trainable, self.tensors)
                eng.kv_reuse = reuse


def _swap(params, tensors: dict) -> None:
    for n, p in params:
        p.data, tensors[n] = tensors[n], p.data


class PinnedSampler:
    """Samples through `sample_fn(prompts, num_samples, params)` bound to one weights version
    (a Tinker sampling client, a vLLM LoRA request)."""

    lockstep = None  # neither samples through collectives

    def __init__(self, sample_fn, renderer) -> None:
        self._sample, self.renderer = sample_fn, renderer

    def sample(self, prompts: Sequence[ModelInput], num_samples: int = 1,
               params: SampleParams | None = None) -> list[list[SampledSequence]]:
        return self._sample(list(prompts), num_samples, params or SampleParams())
