"""`geospot demo`: the whole pipeline on a CPU, offline, in a few minutes.

    tiny random Qwen2.5-VL + synthetic world
      -> held-out eval of the untrained model
      -> SFT warm-start (answer format + a first map of the world)
      -> GRPO from the SFT checkpoint: single-turn groups, with a quarter of each batch played as
         telescoping groups (one policy, both envs) so the refine turns learn too; each turn is
         credited with its own reward (the coarse turn its distance, a refine turn its gain); the
         coarse turn sees a thumbnail, the second the full photo (zoom 4)
      -> the same held-out eval after each stage, one table, and a verdict per metric
         that is "improved" only beyond the noise band (paired bootstrap over the images)
      -> with --tau-study (or --preset long): from a format-only warm start, GRPO with τ
         that follows the error vs a fixed τ = 25 km, the same steps
      -> the dashboard command for the run (or `--serve` to open it)

Why the *tiny* model (0.43 M parameters) and not the small one: on 2 CPU cores steps
beat size — in the same minutes the tiny model takes ~4x more optimizer steps and ends
far closer (an earlier measurement: 341-583 km vs 1,532 km held-out median).

Every stage is a fixed number of steps (never a time limit), so a run's numbers do not depend on how
busy the machine is; the summary prints CPU and wall seconds and the load average, so a slow run on a
busy machine is told apart from a slow demo. The recipe's measurements: docs/rl_vs_sft.md ("The demo's recipe")."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from geospot import demo_report as R
from geospot.config import FlagParser
from geospot.demo_recipe import DEMO_DATA, PRESETS, DemoConfig, stage_configs, tau_configs
from geospot.prompts import TELESCOPING_PROMPTS


def held_out_eval(model: str, cfg: DemoConfig, samples, styles=None) -> R.StageEval:
    """Greedy and seeded temperature-1 answers to `cfg.eval_style`, and the greedy telescoping
    turns, per image (identical for every stage so the rows compare image by image)."""
    import numpy as np

    from geospot.engines.types import SampleParams
    from geospot.envs.config import EnvOptions
    from geospot.eval import evaluate
    from geospot.eval.loading import load_model
    from geospot.geo import haversine_km

    def km(preds, turn=None):
        g = [(p.latitude, p.longitude) if turn is None else (p.turn_guesses[turn] if turn < len(p.turn_guesses)
                                                             and p.turn_guesses[turn] else (math.nan, math.nan))
             for p in preds]
        lat, lon = np.array([x[0] for x in g], float), np.array([x[1] for x in g], float)
        true = np.array([[p.true_latitude, p.true_longitude] for p in preds], float)
        return np.asarray(haversine_km(lat, lon, true[:, 0], true[:, 1]), dtype=float)

    engine = load_model(model, seed=cfg.seed).engine
    run = {"batch_size": 32, "max_tokens": cfg.max_tokens, "env_options": EnvOptions(zoom=cfg.zoom)}
    with _run_writer(model) as (writer, step):  # a trained stage records its held-out eval in its run folder
        greedy = evaluate(engine, samples, prompt_style=cfg.eval_style, **run,
                          writer=writer, step=step).predictions
    sampled = [evaluate(engine, samples, prompt_style=cfg.eval_style, **run,
                        sampling=(SampleParams(max_tokens=cfg.max_tokens, temperature=1.0, seed=s), 1)).predictions
               for s in cfg.eval_sample_seeds]
    tele = (
        greedy
        if cfg.eval_style == "telescoping"
        else evaluate(engine, samples, prompt_style="telescoping", **run).predictions
    )
    # every turn gets a column, also when the first answer did not parse and the episode ended there
    turns = max(len(TELESCOPING_PROMPTS), *(len(p.turn_guesses) for p in tele))
    return R.StageEval.from_km(km(greedy), [km(p) for p in sampled], [km(tele, t) for t in range(turns)])


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

    writer = open_run_writer(model)
    try:
        yield writer, model_spec(model).step or 0
    finally:
        writer.close()


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
        return (f"time: CPU {cpu:.0f} s, wall {wall:.0f} s (per stage CPU/wall s: {parts}); {os.cpu_count()} cores, "
                f"load average {load:.1f} at the end — wall time on a busy machine is longer than on a quiet one.")


def run(cfg: DemoConfig, log=print) -> dict:
    """Train and evaluate every stage; returns the JSON object `--json` prints."""
    from geospot.config import ConfigError
    from geospot.data import load_samples
    from geospot.engines.start_checks import model_problem
    from geospot.envs.registry import mixed_count
    from geospot.train import rl as rl_loop
    from geospot.train import sft as sft_loop

    # named as typed, not as a stage's key; the verdict is measured on held-out images after SFT
    for key, flag, low in (("sft_steps", "--sft-steps", 1), ("rl_single_steps", "--rl-single-steps", 0),
                           ("rl_steps", "--rl-steps", 0), ("tau_steps", "--tau-study", 0), ("eval_n", "--eval-n", 1)):
        if getattr(cfg, key) < low:
            raise ConfigError(f"{flag} {getattr(cfg, key)}: give {low} or more")
    model_problem(cfg.model_name, os.environ, key="--model")  # a typo said now, not once the data is built
    sft_cfg, single_cfg, rl_cfg = stage_configs(cfg)
    if not (cfg.rl_single_steps or cfg.rl_steps):
        raise ConfigError("rl_single_steps and rl_steps are both 0: give --rl-single-steps or --rl-steps a step count")
    if cfg.tau_steps and not 0 < cfg.tau_format_steps <= cfg.sft_steps:
        raise ConfigError(f"tau_format_steps={cfg.tau_format_steps} must be in 1..sft_steps ({cfg.sft_steps}): "
                          "the τ study starts from that SFT checkpoint; raise --sft-steps")
    for c in (sft_cfg, single_cfg, rl_cfg, *(tau_configs(cfg)[1:] if cfg.tau_steps else ())):
        c.validate()  # every stage fails here, naming the key, before any model is loaded
    clock = Clock()
    with clock("data"):
        try:
            held_out = load_samples(cfg.data, split=cfg.eval_split, n=cfg.eval_n)
        except (ValueError, FileNotFoundError, OSError, KeyError) as e:  # SpecError is a ValueError
            raise ConfigError(f"--data {cfg.data!r}: {e}") from e

    evals: dict[str, R.StageEval] = {}
    log(f"data: {cfg.data}" + (" (8 countries; two pairs look alike, >= 5,000 km apart: on those images a model can "
                               "only tell 'one of the two', and an answer between them is in neither)"
                               if cfg.data == DEMO_DATA else ""))
    if cfg.zoom > 1:
        log(f"zoom {cfg.zoom}: the first telescoping turn sees the photo {cfg.zoom}x smaller per side, the second "
            "brings the full photo (the single-turn prompt always sees the full photo)")
    n_stages = 3 + bool(cfg.rl_single_steps) + bool(cfg.rl_steps)  # numbered as they run (rl_steps=0: no 4th)
    stage = iter(range(1, n_stages + 1))
    log(f"[{next(stage)}/{n_stages}] held-out eval of the untrained model ({cfg.model_name}, {len(held_out)} images)")
    with clock("eval"):
        evals["untrained"] = held_out_eval(cfg.model_name, cfg, held_out)

    log(f"[{next(stage)}/{n_stages}] SFT warm-start: {cfg.sft_steps} steps x {cfg.sft_batch_size} images -> "
        f"{sft_cfg.log_path}")
    with clock("sft"):
        sft_loop.train(sft_cfg, stderr=sys.stderr)  # a progress line every 50 steps (live on a terminal)
    with clock("eval"):
        evals["sft"] = held_out_eval(sft_cfg.log_path, cfg, held_out)

    if cfg.rl_single_steps:
        mixed = mixed_count(cfg.rl_batch_size, single_cfg.mix_env_type, single_cfg.mix_share)
        plays = (f"{mixed} of {cfg.rl_batch_size} images {single_cfg.mix_env_type}, "
                 f"{cfg.rl_batch_size - mixed} {single_cfg.env_type}" if mixed else single_cfg.env_type)
        log(f"[{next(stage)}/{n_stages}] GRPO: {cfg.rl_single_steps} steps x {cfg.rl_batch_size} images x "
            f"{cfg.rl_group_size} rollouts ({plays}) -> {single_cfg.log_path}")
        with clock("grpo"):
            rl_loop.run(single_cfg)
    if cfg.rl_steps:
        log(f"[{next(stage)}/{n_stages}] telescoping GRPO: {cfg.rl_steps} steps x {cfg.rl_batch_size} images x "
            f"{cfg.rl_group_size} rollouts -> {rl_cfg.log_path}")
        with clock("grpo"):
            rl_loop.run(rl_cfg)
    with clock("eval"):  # the last GRPO stage's folder, `rl` (stage_configs)
        evals["rl"] = held_out_eval(str(Path(cfg.out) / "rl"), cfg, held_out)

    result = {"stages": {}, "seed": cfg.seed, "eval_n": len(held_out), "eval_style": cfg.eval_style}
    before = None
    for name, e in evals.items():
        result["stages"][name] = R.stage_json(e, evals[before] if before else None, seed=cfg.seed)
        before = name
    if cfg.tau_steps:
        log(
            f"[+] τ study: from SFT's step-{cfg.tau_format_steps} checkpoint (format only), "
            f"{cfg.tau_steps} single-turn GRPO steps with τ following the error vs fixed τ = {cfg.tau_fixed_km:g} km"
        )
        with clock("tau"):
            result["tau_study"] = tau_study(cfg, held_out)

    log(f"[{next(stage)}/{n_stages}] results\n")
    log(R.table(result["stages"], len(held_out), cfg.eval_style))
    log("")
    for line in R.verdict_lines(result["stages"]):
        log(line)
    log(R.verdict_summary(result["stages"]))
    if "tau_study" in result:
        log(tau_line(result["tau_study"]))
    log(clock.summary())
    result["time"] = {"cpu_s": clock.total()[0], "wall_s": clock.total()[1],
                      **{f"{k}_cpu_s": c for k, (c, _) in clock.stages.items()},
                      "load_average": os.getloadavg()[0] if hasattr(os, "getloadavg") else None}
    return result


def tau_study(cfg: DemoConfig, held_out) -> dict:
    """Format-only warm start, then the same GRPO steps with two τ: follow the error vs fixed."""
    from geospot.train import rl as rl_loop

    fmt, follow, fixed = tau_configs(cfg)
    evals = {"format_only": held_out_eval(fmt, cfg, held_out)}
    for name, c in (("fixed_tau", fixed), ("follow_error_tau", follow)):
        rl_loop.run(c)
        evals[name] = held_out_eval(c.log_path, cfg, held_out)
    out = {name: R.metrics(e) for name, e in evals.items()}
    # the verdict: follow_error against fixed τ, paired over the same images
    out["verdict"] = {
        k: c.verdict for k, c in R.compare(evals["fixed_tau"], evals["follow_error_tau"], cfg.seed).items()
    }
    out["change"] = {k: {"delta": c.delta, "ci95": [c.lo, c.hi]}
                     for k, c in R.compare(evals["fixed_tau"], evals["follow_error_tau"], cfg.seed).items()}
    out["steps"] = cfg.tau_steps
    return out


def tau_line(t: dict) -> str:
    f, a, b = t["format_only"], t["fixed_tau"], t["follow_error_tau"]
    return (
        f"τ study ({t['steps']} GRPO steps from a format-only warm start, greedy median km): format-only "
        f"{R.cell(f['median_km'], '{:,.0f}')}, fixed τ = 25 km {R.cell(a['median_km'], '{:,.0f}')}, τ following the "
        f"error {R.cell(b['median_km'], '{:,.0f}')} — follow-error vs fixed: median {t['verdict']['median_km']}; "
        f"greedy GeoScore {a['geoscore']:,.0f} -> {b['geoscore']:,.0f}: {t['verdict']['geoscore']}; "
        f"sampled GeoScore {a['sampled_geoscore']:,.0f} -> {b['sampled_geoscore']:,.0f}: "
        f"{t['verdict']['sampled_geoscore']}."
    )


def resolve_out(out: str, explicit: bool, fresh: bool) -> Path:
    """Where this run goes. An earlier run is never deleted unless --fresh says so: the default
    folder moves on to runs/demo-2, -3, ...; an explicit --out that holds a run is refused."""
    from geospot.config import ConfigError

    path = Path(out)
    if not path.exists() or not any(path.iterdir()):
        return path
    if fresh:
        shutil.rmtree(path)
        return path
    if explicit:
        raise ConfigError(f"--out {out} holds an earlier run; pass --fresh to replace it, or name another --out")
    n = 2
    while Path(f"{out}-{n}").exists():
        n += 1
    return Path(f"{out}-{n}")


def main(argv: list[str] | None = None) -> int:
    ap = FlagParser(prog="geospot demo", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="default",
        help="quick (~2 min), default (<= 5 min on 2 quiet cores), long (more steps + the τ study); "
        "SFT/single-GRPO/telescoping-GRPO/eval sizes: "
        + ", ".join(f"{k} {p.sft_steps}/{p.rl_single_steps}/{p.rl_steps}/{p.eval_n}" for k, p in PRESETS.items()),
    )
    ap.add_argument("--sft-steps", type=int, help="override the preset's SFT steps")
    ap.add_argument("--rl-single-steps", type=int,
                    help="override the preset's GRPO steps (single-turn + telescoping mix; 0 = skip)")
    ap.add_argument("--rl-steps", type=int,
                    help="override the preset's telescoping-only GRPO steps after the mixed stage (0 = none)")
    ap.add_argument("--eval-n", type=int, help="held-out images per eval (of the data's val + test ids: the demo's "
                    "world has 431)")
    ap.add_argument("--tau-study", type=int, nargs="?", const=150, metavar="STEPS",
                    help="also compare τ following the error with a fixed τ = 25 km from a format-only warm start "
                         "(STEPS GRPO steps per arm, default 150)")
    ap.add_argument("--data", default=DemoConfig.data, help="data spec (default: %(default)s)")
    ap.add_argument("--model", default=DemoConfig.model_name, help="model (default: %(default)s)")
    ap.add_argument("--out", help=f"run folder (default: {DemoConfig.out}, or {DemoConfig.out}-2, -3, ... if taken)")
    ap.add_argument("--fresh", action="store_true", help="replace the --out folder if it holds an earlier run")
    ap.add_argument("--zoom", type=int, default=DemoConfig.zoom,
                    help="telescoping: the first turn sees the photo this many times smaller per side, the second "
                         "the full photo (1 = one photo for every turn; default: %(default)s)")
    ap.add_argument("--seed", type=int, default=0, help="seed of data order, initialisation and sampling (default: 0)")
    ap.add_argument("--json", action="store_true", help="print the results as one JSON object on the last line")
    ap.add_argument("--serve", action="store_true", help="serve the dashboard of the run at the end")
    args = ap.parse_args(argv)

    from geospot.config import ConfigError
    from geospot.jsonutil import finite_json

    p = PRESETS[args.preset]
    pick = lambda v, d: d if v is None else v
    try:
        out = resolve_out(args.out or DemoConfig.out, explicit=args.out is not None, fresh=args.fresh)
        cfg = replace(
            DemoConfig(), model_name=args.model, data=args.data, out=str(out), seed=args.seed,
            sft_steps=pick(args.sft_steps, p.sft_steps), rl_single_steps=pick(args.rl_single_steps, p.rl_single_steps),
            rl_steps=pick(args.rl_steps, p.rl_steps), eval_n=pick(args.eval_n, p.eval_n),
            tau_steps=pick(args.tau_study, p.tau_steps), zoom=args.zoom,
        )
        result = run(cfg)
    except ConfigError as e:
        print(f"geospot demo: {e}", file=sys.stderr)
        return 2
    dash = ["geospot", "dashboard", "--runs", cfg.out]
    if args.serve:
        from geospot.dashboard.cli import main as dashboard_main

        return dashboard_main(dash[2:])
    print(f"\nWatch the guesses tighten: {' '.join(dash)}   (then open http://127.0.0.1:8765)")
    if args.json:
        print(json.dumps(finite_json(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
