"""scripts/setup.sh's torch choice as a function of what the machine has (no network, no GPU)."""

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("torch_choice", ROOT / "scripts" / "torch_choice.py")
tc = importlib.util.module_from_spec(spec)
sys.modules["torch_choice"] = tc  # dataclasses look their module up there
spec.loader.exec_module(tc)


def test_linux_without_a_gpu_gets_the_cpu_index():
    c = tc.choose(has_torch=False, system="Linux", nvidia_gpu=False, cpu_index_reachable=True)
    assert c.pip_args == ("torch==2.13.0", "--index-url", "https://download.pytorch.org/whl/cpu")


def test_an_unreachable_cpu_index_falls_back_to_the_plain_requirement():
    c = tc.choose(has_torch=False, system="Linux", nvidia_gpu=False, cpu_index_reachable=False)
    assert c.pip_args == ("torch==2.13.0",) and "unreachable" in c.what


def test_a_gpu_gets_pypis_cuda_build_and_other_systems_pypis_cpu_build():
    gpu = tc.choose(has_torch=False, system="Linux", nvidia_gpu=True, cpu_index_reachable=True)
    mac = tc.choose(has_torch=False, system="Darwin", nvidia_gpu=False, cpu_index_reachable=True)
    assert gpu.pip_args == ("torch==2.13.0",) and "CUDA" in gpu.what
    assert mac.pip_args == ("torch==2.13.0",)


def test_a_torch_already_there_is_kept():
    for gpu in (False, True):
        assert tc.choose(has_torch=True, system="Linux", nvidia_gpu=gpu, cpu_index_reachable=True).pip_args == ()


def test_setup_prints_one_line_per_step():
    text = (ROOT / "scripts" / "setup.sh").read_text()
    assert all(f'step {i} "' in text for i in range(1, 5)) and "scripts/torch_choice.py" in text
