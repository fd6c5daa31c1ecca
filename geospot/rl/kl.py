"""Optional KL penalty to the starting policy (tinker-cookbook style): per sampled token,
advantage -= kl_coef * (logp_policy - logp_ref), where the reference is the policy the RL run
started from (`engine.set_reference()` at the start, e.g. the SFT checkpoint; without it, the
base model), scored by `engine.forward_base`. The sampler's logprobs stand in for the policy's
(they are the policy that sampled these tokens). Off by default: one extra forward pass per step."""

from __future__ import annotations

import dataclasses

import numpy as np

from geospot.engines.types import Datum


def apply_kl_penalty(engine, datums_D: list[Datum], kl_coef: float) -> tuple[list[Datum], float]:
    """(datums with penalised advantages, mean per-token KL estimate over sampled tokens)."""
    forward_base = getattr(engine, "forward_base", None)
    if forward_base is None:  # not an Engine: say what is missing instead of an AttributeError mid-step
        raise NotImplementedError(f"kl_coef > 0 needs an engine with forward_base (geospot.engines.types.Engine); "
                                  f"{type(engine).__name__} has none — set kl_coef=0")
    base_logprobs = forward_base(datums_D)
    out, kls = [], []
    for d, base_T in zip(datums_D, base_logprobs):
        sampled = d.loss_fn_inputs["logprobs"] != 0  # sampled tokens carry a (negative) logprob
        diff_T = np.where(sampled, d.loss_fn_inputs["logprobs"] - np.asarray(base_T, dtype=np.float32), 0.0)
        kls.extend(diff_T[sampled].tolist())
        inputs = dict(
            d.loss_fn_inputs, advantages=(d.loss_fn_inputs["advantages"] - kl_coef * diff_T).astype(np.float32)
        )
        out.append(dataclasses.replace(d, loss_fn_inputs=inputs))
    return out, float(np.mean(kls)) if kls else 0.0
