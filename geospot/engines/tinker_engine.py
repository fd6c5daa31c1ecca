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

import io
import json
import logging
import os
import re
import socket
import threading
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
from PIL import Image

from geospot.config import ConfigError
from geospot.engines.config import EngineConfig
from geospot.engines.types import (
    LOSS_CONFIG_KEYS,
    REQUIRED_INPUTS,
    AdamParams,
    Datum,
    ForwardBackwardResult,
    ImageChunk,
    LossFn,
    ModelInput,
    SampledSequence,
    SampleParams,
    TextChunk,
)

log = logging.getLogger(__name__)

# The service rejects image chunks above this size.
MAX_IMAGE_BYTES = 2 * 1024 * 1024
# JPEG qualities tried in turn until the image fits. Only quality is lowered, never the
# size: the service counts an image's tokens from its pixel size, so resizing here would
# break `expected_tokens` (and the equality with the local engine's sequence).
JPEG_QUALITIES = (95, 85, 75, 60, 45, 30)

# REQUIRED_INPUTS (types): the loss_fn_inputs each loss reads, the same for Tinker and the
# local engine. Other keys our datums may carry (e.g. weights on an RL datum) are dropped:
# the service validates the set. Their wire dtypes:
INPUT_DTYPES = {"target_tokens": np.int64, "weights": np.float32, "logprobs": np.float32, "advantages": np.float32}
# LOSS_CONFIG_KEYS (types): loss_config keys each loss understands (ppo's clip thresholds on the
# ratio, 0.8 / 1.2 by default on Tinker).

CHECKPOINT_FILE = "tinker.json"
VISION_NAME = re.compile(r"(?:^|[-_/])VL(?:[-_.]|$)", re.IGNORECASE)


class GeospotTinkerError(RuntimeError):
    """The Tinker service (or the way we reach it) is not usable; the message says why and what to do."""


def _tinker():
    try:
        import tinker
    except ImportError as e:  # pragma: no cover - the SDK is installed in the dev venv
        raise GeospotTinkerError(
            "engine=tinker needs the `tinker` SDK: pip install 'geospot[tinker]' (or pip install 'tinker>=0.38,<0.40')"
        ) from e
    return tinker


# ---------------------------------------------------------------------------------------
# Our types -> the SDK's types (pure functions; the contract tests exercise these)


def image_to_jpeg(image: Image.Image, max_bytes: int = MAX_IMAGE_BYTES, qualities: Sequence[int] = JPEG_QUALITIES) -> bytes:
    """JPEG bytes of `image` at its current pixel size, at the best quality under `max_bytes`."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    size = 0
    for q in qualities:
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=q)
        size = buf.tell()
        if size <= max_bytes:
            return buf.getvalue()
    w, h = image.size
    raise GeospotTinkerError(
        f"a {w}x{h} image is {size / 2**20:.1f} MB as JPEG even at quality {qualities[-1]}, over Tinker's "
        f"{max_bytes / 2**20:.1f} MB limit; lower max_pixels (e.g. max_pixels={448 * 448})"
    )


class _JpegCache:
    """JPEG bytes per PIL image object. A GRPO step renders the same image into the prompt
    and into each of its G datums; encode it once. Keyed by identity (PIL images are not
    hashable) and checked through a weak reference, so a recycled id never hits."""

    def __init__(self, max_items: int = 256):
        self.max_items = max_items
        self._items: OrderedDict[tuple[int, int], tuple[weakref.ref, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def jpeg(self, image: Image.Image, max_bytes: int) -> bytes:
        key = (id(image), max_bytes)
        with self._lock:
            hit = self._items.get(key)
            if hit is not None and hit[0]() is image:
                self._items.move_to_end(key)
                return hit[1]
        data = image_to_jpeg(image, max_bytes)
        with self._lock:
            self._items[key] = (weakref.ref(image), data)
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return data


_JPEG_CACHE = _JpegCache()


def to_tinker_model_input(model_input: ModelInput, *, max_image_bytes: int = MAX_IMAGE_BYTES):
    """Our ModelInput -> tinker.types.ModelInput, one chunk for one chunk, same length.
    The vision-start/end tokens stay in the neighbouring text chunks, as Tinker expects."""
    types = _tinker().types
    chunks = []
    for c in model_input.chunks:
        if isinstance(c, TextChunk):
            chunks.append(types.EncodedTextChunk(tokens=list(c.tokens)))
        elif isinstance(c, ImageChunk):
            data = _JPEG_CACHE.jpeg(c.image, max_image_bytes)
            chunks.append(types.ImageChunk(data=data, format="jpeg", expected_tokens=int(c.expected_tokens)))
        else:
            raise TypeError(f"unknown ModelInput chunk {type(c).__name__}")
    return types.ModelInput(chunks=chunks)


def flat_tokens(tinker_input, image_token_id: int) -> list[int]:
    """The token sequence a Tinker ModelInput stands for: text tokens as they are, each
    image as `expected_tokens` placeholders — what the local engine's input_ids hold."""
    out: list[int] = []
    for c in tinker_input.chunks:
        if getattr(c, "type", None) == "image":
            out.extend([image_token_id] * int(c.expected_tokens))
        else:
            out.extend(int(t) for t in c.tokens)
    return out


