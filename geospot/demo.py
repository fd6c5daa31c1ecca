"""`geospot demo`: the whole pipeline on a CPU, offline, in a few minutes.

    tiny random Qwen2.5-VL + synthetic world
      -> held-out eval of the untrained model
      -> SFT warm-start (answer format + a first map of the world)
      -> telescoping GRPO from the SFT checkpoint (coarse -> refine -> final)
      -> the same held-out eval after each stage, one table
      -> the dashboard command for the run (or `--serve` to open it)

Why the *tiny* model (0.5 M parameters) and not the small one: on 2 CPU cores steps
beat size — in the same minutes the tiny model takes ~4x more optimizer steps and ends
far closer (an earlier measurement: 341-583 km vs 1,532 km held-out median).

Every stage is timed in CPU seconds (time.process_time, all threads of this process) and
wall seconds; the summary prints both, and the machine's load average, so a slow run on a
busy machine is told apart from a slow demo."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

# The world of the demo: 8 countries (4 regions each) on 6 continents, cues kept clear
# (difficulty 0.1) so a 0.5 M-parameter model can learn a real map of it in minutes.
DEMO_DATA = "synthetic:n=4000,size=112,seed=0,regions=8,difficulty=0.1"


@dataclass(frozen=True)
class Preset:
    sft_steps: int
    rl_steps: int
    eval_n: int


# `default` fits the 5-minute budget on 2 quiet cores (see the numbers in the summary it
# prints); `quick` is the test's size; `long` shows how far the same recipe goes.
PRESETS = {
    "quick": Preset(sft_steps=250, rl_steps=6, eval_n=48),
    "default": Preset(sft_steps=450, rl_steps=24, eval_n=128),
    "long": Preset(sft_steps=1500, rl_steps=80, eval_n=200),
}


@dataclass(frozen=True)
class DemoConfig:
    model_name: str = "tiny:qwen2_5_vl:tiny"
    data: str = DEMO_DATA
    sft_steps: int = PRESETS["default"].sft_steps
    rl_steps: int = PRESETS["default"].rl_steps
    eval_n: int = PRESETS["default"].eval_n
    out: str = "runs/demo"
    seed: int = 0
    # SFT: full fine-tuning of a random tiny model (LoRA on random weights learns little),
    # small batches and a high lr — many cheap steps is what works on a CPU. Telescoping
    # examples only: the demo's GRPO and eval are telescoping, and every example then
    # trains three answers. Earlier turns' guesses are shown with realistic noise so the
    # later turns learn to refine rather than copy (geospot.train.sft.telescoping_messages).
    sft_batch_size: int = 16
    sft_lr: float = 3e-3
    sft_prompt_style: str = "telescoping"
    answer_decimals: int = 1
    telescoping_noise_km: tuple[float, float] = (2000.0, 1000.0)
    # GRPO: the same policy, a far smaller lr (Adam moves every weight by ~lr whatever the
    # advantages, so an SFT-sized lr undoes the warm start), 8 rollouts per image,
    # GeoScore/5000 as S(d) (telescoping: r_t = S(d_t) - S(d_{t-1})). Measured from the
    # default SFT (128 held-out images): 24 steps at 1e-4 raised the sampled GeoScore
    # 1,613 -> 1,751 and lowered the greedy one 2,441 -> 2,327; 12 steps at 5e-5 moved
    # neither beyond noise. The demo prints whichever happens.
    rl_batch_size: int = 8
    rl_group_size: int = 8
    rl_lr: float = 1e-4
    rl_reward: str = "geoscore"
    max_tokens: int = 16
    # Eval: greedy (what a user of the model sees) AND seeded samples at temperature 1 (the
    # policy GRPO trains), one per image per seed, metrics averaged over the seeds (one
    # sample of 100 images is too noisy to compare stages); same held-out images.
    eval_sample_seeds: tuple[int, ...] = (5, 6, 7, 8)
    rl_extra: dict = field(default_factory=dict)  # any other RLConfig key (tests, experiments)


def stage_configs(cfg: DemoConfig):
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    out = Path(cfg.out)
    sft = SFTConfig(
        model_name=cfg.model_name, lora_rank=0, train_vision=True, data=cfg.data, eval_n=0,
        prompt_style=cfg.sft_prompt_style, answer_decimals=cfg.answer_decimals, telescoping_decimals=(0, 1),
        telescoping_noise_km=cfg.telescoping_noise_km,
        batch_size=cfg.sft_batch_size, learning_rate=cfg.sft_lr, lr_schedule="cosine", warmup_steps=5,
        max_steps=cfg.sft_steps, eval_every=0, eval_at_start=False, save_every=0, log_every=50,
        log_path=str(out / "sft"), behavior_if_log_dir_exists="delete", seed=cfg.seed,
    )
    rl = RLConfig(**{
        **dict(env_type="telescoping", load_checkpoint_path=str(out / "sft"), data=cfg.data, eval_n=cfg.eval_n,
               batch_size=cfg.rl_batch_size, group_size=cfg.rl_group_size, max_steps=cfg.rl_steps,
               learning_rate=cfg.rl_lr, reward=cfg.rl_reward, max_tokens=cfg.max_tokens, eval_every=0,
               eval_at_start=False, save_every=cfg.rl_steps, log_path=str(out / "rl"),
               behavior_if_log_dir_exists="delete", seed=cfg.seed),
        **cfg.rl_extra,
    })
    return sft, rl


def held_out_eval(model: str, cfg: DemoConfig, samples, geocoder) -> dict:
    """Telescoping eval, identical for every stage so the rows compare: the final turn's
    answer is scored. Greedy metrics as they are; those of the seeded temperature-1 samples
    (one per image per seed, averaged over the seeds) as `sampled_<key>`."""
    import numpy as np

    from geospot.engines.types import SampleParams
    from geospot.eval import evaluate
    from geospot.eval.loading import load_model

    engine = load_model(model, seed=cfg.seed).engine
    with _run_writer(model) as (writer, step):  # a trained stage records its held-out eval in its run folder
        greedy = evaluate(engine, samples, prompt_style="telescoping", batch_size=32, max_tokens=cfg.max_tokens,
                          geocoder=geocoder, writer=writer, step=step).metrics
    runs = []
    for seed in cfg.eval_sample_seeds:
        params = SampleParams(max_tokens=cfg.max_tokens, temperature=1.0, seed=seed)
        runs.append(evaluate(engine, samples, prompt_style="telescoping", batch_size=32, max_tokens=cfg.max_tokens,
                             geocoder=None, sampling=(params, 1)).metrics)
    sampled = {k: float(np.mean([m[k] for m in runs])) for k in runs[0] if isinstance(runs[0][k], (int, float))}
    return {**greedy, **{f"sampled_{k}": v for k, v in sampled.items()}}


@contextlib.contextmanager
def _run_writer(model: str):
    """(writer, step) for a run folder: the greedy held-out eval goes into its store and
    metrics.jsonl at its last step, as a loop's periodic eval does, so the dashboard (map, held-out
    columns) and `geospot eval --compare` show it. (None, 0) for anything else."""
    from geospot.runs.model_spec import is_run_path, model_spec

    if not is_run_path(model):
        yield None, 0
        return
    from geospot.runs.loggers import open_run_writer

    writer = open_run_writer(model, console=False)
    try:
        yield writer, model_spec(model).step or 0
    finally:
        writer.close()


COLUMNS = [("parsed", "parsed", "{:.0%}"), ("median_km", "median km", "{:,.0f}"), ("geoscore", "GeoScore", "{:,.0f}"),
           ("acc_200km", "@200km", "{:.0%}"), ("acc_750km", "@750km", "{:.0%}"), ("acc_2500km", "@2500km", "{:.0%}"),
           ("sampled_geoscore", "sampled GS", "{:,.0f}")]


def _cell(m: dict, key: str, fmt: str) -> str:
    v = m.get(key, math.nan)
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def _turns(m: dict, prefix: str = "") -> str:
    cells = [_cell(m, f"{prefix}turn_{t}_median_km", "{:,.0f}") for t in (1, 2, 3)]
    return " -> ".join(cells)


def table(rows: dict[str, dict], n: int) -> str:
    head = f"{'stage':<10}" + "".join(f"{title:>11}" for _, title, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in rows.items():
        lines.append(f"{name:<10}" + "".join(f"{_cell(m, k, fmt):>11}" for k, _, fmt in COLUMNS))
    lines += [
        f"{n} held-out synthetic images; the telescoping final turn is scored; unparsed answers count as misses.",
        "Columns before `sampled GS`: greedy decoding. sampled GS: mean GeoScore (0-5000) of answers sampled at",
        "temperature 1 — the policy GRPO trains (one per image per seed, averaged over seeds).",
        "",
        "Median km per telescoping turn (coarse -> refine -> final), greedy | sampled:",
    ]
    lines += [f"  {name:<10}{_turns(m):>26}  | {_turns(m, 'sampled_')}" for name, m in rows.items()]
    return "\n".join(lines)


def verdict(rows: dict[str, dict]) -> list[str]:
    """What happened, in words computed from the numbers (never a canned claim)."""
    u, s, g = rows["untrained"], rows["SFT"], rows["SFT+GRPO"]
    def km(m):
        return f"{m['median_km']:,.0f} km" if math.isfinite(m.get("median_km", math.nan)) else "none (most answers unparsed)"

    out = [f"SFT: parsed {u['parsed']:.0%} -> {s['parsed']:.0%}, greedy median {km(u)} -> {km(s)}, "
           f"GeoScore {u['geoscore']:,.0f} -> {s['geoscore']:,.0f}."]
    dg, ds = g["geoscore"] - s["geoscore"], g["sampled_geoscore"] - s["sampled_geoscore"]
    out.append(f"GRPO: greedy GeoScore {s['geoscore']:,.0f} -> {g['geoscore']:,.0f} ({dg:+,.0f}), "
               f"sampled GeoScore {s['sampled_geoscore']:,.0f} -> {g['sampled_geoscore']:,.0f} ({ds:+,.0f}).")
    if dg <= 0 and ds > 0:
        out.append("      GRPO did not improve the greedy answers in this budget; it optimises the sampled policy "
                   "(rollouts at temperature 1), and that one improved (the `sampled GS` column).")
    elif dg <= 0:
        out.append("      GRPO improved neither the greedy nor the sampled answers in this budget.")
    for name in ("SFT", "SFT+GRPO"):
        first, final = rows[name].get("turn_1_median_km", math.nan), rows[name].get("turn_3_median_km", math.nan)
        if math.isfinite(first) and math.isfinite(final):
            word = ("refines" if final < 0.95 * first else "makes it worse" if final > 1.05 * first
                    else "changes little (within 5%)")
            out.append(f"Telescoping after {name}: turn 3 vs turn 1 {word} — greedy median {first:,.0f} -> {final:,.0f} km.")
    return out


@dataclass
class Clock:
    """CPU and wall seconds per stage (a stage entered twice adds up)."""

    stages: dict[str, tuple[float, float]] = field(default_factory=dict)

    @contextlib.contextmanager
    def __call__(self, name: str):
        c, w = time.process_time(), time.perf_counter()
        try:
            yield
        finally:
            c0, w0 = self.stages.get(name, (0.0, 0.0))
            self.stages[name] = (c0 + time.process_time() - c, w0 + time.perf_counter() - w)

    def total(self) -> tuple[float, float]:
        return sum(c for c, _ in self.stages.values()), sum(w for _, w in self.stages.values())

    def summary(self) -> str:
        parts = ", ".join(f"{k} {c:.0f}/{w:.0f}" for k, (c, w) in self.stages.items())
        cpu, wall = self.total()
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
        return (f"time: CPU {cpu:.0f} s, wall {wall:.0f} s (per stage CPU/wall s: {parts}); "
                f"{os.cpu_count()} cores, load average {load:.1f} at the end — wall time on a busy machine is longer than on a quiet one.")


def run(cfg: DemoConfig, log=print) -> dict[str, dict]:
    from geospot.config import ConfigError
    from geospot.data import load_samples
    from geospot.train import rl as rl_loop
    from geospot.train import sft as sft_loop
    from geospot.train.sft import geocoder_for

    sft_cfg, rl_cfg = stage_configs(cfg)
    sft_cfg.validate()
    rl_cfg.validate()  # both fail here, naming the key, before any model is loaded
    clock = Clock()
    rows: dict[str, dict] = {}
    with clock("data"):
        try:
            held_out = load_samples(cfg.data, split="val", n=cfg.eval_n)
            geocoder = geocoder_for(cfg.data)
        except (ValueError, FileNotFoundError, OSError, KeyError) as e:  # SpecError is a ValueError
            raise ConfigError(f"--data {cfg.data!r}: {e}") from e

    log(f"[1/4] held-out eval of the untrained model ({cfg.model_name}, {len(held_out)} images)")
    with clock("eval"):
        rows["untrained"] = held_out_eval(cfg.model_name, cfg, held_out, geocoder)

    log(f"[2/4] SFT warm-start: {cfg.sft_steps} steps x {cfg.sft_batch_size} images -> {sft_cfg.log_path}")
    with clock("sft"):
        sft_loop.train(sft_cfg, stderr=sys.stderr)  # a progress line every 50 steps (live on a terminal)
    with clock("eval"):
        rows["SFT"] = held_out_eval(sft_cfg.log_path, cfg, held_out, geocoder)
    log(f"      SFT {clock.stages['sft'][0]:.0f} CPU s; greedy median {_cell(rows['SFT'], 'median_km', '{:,.0f}')} km")

    log(f"[3/4] telescoping GRPO: {cfg.rl_steps} steps x {cfg.rl_batch_size} images x {cfg.rl_group_size} rollouts "
        f"-> {rl_cfg.log_path}")
    with clock("grpo"):
        rl_loop.run(rl_cfg)
    with clock("eval"):
        rows["SFT+GRPO"] = held_out_eval(rl_cfg.log_path, cfg, held_out, geocoder)
    log(f"      GRPO {clock.stages['grpo'][0]:.0f} CPU s")

    log("[4/4] results\n")
    log(table(rows, len(held_out)))
    log("")
    for line in verdict(rows):
        log(line)
    log(clock.summary())
    rows["_time"] = {"cpu_s": clock.total()[0], "wall_s": clock.total()[1],
                     **{f"{k}_cpu_s": c for k, (c, _) in clock.stages.items()}}
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="geospot demo", description=__doc__.split("\n\n")[0])
    ap.add_argument("--preset", choices=sorted(PRESETS), default="default",
                    help="quick (~2 min), default (~4 min of CPU: <= 5 min on 2 quiet cores), long (~12 min); "
                         "SFT/GRPO/eval sizes: " + ", ".join(f"{k} {p.sft_steps}/{p.rl_steps}/{p.eval_n}" for k, p in PRESETS.items()))
    ap.add_argument("--sft-steps", type=int, help="override the preset's SFT steps")
    ap.add_argument("--rl-steps", type=int, help="override the preset's GRPO steps")
    ap.add_argument("--eval-n", type=int, help="held-out images per eval")
    ap.add_argument("--data", default=DemoConfig.data, help="data spec (default: %(default)s)")
    ap.add_argument("--model", default=DemoConfig.model_name, help="model (default: %(default)s)")
    ap.add_argument("--out", default=DemoConfig.out, help="run folder (replaced if it exists; default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of data order, initialisation and sampling (default: 0)")
    ap.add_argument("--serve", action="store_true", help="serve the dashboard of the run at the end")
    args = ap.parse_args(argv)

    p = PRESETS[args.preset]
    cfg = replace(
        DemoConfig(), model_name=args.model, data=args.data, out=args.out, seed=args.seed,
        sft_steps=args.sft_steps or p.sft_steps, rl_steps=args.rl_steps or p.rl_steps, eval_n=args.eval_n or p.eval_n,
    )
    from geospot.config import ConfigError

    try:
        run(cfg)
    except ConfigError as e:
        print(f"geospot demo: {e}", file=sys.stderr)
        return 2
    dash = ["geospot", "dashboard", "--runs", cfg.out]
    if args.serve:
        from geospot.dashboard.cli import main as dashboard_main

        return dashboard_main(dash[2:])
    print(f"\nWatch the guesses tighten: {' '.join(dash)}   (then open http://127.0.0.1:8765)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
