"""Supervised warm-start: teach the model to answer `Latitude: <deg>\\nLongitude: <deg>`
(and to be roughly right) before RL.

    python -m geospot.sft model_name=Qwen/Qwen2.5-VL-3B-Instruct max_steps=50
    geospot sft model_name=tiny:qwen2_5_vl:small data=synthetic:n=2000 max_steps=300

The file reads top to bottom: config -> building examples -> the loop -> main."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np

from geospot import prompts
from geospot.config import ConfigError, help_text, option, parse_overrides
from geospot.engines.config import EngineConfig
from geospot.engines.types import AdamParams, Datum
from geospot.geo import EARTH_RADIUS_KM, format_metrics_table
from geospot.train.checkpoint import latest_checkpoint, load_checkpoint, read_checkpoint, resolve_checkpoint, save_checkpoint
from geospot.train.common import (
    LogDirBehavior,
    Progress,
    TimeBudget,
    prepare_log_dir,
    seed_everything,
    truncate_jsonl,
    write_config,
)
from geospot.train.lr import SCHEDULES, Schedule, learning_rate

# ---------------------------------------------------------------------------------------
# Config. The engine's keys are flattened in (`model_name=...` as in the seed); their
# defaults and help come from EngineConfig so the two never drift apart.

_ENGINE_FIELDS = {f.name: f for f in dataclasses.fields(EngineConfig)}


def _engine_option(name: str, **override: Any) -> Any:
    f = _ENGINE_FIELDS[name]
    return option(override.get("default", f.default), override.get("help", f.metadata["help"]))


@dataclass(frozen=True)
class SFTConfig:
    # model / engine (EngineConfig's keys)
    model_name: str = _engine_option("model_name")
    engine: Literal["local", "tinker"] = _engine_option("engine")
    lora_rank: int = _engine_option("lora_rank")
    lora_alpha: float = _engine_option("lora_alpha")
    lora_targets: str = _engine_option("lora_targets")
    train_vision: bool = _engine_option("train_vision")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = _engine_option("dtype")
    device: str = _engine_option("device")
    max_pixels: int = _engine_option("max_pixels")
    tinker_base_url: str | None = _engine_option("tinker_base_url")
    kv_reuse_tokens: int = _engine_option("kv_reuse_tokens")
    sampler: Literal["torch", "vllm"] = _engine_option("sampler")
    vllm_gpu_memory_utilization: float = _engine_option("vllm_gpu_memory_utilization")
    load_checkpoint_path: str | None = option(None, "start from these weights, with a fresh optimizer at step 0: an SFT run folder, its checkpoints/<step> folder, or a tinker:// path (None = the model's own weights; a resumed run loads its checkpoint instead)")
    seed: int = option(0, "seed for data order, prompt-style draws, initialisation and sampling")
    # data
    data: str = option("hf:sdan/geospot-unified", "training data spec: a local path, `hf:<owner/name>`, `synthetic:n=2000,size=112`, ...; mix parts with `;` and weight them with `@w` (e.g. `wds:/d/{000..009}.tar@3;csv:/d/osv5m@1`); grammar in geospot/data/spec.py")
    eval_data: str | None = option(None, "held-out data spec; None = the `val` split of `data`")
    eval_n: int = option(200, "number of held-out images for the periodic eval (0 = no eval)")
    # the examples
    prompt_style: Literal["single", "telescoping", "both"] = option("both", "`single`: one prompt, one answer; `telescoping`: coarse -> refine -> final turns, each answer trained given the previous turns; `both`: each image draws one of the two (so one warm start serves both RL envs)")
    answer_decimals: int = option(2, "decimals of the target coordinates (single-turn and the final telescoping turn)")
    telescoping_decimals: tuple[int, ...] = option((0, 1), "decimals of the targets of the telescoping turns before the final one (coarse, refine)")
    telescoping_noise_km: tuple[float, ...] = option((2000.0, 1000.0), "typical error (km) of the previous guess shown to each telescoping turn after the first (refine, final): the shown guess is the truth moved that far in a random direction, so later turns learn to correct a guess instead of copying it; 0 = show the truth")
    # optimisation
    batch_size: int = option(32, "images per optimizer step")
    grad_accum: int = option(1, "micro-batches per optimizer step (batch_size must divide evenly); trades memory for time, not the result")
    learning_rate: float = option(2e-4, "peak Adam learning rate (LoRA wants ~1e-4..5e-4; full fine-tuning of a big model far less)")
    lr_schedule: Schedule = option("linear", "decay after warmup: `linear` (to 0), `cosine` (to 0) or `constant`")
    warmup_steps: int = option(0, "linear warmup steps before the decay")
    min_lr_ratio: float = option(0.0, "floor of the decay as a fraction of learning_rate")
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_beta2: float = option(0.95, "Adam beta2")
    adam_eps: float = option(1e-8, "Adam epsilon")
    weight_decay: float = option(0.0, "decoupled weight decay")
    grad_clip_norm: float | None = option(1.0, "clip the global gradient norm (None = no clipping)")
    max_steps: int = option(1000, "optimizer steps")
    max_seconds: float = option(0.0, "also stop after this many seconds of training steps (wall clock; model load, evals and checkpoints not counted; a resumed run counts the seconds before its checkpoint), ending as at max_steps with the last eval and checkpoint; 0 = no limit. The lr schedule then advances by whichever of steps/max_steps and seconds/max_seconds is further along, so a run the clock stops still ends its decay (such a run does not repeat step for step)")
    # eval, checkpoints, logging
    eval_every: int = option(100, "run the held-out greedy eval every N steps and at the end (0 = only at the end)")
    eval_at_start: bool = option(True, "evaluate the untrained model first (the baseline row of the table)")
    eval_batch_size: int = option(16, "prompts per sampling call during eval")
    eval_max_tokens: int = option(24, "answer token budget per turn during eval")
    save_every: int = option(100, "checkpoint every N steps and at the end (0 = only at the end)")
    keep_checkpoints: int = option(2, "how many checkpoints to keep (0 = all)")
    log_path: str | None = option(None, "run folder (config.json, metrics.jsonl, checkpoints/); None = runs/sft-<model>-<time>")
    behavior_if_log_dir_exists: LogDirBehavior = option("ask", "when log_path holds a run: `resume` from its last checkpoint, `delete` it, `raise`, or `ask` (a prompt on a terminal; `raise` otherwise)")
    log_every: int = option(10, "print the progress line every N steps when stderr is not a terminal")
    wandb_project: str | None = option(None, "also log to this Weights & Biases project (needs `pip install wandb`)")
    wandb_name: str | None = option(None, "W&B run name (default: the run folder's name)")

    def engine_config(self) -> EngineConfig:
        return EngineConfig(**{k: getattr(self, k) for k in _ENGINE_FIELDS})

    def validate(self) -> None:
        def need(ok: bool, key: str, msg: str) -> None:
            if not ok:
                raise ConfigError(f"{key}={getattr(self, key)!r} {msg}")

        need(self.learning_rate > 0 and math.isfinite(self.learning_rate), "learning_rate", "must be a positive number, e.g. learning_rate=2e-4")
        need(self.batch_size >= 1, "batch_size", "must be >= 1")
        need(self.grad_accum >= 1, "grad_accum", "must be >= 1")
        need(self.batch_size % self.grad_accum == 0, "grad_accum", f"must divide batch_size={self.batch_size}")
        need(self.max_steps >= 1, "max_steps", "must be >= 1")
        need(0 <= self.max_seconds < math.inf, "max_seconds", "must be >= 0 (0 = no time limit)")
        need(0 <= self.warmup_steps <= self.max_steps, "warmup_steps", f"must be in [0, max_steps={self.max_steps}]")
        need(0.0 <= self.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1]")
        need(self.lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {', '.join(SCHEDULES)}")
        need(0 <= self.answer_decimals <= 6, "answer_decimals", "must be in [0, 6]")
        need(len(self.telescoping_decimals) == len(prompts.TELESCOPING_PROMPTS) - 1, "telescoping_decimals",
             f"needs one value per non-final telescoping turn ({len(prompts.TELESCOPING_PROMPTS) - 1})")
        need(all(0 <= d <= 6 for d in self.telescoping_decimals), "telescoping_decimals", "values must be in [0, 6]")
        need(len(self.telescoping_noise_km) == len(prompts.TELESCOPING_PROMPTS) - 1, "telescoping_noise_km",
             f"needs one value per telescoping turn after the first ({len(prompts.TELESCOPING_PROMPTS) - 1})")
        need(all(0 <= x < 20000 and math.isfinite(x) for x in self.telescoping_noise_km), "telescoping_noise_km", "values must be in [0, 20000) km")
        for key in ("eval_n", "eval_every", "save_every", "keep_checkpoints", "weight_decay"):
            need(getattr(self, key) >= 0, key, "must be >= 0")
        need(self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        need(self.eval_max_tokens >= 1, "eval_max_tokens", "must be >= 1")
        need(self.log_every >= 1, "log_every", "must be >= 1")
        need(0 <= self.adam_beta1 < 1 and 0 <= self.adam_beta2 < 1, "adam_beta1", "and adam_beta2 must be in [0, 1)")
        need(self.grad_clip_norm is None or self.grad_clip_norm > 0, "grad_clip_norm", "must be > 0 or None")
        need(bool(self.data.strip()), "data", "is empty; pass a data spec, e.g. data=synthetic:n=2000")
        self.engine_config().validate()


# ---------------------------------------------------------------------------------------
# Examples: one image -> chat messages whose assistant turns are the targets.


def single_turn_messages(sample: Any, decimals: int) -> list[dict]:
    return [
        prompts.user_message(sample.image, prompts.SINGLE_TURN_PROMPT),
        prompts.assistant_message(prompts.format_answer(sample.lat, sample.lon, decimals)),
    ]


def telescoping_messages(sample: Any, turn_decimals: Sequence[int], noise_km: Sequence[float] = (),
                         rng: np.random.Generator | None = None) -> list[dict]:
    """Coarse -> refine -> final: every turn's target is the truth at its turn's precision,
    and every turn after the first sees a previous guess exactly as the telescoping env
    shows it (its own `turn_prompt`). One sequence, so every turn's answer is trained given
    the turns before it — what the telescoping env samples.

    The shown previous guess is NOT the previous target: it is the truth moved
    `noise_km[t-1]` (typical distance, a Rayleigh draw in a random direction) away. Shown
    the (rounded) truth, a model learns that the answer is "copy the previous guess" and at
    inference repeats its first turn forever; shown a guess that is off by about as much
    as a real earlier turn (large for the coarse guess, smaller for the refine one), it has
    to combine the image with the guess. Measured on the tiny CPU model (demo world, 160
    held-out images, greedy): the copy is gone and the final turn lands 1-7 % closer than
    the first (the gain shrinks as the first turn gets better); sampled turns do not improve.
    noise 0 (or no rng) shows the truth, the old behaviour."""
    from geospot.envs.telescoping import turn_prompt

    messages: list[dict] = []
    prev: tuple[float, float] | None = None
    for t, dec in enumerate(turn_decimals):
        text = turn_prompt(prompts.TELESCOPING_PROMPTS, t, prev)
        messages.append(prompts.user_message(sample.image if t == 0 else None, text))
        messages.append(prompts.assistant_message(prompts.format_answer(sample.lat, sample.lon, dec)))
        scale = float(noise_km[t]) if t < len(noise_km) else 0.0
        lat, lon = perturb(sample.lat, sample.lon, scale, rng) if scale > 0 and rng is not None else (sample.lat, sample.lon)
        prev = (round(lat, dec), round(lon, dec))
    return messages


def perturb(lat: float, lon: float, scale_km: float, rng: np.random.Generator) -> tuple[float, float]:
    """(lat, lon) moved a Rayleigh(scale_km)-distributed distance along a uniformly random
    bearing on the sphere (median distance ~1.18 x scale). Longitude wrapped to [-180, 180)."""
    d = scale_km * math.sqrt(-2.0 * math.log(1.0 - rng.random())) / EARTH_RADIUS_KM  # angular distance
    bearing = 2.0 * math.pi * rng.random()
    p1, l1 = math.radians(lat), math.radians(lon)
    p2 = math.asin(max(-1.0, min(1.0, math.sin(p1) * math.cos(d) + math.cos(p1) * math.sin(d) * math.cos(bearing))))
    l2 = l1 + math.atan2(math.sin(bearing) * math.sin(d) * math.cos(p1), math.cos(d) - math.sin(p1) * math.sin(p2))
    return math.degrees(p2), (math.degrees(l2) + 180.0) % 360.0 - 180.0


def example_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The noise of one example: a pure function of (seed, step, position in the batch), so
    a resumed run draws the same previous guesses without any state to checkpoint."""
    return np.random.default_rng([seed, step, index, 104729])


