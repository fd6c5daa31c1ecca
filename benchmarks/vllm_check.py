"""The vLLM sampler on a GPU: logprobs vs the trainer, LoRA sync, and speed vs our torch sampler.

Run by hand on a machine with a CUDA GPU and `pip install -e '.[vllm]'` (never in tests):

    python benchmarks/vllm_check.py [--model tiny:qwen2_5_vl:small] [--images 4] [--samples 8]
                                    [--max-tokens 24] [--lora-rank 32] [--lr 1e-3] [--steps 2]

1. engine = make_engine(EngineConfig(..., sampler="vllm")): the local trainer plus vLLM.
2. check_logprobs at step 0 (fresh adapter, B = 0): vLLM's sampled-token logprobs vs the
   trainer's `forward` on the same tokens, and whether vLLM expanded each prompt to exactly the
   trainer's tokens (same image grids).
3. `--steps` SFT steps (cross-entropy on the true answers) move the LoRA weights; check again.
   `trainer_shift` is how far those steps moved the trainer's own logprobs on the step-0
   samples: a sync that served a stale adapter would show diffs of that size, a working one
   stays at the step-0 level.
4. rollouts/s of vLLM vs the torch sampler (the named peer), same prompts, same run.

Prints ONE JSON line; `ok` is true when vLLM's prompts match the trainer's tokens, both mean
|logprob diff| are under --tol, and the post-training diff is well under `trainer_shift`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from geospot.jsonutil import finite_json


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--images", type=int, default=4)
    ap.add_argument("--samples", type=int, default=8)
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--lora-rank", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--px", type=int, default=448)
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--gpu-memory", type=float, default=0.35)
    ap.add_argument(
        "--tol",
        type=float,
        default=0.02,
        help="mean |logprob diff| accepted (bf16 kernels differ by ~1e-3..1e-2; use --dtype float32 for a tight check)",
    )
    args = ap.parse_args(argv)
    result: dict = {"benchmark": "vllm_check", "model": args.model, "peer": "torch sampler (LocalEngine.sample)"}
    try:
        result.update(run(args))
    except Exception as e:  # one JSON line whatever happens: the person running it pastes it back
        result.update(ok=False, error=f"{type(e).__name__}: {e}")
    print(json.dumps(finite_json(result)))
    return 0 if result.get("ok") else 1


def run(args) -> dict:
    import numpy as np
    import torch

    from geospot import prompts
    from geospot.data import load_samples
    from geospot.engines import EngineConfig, make_engine
    from geospot.engines.datums import make_datum
    from geospot.engines.types import AdamParams, SampleParams
    from geospot.engines.vllm_sampler import check_logprobs

    cfg = EngineConfig(
        model_name=args.model,
        sampler="vllm",
        device="cuda",
        dtype=args.dtype,
        lora_rank=args.lora_rank,
        lora_alpha=float(args.lora_rank),
        max_pixels=args.px * args.px,
        vllm_gpu_memory_utilization=args.gpu_memory,
    )
    cfg.validate()  # what this machine lacks for vLLM (a CUDA GPU, the package), each with its fix
    import vllm

    out: dict = {"vllm": vllm.__version__, "torch": torch.__version__,
                 "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    t0 = time.perf_counter()
    engine = make_engine(cfg)
    out["startup_s"] = round(time.perf_counter() - t0, 1)
    r = engine.renderer
    samples = load_samples(f"synthetic:n={args.images},size={args.px},seed=0", split="train", n=args.images)
    if len(samples) < args.images:
        raise RuntimeError(f"synthetic data gave {len(samples)} images, asked for {args.images}")
    prompts_ = [r.generation_prompt([prompts.user_message(s.image, prompts.SINGLE_TURN_PROMPT)]) for s in samples]
    params = SampleParams(max_tokens=args.max_tokens, temperature=1.0, seed=0)

    out["step0"] = check_logprobs(engine, prompts_, args.samples, params)
    # the step-0 samples, rescored after training: how far the steps moved the trainer
    groups0 = engine.sample(prompts_, 2, params)
    seqs0 = [(mi, s) for mi, g in zip(prompts_, groups0) for s in g if s.tokens]
    before = engine.forward([make_datum(mi.append_tokens(s.tokens)) for mi, s in seqs0])
    sft = []
    for s in samples:
        full, w = r.supervised_example([prompts.user_message(s.image, prompts.SINGLE_TURN_PROMPT),
                                        prompts.assistant_message(prompts.format_answer(s.lat, s.lon))])
        sft.append(make_datum(full, weights=w))
    for _ in range(args.steps):
        engine.forward_backward(sft, "cross_entropy")
        engine.optim_step(AdamParams(learning_rate=args.lr))
    after = engine.forward([make_datum(mi.append_tokens(s.tokens)) for mi, s in seqs0])
    out["trainer_shift"] = float(
        np.mean([np.abs(a[mi.length - 1 :] - b[mi.length - 1 :]).mean() for (mi, _), a, b in zip(seqs0, after, before)])
    )
    out["after_steps"] = check_logprobs(engine, prompts_, args.samples, params)
    out["lora_version"] = engine.sampler.version

    def sync():
        if torch.cuda.is_available():
            torch.cuda.synchronize()

    def rate(sample_fn) -> float:
        sample_fn(prompts_, args.samples, params)  # warm-up (compilation, caches)
        sync()
        t = time.perf_counter()
        sample_fn(prompts_, args.samples, SampleParams(max_tokens=args.max_tokens, temperature=1.0, seed=1))
        sync()
        return len(prompts_) * args.samples / (time.perf_counter() - t)

    out["vllm_rollouts_per_s"] = round(rate(engine.sample), 2)
    out["torch_rollouts_per_s"] = round(rate(engine.inner.sample), 2)
    out["ratio_vllm_vs_torch"] = round(out["vllm_rollouts_per_s"] / out["torch_rollouts_per_s"], 2)
    # synced: after training, vLLM agrees with the trainer about as well as at step 0, far better
    # than a stale adapter would (which would be off by about trainer_shift)
    out["sync_ok"] = bool(out["after_steps"]["mean_abs_diff"] < max(args.tol, 0.5 * out["trainer_shift"]))
    out["ok"] = bool(out["step0"]["prompts_match"] and out["after_steps"]["prompts_match"] and out["sync_ok"]
                     and out["step0"]["mean_abs_diff"] < args.tol and out["after_steps"]["mean_abs_diff"] < args.tol)
    engine.close()
    return out


if __name__ == "__main__":
    sys.exit(main())
