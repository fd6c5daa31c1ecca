"""Supervised warm-start: teach the model to answer `Latitude: <deg>\\nLongitude: <deg>`
(and to be roughly right) before RL.

    python -m geospot.sft model_name=Qwen/Qwen2.5-VL-3B-Instruct max_steps=50
    geospot sft model_name=tiny:qwen2_5_vl:small data=synthetic:n=2000 max_steps=300

The file reads top to bottom: config -> building examples -> the loop -> main."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, ClassVar, Literal

import numpy as np

from geospot import distributed, prompts
from geospot.config import option, require
from geospot.engines.config import engine_keys
from geospot.engines.datums import make_datum
from geospot.engines.start_checks import random_tiny
from geospot.engines.types import AdamParams, Datum
from geospot.envs.config import SFT_UNREAD, EnvOptions, blind
from geospot.envs.kinds import ENV_TYPES, KINDS, MIXES, PROMPT_STYLES, eval_env
from geospot.eval import evaluate
from geospot.eval.compare import extra_lines
from geospot.geo import format_metrics_table
from geospot.runs.folder import LogDirBehavior
from geospot.train.command import run_command
from geospot.train.common import Progress
from geospot.train.inherit import sft_from_start_run
from geospot.train.lifecycle import (
    RUN_HELP,
    TRAINING_ALIASES,
    Run,
    RunResult,
    default_log_path,
    due,
    finishing,
    run_folder_name,
    start_run,
    validate_run,
)
from geospot.train.lr import Schedule

# ---------------------------------------------------------------------------------------
# Config. Every engine key is taken as in the seed (`model_name=...`), with EngineConfig's
# defaults and help (engines/config.py: engine_keys, the same way RLConfig takes them).

SFTResult = RunResult  # the name callers know


@dataclass(frozen=True)
class SFTConfig(engine_keys("SFTEngineKeys", inherit=False), EnvOptions):  # hier_*/geohash_*: the new envs' examples
    NOT_READ: ClassVar[dict[str, str]] = SFT_UNREAD  # SFT's loss is the answer's likelihood: no reward key
    KEY_ALIASES: ClassVar[dict[str, str]] = {"env_type": "prompt_style", **TRAINING_ALIASES}  # (rl: env_type)
    load_checkpoint_path: str | None = option(None, RUN_HELP["load_checkpoint_path"])
    seed: int = option(0, RUN_HELP["seed"])
    # data
    data: str = option("hf:sdan/geospot-unified", "training data spec: a path, `hf:<owner/name>`, `synthetic:n=2000`, "
                       "...; mix parts with `;` weighted `@w`; grammar in geospot/data/spec.py")
    eval_data: str | None = option(None, RUN_HELP["eval_data"])
    eval_split: str = option("val", RUN_HELP["eval_split"])
    eval_n: int = option(200, RUN_HELP["eval_n"])
    # the examples
    prompt_style: Literal[PROMPT_STYLES] = option(
        "both", f"{', '.join(f'`{e}`' for e in ENV_TYPES)}: that env's turns (`geospot rl --help`: env_type); `both`: "
        "each image draws single or telescoping; `all`: each image draws any env")
    answer_decimals: int = option(2, "decimals of the target coordinates (single-turn and the final telescoping turn)")
    telescoping_decimals: tuple[int, ...] = option((0, 1), "decimals of the targets of the telescoping turns before "
                                                   "the final one (coarse, refine)")
    telescoping_noise_km: tuple[float, ...] = option((2000.0, 1000.0), "typical error (km) of the previous guess shown "
                                                     "to each later telescoping turn (the truth moved that far, so a "
                                                     "turn learns to correct, not copy); 0 = show the truth")
    # optimisation
    batch_size: int = option(32, "images per optimizer step")
    grad_accum: int = option(1, "micro-batches per optimizer step (must divide batch_size); trades memory for time, "
                             "not the result")
    learning_rate: float = option(2e-4, "peak Adam learning rate (LoRA wants ~1e-4..5e-4; full fine-tuning of a big "
                                  "model far less)")
    lr_schedule: Schedule = option("linear", RUN_HELP["lr_schedule"])
    warmup_steps: int = option(0, RUN_HELP["warmup_steps"])
    min_lr_ratio: float = option(0.0, RUN_HELP["min_lr_ratio"])
    adam_beta1: float = option(0.9, RUN_HELP["adam_beta1"])
    adam_beta2: float = option(0.95, RUN_HELP["adam_beta2"])
    adam_eps: float = option(1e-8, RUN_HELP["adam_eps"])
    weight_decay: float = option(0.0, RUN_HELP["weight_decay"])
    grad_clip_norm: float | None = option(1.0, RUN_HELP["grad_clip_norm"])
    max_steps: int = option(1000, RUN_HELP["max_steps"])
    max_seconds: float = option(0.0, RUN_HELP["max_seconds"])
    # eval, checkpoints, logging
    eval_every: int = option(100, RUN_HELP["eval_every"])
    eval_at_start: bool = option(True, RUN_HELP["eval_at_start"])
    eval_batch_size: int = option(16, "prompts per sampling call during eval")
    eval_max_tokens: int = option(24, "answer token budget per turn during eval (reasoning=true uses "
                                  "reasoning_max_tokens)")
    save_every: int = option(100, RUN_HELP["save_every"])
    keep_checkpoints: int = option(2, RUN_HELP["keep_checkpoints"])
    log_path: str | None = option(None, "run folder (config.json, metrics.jsonl, store.sqlite, checkpoints/); "
                                  "None = runs/sft-<model>-<time>")
    behavior_if_log_dir_exists: LogDirBehavior = option("ask", RUN_HELP["behavior_if_log_dir_exists"])
    log_every: int = option(10, RUN_HELP["log_every"])
    wandb_project: str | None = option(None, RUN_HELP["wandb_project"])
    wandb_name: str | None = option(None, RUN_HELP["wandb_name"])

    def validate(self) -> None:
        validate_run(self)
        n_later = len(prompts.TELESCOPING_PROMPTS) - 1
        require(self, self.grad_accum >= 1, "grad_accum", "must be >= 1")
        require(self, self.batch_size % self.grad_accum == 0, "grad_accum", f"must divide batch_size={self.batch_size}")
        require(self, 0 <= self.answer_decimals <= 6, "answer_decimals", "must be in [0, 6]")
        require(self, len(self.telescoping_decimals) == n_later, "telescoping_decimals",
                f"needs one value per non-final telescoping turn ({n_later})")
        require(self, all(0 <= d <= 6 for d in self.telescoping_decimals), "telescoping_decimals",
                "values must be in [0, 6]")
        require(self, len(self.telescoping_noise_km) == n_later, "telescoping_noise_km",
                f"needs one value per telescoping turn after the first ({n_later})")
        require(self, all(0 <= x < 20000 for x in self.telescoping_noise_km), "telescoping_noise_km",
                "values must be in [0, 20000) km")
        require(self, self.eval_batch_size >= 1, "eval_batch_size", "must be >= 1")
        require(self, self.eval_max_tokens >= 1, "eval_max_tokens", "must be >= 1")
        require(self, bool(self.data.strip()), "data", "is empty; pass a data spec, e.g. data=synthetic:n=2000")
        self.validate_env()
        self.engine_config().validate()


# ---------------------------------------------------------------------------------------
# Examples: one image -> chat messages whose assistant turns are the targets.


def example_rng(seed: int, step: int, index: int) -> np.random.Generator:
    """The noise of one example: a pure function of (seed, step, position in the batch), so
    a resumed run draws the same previous guesses without any state to checkpoint."""
    return np.random.default_rng([seed, step, index, 104729])


def example_styles(style: str, n: int, seed: int, step: int) -> list[str]:
    """Which prompt each of the step's n images gets. A pure function of (seed, step) so
    a resumed run draws the same styles without any state to checkpoint."""
    if style not in MIXES:
        return [style] * n
    coin = np.random.default_rng([seed, step, 7919]).random(n)
    styles = MIXES[style]
    return [styles[int(c * len(styles))] for c in coin]


def build_messages(sample: Any, style: str, cfg: SFTConfig, rng: np.random.Generator | None = None) -> list[dict]:
    messages = _env_messages(sample, style, cfg, rng)
    if not cfg.reasoning:
        return messages
    # reasoning=true: each turn thinks first; the rationale is templated from the sample's labels
    # (prompts.templated_rationale): it teaches the format, not geography
    return prompts.with_reasoning(messages, prompts.templated_rationale(sample.labels, sample.lat, sample.lon))


def _env_messages(sample: Any, style: str, cfg: SFTConfig, rng: np.random.Generator | None) -> list[dict]:
    """The example of the env `style` names (envs/kinds.py: its `examples`); a sample without a
    target for it (a hierarchical label unknown to the data and the geocoder) gets single's."""
    messages = KINDS[style].examples(sample, cfg, rng)
    return messages if messages is not None else KINDS["single"].examples(sample, cfg, rng)


