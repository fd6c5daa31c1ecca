"""Shared-prefix scoring and training: encode each image (and its prompt) once per group.

A GRPO batch holds G datums per image: the same image + prompt, G different completions
(telescoping datums share the first turn's image + prompt and then diverge). The naive forward
pass — ours before, TRL's, verl's — runs the vision tower and the whole prompt G times. Here the
G datums of a group become ONE packed row,

    [ prefix | suffix_1 | suffix_2 | ... | suffix_G ]          (no copies of the prefix)

with a block attention mask — the prefix is causal; suffix i sees the whole prefix and itself
causally, never another suffix — and Qwen-VL's 3-row (t, h, w) position ids where every suffix
continues from the prefix's end exactly as if it were alone. Every logit then equals the
per-sequence one, and autograd carries each suffix's gradient back into the shared prefix
activations (and into the vision tower, when it trains). The target logprobs at prefix positions
come from the shared prefix logits, gathered with each datum's own targets.

Datums that share no image-bearing prefix stay rows of their own (a group of one), so any batch
goes through this path. Rows of similar length form a microbatch and are padded to its longest;
pad positions attend only to themselves and the head never runs there (target_head.py).

Token accounting: a group *needs* prefix + sum(suffixes) tokens (the prefix once per group +
G x completion); a microbatch *processes* rows x longest row. `counter.add("train", needed,
processed)` is called per microbatch with a TokenCounter-like object when one is given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from geospot.engines import packed_attention
from geospot.engines.inputs import image_starts, mrope_positions, same_image
from geospot.engines.target_head import grad_mask, make_plan, target_logprobs
from geospot.engines.types import Datum, ImageChunk, ModelInput
from geospot.models.compat import peft_base

MIN_SHARED_TEXT_TOKENS = 64  # text-only datums are grouped only when they share this much
DEFAULT_MICROBATCH_TOKENS = 8192  # rows x longest row per forward pass: bounds activations


# -- finding the shared prefixes -------------------------------------------------------------------


def common_prefix(a: ModelInput, b: ModelInput) -> tuple[int, int]:
    """(tokens, images) the two inputs share from their start. An image is shared whole or not at
    all, so a prefix never ends inside an image."""
    n, n_img = 0, 0
    for ca, cb in zip(a.chunks, b.chunks):
        if isinstance(ca, ImageChunk) and isinstance(cb, ImageChunk):
            if not same_image(ca, cb):
                break
            n, n_img = n + ca.length, n_img + 1
            continue
        if isinstance(ca, ImageChunk) or isinstance(cb, ImageChunk):
            break
        k, m = 0, min(ca.length, cb.length)
        ta, tb = ca.tokens, cb.tokens
        while k < m and ta[k] == tb[k]:
            k += 1
        n += k
        if k < ca.length or k < cb.length:  # diverged (or one text run ended): nothing after is shared
            break
    return n, n_img


def _images_before(mi: ModelInput, n_tokens: int) -> int:
    count, pos = 0, 0
    for c in mi.chunks:
        if pos >= n_tokens:
            break
        if isinstance(c, ImageChunk):
            count += 1
        pos += c.length
    return count


@dataclass
class PackedGroup:
    """Datums (indices into the batch) scored in one row against a shared prefix of
    `prefix_len` tokens; datum m's suffix is its input after the prefix."""

    members: list[int]
    prefix_len: int
    lengths: list[int]  # each member's input length
    prefix_images: int = 0

    @property
    def suffix_lens(self) -> list[int]:
        return [n - self.prefix_len for n in self.lengths]

    @property
    def row_len(self) -> int:
        """Tokens of the packed row = tokens the minimal computation needs for this group."""
        return self.prefix_len + sum(self.suffix_lens)


def _worth_sharing(first: ModelInput, other: ModelInput, n: int, n_img: int) -> bool:
    """Sharing a system prompt is not worth moving an image into every suffix: a prefix is worth a
    packed row when it holds an image, or (text only) >= MIN_SHARED_TEXT_TOKENS tokens."""
    return n_img > 0 or not (first.images() or other.images() or n < MIN_SHARED_TEXT_TOKENS)


