"""Every EngineConfig key is a key of `geospot sft` and `geospot rl`, and its value reaches the
engine the loop builds (the bug this guards: RLConfig once hand-listed 9 keys, so
`geospot rl sampler=vllm` was rejected)."""

import dataclasses

import pytest

import geospot.engines as engines
import geospot.engines.config as engine_config
from geospot.config import parse_overrides
from geospot.engines.config import EngineConfig
from geospot.train import rl, sft

# a value other than the default for every key (a new EngineConfig key fails until it has one)
VALUES = {
    "model_name": ("tiny:qwen2_5_vl:tiny", "tiny:qwen2_5_vl:tiny"),
    "engine": ("tinker", "tinker"),
    "lora_rank": ("7", 7),
    "lora_alpha": ("3.5", 3.5),
    "lora_targets": ("q_proj,v_proj", "q_proj,v_proj"),
    "train_vision": ("true", True),
    "dtype": ("float32", "float32"),
    "device": ("cpu", "cpu"),
    "max_pixels": ("50176", 50176),
    "seed": ("11", 11),
    "kv_reuse_tokens": ("123", 123),
    "tinker_base_url": ("http://localhost:1", "http://localhost:1"),
    "sampler": ("vllm", "vllm"),
    "vllm_gpu_memory_utilization": ("0.5", 0.5),
    "fsdp_reshard": ("on", "on"),
}
KEYS = [f.name for f in dataclasses.fields(EngineConfig)]


class Built(Exception):
    """Raised by the fake make_engine: the loop got as far as building its engine."""


@pytest.fixture
def captured(monkeypatch):
    seen = []

    def fake_make_engine(cfg):
        seen.append(cfg)
        raise Built

    monkeypatch.setattr(engines, "make_engine", fake_make_engine)
    # sampler=vllm is validated against the machine: pretend it has a GPU and vllm
    monkeypatch.setattr(engine_config, "_cuda_available", lambda: True)
    monkeypatch.setattr(engine_config, "_vllm_installed", lambda: True)
    # the start checks before any model: engine=tinker wants a key that looks like one
    monkeypatch.setenv("TINKER_API_KEY", "tml-test")
    return seen


def test_every_engine_key_has_a_test_value():
    assert sorted(VALUES) == sorted(KEYS)


@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("loop", ["sft", "rl"])
def test_engine_key_is_accepted_and_reaches_the_engine(loop, key, captured, tmp_path):
    raw, value = VALUES[key]
    assert getattr(EngineConfig(), key) != value  # else the test could not fail
    argv = [f"{key}={raw}", "data=synthetic:n=16,size=32", "eval_n=0", f"log_path={tmp_path / 'run'}"]
    if key != "model_name":  # an offline model, so the start checks pass without the hub
        argv.append("model_name=tiny:qwen2_5_vl:small")
    if loop == "sft":
        cfg = parse_overrides(sft.SFTConfig, argv)
        with pytest.raises(Built):
            sft.train(cfg)
    else:
        cfg = parse_overrides(rl.RLConfig, argv)
        with pytest.raises(Built):
            rl.run(cfg)
    (engine_cfg,) = captured
    assert getattr(engine_cfg, key) == value


def test_rl_takes_sampler_vllm_on_the_command_line(captured):
    cfg = parse_overrides(rl.RLConfig, ["sampler=vllm"])
    assert cfg.engine_config({}).sampler == "vllm"