def to_tinker_datum(datum: Datum, loss_fn: str):
    """Our (already shifted) Datum -> tinker.Datum with exactly the inputs `loss_fn` reads."""
    tinker = _tinker()
    if loss_fn not in REQUIRED_INPUTS:
        raise ConfigError(f"loss_fn={loss_fn!r} is not one of {', '.join(REQUIRED_INPUTS)}")
    inputs = {}
    for key in REQUIRED_INPUTS[loss_fn]:
        if key not in datum.loss_fn_inputs:
            raise ValueError(
                f"a datum for loss {loss_fn!r} needs loss_fn_inputs[{key!r}] "
                f"(it has {sorted(datum.loss_fn_inputs)}); build it with make_datum(full, {key}=...)"
            )
        arr = np.asarray(datum.loss_fn_inputs[key], dtype=INPUT_DTYPES[key])
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"loss_fn_inputs[{key!r}] holds NaN/inf; refusing to send it to Tinker")
        inputs[key] = tinker.TensorData.from_numpy(np.ascontiguousarray(arr))
    return tinker.Datum(model_input=to_tinker_model_input(datum.model_input), loss_fn_inputs=inputs)


def forward_datum(datum: Datum):
    """A datum for a gradient-free forward pass: only the targets matter; zero weights."""
    weights = np.zeros(datum.model_input.length, dtype=np.float32)
    return to_tinker_datum(Datum(datum.model_input, {"target_tokens": datum.loss_fn_inputs["target_tokens"], "weights": weights}), "cross_entropy")


def loss_fn_config(loss_fn: str, loss_config: dict | None) -> dict[str, float] | None:
    """Our loss_config -> Tinker's loss_fn_config; unknown keys are an error, not a silent no-op."""
    if not loss_config:
        return None
    allowed = sorted(LOSS_CONFIG_KEYS.get(loss_fn, ()))
    unknown = sorted(set(loss_config) - set(allowed))
    if unknown:
        raise ConfigError(
            f"loss_config keys {unknown} are not understood by Tinker's {loss_fn!r} loss"
            + (f" (it takes {', '.join(allowed)})" if allowed else " (it takes none)")
        )
    return {k: float(v) for k, v in loss_config.items()}


def to_tinker_adam(adam: AdamParams):
    return _tinker().AdamParams(
        learning_rate=float(adam.learning_rate),
        beta1=float(adam.beta1),
        beta2=float(adam.beta2),
        eps=float(adam.eps),
        weight_decay=float(adam.weight_decay),
        grad_clip_norm=float(adam.grad_clip_norm or 0.0),  # Tinker: 0 = no clipping
    )


def to_tinker_sampling_params(params: SampleParams, default_stop: Sequence[int]):
    """Empty `stop` means the renderer's end-of-turn token(s). Tinker takes either token
    ids or strings, not a mix."""
    stop = tuple(params.stop) or tuple(int(t) for t in default_stop)
    if all(isinstance(s, (int, np.integer)) for s in stop):
        stop_arg: list = [int(s) for s in stop]
    elif all(isinstance(s, str) for s in stop):
        stop_arg = list(stop)
    else:
        raise ConfigError(f"stop={stop!r} mixes token ids and strings; Tinker takes one kind (use token ids)")
    return _tinker().SamplingParams(
        max_tokens=int(params.max_tokens),
        temperature=float(params.temperature),
        top_p=float(params.top_p),
        seed=params.seed,
        stop=stop_arg,
    )


