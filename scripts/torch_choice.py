"""Which torch `scripts/setup.sh` installs, decided from what the machine has.

    python scripts/torch_choice.py           # prints: <what>\t<pip arguments, or nothing>

The decision is a pure function (`choose`) of four facts, so it is tested without a network
or a GPU; `probe()` gathers the facts here. Standard library only: it runs before anything
is installed.

- a torch already in the venv is kept (a CUDA build someone installed on purpose stays);
- Linux with an NVIDIA GPU: PyPI's torch, which is the CUDA build on Linux;
- Linux without one: the CPU build from PyTorch's CPU wheel index (PyPI's Linux torch would
  pull the CUDA build and ~17 nvidia packages, several GB), or PyPI's when that index cannot
  be reached (a mirror-only network: better a big install than none);
- macOS / Windows: PyPI's torch, which is CPU (or MPS) there."""

from __future__ import annotations

import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import urllib.request
from dataclasses import dataclass

TORCH = "torch==2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"


@dataclass(frozen=True)
class Choice:
    what: str  # one line for the user
    pip_args: tuple[str, ...]  # empty = install nothing


def choose(*, has_torch: bool, system: str, nvidia_gpu: bool, cpu_index_reachable: bool) -> Choice:
    if has_torch:
        return Choice("torch already installed: kept", ())
    if system != "Linux":
        return Choice(f"{TORCH} from PyPI ({system}: its wheels are CPU builds)", (TORCH,))
    if nvidia_gpu:
        return Choice(f"{TORCH} from PyPI (NVIDIA GPU found: the CUDA build)", (TORCH,))
    if cpu_index_reachable:
        return Choice(f"{TORCH} CPU build from {CPU_INDEX} (no NVIDIA GPU)", (TORCH, "--index-url", CPU_INDEX))
    return Choice(f"{TORCH} from PyPI ({CPU_INDEX} unreachable; this may pull the CUDA build)", (TORCH,))


def has_nvidia_gpu() -> bool:
    if os.path.isdir("/proc/driver/nvidia/gpus") and os.listdir("/proc/driver/nvidia/gpus"):
        return True
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return False
    try:
        return subprocess.run([smi, "-L"], capture_output=True, timeout=10, check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def reachable(url: str, timeout: float = 5.0) -> bool:
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/torch/", method="HEAD"), timeout=timeout):
            return True
    except OSError:
        return False


def probe() -> Choice:
    has_torch = importlib.util.find_spec("torch") is not None
    system = platform.system()
    gpu = system == "Linux" and not has_torch and has_nvidia_gpu()
    index = system == "Linux" and not has_torch and not gpu and reachable(CPU_INDEX)
    return choose(has_torch=has_torch, system=system, nvidia_gpu=gpu, cpu_index_reachable=index)


if __name__ == "__main__":
    c = probe()
    sys.stdout.write(f"{c.what}\t{' '.join(c.pip_args)}\n")
