"""The vocabulary-wide head only where a target logprob is needed, and with gradient only where the
loss has one (issue 24).

A model call's head (`lm_head`, hidden -> vocabulary) runs at every position of every row, and
the target logprobs then take a logsumexp over all of it, kept for the backward. With Qwen's 152k
vocabulary that is the largest activation of a training pass, and most of it is wasted: pad
positions have no target, and an RL datum's ~300 image + prompt positions have advantage 0, so
the loss has exactly zero gradient there (losses.py declares which positions can have one).

Here the caller names its *entries* — (flat position in the [rows, length] batch, target token,
needs gradient) — and the model's own head call computes, instead of logits,

- at positions some entry needs a gradient for: head + fp32 logsumexp with autograd (one piece:
  its logits are kept for the backward either way);
- at the other target positions: the same under `torch.no_grad()`, in chunks of
  `NO_GRAD_CHUNK_ROWS` positions (nothing kept; the logprob is still returned — Tinker's
  forward_backward returns target logprobs at every target position);
- nowhere else (pads).

The per-entry logprobs are assembled with out-of-place `index_copy`, so autograd carries each
gradient back through the selected hidden rows into the model. Values equal the full computation's
(the same head, summed in the same order per row; fp32 tolerance, tests check it) and so do the
gradients (the skipped positions contribute exact zeros).

Why inside the head call and not the model's body + our own head: the model's own forward runs
as usual (PEFT's LoRA layers, the image feature cache, FSDP2's gathers of the root's parameters —
the head's included — and the lockstep hooks all see an ordinary call). For that one call the
head module gets an instance `forward` that computes the plan's logprobs from the hidden states it
is handed and returns them as the call's `logits` (float32 [E]), so whatever hooks the model's
outputs (FSDP2's pre-backward gathers of the root's parameters) sees the tensor the loss uses;
the instance `forward` is removed afterwards.
"""

from __future__ import annotations

import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from geospot.models.compat import peft_base

# positions per no-grad head call: bounds the scoring-only logits (152k vocab: 156 MB fp32 + 78 MB bf16 at 256)
NO_GRAD_CHUNK_ROWS = 256


@dataclass
class _Piece:
    """One head call: hidden rows `rows` (flat positions), with or without gradient; entry `entries[k]`
    reads row `local[k]` at token `targets[k]`."""

    rows: torch.Tensor
    entries: torch.Tensor
    local: torch.Tensor
    targets: torch.Tensor
    grad: bool


@dataclass
class HeadPlan:
    """Which logprobs one model call computes: entry e is log p(target_E[e]) at flat position pos_E[e]
    (row * length + column) of the [rows, length] batch; grad_E[e]: it needs a gradient."""

    n_entries: int
    pieces: list[_Piece]

    @property
    def grad_rows(self) -> int:
        """Positions the head runs at with gradient."""
        return sum(len(p.rows) for p in self.pieces if p.grad)

    @property
    def rows(self) -> int:
        """Positions the head runs at."""
        return sum(len(p.rows) for p in self.pieces)


def grad_mask(needs_grad, datum, n: int) -> np.ndarray:
    """bool [n]: the target positions of `datum` whose logprob needs a gradient — what
    `needs_grad(datum)` says, or all of them (needs_grad None, or it answers None)."""
    g = needs_grad(datum) if needs_grad is not None else None
    return np.ones(n, bool) if g is None else np.asarray(g, bool)


def make_plan(pos_E: np.ndarray, target_E: np.ndarray, grad_E: np.ndarray | None, device,
              chunk_rows: int = NO_GRAD_CHUNK_ROWS) -> HeadPlan:
    """The head calls for these entries: one with gradient at every position some entry needs it
    for (grad_E None: all of them), the remaining target positions without, in chunks."""
    pos_E = np.asarray(pos_E, np.int64)
    target_E = np.asarray(target_E, np.int64)
    grad_E = np.ones(len(pos_E), bool) if grad_E is None else np.asarray(grad_E, bool)
    grad_rows = np.unique(pos_E[grad_E])
    rest_rows = np.setdiff1d(np.unique(pos_E), grad_rows, assume_unique=True)
    parts = [(grad_rows, True)] if len(grad_rows) else []
    parts += [(rest_rows[i:i + chunk_rows], False) for i in range(0, len(rest_rows), chunk_rows)]
    pieces = []
    t = lambda a: torch.from_numpy(np.ascontiguousarray(a)).to(device)
    for rows, grad in parts:
        k = np.searchsorted(rows, pos_E)
        hit = (k < len(rows)) & (rows[np.minimum(k, len(rows) - 1)] == pos_E)
        entries = np.flatnonzero(hit)
        pieces.append(_Piece(t(rows), t(entries), t(k[entries]), t(target_E[entries]), grad))
    return HeadPlan(len(pos_E), pieces)


def project(head: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """The head's own computation on some hidden rows (its class's forward: any Linear subclass)."""
    return type(head).forward(head, hidden)


def _planned_forward(self, hidden: torch.Tensor) -> torch.Tensor:
    plan: HeadPlan = self._geospot_plan
    if hidden.dim() != 3:
        raise RuntimeError(f"the head got hidden states of shape {tuple(hidden.shape)}, expected [rows, length, "
                           "hidden]: this model's forward slices them before its head; score without a head plan")
    flat = hidden.reshape(-1, hidden.shape[-1])
    grad_on = torch.is_grad_enabled()
    lp_E = flat.new_zeros(plan.n_entries, dtype=torch.float32)
    for piece in plan.pieces:
        with torch.set_grad_enabled(grad_on and piece.grad):
            logits = project(self, flat.index_select(0, piece.rows)).float()
            lp = logits[piece.local, piece.targets] - torch.logsumexp(logits, dim=-1)[piece.local]
        lp_E = lp_E.index_copy(0, piece.entries, lp)  # out of place: autograd reaches the grad piece
    if grad_on and not any(p.grad for p in plan.pieces):
        # no entry needs a gradient (a microbatch of zero-advantage datums), yet a forward under grad
        # must still have a backward through the model: under FSDP2 resharding every backward is a
        # collective the other ranks make (parallel.py's Lockstep). Exact zeros, as before the lever
        lp_E = lp_E + project(self, flat[:1]).float().sum() * 0.0
    return lp_E  # the call's "logits": the entries' logprobs, out through the model's own output


def output_head(model: torch.nn.Module) -> torch.nn.Module:
    base = peft_base(model)
    return base.get_output_embeddings()


@contextmanager
def planned_head(model: torch.nn.Module, plan: HeadPlan) -> Iterator[None]:
    """For the model calls inside: the head returns `plan`'s logprobs float32 [E] as the logits."""
    head = output_head(model)
    head._geospot_plan = plan
    head.forward = types.MethodType(_planned_forward, head)
    try:
        yield
    finally:
        del head.forward, head._geospot_plan


def target_logprobs(model: torch.nn.Module, model_kwargs: dict, plan: HeadPlan) -> torch.Tensor:
    """float32 [E]: the plan's entries' logprobs from one call of `model` on `model_kwargs`
    (differentiable at the entries that need a gradient when grad is enabled)."""
    with planned_head(model, plan):
        lp_E = model(**model_kwargs).logits
    if lp_E.shape != (plan.n_entries,):
        raise RuntimeError(f"the model's output logits have shape {tuple(lp_E.shape)}, not the plan's "
                           f"({plan.n_entries},): its forward changes the head's output; score without a head plan")
    return lp_E


__all__ = ["HeadPlan", "NO_GRAD_CHUNK_ROWS", "grad_mask", "make_plan", "output_head", "planned_head", "project",
           "target_logprobs"]
