"""Shared by the SIGKILL-and-resume tests of SFT and RL."""

from pathlib import Path

import torch


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