def normalise_weights(datums_D: Sequence[Datum], n_tokens: int | None = None) -> tuple[list[Datum], int]:
    """Scale every datum's weights by 1 / (target tokens in the whole batch).

    The engines sum the loss over tokens and datums (Tinker's convention). Summed, the
    gradient grows with the batch's token count, so the right learning rate would depend
    on batch_size and on the answers' lengths. Dividing by the batch's token count makes
    the sum a per-token mean: the learning rate means the same at any batch size and with
    grad_accum (all micro-batches share one denominator, so their gradients add up to the
    full batch's mean). Under torchrun each rank holds a share of the batch and passes the
    whole batch's count as `n_tokens` (summed over the ranks), so the ranks' sums add up to it."""
    if n_tokens is None:
        n_tokens = target_tokens(datums_D)
    scale = 1.0 / max(n_tokens, 1)
    out = [
        Datum(
            d.model_input, {**d.loss_fn_inputs, "weights": np.asarray(d.loss_fn_inputs["weights"], np.float32) * scale}
        )
        for d in datums_D
    ]
    return out, n_tokens


def target_tokens(datums_D: Sequence[Datum]) -> int:
    return int(sum(float(np.sum(d.loss_fn_inputs["weights"])) for d in datums_D))


def make_datums(
    engine: Any, samples: Sequence[Any], styles: Sequence[str], cfg: SFTConfig, step: int = 0,
    indices: Sequence[int] | None = None,
) -> list[Datum]:
    """`indices`: the samples' positions in the step's global batch (a rank's share), which seed
    each example's noise; default 0..n-1."""
    datums = []
    indices = range(len(samples)) if indices is None else indices
    for i, sample, style in zip(indices, samples, styles):
        messages = build_messages(sample, style, cfg, example_rng(cfg.seed, step, i))
        full, weights_T = engine.renderer.supervised_example(messages)
        datums.append(make_datum(full, weights=weights_T))
    return datums


