"""The minimal FLOPs of a GRPO step on a Qwen-VL model, and the machine's matmul peak.

"Minimal" = the matmuls a computation that wastes nothing must do (2 FLOPs per multiply-add):
- vision tower once per image (patch embedding, every block's linears, the mergers; attention
  over the pairs each block really attends: windows in Qwen2.5-VL's windowed blocks);
- prefill once per group (image + prompt), the head at its last position only;
- decode: each of the G rollouts feeds its sampled tokens but the last, one at a time, against
  the KV of everything before (the first token comes from the prefill's logits);
- training: one forward and backward over [prefix | completion_1 .. completion_G], causal
  attention counted over the needed pairs (the prefix causally, each completion against the
  prefix and itself), the head at the positions whose targets are trained (the prefix's last
  position, shared, and every completion position). The base weights are frozen, so the
  backward computes input gradients only (one matmul per linear; none for the first layer's
  q/k/v, whose input is the frozen embedding) and LoRA's two factors get weight and input
  gradients (two matmuls each, the first layer's A again without its input gradient).
  Attention's backward is twice its forward (dQ, dK from dS; dV, dP from the output gradient).
The optimizer's elementwise work is not counted (it is O(parameters), not O(tokens)).

The shapes come from the loaded model's modules (every nn.Linear, the patch convolution), so the
same formula serves all three families and a PEFT-wrapped model. tests/benchmarks/test_flops.py
checks the linears against torch's FlopCounterMode and the attention pair counts by hand.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ModelShapes:
    """Per-token multiply-adds of a Qwen-VL model's parts (in * out summed over the linears)."""

    lm_linear: int  # base language-model linears (all layers, the head excluded)
    lm_first_qkv: int  # layer 0's q/k/v base linears: their input (the embedding) needs no gradient
    lora: int  # LoRA factors A and B of the language model: r * (in + out) summed
    lora_first_a: int  # layer 0's q/k/v LoRA A factors (in * r)
    head: int  # hidden * vocab
    layers: int
    attn_dim: int  # query heads * head dim of the language model
    v_patch: int  # patch embedding per patch (in_channels * t * p * p * dim)
    v_linear: int  # vision blocks' linears per patch
    v_merged: int  # merger(s) linears per merged token (Qwen3-VL's deepstack mergers included)
    v_dim: int  # vision attention width (heads * head dim)
    v_blocks: int
    v_full_blocks: tuple[int, ...]  # blocks with full attention; the others attend within windows
    v_window: int  # window side in merged units (0: every block attends fully)
    merge: int  # spatial merge size


def model_shapes(model: torch.nn.Module) -> ModelShapes:
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    inner = base.model
    lm_linear = first_qkv = lora = first_a = v_linear = v_merged = 0
    for name, mod in inner.language_model.named_modules():
        if not isinstance(mod, torch.nn.Linear):
            continue
        n = mod.in_features * mod.out_features
        first = name.startswith("layers.0.") and any(f".{p}_proj" in name for p in "qkv")
        if ".lora_" in name:
            lora += n
            if first and ".lora_A" in name:
                first_a += n
        else:
            lm_linear += n
            first_qkv += n if first else 0
    visual = inner.visual
    conv = visual.patch_embed.proj
    v_patch = conv.in_channels * conv.out_channels * int(torch.tensor(conv.kernel_size).prod())
    for name, mod in visual.named_modules():
        if isinstance(mod, torch.nn.Linear) and ".lora_" not in name:
            if "merger" in name:
                v_merged += mod.in_features * mod.out_features
            else:
                v_linear += mod.in_features * mod.out_features
    vc = base.config.vision_config
    text = base.config.get_text_config()
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    v_blocks = len(visual.blocks)
    full = tuple(getattr(vc, "fullatt_block_indexes", None) or range(v_blocks))
    window = getattr(vc, "window_size", 0) // (vc.patch_size * vc.spatial_merge_size) if len(full) < v_blocks else 0
    lm_head = base.lm_head
    return ModelShapes(
        lm_linear=lm_linear, lm_first_qkv=first_qkv, lora=lora, lora_first_a=first_a,
        head=lm_head.in_features * lm_head.out_features, layers=text.num_hidden_layers,
        attn_dim=text.num_attention_heads * head_dim, v_patch=v_patch, v_linear=v_linear, v_merged=v_merged,
        v_dim=conv.out_channels, v_blocks=v_blocks, v_full_blocks=full, v_window=window, merge=vc.spatial_merge_size,
    )


# -- attention pairs (pure: tested with numbers worked by hand) --------------------------------------


def causal_pairs(n: int) -> int:
    """Query-key pairs of causal attention over n tokens: n(n+1)/2."""
    return n * (n + 1) // 2


def packed_pairs(prefix: int, suffixes: list[int]) -> int:
    """Pairs a shared-prefix row needs: the prefix causally, each suffix against the whole prefix
    and itself causally (never another suffix)."""
    return causal_pairs(prefix) + sum(s * prefix + causal_pairs(s) for s in suffixes)


