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
from torch.nn.parallel import DistributedDataParallel

from geospot.distributed import Dist
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

    def gathered(self):
        """A context for sampling / eval: nothing to gather, the weights are whole on every rank."""
        return _nothing()

    def begin_step(self) -> None:
        pass

    def sync(self) -> None:
        _zero_loss_pass(self.core, self.ddp)

    def full_state(self):
        """(weights, optimizer state) to save: every rank holds them whole already."""
        return self.core.state._local_state()


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _zero_loss_pass(core, module: torch.nn.Module) -> None:
    """One forward/backward of a one-token text through `module` with loss 0 * logits: adds exact
    zeros to every gradient it reaches, and lets DDP / FSDP reduce what was accumulated."""
    token = core.renderer.tokens_of(ModelInput([TextChunk((core.pad_id,))]))
    batch = core._batch([ModelInput([TextChunk(tuple(token))])], left_pad=False)
    out = module(**batch.model_kwargs(), use_cache=False)
    (out.logits.float().sum() * 0.0).backward()


def make_sync(core, d: Dist):
    """The gradient reducer for this engine under torchrun, or None for one process."""
    if not d.active:
        return None
    if core.cfg.lora_rank > 0:
        return DDPSync(core, d)
    from geospot.engines.parallel_fsdp import FSDPSync  # delayed: only full fine-tuning needs it

    return FSDPSync(core, d)