def example_styles(style: str, n: int, seed: int, step: int) -> list[str]:
    """Which prompt each of the step's n images gets. A pure function of (seed, step) so
    a resumed run draws the same styles without any state to checkpoint."""
    if style != "both":
        return [style] * n
    coin = np.random.default_rng([seed, step, 7919]).random(n)
    return ["single" if c < 0.5 else "telescoping" for c in coin]


def build_messages(sample: Any, style: str, cfg: SFTConfig, rng: np.random.Generator | None = None) -> list[dict]:
    if style == "single":
        return single_turn_messages(sample, cfg.answer_decimals)
    return telescoping_messages(sample, (*cfg.telescoping_decimals, cfg.answer_decimals), cfg.telescoping_noise_km, rng)


def normalise_weights(datums_D: Sequence[Datum]) -> tuple[list[Datum], int]:
    """Scale every datum's weights by 1 / (target tokens in the whole batch).

    The engines sum the loss over tokens and datums (Tinker's convention). Summed, the
    gradient grows with the batch's token count, so the right learning rate would depend
    on batch_size and on the answers' lengths. Dividing by the batch's token count makes
    the sum a per-token mean: the learning rate means the same at any batch size and with
    grad_accum (all micro-batches share one denominator, so their gradients add up to the
    full batch's mean)."""
    n_tokens = int(sum(float(np.sum(d.loss_fn_inputs["weights"])) for d in datums_D))
    scale = 1.0 / max(n_tokens, 1)
    out = [
        Datum(d.model_input, {**d.loss_fn_inputs, "weights": np.asarray(d.loss_fn_inputs["weights"], np.float32) * scale})
        for d in datums_D
    ]
    return out, n_tokens


