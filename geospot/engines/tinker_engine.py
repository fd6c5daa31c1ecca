"""The Tinker engine: the Engine protocol on the Tinker training service.

One renderer, two outputs. The same `Renderer` the local engine uses (built from the
model's HF tokenizer and image processor) turns chat messages into our `ModelInput`; this
module only *translates* it into the SDK's types, chunk for chunk:

    TextChunk(tokens)                     -> tinker.EncodedTextChunk(tokens)
    ImageChunk(image, grid_thw, expected) -> tinker.ImageChunk(JPEG bytes, "jpeg", expected)

so the token sequence the service sees is, position for position, the one the local
engine feeds its model (the service expands an image chunk into `expected_tokens`
placeholder positions, exactly as the local engine does). Datums are already shifted on
our side (`make_datum`), so they are translated as they are — never shifted again.

The protocol is synchronous; Tinker is futures. Where order matters we submit before we
wait: `train_step` submits forward_backward *and* optim_step, then waits for both (Tinker
orders requests per training client, so the optimizer step runs on these gradients and the
round trip is paid once). `sample` submits every prompt, then collects.

Sampler weights follow the trainer lazily: every optimizer step (or load) marks the
sampling client stale, and the next `sample` call refreshes it with
`save_weights_and_get_sampling_client` — a loop that samples each step gets fresh weights
each step, an SFT loop that never samples pays nothing.

Checkpoints live on the service. `save_state(path)` saves there, writes
`<path>/tinker.json` (the `tinker://…` path plus the model it belongs to) into the run
folder, and returns the `tinker://…` path, which the checkpoint code records as is.
`load_state` accepts that URI, or a folder holding `tinker.json`.

Nothing is streamed before the start-up checks pass: a key is configured, the service
answers and accepts it, and the model is a vision model it serves — each failure is one
sentence saying what to do.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geospot.config import ConfigError
from geospot.engines.config import EngineConfig
from geospot.engines.rendering import Renderer
from geospot.engines.snapshot import PinnedSampler
from geospot.engines.tinker_convert import (
    GeospotTinkerError,
    _tinker,
    forward_datum,
    from_tinker_sequence,
    loss_fn_config,
    to_tinker_adam,
    to_tinker_datum,
    to_tinker_model_input,
    to_tinker_sampling_params,
)
from geospot.engines.tinker_service import _base_url, _service_call, check_model
from geospot.engines.types import (
    AdamParams,
    Datum,
    ForwardBackwardResult,
    LossFn,
    ModelInput,
    SampledSequence,
    SampleParams,
)
from geospot.models.load import load_tokenizer, resolve_model_path
from geospot.models.processor import ImageProcessor

log = logging.getLogger(__name__)


CHECKPOINT_FILE = "tinker.json"




# ---------------------------------------------------------------------------------------
# Start-up checks


def check_api_key(env: dict[str, str] | None = None, stored_key: Callable[[], str | None] | None = None,
                  instead: str = "use engine=local", who: str = "engine=tinker") -> str:
    """Which credential will be used; raises with one sentence when there is none or it is malformed
    (`who` needs it and `instead` is the way round Tinker, in the caller's words)."""
    env = os.environ if env is None else env
    key = env.get("TINKER_API_KEY", "").strip()
    if not key:
        if env.get("TINKER_CREDENTIAL_CMD"):
            return "TINKER_CREDENTIAL_CMD"
        if (stored_key or _stored_key)():
            return "stored credentials"
        raise GeospotTinkerError(
            f"{who} needs a Tinker API key: set TINKER_API_KEY=tml-... (create one in the Tinker "
            f"console) or run `tinker auth login`, or {instead}"
        )
    if not (key.startswith("tml-") or key.startswith("eyJ")):
        raise GeospotTinkerError(
            "TINKER_API_KEY does not look like a Tinker key (they start with 'tml-'); copy it again from the Tinker "
            "console"
        )
    return "TINKER_API_KEY"


def _stored_key() -> str | None:
    try:
        from tinker.lib.credentials import JsonCredentialStore, default_credentials_path  # the optional SDK

        record = JsonCredentialStore(default_credentials_path()).get_default_key()
        return None if record is None else record.key
    except Exception:  # a private SDK helper: if it moved, only the env var counts
        return None


def _rest_client(cfg: EngineConfig, factory: Callable[[], Any] | None = None):
    """The SDK's RestClient for cfg's endpoint (tests inject a factory)."""
    return factory() if factory else _tinker().RestClient(base_url=cfg.tinker_base_url)


def fetch_capabilities(
    cfg: EngineConfig, *, rest_client_factory: Callable[[], Any] | None = None, timeout_s: float = 60.0
):
    """Ask the service which models it serves; every failure becomes one clear sentence."""
    _tinker()  # no SDK: say how to install it before anything else
    return _service_call(
        lambda: _rest_client(cfg, rest_client_factory).get_server_capabilities().result(),
        "get_server_capabilities",
        _base_url(cfg),
        timeout_s,
    )


def renderer_folder(model_name: str) -> Path:
    """A folder with the model's tokenizer and preprocessor_config.json: a local folder or
    tiny model as is, a hub id downloaded without its weights (the service holds those; a 30B
    checkpoint has no business on the user's disk)."""
    try:
        return resolve_model_path(model_name, weights=False)
    except FileNotFoundError as e:  # offline, no such repo, gated
        cause = e.__context__ or e  # the hub's own error (resolve_model_path raises `from None`)
        raise GeospotTinkerError(
            f"cannot get the tokenizer / image processor of {model_name!r} from the Hugging Face hub "
            f"({type(cause).__name__}); the Tinker engine renders prompts locally with them, so check the network "
            "or download them once (hf download MODEL --include '*.json' --include '*.txt' --include '*.jinja')"
        ) from cause


def default_renderer(cfg: EngineConfig):
    """The renderer of the same HF model id the service trains: same tokenizer and chat
    template, same image processor (its min/max pixels and patch size decide how many tokens
    an image takes, on our side and on the service's)."""
    folder = renderer_folder(cfg.model_name)
    return Renderer(load_tokenizer(folder), ImageProcessor.from_pretrained(folder), max_pixels=cfg.max_pixels)


def resolve_checkpoint(path: str) -> str:
    """A `tinker://…` path, or a folder / json file written by `save_state` -> the `tinker://…` path."""
    if path.startswith("tinker://"):
        return path
    p = Path(path)
    f = p / CHECKPOINT_FILE if p.is_dir() else p
    if not f.is_file():
        raise GeospotTinkerError(
            f"{path} is not a Tinker checkpoint (no {CHECKPOINT_FILE}); pass a tinker://... path or a folder saved "
            "by engine=tinker — a local-engine checkpoint cannot be loaded on Tinker"
        )
    try:
        tp = json.loads(f.read_text())["tinker_path"]
    except (ValueError, KeyError) as e:
        raise GeospotTinkerError(f"{f} is not a valid Tinker checkpoint record ({e})") from e
    return tp


def _write_json_atomic(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _checkpoint_name(path: str) -> str:
    """A service-side checkpoint name from our local path (`.../checkpoints/.tmp-40-123/engine` -> `step-40`)."""
    parts = [p for p in Path(path).parts if p not in ("", "/")]
    for part in reversed(parts):
        m = re.fullmatch(r"(?:\.tmp-)?(\d+)(?:-\d+)?", part)
        if m:
            return f"step-{int(m.group(1)):06d}"
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", parts[-1] if parts else "state").strip("-.")
    return name or "state"


# ---------------------------------------------------------------------------------------
# The engine


class TinkerEngine:
    """Engine protocol over a Tinker LoRA training client. See the module docstring."""

    lockstep = None  # never in lockstep: Tinker refuses torchrun (it is the remote cluster already)

    def __init__(
        self,
        cfg: EngineConfig,
        *,
        renderer: Any = None,
        service_client: Any = None,
        rest_client_factory: Callable[[], Any] | None = None,
        env: dict[str, str] | None = None,
        connect_timeout_s: float = 60.0,
    ):
        cfg.validate()
        if cfg.lora_rank <= 0:
            raise ConfigError("engine=tinker trains LoRA adapters only: set lora_rank>0 (e.g. lora_rank=32)")
        if cfg.train_vision:
            log.warning("engine=tinker: train_vision=True is ignored; Tinker chooses which layers LoRA trains")
        if cfg.lora_targets != "all-linear":
            log.warning(
                "engine=tinker: lora_targets=%s is ignored; Tinker trains LoRA on MLP, attention and unembedding",
                cfg.lora_targets,
            )
        self.cfg = cfg
        self._rest_client_factory = rest_client_factory
        tinker = _tinker()

        # 1. a credential (local check, no network), 2. the service answers and accepts it,
        # 3. it serves this model as a vision model — all before any data is touched.
        self.credential = check_api_key(env)
        capabilities = fetch_capabilities(cfg, rest_client_factory=rest_client_factory, timeout_s=connect_timeout_s)
        check_model(cfg.model_name, capabilities)

        self.renderer = renderer if renderer is not None else default_renderer(cfg)
        self.service = (
            service_client if service_client is not None else tinker.ServiceClient(base_url=cfg.tinker_base_url)
        )
        self.training = self._call(
            lambda: self.service.create_lora_training_client(
                base_model=cfg.model_name, rank=cfg.lora_rank, seed=cfg.seed
            ).result(),
            "create_lora_training_client",
            timeout_s=None,
        )
        self._sampler = None  # refreshed lazily after each optimizer step / load
        self._base_sampler = None  # the KL reference's sampler (set_reference, else the base model)
        self.steps = 0
        log.info("engine=tinker: LoRA rank %d on %s (credential: %s)", cfg.lora_rank, cfg.model_name, self.credential)

    # -- plumbing

    def _call(self, fn: Callable[[], Any], what: str, timeout_s: float | None = None) -> Any:
        return _service_call(fn, what, _base_url(self.cfg), timeout_s)

    def sampling_client(self):
        if self._sampler is None:
            self._sampler = self._call(
                lambda: self.training.save_weights_and_get_sampling_client().result(),
                "save_weights_and_get_sampling_client",
            )
        return self._sampler

    # -- sampling

    def sample(
        self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams
    ) -> list[list[SampledSequence]]:
        return self._sample_with(self.sampling_client(), prompts, num_samples, params)

    def snapshot_sampler(self, keep: int = 1) -> PinnedSampler:
        """A sampler on the weights as they are now (async GRPO): Tinker's sampling client for the
        current weights, as tinker-cookbook keeps one per sampler version; training moves on."""
        client = self.sampling_client()
        return PinnedSampler(lambda prompts, n, params: self._sample_with(client, prompts, n, params), self.renderer)

    def _sample_with(
        self, sampler, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams
    ) -> list[list[SampledSequence]]:
        sp = to_tinker_sampling_params(params, self.renderer.stop_token_ids)
        # Submit every prompt before waiting on any: the service batches them.
        futures = [
            sampler.sample(prompt=to_tinker_model_input(p), num_samples=num_samples, sampling_params=sp)
            for p in prompts
        ]
        out = []
        for f in futures:
            resp = self._call(f.result, "sample")
            out.append([from_tinker_sequence(s) for s in resp.sequences])
        return out

    # -- training

    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        if not datums:
            return []
        res = self._call(
            lambda: self.training.forward([forward_datum(d) for d in datums], "cross_entropy").result(), "forward"
        )
        return [np.asarray(o["logprobs"].to_numpy(), dtype=np.float32) for o in res.loss_fn_outputs]

    def set_reference(self) -> None:
        """Freeze the current weights as the KL reference: a sampling client of these weights
        (Tinker keeps them after later steps) replaces the base model in `forward_base`."""
        self._base_sampler = self.sampling_client()

    def forward_base(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        """Target logprobs under the KL reference (the weights `set_reference` froze, else the base
        model without adapter): its sampler scores each datum's full sequence (input + its last target)."""
        if self._base_sampler is None:
            self._base_sampler = self._call(
                lambda: self.service.create_sampling_client(base_model=self.cfg.model_name).result(),
                "create_sampling_client",
            )
        fulls = [d.model_input.append_tokens([int(d.loss_fn_inputs["target_tokens"][-1])]) for d in datums]
        futures = [self._base_sampler.compute_logprobs(to_tinker_model_input(f)) for f in fulls]
        out = []
        for full, fut in zip(fulls, futures):
            lp = self._call(fut.result, "compute_logprobs")
            if len(lp) != full.length:
                raise GeospotTinkerError(
                    f"compute_logprobs returned {len(lp)} values for a {full.length}-token sequence"
                )
            # Entry i+1 scores token i+1 given tokens <= i: the datum's target i. Image
            # positions (and the unscored first token) carry no loss: 0.
            arr = np.array([np.nan if x is None else x for x in lp[1:]], dtype=np.float32)
            arr[~np.isfinite(arr) | ~full.token_mask()[1:]] = 0.0
            out.append(arr)
        return out

    def _submit_forward_backward(self, datums: Sequence[Datum], loss_fn: LossFn, loss_config: dict | None):
        if not datums:
            raise ValueError("forward_backward got no datums")
        data = [to_tinker_datum(d, loss_fn) for d in datums]
        return self.training.forward_backward(data, loss_fn, loss_fn_config(loss_fn, loss_config))

    @staticmethod
    def _result(fb) -> ForwardBackwardResult:
        logprobs = [np.asarray(o["logprobs"].to_numpy(), dtype=np.float32) for o in fb.loss_fn_outputs]
        metrics = {k: float(v) for k, v in (fb.metrics or {}).items()}
        if "loss:sum" in metrics:
            metrics.setdefault("loss", metrics["loss:sum"])
        return ForwardBackwardResult(logprobs=logprobs, metrics=metrics)

    def forward_backward(
        self, datums: Sequence[Datum], loss_fn: LossFn, loss_config: dict | None = None
    ) -> ForwardBackwardResult:
        fut = self._submit_forward_backward(datums, loss_fn, loss_config)
        return self._result(self._call(fut.result, "forward_backward"))

    def optim_step(self, adam: AdamParams) -> dict[str, float]:
        resp = self._call(self.training.optim_step(to_tinker_adam(adam)).result, "optim_step")
        return self._stepped(resp)

    def _stepped(self, resp) -> dict[str, float]:
        self.steps += 1
        self._sampler = None  # the next sample() sees these weights
        metrics = {k: float(v) for k, v in ((getattr(resp, "metrics", None) or {}).items())}
        return metrics

    def train_step(
        self, datums: Sequence[Datum], loss_fn: LossFn, adam: AdamParams, loss_config: dict | None = None
    ) -> ForwardBackwardResult:
        # Submit both before waiting: Tinker runs them in order on this client.
        fb_future = self._submit_forward_backward(datums, loss_fn, loss_config)
        opt_future = self.training.optim_step(to_tinker_adam(adam))
        result = self._result(self._call(fb_future.result, "forward_backward"))
        result.metrics.update(
            {f"optim/{k}": v for k, v in self._stepped(self._call(opt_future.result, "optim_step")).items()}
        )
        return result

    # -- state

    def save_state(self, path: str) -> str:
        """Save weights + optimizer on the service; record the `tinker://…` path in `<path>/tinker.json`."""
        name = _checkpoint_name(path)
        resp = self._call(lambda: self.training.save_state(name, overwrite=True).result(), "save_state")
        _write_json_atomic(
            Path(path) / CHECKPOINT_FILE,
            {
                "tinker_path": resp.path,
                "kind": "state",
                "base_model": self.cfg.model_name,
                "lora_rank": self.cfg.lora_rank,
                "name": name,
                "steps": self.steps,
                "saved_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
        )
        return resp.path

    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        tinker_path = resolve_checkpoint(path)
        create = (
            self.service.create_training_client_from_state_with_optimizer
            if with_optimizer
            else self.service.create_training_client_from_state
        )
        self.training = self._call(lambda: create(tinker_path).result(), "load_state")
        self._sampler = None

    def token_stats(self) -> dict:
        """The service does not report the tokens it processed: nothing to count here."""
        return {}

    def export(self, path: str, merged: bool = False) -> str:
        """Download the LoRA adapter in Hugging Face format into `path` (via Tinker's
        external-weights export) and record where it came from; returns `path`."""
        if merged:
            raise GeospotTinkerError(
                "engine=tinker exports the LoRA adapter only (merged=false): the base weights stay on the service; "
                "merge the exported adapter into the base model locally (peft: PeftModel.from_pretrained(base, "
                "folder).merge_and_unload())"
            )
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        name = _checkpoint_name(path) + "-export"
        # The external copy only needs to outlive the download: 1 h, Tinker's shortest TTL.
        ext = self._call(lambda: self.training.save_weights_external(name, ttl_seconds=3600).result(), "export")
        rest = _rest_client(self.cfg, self._rest_client_factory)
        urls = self._call(lambda: rest.get_external_weights_urls(ext.path).result().urls, "export")
        base = out.resolve()
        for rel, url in sorted(urls.items()):
            dest = (out / rel).resolve()
            if not dest.is_relative_to(base):
                raise GeospotTinkerError(
                    f"the exported checkpoint names a file outside {out}: {rel!r}; refusing to write it"
                )
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")
            download_file(url, tmp)
            os.replace(tmp, dest)
        _write_json_atomic(
            out / CHECKPOINT_FILE,
            {
                "tinker_path": ext.path,
                "kind": "export",
                "base_model": self.cfg.model_name,
                "lora_rank": self.cfg.lora_rank,
                "files": sorted(urls),
            },
        )
        return str(out)


def download_file(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dest, "wb") as f:
        shutil.copyfileobj(resp, f, length=1 << 20)
