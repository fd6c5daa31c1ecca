"""The types every engine speaks. They mirror Tinker's primitives so that the local
engine and the Tinker engine are interchangeable:

- a `ModelInput` is a sequence of chunks (token runs and images), exactly what Tinker's
  `ModelInput` holds; the renderer builds it once and both engines consume it;
- a `Datum` is already shifted (position i predicts `target_tokens[i]`) and its loss is
  *summed* over tokens and datums, as in Tinker — never shift twice, never average.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class TextChunk:
    tokens: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.tokens)


@dataclass(frozen=True, eq=False)
class ImageChunk:
    """One image, already resized to the size the model sees it at.

    `grid_thw` is the vision patch grid (t, h, w) and `expected_tokens` the number of
    placeholder tokens it occupies in the sequence (= t*h*w // merge_size**2), the number
    Tinker calls `expected_tokens`. The chunk owns the vision-start/end tokens' neighbours
    only through the surrounding TextChunks."""

    image: Image.Image
    grid_thw: tuple[int, int, int]
    expected_tokens: int

    @property
    def length(self) -> int:
        return self.expected_tokens


Chunk = TextChunk | ImageChunk


@dataclass(frozen=True)
class ModelInput:
    chunks: tuple[Chunk, ...] = ()

    @property
    def length(self) -> int:
        return sum(c.length for c in self.chunks)

    @staticmethod
    def from_ints(tokens: Sequence[int]) -> ModelInput:
        return ModelInput((TextChunk(tuple(int(t) for t in tokens)),))

    def append_tokens(self, tokens: Sequence[int]) -> ModelInput:
        """Append tokens, merging into a trailing text chunk (keeps chunk lists short)."""
        tokens = tuple(int(t) for t in tokens)
        if not tokens:
            return self
        if self.chunks and isinstance(self.chunks[-1], TextChunk):
            last = self.chunks[-1]
            return ModelInput(self.chunks[:-1] + (TextChunk(last.tokens + tokens),))
        return ModelInput(self.chunks + (TextChunk(tokens),))

    def concat(self, other: ModelInput) -> ModelInput:
        out = self
        for c in other.chunks:
            out = out.append_tokens(c.tokens) if isinstance(c, TextChunk) else ModelInput(out.chunks + (c,))
        return out

    def images(self) -> list[ImageChunk]:
        return [c for c in self.chunks if isinstance(c, ImageChunk)]

    def token_mask(self) -> np.ndarray:
        """bool[T]: True at text positions, False at image placeholder positions."""
        return np.concatenate(
            [np.full(c.length, isinstance(c, TextChunk), dtype=bool) for c in self.chunks]
            or [np.zeros(0, dtype=bool)]
        )


LossFn = Literal["cross_entropy", "importance_sampling", "ppo"]

# loss_fn_inputs each loss reads (both engines validate datums against it) and the loss_config
# keys each loss understands (ppo's clip thresholds on the ratio); one table for both engines.
REQUIRED_INPUTS: dict[str, tuple[str, ...]] = {
    "cross_entropy": ("target_tokens", "weights"),
    "importance_sampling": ("target_tokens", "logprobs", "advantages"),
    "ppo": ("target_tokens", "logprobs", "advantages"),
}
LOSS_CONFIG_KEYS: dict[str, frozenset[str]] = {
    "cross_entropy": frozenset(),
    "importance_sampling": frozenset(),
    "ppo": frozenset({"clip_low_threshold", "clip_high_threshold"}),
}


@dataclass(frozen=True)
class Datum:
    """One training sequence. `loss_fn_inputs` holds float/int arrays of length
    `model_input.length`, keyed as in Tinker:
      cross_entropy:        target_tokens, weights
      importance_sampling:  target_tokens, logprobs (sampler's), advantages
      ppo:                  target_tokens, logprobs (sampler's), advantages
    Image positions carry zero weight / zero advantage.

    `group`: which GRPO group (one image's G rollouts) the datum belongs to, within one batch;
    the local engine packs a group's shared prefix into one row (prefix.py). None = no group
    (SFT); the Tinker engine sends the flat list and ignores it."""

    model_input: ModelInput
    loss_fn_inputs: dict[str, np.ndarray]
    group: int | None = None

    def __post_init__(self) -> None:
        n = self.model_input.length
        for k, v in self.loss_fn_inputs.items():
            if len(v) != n:
                raise ValueError(f"Datum.loss_fn_inputs[{k!r}] has length {len(v)}, model_input has {n}")


@dataclass(frozen=True)
class SampleParams:
    max_tokens: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    stop: tuple[str | int, ...] = ()  # empty = the renderer's end-of-turn token
    seed: int | None = None
    # one seed per prompt (local engine): a prompt's samples then depend on its own seed only, not on
    # the other prompts of the call, so data-parallel RL draws a GRPO group alike on any rank
    seeds: tuple[int, ...] | None = None


@dataclass(frozen=True)
class SampledSequence:
    tokens: tuple[int, ...]  # includes the stop token when stop_reason == "stop"
    logprobs: tuple[float, ...]  # per token, under the sampling distribution at temperature 1
    stop_reason: Literal["stop", "length"]


@dataclass(frozen=True)
class AdamParams:
    learning_rate: float
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.0
    grad_clip_norm: float | None = None


@dataclass
class ForwardBackwardResult:
    logprobs: list[np.ndarray]  # per datum, target logprobs [T]
    metrics: dict[str, float] = field(default_factory=dict)


class Sampler(Protocol):
    """What samples with one weights version: an engine (its live weights) or what its
    `snapshot_sampler()` returns."""

    # FSDP2 resharding under torchrun: each model call is a collective, so every rank makes as many
    # (geospot.engines.parallel.Lockstep); None for everything else (every sampler and engine says so)
    lockstep: Lockstep | None  # noqa: F821

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams
    ) -> list[list[SampledSequence]]: ...


class Engine(Protocol):
    """What a training loop needs from a model. Sync on purpose: the local engine is
    sync, and the Tinker engine hides its futures (it submits forward_backward and
    optim_step before waiting in `train_step`)."""

    renderer: Renderer  # noqa: F821  (geospot.engines.rendering.Renderer)
    lockstep: Lockstep | None  # noqa: F821  (as Sampler's: not None only under FSDP2 resharding)

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams
    ) -> list[list[SampledSequence]]: ...

    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]: ...

    def forward_backward(
        self, datums: Sequence[Datum], loss_fn: LossFn, loss_config: dict | None = None
    ) -> ForwardBackwardResult: ...

    def optim_step(self, adam: AdamParams) -> dict[str, float]: ...

    def train_step(
        self, datums: Sequence[Datum], loss_fn: LossFn, adam: AdamParams, loss_config: dict | None = None
    ) -> ForwardBackwardResult: ...

    def save_state(self, path: str) -> str: ...

    def load_state(self, path: str, with_optimizer: bool = True) -> None: ...

    def export(self, path: str, merged: bool = False) -> str: ...

    def set_reference(self) -> None:
        """Freeze the current weights as the KL reference `forward_base` scores with."""

    def forward_base(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        """Target logprobs under the KL reference (`set_reference`'s weights, else the base model)."""
        ...

    def token_stats(self) -> dict:
        """Tokens the computations needed vs processed, by kind ({} where the engine cannot count)."""
        ...

    def snapshot_sampler(self, keep: int = 1) -> Sampler:
        """A sampler on the weights as they are now, while training moves on (async GRPO). `keep`:
        how many versions may be sampled from at once (engines that store versions keep that many)."""
        ...
