"""vLLM as the sampler (optional, GPU only): the local engine trains, vLLM samples.

`VLLMSamplingEngine` wraps a LocalEngine: forward / forward_backward / optim_step / checkpoints
go to the local engine; `sample` goes to a `vllm.LLM` that holds the same base model with
LoRA enabled. After every weight change (the trainer's weights version moves) the adapter is
exported to a NEW versioned folder and served under a NEW `LoRARequest(name, int_id, path)`:
vLLM caches adapters by id (and compares requests by name), so reusing either would serve the
stale weights.

What the conversion relies on, read from vLLM 0.33's source (see docs/vllm.md):
- vllm/inputs/llm.py: `TokensPrompt` is a TypedDict {prompt_token_ids, multi_modal_data, ...},
  so a plain dict is one.
- vllm/model_executor/models/qwen2_vl.py, qwen2_5_vl.py, qwen3_vl.py `_get_prompt_updates`: the
  image update is `PromptReplacement(target=[<|image_pad|>], replacement=[<|image_pad|>] * N)`
  with N = prod(grid_thw) / merge**2, and vllm/multimodal/processing/processor.py applies it to
  token prompts too (`_apply_prompt_updates`: each image takes the next single-pad match).
  So a token prompt holds ONE pad per image; our ModelInput holds N (the ImageChunk), and an
  expanded prompt would come out with 2N-1 pads. `vllm_prompt` collapses each image to one.
- vllm/sampling_params.py: `logprobs=0` returns the sampled token's logprob only;
  vllm/config/model.py `logprobs_mode="raw_logprobs"` makes it the model's own log_softmax
  before temperature/top-p/logit-bias, i.e. what the trainer's `forward` computes.
- vllm/v1/core/sched/utils.py `check_stop`: a stop token is kept as the last output token
  (our SampledSequence convention); `ignore_eos=True` leaves stopping to `stop_token_ids`
  only, as the local engine does.

None of this runs in the tests (no GPU, no vllm there): the pure pieces are tested on CPU
with fakes; `check_logprobs` / benchmarks/vllm_check.py is the end-to-end check on a GPU.
"""

from __future__ import annotations

import importlib.util
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geospot.engines.datums import all_tokens, make_datum
from geospot.engines.snapshot import PinnedSampler
from geospot.engines.stops import resolve_stops
from geospot.engines.types import ImageChunk, ModelInput, SampledSequence, SampleParams, TextChunk

# vllm/config/lora.py MaxLoRARanks: the only values `max_lora_rank` accepts
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
BAN_BIAS = -100.0  # SamplingParams clamps logit_bias to [-100, 100]; raw logprobs are unaffected
INSTALL_HINT = "pip install -e '.[vllm]' in the geospot clone"


def vllm_installed() -> bool:
    return importlib.util.find_spec("vllm") is not None


def vllm_lora_rank(rank: int) -> int:
    """The smallest `max_lora_rank` vLLM accepts that holds a rank-`rank` adapter."""
    for r in VLLM_LORA_RANKS:
        if r >= rank:
            return r
    raise ValueError(f"lora_rank={rank} is above vLLM's largest max_lora_rank {VLLM_LORA_RANKS[-1]}")


# -- ModelInput -> vLLM prompt ---------------------------------------------------------------------


def vllm_prompt(model_input: ModelInput, image_pad_id: int) -> dict:
    """A `vllm.inputs.TokensPrompt` (a TypedDict, so a plain dict): text tokens verbatim, each
    image as ONE `<|image_pad|>` that vLLM's Qwen-VL processor expands to the image's
    `expected_tokens` (see the module docstring), and the resized images in order."""
    ids: list[int] = []
    images = []
    for c in model_input.chunks:
        if isinstance(c, TextChunk):
            if image_pad_id in c.tokens:
                raise ValueError(
                    f"a text chunk holds the image placeholder id {image_pad_id}; vLLM would take it for an "
                    "image slot. Images must be ImageChunks (build prompts with the Renderer)"
                )
            ids.extend(int(t) for t in c.tokens)
        elif isinstance(c, ImageChunk):
            ids.append(int(image_pad_id))
            images.append(c.image)
        else:
            raise TypeError(f"unknown chunk type {type(c).__name__}")
    prompt: dict[str, Any] = {"prompt_token_ids": ids}
    if images:
        prompt["multi_modal_data"] = {"image": images[0] if len(images) == 1 else images}
    return prompt


def expanded_prompt_ids(model_input: ModelInput, image_pad_id: int) -> list[int]:
    """What vLLM's prompt should become after its processor expands the images: the tokens
    the trainer sees. `check_logprobs` compares it with `RequestOutput.prompt_token_ids`, which
    catches a different image grid (vLLM resizing our already-resized image)."""
    return all_tokens(model_input, image_pad_id).tolist()


