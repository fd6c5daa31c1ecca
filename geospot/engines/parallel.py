"""The local engine over several processes (torchrun): how the ranks' gradients become one.

The engines' loss is a SUM over datums (Tinker's convention; SFT puts 1/global-target-tokens
in the weights), so the global gradient is the SUM of the ranks' gradients, and after it every
rank takes the same optimizer step. PyTorch reduces them, not us:

- LoRA (`DDPSync`): DistributedDataParallel over the model's parameters, with a comm hook that
  sums instead of averaging. Every forward_backward of a step runs locally (DDP is not in the
  way: a backward whose forward did not go through DDP only accumulates, as under `no_sync`),
  however many micro-batches, packed groups or calls a rank has — ranks of a step rarely have
  the same. `sync()` at the optimizer step then runs DDP's forward once on `_Touch`, the model
  with a forward that only touches every trainable parameter (0 x their sum, no model pass): its
  backward adds exact zeros and DDP all-reduces every accumulated gradient, bucketed. Each rank
  does exactly one collective round per step, so a rank with no datums (RL: all its groups
  constant) cannot hang the others.
- Full fine-tuning (`FSDPSync`): FSDP2 (`fully_shard` per decoder layer and the root) with
  sum reduction, in one of two modes (`fsdp_reshard`, `reshard_choice`):
  * whole (off): parameters are gathered once per step (`unshard`) and kept whole through
    sampling and every micro-batch with gradient sync off; `sync()` runs the same one-token
    backward with sync on, which reduce-scatters the accumulated gradients, and the parameters
    go back to their shards. Gradients and Adam's state stay sharded across the optimizer step.
  * resharded (on; bases larger than one GPU): parameters stay sharded at rest; each forward
    and backward gathers one layer at a time, and every backward reduce-scatters its gradients
    at once. Each forward is then a collective: `Lockstep` makes every rank run the same number
    of them (a rank out of work runs one-token passes until every rank is done).

The one-token pass costs one tiny forward/backward per step (no image). docs/distributed.md."""

from __future__ import annotations

import inspect
import sys
import warnings
from contextlib import contextmanager, nullcontext

import torch
import torch.distributed as dist
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor, distribute_tensor
from torch.nn.parallel import DistributedDataParallel

from geospot.distributed import Dist
from geospot.engines.master_weights import LOW_PRECISION, MasterWeights
from geospot.engines.types import ModelInput, TextChunk

# FSDP2 warns, once per rank, that the wrapped model "returned a view tensor" an in-place op could
# corrupt. transformers' model output holds views of the logits; nothing here writes into them in
# place (the losses read them out of place), and the two-process full fine-tuning tests train to
# the same weights as one process (tests/train/test_distributed.py). The warning would only alarm.
warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor", category=UserWarning)


def _sum_hook(_state, bucket):  # no annotations: DDP checks them, and this file's are strings
    """DDP comm hook: the bucket's gradients summed over the ranks (DDP's default averages)."""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


class _Touch(torch.nn.Module):
    """DDP's module for LoRA: the model (so DDP holds and reduces its trainable parameters) with a
    forward that touches each of them and nothing else: 0 x the sum of their sums. Its backward
    adds an exact zero to every accumulated gradient, which is all DDP needs to reduce them; no
    token goes through the model (a one-token pass cost ~3 % of a tiny model's step on CPU)."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model
        self.trainable = [p for p in model.parameters() if p.requires_grad]

    def forward(self) -> torch.Tensor:
        return torch.stack([p.sum() for p in self.trainable]).sum() * 0.0


class DDPSync:
    """LoRA: DDP over the trainable parameters (the frozen base is replicated, never reduced)."""

    kind = "ddp"

    def __init__(self, core, d: Dist):
        self.core, self.d = core, d
        device_ids = [core.device.index] if core.device.type == "cuda" else None
        # DDP broadcasts rank 0's parameters here: every rank starts from the same weights.
        # No buffer sync in forward (the buffers are the rotary tables, equal on every rank). Newer torch
        # renamed the key (`broadcast_buffers` warns once per rank); the new one also syncs at init.
        keys = inspect.signature(DistributedDataParallel).parameters
        no_sync = "forward_sync_buffers" if "forward_sync_buffers" in keys else "broadcast_buffers"
        self.ddp = DistributedDataParallel(_Touch(core.model), device_ids=device_ids, **{no_sync: False})
        self.ddp.register_comm_hook(None, _sum_hook)

    def sync(self) -> None:
        self.ddp().backward()  # every trainable parameter touched: DDP all-reduces every bucket

    def after_step(self) -> None:
        pass

    def full_state(self):
        """(weights, optimizer state) to save: every rank holds them whole already."""
        return self.core.state._local_state()


def _zero_loss_pass(core, module: torch.nn.Module, grad: bool = True) -> None:
    """One forward/backward of a one-token text through `module` with loss 0 * logits: adds exact
    zeros to every gradient it reaches, and lets DDP / FSDP reduce what was accumulated.
    grad=False: the forward alone (no graph), a lockstep filler while sampling."""
    token = core.renderer.tokens_of(ModelInput([TextChunk((core.pad_id,))]))
    batch = core._batch([ModelInput([TextChunk(tuple(token))])], left_pad=False)
    with torch.set_grad_enabled(grad):
        out = module(**batch.model_kwargs(), use_cache=False)
    if grad:
        (out.logits.float().sum() * 0.0).backward()


class Lockstep:
    """FSDP2 with resharding: every forward (and backward) of the model gathers each layer from
    all ranks, so every rank must run the same number of them, whatever its work. Inside a
    `region` (one sample / forward / forward_backward call, which every rank makes) each real
    forward first says so (an all-reduce MAX of 1); at the end of the region a rank keeps
    running one-token passes while any other rank still announces work (MAX of 0 > 0). So a
    rank whose rollouts stopped early, or that has fewer groups or micro-batches (or none),
    keeps the others' collectives company: one tiny all-reduce per forward is the price."""

    def __init__(self, core, d: Dist):
        self.core, self.d = core, d
        self.inside = False
        self.fillers = 0  # one-token passes run to keep other ranks company (tests, timings)
        # before FSDP's own pre-forward hook (the all-gather): prepend
        core.model.register_forward_pre_hook(self._announce, prepend=True)

    def _announce(self, _module, _args) -> None:
        if self.inside:
            self.d.max(1.0)

    def any_rank(self, flag: bool) -> bool:
        """Whether `flag` holds on any rank (a collective: every rank asks, e.g. rollouts' "turns left?")."""
        return self.d.max(float(flag)) > 0

    @contextmanager
    def region(self, grad: bool):
        if self.inside:  # nested: the outer region pads
            yield
            return
        self.inside = True
        try:
            yield
        finally:
            self.inside = False
        while self.d.max(0.0) > 0:  # not on an exception: the job ends (no filler for a dead peer)
            _zero_loss_pass(self.core, self.core.model, grad=grad)
            self.fillers += 1


