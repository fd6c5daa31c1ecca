"""`device=` is checked when the config is parsed (geospot/engines/config.py `device_problem`):
a device this machine lacks is one sentence with the fix, before any model loads, not torch's
traceback from inside the load."""

from __future__ import annotations

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.engines.config import EngineConfig, device_problem
from geospot.eval.cli_config import EvalConfig


def _machine(cuda: int, mps: bool = False):
    return lambda: (cuda, mps)


@pytest.mark.parametrize("device", ["auto", "cpu", "cpu:0"])
def test_devices_every_machine_has(device):
    assert device_problem(device, _machine(0)) is None


def test_cuda_needs_a_gpu_and_an_index_it_has():
    two = _machine(2)
    assert device_problem("cuda", two) is None and device_problem("cuda:1", two) is None
    assert device_problem("cuda:2", two) == ("device=cuda:2: this machine has 2 CUDA GPUs (cuda:0 to cuda:1); pick "
                                             "one of them or device=auto")
    assert device_problem("cuda:1", _machine(1)) == ("device=cuda:1: this machine has 1 CUDA GPU (cuda:0); pick one "
                                                     "of them or device=auto")
    assert "no CUDA GPU" in device_problem("cuda", _machine(0)) and "device=cpu" in device_problem("cuda", _machine(0))


def test_mps_and_words_that_are_no_device():
    assert device_problem("mps", _machine(0, mps=True)) is None
    assert "no Apple GPU" in device_problem("mps", _machine(0))
    for word in ("tpu", "gpu", "cuda:x", "cuda:-1"):
        assert device_problem(word, _machine(1)).startswith(f"device={word} is not a device; use auto, cpu, cuda")
    assert device_problem("cpu:1", _machine(0)) == "device=cpu:1: there is one CPU device; use device=cpu"


def test_tinker_reads_no_device():
    EngineConfig(engine="tinker", device="cuda:99").validate()  # its GPUs are the service's (a laptop resumes it)


def test_each_command_refuses_it_at_parse_time():
    # this machine's own probe: a CUDA index no machine has
    with pytest.raises(ConfigError, match=r"device=cuda:99: this machine has"):
        parse_overrides(EngineConfig, ["device=cuda:99"])
    with pytest.raises(ConfigError, match=r"device=tpu is not a device"):
        parse_overrides(EvalConfig, ["model=tiny:qwen2_5_vl", "data=synthetic:n=10", "device=tpu"])
