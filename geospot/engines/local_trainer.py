"""The local engine's trainer room: scoring, forward/backward with shared prefixes, the optimizer,
and the KL reference.

Shared-prefix training (issue 7). The G datums of a GRPO group repeat the same image + prompt;
a naive batch runs the vision tower and the prefix G times. Instead each group is one packed row
[prefix | completion_1 .. completion_G] with a block attention mask (prefix.py): the prefix runs
once and gradients flow back into it from every completion; a frozen vision tower encodes each
image once for all of it (vision_cache.py). The logprobs and gradients equal the naive
computation's (tests check it, fp32 tolerance).

The vocabulary-wide head runs only at target positions, and with gradient only where the loss can
have one (an RL datum's image + prompt positions have advantage 0): target_head.py, losses.GRAD_INPUT.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import numpy as np
import torch
from torch.distributed.tensor import DTensor
from transformers import AutoModelForImageTextToText

from geospot.engines.local_model import LocalModel
from geospot.engines.losses import compute_loss, grad_positions
from geospot.engines.master_weights import MasterWeights
from geospot.engines.prefix import (
    DEFAULT_MICROBATCH_TOKENS,
    PackedGroup,
    group_datums,
    iter_shared_prefix_logprobs,
    supports_packing,
)
from geospot.engines.target_head import grad_mask, make_plan, target_logprobs
from geospot.engines.types import REQUIRED_INPUTS, AdamParams, Datum, ForwardBackwardResult

MAX_TOKENS_PER_MICROBATCH = DEFAULT_MICROBATCH_TOKENS  # training/scoring batches are split to bound activation memory


def _swap_data(params: Sequence[tuple[str, torch.nn.Parameter]], tensors: dict[str, torch.Tensor]) -> None:
    """Exchange the tensors behind `params` with `tensors` (by name); a second call swaps back."""
    for n, p in params:
        p.data, tensors[n] = tensors[n], p.data


class LocalTrainer:
    def __init__(self, core: LocalModel):
        self.core = core
        self.optimizer: torch.optim.AdamW | None = None
        # what the optimizer steps: fp32 copies of bf16/fp16 trainable weights (master_weights.py)
        self.master: MasterWeights | None = None
        self._reference: dict[str, torch.Tensor] | None = None  # LoRA: the adapter set_reference froze
        self._base_model: torch.nn.Module | None = None  # full fine-tuning: the KL reference model
        self.sync = None  # under torchrun: reduces the ranks' gradients at optim_step (parallel.py)

    # -- scoring ----------------------------------------------------------------------------------

    def _microbatches(self, datums: Sequence[Datum]) -> list[list[int]]:
        groups, cur, cur_tokens = [], [], 0
        for i, d in enumerate(datums):
            n = d.model_input.length
            if cur and (len(cur) + 1) * max(cur_tokens, n) > MAX_TOKENS_PER_MICROBATCH:
                groups.append(cur)
                cur, cur_tokens = [], 0
            cur.append(i)
            cur_tokens = max(cur_tokens, n)
        if cur:
            groups.append(cur)
        return groups

    def _target_logprobs(self, datums: Sequence[Datum], needs_grad=None) -> list[torch.Tensor]:
        """Per datum, log p(target_tokens[i] | input[:i+1]) at temperature 1, float32 [T]: the head
        at its target positions only, with gradient where `needs_grad(datum)` (bool [T]; None = all)
        says so (target_head.py)."""
        core = self.core
        for i, d in enumerate(datums):
            core._check_input(i, d.model_input)
        batch = core._batch([d.model_input for d in datums], left_pad=False)
        B, T = batch.input_ids.shape
        core.tokens.add("train", needed=sum(batch.lengths), processed=B * T)
        where, targets, grads = [], [], []
        for b, (d, n) in enumerate(zip(datums, batch.lengths)):
            where.append(b * T + np.arange(n))
            targets.append(np.asarray(d.loss_fn_inputs["target_tokens"], dtype=np.int64))
            grads.append(grad_mask(needs_grad, d, n))
        plan = make_plan(np.concatenate(where), np.concatenate(targets), np.concatenate(grads), core.device)
        lp = target_logprobs(core.model, dict(batch.model_kwargs(), use_cache=False), plan)
        return list(torch.split(lp, batch.lengths))

    def groups(self, datums: Sequence[Datum]) -> list[PackedGroup] | None:
        """prefix.py's packed groups of these datums, or None when packing is off or unsupported."""
        if not (self.core.shared_prefix and supports_packing(self.core.model)):
            return None
        return group_datums(datums, MAX_TOKENS_PER_MICROBATCH)

    def plan(self, datums: Sequence[Datum]) -> list[tuple[list[int], int]]:
        """[(datum indices, shared prefix length)]: the groups forward/forward_backward score
        together (geospot/engines/prefix.py); 0 = no shared prefix."""
        groups = self.groups(datums)
        if groups is None:
            return [(list(range(len(datums))), 0)]
        return [(g.members, g.prefix_len if len(g.members) > 1 else 0) for g in groups]

    def _logprob_batches(self, datums: Sequence[Datum], needs_grad=None):
        """Yields (datum indices, target logprobs) per microbatch. Datums sharing an image-bearing
        prefix (a GRPO group; a telescoping group's first turn) are packed one row per group,
        [prefix | completion_1 .. completion_G] with a block mask, so the prefix runs once and
        gradients equal the per-sequence ones (prefix.py); otherwise plain padded batches.
        `needs_grad(datum)`: bool [T], the positions whose logprob needs a gradient (None: all)."""
        core = self.core
        groups = self.groups(datums)  # grouping compares prefixes and pixels: done once, handed on
        if groups is not None and any(len(g.members) > 1 and g.prefix_len for g in groups):
            for i, d in enumerate(datums):
                core._check_input(i, d.model_input)
            yield from iter_shared_prefix_logprobs(core.model, datums, renderer=core.renderer,
                                                   spatial_merge=core.spatial_merge, pad_id=core.pad_id,
                                                   microbatch_tokens=MAX_TOKENS_PER_MICROBATCH,
                                                   counter=core.tokens, groups=groups, needs_grad=needs_grad)
            return
        for mb in self._microbatches(datums):
            yield mb, self._target_logprobs([datums[i] for i in mb], needs_grad)

    @torch.no_grad()
    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        out: list[np.ndarray] = [None] * len(datums)  # type: ignore[list-item]
        for idx, lps in self._logprob_batches(datums):
            for i, lp in zip(idx, lps):
                out[i] = lp.cpu().numpy()
        return out

    # -- the KL reference -------------------------------------------------------------------------

    @torch.no_grad()
    def set_reference(self) -> None:
        """Freeze the current weights as the KL reference that `forward_base` scores with (RL
        calls it at its starting policy, e.g. the SFT checkpoint). Without it the reference is
        the untrained base model. LoRA: a copy of the adapter (small); full fine-tuning: a copy
        of the model."""
        core = self.core
        if core.cfg.lora_rank > 0:
            self._reference = {n: p.detach().clone() for n, p in core.trainable}
        else:
            self._base_model = copy.deepcopy(core.model).eval().requires_grad_(False)

    def forward_base(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        """Target logprobs under the KL reference: the weights `set_reference` froze, else the
        untrained base model (LoRA off, or for full fine-tuning the original weights reloaded
        from the model folder once)."""
        core = self.core
        if core.cfg.lora_rank > 0:
            if self._reference is None:
                with core.model.disable_adapter():
                    return self.forward(datums)
            # swap the adapter's storage with the reference's, and back: no copies, and the
            # optimizer's parameter objects stay the same
            _swap_data(core.trainable, self._reference)
            try:
                return self.forward(datums)
            finally:
                _swap_data(core.trainable, self._reference)
        if self._base_model is None:
            self._base_model = AutoModelForImageTextToText.from_pretrained(core.folder, dtype=core.dtype)
            self._base_model = self._base_model.to(core.device).eval()
        trained, core.model = core.model, self._base_model
        try:
            return self.forward(datums)
        finally:
            core.model = trained

    # -- training ---------------------------------------------------------------------------------

    def forward_backward(self, datums: Sequence[Datum], loss_fn: str,
                         loss_config: dict | None = None) -> ForwardBackwardResult:
        core = self.core
        if loss_fn not in REQUIRED_INPUTS:
            raise ValueError(f"unknown loss_fn {loss_fn!r}; use one of {', '.join(REQUIRED_INPUTS)}")
        for i, d in enumerate(datums):
            missing = [k for k in REQUIRED_INPUTS[loss_fn] if k not in d.loss_fn_inputs]
            if missing:
                raise ValueError(f"datum {i} lacks {missing} needed by loss_fn={loss_fn!r} "
                                 f"(has {sorted(d.loss_fn_inputs)})")
        all_lp: list[np.ndarray] = [None] * len(datums)  # type: ignore[list-item]
        total, n_tokens = 0.0, 0
        # the head runs with gradient only where the loss can have one (losses.GRAD_INPUT); every
        # target logprob is still returned (target_head.py). Off: gradient at every target position
        needs_grad = (lambda d: grad_positions(loss_fn, d.loss_fn_inputs)) if core.head_at_trained_positions else None
        for mb, lps in self._logprob_batches(datums, needs_grad):
            losses = []
            for i, lp in zip(mb, lps):
                inputs = {k: torch.as_tensor(np.asarray(v), device=core.device, dtype=torch.float32)
                          for k, v in datums[i].loss_fn_inputs.items() if k != "target_tokens"}
                loss = compute_loss(loss_fn, lp, inputs, loss_config)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{loss_fn} loss is {loss.item()} at step {core.step} for datum {i} "
                        f"(length {datums[i].model_input.length}, min logprob {lp.min().item():.3g}); "
                        "check its advantages/logprobs for NaN or inf, or lower the learning rate"
                    )
                losses.append(loss)
                all_lp[i] = lp.detach().cpu().numpy()
                n_tokens += len(lp)
            mb_loss = torch.stack(losses).sum()
            if mb_loss.requires_grad:
                mb_loss.backward()
            total += mb_loss.item()
        metrics = {"loss:sum": total, "tokens": float(n_tokens), "datums": float(len(datums))}
        return ForwardBackwardResult(logprobs=all_lp, metrics=metrics)

    def masters(self) -> MasterWeights:
        """The optimizer's parameters, made from the model's weights on first use; load_state
        sets them from a checkpoint's fp32 values."""
        if self.master is None:
            self.master = MasterWeights(self.core.trainable)
        return self.master

    def master_values(self) -> list[tuple[str, torch.Tensor]]:
        """(name, value) of every trainable weight at the optimizer's precision (what a checkpoint
        keeps): the fp32 copies once they exist, else the model's weights (equal to them)."""
        return self.master.named() if self.master is not None else list(self.core.trainable)

    def new_optimizer(self, adam: AdamParams) -> torch.optim.AdamW:
        return torch.optim.AdamW(self.masters().params, lr=adam.learning_rate, betas=(adam.beta1, adam.beta2),
                                 eps=adam.eps, weight_decay=adam.weight_decay, foreach=False)

    def optim_step(self, adam: AdamParams) -> dict[str, float]:
        core = self.core
        if self.optimizer is None:
            self.optimizer = self.new_optimizer(adam)
        for g in self.optimizer.param_groups:  # schedules live in the loop: hyperparameters per call
            g.update(lr=adam.learning_rate, betas=(adam.beta1, adam.beta2), eps=adam.eps,
                     weight_decay=adam.weight_decay)
        if self.sync is not None:  # every rank, once per step, whether or not it had datums
            self.sync.sync()
        master = self.masters()
        master.take_grads()  # clipping and the step run in fp32 on the copies
        params = [p for p in master.params if p.grad is not None]
        max_norm = adam.grad_clip_norm if adam.grad_clip_norm is not None else math.inf
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else torch.zeros(())
        # FSDP2's gradients are shards (DTensor): the norm is whole only once gathered
        grad_norm = float(norm.full_tensor() if isinstance(norm, DTensor) else norm)
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"gradient norm is {grad_norm} at step {core.step}; "
                                     "lower the learning rate or check the datums")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        master.write_back()  # the fp32 result, rounded once into the model's weights
        if self.sync is not None:  # FSDP2: gather the updated shards into whole parameters again
            self.sync.after_step()
        core.kv_store.clear()  # KV computed by the old weights is stale
        core.step += 1
        return {"grad_norm": grad_norm, "learning_rate": adam.learning_rate, "step": float(core.step)}
