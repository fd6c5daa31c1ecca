"""Keep finished sequences' KV cache across `sample()` calls (issue 7: telescoping turns reuse
the cache of the earlier turns).

A telescoping turn-2 prompt is exactly turn-1 prompt + that rollout's sampled tokens + a new
user turn (Renderer.continuation), and at the end of the turn-1 `sample()` call the KV of the
turn-1 prompt and of every fed sampled token is already computed. The engine hands each
finished sequence to this store; the next call looks up, per prompt, the longest stored
sequence that its prompt extends and prefills only the rest.

What an entry holds: the sequence's *match key* (its tokens, with every image position replaced
by a fingerprint of that image's pixels, so equal placeholder tokens of different pictures never
match) and its KV as a list of segments. A segment is one tuple over layers of (keys, values),
each [heads, n, head_dim]; segments are shared between entries (the G rollouts of a prompt all
point at the one prompt segment, and a turn-2 entry points at its turn-1 segments), so a group's
image + prompt is held once however many turns and rollouts extend it.

Positions are not stored: the engine recomputes each prompt's multimodal positions from its
chunks (inputs.mrope_positions), which give the stored tokens exactly the positions they were
computed at, so the suffix continues where the stored sequence stopped.

Stale weights would silently give wrong logprobs, so the store remembers the weights' version
(the `_version` counters of the trainable tensors, which every in-place update — optimizer step,
copy_ in load_state — bumps) and empties itself when it changes; the engine also clears it
explicitly on optim_step and load_state. Memory is bounded by `max_tokens` KV positions (shared
segments counted once), least recently used entries first out.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from geospot.engines.types import ImageChunk, ModelInput, TextChunk

Segment = tuple  # one (keys [H, n, D], values [H, n, D]) pair per layer


# -- pure helpers ----------------------------------------------------------------------------------


def image_fingerprint(chunk: ImageChunk) -> int:
    """A negative int64 naming the picture (pixels + grid): never a token id."""
    im = chunk.image
    h = hashlib.blake2b(digest_size=8)
    h.update(repr((chunk.grid_thw, im.size, im.mode)).encode())
    h.update(im.tobytes())
    return -1 - (int.from_bytes(h.digest(), "little") >> 2)


def match_key(model_input: ModelInput, fingerprints: dict | None = None) -> np.ndarray:
    """int64[T]: text tokens as they are, image positions as the image's fingerprint. Two inputs
    share a KV prefix exactly as long as their keys agree. `fingerprints` memoises by chunk id."""
    parts = []
    for c in model_input.chunks:
        if isinstance(c, TextChunk):
            parts.append(np.asarray(c.tokens, dtype=np.int64))
        else:
            if fingerprints is None:
                fp = image_fingerprint(c)
            elif id(c) in fingerprints:
                fp = fingerprints[id(c)]
            else:
                fp = fingerprints[id(c)] = image_fingerprint(c)
            parts.append(np.full(c.length, fp, np.int64))
    return np.concatenate(parts) if parts else np.zeros(0, np.int64)


def common_prefix_len(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


def segments_length(segments: Sequence[Segment]) -> int:
    return sum(s[0][0].shape[1] for s in segments)


def take_segments(segments: Sequence[Segment], n: int) -> list[Segment]:
    """The segments covering the first n positions, the last one cut (a view, no copy)."""
    out, left = [], n
    for s in segments:
        if left <= 0:
            break
        m = s[0][0].shape[1]
        out.append(s if m <= left else tuple((k[:, :left], v[:, :left]) for k, v in s))
        left -= m
    if left > 0:
        raise ValueError(f"asked for {n} KV positions but the segments hold {n - left}")
    return out


def concat_segments(segments: Sequence[Segment], n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys [H, n, D], values [H, n, D]): the first n positions of the segments."""
    taken = take_segments(segments, n)
    return [
        (torch.cat([s[i][0] for s in taken], 1), torch.cat([s[i][1] for s in taken], 1)) for i in range(len(taken[0]))
    ]


