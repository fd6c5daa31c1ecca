"""What `geospot eval` and `geospot predict` parse: their frozen configs (SamplingConfig holds
the shared settings, declared and validated once) and the argv splitting both commands use."""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar, Literal

from geospot.config import ConfigError, option
from geospot.engines.config import device_problem
from geospot.envs.config import REWARD_ONLY, EnvOptions
from geospot.envs.kinds import ENV_TYPES


@dataclass(frozen=True)
class SamplingConfig(EnvOptions):
    """What `geospot eval` and `geospot predict` share: the model, how to ask it, where it
    runs. Both subclass it, so a setting is declared and validated once. The hierarchical /
    geohash env keys come from EnvOptions (envs/config.py), as in `geospot rl`."""

    model: str = option("", "hub id, local HF folder, `tiny:<family>[:<size>]`, a training run or checkpoint folder, "
                            "or tinker://…")
    NOT_READ: ClassVar[dict[str, str]] = REWARD_ONLY  # an eval scores distances: no reward key is read
    KEY_ALIASES: ClassVar[dict[str, str]] = {"prompt_style": "env_type", "checkpoint": "model",  # (sft's and
                                             "model_name": "model", "load_checkpoint_path": "model"}  # export's names)
    base_model: str | None = option(None, "for model=tinker://… only: the hub id that checkpoint was trained from")
    env_type: Literal[ENV_TYPES] = option(  # one list of envs: envs/kinds.py's
        "single",
        f"the env that asks: {', '.join(f'`{e}`' for e in ENV_TYPES)} (`geospot rl --help`: env_type); the last "
        "turn's coordinates are scored; a run folder's model: the env it trained last")
    samples: int = option(0, "0 = greedy (temperature 0); k > 0 = k samples per image at `temperature`, "
                             "the medoid guess used")
    temperature: float = option(1.0, "sampling temperature when samples > 0")
    batch_size: int = option(16, "images per engine.sample call")
    max_tokens: int = option(24, "answer length limit per turn (a run folder's model: its own; reasoning=true uses "
                                 "reasoning_max_tokens)")
    device: str = option("auto", "`auto`, `cpu`, `cuda`, `cuda:1`, …")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = option(
        "auto", "model dtype (`auto`: bf16 on capable GPUs, fp32 on CPU)")
    max_pixels: int | None = option(None, "pixel budget per image (None = the model's; a run folder's: its "
                                          "training images' budget)")
    square: bool = option(False, "centre-crop each image to a square (a run folder's model: true when it trained on "
                                 "square images only, e.g. synthetic ones)")
    seed: int = option(0, "sampling seed")

    def validate(self) -> None:
        self.validate_env()
        if self.batch_size < 1:
            raise ConfigError(f"batch_size={self.batch_size} must be >= 1")
        if self.samples < 0:
            raise ConfigError(f"samples={self.samples} must be >= 0 (0 = greedy)")
        if self.max_tokens < 1:
            raise ConfigError(f"max_tokens={self.max_tokens} must be >= 1")
        if not self.samples and self.temperature not in (0.0, 1.0):  # greedy asked with a temperature: none is read
            raise ConfigError(f"temperature={self.temperature} is read with samples=k > 0 only (greedy, the default, "
                              "has none); add samples=, or drop temperature")
        if self.samples and not 0 < self.temperature < float("inf"):
            raise ConfigError(f"temperature={self.temperature} must be > 0 with samples={self.samples} (greedy is "
                              "samples=0)")
        if problem := device_problem(self.device):
            raise ConfigError(problem)
        if self.base_model and self.model and not self.model.startswith("tinker://"):
            raise ConfigError(f"base_model={self.base_model!r} is read only with model=tinker://… (the model a "
                              f"Tinker checkpoint was trained from); model={self.model!r} names its own: drop "
                              "base_model")


