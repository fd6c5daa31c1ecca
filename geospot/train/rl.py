"""GRPO for geolocation, single-turn or telescoping. Reads top to bottom:

  config -> run folder -> engine (+ SFT weights or resume) -> for each step:
  B images -> G rollouts each, turn-synchronous -> group-centred advantages -> one datum per
  trajectory -> one train_step (importance sampling by default) -> metrics, rollout records,
  periodic greedy held-out eval, checkpoint. With max_steps_off_policy=k >= 1 the next steps'
  rollouts are sampled on a thread (with the weights of k steps back) while a step trains
  (geospot/rl/pipeline.py, docs/async.md).

Every source of randomness is a function of (seed, step) or lives in the checkpoint, so a run
killed at any point and resumed ends with the same weights as an uninterrupted one (unless
`max_seconds` is set: the clock then decides when it stops and where the tau schedule is)."""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Literal

from geospot.config import ConfigError, help_text, option, parse_overrides, require, to_dict
from geospot.engines.config import EngineConfig
from geospot.engines.types import AdamParams, SampleParams
from geospot.prompts import SINGLE_TURN_PROMPT, TELESCOPING_PROMPTS
from geospot.train.common import LogDirBehavior

_ENGINE_KEYS = ("model_name", "engine", "lora_rank", "lora_alpha", "lora_targets", "train_vision", "dtype",
                "device", "max_pixels")