def left_padded(rows: Sequence[list[tuple[torch.Tensor, torch.Tensor]]], width: int) -> tuple[list, torch.Tensor]:
    """Stack rows of per-layer (keys [H, n_b, D], values) into per-layer [B, H, width, D] batches,
    each row right-aligned (left-padded with zeros), and the int64 attention mask [B, width]."""
    B, L = len(rows), len(rows[0])
    k0 = rows[0][0][0]
    mask = torch.zeros(B, width, dtype=torch.int64, device=k0.device)
    layers = []
    for i in range(L):
        H, _, D = rows[0][i][0].shape
        ks = rows[0][i][0].new_zeros(B, H, width, D)
        vs = rows[0][i][1].new_zeros(B, H, width, rows[0][i][1].shape[2])
        for b, r in enumerate(rows):
            n = r[i][0].shape[1]
            if n:
                ks[b, :, width - n :], vs[b, :, width - n :] = r[i]
        layers.append((ks, vs))
    for b, r in enumerate(rows):
        n = r[0][0].shape[1]
        if n:
            mask[b, width - n :] = 1
    return layers, mask


# -- the store -------------------------------------------------------------------------------------


@dataclass(eq=False)  # identity: entries are removed from the LRU list by object
class Entry:
    key: np.ndarray  # int64[L] match key of the stored positions
    segments: list  # list[Segment]; together exactly L positions


class KVStore:
    def __init__(self, max_tokens: int):
        self.max_tokens = max_tokens
        self.entries: list[Entry] = []  # least recently used first
        self._index: dict[int, dict[bytes, Entry]] | None = None  # length -> key bytes -> entry; None = rebuild
        self._refs: dict[int, list[int]] = {}  # id(segment) -> [entries holding it, its positions]
        self._held = 0  # positions held, shared segments once
        self.weights_version: tuple | None = None
        self.hits = 0  # prompts that reused a stored prefix
        self.reused_tokens = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self._index, self._refs, self._held = None, {}, 0

    def sync_weights(self, version: tuple) -> None:
        """Empty the store when the weights changed since its entries were computed."""
        if version != self.weights_version:
            self.clear()
            self.weights_version = version

    @property
    def tokens(self) -> int:
        """KV positions held, each shared segment counted once."""
        return self._held

    def _count(self, entry: Entry, sign: int) -> None:
        """Reference-count entry's segments in (+1) or out (-1) of the store."""
        for seg in entry.segments:
            ref = self._refs.setdefault(id(seg), [0, seg[0][0].shape[1]])
            ref[0] += sign
            if ref[0] == 1 and sign > 0:
                self._held += ref[1]
            elif ref[0] == 0:
                self._held -= ref[1]
                del self._refs[id(seg)]

    def match(self, key: np.ndarray, min_len: int) -> Entry | None:
        """The longest entry that this prompt extends (its key is a proper prefix of the prompt's:
        at least one prompt token is left to prefill, whose logits start the sampling), None when
        there is none of at least min_len. Only whole entries: a prompt that merely shares a part
        (the same prompt sampled again) is prefilled as usual, so repeating a seeded call repeats
        its results bit for bit. One dict lookup per distinct entry length, not a comparison per
        entry: a telescoping turn of B*G prompts meets B*G entries."""
        best = None
        for n, by_key in sorted(self._by_length().items(), reverse=True):
            if min_len <= n < len(key):
                best = by_key.get(key[:n].tobytes())
                if best is not None:
                    break
        if best is not None:
            self.entries.remove(best)  # most recently used goes last
            self.entries.append(best)
        return best

    def _by_length(self) -> dict[int, dict[bytes, Entry]]:
        if self._index is None:
            self._index = {}
            for e in self.entries:
                self._index.setdefault(len(e.key), {})[e.key.tobytes()] = e
        return self._index

    def add(self, key: np.ndarray, segments: list) -> None:
        """Store a sequence; entries it extends are dropped (anything they could serve, it serves
        at least as well). Then evict least recently used entries down to max_tokens."""
        if self.max_tokens <= 0 or not len(key):
            return
        if segments_length(segments) != len(key):
            raise ValueError(f"KV segments hold {segments_length(segments)} positions for a {len(key)}-token key")
        new = Entry(key, segments)
        self._count(new, +1)  # first, so segments it shares with the entries it replaces stay counted
        index = self._by_length()
        stale = set()
        for n, by_key in index.items():
            e = by_key.pop(key[:n].tobytes(), None) if n <= len(key) else None
            if e is not None:
                stale.add(id(e))
                self._count(e, -1)
        if stale:
            self.entries = [e for e in self.entries if id(e) not in stale]
        self.entries.append(new)
        index.setdefault(len(key), {})[key.tobytes()] = new
        while self.entries and self._held > self.max_tokens:
            old = self.entries.pop(0)
            self._count(old, -1)
            del index[len(old.key)][old.key.tobytes()]
