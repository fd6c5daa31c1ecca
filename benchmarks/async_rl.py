"""Async GRPO (issue 21): does sampling the next step while this one trains pay, and what does the
staleness cost? Two parts, both through the real loop (geospot.train.rl.run):

1. Wall time per step, sync (max_steps_off_policy=0) vs k = 1 and k = 2, on an engine whose sample
   and train calls take the latencies of the original project's Tinker runs: 379-541 s per step at
   64 images x 16 rollouts (issue 21), each step's total drawn uniformly from that range (seeded,
   the same draws for every arm) and split sample:train by `--split` (the sample share), scaled
   by `--scale` (s of benchmark per s of Tinker). The engine is the scripted one
   (geospot.rl.testing.VersionedScriptedEngine) behind `LatencyEngine`: the latencies are sleeps,
   as remote calls are, so what is measured is the loop's scheduling, not 2 shared CPU cores.
   The original logs give the step total, not its split; the default 0.55 (sampling a little
   the longer: 2048 rollouts = a ~1k-token image prefill each plus a decode whose steps run one
   after another, vs one forward+backward pass over the same sequences) is an assumption, so
   `--sweep` also measures 0.3 / 0.5 / 0.7. With one sampler in flight a step of k >= 1 can take no
   less than max(sample, train): the ideal ratio is (S + T) / max(S, T) = 1 / max(share, 1 - share).

2. Learning: from one SFT warm start (tiny random Qwen2.5-VL, synthetic world, CPU; made here),
   `--quality-steps` GRPO steps at k = 0 and k = 1, then greedy held-out GeoScore on the same images
   (the loop's final eval). Goal: k = 1 within 10 % of k = 0. The start's GeoScore is printed too,
   so the reader sees how far GRPO moved either arm.

    python benchmarks/async_rl.py                  # ~20 min on 2 shared cores (13 of them the warm start)
    python benchmarks/async_rl.py --warm runs/sft  # GRPO from an SFT run of the same model and data
    python benchmarks/async_rl.py --skip-quality --sweep   # timing only, with the split sweep

One JSON line on stdout (the last line), a table on stderr. Results: docs/async.md."""

from __future__ import annotations

import argparse
import contextlib
import io
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

from geospot.jsonutil import finite_json  # noqa: E402

TINKER_STEP_S = (379.0, 541.0)  # the original project's Tinker step times (64 images x 16 rollouts)
MODEL = "tiny:qwen2_5_vl:tiny"
DATA = "synthetic:n=2000,size=56,seed=0"


class LatencyEngine:
    """`inner`'s sample and train calls, each taking the step's share of a Tinker step (a sleep)
    on top of its own time. Snapshot samplers sleep too, so async sampling waits as the sync one."""

    def __init__(self, inner, sample_s, train_s) -> None:
        self.inner, self.sample_s, self.train_s = inner, list(sample_s), list(train_s)  # per step
        self.renderer, self.lockstep = inner.renderer, inner.lockstep

    def _sleep_sample(self, params) -> None:
        step = (params.seed or 0) // 7919 % len(self.sample_s)  # the loop seeds step s's rollouts with s * 7919
        time.sleep(self.sample_s[step])

    def sample(self, prompts, num_samples, params):
        self._sleep_sample(params)
        return self.inner.sample(prompts, num_samples, params)

    def snapshot_sampler(self, keep: int = 1):
        from geospot.engines.snapshot import PinnedSampler

        snap = self.inner.snapshot_sampler(keep=keep)

        def sample(prompts, n, params):
            self._sleep_sample(params)
            return snap.sample(prompts, n, params)

        return PinnedSampler(sample, self.renderer)

    def train_step(self, datums, loss_fn, adam, loss_config=None):
        time.sleep(self.train_s[self.inner.version % len(self.train_s)])
        return self.inner.train_step(datums, loss_fn, adam, loss_config)

    def save_state(self, path: str) -> str:
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "version.json").write_text(json.dumps({"version": self.inner.version}))
        return path

    def load_state(self, path: str, with_optimizer: bool = True) -> None:
        self.inner.version = json.loads((Path(path) / "version.json").read_text())["version"]


