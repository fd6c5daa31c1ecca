"""What every room of the local engine reads: the loaded model (LoRA applied), its renderer,
the token counters, and turning ModelInputs into one padded batch with explicit positions.

The rooms — local_sampler.py (prefill, decode, KV store), local_trainer.py (shared-prefix
forward/backward, optimizer) and local_state.py (save, load, export) — each take this object;
local.py's `LocalEngine` is this object with the three rooms attached.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from geospot.config import ConfigError
from geospot.engines import lean_lora, packed_attention, patch_linear
from geospot.engines.config import EngineConfig
from geospot.engines.inputs import image_starts, mrope_positions
from geospot.engines.kv_store import KVStore
from geospot.engines.rendering import Renderer
from geospot.engines.types import ModelInput, TextChunk
from geospot.engines.vision_cache import install_image_feature_cache
from geospot.models.load import LoadedModel, load_model


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [3, B, T]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    lengths: list[int]
    next_positions: list[int]

    def model_kwargs(self) -> dict:
        kw = dict(input_ids=self.input_ids, attention_mask=self.attention_mask, position_ids=self.position_ids)
        if self.pixel_values is not None:
            kw.update(pixel_values=self.pixel_values, image_grid_thw=self.image_grid_thw)
        return kw


@dataclass
class TokenCounter:
    """Tokens a minimal computation needs vs tokens the engine actually pushed through the
    language model (padding, repeated prefixes and finished rows count as processed)."""

    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [needed, processed]

    def add(self, kind: str, needed: int, processed: int) -> None:
        n, p = self.by_kind.get(kind, [0, 0])
        self.by_kind[kind] = [n + needed, p + processed]

    @property
    def needed(self) -> int:
        return sum(v[0] for v in self.by_kind.values())

    @property
    def processed(self) -> int:
        return sum(v[1] for v in self.by_kind.values())

    @property
    def efficiency(self) -> float:
        return self.needed / self.processed if self.processed else float("nan")

    def as_dict(self) -> dict:
        return {"tokens_needed": self.needed, "tokens_processed": self.processed, "token_efficiency": self.efficiency,
                **{f"{k}_needed": v[0] for k, v in self.by_kind.items()},
                **{f"{k}_processed": v[1] for k, v in self.by_kind.items()}}


def _lora_targets(model: torch.nn.Module, targets: str, train_vision: bool) -> list[str]:
    """Full module names of the Linear layers LoRA wraps: the language model's (all of them,
    or those whose last name is listed), plus the vision tower's when it is trained."""
    wanted = None if targets == "all-linear" else {t.strip() for t in targets.split(",") if t.strip()}
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        in_lm = "language_model" in name
        in_vision = "visual" in name
        if not (in_lm or (train_vision and in_vision)):
            continue
        if wanted is not None and in_lm and name.rsplit(".", 1)[-1] not in wanted:
            continue
        names.append(name)
    if not names:
        raise ValueError(f"lora_targets={targets!r} matches no Linear layer of the language model")
    return names


