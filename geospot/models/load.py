"""Load a Qwen-VL model (Qwen2-VL, Qwen2.5-VL, Qwen3-VL) with its tokenizer and image processor.

A model name is a hub id, a local HF folder, or `tiny:<family>[:<size>]` (built offline by
geospot.models.tiny). We never use `AutoProcessor`: without torchvision it silently returns
only the tokenizer; our own image-only processor reads preprocessor_config.json instead.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from geospot.models.processor import ImageProcessor
from geospot.models.tiny import FAMILIES, SIZES, build_tiny_model
from geospot.runs.model_spec import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    tokenizer: object  # a transformers tokenizer
    image_processor: ImageProcessor
    family: str
    folder: Path
    dtype: torch.dtype
    device: torch.device


# What a model folder needs besides weights: config, tokenizer, chat template, image processor
# config. The Tinker engine downloads only these (the service holds the weights).
MODEL_FILES = ["*.json", "*.txt", "*.jinja", "*.model", "*.tiktoken"]
WEIGHT_FILES = ["*.safetensors"]


def tiny_name(name: str) -> tuple[str, str]:
    """(family, size) of `tiny:<family>[:<size>]`, the defaults filled in (tiny:qwen3_vl = tiny:qwen3_vl:tiny)."""
    parts = name.split(":")
    return (parts[1] if len(parts) > 1 and parts[1] else "qwen2_5_vl"), (parts[2] if len(parts) > 2 and parts[2]
                                                                         else "tiny")


def resolve_model_path(name: str, weights: bool = True) -> Path:
    """`tiny:<family>[:<size>]` -> cached build; a local folder -> itself; else a hub id -> its
    snapshot folder (downloaded unless HF_HUB_OFFLINE is set; without the weights when
    `weights=False`)."""
    if name.startswith("tiny:"):
        family, size = tiny_name(name)
        if family not in FAMILIES:
            raise ValueError(
                f"unknown model family {family!r} in {name!r}; use tiny:<{'|'.join(FAMILIES)}>[:<{'|'.join(SIZES)}>]"
            )
        if size not in SIZES:
            raise ValueError(f"unknown tiny size {size!r} in {name!r}; use one of {', '.join(SIZES)}")
        return build_tiny_model(family, size)
    path = Path(name).expanduser()
    if path.is_dir():
        return path
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(name, allow_patterns=MODEL_FILES + (WEIGHT_FILES if weights else [])))
    except Exception as e:  # offline, no such repo, no network
        raise FileNotFoundError(
            f"model {name!r} is neither a local folder nor reachable on the hub ({type(e).__name__}: "
            f"{str(e).split('. ')[0][:160]}); "
            "pass a local folder or `tiny:qwen2_5_vl` for an offline model"
        ) from None


def model_identity(name: str) -> tuple | None:
    """What a model's weights fit, from its config.json, read without loading or downloading weights:
    (model type, text hidden size and layers, vocabulary, vision width and depth). A tiny name reads
    its cached build, a hub id only the hub cache; None when that is not at hand here."""
    path = Path(name).expanduser()
    try:
        if name.startswith("tiny:") or path.is_dir():
            config = resolve_model_path(name, weights=False) / "config.json"
        else:
            from huggingface_hub import try_to_load_from_cache

            cached = try_to_load_from_cache(name, "config.json")
            if not isinstance(cached, str):
                return None
            config = Path(cached)
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return None
    text, vision = cfg.get("text_config") or cfg, cfg.get("vision_config") or {}
    return (cfg.get("model_type"), text.get("hidden_size"), text.get("num_hidden_layers"), text.get("vocab_size"),
            vision.get("hidden_size") or vision.get("embed_dim"), vision.get("depth"))


def image_budget(spec: ModelSpec) -> int:
    """Pixels per image to ask a trained model with: its engine budget, capped at the area its own
    processor made of the training images (an image_side square). Its steps decide that area: a
    112 px image became 112 x 112 for Qwen2/2.5-VL (28 px steps) but 128 x 128 for Qwen3-VL (32 px),
    so a photo is asked at the size training showed, not at fewer or more image tokens."""
    if not spec.image_side:
        return spec.max_pixels
    try:
        processor = ImageProcessor.from_pretrained(resolve_model_path(spec.base_model, weights=False))
    except (OSError, ValueError):  # its processor out of reach here (a hub id offline): the square's own area
        return max(28 * 28, min(spec.max_pixels, spec.image_side**2))
    w, h = processor.target_size(spec.image_side, spec.image_side, spec.max_pixels)
    return w * h


def model_family(folder: Path) -> str:
    cfg = json.loads((folder / "config.json").read_text())
    family = cfg.get("model_type", "")
    if family not in FAMILIES:
        raise ValueError(
            f"unknown model family {family!r} in {folder / 'config.json'}; geospot supports {', '.join(FAMILIES)}"
        )
    return family


def choose_device(device: str = "auto") -> torch.device:
    if device != "auto":
        return torch.device(device)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose_dtype(dtype: str, device: torch.device) -> tuple[torch.dtype, str]:
    """(dtype, reason): bf16 where the GPU supports it, fp32 otherwise (CPU bf16 is slow and
    breaks the sampler==trainer logprob check)."""
    if dtype != "auto":
        return getattr(torch, dtype), f"dtype={dtype} requested"
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16, "auto: GPU supports bfloat16"
    if device.type == "cuda":
        return torch.float16, "auto: GPU without bfloat16 support, using float16"
    return torch.float32, f"auto: {device.type} device, using float32"


def load_tokenizer(folder: Path, padding_side: str = "left"):
    from transformers import AutoTokenizer

    # padding_side goes to the constructor: setting it afterwards is not honoured everywhere
    return AutoTokenizer.from_pretrained(folder, padding_side=padding_side)


def load_model(name: str, dtype: str = "auto", device: str = "auto") -> LoadedModel:
    from transformers import AutoModelForImageTextToText

    folder = resolve_model_path(name)
    family = model_family(folder)
    dev = choose_device(device)
    torch_dtype, reason = choose_dtype(dtype, dev)
    log.info("loading %s (%s) on %s as %s (%s)", name, family, dev, torch_dtype, reason)
    from geospot.models.compat import no_progress_bars

    # a tiny model (or an export of one) loads in milliseconds: no bar
    small = name.startswith("tiny:") or sum(p.stat().st_size for p in Path(folder).glob("*.safetensors")) < 64 << 20
    with no_progress_bars(quiet=small):
        model = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch_dtype).to(dev)
    model.eval()
    return LoadedModel(
        model=model,
        tokenizer=load_tokenizer(folder),
        image_processor=ImageProcessor.from_pretrained(folder),
        family=family,
        folder=folder,
        dtype=torch_dtype,
        device=dev,
    )