def scripted_policy(prompt, i, version):
    from geospot.prompts import format_answer

    return format_answer(10.0 * (i % 4) - 15.0, 5.0 * i)  # spread answers: groups have reward spread, datums


def latencies(steps: int, split: float, scale: float, seed: int = 0) -> tuple[list[float], list[float]]:
    import random

    rng = random.Random(seed)
    totals = [rng.uniform(*TINKER_STEP_S) * scale for _ in range(steps)]
    return [t * split for t in totals], [t * (1 - split) for t in totals]


def timing_arm(k: int, steps: int, split: float, scale: float, tmp: Path) -> dict:
    """The real loop on a LatencyEngine; per-step wall from the metrics' timestamps."""
    from geospot import engines
    from geospot.rl.testing import VersionedScriptedEngine
    from geospot.runs.folder import read_jsonl
    from geospot.train.rl import RLConfig, run

    sample_s, train_s = latencies(steps, split, scale)
    original = engines.make_engine
    engines.make_engine = lambda cfg: LatencyEngine(VersionedScriptedEngine(scripted_policy), sample_s, train_s)
    log = tmp / f"timing-k{k}-{split}"
    cfg = RLConfig(model_name=MODEL, data=DATA, batch_size=8, group_size=4, max_steps=steps, max_tokens=32,
                   eval_every=0, eval_n=0, save_every=10**6, log_images_every=0, reward="kernel",
                   max_steps_off_policy=k, log_path=str(log), behavior_if_log_dir_exists="delete")
    try:
        t0 = time.perf_counter()
        with contextlib.redirect_stderr(io.StringIO()):
            run(cfg)
        total = time.perf_counter() - t0
    finally:
        engines.make_engine = original
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    stamps = [r["time"] for r in rows]
    per_step = [b - a for a, b in itertools.pairwise(stamps)][1:]  # step 1's own start is not logged; skip the fill-up
    return {"k": k, "split": split, "steps": len(rows), "wall_per_step_s": statistics.mean(per_step),
            "wall_per_step_sd": statistics.stdev(per_step) if len(per_step) > 1 else 0.0, "run_wall_s": total,
            "ideal_sync_s": statistics.mean([s + t for s, t in zip(sample_s, train_s)][2:]),
            # one sampler in flight: step s+1's sampling overlaps step s's training
            "ideal_overlap_s": statistics.mean(max(sample_s[i + 1], train_s[i]) for i in range(1, steps - 1)),
            "staleness_mean": statistics.mean(r.get("async/staleness_mean", 0.0) for r in rows),
            "datums_per_step": statistics.mean(r["datums"] for r in rows)}


def warm_start(tmp: Path, steps: int) -> Path:
    """benchmarks/rl_vs_sft.py's warm-start recipe (full fine-tuning of the random tiny model)."""
    from geospot.train.sft import SFTConfig, train

    log = tmp / "sft"
    train(SFTConfig(model_name=MODEL, lora_rank=0, device="cpu", data=DATA, eval_n=0, prompt_style="both",
                    answer_decimals=1, batch_size=32, learning_rate=3e-3, lr_schedule="cosine", warmup_steps=5,
                    max_steps=steps, save_every=0, eval_at_start=False, log_path=str(log),
                    behavior_if_log_dir_exists="delete"),
          stderr=io.StringIO())
    return log


