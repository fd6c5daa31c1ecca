"""LocalEngine: Tinker's primitives on one local model (torch + transformers + PEFT).

Reads top to bottom: setup (load, LoRA), batching (tokens, multimodal positions, pixels),
sampling (shared-prefix KV cache), scoring and training (forward / forward_backward /
optim_step), checkpoints (save_state / load_state / export).

Multimodal positions. Qwen-VL rotates queries/keys with 3-D positions (t, h, w): text
advances all three by one per token; an image's placeholders take (start + t, start + row,
start + col) on its merged grid and the text after it resumes at start + max(rows, cols).
We compute these ourselves from the ModelInput chunks (the same rule as transformers'
`get_rope_index`, which a test checks) and always pass `position_ids`, so prefill, decode
and multi-turn training sequences agree by construction and no hidden `rope_deltas` state
in the model is ever consulted.

Encode each image once per group (issue 7). Sampling prefills each prompt (image + text)
ONCE, repeats the KV cache for the `num_samples` continuations and decodes all prompts'
samples together, dropping rows as they stop; prompts that share a prefix (a telescoping
group's later turns) prefill it once, and a prompt that extends a sequence an earlier call
sampled (a telescoping turn) prefills only its new tokens on top of that call's KV
(kv_store.py). Training packs the datums that share a prefix into one row per group,
[prefix | completion_1 .. completion_G] with a block mask (prefix.py), so the prefix runs once
with gradients; a frozen vision tower encodes each image once for all of it
(vision_cache.py). The engine counts the tokens that computation needed versus processed
(`token_stats()`).
"""

from __future__ import annotations

import copy
import logging
import math
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from geospot.engines.config import EngineConfig
from geospot.engines.kv_store import KVStore, common_prefix_len, concat_segments, left_padded, match_key, take_segments
from geospot.engines.losses import compute_loss
from geospot.engines.prefix import (DEFAULT_MICROBATCH_TOKENS, PackedGroup, _image_starts, _same_image, group_datums,
                                   iter_shared_prefix_logprobs, supports_packing)
from geospot.engines.rendering import Renderer
from geospot.engines.stops import resolve_stops
from geospot.engines.types import (
    REQUIRED_INPUTS,
    AdamParams,
    Datum,
    ForwardBackwardResult,
    ModelInput,
    SampledSequence,
    SampleParams,
    TextChunk,
)
from geospot.engines.vision_cache import install_image_feature_cache
from geospot.models.compat import CACHE_ARG, output_cache
from geospot.models.load import LoadedModel, load_model

log = logging.getLogger(__name__)

MAX_TOKENS_PER_MICROBATCH = DEFAULT_MICROBATCH_TOKENS  # training/scoring batches are split to bound activation memory
MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate prefix pass


# -- multimodal positions ------------------------------------------------------------------------


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


@dataclass
class Batch:
    input_ids: torch.Tensor  # [B, T]
    attention_mask: torch.Tensor  # [B, T]
    position_ids: torch.Tensor  # [3, B, T]
    pixel_values: torch.Tensor | None
    image_grid_thw: torch.Tensor | None
    lengths: list[int]
    next_positions: list[int]

    def model_kwargs(self) -> dict:
        kw = dict(input_ids=self.input_ids, attention_mask=self.attention_mask, position_ids=self.position_ids)
        if self.pixel_values is not None:
            kw.update(pixel_values=self.pixel_values, image_grid_thw=self.image_grid_thw)
        return kw


@dataclass
class TokenCounter:
    """Tokens a minimal computation needs vs tokens the engine actually pushed through the
    language model (padding, repeated prefixes and finished rows count as processed)."""

    by_kind: dict[str, list[int]] = field(default_factory=dict)  # kind -> [needed, processed]

    def add(self, kind: str, needed: int, processed: int) -> None:
        n, p = self.by_kind.get(kind, [0, 0])
        self.by_kind[kind] = [n + needed, p + processed]

    @property
    def needed(self) -> int:
        return sum(v[0] for v in self.by_kind.values())

    @property
    def processed(self) -> int:
        return sum(v[1] for v in self.by_kind.values())

    @property
    def efficiency(self) -> float:
        return self.needed / self.processed if self.processed else float("nan")

    def as_dict(self) -> dict:
        return {"tokens_needed": self.needed, "tokens_processed": self.processed, "token_efficiency": self.efficiency,
                **{f"{k}_needed": v[0] for k, v in self.by_kind.items()},
                **{f"{k}_processed": v[1] for k, v in self.by_kind.items()}}


