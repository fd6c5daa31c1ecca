"""The stop rule every sampler shares (local torch sampler, vLLM): which token ids and which
strings end a sample. One function so the two samplers cannot drift apart."""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def resolve_stops(
    stop: Sequence[int | str] | None, default_ids: Sequence[int], vocab: Mapping[str, int]
) -> tuple[set[int], list[str]]:
    """Explicit stops replace the default end-of-turn ids: ints are ids, a string that is one
    token (e.g. "<|im_end|>") stops on that id, any other string stays a string to match in the
    decoded text (in the order given). No explicit stops -> `default_ids` and no strings."""
    if not stop:
        return {int(t) for t in default_ids}, []
    ids = {int(s) for s in stop if isinstance(s, int)}
    strs = []
    for s in stop:
        if isinstance(s, str):
            if s in vocab:
                ids.add(int(vocab[s]))
            else:
                strs.append(s)
    return ids, strs
