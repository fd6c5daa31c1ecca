"""LocalEngine vs plain transformers on the same model, in the same run.

Sampling: 8 samples x 32 tokens for one 448 px image. Ours prefills image + prompt once and
repeats the KV cache; the peer is HF `generate(num_return_sequences=8)`, which expands the
inputs and runs the vision tower and the prefill 8 times.
Training: one LoRA step on those 8 sequences (importance-sampling loss) vs the peer's plain
PEFT forward(labels) + backward + AdamW step on the same padded batch.
Telescoping: 3 sampling turns (8 rollouts, then each rollout's continuation) with the KV cache
kept across sample() calls vs rebuilt every turn (engine.kv_reuse off; the peer), same run:
prefill tokens processed and wall time for the 3 turns.
Decode fixed cost (issue 24): for rows r in 1, 2, 4, 8, 16 (one prompt, r samples) the CPU time of
one decode step is (sample(40 tokens) - sample(8 tokens)) / 32 (the prefill cancels); a least-squares
line over r gives the fixed cost per step (ms, its intercept: Python, module and launch overhead
that does not scale with rows) and the cost per row (ms). CPU time, not wall: on a shared box other
processes' slices would swamp a few milliseconds.

Prints ONE JSON line. Usage: python benchmarks/engine.py [--family qwen2_5_vl] [--sizes tiny,small] [--repeats 3]
[--only-telescoping] [--only-decode-sweep [--lever functional_decode]]
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
from geospot.jsonutil import finite_json

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
    engine.kv_reuse = False  # repeats of one prompt would reuse its KV: not the peer's job (telescoping() turns it on)
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (PX, PX, 3), dtype=np.uint8))
    prompt = engine.renderer.generation_prompt([prompts.user_message(image, prompts.SINGLE_TURN_PROMPT)])
    never_stop = SampleParams(max_tokens=MAX_TOKENS, seed=0, stop=(-1,))  # exactly 32 tokens each, like the peer

    ours_sample = _best(lambda: engine.sample([prompt], G, never_stop), repeats)
    sweep = decode_sweep(engine, prompt, repeats)

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
    tele = telescoping(
        engine,
        engine.renderer.generation_prompt([prompts.user_message(image, prompts.TELESCOPING_PROMPTS[0])]),
        repeats,
    )
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
        **sweep, **tele,
    }


def _best_cpu(fn, repeats: int) -> float:
    """Min process CPU seconds of fn: other processes' slices on a shared box do not count."""
    times = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return min(times)


def decode_sweep(engine: LocalEngine, prompt, repeats: int, rows=(1, 2, 4, 8, 16), short: int = 8,
                 long: int = 40, lever: str | None = None) -> dict:
    """Per-step decode CPU time for each row count, and the line through them: fixed ms + ms per row.
    With `lever` (an engine switch, e.g. functional_decode): the sweep with it off and on, the two
    alternating inside each repeat (a shared CPU's load drifts), keys suffixed _off / _on."""
    settings = (None,) if lever is None else (False, True)
    step_ms: dict = {on: {} for on in settings}
    for r in rows:
        best = {(on, n): np.inf for on in settings for n in (short, long)}
        for _ in range(repeats):
            for on in settings:
                if lever is not None:
                    setattr(engine, lever, on)
                for n in (short, long):
                    best[on, n] = min(best[on, n], _best_cpu(
                        lambda n=n, r=r: engine.sample([prompt], r, SampleParams(max_tokens=n, seed=0, stop=(-1,))), 1))
        for on in settings:
            step_ms[on][r] = (best[on, long] - best[on, short]) / (long - short) * 1e3
    if lever is not None:
        setattr(engine, lever, True)
    out = {}
    for on in settings:
        x, y = np.array(list(step_ms[on]), float), np.array(list(step_ms[on].values()))
        per_row, fixed = np.polyfit(x, y, 1)
        sfx = "" if on is None else ("_on" if on else "_off")
        out.update({f"decode_step_cpu_ms_by_rows{sfx}": {str(r): round(v, 3) for r, v in step_ms[on].items()},
                    f"decode_fixed_ms_per_step{sfx}": round(float(fixed), 3),
                    f"decode_ms_per_row{sfx}": round(float(per_row), 3)})
    return out


def decode_sweep_only(family: str, size: str, repeats: int, lever: str | None = None) -> dict:
    engine = LocalEngine(EngineConfig(model_name=f"tiny:{family}:{size}", lora_rank=8, max_pixels=PX * PX))
    engine.kv_reuse = False
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (PX, PX, 3), dtype=np.uint8))
    prompt = engine.renderer.generation_prompt([prompts.user_message(image, prompts.SINGLE_TURN_PROMPT)])
    return {"size": size, "prompt_tokens": prompt.length, **decode_sweep(engine, prompt, repeats, lever=lever)}


