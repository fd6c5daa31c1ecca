"""Each speed lever of issue 24, on and off, in ONE process on the default GRPO step's work.

The step of benchmarks/grpo_step.py (tiny:qwen2_5_vl:small, 2 images x 8 rollouts of 24 tokens,
448 px, LoRA rank 8): sampling (`engine.sample`, KV reuse off) and training
(`engine.forward_backward` on those rollouts). For each lever the phase it acts on runs with the
lever off and on, alternating, `--repeats` times each; the minimum of each is kept (a shared
CPU's load drifts; alternating puts both sides under the same drift). CPU seconds are the headline
(other processes' slices do not count), wall seconds are reported too. Finally all levers off vs
all on for sample + train.

Levers (switches on the engine, each tested equal to its off state in tests/engines/):
- reserve_kv: decode into a KV cache with its room reserved (kv_cache.py) vs DynamicCache's
  per-step concatenation;
- lean_decode: decode steps straight through the layers (decode_step.py) vs the model's forward;
- functional_decode: the decode step's layers as tensor operations on their weights
  (decode_layers.py) vs the layer modules (both under lean_decode);
- lean_lora: the lean LoRA forward (lean_lora.py) vs PEFT's;
- packed_attention: packed training rows attend only the needed blocks (packed_attention.py) vs
  SDPA under a dense block mask;
- shared_prefix_decode: decode reads each prompt's KV once for its G samples (prefix_decode.py) vs
  attending a cache repeated G times (reserve_kv's);
- lora_backward: the lean LoRA linears' backward written out (lean_lora.py's LoraSum and LoraLinear:
  the rank-r matmuls in the orientation MKL runs fast, the middle's input gradient added in place)
  vs autograd's backward of the same forward (adapters in the base's dtype; a bf16 base with fp32
  adapters takes PEFT's casts and autograd either way);
- shared_lora_input: q/k/v and gate/up take their LoRA middles from one matmul (lean_lora.py's
  SharedInput) vs one each;
- patch_linear: the vision tower's patch embedding as a matmul (patch_linear.py) vs the Conv3d,
  timed on the vision tower alone (sampling hits the image feature cache);
- head_at_trained_positions: training runs the vocabulary-wide head with gradient only where the
  loss has one (target_head.py) vs at every target position.

Prints ONE JSON line (`ratio`: the last lever measured, by default all together). Usage:
python benchmarks/levers.py [--repeats 3] [--only functional_decode,lean_decode]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from geospot import prompts
from geospot.data import load_samples
from geospot.engines import lean_lora, packed_attention, patch_linear
from geospot.engines.config import EngineConfig
from geospot.engines.datums import make_datum
from geospot.engines.local import LocalEngine
from geospot.engines.types import SampleParams
from geospot.jsonutil import finite_json

B, G, MAX_TOKENS, PX = 2, 8, 24, 448


def _switch(engine: LocalEngine, lever: str, on: bool) -> None:
    if lever == "reserve_kv":
        engine.reserve_kv = on
    elif lever == "lean_decode":
        engine.lean_decode = on
    elif lever == "functional_decode":
        engine.functional_decode = on
    elif lever == "lean_lora":
        lean_lora.install(engine.model) if on else lean_lora.uninstall(engine.model)
    elif lever == "shared_prefix_decode":
        engine.shared_prefix_decode = on
    elif lever == "lora_backward":
        lean_lora.hand_backward(engine.model, on)
    elif lever == "shared_lora_input":
        lean_lora.share_inputs(engine.model, on)
    elif lever == "patch_linear":
        patch_linear.install(engine.model) if on else patch_linear.uninstall(engine.model)
    elif lever == "head_at_trained_positions":
        engine.head_at_trained_positions = on
    elif lever == "packed_attention":
        text = engine.model.get_base_model().config.get_text_config()
        text._attn_implementation = packed_attention.NAME if on else "sdpa"
    else:
        raise ValueError(lever)


def _timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def ab(engine: LocalEngine, levers: list[str], fn, repeats: int, fixed: dict | None = None) -> dict:
    """Min (wall, CPU) seconds of fn with `levers` off and on, alternating (`fixed`: other levers
    held at these settings meanwhile, then back on)."""
    for lever, on in (fixed or {}).items():
        _switch(engine, lever, on)
    best = {False: [np.inf, np.inf], True: [np.inf, np.inf]}
    for _ in range(repeats):
        for on in (False, True):
            for lever in levers:
                _switch(engine, lever, on)
            w, c = _timed(fn)
            best[on] = [min(best[on][0], w), min(best[on][1], c)]
    for lever in [*levers, *(fixed or {})]:
        _switch(engine, lever, True)
    return {"off_s": round(best[False][0], 4), "on_s": round(best[True][0], 4),
            "off_cpu_s": round(best[False][1], 4), "on_cpu_s": round(best[True][1], 4),
            "gain_cpu": round(best[False][1] / best[True][1], 3), "gain_wall": round(best[False][0] / best[True][0], 3)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--only", default="", help="comma-separated levers to measure (default: all, then all together)")
    args = ap.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    engine = LocalEngine(EngineConfig(model_name=args.model, lora_rank=8, lora_alpha=32.0, max_pixels=PX * PX, seed=0))
    engine.kv_reuse = False  # every repeat does the whole sampling work
    samples = load_samples("synthetic:n=64,size=448,seed=0", split="train", n=B)
    prompts_B = [engine.renderer.generation_prompt([prompts.user_message(s.image, prompts.SINGLE_TURN_PROMPT)])
                 for s in samples]
    params = SampleParams(max_tokens=MAX_TOKENS, stop=(-1,), seed=0)
    seqs = engine.sample(prompts_B, G, params)
    datums = []
    for p, group in zip(prompts_B, seqs):
        for j, s in enumerate(group):
            q = np.concatenate([np.zeros(p.length), s.logprobs]).astype(np.float32)
            a = np.concatenate([np.zeros(p.length), np.full(len(s.tokens), j - (G - 1) / 2)]).astype(np.float32)
            datums.append(make_datum(p.append_tokens(s.tokens), logprobs=q, advantages=a))

    def sample():
        engine.sample(prompts_B, G, params)

    def train():
        engine.forward_backward(datums, "importance_sampling")
        engine.model.zero_grad(set_to_none=True)

    def step():
        sample()
        train()

    visual = engine.model.get_base_model().model.visual
    pixels, grid = engine.renderer.image_processor([s.image for s in samples])

    @torch.no_grad()
    def vision():
        visual(pixels, grid_thw=grid)

    train()  # warm-up
    # each lever's measurement, run only if asked for (--only): a full run takes minutes
    runs = {
        "shared_prefix_decode": lambda: {"phase": "sample",
                                         **ab(engine, ["shared_prefix_decode"], sample, args.repeats)},
        "patch_linear": lambda: {"phase": "vision", **ab(engine, ["patch_linear"], vision, args.repeats)},
        # these two act on the repeated cache: measured with the shared-prefix decode off
        "reserve_kv": lambda: {"phase": "sample", **ab(engine, ["reserve_kv"], sample, args.repeats,
                                                       fixed={"shared_prefix_decode": False})},
        "lean_decode": lambda: {"phase": "sample", **ab(engine, ["lean_decode"], sample, args.repeats,
                                                        fixed={"shared_prefix_decode": False})},
        "functional_decode": lambda: {"phase": "sample", **ab(engine, ["functional_decode"], sample, args.repeats)},
        "lean_lora": lambda: {"phase": "sample+train", **ab(engine, ["lean_lora"], step, args.repeats)},
        "shared_lora_input": lambda: {"phase": "sample+train", **ab(engine, ["shared_lora_input"], step, args.repeats)},
        "packed_attention": lambda: {"phase": "train", **ab(engine, ["packed_attention"], train, args.repeats)},
        "lora_backward": lambda: {"phase": "train", **ab(engine, ["lora_backward"], train, args.repeats)},
        "head_at_trained_positions": lambda: {"phase": "train",
                                              **ab(engine, ["head_at_trained_positions"], train, args.repeats)},
        "all": lambda: {"phase": "sample+train",
                        **ab(engine, ["reserve_kv", "lean_decode", "functional_decode", "lean_lora", "lora_backward",
                                      "packed_attention",
                                      "shared_prefix_decode", "shared_lora_input", "patch_linear"], step,
                             args.repeats)},
    }
    only = args.only.split(",") if args.only else list(runs)
    unknown = [n for n in only if n not in runs]
    if unknown:
        raise SystemExit(f"--only {','.join(unknown)}: unknown lever; choose from {','.join(runs)}")
    res = {name: runs[name]() for name in only}
    print(json.dumps(finite_json({"benchmark": "levers", "model": args.model, "images": B, "group_size": G,
                      "completion_tokens": MAX_TOKENS, "threads": torch.get_num_threads(), "repeats": args.repeats,
                      "peer": "the same engine with the lever off, alternating in one process",
                      "prompt_tokens": prompts_B[0].length, "levers": res,
                      "ratio": res[only[-1]]["gain_cpu"]})))


if __name__ == "__main__":
    main()
