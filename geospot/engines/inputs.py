"""ModelInput helpers both local rooms share: multimodal positions and where images sit.

Multimodal positions. Qwen-VL rotates queries/keys with 3-D positions (t, h, w): text advances
all three by one per token; an image's placeholders take (start + t, start + row, start + col) on
its merged grid and the text after it resumes at start + max(rows, cols). We compute these
ourselves from the ModelInput chunks (the same rule as transformers' `get_rope_index`, which a
test checks) and always pass `position_ids`, so prefill, decode and multi-turn training sequences
agree by construction and no hidden `rope_deltas` state in the model is ever consulted.
"""

from __future__ import annotations

import numpy as np

from geospot.engines.types import ImageChunk, ModelInput, TextChunk


def mrope_positions(model_input: ModelInput, spatial_merge: int) -> tuple[np.ndarray, int]:
    """(positions int64[3, T], next_position) for one sequence. Text: t=h=w=i. Image: its merged
    grid at (start+t, start+row, start+col); the next text starts at start + max(rows, cols)."""
    parts, pos = [], 0
    for c in model_input.chunks:
        if isinstance(c, TextChunk):
            ar = np.arange(pos, pos + c.length, dtype=np.int64)
            parts.append(np.stack([ar, ar, ar]))
            pos += c.length
        else:
            t, h, w = c.grid_thw
            gh, gw = h // spatial_merge, w // spatial_merge
            tt, hh, ww = np.meshgrid(np.arange(t), np.arange(gh), np.arange(gw), indexing="ij")
            parts.append(np.stack([tt.ravel(), hh.ravel(), ww.ravel()]).astype(np.int64) + pos)
            pos += max(gh, gw)
    return (np.concatenate(parts, axis=1) if parts else np.zeros((3, 0), np.int64)), pos


def image_starts(model_input: ModelInput) -> list[tuple[int, ImageChunk]]:
    """(position, chunk) of every image, in order."""
    out, pos = [], 0
    for c in model_input.chunks:
        if isinstance(c, ImageChunk):
            out.append((pos, c))
        pos += c.length
    return out


def head(model_input: ModelInput, n: int) -> ModelInput:
    """The first n positions (must not cut an image)."""
    chunks, k = [], 0
    for c in model_input.chunks:
        if k >= n:
            break
        if k + c.length <= n:
            chunks.append(c)
        elif isinstance(c, TextChunk):
            chunks.append(TextChunk(c.tokens[: n - k]))
        else:
            raise ValueError("a shared prefix cannot end inside an image")
        k += c.length
    return ModelInput(tuple(chunks))


def images_end_before(model_input: ModelInput, n: int) -> bool:
    return all(s + c.length <= n for s, c in image_starts(model_input))


def same_image(a: ImageChunk, b: ImageChunk) -> bool:
    """Same chunk object (what rollouts produce: every datum of a group extends one prompt), or
    the same pixels at the same grid (datums rebuilt from the same image)."""
    if a is b:
        return True
    return (a.grid_thw == b.grid_thw and a.image.size == b.image.size and a.image.mode == b.image.mode
            and a.image.tobytes() == b.image.tobytes())


def same_images(a: ModelInput, b: ModelInput, n: int) -> bool:
    """Do a and b hold the same pictures in their first n positions? (Equal placeholder
    tokens do not mean equal pixels.)"""
    ia = [c for s, c in image_starts(a) if s < n]
    ib = [c for s, c in image_starts(b) if s < n]
    return len(ia) == len(ib) and all(map(same_image, ia, ib))
