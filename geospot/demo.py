"""`geospot demo`: the whole pipeline on a CPU, offline, in a few minutes.

    tiny random Qwen2.5-VL + synthetic world
      -> held-out eval of the untrained model
      -> SFT warm-start (answer format + a first map of the world)
      -> GRPO from the SFT checkpoint: single-turn groups, with a quarter of each batch played as
         telescoping groups (one policy, both envs) so the refine turns learn too; each turn is
         credited with its own reward (the coarse turn its distance, a refine turn its gain)
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

import argparse
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
from geospot.prompts import TELESCOPING_PROMPTS

# The world of the demo: 8 countries (4 regions each) on 6 continents, cues kept clear
# (difficulty 0.1) so a 0.43 M-parameter model can learn a real map of it in minutes, and two pairs
# of look-alike countries >= 5,000 km apart (ambiguity 0.5: half the images could be either twin).
# Why the look-alikes: there the token loss and the distance disagree. SFT learns the digits of both
# twins and greedy decoding strings digits of each together into an answer in neither country (on
# the look-alike images 36-61 of 93 of SFT's greedy answers); a distance reward pays for one
# coherent place. That is where RL earns its place for a reason a user can see — and, measured, the
# only world tried where GRPO improved greedy beyond noise on every seed (docs/rl_vs_sft.md).
DEMO_DATA = "synthetic:n=4000,size=112,seed=0,regions=8,difficulty=0.1,ambiguity=0.5"


@dataclass(frozen=True)
class Preset:
    sft_steps: int
    rl_single_steps: int
    rl_steps: int  # telescoping-only GRPO steps after the mixed stage (0 = none; quick keeps a few to test it)
    eval_n: int
    tau_steps: int = 0  # > 0: also run the τ study with this many GRPO steps per arm


# `default` fits the 5-minute budget on 2 quiet cores: 201-241 CPU s (SFT 54-76, mixed GRPO 129-151,
# evals 16-18; one torch thread), 3 min 53 s wall at load 1.0. SFT stops at 300 steps, while its map
# is still rough, so GRPO has room (from a converged 450-step SFT, 400 GRPO steps moved greedy by
# +3 / -41 in the world without look-alikes). No telescoping-only stage: with 24 (or 72)
# telescoping-only steps after single-turn GRPO the final turn was never closer than the first,
# for about the same CPU per telescoping group as the mixed groups. 202 held-out images,
# all of the world's val split (5 % of its 4,000 ids, by hash): the greedy band (paired bootstrap,
# 95 %) is about ±155 GeoScore there vs ±160-200 on 128.
# `quick` is the test's size; `long` adds the τ study and more steps.
PRESETS = {
    "quick": Preset(sft_steps=200, rl_single_steps=60, rl_steps=4, eval_n=48),
    "default": Preset(sft_steps=300, rl_single_steps=300, rl_steps=0, eval_n=202),
    "long": Preset(sft_steps=600, rl_single_steps=600, rl_steps=0, eval_n=202, tau_steps=150),
}


@dataclass(frozen=True)
class DemoConfig:
    model_name: str = "tiny:qwen2_5_vl:tiny"
    data: str = DEMO_DATA
    sft_steps: int = PRESETS["default"].sft_steps
    rl_single_steps: int = PRESETS["default"].rl_single_steps
    rl_steps: int = PRESETS["default"].rl_steps
    eval_n: int = PRESETS["default"].eval_n
    tau_steps: int = 0
    out: str = "runs/demo"
    seed: int = 0
    # SFT: full fine-tuning of a random tiny model (LoRA on random weights learns little),
    # small batches and a high lr — many cheap steps is what works on a CPU. `both` prompt
    # styles (each image draws single or telescoping): the GRPO stages use both prompts, and
    # SFT must have seen the prompt it is judged on, else GRPO's gain is partly learning a new
    # prompt (measured: SFT on telescoping only scores 1,082 greedy on the single prompt).
    # Earlier turns' guesses are shown with realistic noise so the later turns learn to refine
    # rather than copy (geospot.train.sft.telescoping_messages).
    sft_batch_size: int = 16
    sft_lr: float = 3e-3
    sft_prompt_style: str = "both"
    answer_decimals: int = 1
    telescoping_noise_km: tuple[float, float] = (2000.0, 1000.0)
    # `zoom` (envs/telescoping.py): 1 = every turn sees the same photo. zoom 2, 4, 8 (a thumbnail, then
    # the full photo) were tried: the final turn still scatters digits; zoom 4's beat its first turn on
    # seeds 0-3, within noise on seed 0, for 30-50 s more CPU (docs/rl_vs_sft.md, 5th-6th passes).
    zoom: int = 1
    # GRPO, stage 1: single-turn groups. One turn costs ~1/6 of a telescoping step, so it gets ~6x
    # more updates in the same seconds; kernel reward exp(-d/τ) with τ following the policy's
    # median error (RLConfig default), lr 8e-5 (docs/rl_vs_sft.md: 2e-5..4e-5 moved less,
    # 1.6e-4 lost greedy score). 8 images x 8 rollouts per step.
    rl_single_lr: float = 8e-5
    # ... and a quarter of each batch (2 of 8 images) played as telescoping groups, GeoScore reward
    # per turn r_t = S(d_t) - S(d_{t-1}) (it telescopes to the final score, so a refine turn pays
    # only if it lands closer). Why: SFT's refine turns copy the previous guess digit by digit and
    # drop or repeat digits ("68.60" -> "6.6": cheap for the token loss, thousands of km for the
    # distance), and single-turn GRPO alone made the final turn worse still (5,227 km after 450
    # steps). A larger share costs more CPU (0.25 already doubles a step's: ~0.5 vs 0.25 s).
    # Written as a telescoping run with single-turn groups mixed in (3/4 of the images): the same
    # batches, and the run folder says "telescoping", so `geospot predict model=runs/demo/rl` asks
    # with the telescoping turns, as it did when the last stage was telescoping-only.
    rl_env: str = "telescoping"
    rl_mix_env: str | None = "single"
    rl_mix_share: float = 0.75
    # Credit of the telescoping turns: each turn its own reward, centred across the group (`own_turn`):
    # the coarse turn is paid for its own distance, a refine turn for how much closer it lands than
    # the turn before. With the return-to-go (`per_turn`, RLConfig's default) the coarse turn's
    # credit is the final score alone, and GRPO turned it into a stub — an integer with a digit left
    # off — that the later turns complete: "final closer than first" then held only because the first
    # turn was broken, and on 2 of 3 fresh seeds not even that. With own_turn, seeds 0-3: the first
    # turn is a real guess; the final turn is closer on 3 and within noise on 1 (seed 0, where the first
    # turn is already as good as the single-turn answer), never farther beyond noise (docs/rl_vs_sft.md, 4th pass).
    rl_credit: str = "own_turn"
    # GRPO, stage 2 (rl_steps > 0 only): telescoping-only steps after the mixed stage.
    rl_lr: float = 4e-5
    rl_batch_size: int = 8
    rl_group_size: int = 8
    max_tokens: int = 16
    # Eval: greedy (what a user of the model sees) AND seeded samples at temperature 1 (the
    # policy GRPO trains), one per image per seed, averaged over the seeds; same held-out
    # images for every stage, so each change is judged by a paired bootstrap over them. Two
    # sampling seeds over 202 images cost less than four did over 128; the sampled change (+500)
    # is far outside its band either way, the greedy one needs the extra images.
    eval_style: str = "single"
    eval_sample_seeds: tuple[int, ...] = (5, 6)
    # τ study: an early warm start — the SFT run's checkpoint at this step (in the default 300-step
    # run: 98 % parsed, 2,320 km median; a separate 150-step SFT, annealed, was format-only at
    # ~6,600 km) where a fixed τ = 25 km gives every rollout ≈ 0 reward — then single-turn
    # GRPO with τ following the error vs a fixed τ of `tau_fixed_km`, the same steps and seed.
    tau_format_steps: int = 150
    tau_fixed_km: float = 25.0
    rl_extra: dict = field(default_factory=dict)  # any other RLConfig key of the final stage (tests, experiments)


def stage_configs(cfg: DemoConfig):
    """(sft, rl_single, rl) configs; each GRPO stage starts from the one before it."""
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    out = Path(cfg.out)
    sft = SFTConfig(
        model_name=cfg.model_name, lora_rank=0, train_vision=True, data=cfg.data, eval_n=0,
        prompt_style=cfg.sft_prompt_style, answer_decimals=cfg.answer_decimals, telescoping_decimals=(0, 1),
        telescoping_noise_km=cfg.telescoping_noise_km, zoom=cfg.zoom,
        batch_size=cfg.sft_batch_size, learning_rate=cfg.sft_lr, lr_schedule="cosine", warmup_steps=5,
        max_steps=cfg.sft_steps, eval_every=0, eval_at_start=False, log_every=50,
        # the τ study starts from the checkpoint at tau_format_steps: keep it (and every other)
        save_every=cfg.tau_format_steps if cfg.tau_steps else 0, keep_checkpoints=0,
        log_path=str(out / "sft"), behavior_if_log_dir_exists="raise", seed=cfg.seed,
    )
    # The engine keys are passed explicitly: a GRPO run's config records None for what it inherited
    # from the SFT run, so the telescoping stage (started from the single-turn run) would not find them.
    engine = {k: getattr(sft, k, None) for k in ("model_name", "lora_rank", "train_vision", "max_pixels")}
    common = {
        **{k: v for k, v in engine.items() if v is not None},
        "data": cfg.data,
        "eval_n": 0,
        "batch_size": cfg.rl_batch_size,
        "group_size": cfg.rl_group_size,
        "max_tokens": cfg.max_tokens,
        "eval_every": 0,
        "eval_at_start": False,
        "log_every": 50,  # as SFT: a progress line every 50 steps, not 300 lines per stage
        "behavior_if_log_dir_exists": "raise",
        "seed": cfg.seed,
        "advantage": cfg.rl_credit,
        "zoom": cfg.zoom,
    }
    single = RLConfig(env_type=cfg.rl_env, load_checkpoint_path=str(out / "sft"), max_steps=max(cfg.rl_single_steps, 1),
                      learning_rate=cfg.rl_single_lr, save_every=max(cfg.rl_single_steps, 1), log_images_every=10,
                      mix_env_type=cfg.rl_mix_env, mix_share=cfg.rl_mix_share,
                      # the last GRPO stage writes `rl`: the folder `geospot predict model=runs/demo/rl` names
                      log_path=str(out / ("rl-single" if cfg.rl_steps else "rl")), **common)
    start = single.log_path if cfg.rl_single_steps else str(out / "sft")
    rl = RLConfig(
        **{
            **common,
            "env_type": "telescoping",
            "load_checkpoint_path": start,
            "max_steps": max(cfg.rl_steps, 1),
            "learning_rate": cfg.rl_lr,
            "save_every": max(cfg.rl_steps, 1),
            "log_path": str(out / "rl"),
            **cfg.rl_extra,
        }
    )
    return sft, single, rl


def tau_configs(cfg: DemoConfig):
    """(the format-only checkpoint, GRPO with τ following the error, GRPO with fixed τ): same seed, steps, data."""
    sft, single, _ = stage_configs(cfg)
    out = Path(cfg.out) / "tau"
    fmt = str(Path(sft.log_path) / "checkpoints" / str(cfg.tau_format_steps))
    # single-turn only (no telescoping mix): the study is about τ, which the telescoping GeoScore reward does not use
    arm = {"load_checkpoint_path": fmt, "max_steps": cfg.tau_steps, "save_every": cfg.tau_steps, "log_images_every": 0,
           "env_type": "single", "mix_env_type": None, "zoom": 1}
    # follow_error clips τ to [tau_end_km, tau_start_km]: the cap is raised above a format-only
    # policy's ~7,000 km error, else τ would sit at the 2,000 km cap instead of following it.
    follow = replace(
        single, **arm, tau_schedule="follow_error", tau_start_km=10000.0, log_path=str(out / "follow-error")
    )
    fixed = replace(single, **arm, tau_schedule="constant", tau_start_km=cfg.tau_fixed_km, log_path=str(out / "fixed"))
    return fmt, follow, fixed


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

    writer = open_run_writer(model, console=False)
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
    from geospot.envs.registry import mixed_count
    from geospot.train import rl as rl_loop
    from geospot.train import sft as sft_loop

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
            held_out = load_samples(cfg.data, split="val", n=cfg.eval_n)
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
    ap = argparse.ArgumentParser(prog="geospot demo", description=__doc__.split("\n\n")[0])
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
    ap.add_argument("--eval-n", type=int, help="held-out images per eval")
    ap.add_argument("--tau-study", type=int, nargs="?", const=150, metavar="STEPS",
                    help="also compare τ following the error with a fixed τ = 25 km from a format-only warm start "
                         "(STEPS GRPO steps per arm, default 150)")
    ap.add_argument("--data", default=DemoConfig.data, help="data spec (default: %(default)s)")
    ap.add_argument("--model", default=DemoConfig.model_name, help="model (default: %(default)s)")
    ap.add_argument("--out", help=f"run folder (default: {DemoConfig.out}, or {DemoConfig.out}-2, -3, ... if taken)")
    ap.add_argument("--fresh", action="store_true", help="replace the --out folder if it holds an earlier run")
    ap.add_argument("--zoom", type=int, default=DemoConfig.zoom,
                    help="telescoping: the first turn sees the photo this many times smaller per side (1 = off)")
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
