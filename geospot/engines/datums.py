"""Build a Datum from a full sequence: the ONE place that shifts.

Tinker semantics: position i of the datum's input predicts `target_tokens[i]`, i.e. the
input is the sequence without its last token and every per-token array is the sequence's
array without its first entry. Positions whose target is an image placeholder carry zero
in every array (no loss, no advantage on pixels).
"""

from __future__ import annotations

import numpy as np

from geospot.engines.types import Datum, ModelInput, TextChunk


def drop_last_token(model_input: ModelInput) -> ModelInput:
    if not model_input.chunks or not isinstance(model_input.chunks[-1], TextChunk):
        raise ValueError("a datum's sequence must end with text (the last assistant token), not an image")
    last = model_input.chunks[-1]
    head = model_input.chunks[:-1]
    return ModelInput(head + ((TextChunk(last.tokens[:-1]),) if last.length > 1 else ()))


def all_tokens(model_input: ModelInput, image_token: int = 0) -> np.ndarray:
    """int64[T]; image positions hold `image_token`."""
    parts = [
        np.asarray(c.tokens, np.int64) if isinstance(c, TextChunk) else np.full(c.length, image_token, np.int64)
        for c in model_input.chunks
    ]
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def make_datum(full: ModelInput, *, group: int | None = None, **per_token_arrays_T) -> Datum:
    """`full` is prompt + completion; each array (weights, logprobs, advantages, ...) is
    aligned with `full` (length full.length). Returns the shifted Datum (in GRPO group `group`)."""
    n = full.length
    if n < 2:
        raise ValueError(f"a datum needs at least 2 tokens, got {n}")
    is_text_T = full.token_mask()
    loss_inputs = {"target_tokens": all_tokens(full)[1:]}
    for name, arr in per_token_arrays_T.items():
        arr = np.asarray(arr)
        if arr.shape != (n,):
            raise ValueError(f"make_datum: {name} has shape {arr.shape}, expected ({n},) aligned with the full "
                             "sequence")
        shifted = arr[1:].astype(np.float32, copy=True)
        shifted[~is_text_T[1:]] = 0.0  # targets that are image placeholders: no loss
        loss_inputs[name] = shifted
    return Datum(model_input=drop_last_token(full), loss_fn_inputs=loss_inputs, group=group)

