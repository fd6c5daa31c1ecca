"""Engine configuration: which model, which engine, how to fine-tune it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from geospot.config import ConfigError, option


@dataclass(frozen=True)
class EngineConfig:
    model_name: str = option("Qwen/Qwen2.5-VL-3B-Instruct", "hub id, local HF folder, or `tiny:<family>[:<size>]` for an offline tiny model")
    engine: Literal["local", "tinker"] = option("local", "`local` (PyTorch + transformers + PEFT, one GPU or CPU) or `tinker` (Tinker service; needs TINKER_API_KEY)")
    lora_rank: int = option(32, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: float = option(32.0, "LoRA alpha (scale = alpha / rank)")
    lora_targets: str = option("all-linear", "PEFT target_modules for the language model (`all-linear` or comma-separated names)")
    train_vision: bool = option(False, "also train the vision tower (frozen by default: it is the most expensive part and the language head learns the mapping)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "`auto`: bf16 on GPUs that support it, fp32 on CPU")
    device: str = option("auto", "`auto`, `cpu`, `cuda`, `cuda:1`, ...")
    max_pixels: int = option(448 * 448, "pixel budget per image; larger images are resized down to fit (aspect kept)")
    seed: int = option(0, "seed for sampling and initialisation")
    tinker_base_url: str | None = option(None, "Tinker service URL (default: the SDK's)")

    def validate(self) -> None:
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank={self.lora_rank} must be >= 0 (0 = full fine-tuning)")
        if self.max_pixels < 28 * 28:
            raise ConfigError(f"max_pixels={self.max_pixels} is below one 28x28 patch; use e.g. max_pixels={448*448}")
