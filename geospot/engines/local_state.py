"""The local engine's state room: save_state / load_state (trainable weights, optimizer, step,
RNG) and export (a PEFT adapter or a full HF model folder), each written to a temp folder and
renamed into place."""

from __future__ import annotations

import copy
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from geospot.engines.local_model import LocalModel
from geospot.engines.local_trainer import LocalTrainer
from geospot.engines.types import AdamParams


def _atomic_replace(tmp: Path, final: Path) -> None:
    """Move tmp into place; an existing folder is set aside first and removed after, so a kill at
    any point leaves either the old or the new folder complete."""
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        shutil.rmtree(old, ignore_errors=True)
        os.replace(final, old)
    os.replace(tmp, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _temp_beside(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    return tmp


class LocalState:
    def __init__(self, core: LocalModel, trainer: LocalTrainer):
        self.core, self.trainer = core, trainer

    def save_state(self, path: str) -> str:
        """Trainable weights + optimizer + step + RNG, written to a temp folder then renamed."""
        core, optimizer = self.core, self.trainer.optimizer
        final = Path(path)
        tmp = _temp_beside(final)
        tmp.mkdir()
        save_file({n: p.detach().cpu().contiguous() for n, p in core.trainable}, str(tmp / "trainable.safetensors"))
        torch.save(
            {
                "optimizer": optimizer.state_dict() if optimizer is not None else None,
                "step": core.step,
                "sample_calls": core.sample_calls,
                "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
                "engine_config": asdict(core.cfg),
            },
            tmp / "state.pt",
        )
        _atomic_replace(tmp, final)
        return str(final)

    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        core = self.core
        folder = Path(path)
        if not (folder / "trainable.safetensors").exists():
            raise FileNotFoundError(f"{folder} is not a geospot engine state (no trainable.safetensors)")
        weights = load_file(str(folder / "trainable.safetensors"))
        names = {n for n, _ in core.trainable}
        if set(weights) != names:
            missing, extra = sorted(names - set(weights))[:3], sorted(set(weights) - names)[:3]
            raise ValueError(f"state {folder} does not match this engine's trainable parameters "
                             f"(missing {missing}, unexpected {extra}); same model and lora_rank?")
        with torch.no_grad():
            for n, p in core.trainable:
                p.copy_(weights[n].to(p.device, p.dtype))
        core.kv_store.clear()  # KV computed by the old weights is stale
        state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        core.step = int(state["step"])
        core.sample_calls = int(state["sample_calls"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.trainer.optimizer = None
        if with_optimizer and state["optimizer"] is not None:
            self.trainer.optimizer = self.trainer.new_optimizer(AdamParams(learning_rate=0.0))
            self.trainer.optimizer.load_state_dict(state["optimizer"])
        for p in core._params():
            p.grad = None

    def export(self, path: str, merged: bool = False) -> str:
        """A PEFT adapter folder (LoRA, merged=False) or a full HF model folder that plain
        transformers loads (merged LoRA or full fine-tuning); tokenizer and processor included."""
        core = self.core
        final = Path(path)
        tmp = _temp_beside(final)
        is_lora = core.cfg.lora_rank > 0
        if is_lora and not merged:
            core.model.save_pretrained(tmp)
        else:
            model = copy.deepcopy(core.model).merge_and_unload() if is_lora else core.model
            model.save_pretrained(tmp)
        core.tokenizer.save_pretrained(tmp)
        core.image_processor.save_pretrained(tmp)
        _atomic_replace(tmp, final)
        return str(final)
