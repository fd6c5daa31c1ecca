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
from geospot.engines.master_weights import LOW_PRECISION, MasterWeights
from geospot.engines.types import AdamParams
from geospot.runs.checkpoint import UNREADABLE, damaged
from geospot.runs.folder import weights_mode_from_umask


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

    def save_state(self, path: str | None) -> str:
        """Trainable weights + optimizer + step + RNG, written to a temp folder then renamed. The
        weights are the optimizer's: fp32 where a bf16 model has fp32 master copies, so resume is exact.
        Under torchrun every rank calls it (FSDP2 gathers the shards: a collective); rank 0 passes
        the path and writes, the others pass None and write nothing."""
        core = self.core
        sync = self.trainer.sync
        weights, optim_state = (sync.full_state() if sync is not None else self._local_state())
        if path is None:
            return ""
        final = Path(path)
        tmp = _temp_beside(final)
        tmp.mkdir()
        save_file(weights, str(tmp / "trainable.safetensors"))
        weights_mode_from_umask(tmp)
        torch.save(
            {
                "optimizer": optim_state,
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

    def _new_optimizer(self) -> torch.optim.AdamW:
        return self.trainer.new_optimizer(AdamParams(learning_rate=0.0))

    def _local_state(self) -> tuple[dict[str, torch.Tensor], dict | None]:
        optimizer = self.trainer.optimizer
        weights = {n: p.detach().cpu().contiguous() for n, p in self.trainer.master_values()}
        return weights, optimizer.state_dict() if optimizer is not None else None

    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        core = self.core
        folder = Path(path)
        if not (folder / "trainable.safetensors").exists():
            raise FileNotFoundError(f"{folder} is not a geospot engine state (no trainable.safetensors)")
        try:
            weights = load_file(str(folder / "trainable.safetensors"))
        except UNREADABLE as e:  # cut short or emptied (a full disk, a power cut): which, and the way on
            raise damaged(folder.parent, folder / "trainable.safetensors", e) from None
        sync = self.trainer.sync
        names = {n for n, _ in core.trainable}
        if set(weights) != names:
            missing, extra = sorted(names - set(weights))[:3], sorted(set(weights) - names)[:3]
            raise ValueError(f"state {folder} does not match this engine's trainable parameters "
                             f"(missing {missing}, unexpected {extra}); same model and lora_rank?")
        try:
            state = torch.load(folder / "state.pt", map_location="cpu", weights_only=False)
        except UNREADABLE as e:
            raise damaged(folder.parent, folder / "state.pt", e) from None
        optim_state = state["optimizer"] if with_optimizer else None
        self.trainer.optimizer = None
        if sync is not None and sync.kind == "fsdp":  # each rank keeps its shards (parallel.py)
            self.trainer.optimizer = sync.load_full_state(weights, optim_state, self._new_optimizer)
            optim_state = None
        else:
            with torch.no_grad():
                for n, p in core.trainable:
                    p.copy_(weights[n].to(p.device))  # rounded to the model's dtype
            # the optimizer's fp32 copies of bf16 weights start from the saved fp32 values
            self.trainer.master = MasterWeights(core.trainable, {n: weights[n].to(p.device) for n, p in core.trainable
                                                                 if p.dtype in LOW_PRECISION})
        core.kv_store.clear()  # KV computed by the old weights is stale
        # a resume continues the optimizer's step count; start weights begin a new run at step 0 (the
        # sampling stream and RNG continue: they only offset randomness, and runs stay reproducible)
        core.step = int(state["step"]) if with_optimizer else 0
        core.sample_calls = int(state["sample_calls"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        if optim_state is not None:
            self.trainer.optimizer = self._new_optimizer()
            self.trainer.optimizer.load_state_dict(optim_state)
        for p in core._params():
            p.grad = None

    def load_adapter(self, path: str) -> None:
        """Set the LoRA weights from a PEFT adapter folder (adapter_model.safetensors, as `export`
        writes it); every LoRA weight of this engine must be in it and nothing else."""
        from peft import set_peft_model_state_dict  # delayed: peft's import costs a second

        core = self.core
        file = Path(path) / "adapter_model.safetensors"
        if core.cfg.lora_rank <= 0 or not file.exists():
            raise FileNotFoundError(f"{path}: no LoRA adapter to load (adapter_model.safetensors) into this "
                                    f"lora_rank={core.cfg.lora_rank} engine")
        result = set_peft_model_state_dict(core.model, load_file(str(file)))
        missing = [k for k in result.missing_keys if "lora_" in k]
        if missing or result.unexpected_keys:
            raise ValueError(f"adapter {path} does not fit this engine (missing {missing[:3]}, unexpected "
                             f"{list(result.unexpected_keys)[:3]}); same base model, lora_rank and lora_targets?")
        core.kv_store.clear()  # KV computed by the old weights is stale

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
        weights_mode_from_umask(tmp)
        _atomic_replace(tmp, final)
        return str(final)
