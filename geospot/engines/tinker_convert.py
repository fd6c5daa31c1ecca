"""Our types -> the Tinker SDK's types, chunk for chunk (pure functions; the contract tests
exercise them):

    TextChunk(tokens)                     -> tinker.EncodedTextChunk(tokens)
    ImageChunk(image, grid_thw, expected) -> tinker.ImageChunk(JPEG bytes, "jpeg", expected)

Datums are already shifted on our side (`make_datum`), so they are translated as they are."""

from __future__ import annotations

import io
import threading
import weakref
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np
from PIL import Image

from geospot.config import ConfigError
from geospot.engines.types import (
    LOSS_CONFIG_KEYS,
    REQUIRED_INPUTS,
    AdamParams,
    Datum,
    ImageChunk,
    ModelInput,
    SampledSequence,
    SampleParams,
    TextChunk,
)

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


class GeospotTinkerError(ConfigError, RuntimeError):
    """The Tinker service (or the way we reach it) is not usable; the message says why and what to do.
    A ConfigError too: every command says it in one sentence (exit 2), as a wrong key, not a traceback."""


def _tinker():
    try:
        import tinker  # delayed: an optional SDK, needed only for engine=tinker
    except ImportError as e:  # pragma: no cover - the SDK is installed in the dev venv
        raise GeospotTinkerError(
            "engine=tinker needs the `tinker` SDK: pip install -e '.[tinker]' in the geospot clone "
            "(or pip install 'tinker>=0.38,<0.40')"
        ) from e
    return tinker


# ---------------------------------------------------------------------------------------
# Our types -> the SDK's types (pure functions; the contract tests exercise these)


def image_to_jpeg(
    image: Image.Image, max_bytes: int = MAX_IMAGE_BYTES, qualities: Sequence[int] = JPEG_QUALITIES
) -> bytes:
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
    return to_tinker_datum(
        Datum(datum.model_input, {"target_tokens": datum.loss_fn_inputs["target_tokens"], "weights": weights}),
        "cross_entropy",
    )


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
    return SampledSequence(
        tokens=tokens, logprobs=logprobs, stop_reason="stop" if seq.stop_reason == "stop" else "length"
    )
