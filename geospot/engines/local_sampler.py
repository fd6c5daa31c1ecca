"""The local engine's sampler room: prefill (three ways), decode, and the KV store.

Sampling prefills each prompt (image + text) ONCE, repeats the KV cache for the `num_samples`
continuations and decodes all prompts' samples together, dropping rows as they stop. Prefill
takes one of three paths: plain (every prompt whole, left-padded); shared prefix (prompts in one
call that share a prefix — a telescoping group's later turns — prefill it once, then each suffix
on top); stored (a prompt that extends a sequence an earlier call sampled — a telescoping turn —
prefills only its new tokens on top of that call's KV, kv_store.py). Each path returns a
`Prefill`: the last logits, the cache and what decoding needs to continue.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from transformers import DynamicCache

from geospot.engines.decode_step import LeanDecode
from geospot.engines.inputs import head, images_end_before, same_images
from geospot.engines.kv_cache import reserve
from geospot.engines.kv_store import common_prefix_len, concat_segments, left_padded, match_key, take_segments
from geospot.engines.local_model import LocalModel
from geospot.engines.prefix_decode import SharedPrefixKV
from geospot.engines.snapshot import SnapshotSampler
from geospot.engines.stops import resolve_stops
from geospot.engines.types import ModelInput, SampledSequence, SampleParams
from geospot.models.compat import CACHE_ARG, output_cache

MIN_SHARED_PREFIX = 8  # shorter common prefixes are not worth a separate prefix pass


@dataclass
class Prefill:
    """Prompts run into a KV cache, ready to decode."""

    logits: torch.Tensor  # [B, V] fp32: the last position's
    cache: DynamicCache
    attention: torch.Tensor  # [B, W]: 0 at padding holes
    next_positions: torch.Tensor  # [B]: where each prompt's first sampled token sits


@dataclass
class ReusingPrefill:
    """A Prefill plus what the KV store needs to keep each prompt: its match key and its KV segments."""

    prefill: Prefill
    keys: list  # int64[T] per prompt
    prompt_kv: list  # per prompt, its KV as store segments


def merge_prefills(parts: list[tuple[list[int], Prefill]]) -> Prefill:
    """One batch from several prefills (prompt indices, Prefill): caches left-padded to the widest
    (masked holes), rows back in prompt order."""
    W = max(p.attention.shape[1] for _, p in parts)

    def pad(x):
        return torch.nn.functional.pad(x, (0, 0, W - x.shape[2], 0))

    order = np.argsort(np.concatenate([idx for idx, _ in parts]), kind="stable")
    order = torch.from_numpy(order).to(parts[0][1].logits.device)
    prefills = [p for _, p in parts]
    layers = [(torch.cat([pad(p.cache.layers[i].keys) for p in prefills])[order],
               torch.cat([pad(p.cache.layers[i].values) for p in prefills])[order])
              for i in range(len(prefills[0].cache.layers))]
    attn = torch.cat([torch.nn.functional.pad(p.attention, (W - p.attention.shape[1], 0)) for p in prefills])[order]
    return Prefill(torch.cat([p.logits for p in prefills])[order], DynamicCache(ddp_cache_data=layers), attn,
                   torch.cat([p.next_positions for p in prefills])[order])


def pick_by_uniform(probs_NV: torch.Tensor, u_N: torch.Tensor) -> torch.Tensor:
    """Inverse-CDF sampling, all rows at once: row k takes the first token whose cumulative
    probability exceeds u_N[k] x its total (u in [0, 1)). A zero-probability token is never taken
    (its cumulative sum equals its predecessor's); float64 sums keep a 150k vocabulary exact enough."""
    cdf = probs_NV.double().cumsum(-1)
    x = u_N.to(cdf.dtype) * cdf[:, -1]
    tok = torch.searchsorted(cdf, x[:, None], right=True).squeeze(-1)
    V = probs_NV.shape[-1]
    # x rounding up to the total would step past the end: take the last token with probability instead
    last = V - 1 - (probs_NV > 0).flip(-1).to(torch.int8).argmax(-1)
    return torch.where(tok >= V, last, tok)


class LocalSampler:
    def __init__(self, core: LocalModel):
        self.core = core
        self.lean: LeanDecode | None = None  # built at the first sample(): after the model is set up

    def _pick(self, logits: torch.Tensor, params: SampleParams, gen: torch.Generator | torch.Tensor) -> torch.Tensor:
        """One token per row. `gen`: the call's generator, or (params.seeds) each row's own uniform draw [n]."""
        # placeholder tokens are never valid output: fed back as text they would be taken for
        # image slots (the reported logprobs stay the model's own, temperature-1 ones)
        logits = logits.index_fill(-1, self.core.banned_ids, float("-inf"))
        if params.temperature <= 0:
            return logits.argmax(-1)
        probs = torch.softmax(logits / params.temperature, dim=-1)
        if params.top_p < 1.0:
            sorted_p, idx = probs.sort(dim=-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < params.top_p  # always keeps the top token
            sorted_p = sorted_p * keep
            probs = torch.zeros_like(probs).scatter(-1, idx, sorted_p)
        if isinstance(gen, torch.Generator):
            return torch.multinomial(probs, 1, generator=gen).squeeze(-1)
        return pick_by_uniform(probs, gen)

    def snapshot(self) -> SnapshotSampler:
        """A sampler on the weights as they are now (async GRPO): a copy of the trainable tensors
        (LoRA: the adapter, small; full fine-tuning: every trained weight), swapped in under the
        engine's lock for each call (`core` is the LocalEngine, which holds the lock)."""
        core = self.core
        return SnapshotSampler(core, {n: p.detach().clone() for n, p in core.trainable}, core._weights_version())

    @torch.no_grad()
    def sample(self, prompts: Sequence[ModelInput], num_samples: int = 1,
               params: SampleParams = SampleParams()) -> list[list[SampledSequence]]:
        core = self.core
        prompts = list(prompts)
        if not prompts:
            return []
        if num_samples < 1:
            raise ValueError(f"num_samples={num_samples} must be >= 1")
        for i, mi in enumerate(prompts):
            core._check_input(i, mi, params.max_tokens)
        stop_ids, stop_strs = resolve_stops(params.stop, core.renderer.stop_token_ids, core.vocab)
        seed = params.seed if params.seed is not None else core.cfg.seed * 1_000_003 + core.sample_calls
        core.sample_calls += 1
        gen = torch.Generator(device=core.device).manual_seed(int(seed))
        B, G = len(prompts), num_samples
        uniforms = None
        if params.seeds is not None:
            # each prompt's G x max_tokens uniforms drawn up front from its own generator: row r's draw at
            # step t depends on its prompt's seed alone (not on the batch it shares), and a decode step
            # makes no per-row generator call (one vectorised inverse-CDF pick, pick_by_uniform)
            if len(params.seeds) != B:
                raise ValueError(f"SampleParams.seeds has {len(params.seeds)} seeds for {B} prompts")
            uniforms = torch.cat([torch.rand(G, params.max_tokens, generator=torch.Generator().manual_seed(int(s)),
                                             dtype=torch.float64) for s in params.seeds]).to(core.device)

        reuse = core.kv_reuse and core.kv_store.max_tokens > 0
        if reuse:
            core.kv_store.sync_weights(core._weights_version())  # stale KV would give wrong logprobs
            reusing = self.prefill_reusing(prompts)
            pre = reusing.prefill
        else:
            pre = self.prefill(prompts)
        if self.lean is None:
            self.lean = LeanDecode(core.model)
        lean = core.lean_decode and self.lean.supported
        self.lean.prepare(functional=lean and core.functional_decode)
        shared = None
        # the G samples of a prompt share its prefix: either the decode reads the prompt's KV once for
        # all of them and each row caches only its own tokens (prefix_decode.py), or the cache is
        # repeated G times; either way into buffers with room for every token to come (kv_cache.py:
        # no per-step growth by copying)
        if lean and core.shared_prefix_decode and self.lean.shares_prefix:
            shared = SharedPrefixKV([(lay.keys, lay.values) for lay in pre.cache.layers],
                                    None if bool(pre.attention.all()) else pre.attention.bool(), G)
            empty = [(lay.keys[:, :, :0], lay.values[:, :, :0]) for lay in pre.cache.layers]
            cache = reserve(DynamicCache(ddp_cache_data=empty), extra=params.max_tokens, repeats=G)
            slots_N = torch.arange(B * G, device=core.device)
        elif core.reserve_kv:
            cache = reserve(pre.cache, extra=params.max_tokens, repeats=G)
        else:  # DynamicCache: grows by concatenation
            cache = pre.cache
            if G > 1:
                cache.batch_repeat_interleave(G)
        logits = pre.logits.repeat_interleave(G, 0)
        W = pre.attention.shape[1]
        # the attention mask of the whole decode, filled in advance: step t attends its first W + t + 1 columns
        attn_all = torch.nn.functional.pad(pre.attention, (0, params.max_tokens), value=1).repeat_interleave(G, 0)
        next_pos = pre.next_positions.repeat_interleave(G)
        padded = not bool(pre.attention.all())  # once: the columns decode adds are never padding

        N = B * G
        tokens: list[list[int]] = [[] for _ in range(N)]
        logprobs: list[list[float]] = [[] for _ in range(N)]
        reason = ["length"] * N
        rows = list(range(N))  # which sequence each live batch row is; finished rows are dropped
        rows_t = torch.arange(N, device=core.device)  # the same, as a tensor (indexes the uniforms)
        tails: list = [None] * N  # per sequence, the KV of its fed sampled tokens (kept for reuse)
        for t in range(params.max_tokens):
            logp = torch.log_softmax(logits, dim=-1)  # temperature 1: what the trainer computes
            tok = self._pick(logits, params, gen if uniforms is None else uniforms[rows_t, t])
            lp = logp.gather(-1, tok[:, None]).squeeze(-1)
            tok_l, lp_l = tok.tolist(), lp.tolist()
            keep = []
            for k, r in enumerate(rows):
                tokens[r].append(tok_l[k])
                logprobs[r].append(lp_l[k])
                if tok_l[k] in stop_ids or (stop_strs and any(core.renderer.decode(tokens[r]).endswith(s)
                                                              for s in stop_strs)):
                    reason[r] = "stop"
                else:
                    keep.append(k)
            core.tokens.add("decode", needed=len(rows), processed=len(rows))
            last = not keep or t == params.max_tokens - 1
            if reuse and t > 0:  # a finished row's last t cache columns are its fed sampled tokens
                for k in (range(len(rows)) if last else sorted(set(range(len(rows))) - set(keep))):
                    tails[rows[k]] = tuple((lay.keys[k, :, -t:].clone(), lay.values[k, :, -t:].clone())
                                           for lay in cache.layers)
            if last:
                break
            if len(keep) < len(rows):  # drop finished rows from the batch and the KV cache
                idx = torch.tensor(keep, device=core.device)
                cache.batch_select_indices(idx)
                attn_all, next_pos, tok = attn_all[idx], next_pos[idx], tok[idx]
                if shared is not None:
                    slots_N = slots_N[idx]
                    shared.keep(slots_N)
                rows = [rows[k] for k in keep]
                rows_t = rows_t[idx]
            n = len(rows)
            attn = attn_all[:, : W + t + 1]
            if lean:  # straight through the layers (decode_step.py)
                logits = self.lean(tok, attn if padded else None, next_pos + t, cache, shared)
                continue
            pos = (next_pos + t).view(1, n, 1).expand(3, n, 1)
            out = core.model(input_ids=tok[:, None], attention_mask=attn, position_ids=pos, **{CACHE_ARG: cache},
                             use_cache=True)
            cache = output_cache(out)
            logits = out.logits[:, -1].float()
        self.lean.prepare(functional=False)  # a snapshot's swapped-in weights must not outlive the call
        if reuse:  # prompt + all sampled tokens but the last (never fed): what the cache now holds
            for r in range(N):
                b = r // G
                key = np.concatenate([reusing.keys[b], np.asarray(tokens[r][:-1], np.int64)])
                core.kv_store.add(key, reusing.prompt_kv[b] + ([tails[r]] if tails[r] is not None else []))
        seqs = [SampledSequence(tuple(tokens[r]), tuple(logprobs[r]), reason[r]) for r in range(N)]
        return [seqs[b * G : (b + 1) * G] for b in range(B)]

    def prefill(self, prompts: Sequence[ModelInput]) -> Prefill:
        """Run the prompts into a KV cache. Prompts that share a prefix (the G continuations of a
        group in a later telescoping turn: same image and first turn) compute it once: stage 1
        prefills the distinct prefixes, their cache rows are gathered per prompt, stage 2 prefills
        each prompt's own suffix on top (left-padded, so padding holes sit between the two parts
        and are masked out; positions are explicit, so the holes do not shift them)."""
        core = self.core
        clusters = self.prefix_clusters(prompts)
        if all(P == 0 for _, P in clusters):
            return self.prefill_plain(prompts)
        # every prompt gets a prefix: its cluster's, or all but its last token when it shares none
        prefix_len, row = [0] * len(prompts), [0] * len(prompts)
        for c, (idx, P) in enumerate(clusters):
            for i in idx:
                row[i] = c
                prefix_len[i] = P or (prompts[i].length - 1)
        heads = [head(prompts[idx[0]], prefix_len[idx[0]]) for idx, _ in clusters]
        for i, mi in enumerate(prompts):
            if not images_end_before(mi, prefix_len[i]):  # cannot split before its last image
                return self.prefill_plain(prompts)
        first = core._batch(heads, left_pad=True)
        out = core.model(**first.model_kwargs(), use_cache=True, logits_to_keep=1)
        cache = output_cache(out)
        cache.batch_select_indices(torch.tensor(row, device=core.device))  # gathers (and repeats) rows
        second = core._batch(prompts, left_pad=True, starts=prefix_len)  # no images: they all sit in the prefix
        attn = torch.cat([first.attention_mask[row], second.attention_mask], dim=1)
        out2 = core.model(**{**second.model_kwargs(), "attention_mask": attn}, **{CACHE_ARG: cache}, use_cache=True,
                          logits_to_keep=1)
        core.tokens.add("prefill", needed=sum(first.lengths) + sum(second.lengths),
                        processed=first.input_ids.numel() + second.input_ids.numel())
        return Prefill(out2.logits[:, -1].float(), output_cache(out2), attn,
                       torch.tensor(second.next_positions, device=core.device))

    # KV reuse across sample() calls (issue 7). A telescoping turn-2 prompt is turn 1's prompt +
    # that rollout's sampled tokens + a new user turn; the turn-1 call already computed the KV of
    # all but the new part. Each prompt takes the longest stored sequence it extends
    # (kv_store.py); those rows are assembled left-padded into one cache and only their suffixes
    # are prefilled on top (explicit positions, as in stage 2 above); the other prompts take the
    # usual path and the two caches are merged into one batch.

    def prefill_reusing(self, prompts: Sequence[ModelInput]) -> ReusingPrefill:
        """`prefill`'s result + per prompt its match key and its KV as store segments."""
        store = self.core.kv_store
        fingerprints: dict = {}
        keys = [match_key(mi, fingerprints) for mi in prompts]
        entries = [store.match(k, MIN_SHARED_PREFIX) for k in keys]
        matches = [(e, len(e.key) if e is not None else 0) for e in entries]
        hit = [i for i, e in enumerate(entries) if e is not None]
        miss = [i for i, e in enumerate(entries) if e is None]
        parts, prompt_kv = [], [None] * len(prompts)
        if miss:
            pre = self.prefill([prompts[i] for i in miss])
            for j, i in enumerate(miss):  # the prompt's valid cache columns (padding holes dropped)
                m = pre.attention[j].bool()
                prompt_kv[i] = [tuple((lay.keys[j][:, m], lay.values[j][:, m]) for lay in pre.cache.layers)]
            parts.append((miss, pre))
        if hit:
            pre, suffix_kv = self.prefill_on_stored([prompts[i] for i in hit], [matches[i] for i in hit])
            for j, i in enumerate(hit):
                entry, m = matches[i]
                prompt_kv[i] = take_segments(entry.segments, m) + [suffix_kv[j]]
                store.hits += 1
                store.reused_tokens += m
            parts.append((hit, pre))
        pre = merge_prefills(parts) if len(parts) > 1 else parts[0][1]
        return ReusingPrefill(pre, keys, prompt_kv)

    def prefill_on_stored(self, prompts: Sequence[ModelInput], matches: list) -> tuple[Prefill, list]:
        """Prefill each prompt's suffix after its stored prefix of m tokens -> the Prefill + per
        prompt the KV segment of its suffix. Needs (and counts) only the suffix tokens."""
        core = self.core
        rows = [concat_segments(entry.segments, m) for entry, m in matches]
        W = max(m for _, m in matches)
        layers, attn1 = left_padded(rows, W)
        cache = DynamicCache(ddp_cache_data=layers)
        # the new parts (with any image in them, e.g. a second photo in turn 2)
        suffix = core._batch(prompts, left_pad=True, starts=[m for _, m in matches])
        attn = torch.cat([attn1, suffix.attention_mask], dim=1)
        out = core.model(**{**suffix.model_kwargs(), "attention_mask": attn}, **{CACHE_ARG: cache}, use_cache=True,
                         logits_to_keep=1)
        core.tokens.add("prefill", needed=sum(suffix.lengths), processed=suffix.input_ids.numel())
        suffix_kv = [tuple((lay.keys[b, :, -n:].clone(), lay.values[b, :, -n:].clone())
                           for lay in output_cache(out).layers) for b, n in enumerate(suffix.lengths)]
        nexts = torch.tensor(suffix.next_positions, device=core.device)
        return Prefill(out.logits[:, -1].float(), output_cache(out), attn, nexts), suffix_kv

    def prefill_plain(self, prompts: Sequence[ModelInput]) -> Prefill:
        """`prefill` without a shared prefix: every prompt whole, left-padded, in one pass."""
        core = self.core
        batch = core._batch(prompts, left_pad=True)
        out = core.model(**batch.model_kwargs(), use_cache=True, logits_to_keep=1)
        T = batch.input_ids.shape[1]
        core.tokens.add("prefill", needed=sum(batch.lengths), processed=len(prompts) * T)
        return Prefill(out.logits[:, -1].float(), output_cache(out), batch.attention_mask,
                       torch.tensor(batch.next_positions, device=core.device))

    def prefix_clusters(self, inputs: Sequence[ModelInput]) -> list[tuple[list[int], int]]:
        """[(indices, shared prefix length)] over all inputs; 0 = no worthwhile shared prefix.
        A shared prefix has equal tokens and equal images, holds every image of its members,
        is >= MIN_SHARED_PREFIX long and leaves each member at least one token of its own."""
        toks = [self.core.renderer.tokens_of(mi) for mi in inputs]
        clusters: list[list] = []  # [indices, prefix_len]
        for i, t in enumerate(toks):
            for cl in (clusters if self.core.shared_prefix else []):
                lcp = common_prefix_len(toks[cl[0][0]][: cl[1]], t)
                if lcp >= MIN_SHARED_PREFIX and same_images(inputs[cl[0][0]], inputs[i], lcp):
                    cl[0].append(i)
                    cl[1] = lcp
                    break
            else:
                clusters.append([[i], len(t)])
        out = []
        for idx, lcp in clusters:
            lcp = min([lcp] + [len(toks[i]) - 1 for i in idx])
            ok = len(idx) > 1 and lcp >= MIN_SHARED_PREFIX and all(images_end_before(inputs[i], lcp) for i in idx)
            out.append((idx, lcp if ok else 0))
        return out