class LocalModel:
    """The loaded model and the state all rooms share (step, sample calls, KV store, switches)."""

    def __init__(self, cfg: EngineConfig, loaded: LoadedModel | None = None):
        cfg.validate()
        self.cfg = cfg
        lm = loaded or load_model(cfg.model_name, cfg.dtype, cfg.device)
        self.device, self.dtype, self.folder = lm.device, lm.dtype, lm.folder
        self.tokenizer, self.image_processor = lm.tokenizer, lm.image_processor
        self.renderer = Renderer(lm.tokenizer, lm.image_processor, cfg.max_pixels)
        config = lm.model.config
        self.spatial_merge = config.vision_config.spatial_merge_size
        self.max_context = config.text_config.max_position_embeddings
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.vocab = self.tokenizer.get_vocab()  # built once: a real Qwen vocab is 150k entries
        banned = [self.vocab[t] for t in ("<|image_pad|>", "<|video_pad|>") if t in self.vocab]
        self.banned_ids = torch.tensor(banned, device=self.device)
        self.model = self._make_trainable(lm.model)
        self.model.eval()  # no dropout anywhere: sampler and trainer must compute the same function
        # a frozen vision tower encodes each image once; later turns and training reuse it (issue 7)
        self.image_cache = install_image_feature_cache(self.model)
        # issue 24: packed training rows compute only the attention blocks they need (plain SDPA
        # otherwise); LoRA linears skip PEFT's per-call bookkeeping; decode writes into a KV cache
        # with its room reserved (kv_cache.py) and runs only the layers (decode_step.py). Each is a
        # switch for tests and A/B timings
        # (benchmarks/levers.py).
        self.packed_attention = packed_attention.install(self.model)
        self.lean_lora = lean_lora.install(self.model) > 0
        self.patch_linear = patch_linear.install(self.model)  # the patch Conv3d as the matmul it is
        self.reserve_kv = True
        self.lean_decode = True  # decode steps straight through the layers (decode_step.py)
        self.functional_decode = True  # ... as plain tensor operations on their weights (decode_layers.py)
        # FSDP2 resharding under torchrun: each forward is a collective, so sample / forward /
        # forward_backward run in lockstep across the ranks (engines/parallel.py); None otherwise
        self.lockstep = None
        self.shared_prefix_decode = True  # decode reads each prompt's KV once for its G samples (prefix_decode.py)
        self.trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.step = 0
        self.sample_calls = 0
        self.tokens = TokenCounter()
        self.shared_prefix = True  # compute a group's common prefix once in forward/forward_backward
        # forward_backward runs the vocabulary-wide head with gradient only where the loss can have one
        # (target_head.py); off: at every target position (a switch for tests and A/B timings)
        self.head_at_trained_positions = True
        # finished sequences' KV kept across sample() calls: a later telescoping turn prefills only
        # what its prompt adds (kv_store.py); emptied whenever the weights change
        self.kv_store = KVStore(cfg.kv_reuse_tokens)  # the budget's arithmetic: EngineConfig.kv_reuse_tokens
        self.kv_reuse = cfg.kv_reuse_tokens > 0  # a switch, like shared_prefix (tests, A/B timings)
        if any(t != "full_attention" for t in getattr(config.get_text_config(), "layer_types", None) or []):
            self.kv_reuse = False  # sliding-window layers keep only the window: a stored row would be cut

    def _make_trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        for p in model.parameters():
            p.requires_grad_(False)
        if self.cfg.lora_rank > 0:
            from peft import LoraConfig, get_peft_model  # delayed: peft's import costs a second

            lora = LoraConfig(
                r=self.cfg.lora_rank,
                lora_alpha=self.cfg.lora_alpha,
                lora_dropout=0.0,
                target_modules=_lora_targets(model, self.cfg.lora_targets, self.cfg.train_vision),
                bias="none",
            )
            from geospot.models.compat import peft_wrap_quietly

            with torch.random.fork_rng(devices=[]), peft_wrap_quietly():  # LoRA init from the engine seed
                torch.manual_seed(self.cfg.seed)
                return get_peft_model(model, lora)
        for name, p in model.named_parameters():  # full fine-tuning
            if self.cfg.train_vision or "visual" not in name:
                p.requires_grad_(True)
        return model

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.trainable]

    def _weights_version(self) -> tuple:
        """Bumped by every in-place change of a trainable tensor (optimizer step, load_state)."""
        return tuple(p._version for _, p in self.trainable)

    def _check_input(self, i: int, mi: ModelInput, extra: int = 0) -> None:
        if mi.length + extra > self.max_context:  # (a ConfigError: the command says it in one sentence)
            raise ConfigError(
                f"prompt {i} is {mi.length} tokens (+{extra} to generate) but the context is {self.max_context}; "
                "shorten the conversation, lower max_tokens, or lower max_pixels"
            )
        for im in mi.images():
            px = im.image.width * im.image.height
            if px > self.cfg.max_pixels:
                raise ValueError(
                    f"image in prompt {i} is {im.image.width}x{im.image.height} = {px} px, over the pixel budget "
                    f"max_pixels={self.cfg.max_pixels}; render it with this engine's renderer (it resizes) "
                    "or raise max_pixels"
                )

    def _batch(self, inputs: Sequence[ModelInput], left_pad: bool, starts: Sequence[int] | None = None) -> Batch:
        """The inputs padded into one batch. With `starts`, each input from starts[i] on (its
        positions as in the whole sequence, only the images from there on): the part to prefill
        on top of a cached prefix, left-padded so the holes sit between prefix and suffix,
        masked out; the explicit positions keep them from shifting anything."""
        toks, poss, nexts, images = [], [], [], []
        for i, (mi, m) in enumerate(zip(inputs, starts if starts is not None else [0] * len(inputs))):
            if any(isinstance(c, TextChunk) and self.renderer.image_pad_id in c.tokens for c in mi.chunks):
                raise ValueError(f"sequence {i} has an <|image_pad|> token inside text; "
                                 "images must be ImageChunks (use the renderer)")
            toks.append(self.renderer.tokens_of(mi)[m:])
            pos, nxt = mrope_positions(mi, self.spatial_merge)
            poss.append(pos[:, m:])
            nexts.append(nxt)
            images.extend(c.image for s, c in image_starts(mi) if s >= m)
        B, T = len(inputs), max(len(t) for t in toks)
        ids = np.full((B, T), self.pad_id, np.int64)
        mask = np.zeros((B, T), np.int64)
        pos_ids = np.zeros((3, B, T), np.int64)
        for b, (t, p) in enumerate(zip(toks, poss)):
            sl = slice(T - len(t), T) if left_pad else slice(0, len(t))
            ids[b, sl], mask[b, sl], pos_ids[:, b, sl] = t, 1, p
        pixel_values = grid = None
        if images:
            pixel_values, grid = self.image_processor(images)
            pixel_values, grid = pixel_values.to(self.device, self.dtype), grid.to(self.device)
        dev = self.device
        return Batch(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev), torch.from_numpy(pos_ids).to(dev),
                     pixel_values, grid, [len(t) for t in toks], nexts)
