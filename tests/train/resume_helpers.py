"""Shared by the SIGKILL-and-resume tests of SFT and RL: the subprocess environment, killing a
run inside a step, and comparing every tensor two runs saved."""

import os
import signal
import subprocess
import time
from pathlib import Path

import torch

from geospot.runs.checkpoint import latest_checkpoint, list_checkpoints
from geospot.runs.folder import read_jsonl


def subprocess_env() -> dict:
    env = dict(
        os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false"
    )
    env.pop("WANDB_PROJECT", None)
    return env


def kill_inside_step(cmd: list[str], log: Path, cwd: Path, after_step: int = 3) -> list[int]:
    """Start `cmd`, SIGKILL it once `after_step` is logged (the loop is then inside the next
    step, with a step of work in no checkpoint); -> the checkpoint steps it left."""
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=subprocess_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL
    )
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if any(r.get("step") == after_step for r in read_jsonl(log / "metrics.jsonl")):
            break
        time.sleep(0.01)
    assert proc.poll() is None, "run finished before it could be killed: " + proc.stderr.read().decode()[-2000:]
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    return [int(p.name) for p in list_checkpoints(log)]


def assert_same_final_tensors(full: Path, resumed: Path, last_step: int) -> None:
    """Both runs end at `last_step` with identical weights and optimizer state."""
    a = saved_tensors(latest_checkpoint(full) / "engine")
    b = saved_tensors(latest_checkpoint(resumed) / "engine")
    assert latest_checkpoint(resumed).name == str(last_step) and a, "no tensors saved"
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs after resume"


def saved_tensors(folder: Path) -> dict[str, torch.Tensor]:
    """Every tensor the engine saved (weights and optimizer), flattened by file/key."""
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}

    def walk(prefix, obj):
        if isinstance(obj, torch.Tensor):
            out[prefix] = obj
        elif isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}/{k}", v)
        elif isinstance(obj, (list, tuple)):
            for i, v in enumerate(obj):
                walk(f"{prefix}/{i}", v)

    for f in sorted(folder.rglob("*")):
        rel = str(f.relative_to(folder))
        if f.suffix == ".safetensors":
            walk(rel, load_file(str(f)))
        elif f.suffix in (".pt", ".bin"):
            walk(rel, torch.load(f, weights_only=False, map_location="cpu"))
    return out