def _lora_targets(model: torch.nn.Module, targets: str, train_vision: bool) -> list[str]:
    """Full module names of the Linear layers LoRA wraps: the language model's (all of them,
    or those whose last name is listed), plus the vision tower's when it is trained."""
    wanted = None if targets == "all-linear" else {t.strip() for t in targets.split(",") if t.strip()}
    names = []
    for name, mod in model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        in_lm = "language_model" in name
        in_vision = "visual" in name
        if not (in_lm or (train_vision and in_vision)):
            continue
        if wanted is not None and in_lm and name.rsplit(".", 1)[-1] not in wanted:
            continue
        names.append(name)
    if not names:
        raise ValueError(f"lora_targets={targets!r} matches no Linear layer of the language model")
    return names


class LocalEngine:
    def __init__(self, cfg: EngineConfig, loaded: LoadedModel | None = None):
        cfg.validate()
        self.cfg = cfg
        lm = loaded or load_model(cfg.model_name, cfg.dtype, cfg.device)
        self.device, self.dtype, self.folder = lm.device, lm.dtype, lm.folder
        self.tokenizer, self.image_processor = lm.tokenizer, lm.image_processor
        self.renderer = Renderer(lm.tokenizer, lm.image_processor, cfg.max_pixels)
        config = lm.model.config
        self.spatial_merge = config.vision_config.spatial_merge_size
        self.max_context = config.text_config.max_position_embeddings
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self.vocab = self.tokenizer.get_vocab()  # built once: a real Qwen vocab is 150k entries
        self.banned_ids = torch.tensor([self.vocab[t] for t in ("<|image_pad|>", "<|video_pad|>") if t in self.vocab], device=self.device)
        self.model = self._make_trainable(lm.model)
        self.model.eval()  # no dropout anywhere: sampler and trainer must compute the same function
        # a frozen vision tower encodes each image once; later turns and training reuse it (issue 7)
        self.image_cache = install_image_feature_cache(self.model)
        self.trainable = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
        self.optimizer: torch.optim.AdamW | None = None
        self.step = 0
        self.sample_calls = 0
        self.tokens = TokenCounter()
        self.shared_prefix = True  # compute a group's common prefix once in forward/forward_backward
        # finished sequences' KV kept across sample() calls: a later telescoping turn prefills only
        # what its prompt adds (kv_store.py); emptied whenever the weights change
        self.kv_store = KVStore(cfg.kv_reuse_tokens)  # the budget's arithmetic: EngineConfig.kv_reuse_tokens
        self.kv_reuse = cfg.kv_reuse_tokens > 0  # a switch, like shared_prefix (tests, A/B timings)
        if any(t != "full_attention" for t in getattr(config.get_text_config(), "layer_types", None) or []):
            self.kv_reuse = False  # sliding-window layers keep only the window: a stored row would be cut

    def _make_trainable(self, model: torch.nn.Module) -> torch.nn.Module:
        for p in model.parameters():
            p.requires_grad_(False)
        if self.cfg.lora_rank > 0:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(
                r=self.cfg.lora_rank,
                lora_alpha=self.cfg.lora_alpha,
                lora_dropout=0.0,
                target_modules=_lora_targets(model, self.cfg.lora_targets, self.cfg.train_vision),
                bias="none",
            )
            from geospot.models.compat import peft_wrap_quietly

            with torch.random.fork_rng(devices=[]), peft_wrap_quietly():  # LoRA init from the engine seed
                torch.manual_seed(self.cfg.seed)
                return get_peft_model(model, lora)
        for name, p in model.named_parameters():  # full fine-tuning
            if self.cfg.train_vision or "visual" not in name:
                p.requires_grad_(True)
        return model

    # -- batching ---------------------------------------------------------------------------------

    def _check_input(self, i: int, mi: ModelInput, extra: int = 0) -> None:
        if mi.length + extra > self.max_context:
            raise ValueError(
                f"prompt {i} is {mi.length} tokens (+{extra} to generate) but the context is {self.max_context}; "
                "shorten the conversation, lower max_tokens, or lower max_pixels"
            )
        for im in mi.images():
            px = im.image.width * im.image.height
            if px > self.cfg.max_pixels:
                raise ValueError(
                    f"image in prompt {i} is {im.image.width}x{im.image.height} = {px} px, over the pixel budget "
                    f"max_pixels={self.cfg.max_pixels}; render it with this engine's renderer (it resizes) or raise max_pixels"
                )

    def _batch(self, inputs: Sequence[ModelInput], left_pad: bool, starts: Sequence[int] | None = None) -> Batch:
        """The inputs padded into one batch. With `starts`, each input from starts[i] on (its
        positions as in the whole sequence, only the images from there on): the part to prefill
        on top of a cached prefix, left-padded so the holes sit between prefix and suffix,
        masked out; the explicit positions keep them from shifting anything."""
        toks, poss, nexts, images = [], [], [], []
        for i, (mi, m) in enumerate(zip(inputs, starts if starts is not None else [0] * len(inputs))):
            if any(isinstance(c, TextChunk) and self.renderer.image_pad_id in c.tokens for c in mi.chunks):
                raise ValueError(f"sequence {i} has an <|image_pad|> token inside text; images must be ImageChunks (use the renderer)")
            toks.append(self.renderer.tokens_of(mi)[m:])
            pos, nxt = mrope_positions(mi, self.spatial_merge)
            poss.append(pos[:, m:])
            nexts.append(nxt)
            images.extend(c.image for s, c in _image_starts(mi) if s >= m)
        B, T = len(inputs), max(len(t) for t in toks)
        ids = np.full((B, T), self.pad_id, np.int64)
        mask = np.zeros((B, T), np.int64)
        pos_ids = np.zeros((3, B, T), np.int64)
        for b, (t, p) in enumerate(zip(toks, poss)):
            sl = slice(T - len(t), T) if left_pad else slice(0, len(t))
            ids[b, sl], mask[b, sl], pos_ids[:, b, sl] = t, 1, p
        pixel_values = grid = None
        if images:
            pixel_values, grid = self.image_processor(images)
            pixel_values, grid = pixel_values.to(self.device, self.dtype), grid.to(self.device)
        dev = self.device
        return Batch(torch.from_numpy(ids).to(dev), torch.from_numpy(mask).to(dev), torch.from_numpy(pos_ids).to(dev),
                     pixel_values, grid, [len(t) for t in toks], nexts)

    # -- sampling ---------------------------------------------------------------------------------

    def _stop_spec(self, params: SampleParams) -> tuple[set[int], list[str]]:
        return resolve_stops(params.stop, self.renderer.stop_token_ids, self.vocab)

    def _pick(self, logits: torch.Tensor, params: SampleParams, gen: torch.Generator) -> torch.Tensor:
        # placeholder tokens are never valid output: fed back as text they would be taken for
        # image slots (the reported logprobs stay the model's own, temperature-1 ones)
        logits = logits.index_fill(-1, self.banned_ids, float("-inf"))
        if params.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        return torch.multinomial(probs, 1, generator=gen).squeeze(-1)

    @torch.no_grad()
    def sample(self, prompts: Sequence[ModelInput], num_samples: int = 1, params: SampleParams = SampleParams()) -> list[list[SampledSequence]]:
        prompts = list(prompts)
        if not prompts:
            return []
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be >= 1")
        for i, mi in enumerate(prompts):
            self._check_input(i, mi, params.max_tokens)
        stop_ids, stop_strs = self._stop_spec(params)
        seed = params.seed if params.seed is not None else self.cfg.seed * 1_000_003 + self.sample_calls
        self.sample_calls += 1
        gen = torch.Generator(device=self.device).manual_seed(int(seed))
        B, G = len(prompts), num_samples

        reuse = self.kv_reuse and self.kv_store.max_tokens > 0
        if reuse:
            self.kv_store.sync_weights(self._weights_version())  # stale KV would give wrong logprobs
            logits, cache, attn, next_pos, keys, prompt_kv = self._prefill_reusing(prompts)
        else:
            logits, cache, attn, next_pos = self._prefill(prompts)
        # the G samples of a prompt share its prefix: repeat the cache instead of recomputing it
        if G > 1:
            cache.batch_repeat_interleave(G)
        logits = logits.repeat_interleave(G, 0)
        attn = attn.repeat_interleave(G, 0)
        next_pos = next_pos.repeat_interleave(G)

        N = B * G
        tokens: list[list[int]] = [[] for _ in range(N)]
        logprobs: list[list[float]] = [[] for _ in range(N)]
        reason = ["length"] * N
        rows = list(range(N))  # which sequence each live batch row is; finished rows are dropped
        tails: list = [None] * N  # per sequence, the KV of its fed sampled tokens (kept for reuse)
        for t in range(params.max_tokens):
            logp = torch.log_softmax(logits, dim=-1)  # temperature 1: what the trainer computes
            tok = self._pick(logits, params, gen)
            lp = logp.gather(-1, tok[:, None]).squeeze(-1)
            tok_l, lp_l = tok.tolist(), lp.tolist()
            keep = []
            for k, r in enumerate(rows):
                tokens[r].append(tok_l[k])
                logprobs[r].append(lp_l[k])
                if tok_l[k] in stop_ids or (stop_strs and any(self.renderer.decode(tokens[r]).endswith(s) for s in stop_strs)):
                    reason[r] = "stop"
                else:
                    keep.append(k)
            self.tokens.add("decode", needed=len(rows), processed=len(rows))
            last = not keep or t == params.max_tokens - 1
            if reuse and t > 0:  # a finished row's last t cache columns are its fed sampled tokens
                for k in (range(len(rows)) if last else sorted(set(range(len(rows))) - set(keep))):
                    tails[rows[k]] = tuple((lay.keys[k, :, -t:].clone(), lay.values[k, :, -t:].clone()) for lay in cache.layers)
            if last:
                break
            if len(keep) < len(rows):  # drop finished rows from the batch and the KV cache
                idx = torch.tensor(keep, device=self.device)
                cache.batch_select_indices(idx)
                attn, next_pos, tok = attn[idx], next_pos[idx], tok[idx]
                rows = [rows[k] for k in keep]
            n = len(rows)
            attn = torch.cat([attn, torch.ones(n, 1, dtype=attn.dtype, device=attn.device)], dim=1)
            pos = (next_pos + t).view(1, n, 1).expand(3, n, 1)
            out = self.model(input_ids=tok[:, None], attention_mask=attn, position_ids=pos, **{CACHE_ARG: cache}, use_cache=True)
            cache = output_cache(out)
            logits = out.logits[:, -1].float()
        if reuse:  # prompt + all sampled tokens but the last (never fed): what the cache now holds
            for r in range(N):
                b = r // G
                key = np.concatenate([keys[b], np.asarray(tokens[r][:-1], np.int64)])
                self.kv_store.add(key, prompt_kv[b] + ([tails[r]] if tails[r] is not None else []))
        seqs = [SampledSequence(tuple(tokens[r]), tuple(logprobs[r]), reason[r]) for r in range(N)]
        return [seqs[b * G : (b + 1) * G] for b in range(B)]

    def _prefill(self, prompts: Sequence[ModelInput]):
        """Run the prompts into a KV cache -> (last logits [B, V] fp32, cache, attention mask [B, T],
        next position [B]). Prompts that share a prefix (the G continuations of a group in a
        later telescoping turn: same image and first turn) compute it once: stage 1 prefills the
        distinct prefixes, their cache rows are gathered per prompt, stage 2 prefills each
        prompt's own suffix on top (left-padded, so padding holes sit between the two parts
        and are masked out; positions are explicit, so the holes do not shift them)."""
        clusters = self._prefix_clusters(prompts)
        if all(P == 0 for _, P in clusters):
            return self._prefill_plain(prompts)
        # every prompt gets a prefix: its cluster's, or all but its last token when it shares none
        prefix_len, row = [0] * len(prompts), [0] * len(prompts)
        for c, (idx, P) in enumerate(clusters):
            for i in idx:
                row[i] = c
                prefix_len[i] = P or (prompts[i].length - 1)
        heads = [_head(prompts[idx[0]], prefix_len[idx[0]]) for idx, _ in clusters]
        for i, mi in enumerate(prompts):
            if not _images_end_before(mi, prefix_len[i]):  # cannot split before its last image
                return self._prefill_plain(prompts)
        first = self._batch(heads, left_pad=True)
        out = self.model(**first.model_kwargs(), use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        cache.batch_select_indices(torch.tensor(row, device=self.device))  # gathers (and repeats) rows
        second = self._batch(prompts, left_pad=True, starts=prefix_len)  # no images: they all sit in the prefix
        attn = torch.cat([first.attention_mask[row], second.attention_mask], dim=1)
        out2 = self.model(**{**second.model_kwargs(), "attention_mask": attn}, **{CACHE_ARG: cache}, use_cache=True, logits_to_keep=1)
        self.tokens.add("prefill", needed=sum(first.lengths) + sum(second.lengths),
                        processed=first.input_ids.numel() + second.input_ids.numel())
        return out2.logits[:, -1].float(), output_cache(out2), attn, torch.tensor(second.next_positions, device=self.device)

    # KV reuse across sample() calls (issue 7). A telescoping turn-2 prompt is turn 1's prompt +
    # that rollout's sampled tokens + a new user turn; the turn-1 call already computed the KV of
    # all but the new part. Each prompt takes the longest stored sequence it extends
    # (kv_store.py); those rows are assembled left-padded into one cache and only their suffixes
    # are prefilled on top (explicit positions, as in stage 2 above); the other prompts take the
    # usual path and the two caches are merged into one batch.

    def _weights_version(self) -> tuple:
        """Bumped by every in-place change of a trainable tensor (optimizer step, load_state)."""
        return tuple(p._version for _, p in self.trainable)

    def _prefill_reusing(self, prompts: Sequence[ModelInput]):
        """_prefill's results + per prompt its match key and its KV as store segments."""
        fingerprints: dict = {}
        keys = [match_key(mi, fingerprints) for mi in prompts]
        entries = [self.kv_store.match(k, MIN_SHARED_PREFIX) for k in keys]
        matches = [(e, len(e.key) if e is not None else 0) for e in entries]
        hit = [i for i, e in enumerate(entries) if e is not None]
        miss = [i for i, e in enumerate(entries) if e is None]
        parts, prompt_kv = [], [None] * len(prompts)
        if miss:
            logits, cache, attn, nxt = self._prefill([prompts[i] for i in miss])
            for j, i in enumerate(miss):  # the prompt's valid cache columns (padding holes dropped)
                m = attn[j].bool()
                prompt_kv[i] = [tuple((lay.keys[j][:, m], lay.values[j][:, m]) for lay in cache.layers)]
            parts.append((miss, logits, cache, attn, nxt))
        if hit:
            logits, cache, attn, nxt, suffix_kv = self._prefill_on_stored([prompts[i] for i in hit], [matches[i] for i in hit])
            for j, i in enumerate(hit):
                entry, m = matches[i]
                prompt_kv[i] = take_segments(entry.segments, m) + [suffix_kv[j]]
                self.kv_store.hits += 1
                self.kv_store.reused_tokens += m
            parts.append((hit, logits, cache, attn, nxt))
        logits, cache, attn, nxt = _merge_prefills(parts) if len(parts) > 1 else parts[0][1:]
        return logits, cache, attn, nxt, keys, prompt_kv

    def _prefill_on_stored(self, prompts: Sequence[ModelInput], matches: list):
        """Prefill each prompt's suffix after its stored prefix of m tokens -> _prefill's results +
        per prompt the KV segment of its suffix. Needs (and counts) only the suffix tokens."""
        from transformers import DynamicCache

        rows = [concat_segments(entry.segments, m) for entry, m in matches]
        W = max(m for _, m in matches)
        layers, attn1 = left_padded(rows, W)
        cache = DynamicCache(ddp_cache_data=layers)
        # the new parts (with any image in them, e.g. a second photo in turn 2)
        suffix = self._batch(prompts, left_pad=True, starts=[m for _, m in matches])
        attn = torch.cat([attn1, suffix.attention_mask], dim=1)
        out = self.model(**{**suffix.model_kwargs(), "attention_mask": attn}, **{CACHE_ARG: cache}, use_cache=True, logits_to_keep=1)
        self.tokens.add("prefill", needed=sum(suffix.lengths), processed=suffix.input_ids.numel())
        suffix_kv = [tuple((lay.keys[b, :, -n:].clone(), lay.values[b, :, -n:].clone()) for lay in output_cache(out).layers)
                     for b, n in enumerate(suffix.lengths)]
        nexts = torch.tensor(suffix.next_positions, device=self.device)
        return out.logits[:, -1].float(), output_cache(out), attn, nexts, suffix_kv

    def _prefill_plain(self, prompts: Sequence[ModelInput]):
        """_prefill without a shared prefix: every prompt whole, left-padded, in one pass."""
        batch = self._batch(prompts, left_pad=True)
        out = self.model(**batch.model_kwargs(), use_cache=True, logits_to_keep=1)
        T = batch.input_ids.shape[1]
        self.tokens.add("prefill", needed=sum(batch.lengths), processed=len(prompts) * T)
        return out.logits[:, -1].float(), output_cache(out), batch.attention_mask, torch.tensor(batch.next_positions, device=self.device)

    # -- scoring and training ----------------------------------------------------------------------

    def _microbatches(self, datums: Sequence[Datum]) -> list[list[int]]:
        groups, cur, cur_tokens = [], [], 0
        for i, d in enumerate(datums):
            n = d.model_input.length
            if cur and (len(cur) + 1) * max(cur_tokens, n) > MAX_TOKENS_PER_MICROBATCH:
                groups.append(cur)
                cur, cur_tokens = [], 0
            cur.append(i)
            cur_tokens = max(cur_tokens, n)
        if cur:
            groups.append(cur)
        return groups

    def _target_logprobs(self, datums: Sequence[Datum]) -> list[torch.Tensor]:
        """Per datum, log p(target_tokens[i] | input[:i+1]) at temperature 1, float32 [T]."""
        for i, d in enumerate(datums):
            self._check_input(i, d.model_input)
        batch = self._batch([d.model_input for d in datums], left_pad=False)
        out = self.model(**batch.model_kwargs(), use_cache=False)
        B, T = batch.input_ids.shape
        self.tokens.add("train", needed=sum(batch.lengths), processed=B * T)
        result = []
        for b, d in enumerate(datums):
            # one row at a time in fp32: a 150k-token vocabulary makes [B, T, V] fp32 copies costly
            logits = out.logits[b, : batch.lengths[b]].float()
            targets = torch.as_tensor(d.loss_fn_inputs["target_tokens"], dtype=torch.long, device=self.device)
            result.append(logits.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(logits, dim=-1))
        return result

    # Shared-prefix training (issue 7). The G datums of a GRPO group repeat the same image +
    # prompt; a naive batch runs the vision tower and the prefix G times. Instead each group is
    # one packed row with a block attention mask (geospot/engines/prefix.py): the prefix runs
    # once and gradients flow back into it from every completion. The logprobs and gradients
    # equal the naive computation's (tests check it, fp32 tolerance).

    def _prefix_clusters(self, inputs: Sequence[ModelInput]) -> list[tuple[list[int], int]]:
        """[(indices, shared prefix length)] over all inputs; 0 = no worthwhile shared prefix.
        A shared prefix has equal tokens and equal images, holds every image of its members,
        is >= MIN_SHARED_PREFIX long and leaves each member at least one token of its own."""
        toks = [self.renderer.tokens_of(mi) for mi in inputs]
        clusters: list[list] = []  # [indices, prefix_len]
        for i, t in enumerate(toks):
            for cl in (clusters if self.shared_prefix else []):
                lcp = common_prefix_len(toks[cl[0][0]][: cl[1]], t)
                if lcp >= MIN_SHARED_PREFIX and _same_images(inputs[cl[0][0]], inputs[i], lcp):
                    cl[0].append(i)
                    cl[1] = lcp
                    break
            else:
                clusters.append([[i], len(t)])
        out = []
        for idx, lcp in clusters:
            lcp = min([lcp] + [len(toks[i]) - 1 for i in idx])
            ok = len(idx) > 1 and lcp >= MIN_SHARED_PREFIX and all(_images_end_before(inputs[i], lcp) for i in idx)
            out.append((idx, lcp if ok else 0))
        return out

    def _groups(self, datums: Sequence[Datum]) -> list[PackedGroup] | None:
        """prefix.py's packed groups of these datums, or None when packing is off or unsupported."""
        if not (self.shared_prefix and supports_packing(self.model)):
            return None
        return group_datums(datums, MAX_TOKENS_PER_MICROBATCH)

    def _plan(self, datums: Sequence[Datum]) -> list[tuple[list[int], int]]:
        """[(datum indices, shared prefix length)]: the groups forward/forward_backward score
        together (geospot/engines/prefix.py); 0 = no shared prefix."""
        groups = self._groups(datums)
        if groups is None:
            return [(list(range(len(datums))), 0)]
        return [(g.members, g.prefix_len if len(g.members) > 1 else 0) for g in groups]

    def _logprob_batches(self, datums: Sequence[Datum]):
        """Yields (datum indices, target logprobs) per microbatch. Datums sharing an image-bearing
        prefix (a GRPO group; a telescoping group's first turn) are packed one row per group,
        [prefix | completion_1 .. completion_G] with a block mask, so the prefix runs once and
        gradients equal the per-sequence ones (prefix.py); otherwise plain padded batches."""
        groups = self._groups(datums)  # grouping compares prefixes and pixels: done once, handed on
        if groups is not None and any(len(g.members) > 1 and g.prefix_len for g in groups):
            for i, d in enumerate(datums):
                self._check_input(i, d.model_input)
            yield from iter_shared_prefix_logprobs(self.model, datums, renderer=self.renderer, spatial_merge=self.spatial_merge,
                                                   pad_id=self.pad_id, microbatch_tokens=MAX_TOKENS_PER_MICROBATCH,
                                                   counter=self.tokens, groups=groups)
            return
        for mb in self._microbatches(datums):
            yield mb, self._target_logprobs([datums[i] for i in mb])

    @torch.no_grad()
    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        out: list[np.ndarray] = [None] * len(datums)  # type: ignore[list-item]
        for idx, lps in self._logprob_batches(datums):
            for i, lp in zip(idx, lps):
                out[i] = lp.cpu().numpy()
        return out

    @torch.no_grad()
    def set_reference(self) -> None:
        """Freeze the current weights as the KL reference that `forward_base` scores with (RL
        calls it at its starting policy, e.g. the SFT checkpoint). Without it the reference is
        the untrained base model. LoRA: a copy of the adapter (small); full fine-tuning: a copy
        of the model."""
        if self.cfg.lora_rank > 0:
            self._reference = {n: p.detach().clone() for n, p in self.trainable}
        else:
            self._base_model = copy.deepcopy(self.model).eval().requires_grad_(False)

    def forward_base(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        """Target logprobs under the KL reference: the weights `set_reference` froze, else the
        untrained base model (LoRA off, or for full fine-tuning the original weights reloaded
        from the model folder once)."""
        if self.cfg.lora_rank > 0:
            reference = getattr(self, "_reference", None)
            if reference is None:
                with self.model.disable_adapter():
                    return self.forward(datums)
            # swap the adapter's storage with the reference's, and back: no copies, and the
            # optimizer's parameter objects stay the same
            _swap_data(self.trainable, reference)
            try:
                return self.forward(datums)
            finally:
                _swap_data(self.trainable, reference)
        if getattr(self, "_base_model", None) is None:
            from transformers import AutoModelForImageTextToText

            self._base_model = AutoModelForImageTextToText.from_pretrained(self.folder, dtype=self.dtype).to(self.device).eval()
        trained, self.model = self.model, self._base_model
        try:
            return self.forward(datums)
        finally:
            self.model = trained

    def forward_backward(self, datums: Sequence[Datum], loss_fn: str, loss_config: dict | None = None) -> ForwardBackwardResult:
        if loss_fn not in REQUIRED_INPUTS:
            raise ValueError(f"unknown loss_fn {loss_fn!r}; use one of {', '.join(REQUIRED_INPUTS)}")
        for i, d in enumerate(datums):
            missing = [k for k in REQUIRED_INPUTS[loss_fn] if k not in d.loss_fn_inputs]
            if missing:
                raise ValueError(f"datum {i} lacks {missing} needed by loss_fn={loss_fn!r} (has {sorted(d.loss_fn_inputs)})")
        all_lp: list[np.ndarray] = [None] * len(datums)  # type: ignore[list-item]
        total, n_tokens = 0.0, 0
        for mb, lps in self._logprob_batches(datums):
            losses = []
            for i, lp in zip(mb, lps):
                inputs = {k: torch.as_tensor(np.asarray(v), device=self.device, dtype=torch.float32)
                          for k, v in datums[i].loss_fn_inputs.items() if k != "target_tokens"}
                loss = compute_loss(loss_fn, lp, inputs, loss_config)
                if not torch.isfinite(loss):
                    raise FloatingPointError(
                        f"{loss_fn} loss is {loss.item()} at step {self.step} for datum {i} "
                        f"(length {datums[i].model_input.length}, min logprob {lp.min().item():.3g}); "
                        "check its advantages/logprobs for NaN or inf, or lower the learning rate"
                    )
                losses.append(loss)
                all_lp[i] = lp.detach().cpu().numpy()
                n_tokens += len(lp)
            mb_loss = torch.stack(losses).sum()
            if mb_loss.requires_grad:
                mb_loss.backward()
            total += mb_loss.item()
        return ForwardBackwardResult(logprobs=all_lp, metrics={"loss:sum": total, "tokens": float(n_tokens), "datums": float(len(datums))})

    def _params(self) -> list[torch.nn.Parameter]:
        return [p for _, p in self.trainable]

    def _new_optimizer(self, adam: AdamParams) -> torch.optim.AdamW:
        return torch.optim.AdamW(self._params(), lr=adam.learning_rate, betas=(adam.beta1, adam.beta2),
                                 eps=adam.eps, weight_decay=adam.weight_decay, foreach=False)

    def optim_step(self, adam: AdamParams) -> dict[str, float]:
        if self.optimizer is None:
            self.optimizer = self._new_optimizer(adam)
        for g in self.optimizer.param_groups:  # schedules live in the loop: hyperparameters per call
            g.update(lr=adam.learning_rate, betas=(adam.beta1, adam.beta2), eps=adam.eps, weight_decay=adam.weight_decay)
        params = [p for p in self._params() if p.grad is not None]
        max_norm = adam.grad_clip_norm if adam.grad_clip_norm is not None else math.inf
        grad_norm = float(torch.nn.utils.clip_grad_norm_(params, max_norm)) if params else 0.0
        if not math.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            raise FloatingPointError(f"gradient norm is {grad_norm} at step {self.step}; lower the learning rate or check the datums")
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.kv_store.clear()  # KV computed by the old weights is stale
        self.step += 1
        return {"grad_norm": grad_norm, "learning_rate": adam.learning_rate, "step": float(self.step)}

    def train_step(self, datums: Sequence[Datum], loss_fn: str, adam: AdamParams, loss_config: dict | None = None) -> ForwardBackwardResult:
        result = self.forward_backward(datums, loss_fn, loss_config)
        result.metrics.update(self.optim_step(adam))
        return result

    # -- checkpoints ------------------------------------------------------------------------------

    def save_state(self, path: str) -> str:
        """Trainable weights + optimizer + step + RNG, written to a temp folder then renamed."""
        from safetensors.torch import save_file

        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        save_file({n: p.detach().cpu().contiguous() for n, p in self.trainable}, str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": self.optimizer.state_dict() if self.optimizer is not None else None,
                "step": self.step,
                "sample_calls": self.sample_calls,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "engine_config": asdict(self.cfg),
            },
            tmp / "state.pt",
        )
        _atomic_replace(tmp, final)
        return str(final)

    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        from safetensors.torch import load_file

        folder = Path(path)
        if not (folder / "trainable.safetensors").exists():
            raise FileNotFoundError(f"{folder} is not a geospot engine state (no trainable.safetensors)")
        weights = load_file(str(folder / "trainable.safetensors"))
        names = {n for n, _ in self.trainable}
        if set(weights) != names:
            missing, extra = sorted(names - set(weights))[:3], sorted(set(weights) - names)[:3]
            raise ValueError(f"state {folder} does not match this engine's trainable parameters "
                             f"(missing {missing}, unexpected {extra}); same model and lora_rank?")
        with torch.no_grad():
            for n, p in self.trainable:
                p.copy_(weights[n].to(p.device, p.dtype))
        self.kv_store.clear()  # KV computed by the old weights is stale
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        self.step = int(state["step"])
        self.sample_calls = int(state["sample_calls"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.optimizer = None
        if with_optimizer and state["optimizer"] is not None:
            self.optimizer = self._new_optimizer(AdamParams(learning_rate=0.0))
            self.optimizer.load_state_dict(state["optimizer"])
        for p in self._params():
            p.grad = None

    def export(self, path: str, merged: bool = False) -> str:
        """A PEFT adapter folder (LoRA, merged=False) or a full HF model folder that plain
        transformers loads (merged LoRA or full fine-tuning); tokenizer and processor included."""
        final = Path(path)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        is_lora = self.cfg.lora_rank > 0
        if is_lora and not merged:
            self.model.save_pretrained(tmp)
        else:
            model = copy.deepcopy(self.model).merge_and_unload() if is_lora else self.model
            model.save_pretrained(tmp)
        self.tokenizer.save_pretrained(tmp)
        self.image_processor.save_pretrained(tmp)
        _atomic_replace(tmp, final)
        return str(final)

    # -- conveniences ----------------------------------------------------------------------------

    def token_stats(self) -> dict:
        return self.tokens.as_dict()


def _head(model_input: ModelInput, n: int) -> ModelInput:
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


def _images_end_before(model_input: ModelInput, n: int) -> bool:
    return all(s + c.length <= n for s, c in _image_starts(model_input))


def _same_images(a: ModelInput, b: ModelInput, n: int) -> bool:
    """Do a and b hold the same pictures in their first n positions? (Equal placeholder
    tokens do not mean equal pixels.)"""
    ia = [c for s, c in _image_starts(a) if s < n]
    ib = [c for s, c in _image_starts(b) if s < n]
    return len(ia) == len(ib) and all(map(_same_image, ia, ib))


def _swap_data(params: Sequence[tuple[str, torch.nn.Parameter]], tensors: dict[str, torch.Tensor]) -> None:
    """Exchange the tensors behind `params` with `tensors` (by name); a second call swaps back."""
    for n, p in params:
        p.data, tensors[n] = tensors[n], p.data


def _merge_prefills(parts: list):
    """One batch from several prefills [(prompt indices, logits, cache, attention, next positions)]:
    caches left-padded to the widest (masked holes), rows back in prompt order."""
    from transformers import DynamicCache

    W = max(p[3].shape[1] for p in parts)
    pad = lambda x: torch.nn.functional.pad(x, (0, 0, W - x.shape[2], 0))
    order = torch.from_numpy(np.argsort(np.concatenate([p[0] for p in parts]), kind="stable")).to(parts[0][1].device)
    layers = [(torch.cat([pad(p[2].layers[i].keys) for p in parts])[order], torch.cat([pad(p[2].layers[i].values) for p in parts])[order])
              for i in range(len(parts[0][2].layers))]
    attn = torch.cat([torch.nn.functional.pad(p[3], (W - p[3].shape[1], 0)) for p in parts])[order]
    return (torch.cat([p[1] for p in parts])[order], DynamicCache(ddp_cache_data=layers), attn, torch.cat([p[4] for p in parts])[order])


def _atomic_replace(tmp: Path, final: Path) -> None:
    """Move tmp into place; an existing folder is set aside first and removed after, so a kill at
    any point leaves either the old or the new folder complete."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
