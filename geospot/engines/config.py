"""Engine configuration: which model, which engine, how to fine-tune it; and `engine_keys`, the
one way both loop configs (SFTConfig, RLConfig) take every engine key on their command line."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Literal

from geospot.config import ConfigError, check_types, option


@dataclass(frozen=True)
class EngineConfig:
    model_name: str = option("Qwen/Qwen2.5-VL-3B-Instruct", "hub id, local HF folder, or `tiny:<family>[:<size>]` "
                                                            "for an offline tiny model")
    engine: Literal["local", "tinker"] = option("local", "`local` (PyTorch + transformers + PEFT, one GPU or CPU) "
                                                         "or `tinker` (the Tinker service; needs TINKER_API_KEY)")
    lora_rank: int = option(32, "LoRA rank; 0 = full fine-tuning")
    lora_alpha: float = option(32.0, "LoRA alpha (scale = alpha / rank)")
    lora_targets: str = option("all-linear", "PEFT target_modules for the language model (`all-linear` or "
                                             "comma-separated names)")
    train_vision: bool = option(False, "also train the vision tower (frozen by default: the most expensive part, "
                                       "and the language model learns the mapping)")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option("auto", "`auto`: bf16 on GPUs that support "
                                                                              "it, fp32 on CPU")
    device: str = option("auto", "`auto`, `cpu`, `cuda`, `cuda:1`, ...")
    max_pixels: int = option(448 * 448, "pixel budget per image; larger images are resized down to fit (aspect kept)")
    seed: int = option(0, "seed for sampling and initialisation")
    kv_reuse_tokens: int = option(32768, "KV positions kept across sample() calls so a telescoping turn reuses its "
                                         "earlier turns' cache (0 = off); memory arithmetic in docs/design.md")
    tinker_base_url: str | None = option(None, "Tinker service URL (default: the SDK's)")
    sampler: Literal["torch", "vllm"] = option("torch", "who samples for engine=local: `torch` (the engine itself) "
                                                        "or `vllm` (vLLM on the same GPU, LoRA synced each step; "
                                                        "needs CUDA; docs/vllm.md)")
    fsdp_reshard: Literal["auto", "on", "off"] = option("auto", "full FT under torchrun (FSDP2): `on` shards weights "
                                                                "at rest, gathered per layer per forward (bases over "
                                                                "one GPU); `off` keeps them whole; `auto` picks, "
                                                                "says why")
    vllm_gpu_memory_utilization: float = option(0.35, "sampler=vllm: share of GPU memory vLLM may take (weights + "
                                                      "KV cache); the trainer needs the rest")

    def validate(self) -> None:
        check_types(self)
        if self.lora_rank < 0:
            raise ConfigError(f"lora_rank={self.lora_rank} must be >= 0 (0 = full fine-tuning)")
        if self.lora_rank > 0 and not 0 < self.lora_alpha < float("inf"):
            raise ConfigError(f"lora_alpha={self.lora_alpha} must be > 0 (the adapter's scale is alpha / rank; e.g. "
                              f"lora_alpha={self.lora_rank})")
        if self.kv_reuse_tokens < 0:
            raise ConfigError(f"kv_reuse_tokens={self.kv_reuse_tokens} must be >= 0 (0 = no KV reuse across sample "
                              "calls)")
        if self.max_pixels < 28 * 28:
            raise ConfigError(f"max_pixels={self.max_pixels} is below one 28x28 patch; use e.g. max_pixels={448*448}")
        if self.sampler == "vllm":  # (first: its sentence names what vLLM needs, the GPU among them)
            problems = vllm_sampler_problems(self, cuda_available=_cuda_available(), vllm_installed=_vllm_installed())
            if problems:
                raise ConfigError("sampler=vllm: " + "; ".join(problems))
        if self.engine == "local" and (problem := device_problem(self.device)):  # (Tinker's GPUs are the service's)
            raise ConfigError(problem)


ENGINE_KEYS = tuple(f.name for f in dataclasses.fields(EngineConfig) if f.name != "seed")  # the loop's seed drives it


def engine_keys(name: str, inherit: bool) -> type:
    """A frozen dataclass holding every EngineConfig key but `seed` (a loop's own seed drives the
    engine), for a loop config to inherit, so `geospot sft|rl model_name=... sampler=vllm` take
    the same keys with the same help. inherit=False: EngineConfig's defaults. inherit=True: every
    key defaults to None = the value of the run that `load_checkpoint_path` came from, else
    EngineConfig's default. `.engine_config(inherited)` resolves them."""
    hints = typing.get_type_hints(EngineConfig)
    defaults = {f.name: f.default for f in dataclasses.fields(EngineConfig)}
    fields = []
    for f in dataclasses.fields(EngineConfig):
        if f.name == "seed":
            continue
        if inherit:
            fields.append((f.name, hints[f.name] | None, option(None, f"{f.metadata['help']} (None = the start "
                                                                      "run's)")))
        else:
            fields.append((f.name, hints[f.name], option(f.default, f.metadata["help"])))

    def engine_config(self, inherited: dict[str, Any] | None = None) -> EngineConfig:
        """The EngineConfig of this run: a key set here wins, then the start run's, then the default."""
        inherited = inherited or {}
        values = {k: v if (v := getattr(self, k)) is not None else inherited.get(k, defaults[k]) for k in ENGINE_KEYS}
        return EngineConfig(**values, seed=self.seed)

    return dataclasses.make_dataclass(name, fields, frozen=True,
                                      namespace={"engine_config": engine_config, "__module__": __name__})