def from_tinker_sequence(seq) -> SampledSequence:
    """A Tinker sampled sequence -> ours. Tokens keep the stop token (Tinker returns it)."""
    tokens = tuple(int(t) for t in seq.tokens)
    if seq.logprobs is None:
        raise GeospotTinkerError("the Tinker sampler returned no logprobs; RL needs them (update the tinker SDK)")
    logprobs = tuple(float(x) for x in seq.logprobs)
    if len(logprobs) != len(tokens):
        raise GeospotTinkerError(f"the Tinker sampler returned {len(logprobs)} logprobs for {len(tokens)} tokens")
    return SampledSequence(tokens=tokens, logprobs=logprobs, stop_reason="stop" if seq.stop_reason == "stop" else "length")


# ---------------------------------------------------------------------------------------
# Start-up checks


def check_api_key(env: dict[str, str] | None = None, stored_key: Callable[[], str | None] | None = None) -> str:
    """Which credential will be used; raises with one sentence when there is none or it is malformed."""
    env = os.environ if env is None else env
    key = env.get("TINKER_API_KEY", "").strip()
    if not key:
        if env.get("TINKER_CREDENTIAL_CMD"):
            return "TINKER_CREDENTIAL_CMD"
        if (stored_key or _stored_key)():
            return "stored credentials"
        raise GeospotTinkerError(
            "engine=tinker needs a Tinker API key: set TINKER_API_KEY=tml-... (create one in the Tinker "
            "console) or run `tinker auth login`, or use engine=local"
        )
    if not (key.startswith("tml-") or key.startswith("eyJ")):
        raise GeospotTinkerError(
            "TINKER_API_KEY does not look like a Tinker key (they start with 'tml-'); copy it again from the Tinker console"
        )
    return "TINKER_API_KEY"


def _stored_key() -> str | None:
    try:
        from tinker.lib.credentials import JsonCredentialStore, default_credentials_path

        record = JsonCredentialStore(default_credentials_path()).get_default_key()
        return None if record is None else record.key
    except Exception:  # a private SDK helper: if it moved, only the env var counts
        return None


def is_vision_model(name: str) -> bool:
    """Qwen-VL style names (`Qwen/Qwen3-VL-30B-A3B-Instruct`): our renderer speaks Qwen-VL."""
    return bool(VISION_NAME.search(name))


def model_size_b(name: str) -> float:
    """Total parameters in billions from a hub name (`...-30B-A3B-...` -> 30); inf if absent."""
    m = re.search(r"(\d+(?:\.\d+)?)B(?![a-z])", name.split("/")[-1], re.IGNORECASE)
    return float(m.group(1)) if m else float("inf")


def served_vision_models(capabilities) -> list[str]:
    """Vision models the service can train, smallest first."""
    names = [
        m.model_name
        for m in capabilities.supported_models
        if m.model_name and is_vision_model(m.model_name) and m.trainable is not False
    ]
    return sorted(names, key=lambda n: (model_size_b(n), n))


def check_model(model_name: str, capabilities) -> None:
    vision = served_vision_models(capabilities)
    if model_name in vision:
        return
    served = [m.model_name for m in capabilities.supported_models if m.model_name]
    what = "is not a vision model" if model_name in served else "is not served"
    raise ConfigError(
        f"model_name={model_name!r} {what} on Tinker; vision models it serves: "
        f"{', '.join(vision) if vision else '(none)'} — pick one, or use engine=local"
    )


def describe_service_error(e: BaseException, base_url: str) -> str | None:
    """One sentence for the failures a user can fix; None for the rest (re-raised as is)."""
    tinker = _tinker()
    status = getattr(e, "status_code", None)
    if isinstance(e, (tinker.AuthenticationError, tinker.PermissionDeniedError)) or status in (401, 403):
        return (
            f"the Tinker service rejected the API key (HTTP {status or 401}): check TINKER_API_KEY, or create a "
            "new key in the Tinker console"
        )
    if isinstance(e, (tinker.APIConnectionError, tinker.APITimeoutError, TimeoutError, ConnectionError, socket.gaierror)):
        return (
            f"cannot reach the Tinker service at {base_url} ({type(e).__name__}): check the network "
            "connection, or set tinker_base_url / TINKER_BASE_URL if you use another endpoint"
        )
    if isinstance(e, tinker.TinkerError) and "api_key" in str(e):
        return f"the Tinker SDK refused the API key: {e}"
    return None