@dataclass(frozen=True)
class RLConfig:
    env_type: Literal["single", "telescoping"] = option("single", "`single`: one answer per image; `telescoping`: coarse -> refine -> final turns, each answering coordinates")
    load_checkpoint_path: str | None = option(None, "start from these weights: an SFT run folder or its checkpoints/<step> folder, or a tinker:// path")
    # engine (None = take it from the SFT checkpoint's config.json, else EngineConfig's default)
    model_name: str | None = option(None, "model (None = the SFT run's model, else Qwen/Qwen2.5-VL-3B-Instruct); `tiny:qwen2_5_vl:small` offline")
    engine: Literal["local", "tinker"] | None = option(None, "`local` or `tinker` (None = the SFT run's, else local)")
    lora_rank: int | None = option(None, "LoRA rank, 0 = full fine-tuning (None = the SFT run's, else 32)")
    lora_alpha: float | None = option(None, "LoRA alpha (None = the SFT run's, else 32)")
    lora_targets: str | None = option(None, "PEFT target modules (None = the SFT run's, else all-linear)")
    train_vision: bool | None = option(None, "also train the vision tower (None = the SFT run's, else False)")
    dtype: str | None = option(None, "auto|float32|bfloat16|float16 (None = auto)")
    device: str | None = option(None, "auto|cpu|cuda|cuda:N (None = auto)")
    max_pixels: int | None = option(None, "pixel budget per image (None = the SFT run's, else 448*448)")
    # data
    data: str | None = option(None, "training data spec (geospot.data.open_stream), e.g. hf:osv5m/osv5m, a local folder or synthetic:n=2000 (None = the SFT run's data, else hf:sdan/geospot-unified)")
    eval_data: str | None = option(None, "held-out data spec (None = the `val` split of `data`)")
    eval_n: int = option(64, "held-out images per periodic eval")
    # algorithm
    batch_size: int = option(64, "images per step (B); CPU tests use fewer")
    group_size: int = option(8, "rollouts per image (G), the GRPO group")
    max_steps: int = option(100, "optimizer steps")
    max_seconds: float = option(0.0, "also stop after this many seconds of training steps (wall clock; model load, evals and checkpoints not counted; a resumed run counts the seconds before its checkpoint), ending as at max_steps with the last eval and checkpoint; 0 = no limit. tau schedules then advance by whichever of steps/max_steps and seconds/max_seconds is further along, so a run the clock stops still ends its anneal (such a run does not repeat step for step)")
    learning_rate: float = option(4e-5, "Adam lr. 4e-5 is Tinker's LoRA default; on a tiny CPU model GRPO after SFT only helped at 1e-5..3e-5 (1e-3 wrecked it: Adam moves every weight ~lr whatever the advantages)")
    adam_beta1: float = option(0.9, "Adam beta1")
    adam_beta2: float = option(0.95, "Adam beta2")
    adam_eps: float = option(1e-8, "Adam epsilon")
    grad_clip_norm: float | None = option(None, "clip the gradient norm (None = off)")
    loss_fn: Literal["importance_sampling", "ppo"] = option("importance_sampling", "policy-gradient loss: Tinker's importance_sampling (ratio to the sampler's logprobs), or ppo (clipped ratio)")
    ppo_clip: float = option(0.2, "ppo: clip the ratio to [1-c, 1+c]")
    max_steps_off_policy: int = option(0, "async GRPO: sample the next steps while this one trains, on weights at most this many steps old; 0 = synchronous (sample, then train). docs/async.md")
    kl_coef: float = option(0.0, "KL penalty to the starting policy (load_checkpoint_path's weights, else the base model), subtracted from advantages per token; 0 = off")
    advantage: Literal["per_turn", "trajectory"] = option("per_turn", "telescoping credit: per_turn = turn t's tokens get the return-to-go from t centred across the group at turn t; trajectory = one centred total for all turns (seed / tinker-cookbook)")
    scale_by_std: bool = option(False, "divide centred rewards by the group std; off by default (Dr. GRPO, Liu et al. 2025: std scaling up-weights too-easy and too-hard groups)")
    # reward
    reward: Literal["auto", "kernel", "geoscore"] = option("auto", "S(d): kernel = exp(-d/tau(step)); geoscore = GeoGuessr score/5000; auto = kernel for single, geoscore for telescoping")
    tau_schedule: Literal["geometric", "linear", "cosine", "constant", "follow_error"] = option("follow_error", "tau over the run (kernel reward); follow_error (default) = median error of the last tau_window batches clipped to [tau_end_km, tau_start_km]: tau stays near the policy's error, where exp(-d/tau) separates rollouts. Issue 12 (benchmarks/rl_vs_sft.py, tiny model, 30 s CPU/arm, 3 seeds): held-out greedy GeoScore 2194 -> 2264+-36 with follow_error vs 2145+-55 with geometric (tau fell far below the ~1500 km error: last-quarter reward ~0.002) and 2063+-33 for equal-time SFT; sampled 1844 vs 1799 vs 1518")
    tau_start_km: float = option(2000.0, "tau at step 0 (constant: the tau)")
    tau_end_km: float = option(25.0, "tau at the last step")
    tau_window: int = option(8, "follow_error: batches in the running median")
    format_penalty: float = option(-0.1, "reward of an unparseable answer (the episode ends)")
    turn_prompts: tuple[str, ...] = option(TELESCOPING_PROMPTS, "telescoping turn prompts (JSON list); later ones get {prev}, the previous guess")
    prompt: str = option(SINGLE_TURN_PROMPT, "single-turn prompt")
    max_tokens: int = option(24, "max sampled tokens per turn")
    temperature: float = option(1.0, "sampling temperature of rollouts")
    # run
    eval_every: int = option(10, "greedy held-out eval every N steps (and at the end); 0 = never")
    eval_at_start: bool = option(True, "also evaluate the starting policy (the baseline row)")
    eval_temperature: float = option(0.0, "0 = greedy eval; > 0 = one seeded sample per image at this temperature (the policy GRPO trains samples at 1.0)")
    save_every: int = option(10, "checkpoint every N steps (and at the end)")
    keep_checkpoints: int | None = option(None, "keep only the last N checkpoints (None = all)")
    log_images_every: int = option(1, "rollout records for the dashboard every N steps; 0 = never")
    log_path: str = option("runs/rl", "run folder (config.json, metrics.jsonl, store.sqlite, checkpoints/)")
    behavior_if_log_dir_exists: LogDirBehavior = option("ask", "existing run folder: ask (tty only), resume, delete, raise")
    seed: int = option(0, "seed of data order, sampling and init")
    wandb_project: str | None = option(None, "also log to this wandb project (needs `pip install wandb`)")
    wandb_name: str | None = option(None, "W&B run name (default: the run folder's name)")

    def validate(self) -> None:
        require(self.batch_size >= 1, "batch_size", f"{self.batch_size} must be >= 1")
        require(self.group_size >= 2, "group_size", f"{self.group_size} must be >= 2: GRPO centres rewards within the group")
        require(self.max_steps >= 1, "max_steps", f"{self.max_steps} must be >= 1")
        require(0 <= self.max_seconds < math.inf, "max_seconds", f"{self.max_seconds} must be >= 0 (0 = no time limit)")
        require(self.learning_rate > 0, "learning_rate", f"{self.learning_rate} must be > 0 (try 2e-5)")
        require(self.tau_start_km > 0 and self.tau_end_km > 0, "tau_start_km/tau_end_km", "must be > 0 km")
        require(self.format_penalty <= 0, "format_penalty", f"{self.format_penalty} should be <= 0 (a penalty)")
        require(len(self.turn_prompts) >= 1, "turn_prompts", "needs at least one prompt")
        require(all("{prev}" in p for p in self.turn_prompts[1:]), "turn_prompts", "every prompt after the first must contain {prev}")
        require(self.max_tokens >= 8, "max_tokens", f"{self.max_tokens} cannot hold an answer; use >= 16")
        require(self.eval_every >= 0 and self.save_every >= 1, "eval_every/save_every", "eval_every >= 0, save_every >= 1")
        require(self.max_steps_off_policy >= 0, "max_steps_off_policy", f"{self.max_steps_off_policy} must be >= 0 (0 = synchronous)")
        require(self.kl_coef >= 0 and self.eval_temperature >= 0, "kl_coef/eval_temperature", "must be >= 0")
        self.engine_config({}).validate()

    def engine_config(self, inherited: dict) -> EngineConfig:
        base = EngineConfig()
        vals = {k: v if (v := getattr(self, k)) is not None else inherited.get(k, getattr(base, k)) for k in _ENGINE_KEYS}
        return dataclasses.replace(base, **vals, seed=self.seed)


