"""sampler=vllm's configuration rules (geospot/engines/config.py): each problem names its fix,
and they are checked when the config is parsed, before any model loads."""

from __future__ import annotations

import pytest
import torch

from geospot.config import ConfigError, parse_overrides
from geospot.engines import make_engine
from geospot.engines.config import EngineConfig, vllm_sampler_problems
from geospot.engines.vllm_sampler import vllm_installed


def test_sampler_config_problems_name_the_fix():
    ok = EngineConfig(sampler="vllm", lora_rank=32, device="cuda")
    assert vllm_sampler_problems(ok, cuda_available=True, vllm_installed=True) == []
    p = vllm_sampler_problems(ok, cuda_available=True, vllm_installed=False)
    assert len(p) == 1 and "pip install -e '.[vllm]' in the geospot clone" in p[0]
    p = vllm_sampler_problems(EngineConfig(sampler="vllm", device="cpu"), cuda_available=True, vllm_installed=True)
    assert len(p) == 1 and "CUDA" in p[0]
    assert "CUDA" in vllm_sampler_problems(ok, cuda_available=False, vllm_installed=True)[0]
    assert (
        "engine=local"
        in vllm_sampler_problems(
            EngineConfig(sampler="vllm", engine="tinker"), cuda_available=True, vllm_installed=True
        )[0]
    )
    assert (
        "lora_rank"
        in vllm_sampler_problems(EngineConfig(sampler="vllm", lora_rank=0), cuda_available=True, vllm_installed=True)[0]
    )
    assert (
        "train_vision"
        in vllm_sampler_problems(
            EngineConfig(sampler="vllm", train_vision=True), cuda_available=True, vllm_installed=True
        )[0]
    )
    assert (
        "(0, 1)"
        in vllm_sampler_problems(
            EngineConfig(sampler="vllm", vllm_gpu_memory_utilization=1.5), cuda_available=True, vllm_installed=True
        )[0]
    )
    assert vllm_sampler_problems(
        EngineConfig(), cuda_available=False, vllm_installed=False
    )  # the rule itself ignores `sampler`
    EngineConfig(sampler="torch", device="cpu").validate()  # the default never needs a GPU


@pytest.mark.skipif(torch.cuda.is_available() and vllm_installed(), reason="this machine can run sampler=vllm")
def test_make_engine_refuses_vllm_here_before_loading():
    with pytest.raises(ConfigError, match="sampler=vllm: .*CUDA"):  # the CLI path validates at parse time
        parse_overrides(EngineConfig, ["sampler=vllm", "device=cpu"])
    cfg = EngineConfig(sampler="vllm", model_name="tiny:no_such_family", device="cpu")
    with pytest.raises(ConfigError, match="sampler=vllm: .*CUDA"):
        make_engine(cfg)  # a model load would raise ValueError for the unknown family: validation came first
    if not vllm_installed():
        with pytest.raises(ConfigError, match=r"pip install -e .\.\[vllm\]. in the geospot clone"):
            cfg.validate()
    with pytest.raises(ConfigError):
        parse_overrides(EngineConfig, ["sampler=tensorrt"])
    assert parse_overrides(EngineConfig, ["sampler=torch"]).sampler == "torch"
