"""Which env teaches geolocation best for the same compute? (issue 22)

From ONE warm start (tiny random Qwen2.5-VL, SFT on the synthetic world with
`prompt_style=all`: single, telescoping, hierarchical and geohash examples, so every env's
format is known), each arm runs GRPO for the same budget of its own process CPU time:

  single         env_type=single (the τ-kernel reward, τ follows the error)
  telescoping    env_type=telescoping (GeoScore)
  hierarchical   env_type=hierarchical (country -> region -> city -> coords, 0.2 x 3 + 0.4 x GeoScore)
  geohash        env_type=geohash (2/4/6-character curriculum, improvement bonus)
  single_mixed   env_type=single reward=mixed (0.7 exp(-d/τ) + 0.3 shared geohash prefix / 5)

then each arm is scored in its own env's prompt on the same held-out images: greedy and
sampled (temperature 1, k answers per image, each scored) GeoScore and median km of the
final coordinates, and for hierarchical the label accuracy per label turn. Seeds change the
continuation (data order, rollouts); warm start and held-out images are shared.

Verdict: an arm beats `single` (the default) on a metric when its worst seed is better than
single's best seed (the seed ranges do not overlap).

    python benchmarks/envs.py                                 # 5 arms x 3 seeds x 20 s CPU + evals
    python benchmarks/envs.py --budget-s 3 --seeds 0 --eval-n 8 --sft-steps 4 --arms single,hierarchical  # smoke

One JSON line on stdout (the last line), a table on stderr. Results: docs/envs.md.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

from geospot.jsonutil import finite_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling benchmark's helpers

from rl_vs_sft import (
    CLOCKS,
    HORIZON,
    MODEL,
    arm_result,
    cache_root,
    cached_sft,
    held_out,
    load_engine,
    restore_summary,
    summarise,
)

ARMS: dict[str, tuple[str, ...]] = {
    "single": ("env_type=single",),
    "telescoping": ("env_type=telescoping",),
    "hierarchical": ("env_type=hierarchical",),
    "geohash": ("env_type=geohash",),
    "single_mixed": ("env_type=single", "reward=mixed"),
}
KEYS = ("geoscore", "median_km", "acc_200km", "acc_750km", "parsed")
LABEL_KEYS = ("label_country_acc", "label_region_acc", "label_city_acc")


def warm_start(args) -> Path:
    """SFT on every prompt style (`all`: the four envs' formats), cached like rl_vs_sft's."""
    recipe = {"model_name": MODEL, "lora_rank": 0, "device": "cpu", "data": args.data, "eval_n": 0,
              "prompt_style": "all", "answer_decimals": 1, "batch_size": 32, "learning_rate": args.warm_lr,
              "lr_schedule": "cosine", "warmup_steps": min(5, args.sft_steps), "max_steps": args.sft_steps,
              "save_every": 0, "eval_at_start": False, "seed": 0}
    return cached_sft(recipe, cache_root(args) / "bench-envs")


def run_arm(args, arm: str, seed: int, start: Path, log_dir: Path) -> dict:
    from geospot.config import parse_overrides
    from geospot.train.rl import RLConfig, run

    cfg = parse_overrides(RLConfig, [*ARMS[arm], f"batch_size={args.rl_batch_size}", f"seed={seed}"])
    cfg = dataclasses.replace(cfg, load_checkpoint_path=str(start), data=args.data, max_steps=HORIZON,
                              max_seconds=args.budget_s, eval_every=0, eval_n=0, save_every=HORIZON,
                              keep_checkpoints=1, log_images_every=0, log_path=str(log_dir),
                              behavior_if_log_dir_exists="delete")
    with contextlib.redirect_stderr(io.StringIO()):
        run(cfg, clock=CLOCKS[args.clock])
    info = arm_result(log_dir, "time_step_s")
    rows = info.pop("rows")
    rewards = [r["reward_mean"] for r in rows if r.get("reward_mean") is not None]
    q = max(1, len(rewards) // 4)
    info["train_reward_first_last"] = ([round(sum(rewards[:q]) / q, 4), round(sum(rewards[-q:]) / q, 4)]
                                       if rewards else None)
    return info


def score(engine, heldout, args, arm: str, seed: int, geocoder) -> dict:
    """Greedy and sampled metrics of the final coordinates in the arm's own env."""
    import numpy as np

    from geospot.config import parse_overrides
    from geospot.engines.types import SampleParams
    from geospot.eval import evaluate
    from geospot.geo import compute_metrics
    from geospot.train.rl import RLConfig

    cfg = parse_overrides(RLConfig, list(ARMS[arm]))
    style = cfg.env_type
    greedy = evaluate(engine, heldout, prompt_style=style, batch_size=32, max_tokens=args.max_tokens,
                      geocoder=geocoder, env_options=cfg)
    out = {"greedy": {k: float(greedy.metrics[k]) for k in (*KEYS, *LABEL_KEYS) if k in greedy.metrics}}
    params = SampleParams(max_tokens=args.max_tokens, temperature=1.0, seed=10_007 + seed)
    sampled = evaluate(engine, heldout, prompt_style=style, batch_size=32, max_tokens=args.max_tokens,
                       sampling=(params, args.k), geocoder=geocoder, env_options=cfg)
    nan = (math.nan, math.nan)
    guesses = [(g if g is not None else nan) for p in sampled.predictions for g in p.sample_guesses]
    truth = [(p.true_latitude, p.true_longitude) for p in sampled.predictions for _ in p.sample_guesses]
    m = compute_metrics(np.array([g[0] for g in guesses]), np.array([g[1] for g in guesses]),
                        np.array([t[0] for t in truth]), np.array([t[1] for t in truth]), geocoder=None)
    out["sampled"] = {k: float(m[k]) for k in KEYS}
    return out


def verdict(arm: dict, base: dict, key: str) -> dict:
    sign = -1.0 if key == "median_km" else 1.0
    gap = sign * (arm["mean"] - base["mean"])
    beats = (arm["min"] > base["max"]) if sign > 0 else (arm["max"] < base["min"])
    spread = max(arm["std"], base["std"])
    return {"gap": round(gap, 4), "gap_over_std": round(gap / spread, 2) if spread > 0 else None,
            "beats_beyond_spread": bool(beats)}


def table(summary: dict, n_seeds: int) -> str:
    cols = ("geoscore", "median_km", *LABEL_KEYS)
    lines = [f"mean ± std over {n_seeds} seeds; each arm in its own env's prompt",
             f"{'arm':<26}{'mode':<9}" + "".join(f"{c:>22}" for c in cols)]
    for name, per_mode in summary.items():
        for mode, row in per_mode.items():
            cells = "".join(f"{row[c]['mean']:>14.4g} ± {row[c]['std']:<5.3g}" if c in row else f"{'-':>22}"
                            for c in cols)
            lines.append(f"{name:<26}{mode:<9}{cells}")
    return "\n".join(lines)


def finish(line: dict, arms: list[str]) -> dict:
    """Verdicts against `single` and the ratio table, printed; `line` gets them."""
    summary = line["summary"]
    line["verdicts_vs_single"] = {
        arm: {mode: {k: verdict(summary[arm][mode][k], summary["single"][mode][k], k)
                     for k in ("geoscore", "median_km")} for mode in ("greedy", "sampled")}
        for arm in arms if arm != "single" and "single" in summary}
    base = summary.get("single", {}).get("greedy", {}).get("geoscore", {}).get("mean")
    line["greedy_geoscore_ratio_vs_single"] = {a: round(summary[a]["greedy"]["geoscore"]["mean"] / base, 4)
                                               for a in arms if base}
    print(table(summary, len(line["seeds"])), file=sys.stderr)
    return line


def merge(paths: list[str]) -> dict:
    """One report from runs of this benchmark made as parallel processes (disjoint arms, the
    same warm start, data, seeds and budget)."""
    lines = [json.loads(Path(q).read_text().strip().splitlines()[-1]) for q in paths]
    for ln in lines:
        ln["summary"] = restore_summary(ln["summary"])
    out = dict(lines[0])
    for other in lines[1:]:
        for key in ("data", "seeds", "eval_images", "budget_s", "clock", "warm_start"):
            if other.get(key) != out.get(key):
                raise SystemExit(f"--merge: {key} differs ({out.get(key)!r} vs {other.get(key)!r})")
        out["summary"] = {**out["summary"], **other["summary"]}
        out["runs"] = {**out["runs"], **other["runs"]}
    out["total_wall_s"] = round(sum(ln["total_wall_s"] for ln in lines), 1)
    out["merged_from"] = [str(q) for q in paths]
    return finish(out, [a for a in ARMS if a in out["summary"]])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budget-s", type=float, default=20.0, help="each arm's budget of its own clock, seconds")
    p.add_argument("--clock", choices=("cpu", "wall"), default="cpu")
    p.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1, 2])
    p.add_argument("--arms", type=lambda s: s.split(","), default=list(ARMS))
    p.add_argument("--data", default="synthetic:n=2000,size=56,seed=0")
    p.add_argument("--eval-n", type=int, default=48, help="held-out images")
    p.add_argument("--k", type=int, default=2, help="sampled answers per held-out image")
    p.add_argument("--max-tokens", type=int, default=16, help="answer token budget per turn (eval)")
    p.add_argument("--sft-steps", type=int, default=400, help="warm-start SFT steps (batch 32)")
    p.add_argument("--warm-lr", type=float, default=3e-3)
    p.add_argument("--rl-batch-size", type=int, default=8)
    p.add_argument("--start", default=None, help="use this SFT run folder as the warm start")
    p.add_argument("--cache", default=None, help="folder for the cached warm start")
    p.add_argument("--merge", nargs="+", default=None, help="instead of running: merge these JSON-line files")
    args = p.parse_args(argv)
    if args.merge:
        print(json.dumps(finite_json(merge(args.merge)), default=float))
        return 0
    unknown = set(args.arms) - set(ARMS)
    if unknown:
        p.error(f"unknown arms {sorted(unknown)}; choose from {list(ARMS)}")

    import torch

    torch.set_num_threads(1)
    t_all = time.perf_counter()
    start = Path(args.start) if args.start else warm_start(args)
    heldout, geocoder = held_out(p, args)

    results, runs = {}, {}
    engine = load_engine(start, 0)
    for arm in args.arms:  # the warm start itself, in each arm's env
        results[f"start@{arm}"] = {args.seeds[0]: score(engine, heldout, args, arm, args.seeds[0], geocoder)}
    del engine
    for arm in args.arms:
        results[arm], runs[arm] = {}, {}
        for seed in args.seeds:
            with tempfile.TemporaryDirectory(prefix=f"envs-{arm}-{seed}-") as tmp:
                info = run_arm(args, arm, seed, start, Path(tmp) / "run")
                engine = load_engine(Path(tmp) / "run", seed)
            results[arm][seed] = score(engine, heldout, args, arm, seed, geocoder)
            runs[arm][seed] = {k: (round(v, 2) if isinstance(v, float) else v) for k, v in info.items()}
            g = results[arm][seed]["greedy"]
            print(f"{arm} seed {seed}: {info['steps']} steps in {info['clock_s']:.0f} s CPU; greedy geoscore "
                  f"{g['geoscore']:.0f}, median {g['median_km']:.0f} km", file=sys.stderr, flush=True)

    summary = {}
    for name, per_seed in results.items():
        seeds = list(per_seed)
        summary[name] = {mode: {k: summarise([per_seed[s][mode][k] for s in seeds])
                                for k in per_seed[seeds[0]][mode]} for mode in ("greedy", "sampled")}
    line = {"bench": "envs", "device": "cpu", "threads": torch.get_num_threads(), "model": MODEL, "data": args.data,
            "budget_s": args.budget_s, "clock": args.clock, "seeds": args.seeds, "eval_images": len(heldout),
            "k": args.k, "warm_start": {"sft_steps": args.sft_steps, "lr": args.warm_lr, "prompt_style": "all"},
            "rl_batch_size": args.rl_batch_size, "summary": summary, "runs": runs,
            "total_wall_s": round(time.perf_counter() - t_all, 1)}
    print(json.dumps(finite_json(finish(line, args.arms)), default=float))  # strict JSON: a NaN / inf is null
    return 0


if __name__ == "__main__":
    sys.exit(main())