DEFAULT_DATA = "hf:sdan/geospot-unified"


def inherited_engine_fields(load_checkpoint_path: str | None) -> dict:
    """The engine fields (and the data spec) of the SFT run a local checkpoint came from
    (its config.json): RL continues on what the warm start was trained on unless told."""
    if not load_checkpoint_path or "://" in load_checkpoint_path:
        return {}
    from geospot.train.checkpoint import resolve_checkpoint
    from geospot.train.common import read_config

    try:
        ckpt = resolve_checkpoint(load_checkpoint_path)
    except FileNotFoundError as e:
        raise ConfigError(f"load_checkpoint_path: {e}") from None
    rec = read_config(ckpt) or read_config(ckpt.parent.parent)  # a checkpoint folder, or its run's
    return {k: v for k, v in (rec or {}).get("config", {}).items() if k in (*_ENGINE_KEYS, "data") and v is not None}


def reward_kind(cfg: RLConfig) -> str:
    return cfg.reward if cfg.reward != "auto" else ("kernel" if cfg.env_type == "single" else "geoscore")


def make_group_builders(cfg: RLConfig, samples, renderer, tau_km: float):
    from geospot.envs.rewards import GeoScoreReward, KernelReward
    from geospot.envs.single_turn import SingleTurnGroupBuilder
    from geospot.envs.telescoping import TelescopingGroupBuilder

    reward = KernelReward(tau_km) if reward_kind(cfg) == "kernel" else GeoScoreReward()
    if cfg.env_type == "single":
        return [SingleTurnGroupBuilder(s, renderer, reward, cfg.prompt, cfg.format_penalty) for s in samples]
    return [TelescopingGroupBuilder(s, renderer, reward, tuple(cfg.turn_prompts), cfg.format_penalty) for s in samples]