def group_datums(datums: Sequence[Datum], max_row_tokens: int = DEFAULT_MICROBATCH_TOKENS) -> list[PackedGroup]:
    """The packed rows of a batch. Datums that carry their GRPO group (`Datum.group`, set by
    rl/datums.py) are packed by it; datums without (SFT, hand-built) are grouped by prefix."""
    if datums and all(d.group is not None for d in datums):
        return _groups_by_id(datums, max_row_tokens)
    return _groups_by_prefix(datums, max_row_tokens)


def _groups_by_id(datums: Sequence[Datum], max_row_tokens: int) -> list[PackedGroup]:
    """One row per group (split where it would exceed `max_row_tokens`), the prefix being what
    all its members share; members stay rows of their own when that prefix is not worth it."""
    members_by_group: dict[int, list[int]] = {}
    for i, d in enumerate(datums):
        members_by_group.setdefault(d.group, []).append(i)
    out: list[PackedGroup] = []
    for members in members_by_group.values():
        inputs = [datums[i].model_input for i in members]
        first = inputs[0]
        n = min([first.length] + [common_prefix(first, mi)[0] for mi in inputs[1:]])
        n_img = _images_before(first, n)
        if len(members) == 1 or not all(_worth_sharing(first, mi, n, n_img) for mi in inputs[1:]):
            out.extend(PackedGroup([i], mi.length, [mi.length], len(mi.images())) for i, mi in zip(members, inputs))
            continue
        row = None
        for i, mi in zip(members, inputs):
            if row is None or row.row_len + mi.length - n > max_row_tokens:
                row = PackedGroup([], n, [], n_img)
                out.append(row)
            row.members.append(i)
            row.lengths.append(mi.length)
    return out


def _groups_by_prefix(datums: Sequence[Datum], max_row_tokens: int) -> list[PackedGroup]:
    """Greedy, order-keeping grouping. A datum joins the most recent group it shares a prefix
    with when that prefix holds an image (or >= MIN_SHARED_TEXT_TOKENS of text), does not drop an
    image from the group's prefix, and the row stays within `max_row_tokens`."""
    groups: list[PackedGroup] = []
    inputs = [d.model_input for d in datums]
    for i, mi in enumerate(inputs):
        n_i = mi.length
        for g in reversed(groups):
            first = inputs[g.members[0]]
            n = min(common_prefix(first, mi)[0], g.prefix_len)
            n_img = _images_before(first, n)
            if not _worth_sharing(first, mi, n, n_img):
                continue
            if len(g.members) > 1 and n_img < g.prefix_images:
                continue  # would push a shared image back into every suffix
            if n + sum(m - n for m in g.lengths) + (n_i - n) > max_row_tokens:
                continue
            g.members.append(i)
            g.lengths.append(n_i)
            g.prefix_len, g.prefix_images = n, n_img
            break
        else:
            groups.append(PackedGroup([i], n_i, [n_i], len(mi.images())))
    return groups


def minimal_tokens(datums: Sequence[Datum]) -> int:
    """Tokens a shared-prefix computation needs for these datums (each prefix once)."""
    return sum(g.row_len for g in group_datums(datums))


# -- building the packed rows ----------------------------------------------------------------------


@dataclass
class _Row:
    group: PackedGroup
    tokens: np.ndarray  # int64[L]
    positions: np.ndarray  # int64[3, L]
    segments: np.ndarray  # int64[L]: 0 = prefix, m+1 = suffix of member m
    images: list = field(default_factory=list)  # PIL images in row order
    offsets: list[int] = field(default_factory=list)  # where each member's suffix starts in the row


def _build_row(group: PackedGroup, datums: Sequence[Datum], renderer, spatial_merge: int) -> _Row:
    P = group.prefix_len
    inputs = [datums[i].model_input for i in group.members]
    # tokens and positions of each member as if it were alone; member 0's also give the prefix
    rendered = [(renderer.tokens_of(mi), mrope_positions(mi, spatial_merge)[0]) for mi in inputs]
    t0, pos0 = rendered[0]
    toks, poss, segs, offsets = [t0[:P]], [pos0[:, :P]], [np.zeros(P, np.int64)], []
    images = [c.image for s, c in image_starts(inputs[0]) if s < P]
    at = P
    for m, (mi, (t, pos)) in enumerate(zip(inputs, rendered)):
        offsets.append(at)
        toks.append(t[P:])
        poss.append(pos[:, P:])
        segs.append(np.full(len(t) - P, m + 1, np.int64))
        images.extend(c.image for s, c in image_starts(mi) if s >= P)
        at += len(t) - P
    return _Row(group, np.concatenate(toks), np.concatenate(poss, axis=1), np.concatenate(segs), images, offsets)