def make_datums(engine: Any, samples: Sequence[Any], styles: Sequence[str], cfg: SFTConfig, step: int = 0) -> list[Datum]:
    from geospot.engines.datums import make_datum

    datums = []
    for i, (sample, style) in enumerate(zip(samples, styles)):
        messages = build_messages(sample, style, cfg, example_rng(cfg.seed, step, i))
        full, weights_T = engine.renderer.supervised_example(messages)
        datums.append(make_datum(full, weights=weights_T))
    return datums


# ---------------------------------------------------------------------------------------
# Data, eval and writers: thin adapters over the data / eval / runs packages.


def open_data(cfg: SFTConfig) -> tuple[Any, list[Any], Any]:
    """(train stream, held-out samples, geocoder) — or a ConfigError naming `data` /
    `eval_data`. Runs before the model is loaded."""
    from geospot import data as gdata

    def wrap(key: str, spec: str, fn):
        try:
            return fn()
        except ConfigError:
            raise
        except (FileNotFoundError, ValueError, KeyError, OSError, ImportError) as e:
            raise ConfigError(f"{key}={spec!r}: {e}") from e

    stream = wrap("data", cfg.data, lambda: gdata.open_stream(cfg.data, split="train", seed=cfg.seed, repeat=True))
    eval_spec = cfg.eval_data or cfg.data
    eval_key = "eval_data" if cfg.eval_data else "data"
    held_out = wrap(eval_key, eval_spec, lambda: gdata.load_samples(eval_spec, split="val", n=cfg.eval_n)) if cfg.eval_n else []
    return stream, list(held_out), geocoder_for(eval_spec)