def run(cfg: RLConfig, writer=None, *, clock=time.perf_counter) -> dict:
    """Train; returns the last step's metrics (with the last eval's under `eval/`). `clock`
    measures `max_seconds` (a benchmark on a shared machine passes time.process_time)."""
    from geospot.train.common import prepare_log_dir

    # Everything that can fail cheaply fails before the model loads.
    inherited = inherited_engine_fields(cfg.load_checkpoint_path)
    if cfg.data is None:
        cfg = dataclasses.replace(cfg, data=inherited.get("data", DEFAULT_DATA))
    log_dir, resuming = prepare_log_dir(cfg.log_path, cfg.behavior_if_log_dir_exists)
    import numpy as np

    from geospot.engines import make_engine
    from geospot.eval import evaluate
    from geospot.geo import make_tau_schedule
    from geospot.rl.advantages import CREDITS, compute_advantages
    from geospot.rl.datums import build_datums
    from geospot.rl.kl import apply_kl_penalty
    from geospot.rl.metrics import image_records, rollout_metrics
    from geospot.rl.pipeline import BatchSource, RolloutPipeline, importance_ratio_metrics, sampler_factory
    from geospot.train.checkpoint import latest_checkpoint, load_checkpoint, read_extra, save_checkpoint
    from geospot.train.common import Progress, TimeBudget, seed_everything, write_config
    from geospot.train.sft import finishing, make_writer, open_inputs  # the same run handling as SFT

    # eval_every=0: no periodic eval, so no held-out images to load
    stream, heldout, geocoder, init_weights = open_inputs(cfg if cfg.eval_every else dataclasses.replace(cfg, eval_n=0), log_dir)
    write_config(log_dir, "rl", cfg)
    seed_everything(cfg.seed)
    tau = make_tau_schedule(cfg.tau_schedule, cfg.tau_start_km, cfg.tau_end_km, cfg.max_steps,
                            **({"window": cfg.tau_window} if cfg.tau_schedule == "follow_error" else {}))
    engine = make_engine(cfg.engine_config(inherited))

    start, recent_km = 0, deque(maxlen=cfg.tau_window)  # recent final distances, replayed into tau on resume
    budget = TimeBudget(cfg.max_seconds, clock=clock)
    ckpt = latest_checkpoint(log_dir) if resuming else None
    if init_weights and (ckpt is None or cfg.kl_coef > 0):  # the starting policy
        engine.load_state(init_weights, with_optimizer=False)
    if cfg.kl_coef > 0 and hasattr(engine, "set_reference"):
        engine.set_reference()  # KL to where this run started (the SFT policy), not the untrained base
    if ckpt is not None:
        state = load_checkpoint(ckpt, engine)
        start = state.step
        stream.load_state_dict(state.data_state)
        recent_km.extend(state.loop_state.get("recent_km", []))
        budget.spent = float(state.loop_state.get("train_seconds", 0.0))
    if hasattr(tau, "observe"):
        for d in recent_km:
            tau.observe(np.asarray(d, dtype=float))
    own_writer = writer is None
    writer = make_writer(log_dir, cfg, start if ckpt is not None else -1) if own_writer else writer
    writer.log_config("rl", to_dict(cfg))

    style = "single" if cfg.env_type == "single" else "telescoping"
    credit = CREDITS[cfg.advantage]
    loss_config = {"clip_low_threshold": 1 - cfg.ppo_clip, "clip_high_threshold": 1 + cfg.ppo_clip} if cfg.loss_fn == "ppo" else None
    progress = Progress(cfg.max_steps, start_step=start)
    writer.set_status("running")
    metrics: dict = {}
    def evaluate_now(done: int) -> dict:
        sampling = (SampleParams(cfg.max_tokens, cfg.eval_temperature, seed=cfg.seed + 17 * done), 1) if cfg.eval_temperature > 0 else None
        ev = evaluate(engine, heldout, prompt_style=style, max_tokens=cfg.max_tokens, geocoder=geocoder, sampling=sampling, writer=writer, step=done)
        progress.note(f"eval step {done}: " + " ".join(f"{k}={ev.metrics[k]:.4g}" for k in ("geoscore", "median_km", "acc_200km", "acc_750km") if k in ev.metrics))
        return {f"eval/{k}": v for k, v in ev.metrics.items()}

    # Rollouts come from the pipeline (geospot/rl/pipeline.py): max_steps_off_policy=0 samples each
    # step right here, as before; k >= 1 samples the next steps on a thread while this one trains.
    # A batch's tau is the one published with the weights it samples with.
    source = BatchSource(
        samples=lambda s: stream.next_batch(cfg.batch_size),
        builders=lambda samples, ctx: make_group_builders(cfg, samples, engine.renderer, ctx["tau_km"]),
        params=lambda s: SampleParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature, seed=cfg.seed * 1_000_003 + s * 7919))
    pipeline = RolloutPipeline(source, cfg.group_size, cfg.max_steps_off_policy, end_step=cfg.max_steps)
    new_sampler = sampler_factory(engine, cfg.max_steps_off_policy)
    tau_context = lambda s: {"tau_km": float(tau.tau(budget.schedule_step(s, cfg.max_steps)))}
    sampled_ahead = pipeline.restore(read_extra(ckpt, "inflight") or []) if ckpt is not None else []

    with finishing(writer, stream, close_writer=own_writer), pipeline:
        if heldout and cfg.eval_at_start and start == 0:
            evaluate_now(0)
            progress.restart()  # the ETA counts training steps, not the baseline eval
        pipeline.start(start, new_sampler(), tau_context(start), sampled_ahead)
        for step in range(start, cfg.max_steps):
            if budget.expired():  # a time-limited run resumed after its time ran out
                break
            budget.begin_step()
            t_step = time.perf_counter()
            batch, async_metrics = pipeline.next_batch(step)
            samples, trajectories_BG, stats, tau_km = batch.samples, batch.trajectories_BG, batch.stats, batch.context["tau_km"]

            adv = compute_advantages(trajectories_BG, credit, cfg.scale_by_std)
            datums_D = build_datums(trajectories_BG, adv)
            t_train = time.perf_counter()
            if cfg.kl_coef > 0 and datums_D:
                datums_D, kl = apply_kl_penalty(engine, datums_D, cfg.kl_coef)
            adam = AdamParams(cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, grad_clip_norm=cfg.grad_clip_norm)
            if datums_D:  # no datums = every group constant: nothing to learn this step
                result = engine.train_step(datums_D, cfg.loss_fn, adam, loss_config)
            train_s = time.perf_counter() - t_train

            metrics = rollout_metrics(samples, trajectories_BG, num_turns=1 if cfg.env_type == "single" else len(cfg.turn_prompts))
            finals = [t.transitions[-1].metrics.get("distance_km", math.nan) for g in trajectories_BG for t in g]
            recent_km.append([float(d) for d in finals if math.isfinite(d)])
            if hasattr(tau, "observe"):  # the distances of the groups just trained
                tau.observe(np.asarray(finals, dtype=float))
            if reward_kind(cfg) == "kernel":  # tau means nothing to the GeoScore reward: don't chart it
                metrics["tau_km"] = tau_km
            metrics.update({
                "dropped_groups": float(adv.dropped), "datums": float(len(datums_D)),
                "sampled_tokens": float(stats.sampled_tokens),
                "tokens_per_s": stats.sampled_tokens / max(stats.sample_s, 1e-9),
                "time_sample_s": stats.sample_s, "time_train_s": train_s, "time_step_s": time.perf_counter() - t_step,
                "lr": cfg.learning_rate,
            })
            if cfg.kl_coef > 0 and datums_D:
                metrics["kl"] = kl
            if datums_D:
                metrics.update({f"train/{k}": float(v) for k, v in result.metrics.items()})
                metrics.update(importance_ratio_metrics(datums_D, result.logprobs, cfg.ppo_clip))
            if cfg.max_steps_off_policy > 0:
                metrics.update(async_metrics)
            done = step + 1  # logged as SFT does: the number of optimizer steps done
            writer.log_step(done, metrics)
            if cfg.log_images_every and step % cfg.log_images_every == 0:
                writer.log_images(done, image_records(samples, trajectories_BG, engine.renderer, batch.versions_B), split="train")
            progress.update(step, {k: metrics[k] for k in ("reward_mean", "median_km", "tau_km", "format_rate", "dropped_groups", "tokens_per_s") if k in metrics})

            budget.end_step()
            pipeline.publish(done, new_sampler(), tau_context(done))  # the next batches sample these weights
            last = done == cfg.max_steps or budget.expired()  # the time limit ends the run as max_steps does
            if heldout and (done % cfg.eval_every == 0 or last):
                with pipeline.paused():  # the sampling thread stays off the engine while it evaluates
                    metrics.update(evaluate_now(done))
            if done % cfg.save_every == 0 or last:
                inflight = pipeline.inflight()  # every step sampled ahead; the stream then rests until the next publish
                save_checkpoint(log_dir, done, engine, data_state=stream.state_dict(),
                                loop_state={"recent_km": list(recent_km), "train_seconds": budget.spent},
                                extra={"inflight": inflight} if inflight else None, keep_last=cfg.keep_checkpoints)
            if last:
                break
    return metrics


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(help_text(RLConfig, "geospot rl — GRPO for geolocation (single-turn or telescoping)"))
        return 0
    try:
        run(parse_overrides(RLConfig, argv))
    except ConfigError as e:
        print(f"geospot rl: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