def block_mask(segments_RL: np.ndarray) -> np.ndarray:
    """bool[R, L, L], True = query may attend key: causal, and a key in the prefix (segment 0) or
    in the query's own segment. Padding (segment -1) attends only to itself."""
    L = segments_RL.shape[1]
    causal = np.tril(np.ones((L, L), dtype=bool))
    q, k = segments_RL[:, :, None], segments_RL[:, None, :]
    allowed = causal[None] & ((k == 0) | (k == q)) & (q >= 0) & (k >= 0)
    allowed |= np.eye(L, dtype=bool)[None]
    return allowed


def _microbatches(rows: list[_Row], budget: int, max_padding: float = 0.25) -> list[list[_Row]]:
    """Rows of similar length together (longest first): a new microbatch starts when the rows x
    longest-row budget is reached or a row is shorter than (1 - max_padding) x the longest, so a
    lone short datum does not get padded to a whole group's row."""
    out, cur, longest = [], [], 0
    for r in sorted(rows, key=lambda r: -len(r.tokens)):  # stable: equal lengths keep batch order
        n = len(r.tokens)
        if cur and ((len(cur) + 1) * longest > budget or n < (1 - max_padding) * longest):
            out.append(cur)
            cur = []
        if not cur:
            longest = n
        cur.append(r)
    if cur:
        out.append(cur)
    return out


# take an arbitrary 4-D mask (or, ours, a packed layout); flash-attention kernels do not
PACKABLE_ATTENTION = ("sdpa", "eager", packed_attention.NAME)


def _attn_implementation(model: torch.nn.Module) -> str | None:
    base = peft_base(model)
    text = base.config.get_text_config() if hasattr(base.config, "get_text_config") else base.config
    return getattr(text, "_attn_implementation", None)


def supports_packing(model: torch.nn.Module) -> bool:
    """Whether the language model's attention honours a custom 4-D mask (sdpa, eager) or a packed
    layout (packed_attention.py). With
    flash-attention the engine must score datums the plain way."""
    return _attn_implementation(model) in PACKABLE_ATTENTION


def _model_dtype_device(model: torch.nn.Module) -> tuple[torch.dtype, torch.device]:
    p = next(p for p in model.parameters() if p.is_floating_point())
    return p.dtype, p.device


# -- the forward pass ------------------------------------------------------------------------------