def quality_arm(k: int, sft: Path, steps: int, seed: int, eval_n: int, tmp: Path) -> dict:
    from geospot.train.rl import RLConfig, run

    cfg = RLConfig(load_checkpoint_path=str(sft), data=DATA, env_type="single", batch_size=8, group_size=8,
                   max_steps=steps, max_tokens=20, eval_every=steps, eval_n=eval_n,
                   save_every=10**6, log_images_every=0, seed=seed, max_steps_off_policy=k,
                   log_path=str(tmp / f"q-k{k}-s{seed}"), behavior_if_log_dir_exists="delete")
    t0 = time.perf_counter()
    with contextlib.redirect_stderr(io.StringIO()):
        m = run(cfg).metrics
    from geospot.runs.folder import read_jsonl

    rows = read_jsonl(tmp / f"q-k{k}-s{seed}" / "metrics.jsonl")
    start = next(r["eval/geoscore"] for r in rows if r.get("step") == 0 and "eval/geoscore" in r)
    ratios = [r["async/ratio_mean"] for r in rows if "async/ratio_mean" in r]
    train_rows = [r for r in rows if "reward_mean" in r]
    stamps = [r["time"] for r in train_rows]
    # the local engine on one device (CPU here): the steps' wall time, evals excluded, fill-up skipped
    gaps = [b - a for a, b in itertools.pairwise(stamps)][1:]
    quarter = max(1, len(train_rows) // 4)
    clipped = [r["async/ratio_share_clipped"] for r in rows if "async/ratio_share_clipped" in r]
    return {"k": k, "seed": seed, "geoscore_start": start, "geoscore": m["eval/geoscore"],
            "median_km": m["eval/median_km"], "local_wall_per_step_s": statistics.mean(gaps) if gaps else None,
            # the sampled policy's own training reward, first and last quarter of the steps
            "train_reward_first_q": statistics.mean(r["reward_mean"] for r in train_rows[:quarter]),
            "train_reward_last_q": statistics.mean(r["reward_mean"] for r in train_rows[-quarter:]),
            "ratio_mean": statistics.mean(ratios) if ratios else None,
            "ratio_share_clipped": statistics.mean(clipped) if clipped else None, "wall_s": time.perf_counter() - t0}


NO_LOCAL_WALL = ("not measured: a step's wall time is the gap between two logged steps after the first "
                 "(the fill-up), so it needs --quality-steps >= 3")


def warm_problem(warm: str) -> str | None:
    """Why `--warm` cannot be the GRPO start (None when it can): it must hold a checkpoint of MODEL."""
    from geospot.runs.checkpoint import resolve_checkpoint
    from geospot.runs.folder import read_config

    try:
        ckpt = resolve_checkpoint(warm)
    except (OSError, ValueError) as e:
        return str(e) if Path(warm).is_dir() else "no such folder"
    run = ckpt.parent.parent if ckpt.parent.name == "checkpoints" else ckpt
    try:
        model = ((read_config(run) or {}).get("config") or {}).get("model_name")
    except (OSError, ValueError):
        model = None
    return f"its model is {model}, not {MODEL}" if model and model != MODEL else None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=12,
                   help="timed steps per arm (the first two are the fill-up, not averaged)")
    p.add_argument("--split", type=float, default=0.55,
                   help="sample share of a Tinker step (assumed; see the docstring)")
    p.add_argument("--scale", type=float, default=0.002,
                   help="benchmark seconds per Tinker second (0.002: 0.76-1.08 s steps)")
    p.add_argument("--sweep", action="store_true", help="also time k=0 and k=1 at sample shares 0.3, 0.5, 0.7")
    p.add_argument("--skip-quality", action="store_true", help="timing only")
    p.add_argument("--warm", default=None, help=f"an SFT run folder of {MODEL} on {DATA} (one with a checkpoint) "
                                                "to start GRPO from (default: train one here, in a temp folder)")
    p.add_argument("--sft-steps", type=int, default=400, help="warm start SFT steps (batch 32), when no --warm")
    p.add_argument("--quality-steps", type=int, default=16, help="GRPO steps per arm (batch 8 x group 8)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="GRPO seeds per arm")
    p.add_argument("--eval-n", type=int, default=64, help="held-out images")
    args = p.parse_args()
    if args.steps < 3:
        p.error(f"--steps {args.steps}: at least 3 (the first two are the fill-up, not averaged)")
    why = None if args.skip_quality or args.warm is None else warm_problem(args.warm)
    if why:
        print(f"async_rl.py: --warm {args.warm}: {why}; --warm must be an SFT run folder (or one of its "
              f"checkpoints) of {MODEL}, e.g. one made with warm_start()'s recipe, or leave --warm out and this "
              f"script trains one here first ({args.sft_steps} SFT steps, --sft-steps)", file=sys.stderr)
        sys.exit(2)

    import torch

    torch.set_num_threads(1)
    t0 = time.perf_counter()
    out: dict = {"bench": "async_rl", "tinker_step_s": list(TINKER_STEP_S), "split": args.split, "scale": args.scale,
                 "steps": args.steps}
    with tempfile.TemporaryDirectory(prefix="geospot-async-") as d:
        tmp = Path(d)
        arms = [timing_arm(k, args.steps, args.split, args.scale, tmp) for k in (0, 1, 2)]
        sync = arms[0]["wall_per_step_s"]
        rounded = lambda a: {key: round(v, 4) if isinstance(v, float) else v for key, v in a.items()}
        out["timing"] = {f"k{a['k']}": rounded(a) for a in arms}
        out["speedup_k1"] = round(sync / arms[1]["wall_per_step_s"], 3)
        out["speedup_k2"] = round(sync / arms[2]["wall_per_step_s"], 3)
        out["ideal_speedup"] = round(1 / max(args.split, 1 - args.split), 3)
        print(f"split {args.split}: sync {sync:.3f} s/step, "
              f"k=1 {arms[1]['wall_per_step_s']:.3f} ({out['speedup_k1']}x), "
              f"k=2 {arms[2]['wall_per_step_s']:.3f} ({out['speedup_k2']}x), ideal {out['ideal_speedup']}x",
              file=sys.stderr)
        if args.sweep:
            out["sweep"] = {}
            for split in (0.3, 0.5, 0.7):
                a0, a1 = (timing_arm(k, args.steps, split, args.scale, tmp) for k in (0, 1))
                r = a0["wall_per_step_s"] / a1["wall_per_step_s"]
                out["sweep"][str(split)] = {"sync_s": round(a0["wall_per_step_s"], 4),
                                            "k1_s": round(a1["wall_per_step_s"], 4),
                                            "speedup_k1": round(r, 3), "ideal": round(1 / max(split, 1 - split), 3)}
                print(f"split {split}: sync {a0['wall_per_step_s']:.3f}, k=1 {a1['wall_per_step_s']:.3f} ({r:.2f}x, "
                      f"ideal {1 / max(split, 1 - split):.2f}x)", file=sys.stderr)
        if not args.skip_quality:
            sft = Path(args.warm) if args.warm else warm_start(tmp, args.sft_steps)
            q = [quality_arm(k, sft, args.quality_steps, s, args.eval_n, tmp) for s in args.seeds for k in (0, 1)]
            for r in q:
                print(f"quality k={r['k']} seed={r['seed']}: GeoScore {r['geoscore_start']:.0f} -> {r['geoscore']:.0f} "
                      f"(median {r['median_km']:.0f} km), ratio mean {r['ratio_mean']}", file=sys.stderr)
            mean = lambda k: statistics.mean(r["geoscore"] for r in q if r["k"] == k)
            if all(r["local_wall_per_step_s"] is not None for r in q):
                local = lambda k: statistics.mean(r["local_wall_per_step_s"] for r in q if r["k"] == k)
                out["local_engine_one_device"] = {"wall_per_step_k0_s": round(local(0), 3),
                                                  "wall_per_step_k1_s": round(local(1), 3),
                                                  "speedup_k1": round(local(0) / local(1), 3)}
                print(f"local engine, one device: k=0 {local(0):.2f} s/step, k=1 {local(1):.2f} s/step "
                      f"({local(0) / local(1):.2f}x)", file=sys.stderr)
            else:
                out["local_engine_one_device"] = {"wall_per_step_k0_s": None, "wall_per_step_k1_s": None,
                                                  "speedup_k1": None, "note": NO_LOCAL_WALL}
                print(f"local engine, one device: {NO_LOCAL_WALL}", file=sys.stderr)
            out["quality"] = {"model": MODEL, "data": DATA,
                              "warm": "given" if args.warm else f"{args.sft_steps} SFT steps",
                              "grpo_steps": args.quality_steps,
                              "eval_n": args.eval_n, "seeds": args.seeds,
                              "arms": [rounded(r) for r in q],
                              "geoscore_k0": round(mean(0), 1), "geoscore_k1": round(mean(1), 1),
                              "k1_over_k0": round(mean(1) / mean(0), 4) if mean(0) else None}
    out["total_wall_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(finite_json(out)))


if __name__ == "__main__":
    main()