@dataclass(frozen=True)
class EvalConfig(SamplingConfig):
    data: str = option("", "data spec: a folder (images + CSV: OSV-5M, IM2GPS3K, YFCC4K layouts), `synthetic:…`, "
                           "`hf:…`, …")
    split: Literal["auto", "train", "val", "test", "heldout", "all"] = option(
        "auto", "which ids of the data (hash split): `auto` = `test` for synthetic specs, `heldout` (val + test) "
                "when the model is a run trained on this data, `all` for anything else (benchmark folders are test "
                "sets)")
    n: int | None = option(None, "evaluate only the first n samples (None = all)")
    out: str | None = option(None, "eval folder (default: <run>/eval/<data>-<env>-step<k> for a training run, else "
                             "runs/eval/<model>-<data>-<env>); rerunning into it resumes")
    name: str | None = option(None, "row name in tables and --compare (default: the eval folder's name, "
                              "<run>/<folder> for one in a training run's eval/)")
    geocoder: Literal["auto", "reverse", "none"] = option(
        "auto", "country/region/city accuracy: `auto` (the synthetic world's own, else offline reverse geocoding), "
                "`reverse`, `none`")

    def validate(self) -> None:
        super().validate()
        if self.n is not None and self.n < 1:
            raise ConfigError(f"n={self.n} must be >= 1 (or left unset: every sample)")


@dataclass(frozen=True)
class PredictConfig(SamplingConfig):
    """`geospot predict`: the shared settings, asked blind."""

    NOT_READ: ClassVar[dict[str, str]] = {
        **REWARD_ONLY, "teacher_forcing": "a training aid that tells a later turn the true answer, which a prediction "
                                          "does not have (geospot eval takes it, as an oracle study)"}


def sampling_words(cfg: SamplingConfig) -> str:
    """How an eval asked, as its summary and `--compare` say it: greedy or k samples, and a
    teacher-forced eval (an oracle study: later turns told the truth) named as one."""
    words = "greedy" if cfg.samples == 0 else f"samples={cfg.samples},temperature={cfg.temperature}"
    return words + (f" with teacher_forcing={cfg.teacher_forcing} (later turns told the truth)" if cfg.teacher_forcing
                    else "")


def oracle_note(cfg: SamplingConfig) -> str:
    """The line an eval with a typed teacher_forcing says first ('' for a blind one, as evals are)."""
    return (f"teacher_forcing={cfg.teacher_forcing}: later turns are told the truth, so this is an oracle study, not "
            "a blind eval" if cfg.teacher_forcing else "")


def split_args(argv: Sequence[str], flags: set[str], valued_flags: set[str] = frozenset()):
    """(key=value list, set flags, {flag: value}, positional list)."""
    kv, seen, values, pos = [], set(), {}, []
    it = iter(argv)
    for a in it:
        if a == "--":  # the end of options: what follows is photos / folders, whatever their names
            pos += list(it)
            break
        if a in flags:
            seen.add(a)
        elif a in valued_flags:
            try:
                values[a] = next(it)
            except StopIteration:
                example = {"--map": "map.html", "--csv": "predictions.csv"}.get(a, "out")
                raise ConfigError(f"{a} needs a value (e.g. {a} {example})") from None
        elif a.startswith("--") and "=" in a and a.split("=", 1)[0] in valued_flags:
            k, v = a.split("=", 1)
            values[k] = v
        elif "=" in a and not a.startswith("/") and re.match(r"^-*[A-Za-z_][\w-]*=", a):
            kv.append(a)
        elif a.startswith("--") and not os.path.exists(a):  # a mistyped option, not a photo named --x
            known = ", ".join(sorted(f for f in (*flags, *valued_flags) if f.startswith("--")))
            raise ConfigError(f"unknown option {a} (the options: {known}; --help lists the keys)")
        else:
            pos.append(a)
    return kv, seen, values, pos


def sampling_for(samples: int, temperature: float, max_tokens: int):
    from geospot.engines.types import SampleParams

    return None if samples == 0 else (SampleParams(max_tokens=max_tokens, temperature=temperature), samples)



def engine_overrides(cfg) -> dict:
    return {"base_model": cfg.base_model, "device": cfg.device, "dtype": cfg.dtype, "max_pixels": cfg.max_pixels,
            "seed": cfg.seed}