# -- SampleParams -> SamplingParams kwargs ---------------------------------------------------------


def sampling_kwargs(
    params: SampleParams,
    num_samples: int,
    *,
    default_stop_ids: Sequence[int],
    vocab: dict[str, int],
    banned_ids: Sequence[int] = (),
) -> dict:
    """Keyword arguments for `vllm.SamplingParams`, with the local engine's semantics:
    the same stop rule (explicit stops, else the renderer's end-of-turn ids; a string that is
    one token stops on that id), temperature/top-p as given with top-k and penalties off,
    the sampled token's raw logprob returned (`logprobs=0` + engine `logprobs_mode`), image
    placeholders never sampled."""
    if num_samples < 1:
        raise ValueError(f"num_samples={num_samples} must be >= 1")
    if params.max_tokens < 1:
        raise ValueError(f"max_tokens={params.max_tokens} must be >= 1")
    if not 0.0 < params.top_p <= 1.0:
        raise ValueError(f"top_p={params.top_p} must be in (0, 1]")
    stop_ids, stop_strs = resolve_stops(params.stop, default_stop_ids, vocab)
    greedy = params.temperature <= 0
    return dict(
        # vLLM refuses n > 1 with greedy sampling (SamplingParams._verify_greedy_sampling): ask for
        # one and let the caller copy it, since all greedy samples are the same sequence anyway
        n=1 if greedy else num_samples,
        temperature=0.0 if greedy else float(params.temperature),  # vLLM: 0 = greedy, as ours
        top_p=float(params.top_p),
        top_k=0,  # off (our sampler has no top-k)
        min_p=0.0,
        repetition_penalty=1.0,
        presence_penalty=0.0,
        frequency_penalty=0.0,
        max_tokens=int(params.max_tokens),
        seed=params.seed,
        stop_token_ids=sorted(stop_ids),
        stop=stop_strs or None,
        ignore_eos=True,  # stop only on stop_token_ids, like the local engine
        include_stop_str_in_output=True,
        logprobs=0,  # the sampled token's logprob only
        detokenize=bool(stop_strs),  # text is only needed to match stop strings
        skip_special_tokens=False,
        logit_bias={int(t): BAN_BIAS for t in banned_ids} or None,
    )


# -- vLLM outputs -> SampledSequence ---------------------------------------------------------------


def sampled_sequences(request_output) -> list[SampledSequence]:
    """A `vllm.RequestOutput` (.outputs: list[CompletionOutput(index, token_ids, logprobs,
    finish_reason)], logprobs: one {token_id: Logprob(logprob, rank, decoded_token)} per
    generated token) -> our SampledSequences, in `index` order."""
    seqs = []
    for comp in sorted(request_output.outputs, key=lambda c: c.index):
        tokens = tuple(int(t) for t in comp.token_ids)
        if comp.logprobs is None:
            raise ValueError("vLLM returned no logprobs; SamplingParams must set logprobs=0")
        if len(comp.logprobs) != len(tokens):
            raise ValueError(f"vLLM returned {len(comp.logprobs)} logprobs for {len(tokens)} tokens")
        logprobs = []
        for pos, tok in zip(comp.logprobs, tokens):
            if tok not in pos:
                raise ValueError(f"vLLM's logprobs at a position lack the sampled token {tok}")
            logprobs.append(float(pos[tok].logprob))
        if comp.finish_reason not in ("stop", "length"):
            raise RuntimeError(f"vLLM finished a sample with finish_reason={comp.finish_reason!r} (expected stop or "
                               "length)")
        seqs.append(SampledSequence(tokens, tuple(logprobs), comp.finish_reason))
    return seqs


# -- the sampler: a vllm.LLM plus the adapter it serves --------------------------------------------


