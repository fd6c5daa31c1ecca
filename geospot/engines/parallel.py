"""The local engine over several processes (torchrun): how the ranks' gradients become one.

The engines' loss is a SUM over datums (Tinker's convention; SFT puts 1/global-target-tokens
in the weights), so the global gradient is the SUM of the ranks' gradients, and after it every
rank takes the same optimizer step. PyTorch reduces them, not us:

- LoRA (`DDPSync`): DistributedDataParallel over the model, with a comm hook that sums instead
  of averaging. Every forward_backward of a step runs locally (DDP is not in the way: a
  backward whose forward did not go through DDP only accumulates, as under `no_sync`), however
  many micro-batches, packed groups or calls a rank has — ranks of a step rarely have the same.
  `sync()` at the optimizer step then runs ONE forward/backward of a one-token, zero-loss input
  through the DDP module: its backward adds exact zeros and DDP all-reduces every accumulated
  gradient, bucketed. Each rank does exactly one collective round per step, so a rank with no
  datums (RL: all its groups constant) cannot hang the others.
- Full fine-tuning (`FSDPSync`): FSDP2 (`fully_shard` per decoder layer and the root) with
  sum reduction. Parameters are gathered once per step (`unshard`) and kept whole through
  sampling and every micro-batch with gradient sync off; `sync()` runs the same one-token
  backward with sync on, which reduce-scatters the accumulated gradients, and the parameters
  go back to their shards. Gradients and Adam's state stay sharded across the optimizer step.

The one-token pass costs one tiny forward/backward per step (no image). docs/distributed.md."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from geospot.distributed import Dist
from geospot.engines.master_weights import LOW_PRECISION, MasterWeights
from geospot.engines.types import ModelInput, TextChunk


def _sum_hook(_state, bucket):  # no annotations: DDP checks them, and this file's are strings
    """DDP comm hook: the bucket's gradients summed over the ranks (DDP's default averages)."""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class DDPSync:
    """LoRA: DDP over the trainable parameters (the frozen base is replicated, never reduced)."""

    kind = "ddp"

    def __init__(self, core, d: Dist):
        self.core, self.d = core, d
        device_ids = [core.device.index] if core.device.type == "cuda" else None
        # DDP broadcasts rank 0's parameters here: every rank starts from the same weights.
        self.ddp = DistributedDataParallel(core.model, device_ids=device_ids, broadcast_buffers=False,
                                           find_unused_parameters=core.cfg.train_vision)  # text-only sync pass
        self.ddp.register_comm_hook(None, _sum_hook)

    def sync(self) -> None:
        _zero_loss_pass(self.core, self.ddp)

    def after_step(self) -> None:
        pass

    def full_state(self):
        """(weights, optimizer state) to save: every rank holds them whole already."""
        return self.core.state._local_state()


def _zero_loss_pass(core, module: torch.nn.Module) -> None:
    """One forward/backward of a one-token text through `module` with loss 0 * logits: adds exact
    zeros to every gradient it reaches, and lets DDP / FSDP reduce what was accumulated."""
    token = core.renderer.tokens_of(ModelInput([TextChunk((core.pad_id,))]))
    batch = core._batch([ModelInput([TextChunk(tuple(token))])], left_pad=False)
    out = module(**batch.model_kwargs(), use_cache=False)
    (out.logits.float().sum() * 0.0).backward()


class FSDPSync:
    """Full fine-tuning: FSDP2 over the decoder layers and the root. Between optimizer steps the
    parameters are whole on every rank (sampling and any number of micro-batches run without
    communication); gradients are reduce-scattered (summed) once per step, and the gradients and
    Adam's moments live as shards (DTensor) on their owners."""

    kind = "fsdp"

    def __init__(self, core, d: Dist):
        self.core, self.d = core, d
        model = core.model
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
        for layer in layers:
            fully_shard(layer, reshard_after_forward=False)
        fully_shard(model, reshard_after_forward=False)
        self.modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
        for m in self.modules:  # these setters are per module, not recursive
            m.set_gradient_divide_factor(1.0)  # the sum over ranks, not the mean (the loss is a sum)
            m.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no pre-multiplied sum)
            m.set_reduce_scatter_unused_params(True)  # a rank without a gradient sends zeros, never nothing
        model.set_reshard_after_backward(False)
        model.set_requires_gradient_sync(False)
        # the trainer's parameters are the shards: the optimizer, clipping and checkpoints see them
        core.trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.refresh()

    def refresh(self) -> None:
        """All-gather the shards into whole parameters (after an optimizer step or a load)."""
        for m in self.modules:
            m.reshard()
        for m in self.modules:
            m.unshard()

    def sync(self) -> None:
        self.core.model.set_requires_gradient_sync(True)
        try:
            _zero_loss_pass(self.core, self.core.model)
        finally:
            self.core.model.set_requires_gradient_sync(False)

    def after_step(self) -> None:
        self.refresh()

    def full_state(self):
        """(weights, optimizer state) gathered whole, keyed as one process keys them (a collective:
        every rank calls it), so a checkpoint is the same files whatever the world size."""
        weights = {n: p.full_tensor().cpu().contiguous() for n, p in self.core.trainer.master_values()}
        optimizer = self.core.trainer.optimizer
        if optimizer is None:
            return weights, None
        state = optimizer.state_dict()
        state["state"] = {i: {k: v.full_tensor().cpu() if isinstance(v, DTensor) else v for k, v in st.items()}
                          for i, st in state["state"].items()}
        return weights, state

    def load_full_state(self, weights: dict, optim_state: dict | None, new_optimizer) -> None:
        """The inverse of full_state: each rank keeps its shards of the whole tensors (the model's
        in its dtype, the optimizer's fp32 master copies and Adam's moments at fp32)."""
        masters = {}  # the saved (fp32) shards of bf16 parameters: their optimizer's copies
        with torch.no_grad():
            for n, p in self.core.trainable:
                shard = distribute_tensor(weights[n], p.device_mesh, p.placements)
                p.copy_(shard)
                if p.dtype in LOW_PRECISION:
                    masters[n] = shard
        self.refresh()
        self.core.trainer.master = MasterWeights(self.core.trainable, masters)
        if optim_state is None:
            return None
        params = self.core.trainer.master.params
        state = dict(optim_state)
        state["state"] = {int(i): {k: distribute_tensor(v.to(params[int(i)].dtype), params[int(i)].device_mesh,
                                                        params[int(i)].placements)
                                   if torch.is_tensor(v) and v.dim() > 0 else v for k, v in st.items()}
                          for i, st in optim_state["state"].items()}
        optimizer = new_optimizer()
        optimizer.load_state_dict(state)
        return optimizer


def make_sync(core, d: Dist):
    """The gradient reducer for this engine under torchrun, or None for one process."""
    if not d.active:
        return None
    return DDPSync(core, d) if core.cfg.lora_rank > 0 else FSDPSync(core, d)