def telescoping(engine: LocalEngine, prompt, repeats: int, turns: int = 3) -> dict:
    """3 telescoping sampling turns: G rollouts of the image prompt, then every rollout's
    continuation (its sampled tokens + the next user turn). Reuse ON keeps each turn's KV for the
    next; OFF prefills each turn's prompts again (image + first turn once per group, then each
    rollout's own part). Same seeds -> same tokens; prefill tokens processed and wall time."""
    never_stop = SampleParams(max_tokens=MAX_TOKENS, seed=0, stop=(-1,))

    def run() -> None:
        engine.kv_store.clear()
        current = [prompt]
        out = engine.sample(current, G, never_stop)
        seqs, current = out[0], [prompt] * G
        for turn in range(1, turns):
            user = [prompts.user_message(None, prompts.TELESCOPING_PROMPTS[turn].format(prev="(10.0, 20.0)"))]
            current = [engine.renderer.continuation(p, s.tokens, user) for p, s in zip(current, seqs)]
            seqs = [g[0] for g in engine.sample(current, 1, never_stop)]

    result, times = {}, {"off": [], "on": []}
    for name, on in (("off", False), ("on", True)):
        engine.kv_reuse = on
        before = engine.tokens.by_kind.get("prefill", [0, 0])[1]
        run()
        result[f"telescoping_prefill_processed_{name}"] = engine.tokens.by_kind["prefill"][1] - before
    for _ in range(repeats):  # alternate on/off, min of each: a shared CPU's load drifts
        for name, on in (("off", False), ("on", True)):
            engine.kv_reuse = on
            t0 = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - t0)
    for name in times:
        result[f"telescoping_3turn_s_{name}"] = round(min(times[name]), 4)
    engine.kv_reuse = True
    result["telescoping_speedup_kv_reuse"] = round(
        result["telescoping_3turn_s_off"] / result["telescoping_3turn_s_on"], 3
    )
    return result


def telescoping_only(family: str, size: str, repeats: int) -> dict:
    engine = LocalEngine(EngineConfig(model_name=f"tiny:{family}:{size}", lora_rank=8, max_pixels=PX * PX))
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (PX, PX, 3), dtype=np.uint8))
    prompt = engine.renderer.generation_prompt([prompts.user_message(image, prompts.TELESCOPING_PROMPTS[0])])
    return {"size": size, "prompt_tokens": prompt.length, **telescoping(engine, prompt, repeats)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--family", default="qwen2_5_vl")
    ap.add_argument("--sizes", default="tiny,small")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--only-telescoping", action="store_true", help="just the 3-turn KV-reuse measurement")
    ap.add_argument("--only-decode-sweep", action="store_true", help="just the decode fixed cost (rows sweep)")
    ap.add_argument("--lever", default=None, help="with --only-decode-sweep: an engine switch (e.g. functional_decode) "
                                                  "swept off and on, alternating")
    args = ap.parse_args()
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    if args.only_decode_sweep:
        rows = [decode_sweep_only(args.family, s, args.repeats, args.lever) for s in args.sizes.split(",")]
        sfx = "" if args.lever is None else "_on"
        print(json.dumps(finite_json({"benchmark": "engine_decode_sweep", "family": args.family, "image_px": PX,
                          "lever": args.lever,
                          "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
                          "threads": torch.get_num_threads(), "results": rows,
                          "decode_fixed_ms_per_step": rows[-1][f"decode_fixed_ms_per_step{sfx}"]})))
        return
    if args.only_telescoping:
        rows = [telescoping_only(args.family, s, args.repeats) for s in args.sizes.split(",")]
        print(
            json.dumps(
                finite_json({
                    "benchmark": "engine_telescoping",
                    "family": args.family,
                    "samples": G,
                    "max_tokens": MAX_TOKENS,
                    "image_px": PX,
                    "turns": 3,
                    "peer": "the same engine with kv_reuse off",
                    "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
                    "threads": torch.get_num_threads(),
                    "results": rows,
                    "ratio": rows[-1]["telescoping_speedup_kv_reuse"],
                })
            )
        )
        return
    rows = [bench(args.family, s, args.repeats) for s in args.sizes.split(",")]
    print(json.dumps(finite_json({
        "benchmark": "engine", "family": args.family, "samples": G, "max_tokens": MAX_TOKENS, "image_px": PX,
        "peer": "transformers generate / PEFT forward+backward on the same model",
        "device": "cpu" if not torch.cuda.is_available() else torch.cuda.get_device_name(),
        "threads": torch.get_num_threads(), "results": rows,
        "ratio": rows[-1]["sample_speedup_vs_hf_generate"],  # sampling, largest size; training ratio in results
        "train_ratio": rows[-1]["train_speedup_vs_hf_peft"],
        "decode_fixed_ms_per_step": rows[-1]["decode_fixed_ms_per_step"],
    })))


if __name__ == "__main__":
    main()