class VLLMSampler:
    """Owns the `vllm.LLM` and the adapter versions. `llm`, `sampling_params` and
    `lora_request` are injectable (tests pass fakes; `create` builds the real ones)."""

    def __init__(
        self,
        llm,
        *,
        image_pad_id: int,
        default_stop_ids: Sequence[int],
        vocab: dict[str, int],
        banned_ids: Sequence[int] = (),
        adapter_root: str | Path | None = None,
        sampling_params: Callable[..., Any] | None = None,
        lora_request: Callable[..., Any] | None = None,
        keep_versions: int = 2,
    ):
        self.llm = llm
        self.image_pad_id = image_pad_id
        self.default_stop_ids = tuple(default_stop_ids)
        self.vocab = vocab
        self.banned_ids = tuple(banned_ids)
        self._own_root = adapter_root is None
        self.adapter_root = Path(adapter_root or tempfile.mkdtemp(prefix="geospot-vllm-lora-"))
        self.adapter_root.mkdir(parents=True, exist_ok=True)
        if sampling_params is None or lora_request is None:
            from vllm import SamplingParams  # delayed: vllm is an optional GPU extra
            from vllm.lora.request import LoRARequest

            sampling_params, lora_request = sampling_params or SamplingParams, lora_request or LoRARequest
        self._sampling_params = sampling_params
        self._lora_request = lora_request
        self.keep_versions = max(1, keep_versions)
        self.version = 0  # vLLM LoRA ids must be >= 1: the first adapter is version 1
        self.request = None  # the LoRARequest samples use; None until the first sync
        self._versions: list[Path] = []

    @classmethod
    def create(cls, base_model: str, *, lora_rank: int, llm_options: dict | None = None,
               **sampler_kwargs) -> VLLMSampler:
        """`llm_options`: llm_kwargs' keyword arguments (seed, dtype, gpu_memory_utilization, ...)."""
        if not vllm_installed():
            raise ImportError(f"sampler=vllm needs the vllm package: {INSTALL_HINT}")
        from vllm import LLM  # delayed: vllm is an optional GPU extra

        llm = LLM(**llm_kwargs(base_model, lora_rank=lora_rank, **(llm_options or {})))
        return cls(llm, **sampler_kwargs)

    def sync(self, export_adapter: Callable[[str], str]) -> Any:
        """Write the trainer's current adapter to a new version folder and serve it from now on.
        `export_adapter(path)` writes a PEFT adapter folder there (LocalEngine.export)."""
        self.version += 1
        path = Path(export_adapter(str(self.adapter_root / f"v{self.version:06d}")))
        self.request = self._lora_request(
            lora_name=f"geospot-v{self.version}", lora_int_id=self.version, lora_path=str(path)
        )
        self._versions.append(path)
        return self.request

    def _prune(self) -> None:
        # older folders are safe to delete once a generate call has loaded the newer adapter
        while len(self._versions) > self.keep_versions:
            shutil.rmtree(self._versions.pop(0), ignore_errors=True)

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams, request: Any = None
    ) -> list[list[SampledSequence]]:
        """`request`: an older adapter version's LoRARequest (async GRPO); default the newest."""
        request = request if request is not None else self.request
        if request is None:
            raise RuntimeError("VLLMSampler.sample before the first sync(): no adapter to serve")
        kw = sampling_kwargs(
            params, num_samples, default_stop_ids=self.default_stop_ids, vocab=self.vocab, banned_ids=self.banned_ids
        )
        sp = self._sampling_params(**kw)
        outs = self.llm.generate(
            [vllm_prompt(p, self.image_pad_id) for p in prompts], sp, lora_request=request, use_tqdm=False
        )
        self._prune()
        self.last_outputs = outs  # kept for check_logprobs (prompt_token_ids)
        result = [sampled_sequences(o) for o in outs]
        if kw["n"] == 1 and num_samples > 1:  # greedy: one request per prompt, copied G times
            result = [seqs * num_samples for seqs in result]
        for i, seqs in enumerate(result):
            if len(seqs) != num_samples:
                raise RuntimeError(f"vLLM returned {len(seqs)} samples for prompt {i}, asked for {num_samples}")
        return result

    def close(self) -> None:
        if self._own_root:
            shutil.rmtree(self.adapter_root, ignore_errors=True)


def llm_kwargs(
    base_model: str,
    *,
    lora_rank: int,
    seed: int = 0,
    dtype: str = "auto",
    gpu_memory_utilization: float = 0.35,
    max_images: int = 4,
    max_model_len: int | None = None,
) -> dict:
    """`vllm.LLM(...)` arguments (vllm/entrypoints/llm.py + vllm/engine/arg_utils.py EngineArgs).
    The trainer shares the GPU, hence the modest memory share."""
    kw = dict(
        model=str(base_model),
        enable_lora=True,
        max_lora_rank=vllm_lora_rank(lora_rank),
        max_loras=1,  # one policy at a time
        limit_mm_per_prompt={"image": int(max_images)},
        logprobs_mode="raw_logprobs",  # model log_softmax before temperature/top-p: the trainer's numbers
        generation_config="vllm",  # ignore the checkpoint's sampling defaults (e.g. repetition_penalty)
        seed=int(seed),
        dtype=dtype,
        gpu_memory_utilization=float(gpu_memory_utilization),
        enable_prefix_caching=True,  # the G samples and later turns share the image prefix
    )
    if max_model_len is not None:
        kw["max_model_len"] = int(max_model_len)
    return kw


# -- the engine: local trainer + vLLM sampler ------------------------------------------------------


