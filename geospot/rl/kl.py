"""Optional KL penalty to the starting policy (tinker-cookbook style): per sampled token,
advantage -= kl_coef * (logp_policy - logp_ref), where the reference is the policy the RL run
started from (`engine.set_reference()` at the start, e.g. the SFT checkpoint; without it, the
base model with the adapter disabled). The sampler's logprobs stand in for the policy's (they are the policy that
sampled these tokens). Off by default: it costs one extra forward pass per step."""

from __future__ import annotations

import dataclasses

import numpy as np

from geospot.engines.types import Datum


def base_forward(engine, datums_D: list[Datum]) -> list[np.ndarray]:
    """Target logprobs under the base model: the engine's own `forward_base` if it has one,
    else a local PEFT engine's forward inside `disable_adapter()`."""
    if hasattr(engine, "forward_base"):
        return engine.forward_base(datums_D)
    model = getattr(engine, "model", None)
    if model is None or not hasattr(model, "disable_adapter"):
        raise NotImplementedError(f"kl_coef > 0 needs a LoRA adapter to disable (lora_rank > 0) or an engine with "
                                  f"forward_base; {type(engine).__name__} has neither — set kl_coef=0")
    with model.disable_adapter():
        return engine.forward(datums_D)


def apply_kl_penalty(engine, datums_D: list[Datum], kl_coef: float) -> tuple[list[Datum], float]:
    """(datums with penalised advantages, mean per-token KL estimate over sampled tokens)."""
    base_logprobs = base_forward(engine, datums_D)
    out, kls = [], []
    for d, base_T in zip(datums_D, base_logprobs):
        sampled = d.loss_fn_inputs["logprobs"] != 0  # sampled tokens carry a (negative) logprob
        diff_T = np.where(sampled, d.loss_fn_inputs["logprobs"] - np.asarray(base_T, dtype=np.float32), 0.0)
        kls.extend(diff_T[sampled].tolist())
        inputs = dict(d.loss_fn_inputs, advantages=(d.loss_fn_inputs["advantages"] - kl_coef * diff_T).astype(np.float32))
        out.append(dataclasses.replace(d, loss_fn_inputs=inputs))
    return out, float(np.mean(kls)) if kls else 0.0
