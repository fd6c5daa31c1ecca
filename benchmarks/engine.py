"""LocalEngine vs plain transformers on the same model, in the same run.

Sampling: 8 samples x 32 tokens for one 448 px image. Ours prefills image + prompt once and
repeats the KV cache; the peer is HF `generate(num_return_sequences=8)`, which expands the
inputs and runs the vision tower and the prefill 8 times.
Training: one LoRA step on those 8 sequences (importance-sampling loss) vs the peer's plain
PEFT forward(labels) + backward + AdamW step on the same padded batch.

Prints ONE JSON line. Usage: python benchmarks/engine.py [--family qwen2_5_vl] [--sizes tiny,small] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch
from PIL import Image

from geospot import prompts
from geospot.engines.config import EngineConfig
from geospot.engines.datums import make_datum
from geospot.engines.local import LocalEngine
from geospot.engines.types import AdamParams, SampleParams

G, MAX_TOKENS, PX = 8, 32, 448


def _best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def bench(family: str, size: str, repeats: int) -> dict:
    torch.manual_seed(0)
    engine = LocalEngine(EngineConfig(model_name=f"tiny:{family}:{size}", lora_rank=8, max_pixels=PX * PX))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (PX, PX, 3), dtype=np.uint8))
    prompt = engine.renderer.generation_prompt([prompts.user_message(image, prompts.SINGLE_TURN_PROMPT)])
    never_stop = SampleParams(max_tokens=MAX_TOKENS, seed=0, stop=(-1,))  # exactly 32 tokens each, like the peer

    ours_sample = _best(lambda: engine.sample([prompt], G, never_stop), repeats)

    # the peer: HF generate on the very same (PEFT-wrapped) model and inputs
    batch = engine._batch([prompt], left_pad=True)
    kw = batch.model_kwargs()
    kw.pop("position_ids")  # generate computes its own mrope positions from mm_token_type_ids
    kw["mm_token_type_ids"] = (batch.input_ids == engine.renderer.image_pad_id).int()

    def hf_generate():
        with torch.no_grad():
            return engine.model.generate(**kw, do_sample=True, num_return_sequences=G, max_new_tokens=MAX_TOKENS,
                                         min_new_tokens=MAX_TOKENS, temperature=1.0, top_p=1.0, top_k=0,
                                         pad_token_id=engine.pad_id)

    hf_sample = _best(hf_generate, repeats)

    # training: one LoRA step on the 8 sampled sequences
    seqs = engine.sample([prompt], G, never_stop)[0]
    datums = []
    for i, s in enumerate(seqs):
        full = prompt.append_tokens(s.tokens)
        q = np.concatenate([np.zeros(prompt.length), s.logprobs]).astype(np.float32)
        a = np.concatenate([np.zeros(prompt.length), np.full(len(s.tokens), (-1) ** i)]).astype(np.float32)
        datums.append(make_datum(full, logprobs=q, advantages=a))
    adam = AdamParams(learning_rate=1e-5)
    before = (engine.tokens.needed, engine.tokens.processed)
    ours_train = _best(lambda: engine.train_step(datums, "importance_sampling", adam), repeats)
    train_eff = (engine.tokens.needed - before[0]) / (engine.tokens.processed - before[1])
    engine.shared_prefix = False  # our own naive batch, for the split of the gain
    ours_naive_train = _best(lambda: engine.train_step(datums, "importance_sampling", adam), repeats)
    engine.shared_prefix = True

    full_batch = engine._batch([prompt.append_tokens(s.tokens) for s in seqs], left_pad=False)
    fkw = full_batch.model_kwargs()
    fkw.pop("position_ids")
    fkw["mm_token_type_ids"] = (full_batch.input_ids == engine.renderer.image_pad_id).int()
    labels = full_batch.input_ids.clone()
    labels[:, : prompt.length] = -100
    opt = torch.optim.AdamW([p for p in engine.model.parameters() if p.requires_grad], lr=1e-5)

    def hf_train():
        engine.model.base_model.model.model.rope_deltas = None  # stale deltas from generate would break the forward
        out = engine.model(**fkw, labels=labels)
        out.loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    hf_train_s = _best(hf_train, repeats)
    n_params = sum(p.numel() for p in engine.model.parameters())
    return {
        "size": size, "params": n_params, "prompt_tokens": prompt.length,
        "ours_sample_s": round(ours_sample, 4), "hf_generate_s": round(hf_sample, 4),
        "sample_speedup_vs_hf_generate": round(hf_sample / ours_sample, 3),
        "ours_train_step_s": round(ours_train, 4), "hf_peft_train_step_s": round(hf_train_s, 4),
        "train_speedup_vs_hf_peft": round(hf_train_s / ours_train, 3),
        "ours_naive_batch_train_step_s": round(ours_naive_train, 4),
        "ours_train_token_efficiency": round(train_eff, 4),
        # the peers run the prompt once per sample: needed (P + G*32) over processed G*(P + 32)
        "hf_token_efficiency": round((prompt.length + G * MAX_TOKENS) / (G * (prompt.length + MAX_TOKENS)), 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--family", default="qwen2_5_vl")
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    rows = [bench(args.family, s, args.repeats) for s in args.sizes.split(",")]
    print(json.dumps({
        "benchmark": "engine", "family": args.family, "samples": G, "max_tokens": MAX_TOKENS, "image_px": PX,
        "peer": "transformers generate / PEFT forward+backward on the same model",
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(), "results": rows,
        "ratio": rows[-1]["sample_speedup_vs_hf_generate"],  # sampling, largest size; training ratio in results
        "train_ratio": rows[-1]["train_speedup_vs_hf_peft"],
    }))


if __name__ == "__main__":
    main()