def geocoder_for(spec: str) -> Any:
    """Synthetic worlds label their own countries/regions/cities; real data uses the
    OSV-5M-style reverse geocoder."""
    from geospot.data import world_from_spec

    from geospot.geo import reverse_geocode

    world = world_from_spec(spec)
    return world.geocoder if world is not None else reverse_geocode


def run_eval(engine: Any, samples: list[Any], geocoder: Any, cfg: SFTConfig, writer: Any, step: int) -> dict[str, float]:
    """Greedy held-out eval; `evaluate` logs `eval/<metric>` and the per-image guesses
    (the dashboard's eval map) through the writer itself."""
    from geospot.eval import evaluate

    style = "telescoping" if cfg.prompt_style == "telescoping" else "single"
    result = evaluate(engine, samples, prompt_style=style, batch_size=cfg.eval_batch_size,
                      max_tokens=cfg.eval_max_tokens, geocoder=geocoder, writer=writer, step=step)
    return dict(result.metrics)



def make_writer(log_dir: Path, cfg: SFTConfig, start_step: int) -> Any:
    """The run store + metrics.jsonl (+ wandb) through one RunWriter. A resumed run first
    drops the metrics lines past its checkpoint (and the run store its steps and images past
    it), so the file and the dashboard read like one run."""
    from geospot.runs.loggers import open_run_writer
    from geospot.runs.store import truncate_store

    truncate_jsonl(log_dir / "metrics.jsonl", start_step)
    truncate_store(log_dir, start_step)
    return open_run_writer(log_dir, console=False, wandb_project=cfg.wandb_project, wandb_name=cfg.wandb_name)