def window_sizes(gh: int, gw: int, window: int) -> list[int]:
    """Merged tokens per attention window of a gh x gw merged grid cut into window x window tiles
    (edge tiles smaller), as Qwen2.5-VL's windowed blocks attend."""
    rows = [min(window, gh - r) for r in range(0, gh, window)]
    cols = [min(window, gw - c) for c in range(0, gw, window)]
    return [r * c for r in rows for c in cols]


# -- phases --------------------------------------------------------------------------------------------


def vision_flops(s: ModelShapes, grid_thw: tuple[int, int, int]) -> dict[str, int]:
    """One image through the tower (once per image): {"linear", "attention"} FLOPs."""
    t, h, w = grid_thw
    n = t * h * w  # patches
    m2 = s.merge * s.merge
    full = n * n
    if s.v_window:
        windowed = t * sum((k * m2) ** 2 for k in window_sizes(h // s.merge, w // s.merge, s.v_window))
    else:
        windowed = full
    pairs = sum(full if b in s.v_full_blocks else windowed for b in range(s.v_blocks))
    return {"linear": 2 * n * (s.v_patch + s.v_linear) + 2 * (n // m2) * s.v_merged, "attention": 4 * s.v_dim * pairs}


def prefill_flops(s: ModelShapes, prompt: int) -> dict[str, int]:
    """One group's prompt (image tokens included) into the KV cache; logits at its last position."""
    return {"linear": 2 * prompt * (s.lm_linear + s.lora) + 2 * s.head,
            "attention": 4 * s.attn_dim * s.layers * causal_pairs(prompt)}


def decode_flops(s: ModelShapes, prompt: int, completion: int) -> dict[str, int]:
    """One rollout of `completion` sampled tokens: all but the last are fed, one at a time."""
    fed = max(completion - 1, 0)
    keys = sum(prompt + k + 1 for k in range(fed))  # the k-th fed token attends the prompt and k+1 tokens
    return {"linear": 2 * fed * (s.lm_linear + s.lora + s.head), "attention": 4 * s.attn_dim * s.layers * keys}


def train_flops(s: ModelShapes, prefix: int, suffixes: list[int], head_positions: int | None = None) -> dict[str, int]:
    """Forward and backward of one packed group (frozen base, LoRA trained). `head_positions`:
    positions whose logits the loss needs (default: the prefix's last + every suffix position).
    {"forward_linear", "forward_attention", "backward_linear", "backward_attention"} FLOPs."""
    N = prefix + sum(suffixes)
    H = (1 + sum(suffixes)) if head_positions is None else head_positions
    attn = 4 * s.attn_dim * s.layers * packed_pairs(prefix, suffixes)
    return {
        "forward_linear": 2 * N * (s.lm_linear + s.lora) + 2 * H * s.head,
        "forward_attention": attn,
        "backward_linear": (2 * N * (s.lm_linear - s.lm_first_qkv)  # input gradients of the frozen linears
                            + 2 * 2 * N * s.lora - 2 * N * s.lora_first_a  # LoRA: weight and input gradients
                            + 2 * H * s.head),  # head: input gradient only
        "backward_attention": 2 * attn,  # dS -> dQ, dK; dO -> dV, dP
    }


def grpo_step_flops(s: ModelShapes, grids: list[tuple[int, int, int]], prompt: int, group: int,
                    completion: int) -> dict[str, int]:
    """Minimal FLOPs per phase of one GRPO step: one image and prompt per group (`grids` has one
    entry per group), `group` rollouts of exactly `completion` tokens, every rollout trained on
    (datum = prompt + completion[:-1], targets shifted by one)."""
    B = len(grids)
    out = {
        "vision": sum(sum(vision_flops(s, g).values()) for g in grids),
        "prefill": B * sum(prefill_flops(s, prompt).values()),
        "decode": B * group * sum(decode_flops(s, prompt, completion).values()),
        "train": B * sum(train_flops(s, prompt, [completion - 1] * group).values()),
    }
    out["step"] = sum(out.values())
    return out


# -- the machine's matmul peak --------------------------------------------------------------------


def matmul_peak(dtype: torch.dtype = torch.float32, device: str = "cpu", shapes=((1024, 1024, 1024),),
                repeats: int = 5) -> dict:
    """Best GFLOP/s of plain matmuls on the calling thread settings (so it shares the benchmark's
    torch.set_num_threads): the peak a step's FLOPs are measured against; `gflops_cpu` per
    process CPU second (on CPU: what a step's CPU seconds are compared with)."""
    best, best_cpu = {}, {}
    for m, k, n in shapes:
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        a @ b  # warm-up (allocation, kernel selection)
        times, cpu_times = [], []
        for _ in range(repeats):
            if device != "cpu":
                torch.cuda.synchronize()
            t0, c0 = time.perf_counter(), time.process_time()
            a @ b
            if device != "cpu":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
            cpu_times.append(time.process_time() - c0)
        best[f"{m}x{k}x{n}"] = round(2 * m * k * n / min(times) / 1e9, 1)
        best_cpu[f"{m}x{k}x{n}"] = round(2 * m * k * n / max(min(cpu_times), 1e-9) / 1e9, 1)
    return {"gflops": max(best.values()), "by_shape": best, "gflops_cpu": max(best_cpu.values()),
            "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads()}