def _with_timeout(fn: Callable[[], Any], timeout_s: float, what: str) -> Any:
    """Run fn in a daemon thread: the SDK retries connection errors for a long time, and a
    start-up check must fail in seconds, not hang the run."""
    box: dict[str, Any] = {}

    def run():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the caller
            box["error"] = e

    t = threading.Thread(target=run, name=f"tinker-{what}", daemon=True)
    t.start()
    t.join(timeout_s)
    if t.is_alive():
        raise TimeoutError(f"{what} took more than {timeout_s:.0f} s")
    if "error" in box:
        raise box["error"]
    return box.get("value")


def _base_url(cfg: EngineConfig) -> str:
    return cfg.tinker_base_url or os.environ.get("TINKER_BASE_URL") or "the default Tinker endpoint"


def _service_call(fn: Callable[[], Any], what: str, base_url: str, timeout_s: float | None = None) -> Any:
    """fn() (in a thread with a deadline when timeout_s is set); a failure the user can fix
    becomes a GeospotTinkerError saying `what` failed and why, anything else is re-raised as is."""
    try:
        return fn() if timeout_s is None else _with_timeout(fn, timeout_s, what)
    except GeospotTinkerError:
        raise
    except BaseException as e:
        msg = describe_service_error(e, base_url)
        if msg is None:
            raise
        raise GeospotTinkerError(f"{what}: {msg}") from e


def _rest_client(cfg: EngineConfig, factory: Callable[[], Any] | None = None):
    """The SDK's RestClient for cfg's endpoint (tests inject a factory)."""
    return factory() if factory else _tinker().RestClient(base_url=cfg.tinker_base_url)


def fetch_capabilities(cfg: EngineConfig, *, rest_client_factory: Callable[[], Any] | None = None, timeout_s: float = 60.0):
    """Ask the service which models it serves; every failure becomes one clear sentence."""
    _tinker()  # no SDK: say how to install it before anything else
    return _service_call(
        lambda: _rest_client(cfg, rest_client_factory).get_server_capabilities().result(),
        "get_server_capabilities", _base_url(cfg), timeout_s,
    )


def renderer_folder(model_name: str) -> Path:
    """A folder with the model's tokenizer and preprocessor_config.json: a local folder or
    tiny model as is, a hub id downloaded without its weights (the service holds those; a 30B
    checkpoint has no business on the user's disk)."""
    from geospot.models.load import resolve_model_path

    try:
        return resolve_model_path(model_name, weights=False)
    except FileNotFoundError as e:  # offline, no such repo, gated
        cause = e.__context__ or e  # the hub's own error (resolve_model_path raises `from None`)
        raise GeospotTinkerError(
            f"cannot get the tokenizer / image processor of {model_name!r} from the Hugging Face hub "
            f"({type(cause).__name__}); the Tinker engine renders prompts locally with them, so check the network "
            "or download them once (huggingface-cli download MODEL --include '*.json' '*.txt' '*.jinja')"
        ) from cause