# ---------------------------------------------------------------------------------------
# The loop


@dataclass
class SFTResult:
    log_dir: Path
    steps: int
    eval_history: dict[int, dict[str, float]]  # step -> held-out metrics
    final_loss: float


def initial_weights(path: str | None) -> str | None:
    """The engine state a fresh run starts from (`load_checkpoint_path`), found before the
    model loads so a typo costs seconds."""
    if not path or "://" in path:
        return path
    try:
        return read_checkpoint(resolve_checkpoint(path)).engine_path
    except FileNotFoundError as e:
        raise ConfigError(f"load_checkpoint_path={path!r}: {e}") from None


def open_inputs(cfg: Any, log_dir: Path) -> tuple[Any, list[Any], Any, str | None]:
    """(train stream, held-out samples, geocoder, initial weights): everything a run can get
    wrong in its config, checked before the (slow) model load. On a ConfigError the fresh,
    still-empty run folder is removed, so a typo leaves nothing behind."""
    try:
        stream, held_out, geocoder = open_data(cfg)
        init_weights = initial_weights(cfg.load_checkpoint_path)
        if cfg.wandb_project and importlib.util.find_spec("wandb") is None:
            raise ConfigError(f"wandb_project={cfg.wandb_project!r} needs the wandb package: `pip install wandb` (or leave wandb_project unset)")
    except ConfigError:
        if not any(log_dir.iterdir()):
            log_dir.rmdir()
        raise
    return stream, held_out, geocoder, init_weights


@contextlib.contextmanager
def finishing(writer: Any, stream: Any, close_writer: bool = True):
    """The loop runs inside, `running` meanwhile: the run ends `done`, `stopped` on Ctrl-C,
    or `failed` if anything else escapes (the dashboard shows a crashed run as failed, not as
    running); the writer and the data stream's worker threads are closed either way."""
    writer.set_status("running")
    try:
        yield
        writer.set_status("done")
    except KeyboardInterrupt:
        writer.set_status("stopped")
        raise
    except BaseException:
        writer.set_status("failed")
        raise
    finally:
        if close_writer:
            writer.close()
        stream.close()


