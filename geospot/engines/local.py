"""LocalEngine: Tinker's primitives on one local model (torch + transformers + PEFT).

The engine is the loaded model (local_model.py: load, LoRA, batching with explicit multimodal
positions from inputs.py) with three rooms attached:

- sampler (local_sampler.py): prefill — plain, shared prefix within a call, or on KV stored by an
  earlier call (kv_store.py) — and the decode loop;
- trainer (local_trainer.py): forward / forward_backward packing each group's shared prefix into
  one row (prefix.py), the optimizer, and the KL reference (set_reference / forward_base);
- state (local_state.py): save_state / load_state / export.

Sampling and training meet here, on one model: every public method holds the engine's lock, so
async GRPO's sampling thread (geospot/rl/pipeline.py) and the training loop take turns, and a
snapshot sampler (the sampler room's `snapshot`, snapshot.py) swaps its weights in only between
train steps.

The engine counts the tokens each computation needed versus processed (`token_stats()`).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import torch

from geospot import distributed
from geospot.engines.config import EngineConfig
from geospot.engines.inputs import mrope_positions
from geospot.engines.local_model import LocalModel, TokenCounter, _lora_targets
from geospot.engines.local_sampler import LocalSampler
from geospot.engines.local_state import LocalState
from geospot.engines.local_trainer import LocalTrainer
from geospot.engines.parallel import collective, make_sync
from geospot.engines.snapshot import SnapshotSampler, locked
from geospot.engines.types import AdamParams, Datum, ForwardBackwardResult, ModelInput, SampledSequence, SampleParams
from geospot.models.load import LoadedModel


class LocalEngine(LocalModel):
    def __init__(self, cfg: EngineConfig, loaded: LoadedModel | None = None):
        super().__init__(cfg, loaded)
        # async GRPO samples on a thread while this one trains: one model, so one call at a time
        self.lock = threading.RLock()
        self.sampler = LocalSampler(self)
        self.trainer = LocalTrainer(self)
        self.state = LocalState(self, self.trainer)
        # under torchrun: DDP (LoRA) or FSDP2 (full fine-tuning) reduces the ranks' gradients (parallel.py)
        self.trainer.sync = make_sync(self, distributed.current())

    @property
    def optimizer(self) -> torch.optim.AdamW | None:
        return self.trainer.optimizer

    @locked
    def sample(self, prompts: Sequence[ModelInput], num_samples: int = 1,
               params: SampleParams = SampleParams()) -> list[list[SampledSequence]]:
        with collective(self, grad=False):  # FSDP2 resharding: every rank runs as many forwards
            return self.sampler.sample(prompts, num_samples, params)

    @locked
    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        with collective(self, grad=False):
            return self.trainer.forward(datums)

    @locked
    def set_reference(self) -> None:
        self.trainer.set_reference()

    @locked
    def forward_base(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        return self.trainer.forward_base(datums)

    @locked
    def forward_backward(self, datums: Sequence[Datum], loss_fn: str,
                         loss_config: dict | None = None) -> ForwardBackwardResult:
        with collective(self, grad=True):
            return self.trainer.forward_backward(datums, loss_fn, loss_config)

    @locked
    def optim_step(self, adam: AdamParams) -> dict[str, float]:
        return self.trainer.optim_step(adam)

    @locked
    def train_step(self, datums: Sequence[Datum], loss_fn: str, adam: AdamParams,
                   loss_config: dict | None = None) -> ForwardBackwardResult:
        result = self.forward_backward(datums, loss_fn, loss_config)
        result.metrics.update(self.optim_step(adam))
        return result

    @locked
    def save_state(self, path: str) -> str:
        return self.state.save_state(path)

    @locked
    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        self.state.load_state(path, with_optimizer)

    @locked
    def export(self, path: str, merged: bool = False) -> str:
        return self.state.export(path, merged)

    @locked
    def load_adapter(self, path: str) -> None:
        """The LoRA weights of a PEFT adapter folder that `export` wrote (this engine's lora shape)."""
        self.state.load_adapter(path)

    @locked
    def snapshot_sampler(self, keep: int = 1) -> SnapshotSampler:
        """A sampler on the weights as they are now, while training moves on (async GRPO). Under the
        lock: a snapshot sampler mid-call has its own (older) tensors swapped into the model, and a
        copy taken then was of those, not of the trained ones."""
        return self.sampler.snapshot()

    def token_stats(self) -> dict:
        return self.tokens.as_dict()


__all__ = ["LocalEngine", "TokenCounter", "mrope_positions", "_lora_targets"]
