"""Credit assignment and τ: how fast does GRPO reach a held-out score?

From one SFT checkpoint (tiny model, synthetic world, CPU) we run, with the same seed and
the same number of steps:
  telescoping  advantage=per_turn      vs  advantage=trajectory (the seed's behaviour)
  single-turn  tau_schedule=geometric  vs  tau_schedule=constant, τ = 25 km
For each pair the target is the lower of the two runs' best held-out GeoScores, so
both reach it; we report the first eval step (and the training wall time up to it) at which
each run does, and the ratio to its named peer. One JSON line on stdout.

    python benchmarks/credit.py                 # ~15 min on 2 busy CPU cores (SFT 150 steps + 4 x 20 RL steps)
    python benchmarks/credit.py --sft runs/sft  # reuse an SFT run (same --data)

Held-out evals score the sampled policy (temperature 1, one seeded sample per image) by
default — the policy GRPO trains. On this tiny model 20 GRPO steps lower the *greedy* score
(measured 344 -> 260 single-turn, 94 held-out images) while the sampled one rises
(33 -> 129); pass --eval-temperature 0 to race on greedy scores instead.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


from geospot.jsonutil import finite_json  # noqa: E402


def make_sft(out: Path, steps: int, data: str, seed: int) -> Path:
    from geospot.train.sft import SFTConfig, train

    train(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, data=data, eval_n=0, prompt_style="both",
                    answer_decimals=1, batch_size=32, learning_rate=2e-3, lr_schedule="cosine", warmup_steps=5,
                    max_steps=steps, save_every=0, seed=seed, log_path=str(out), behavior_if_log_dir_exists="delete"),
          stderr=io.StringIO())
    return out


def run_rl(out: Path, sft: Path, args, **overrides) -> dict:
    """Train one configuration; returns its eval curve and cumulative training time."""
    from geospot.runs.folder import read_jsonl
    from geospot.train.rl import RLConfig, run

    cfg = RLConfig(load_checkpoint_path=str(sft), data=args.data, eval_n=args.eval_n, eval_every=args.eval_every,
                   batch_size=args.batch_size, group_size=args.group_size, max_steps=args.steps,
                   learning_rate=args.lr, max_tokens=16, save_every=args.steps, seed=args.seed,
                   eval_temperature=args.eval_temperature,
                   log_images_every=0, log_path=str(out), behavior_if_log_dir_exists="delete", **overrides)
    t0 = time.perf_counter()
    run(cfg)
    wall = time.perf_counter() - t0
    rows = read_jsonl(out / "metrics.jsonl")
    train_s, cum = 0.0, {0: 0.0}
    for r in rows:
        if "time_step_s" in r:
            train_s += r["time_step_s"]
            cum[r["step"]] = train_s
    curve = {r["step"]: r["eval/geoscore"] for r in rows if r.get("eval/geoscore") is not None}
    # null in metrics.jsonl = inf: at least half the held-out answers did not parse
    median = {r["step"]: r["eval/median_km"] for r in rows if r.get("eval/median_km") is not None}
    parsed = {r["step"]: r["eval/parsed"] for r in rows if r.get("eval/parsed") is not None}
    return {"curve": curve, "median_km": median, "parsed": parsed, "cum_train_s": cum, "wall_s": wall}


def final_median(r: dict) -> dict:
    """The median km at the run's last eval, or null and why: eval counts an unparsed answer as
    infinitely far, so the median is inf (null in JSON) once half the held-out answers do not parse."""
    last = max(r["curve"])
    km, parsed = r["median_km"].get(last), r.get("parsed", {}).get(last)
    out = {"final_median_km": None if km is None else round(km, 1),
           "final_parsed": None if parsed is None else round(parsed, 4)}
    if km is None:
        never = not r["median_km"]
        out["final_median_note"] = ("never finite: at no eval did half the held-out answers parse" if never else
                                    "not finite at the last eval: under half the held-out answers parsed")
    return out


def race(a: dict, b: dict) -> tuple[float, dict, dict]:
    """Target = the lower of the two best scores; first step and train time each reaches it."""
    target = min(max(a["curve"].values()), max(b["curve"].values()))

    def reach(r):
        step = min(s for s, v in r["curve"].items() if v >= target - 1e-12)
        return {"steps_to_target": step, "train_s_to_target": round(r["cum_train_s"].get(step, math.nan), 2),
                "start_geoscore": round(r["curve"][0], 4), "best_geoscore": round(max(r["curve"].values()), 4),
                "final_geoscore": round(r["curve"][max(r["curve"])], 4), **final_median(r),
                "wall_s": round(r["wall_s"], 1)}

    return target, reach(a), reach(b)


def ratio(x: float, y: float) -> float | None:
    return round(x / y, 3) if y else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--eval-every", type=int, default=5)
    p.add_argument("--eval-n", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--lr", type=float, default=5e-5)
    p.add_argument("--eval-temperature", type=float, default=1.0,
                   help="held-out eval of the sampled policy (1.0, what GRPO trains) or greedy (0)")
    p.add_argument("--sft-steps", type=int, default=150)
    p.add_argument("--sft", type=str, default=None, help="reuse this SFT run folder instead of training one")
    p.add_argument("--data", type=str, default="synthetic:n=2000,size=56,seed=0,regions=4,difficulty=0.1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=str, default=None, help="keep the runs here (default: a temp folder)")
    args = p.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    root = Path(args.out or tempfile.mkdtemp(prefix="geospot-credit-"))
    t0 = time.perf_counter()
    sft = Path(args.sft) if args.sft else make_sft(root / "sft", args.sft_steps, args.data, args.seed)
    sft_s = time.perf_counter() - t0
    runs = {
        "per_turn": run_rl(root / "per_turn", sft, args, env_type="telescoping", advantage="per_turn"),
        "trajectory": run_rl(root / "trajectory", sft, args, env_type="telescoping", advantage="trajectory"),
        "tau_geometric": run_rl(root / "tau_geometric", sft, args, env_type="single", tau_schedule="geometric"),
        "tau_fixed_25km": run_rl(
            root / "tau_fixed", sft, args, env_type="single", tau_schedule="constant", tau_start_km=25.0
        ),
    }
    t_credit, pt, tr = race(runs["per_turn"], runs["trajectory"])
    t_tau, geo, fixed = race(runs["tau_geometric"], runs["tau_fixed_25km"])
    print(
        json.dumps(
            finite_json({
                "bench": "credit",
                "device": "cpu",
                "model": "tiny:qwen2_5_vl:tiny",
                "data": args.data,
                "steps": args.steps,
                "batch_size": args.batch_size,
                "group_size": args.group_size,
                "lr": args.lr,
                "eval_every": args.eval_every,
                "eval_n": args.eval_n,
                "eval_temperature": args.eval_temperature,
                "sft_steps": None if args.sft else args.sft_steps,
                "sft_s": round(sft_s, 1),
                "credit": {
                    "target_geoscore": round(t_credit, 4),
                    "per_turn": pt,
                    "trajectory": tr,
                    "steps_ratio_per_turn_vs_trajectory": ratio(pt["steps_to_target"], tr["steps_to_target"]),
                    "train_s_ratio_per_turn_vs_trajectory": ratio(pt["train_s_to_target"], tr["train_s_to_target"]),
                },
                "tau": {
                    "target_geoscore": round(t_tau, 4),
                    "geometric_2000_to_25km": geo,
                    "fixed_25km": fixed,
                    "steps_ratio_schedule_vs_fixed": ratio(geo["steps_to_target"], fixed["steps_to_target"]),
                    "train_s_ratio_schedule_vs_fixed": ratio(geo["train_s_to_target"], fixed["train_s_to_target"]),
                },
            })
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