def device_problem(device: str, probe: typing.Callable[[], tuple[int, bool]] | None = None) -> str | None:
    """Why `device` cannot run on this machine, in one sentence with the fix (None = it can), said
    before any model loads (torch itself says it mid-load, as a traceback). `probe` -> (CUDA GPUs,
    MPS available): this machine's, unless a test passes its own."""
    kind, _, index = device.partition(":")
    if device == "auto" or (kind == "cpu" and index in ("", "0")):
        return None
    if kind not in ("cuda", "mps", "cpu") or (index and not index.isdigit()):
        return f"device={device} is not a device; use auto, cpu, cuda or cuda:<index> (mps on Apple silicon)"
    if kind == "cpu":
        return f"device={device}: there is one CPU device; use device=cpu"
    cuda_count, mps = (probe or _accelerators)()
    if kind == "mps":
        return None if mps else f"device={device}: this machine has no Apple GPU (MPS); use device=auto or device=cpu"
    if cuda_count == 0:
        return (f"device={device}: this machine has no CUDA GPU (or this torch is a CPU build); use device=auto or "
                "device=cpu")
    if index and int(index) >= cuda_count:
        return (f"device={device}: this machine has {cuda_count} CUDA GPU{'s' if cuda_count > 1 else ''} "
                f"(cuda:0{f' to cuda:{cuda_count - 1}' if cuda_count > 1 else ''}); pick one of them or device=auto")
    return None


def _accelerators() -> tuple[int, bool]:
    import torch  # delayed: importing the config must stay cheap (CLIs parse it before any model)

    mps = getattr(torch.backends, "mps", None)
    return torch.cuda.device_count(), bool(mps is not None and mps.is_available())


def vllm_sampler_problems(cfg: EngineConfig, *, cuda_available: bool, vllm_installed: bool) -> list[str]:
    """Why `sampler=vllm` cannot run with this config on this machine (empty = it can), each
    with its fix. The environment probes are arguments so the rule is testable anywhere."""
    out = []
    if cfg.engine != "local":
        out.append(f"needs engine=local (vLLM samples for the local trainer), got engine={cfg.engine}; or set "
                   "sampler=torch")
    if cfg.lora_rank <= 0:
        out.append("needs LoRA (lora_rank > 0): weights reach vLLM as a LoRA adapter each step")
    if cfg.train_vision:
        out.append("needs train_vision=false: the adapter synced to vLLM covers the language model only")
    if not 0.0 < cfg.vllm_gpu_memory_utilization < 1.0:
        out.append(f"vllm_gpu_memory_utilization={cfg.vllm_gpu_memory_utilization} must be in (0, 1)")
    if cfg.device.startswith("cpu") or not cuda_available:
        out.append(f"needs a CUDA GPU (device={cfg.device}, cuda available: {cuda_available}); use sampler=torch "
                   "without one")
    if not vllm_installed:
        out.append("the vllm package is not installed: pip install -e '.[vllm]' in the geospot clone")
    return out


def _cuda_available() -> bool:
    import torch  # delayed: importing the config must stay cheap (CLIs parse it before any model)

    return torch.cuda.is_available()


def _vllm_installed() -> bool:
    # lazy: importing the config must stay cheap
    from geospot.engines.vllm_sampler import vllm_installed

    return vllm_installed()
