"""Timing and memory of a benchmark phase on its device: CUDA synchronisation (a kernel launch
returns before the work is done, so a wall clock needs a sync) and peak memory, per part of a
step (torch's peak, reset before each part) and per phase (the largest of those parts).

`plan` is anything with a `device` string ("cpu", "cuda", "cuda:1"); gpu_check.py's Plan."""

from __future__ import annotations

_PHASE_PEAK = 0  # bytes: the phase's peak across the per-part resets of reset_peak


def is_cuda(plan) -> bool:
    return plan.device.startswith("cuda")


def sync(plan) -> None:
    if is_cuda(plan):
        import torch

        torch.cuda.synchronize()


def reset_peak(plan) -> None:
    """Start a new part: its peak is measured from here; the phase's peak keeps the parts' largest."""
    global _PHASE_PEAK
    if is_cuda(plan):
        import torch

        torch.cuda.synchronize()
        _PHASE_PEAK = max(_PHASE_PEAK, torch.cuda.max_memory_allocated())
        torch.cuda.reset_peak_memory_stats()


def peak_gb(plan) -> float | None:
    """Peak torch allocation since the last reset, GiB (None on CPU: peak RSS is per phase process)."""
    if not is_cuda(plan):
        return None
    import torch

    return round(torch.cuda.max_memory_allocated() / 2**30, 2)


def memory(plan) -> dict:
    """The process's peak RSS; on CUDA also the phase's peak allocation and the device's used memory
    (mem_get_info: includes other processes', e.g. vLLM's engine)."""
    from grpo_step import _maxrss_mb

    out = {"peak_rss_mb": round(_maxrss_mb(), 1)}
    if is_cuda(plan):
        import torch

        free, total = torch.cuda.mem_get_info()
        peak = max(_PHASE_PEAK, torch.cuda.max_memory_allocated())
        out.update(phase_peak_gb=round(peak / 2**30, 2), device_used_gb=round((total - free) / 2**30, 2),
                   device_total_gb=round(total / 2**30, 2))
    return out