def default_log_path(cfg: SFTConfig) -> str:
    name = cfg.model_name.rstrip("/").replace(":", "-").split("/")[-1]
    return str(Path("runs") / f"sft-{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def train(cfg: SFTConfig, *, stderr: Any = None, clock: Any = time.perf_counter) -> SFTResult:
    """`clock` measures `max_seconds` (a benchmark on a shared machine passes time.process_time)."""
    stderr = stderr if stderr is not None else sys.stderr

    # 1. Everything that can fail fast, before the (slow) model load.
    log_dir, resuming = prepare_log_dir(cfg.log_path or default_log_path(cfg), cfg.behavior_if_log_dir_exists)
    ckpt_dir = latest_checkpoint(log_dir) if resuming else None
    stream, held_out, geocoder, init_weights = open_inputs(cfg, log_dir)
    write_config(log_dir, "sft", cfg)
    seed_everything(cfg.seed)

    # 2. The model, then the state of an interrupted run (weights, optimizer, cursor, RNG).
    from geospot.engines import make_engine

    engine = make_engine(cfg.engine_config())
    start_step, eval_history, budget = 0, {}, TimeBudget(cfg.max_seconds, clock=clock)
    if ckpt_dir is not None:
        ckpt = load_checkpoint(ckpt_dir, engine, with_optimizer=True)
        stream.load_state_dict(ckpt.data_state)
        start_step = ckpt.step
        eval_history = {int(k): v for k, v in ckpt.loop_state.get("eval_history", {}).items()}
        budget.spent = float(ckpt.loop_state.get("train_seconds", 0.0))
        print(f"resuming {log_dir} from step {start_step}", file=stderr)
    elif init_weights:
        engine.load_state(init_weights, with_optimizer=False)
    writer = make_writer(log_dir, cfg, start_step if ckpt_dir is not None else -1)
    writer.log_config("sft", dataclasses.asdict(cfg))
    progress = Progress(cfg.max_steps, start_step, stream=stderr, every=cfg.log_every)

    def evaluate_now(step: int) -> None:
        if not held_out:
            return
        metrics = run_eval(engine, held_out, geocoder, cfg, writer, step)
        eval_history[step] = metrics
        progress.note(format_metrics_table({f"step {s}": m for s, m in sorted(eval_history.items())}))

    with finishing(writer, stream):
        if start_step == 0 and cfg.eval_at_start:
            evaluate_now(0)
            progress.restart()  # the ETA counts training steps, not the baseline eval

        loss, steps = float("nan"), start_step
        micro = cfg.batch_size // cfg.grad_accum
        for step in range(start_step, cfg.max_steps):
            if budget.expired():  # a time-limited run resumed after its time ran out
                break
            budget.begin_step()
            t0 = time.perf_counter()
            samples = stream.next_batch(cfg.batch_size)
            styles = example_styles(cfg.prompt_style, len(samples), cfg.seed, step)
            datums_D, n_target = normalise_weights(make_datums(engine, samples, styles, cfg, step))

            # Loss reported = mean NLL per target token (the weights already hold 1/n_target).
            loss = 0.0
            for i in range(0, len(datums_D), micro):
                chunk = datums_D[i : i + micro]
                out = engine.forward_backward(chunk, "cross_entropy")
                loss -= sum(float(np.dot(lp_T, d.loss_fn_inputs["weights"])) for lp_T, d in zip(out.logprobs, chunk))
            lr = learning_rate(budget.schedule_step(step, cfg.max_steps), cfg.max_steps, cfg.learning_rate, cfg.lr_schedule, cfg.warmup_steps, cfg.min_lr_ratio)
            optim_metrics = engine.optim_step(AdamParams(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay, cfg.grad_clip_norm))

            seconds = time.perf_counter() - t0
            n_tokens = sum(d.model_input.length for d in datums_D)
            done = step + 1
            metrics = {"loss": loss, "lr": lr, "tok_per_s": n_tokens / seconds, "target_tokens": n_target, "seconds": seconds}
            metrics.update({f"optim/{k}": float(v) for k, v in (optim_metrics or {}).items()})
            writer.log_step(done, metrics)
            progress.update(step, {"loss": loss, "lr": lr, "tok_per_s": metrics["tok_per_s"]})

            budget.end_step()
            steps, last = done, done == cfg.max_steps or budget.expired()  # the time limit ends the run as max_steps does
            if last or (cfg.eval_every and done % cfg.eval_every == 0):
                evaluate_now(done)
            if last or (cfg.save_every and done % cfg.save_every == 0):
                save_checkpoint(
                    log_dir, done, engine,
                    data_state=stream.state_dict(),
                    loop_state={"eval_history": eval_history, "train_seconds": budget.spent},
                    keep_last=cfg.keep_checkpoints or None,
                )
            if last:
                break
    return SFTResult(log_dir, steps, eval_history, loss)


# ---------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text(SFTConfig, "geospot sft — supervised warm-start (image + prompt -> `Latitude: ..\\nLongitude: ..`)"))
        return 0
    try:
        cfg = parse_overrides(SFTConfig, argv)
        result = train(cfg)
    except ConfigError as e:
        print(f"geospot sft: {e}", file=sys.stderr)
        return 2
    print(f"done: {result.steps} steps, run folder {result.log_dir}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