def collective(core, grad: bool):
    """The engine's model calls as one lockstep region under FSDP2 resharding, else nothing."""
    return core.lockstep.region(grad) if core.lockstep is not None else nullcontext()


def reshard_choice(key: str, weights_bytes: int, grads_bytes: int, gpu_bytes: int | None) -> tuple[bool, str]:
    """(reshard?, the reason printed at start). `auto`: off on CPU (no GPU memory to save, and
    whole parameters skip a gather per layer per forward); on a GPU, on when the whole weights
    and gradients would fill over half of it (activations and the KV cache need the rest)."""
    if key in ("on", "off"):
        return key == "on", f"fsdp_reshard={key}"
    if gpu_bytes is None:
        return False, "fsdp_reshard=auto: off on CPU (no GPU memory to save)"
    need = (weights_bytes + grads_bytes) / 1e9
    if weights_bytes + grads_bytes > gpu_bytes / 2:
        return True, (f"fsdp_reshard=auto: on, whole weights + gradients ({need:.1f} GB) would fill over half of "
                      f"this GPU's {gpu_bytes / 1e9:.0f} GB")
    return False, (f"fsdp_reshard=auto: off, whole weights + gradients ({need:.1f} GB) fit in half of this GPU's "
                   f"{gpu_bytes / 1e9:.0f} GB")


class FSDPSync:
    """Full fine-tuning: FSDP2 over the decoder layers and the root; gradients summed over the
    ranks, gradients and Adam's moments live as shards (DTensor) on their owners. Whole mode:
    between optimizer steps the parameters are whole on every rank (sampling and any number of
    micro-batches run without communication; gradients reduce-scattered once per step).
    Resharded mode: parameters sharded at rest, gathered per layer per forward, every backward
    reduce-scatters, and the engine's calls run in lockstep (`Lockstep`)."""

    kind = "fsdp"

    def __init__(self, core, d: Dist):
        self.core, self.d = core, d
        model = core.model
        trainable = [p for p in model.parameters() if p.requires_grad]
        gpu = torch.cuda.get_device_properties(core.device).total_memory if core.device.type == "cuda" else None
        self.reshard, reason = reshard_choice(core.cfg.fsdp_reshard,
                                              sum(p.numel() * p.element_size() for p in model.parameters()),
                                              sum(p.numel() * p.element_size() for p in trainable), gpu)
        if d.is_main:
            print(f"FSDP2: {reason}", file=sys.stderr)
        layers = [m for m in model.modules() if type(m).__name__.endswith("DecoderLayer")]
        # the vision tower stays in the root's group: the image cache runs it only for unseen images,
        # a number that differs between ranks, so its layers must not be collectives of their own
        for layer in layers:
            fully_shard(layer, reshard_after_forward=self.reshard)
        fully_shard(model, reshard_after_forward=self.reshard)
        self.modules = [m for m in model.modules() if isinstance(m, FSDPModule)]
        for m in self.modules:  # these setters are per module, not recursive
            m.set_gradient_divide_factor(1.0)  # the sum over ranks, not the mean (the loss is a sum)
            m.set_force_sum_reduction_for_comms(True)  # plain SUM (gloo has no pre-multiplied sum)
            m.set_reduce_scatter_unused_params(True)  # a rank without a gradient sends zeros, never nothing
        model.set_reshard_after_backward(self.reshard)
        # resharded: every backward reduce-scatters (no whole gradients kept), in lockstep
        model.set_requires_gradient_sync(self.reshard)
        if self.reshard:
            core.lockstep = Lockstep(core, d)
            core.lean_decode = False  # it calls the layers without the root's forward (and its gather)
        # the trainer's parameters are the shards: the optimizer, clipping and checkpoints see them
        core.trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        self.refresh()

    def refresh(self) -> None:
        """Whole mode: all-gather the shards into whole parameters (after an optimizer step or a
        load). Resharded mode: back to shards (each forward gathers what it needs)."""
        for m in self.modules:
            m.reshard()
        if not self.reshard:
            for m in self.modules:
                m.unshard()

    def sync(self) -> None:
        if self.reshard:  # every backward already reduce-scattered, on every rank alike (lockstep)
            return
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