def iter_shared_prefix_logprobs(
    model: torch.nn.Module,
    datums_D: Sequence[Datum],
    *,
    renderer,
    spatial_merge: int,
    pad_id: int = 0,
    microbatch_tokens: int = DEFAULT_MICROBATCH_TOKENS,
    counter=None,
    groups: Sequence[PackedGroup] | None = None,
    needs_grad: Callable[[Datum], np.ndarray | None] | None = None,
) -> Iterator[tuple[list[int], list[torch.Tensor]]]:
    """Yields (datum indices, target logprobs float32 [T] per datum) one microbatch at a time, so
    a caller can take the loss and call backward before the next microbatch (bounded memory).
    Differentiable when grad is enabled: at every target position, or where `needs_grad(datum)`
    (bool [T], None = all) says so — elsewhere the logprob is computed without gradient
    (target_head.py). `groups`: `group_datums(datums_D, microbatch_tokens)` when the caller already
    has it (grouping compares prefixes token by token and pixels)."""
    dtype, device = _model_dtype_device(model)
    if not supports_packing(model):
        raise ValueError("shared-prefix packing needs attention that takes a 4-D mask "
                         f"({', '.join(PACKABLE_ATTENTION)}); "
                         "load the model with attn_implementation='sdpa' or score the datums without packing")
    if pad_id == renderer.image_pad_id:
        raise ValueError(f"pad_id {pad_id} is the image placeholder id; pass the tokenizer's pad token id")
    if groups is None:
        groups = group_datums(datums_D, max_row_tokens=microbatch_tokens)
    rows = [_build_row(g, datums_D, renderer, spatial_merge) for g in groups]
    for mb in _microbatches(rows, microbatch_tokens):
        R, L = len(mb), max(len(r.tokens) for r in mb)
        ids = np.full((R, L), pad_id, np.int64)
        pos = np.zeros((3, R, L), np.int64)
        seg = np.full((R, L), -1, np.int64)
        images = []
        for b, r in enumerate(mb):
            n = len(r.tokens)
            ids[b, :n], pos[:, b, :n], seg[b, :n] = r.tokens, r.positions, r.segments
            images.extend(r.images)
        kw = dict(input_ids=torch.from_numpy(ids).to(device), position_ids=torch.from_numpy(pos).to(device),
                  use_cache=False)
        if _attn_implementation(model) == packed_attention.NAME:  # only the needed blocks (packed_attention.py)
            kw["packed_layout"] = [packed_attention.RowLayout(r.group.prefix_len, tuple(r.group.suffix_lens))
                                   for r in mb]
        else:  # additive float mask: works for eager and sdpa attention alike (a 4-D mask is used as-is)
            allowed = torch.from_numpy(block_mask(seg)).to(device)
            mask = torch.zeros((R, 1, L, L), dtype=dtype, device=device)
            mask.masked_fill_(~allowed[:, None], torch.finfo(dtype).min)
            kw["attention_mask"] = mask
        if images:
            pixel_values, grid = renderer.image_processor(images)
            kw.update(pixel_values=pixel_values.to(device, dtype), image_grid_thw=grid.to(device))
        if counter is not None:
            counter.add("train", needed=sum(len(r.tokens) for r in mb), processed=R * L)
        # every member's (position, target) pairs: the prefix positions once per member (each with its
        # own targets and loss inputs), then its suffix; the head runs once per position (target_head.py)
        where, targets, grads, sizes, indices = [], [], [], [], []
        for b, r in enumerate(mb):
            P = r.group.prefix_len
            for m, idx in enumerate(r.group.members):
                S = r.group.lengths[m] - P
                where.append(b * L + np.concatenate([np.arange(P), np.arange(r.offsets[m], r.offsets[m] + S)]))
                targets.append(np.asarray(datums_D[idx].loss_fn_inputs["target_tokens"], dtype=np.int64))
                grads.append(grad_mask(needs_grad, datums_D[idx], P + S))
                sizes.append(P + S)
                indices.append(idx)
        plan = make_plan(np.concatenate(where), np.concatenate(targets), np.concatenate(grads), device)
        yield indices, list(torch.split(target_logprobs(model, kw, plan), sizes))


def shared_prefix_forward(model: torch.nn.Module, datums_D: Sequence[Datum], *, renderer, spatial_merge: int,
                          pad_id: int = 0, microbatch_tokens: int = DEFAULT_MICROBATCH_TOKENS,
                          counter=None, needs_grad=None) -> list[torch.Tensor]:
    """Target logprobs float32 [T] per datum, in input order (differentiable when grad is on;
    `needs_grad` as for `iter_shared_prefix_logprobs`).
    Keeps every microbatch's graph alive; a training loop wanting bounded memory uses
    `iter_shared_prefix_logprobs` and calls backward per microbatch."""
    out: list[torch.Tensor | None] = [None] * len(datums_D)
    batches = iter_shared_prefix_logprobs(model, datums_D, renderer=renderer, spatial_merge=spatial_merge,
                                          pad_id=pad_id, microbatch_tokens=microbatch_tokens, counter=counter,
                                          needs_grad=needs_grad)
    for indices, lps in batches:
        for i, lp in zip(indices, lps):
            out[i] = lp
    return out  # type: ignore[return-value]


__all__ = [
    "PackedGroup", "common_prefix", "group_datums", "minimal_tokens", "block_mask", "supports_packing",
    "iter_shared_prefix_logprobs", "shared_prefix_forward",
]