class VLLMSamplingEngine:
    """Everything but `sample` is the inner (local) engine's; `sample` is vLLM's, on the adapter
    exported after the latest weight change."""

    def __init__(self, inner, sampler: VLLMSampler):
        self.inner = inner
        self.sampler = sampler
        # the inner engine's weights version (LocalEngine._weights_version) vLLM's adapter was
        # exported at; None = nothing served yet. Every in-place weight change (optim_step,
        # train_step, load_state) bumps it, so no wrapper method has to remember to mark it.
        self._served = None

    @classmethod
    def from_local(cls, inner) -> VLLMSamplingEngine:
        cfg = inner.cfg
        renderer = inner.renderer
        sampler = VLLMSampler.create(
            str(inner.folder),
            lora_rank=cfg.lora_rank,
            llm_options=dict(
                seed=cfg.seed,
                dtype=str(inner.dtype).removeprefix("torch."),  # the trainer's resolved dtype: same numerics
                gpu_memory_utilization=cfg.vllm_gpu_memory_utilization,
            ),
            image_pad_id=renderer.image_pad_id,
            default_stop_ids=renderer.stop_token_ids,
            vocab=inner.vocab,
            banned_ids=inner.banned_ids.tolist(),
        )
        return cls(inner, sampler)

    def __getattr__(self, name):  # renderer, lockstep, forward, forward_backward, token_stats, step, cfg ...
        if name in ("inner", "sampler"):
            raise AttributeError(name)
        return getattr(self.inner, name)

    def _export_adapter(self, path: str) -> str:
        return self.inner.export(path, merged=False)

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int = 1, params: SampleParams = SampleParams()
    ) -> list[list[SampledSequence]]:
        prompts = list(prompts)
        if not prompts:
            return []
        for i, mi in enumerate(prompts):
            self.inner._check_input(i, mi, params.max_tokens)
        self._sync()
        return self.sampler.sample(prompts, num_samples, params)

    def _sync(self) -> None:
        version = self.inner._weights_version()
        if version != self._served:  # the adapter vLLM serves is not the trainer's current one
            self.sampler.sync(self._export_adapter)
            self._served = version

    def snapshot_sampler(self, keep: int = 1) -> PinnedSampler:
        """A sampler on the adapter version exported now (async GRPO). `keep`: how many versions
        may still be sampled from; their folders stay on disk (vLLM may reload an evicted one)."""
        with self.inner.lock:  # the export reads the adapter: not while a train step writes it
            self._sync()
        self.sampler.keep_versions = max(self.sampler.keep_versions, keep + 1)
        request = self.sampler.request

        def sample(prompts, n, params):
            for i, mi in enumerate(prompts):
                self.inner._check_input(i, mi, params.max_tokens)
            return self.sampler.sample(prompts, n, params, request=request)

        return PinnedSampler(sample, self.inner.renderer)

    def close(self) -> None:
        self.sampler.close()


# -- the check a person with a GPU runs ------------------------------------------------------------


def check_logprobs(
    engine,
    prompts: Sequence[ModelInput],
    num_samples: int = 4,
    params: SampleParams = SampleParams(max_tokens=24, temperature=1.0),
) -> dict:
    """Sample with vLLM, rescore the same tokens with the trainer (`engine.forward`), and
    compare: max/mean |logprob_vllm - logprob_trainer| over all sampled tokens, and whether
    vLLM expanded every prompt to exactly the trainer's tokens (same image grids)."""
    groups = engine.sample(prompts, num_samples, params)
    datums, sampled = [], []
    for mi, seqs in zip(prompts, groups):
        for s in seqs:
            if not s.tokens:
                continue
            datums.append(make_datum(mi.append_tokens(s.tokens)))
            sampled.append((mi.length, np.asarray(s.logprobs, np.float64)))
    trainer = engine.forward(datums)
    diffs = []
    for (n_prompt, q_T), lp in zip(sampled, trainer):
        p_T = np.asarray(lp, np.float64)[n_prompt - 1 :]  # target i predicts token i+1
        diffs.append(np.abs(p_T - q_T))
    d = np.concatenate(diffs) if diffs else np.zeros(0)
    prompts_match = None
    outs = getattr(getattr(engine, "sampler", None), "last_outputs", None)
    if outs is not None:
        pad = engine.renderer.image_pad_id
        prompts_match = all(list(o.prompt_token_ids) == expanded_prompt_ids(mi, pad) for o, mi in zip(outs, prompts))
    return {
        "max_abs_diff": float(d.max()) if d.size else float("nan"),
        "mean_abs_diff": float(d.mean()) if d.size else float("nan"),
        "tokens": int(d.size),
        "sequences": len(datums),
        "prompts_match": prompts_match,
    }