def default_renderer(cfg: EngineConfig):
    """The renderer of the same HF model id the service trains: same tokenizer and chat
    template, same image processor (its min/max pixels and patch size decide how many tokens
    an image takes, on our side and on the service's)."""
    from geospot.engines.rendering import Renderer
    from geospot.models.load import load_tokenizer
    from geospot.models.processor import ImageProcessor

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
            log.warning("engine=tinker: lora_targets=%s is ignored; Tinker trains LoRA on MLP, attention and unembedding", cfg.lora_targets)
        self.cfg = cfg
        self._rest_client_factory = rest_client_factory
        tinker = _tinker()

        # 1. a credential (local check, no network), 2. the service answers and accepts it,
        # 3. it serves this model as a vision model — all before any data is touched.
        self.credential = check_api_key(env)
        capabilities = fetch_capabilities(cfg, rest_client_factory=rest_client_factory, timeout_s=connect_timeout_s)
        check_model(cfg.model_name, capabilities)

        self.renderer = renderer if renderer is not None else default_renderer(cfg)
        self.service = service_client if service_client is not None else tinker.ServiceClient(base_url=cfg.tinker_base_url)
        self.training = self._call(
            lambda: self.service.create_lora_training_client(base_model=cfg.model_name, rank=cfg.lora_rank, seed=cfg.seed).result(),
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
                lambda: self.training.save_weights_and_get_sampling_client().result(), "save_weights_and_get_sampling_client"
            )
        return self._sampler

    # -- sampling

    def sample(self, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams) -> list[list[SampledSequence]]:
        return self._sample_with(self.sampling_client(), prompts, num_samples, params)

    def snapshot_sampler(self, keep: int = 1):
        """A sampler on the weights as they are now (async GRPO): Tinker's sampling client for the
        current weights, as tinker-cookbook keeps one per sampler version; training moves on."""
        from geospot.engines.snapshot import PinnedSampler

        client = self.sampling_client()
        return PinnedSampler(lambda prompts, n, params: self._sample_with(client, prompts, n, params), self.renderer)

    def _sample_with(self, sampler, prompts: Sequence[ModelInput], num_samples: int, params: SampleParams) -> list[list[SampledSequence]]:
        sp = to_tinker_sampling_params(params, self.renderer.stop_token_ids)
        # Submit every prompt before waiting on any: the service batches them.
        futures = [sampler.sample(prompt=to_tinker_model_input(p), num_samples=num_samples, sampling_params=sp) for p in prompts]
        out = []
        for f in futures:
            resp = self._call(f.result, "sample")
            out.append([from_tinker_sequence(s) for s in resp.sequences])
        return out

    # -- training

    def forward(self, datums: Sequence[Datum]) -> list[np.ndarray]:
        if not datums:
            return []
        res = self._call(lambda: self.training.forward([forward_datum(d) for d in datums], "cross_entropy").result(), "forward")
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
                lambda: self.service.create_sampling_client(base_model=self.cfg.model_name).result(), "create_sampling_client"
            )
        fulls = [d.model_input.append_tokens([int(d.loss_fn_inputs["target_tokens"][-1])]) for d in datums]
        futures = [self._base_sampler.compute_logprobs(to_tinker_model_input(f)) for f in fulls]
        out = []
        for d, full, fut in zip(datums, fulls, futures):
            lp = self._call(fut.result, "compute_logprobs")
            if len(lp) != full.length:
                raise GeospotTinkerError(f"compute_logprobs returned {len(lp)} values for a {full.length}-token sequence")
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

    def forward_backward(self, datums: Sequence[Datum], loss_fn: LossFn, loss_config: dict | None = None) -> ForwardBackwardResult:
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

    def train_step(self, datums: Sequence[Datum], loss_fn: LossFn, adam: AdamParams, loss_config: dict | None = None) -> ForwardBackwardResult:
        # Submit both before waiting: Tinker runs them in order on this client.
        fb_future = self._submit_forward_backward(datums, loss_fn, loss_config)
        opt_future = self.training.optim_step(to_tinker_adam(adam))
        result = self._result(self._call(fb_future.result, "forward_backward"))
        result.metrics.update({f"optim/{k}": v for k, v in self._stepped(self._call(opt_future.result, "optim_step")).items()})
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
                raise GeospotTinkerError(f"the exported checkpoint names a file outside {out}: {rel!r}; refusing to write it")
            dest.parent.mkdir(parents=True, exist_ok=True)
            tmp = dest.with_name(f".{dest.name}.part")
            download_file(url, tmp)
            os.replace(tmp, dest)
        _write_json_atomic(
            out / CHECKPOINT_FILE,
            {"tinker_path": ext.path, "kind": "export", "base_model": self.cfg.model_name, "lora_rank": self.cfg.lora_rank, "files": sorted(urls)},
        )
        return str(out)


def download_file(url: str, dest: Path, timeout_s: float = 60.0) -> None:
    import shutil
    import urllib.request

    with urllib.request.urlopen(url, timeout=timeout_s) as resp, open(dest, "wb") as f:
        shutil.copyfileobj(resp, f, length=1 << 20)
