"""Data parallelism under `torchrun`: which process this is, its share of a global batch, and
the few collectives the loops need (sums of metrics, gathering objects, one broadcast).

    torchrun --nproc_per_node=2 -m geospot sft model_name=... batch_size=32

`init()` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK) and joins the process
group: NCCL with one GPU per process (cuda:LOCAL_RANK), gloo on CPU. Without torchrun (or with
WORLD_SIZE=1) it returns the single-process `Dist`, whose collectives return their input, so
a loop written against `Dist` behaves exactly as before for one process.

The gradients themselves are never reduced here: DDP (LoRA) and FSDP2 (full fine-tuning) do
that inside the engine (engines/parallel.py). What is sharded where: docs/distributed.md."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Dist:
    """This process's place in the job. rank 0 is the main process: it owns the run folder."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def share(self, n: int) -> range:
        """This rank's indices of a global batch of n: contiguous blocks in rank order, sizes
        differing by at most one, so the ranks' shares concatenated are the global order."""
        return range(self.rank * n // self.world, (self.rank + 1) * n // self.world)

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Each key summed over the ranks (float64; every rank passes the same keys)."""
        if not self.active or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist()))

    def max(self, value: float) -> float:
        if not self.active:
            return value
        t = torch.tensor([float(value)], dtype=torch.float64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def gather(self, obj: Any) -> list[Any]:
        """Every rank's `obj`, in rank order, on every rank (picklable objects)."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def broadcast(self, obj: Any) -> Any:
        """rank 0's `obj` on every rank."""
        if not self.active:
            return obj
        box = [obj if self.is_main else None]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    @property
    def device(self) -> torch.device:
        """Where the collectives' tensors live: the rank's GPU with NCCL, else the CPU."""
        if self.active and dist.get_backend() == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


_CURRENT = Dist()


def current() -> Dist:
    """The Dist `init()` set up (single-process until then)."""
    return _CURRENT


def under_torchrun() -> bool:
    """Several processes (torchrun with WORLD_SIZE > 1)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def speaks() -> bool:
    """Whether this process prints a job's messages: a plain process, or rank 0 of a torchrun job
    (read from the environment, so it holds before the process group exists: a config error is
    then said once, not once per rank)."""
    return int(os.environ.get("RANK", "0")) == 0


def finish(code: int) -> int:
    """A training command's exit: under torchrun, leave at once after the process group is gone
    (os._exit, streams flushed) instead of through interpreter teardown, where gloo's worker threads
    can still hold work whose destruction aborts the process (`terminate called without an active
    exception`, SIGABRT: seen once after a clean `done`, which torchrun then reported as a failure).
    The run's files are closed by then. A plain process returns `code`."""
    if launched_by_torchrun():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def launched_by_torchrun() -> bool:
    """Started by torchrun, any world size (1 included): such a job samples each GRPO group from its
    own seed, so its rollouts do not depend on the world size; a plain `python -m` run keeps one
    generator per sampling call (the rollouts its seeds always gave)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


class JoinError(ValueError):
    """This process cannot join the torchrun job its environment names (said as one sentence, as a config error)."""


def init(device: str = "auto") -> Dist:
    """Join torchrun's process group once (idempotent); single-process without torchrun.
    `device`: the engine's device key; CPU (or no GPU) runs gloo, else NCCL on cuda:LOCAL_RANK."""
    global _CURRENT
    if not under_torchrun():
        return _CURRENT
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not device.startswith("cpu")
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if use_cuda:
            torch.cuda.set_device(local_rank)
        missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
        if missing:  # RANK / WORLD_SIZE left in the environment, say, by another job: not a torchrun start
            raise JoinError(f"RANK and WORLD_SIZE are set but {' and '.join(missing)} not, so this is no torchrun "
                              "job: start one with `torchrun --nproc_per_node=N -m geospot ...`, or unset RANK and "
                              "WORLD_SIZE to run as one process")
        try:  # (torch's own wait for the other processes: 30 minutes, then a timeout error)
            dist.init_process_group("nccl" if use_cuda else "gloo")
        except (RuntimeError, ValueError) as e:
            raise JoinError(f"could not join the torchrun job of {os.environ.get('WORLD_SIZE')} processes at "
                              f"{os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']} ({str(e)[:160]}); start every "
                              "process of it with torchrun, or unset RANK and WORLD_SIZE to run as one") from None
    _CURRENT = Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))
    return _CURRENT


def rank_device(device: str, d: Dist) -> str:
    """The engine's device for this rank: `auto`/`cuda` become this rank's GPU under torchrun
    (one GPU per process); anything explicit is kept."""
    if d.active and device in ("auto", "cuda") and torch.cuda.is_available():
        return f"cuda:{d.local_rank}"
    return device


def shutdown() -> None:
    """Leave the process group (end of a run); the single-process Dist again after it."""
    global _CURRENT
    if dist.is_initialized():
        dist.destroy_process_group()
    _CURRENT = Dist()
