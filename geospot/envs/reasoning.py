"""What a reasoning turn (`<think>…</think>` then the answer) is measured by, and what its
length costs. The answer itself is read by `geospot.geo.parse` (it drops think blocks).

Reasoning tokens are the sampled tokens up to and including `</think>` (all of them when the
block never closes: generation stopped while thinking). They are counted on the tokens, not
the text, with a binary search over decoded prefixes: a prefix's text contains `</think>`
from one length on, so ~log2(T) decodes find it, exactly, whatever the tokenizer merges."""

from __future__ import annotations

from collections.abc import Sequence

from geospot.prompts import THINK_CLOSE, THINK_OPEN


def reasoning_tokens(renderer, tokens: Sequence[int]) -> int:
    """Tokens spent reasoning: up to and including the one that completes `</think>`; every
    sampled token (stop tokens aside) when `<think>` never closes; 0 with no think block."""
    tokens = [int(t) for t in tokens]
    stops = set(getattr(renderer, "stop_token_ids", ()))
    while tokens and tokens[-1] in stops:
        tokens.pop()
    text = renderer.decode(tokens)
    if THINK_CLOSE not in text:
        return len(tokens) if THINK_OPEN in text else 0
    lo, hi = 1, len(tokens)  # the shortest prefix whose text holds the close tag is in [lo, hi]
    while lo < hi:
        mid = (lo + hi) // 2
        if THINK_CLOSE in renderer.decode(tokens[:mid]):
            hi = mid
        else:
            lo = mid + 1
    return lo


def reasoning_turn_metrics(renderer, tokens: Sequence[int], parsed: bool) -> dict[str, float]:
    """Per-turn metrics of a reasoning turn: `reasoning_tokens`, `think_closed` (the block ended)
    and `answer_format` (it ended and an answer parsed after it: the format the prompt asks)."""
    text = renderer.decode([int(t) for t in tokens])
    closed = THINK_CLOSE in text
    return {"reasoning_tokens": float(reasoning_tokens(renderer, tokens)), "think_closed": float(closed),
            "answer_format": float(closed and parsed)}


def length_penalty(coef: float, n_reasoning_tokens: float) -> float:
    """What a turn's reasoning costs: coef x reasoning tokens (subtracted from its reward).
    Linear rather than a cap because the cap already exists — max_tokens, where a turn that
    never reaches its answer earns the format penalty — and a linear cost gives every token
    inside the budget a price, so GRPO prefers the shorter of two equally right answers."""
    return float(coef) * float(n_reasoning_tokens)
