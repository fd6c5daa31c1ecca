"""Tinker's losses as pure functions of per-token tensors. Every loss is SUMMED over tokens
(and, by the caller, over datums) — never averaged, as in Tinker; scale through the
weights/advantages or the learning rate.

  cross_entropy:        -sum_t w_t * lp_t
  importance_sampling:  -sum_t exp(lp_t - q_t) * A_t          (q = sampler's logprobs)
  ppo:                  -sum_t min(r_t A_t, clip(r_t, lo, hi) A_t),  r = exp(lp - q)
"""

from __future__ import annotations

import numpy as np
import torch

from geospot.engines.types import LOSS_CONFIG_KEYS, REQUIRED_INPUTS  # REQUIRED_INPUTS re-exported

ALL_POSITIONS = None
# Where each loss's gradient w.r.t. the target logprob lp_t can be non-zero: the positions where this
# input is non-zero. The trainer runs the vocabulary-wide head with gradient only there (under no_grad
# elsewhere, still returning the logprob; target_head.py), so a wrong entry silently drops gradient.
# Each holds because the input multiplies every term that depends on lp_t:
#   cross_entropy:       d/dlp_t = -w_t                                 -> 0 where w_t = 0
#   importance_sampling: d/dlp_t = -exp(lp_t - q_t) A_t                 -> 0 where A_t = 0
#   ppo:                 -min(r_t A_t, clip(r_t) A_t): both terms carry A_t -> 0 where A_t = 0
# (a non-finite ratio times 0 makes the loss NaN either way, and forward_backward raises).
# A loss without such an input (e.g. a KL or entropy term over every position) declares ALL_POSITIONS.
GRAD_INPUT: dict[str, str | None] = {
    "cross_entropy": "weights",
    "importance_sampling": "advantages",
    "ppo": "advantages",
}


def grad_positions(loss_fn: str, loss_fn_inputs: dict) -> np.ndarray | None:
    """bool [T]: the target positions where `loss_fn` can have a gradient w.r.t. the target
    logprob (GRAD_INPUT); None = every position."""
    key = GRAD_INPUT[loss_fn]
    if key is ALL_POSITIONS:
        return None
    return np.asarray(loss_fn_inputs[key]) != 0


def cross_entropy(target_logprobs_T: torch.Tensor, weights_T: torch.Tensor) -> torch.Tensor:
    return -(weights_T * target_logprobs_T).sum()


def importance_sampling(
    target_logprobs_T: torch.Tensor, sampling_logprobs_T: torch.Tensor, advantages_T: torch.Tensor
) -> torch.Tensor:
    ratio_T = torch.exp(target_logprobs_T - sampling_logprobs_T)
    return -(ratio_T * advantages_T).sum()


def ppo(
    target_logprobs_T: torch.Tensor,
    sampling_logprobs_T: torch.Tensor,
    advantages_T: torch.Tensor,
    clip_low_threshold: float = 0.8,
    clip_high_threshold: float = 1.2,
) -> torch.Tensor:
    ratio_T = torch.exp(target_logprobs_T - sampling_logprobs_T)
    clipped_T = torch.clamp(ratio_T, clip_low_threshold, clip_high_threshold)
    return -torch.minimum(ratio_T * advantages_T, clipped_T * advantages_T).sum()


def compute_loss(
    loss_fn: str, target_logprobs_T: torch.Tensor, inputs: dict[str, torch.Tensor], config: dict | None = None
) -> torch.Tensor:
    """Dispatch on Tinker's loss names with Tinker's input keys."""
    config = dict(config or {})
    if loss_fn == "cross_entropy":
        return cross_entropy(target_logprobs_T, inputs["weights"])
    if loss_fn == "importance_sampling":
        return importance_sampling(target_logprobs_T, inputs["logprobs"], inputs["advantages"])
    if loss_fn == "ppo":
        unknown = set(config) - LOSS_CONFIG_KEYS["ppo"]
        if unknown:
            raise ValueError(
                f"unknown ppo loss_config keys {sorted(unknown)}; use clip_low_threshold / clip_high_threshold"
            )
        return ppo(target_logprobs_T, inputs["logprobs"], inputs["advantages"], **config)
    raise ValueError(f"unknown loss_fn {loss_fn!r}; use cross_entropy, importance_sampling or ppo")


__all__ = ["ALL_POSITIONS", "GRAD_INPUT", "LOSS_CONFIG_KEYS", "REQUIRED_INPUTS", "compute_loss", "cross_entropy",
           "grad_positions", "importance_sampling", "ppo"]
