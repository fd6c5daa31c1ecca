"""Engine configuration: which model, which engine, how to fine-tune it."""

from __future__ import annotations

import os
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
    kv_reuse_tokens: int = option(32768, "KV positions kept across sample() calls so a telescoping turn reuses its earlier turns' cache (0 = off); ~1.2 GB for a 3B Qwen-VL in bf16 (36 layers x 2 KV heads x 128 dims x K,V x 2 bytes = 36 KB/token), enough for ~64 rollouts x 3 turns of a 448 px image")
    tinker_base_url: str | None = option(None, "Tinker service URL (default: the SDK's)")
    sampler: Literal["torch", "vllm"] = option("torch", "who samples for engine=local: `torch` (the engine itself) or `vllm` (a vLLM server on the same GPU, LoRA synced after each step; needs CUDA and `pip install 'geospot[vllm]'`; see docs/vllm.md)")
    vllm_gpu_memory_utilization: float = option(0.35, "sampler=vllm: share of GPU memory vLLM may take (weights + KV cache); the trainer needs the rest")

    def validate(self) -> None:
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank={self.lora_rank} must be >= 0 (0 = full fine-tuning)")
        if self.kv_reuse_tokens < 0:
            raise ConfigError(f"kv_reuse_tokens={self.kv_reuse_tokens} must be >= 0 (0 = no KV reuse across sample calls)")
        if self.max_pixels < 28 * 28:
            raise ConfigError(f"max_pixels={self.max_pixels} is below one 28x28 patch; use e.g. max_pixels={448*448}")
        if self.sampler == "vllm":
            problems = vllm_sampler_problems(self, cuda_available=_cuda_available(), vllm_installed=_vllm_installed())
            if problems:
                raise ConfigError("sampler=vllm: " + "; ".join(problems))


def vllm_sampler_problems(cfg: EngineConfig, *, cuda_available: bool, vllm_installed: bool) -> list[str]:
    """Why `sampler=vllm` cannot run with this config on this machine (empty = it can), each
    with its fix. The environment probes are arguments so the rule is testable anywhere."""
    out = []
    if cfg.engine != "local":
        out.append(f"needs engine=local (vLLM samples for the local trainer), got engine={cfg.engine}; or set sampler=torch")
    if cfg.lora_rank <= 0:
        out.append("needs LoRA (lora_rank > 0): weights reach vLLM as a LoRA adapter each step")
    if cfg.train_vision:
        out.append("needs train_vision=false: the adapter synced to vLLM covers the language model only")
    if not 0.0 < cfg.vllm_gpu_memory_utilization < 1.0:
        out.append(f"vllm_gpu_memory_utilization={cfg.vllm_gpu_memory_utilization} must be in (0, 1)")
    if cfg.device.startswith("cpu") or not cuda_available:
        out.append(f"needs a CUDA GPU (device={cfg.device}, cuda available: {cuda_available}); use sampler=torch without one")
    if not vllm_installed:
        out.append("the vllm package is not installed: pip install 'geospot[vllm]'")
    return out


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def _vllm_installed() -> bool:
    # lazy: importing the config must stay cheap
    from geospot.engines.vllm_sampler import vllm_installed

    return vllm_installed()


def check_start(engine: str | None, model_name: str | None, load_checkpoint_path: str | None,
                env: dict[str, str] | None = None) -> None:
    """What would otherwise fail only after data is opened or a model is half loaded, checked
    first, each as one ConfigError sentence naming the key and the fix: a Tinker key for
    engine=tinker, a tinker:// start with engine=local, a local model that is neither a folder
    nor obtainable from the hub (or its cache when HF_HUB_OFFLINE is set). None = inherited
    (RL from its SFT run): not checked here."""
    env = os.environ if env is None else env
    if engine == "tinker":
        from geospot.engines.tinker_engine import GeospotTinkerError, check_api_key  # lazy: the SDK is optional

        try:
            check_api_key(env)
        except GeospotTinkerError as e:
            raise ConfigError(str(e)) from None
    if engine == "local" and load_checkpoint_path and load_checkpoint_path.startswith("tinker://"):
        raise ConfigError(f"load_checkpoint_path={load_checkpoint_path!r} is weights saved on the Tinker service, which "
                          "engine=local cannot load; add engine=tinker, or download them with `geospot export` and "
                          "pass the folder")
    if engine == "local" and model_name:
        model_problem(model_name, env)


def model_problem(name: str, env: dict[str, str] | os._Environ) -> None:
    """ConfigError unless `name` is tiny:…, a local folder, or a hub repo we can get."""
    if name.startswith("tiny:"):
        return  # its family and size are checked when it is built (seconds, offline)
    path = os.path.expanduser(name)
    if os.path.isdir(path):
        return
    if os.path.exists(path) or name.startswith(("/", "./", "../", "~")) or name.count("/") != 1:
        raise ConfigError(f"model_name={name!r} is not a model folder (no such folder) nor a hub id like "
                          "owner/name; pass a folder holding config.json, a hub id, or tiny:qwen2_5_vl offline")
    # lazy: huggingface_hub is only needed for hub models
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError

    try:
        cached = try_to_load_from_cache(name, "config.json")
    except HFValidationError:
        raise ConfigError(f"model_name={name!r} is not a valid hub id (owner/name) nor a local folder") from None
    if isinstance(cached, str):
        return
    if env.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise ConfigError(f"model_name={name!r} is neither a local folder nor in the Hugging Face cache, and "
                          "HF_HUB_OFFLINE is set; unset it to download the model, pass a local folder, or use "
                          "model_name=tiny:qwen2_5_vl offline")
    from huggingface_hub import HfApi

    try:
        HfApi().model_info(name, timeout=30)
    except (RepositoryNotFoundError, GatedRepoError) as e:
        raise ConfigError(f"model_name={name!r} is neither a local folder nor a model on the hub you can read "
                          f"({type(e).__name__}); check the spelling, or set HF_TOKEN for a private or gated "
                          "model") from None
    except Exception as e:  # noqa: BLE001 -- any network failure: say so in one sentence
        raise ConfigError(f"model_name={name!r} is not a local folder and the Hugging Face hub could not be "
                          f"reached ({type(e).__name__}); check the network, or pass a local folder") from None
