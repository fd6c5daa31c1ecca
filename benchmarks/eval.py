"""Greedy eval throughput on the small tiny model: batched (one engine.sample call per
batch) vs one-by-one (batch_size=1), same images, same engine, same run.

The untrained tiny model would emit its stop token at once, so the answers are forced to
the full `max_tokens` (stop on a token id that never occurs): every image then costs what
a trained model's ~20-token answer costs.

    python benchmarks/eval.py [--n 32] [--batch 16] [--model tiny:qwen2_5_vl:small]

Prints ONE JSON line; `ratio` = batched images/s over one-by-one images/s."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from geospot.jsonutil import finite_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=32, help="images per measurement")
    ap.add_argument("--batch", type=int, default=16, help="batch size of the batched run")
    ap.add_argument("--max-tokens", type=int, default=24)
    ap.add_argument("--model", default="tiny:qwen2_5_vl:small")
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)

    import torch

    from geospot.data.synthetic import cached_world
    from geospot.engines import EngineConfig, make_engine
    from geospot.engines.types import SampleParams
    from geospot.eval import evaluate

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    try:
        engine = make_engine(EngineConfig(model_name=args.model, lora_rank=0, device=args.device))
    except (ValueError, OSError) as e:  # a model name that does not build: its sentence, not a traceback
        ap.error(f"--model {args.model}: {e}")
    world = cached_world()
    samples = [world.sample(i) for i in range(args.n)]
    greedy_full = SampleParams(max_tokens=args.max_tokens, temperature=0.0, stop=(-1,))

    evaluate(engine, samples[:2], batch_size=2, sampling=greedy_full)  # warm-up (allocations, lazy init)

    def timed(batch_size: int) -> tuple[float, list]:
        t0 = time.perf_counter()
        res = evaluate(engine, samples, batch_size=batch_size, sampling=greedy_full)
        return time.perf_counter() - t0, res.predictions

    t_one, preds_one = timed(1)
    t_batch, preds_batch = timed(args.batch)
    # Same model, greedy: batching must not change the answers (left padding is masked).
    same = sum(a.raw_text == b.raw_text for a, b in zip(preds_one, preds_batch))
    out = {
        "benchmark": "eval",
        "model": args.model,
        "device": str(engine.device) if hasattr(engine, "device") else args.device,
        "threads": torch.get_num_threads(),
        "n_images": args.n,
        "max_tokens": args.max_tokens,
        "batch_size": args.batch,
        "batched_images_per_s": round(args.n / t_batch, 3),
        "one_by_one_images_per_s": round(args.n / t_one, 3),
        "peer": "one_by_one (batch_size=1)",
        "ratio": round(t_one / t_batch, 3),
        "identical_answers": f"{same}/{args.n}",
    }
    print(json.dumps(finite_json(out)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