# ---------------------------------------------------------------------------------------
# The loop


def run_eval(run: Run, step: int) -> dict[str, float]:
    """Greedy held-out eval; `evaluate` logs `eval/<metric>` and the per-image guesses
    (the dashboard's eval map) through the writer itself."""
    cfg = run.cfg
    result = evaluate(
        run.engine,
        run.held_out,
        prompt_style=eval_env(cfg.prompt_style),
        batch_size=cfg.eval_batch_size,
        max_tokens=cfg.turn_max_tokens(cfg.eval_max_tokens),
        geocoder=run.geocoder,
        writer=run.writer,
        step=step,
        env_options=blind(cfg),  # an SFT run's hierarchical examples may tell later turns the truth; its eval is blind
        dist=run.dist,
    )
    return dict(result.metrics)


SHOWN_EVALS = 6  # rows of the held-out table printed after each eval (every eval: metrics.jsonl, the dashboard)


def train(cfg: SFTConfig, *, stderr: Any = None, clock: Any = time.perf_counter) -> RunResult:
    """`clock` measures `max_seconds` (a benchmark on a shared machine passes time.process_time)."""
    stderr = stderr if stderr is not None else sys.stderr
    cfg.validate()  # a config built in Python comes here unchecked (geospot.api checks it as the command line does)
    # Everything that can fail fast fails before the (slow) model load; then the model and the
    # state of an interrupted run (weights, optimizer, cursor, RNG): train/lifecycle.py.
    # Under torchrun (docs/distributed.md) every rank runs this loop on its share of each batch.
    log_path = run_folder_name(cfg, "sft", cfg.model_name, cfg.engine_config())
    run = start_run(cfg, "sft", log_path, cfg.engine_config(), clock=clock, stderr=stderr)
    engine, writer, d = run.engine, run.writer, run.dist
    eval_history = {int(k): v for k, v in run.loop_state.get("eval_history", {}).items()}
    progress = Progress(cfg.max_steps, run.start_step, run.stderr, cfg.log_every, run.budget.seconds_left)

    def evaluate_now(step: int) -> None:
        if not run.held_out:
            return
        eval_history[step] = run_eval(run, step)
        # the first eval and the latest few: every row each time grew a long run's log with the square of its evals
        shown = sorted(eval_history.items())
        shown = shown if len(shown) <= SHOWN_EVALS else [shown[0], *shown[1 - SHOWN_EVALS:]]
        progress.note(format_metrics_table({f"step {s}": m for s, m in shown}))
        for line in extra_lines(eval_history[step]):  # its env's own numbers: label answers, turns, reasoning
            progress.note(f"step {step}: {line}")

    metrics: dict[str, float] = {}
    steps = run.start_step
    with finishing(writer, run.stream, folder=run.log_dir):
        if run.start_step == 0 and cfg.eval_at_start:
            evaluate_now(0)
            progress.restart()  # the ETA counts training steps, not the baseline eval

        for step in run.steps():
            t0 = time.perf_counter()
            # Every rank reads the same global batch (one cursor) and trains on its share of it, so
            # N ranks see exactly the images one process sees; the styles and noise are drawn by
            # global position, the loss is normalised by the global target-token count.
            samples = run.draw(step, cfg.batch_size)
            styles = example_styles(cfg.prompt_style, len(samples), cfg.seed, step)
            mine = d.share(len(samples))
            datums_D = make_datums(engine, [samples[i] for i in mine], [styles[i] for i in mine], cfg, step, mine)
            n_target = int(d.sum({"t": target_tokens(datums_D)})["t"])
            datums_D, _ = normalise_weights(datums_D, n_target)

            # Loss reported = mean NLL per target token (the weights already hold 1/n_target).
            loss = 0.0
            micro = max(-(-len(datums_D) // cfg.grad_accum), 1)  # this rank's share in grad_accum micro-batches
            starts = list(range(0, len(datums_D), micro))
            if engine.lockstep is not None:  # FSDP2 resharding: as many calls on every rank
                starts += [len(datums_D)] * (int(d.max(len(starts))) - len(starts))  # (empty ones)
            for i in starts:
                chunk = datums_D[i : i + micro]
                out = engine.forward_backward(chunk, "cross_entropy")
                loss -= sum(float(np.dot(lp_T, x.loss_fn_inputs["weights"])) for lp_T, x in zip(out.logprobs, chunk))
            lr = run.lr(step)
            optim_metrics = engine.optim_step(
                AdamParams(lr, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay, cfg.grad_clip_norm)
            )

            seconds = time.perf_counter() - t0
            totals = d.sum({"loss": loss, "tokens": sum(x.model_input.length for x in datums_D)})
            loss, n_tokens = totals["loss"], totals["tokens"]
            done = step + 1
            metrics = {
                "loss": loss,
                "lr": lr,
                "tok_per_s": n_tokens / seconds,
                "target_tokens": n_target,
                "seconds": seconds,
            }
            metrics.update({f"optim/{k}": float(v) for k, v in (optim_metrics or {}).items()})
            writer.log_step(done, metrics)
            steps, last = done, run.end_step(done)  # (before the line: the step the time limit ends prints it)
            progress.update(step, {"loss": loss, "lr": lr, "tok_per_s": metrics["tok_per_s"]}, last)
            if due(cfg.eval_every, done, last):
                evaluate_now(done)
            stop = run.stop_asked()  # Ctrl-C / SIGTERM during the step: it is saved, then the run stops
            if due(cfg.save_every, done, last) or stop:
                run.save(done, {"eval_history": eval_history})
            if stop:
                raise stop
            if last:
                break
    return RunResult(run.log_dir, steps, metrics, eval_history, skipped=dict(run.stream.skipped),
                     passes=run.stream.passes)


# ---------------------------------------------------------------------------------------
# Entry point


def main(argv: Sequence[str] | None = None) -> int:
    title = "geospot sft — supervised warm-start (image + prompt -> `Latitude: ..\\nLongitude: ..`)"
    return run_command("sft", SFTConfig, title, argv, prepare_keys, train)


def prepare_keys(cfg: SFTConfig, given: set[str], resumed: set[str]) -> SFTConfig:
    """The keys not `given`: a start run's (load_checkpoint_path), the run folder's name (train/command.settle)."""
    cfg = sft_from_start_run(cfg, given, resumed)  # a fine-tune continues its start run's model
    cfg.validate()  # here too, not only run_command's after this: a wrong key is said alone, before the note
    # said also when lora_rank is typed: a LoRA user on a tiny model gets a model that never parses
    if (random_tiny(cfg.model_name) and cfg.lora_rank > 0 and not cfg.load_checkpoint_path
            and not resumed and distributed.speaks()):
        print(f"note: {cfg.model_name} has random weights, and a LoRA adapter on random weights learns little "
              "(the answer format may never parse); lora_rank=0 trains every weight, as the demo does",
              file=sys.stderr)
    if not cfg.log_path and not distributed.under_torchrun():  # (under torchrun rank 0's clock names it)
        cfg = replace(cfg, log_path=default_log_path("sft", cfg.model_name))  # named now: a Ctrl-C points at it
    return cfg


if __name__ == "__main__":
    sys.exit(main())
