"""GRPO for geolocation: single-turn, telescoping, hierarchical or geohash (envs/kinds.py).
Reads top to bottom:

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
from dataclasses import dataclass
from typing import ClassVar, Literal

import numpy as np

from geospot import distributed
from geospot.config import ConfigError, option, require
from geospot.distributed import Dist
from geospot.engines.config import ENGINE_KEYS, EngineConfig, engine_keys
from geospot.engines.start_checks import random_tiny
from geospot.engines.types import AdamParams, SampleParams
from geospot.envs import registry
from geospot.envs.config import EnvOptions, blind
from geospot.envs.kinds import ENV_HELP, ENV_TYPES, KINDS
from geospot.envs.types import Trajectory
from geospot.eval import evaluate
from geospot.eval.compare import extra_lines
from geospot.eval.geocoding import geocoder_for
from geospot.eval.run_defaults import describe_defaults, env_defaults
from geospot.geo import make_tau_schedule
from geospot.prompts import SINGLE_TURN_PROMPT, TELESCOPING_PROMPTS
from geospot.rl.advantages import CREDITS, compute_advantages
from geospot.rl.datums import build_datums
from geospot.rl.kl import apply_kl_penalty
from geospot.rl.metrics import image_records, reasoning_metrics, rollout_metrics
from geospot.rl.pipeline import BatchSource, RolloutPipeline, importance_ratio_metrics, sampler_factory
from geospot.runs.checkpoint import read_extra
from geospot.runs.folder import LogDirBehavior, read_config
from geospot.runs.model_spec import is_run_path, model_spec
from geospot.train.command import run_command
from geospot.train.common import Progress
from geospot.train.inherit import images_from_start_run, inherited_engine_fields
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

DEFAULT_DATA = "hf:sdan/geospot-unified"


# Every engine key, None = the SFT run's (load_checkpoint_path) value, else EngineConfig's default
# (engines/config.py: engine_keys, the same way SFTConfig takes them).
@dataclass(frozen=True)
class RLConfig(engine_keys("RLEngineKeys", inherit=True), EnvOptions):  # hier_*/geohash_*/mixed_*: envs/config.py
    KEY_ALIASES: ClassVar[dict[str, str]] = {"prompt_style": "env_type", **TRAINING_ALIASES}  # (sft: prompt_style)
    env_type: Literal[ENV_TYPES] = option(  # one list of envs: envs/kinds.py's
        "single", f"the env each episode plays: {ENV_HELP}")
    mix_env_type: str | None = option(
        None, "another env played by a share (mix_share) of each batch's images, one policy for both, each env with "
        "its own reward: e.g. telescoping inside single-turn GRPO, so the refine turns keep learning")
    mix_share: float = option(0.25, "share of each batch's images that play mix_env_type (when it is set)")
    load_checkpoint_path: str | None = option(None, RUN_HELP["load_checkpoint_path"])
    # data
    data: str | None = option(None, "training data spec (geospot.data.open_stream), e.g. hf:osv5m/osv5m or "
                              "synthetic:n=2000 (None = the SFT run's data, else hf:sdan/geospot-unified)")
    eval_data: str | None = option(None, RUN_HELP["eval_data"])
    eval_split: str = option("val", RUN_HELP["eval_split"])
    eval_n: int = option(64, RUN_HELP["eval_n"])
    # algorithm
    batch_size: int = option(64, "images per step (B); CPU tests use fewer")
    group_size: int = option(8, "rollouts per image (G), the GRPO group")
    max_steps: int = option(100, RUN_HELP["max_steps"])
    max_seconds: float = option(0.0, RUN_HELP["max_seconds"])
    learning_rate: float = option(4e-5, "Adam lr (4e-5: Tinker's LoRA default; what worked on the tiny model: "
                                  "docs/rl_vs_sft.md)")
    lr_schedule: Schedule = option("constant", RUN_HELP["lr_schedule"])
    warmup_steps: int = option(0, RUN_HELP["warmup_steps"])
    min_lr_ratio: float = option(0.0, RUN_HELP["min_lr_ratio"])
    weight_decay: float = option(0.0, RUN_HELP["weight_decay"])
    adam_beta1: float = option(0.9, RUN_HELP["adam_beta1"])
    adam_beta2: float = option(0.95, RUN_HELP["adam_beta2"])
    adam_eps: float = option(1e-8, RUN_HELP["adam_eps"])
    grad_clip_norm: float | None = option(None, RUN_HELP["grad_clip_norm"])
    loss_fn: Literal["importance_sampling", "ppo"] = option("importance_sampling", "policy-gradient loss: Tinker's "
                                                            "importance_sampling (ratio to the sampler's logprobs), "
                                                            "or ppo (clipped ratio)")
    ppo_clip: float = option(0.2, "ppo: clip the ratio to [1-c, 1+c]")
    max_steps_off_policy: int = option(0, "async GRPO: sample the next steps while this one trains, on weights at "
                                       "most this many steps old; 0 = synchronous (sample, then train). docs/async.md")
    kl_coef: float = option(0.0, "KL penalty to the starting policy (load_checkpoint_path's weights, else the base "
                            "model), subtracted from advantages per token; 0 = off")
    advantage: Literal["per_turn", "own_turn", "trajectory"] = option(
        "per_turn", "telescoping credit, centred in the group: per_turn = each turn's return-to-go; own_turn = each "
        "turn's own reward (its distance, or its gain on the turn before); trajectory = one total for all turns")
    scale_by_std: bool = option(False, "divide centred rewards by the group std (off: Dr. GRPO, Liu et al. 2025: std "
                                "scaling up-weights too-easy and too-hard groups)")
    # reward
    reward: str = option("auto", "S(d): kernel = exp(-d/tau(step)); geoscore = GeoGuessr score/5000; mixed = 0.7 "
                         "kernel + 0.3 geohash prefix/5; auto = kernel (single) or geoscore (multi-turn); "
                         "module:function = your own (docs/envs.md)")
    tau_schedule: Literal["geometric", "linear", "cosine", "constant", "follow_error"] = option(
        "follow_error", "tau over the run (kernel reward); follow_error = median error of the last tau_window "
                        "batches clipped to [tau_end_km, tau_start_km] (tau_start_km until an answer parses); "
                        "docs/rl_vs_sft.md")
    tau_start_km: float = option(2000.0, "tau at step 0 (constant: the tau)")
    tau_end_km: float = option(25.0, "tau at the last step")
    tau_window: int = option(8, "follow_error: batches in the running median")
    format_penalty: float = option(-0.1, "reward of an unparseable answer (the episode ends)")
    turn_prompts: tuple[str, ...] = option(TELESCOPING_PROMPTS, "telescoping turn prompts (JSON list); later ones get "
                                           "{prev}, the previous guess")
    prompt: str = option(SINGLE_TURN_PROMPT, "single-turn prompt")
    max_tokens: int = option(24, "max sampled tokens per turn (reasoning=true uses reasoning_max_tokens)")
    temperature: float = option(1.0, "sampling temperature of rollouts")
    # run
    eval_every: int = option(10, RUN_HELP["eval_every"])
    eval_at_start: bool = option(True, RUN_HELP["eval_at_start"])
    eval_temperature: float = option(0.0, "0 = greedy eval; > 0 = one seeded sample per image at this temperature "
                                     "(the policy GRPO trains samples at 1.0)")
    save_every: int = option(10, RUN_HELP["save_every"])
    keep_checkpoints: int = option(2, RUN_HELP["keep_checkpoints"])  # as SFT: a full fine-tune's are GBs each
    log_every: int = option(1, RUN_HELP["log_every"])
    log_images_every: int = option(1, "rollout records for the dashboard every N steps; 0 = never")
    log_path: str | None = option(None, "run folder (config.json, metrics.jsonl, store.sqlite, checkpoints/); "
                                  "None = runs/rl-<model>-<time>")
    behavior_if_log_dir_exists: LogDirBehavior = option("ask", RUN_HELP["behavior_if_log_dir_exists"])
    seed: int = option(0, RUN_HELP["seed"])
    wandb_project: str | None = option(None, RUN_HELP["wandb_project"])
    wandb_name: str | None = option(None, RUN_HELP["wandb_name"])

    def validate(self) -> None:
        validate_run(self)
        require(self, 2 <= self.group_size <= 1024, "group_size", "must be in 2..1,024: GRPO centres rewards within "
                "the group, whose rollouts are held in memory")
        require(self, self.mix_env_type in (None, *ENV_TYPES), "mix_env_type",
                f"is not an env: use one of {', '.join(ENV_TYPES)} (or leave it out: one env)")
        require(self, self.mix_env_type != self.env_type, "mix_env_type",
                f"is env_type={self.env_type} already: mix in another env ("
                f"{', '.join(e for e in ENV_TYPES if e != self.env_type)}) or leave it out")
        require(self, 0 < self.mix_share < 1, "mix_share", "must be in (0, 1): the share of images that mix")
        mixed = registry.mixed_count(self.batch_size, self.mix_env_type, self.mix_share)
        require(self, self.mix_env_type is None or 0 < mixed < self.batch_size, "mix_share",
                f"of batch_size={self.batch_size} is {mixed} image(s), so "
                f"{'no image' if mixed == 0 else 'every image'} would play "
                f"{'mix_env_type' if mixed == 0 else 'it'}; raise batch_size or change mix_share")
        require(self, self.temperature > 0, "temperature", "must be > 0: at 0 every rollout of a group is the same "
                "answer, so GRPO has nothing to compare")
        require(self, (problem := registry.reward_problem(self.reward)) is None, "reward", problem)
        own = [KINDS[e].own_reward for e in (self.env_type, self.mix_env_type) if e in KINDS]
        require(self, self.reward == "auto" or not all(own), "reward",
                f"has no effect: env_type={self.env_type} grades with its own reward, which its own keys set; "
                "drop reward=")
        require(self, self.tau_start_km > 0 and self.tau_end_km > 0, "tau_start_km/tau_end_km", "must be > 0 km")
        require(self, self.tau_window >= 1, "tau_window", "must be >= 1")
        require(self, self.format_penalty <= 0, "format_penalty", "should be <= 0 (a penalty)")
        require(self, len(self.turn_prompts) >= 1, "turn_prompts", "needs at least one prompt")
        require(self, all("{prev}" in p for p in self.turn_prompts[1:]), "turn_prompts",
                "every prompt after the first must contain {prev}")
        require(self, self.max_tokens >= 8, "max_tokens", "cannot hold an answer; use >= 8 (16 or more)")
        require(self, self.kl_coef >= 0, "kl_coef", "must be >= 0")
        require(self, 0 < self.ppo_clip < 1, "ppo_clip", "must be in (0, 1): the ratio is clipped to [1-c, 1+c]")
        require(self, self.eval_temperature >= 0, "eval_temperature", "must be >= 0")
        require(self, self.log_images_every >= 0, "log_images_every", "must be >= 0")
        require(self, self.max_steps_off_policy >= 0, "max_steps_off_policy", "must be >= 0 (0 = synchronous)")
        require(self, not (distributed.under_torchrun() and self.max_steps_off_policy > 0), "max_steps_off_policy",
                "must be 0 under torchrun (async GRPO runs in one process)")
        self.validate_env()
        self.engine_config({}).validate()


def env_from_start_run(cfg: RLConfig, given: set[str], resumed: set[str] = frozenset()) -> RLConfig:
    """`geospot rl load_checkpoint_path=<run>`: the env keys the command line did not give
    (env_type, hier_*, geohash_*, mixed_*, teacher_forcing; an RL run's mix_env_type and mix_share
    where env_type is not typed) continue the run's own (an SFT run's prompt style, an RL run's
    env), said on stderr; config.json records the result.
    `resumed`: keys a resumed run took from its own config.json — given, but not typed, so never
    said to be "overridden on the command line"."""
    path = cfg.load_checkpoint_path
    if not path or "://" in path or not is_run_path(path):
        return cfg
    spec, typed = model_spec(path), given | resumed
    # an RL run's mix goes on with its env: continued as it was (env_type not typed), the same share plays it.
    # The run's own config.json, not spec.config: that one fills a None (no mix) from the run it started from
    own = ((read_config(spec.run_dir) or {}).get("config") or {}) if spec.run_dir else {}
    mix = {k: own[k] for k in ("mix_env_type", "mix_share") if k in own and k not in typed}
    mix = mix if mix.get("mix_env_type") and not {"env_type", "mix_env_type"} & typed else {}
    cfg, record = env_defaults(dataclasses.replace(cfg, **mix), spec, typed | set(mix))
    record["from_run"].update(mix)
    record["overridden"] = {k: v for k, v in record["overridden"].items() if k not in resumed}
    # the engine keys and data left unset are the start run's too (inherited_engine_fields): say so,
    # naming the model, its LoRA rank and data always, any other key where it is not the default
    defaults = EngineConfig()
    inherited = inherited_engine_fields(path)
    engine = {k: v for k, v in inherited.items() if getattr(cfg, k, None) is None
              and (k in ("model_name", "lora_rank", "data") or v != getattr(defaults, k, None))}
    record["from_run"] = {**engine, **record["from_run"]}
    # new data: shown as the start run saw its images (a resumed run's keys are its own, as it started)
    if cfg.data is not None and "data" in given and "data" not in resumed:
        shown = images_from_start_run(path, cfg.data, given | resumed)
        shown = {k: v for k, v in shown.items() if getattr(cfg, k) != v}
        cfg = dataclasses.replace(cfg, **shown)
        # the data is the user's: what the run adds to it is its square crop
        record["from_run"].update({"square": True} if "data" in shown else {}, **{k: v for k, v in shown.items()
                                                                                 if k != "data"})
    if resumed:  # a resume says what it changes itself, or refuses it: "overridden" here would mislead
        record["overridden"] = {}
    if (record["from_run"] or record["overridden"]) and distributed.speaks():
        print("load_checkpoint_path: " + describe_defaults(record), file=sys.stderr)
    return cfg


def make_group_builders(cfg: RLConfig, samples, renderer, tau_km: float, *, geocoder=None, seed: int = 0):
    """The env registry (envs/registry.py) maps env_type and reward to builders and rewards; with
    mix_env_type, a share of the images play that env, with its own reward (auto: per env)."""
    builders = []
    for env, part in registry.split_batch(samples, cfg.env_type, cfg.mix_env_type, cfg.mix_share):
        reward = registry.make_reward(registry.reward_name(env, cfg.reward), tau_km, cfg)
        builders += registry.make_group_builders(env, part, renderer, reward, cfg, geocoder=geocoder, seed=seed)
    return builders


def eval_now(run: Run, done: int, progress: Progress) -> dict[str, float]:
    """The held-out eval's metrics (greedy, or one seeded sample per image), logged by `evaluate` itself."""
    cfg = run.cfg
    style = cfg.env_type
    sampling, max_tokens = None, cfg.turn_max_tokens(cfg.max_tokens)
    if cfg.eval_temperature > 0:
        sampling = (SampleParams(max_tokens, cfg.eval_temperature, seed=cfg.seed + 17 * done), 1)
    ev = evaluate(run.engine, run.held_out, prompt_style=style, max_tokens=max_tokens, geocoder=run.geocoder,
                  sampling=sampling, writer=run.writer, step=done, env_options=blind(cfg), dist=run.dist)
    shown = ("geoscore", "median_km", "acc_200km", "acc_750km")
    progress.note(f"eval step {done}: " + " ".join(f"{k}={ev.metrics[k]:.4g}" for k in shown if k in ev.metrics))
    for line in extra_lines(ev.metrics):  # its env's own numbers: label answers, turns, reasoning
        progress.note(line)
    return dict(ev.metrics)


def train_on(engine, d: Dist, datums_D, loss_fn: str, adam: AdamParams, loss_config):
    """One optimizer step on the datums of every rank -> (its metrics, this rank's training logprobs);
    (None, []) when no rank had a datum (no step). One process: the engine's train_step (Tinker
    submits both calls before waiting). Under torchrun every rank steps, a rank without datums
    too: the engine reduces the ranks' gradients at optim_step (engines/parallel.py)."""
    if not d.active:
        if not datums_D:
            return None, []
        result = engine.train_step(datums_D, loss_fn, adam, loss_config)
        return result.metrics, result.logprobs
    if not d.sum({"n": len(datums_D)})["n"]:
        return None, []
    sums, logprobs = {"loss:sum": 0.0, "tokens": 0.0, "datums": 0.0}, []
    if datums_D or engine.lockstep is not None:  # FSDP2 resharding: a collective call
        result = engine.forward_backward(datums_D, loss_fn, loss_config)
        sums.update(result.metrics)
        logprobs = result.logprobs
    return {**d.sum(sums), **engine.optim_step(adam)}, logprobs


def everyones(d: Dist, trajectories_BG, versions_B):
    """Every rank's trajectories (and their weights versions) in global group order; the
    observations are dropped on the way (metrics and records read the actions and env metrics)."""
    if not d.active:
        return trajectories_BG, versions_B
    light = [[Trajectory(tuple(dataclasses.replace(tr, observation=None) for tr in t.transitions)) for t in group]
             for group in trajectories_BG]
    parts = d.gather((light, list(versions_B)))
    return [g for p in parts for g in p[0]], [v for p in parts for v in p[1]]


UNTRAINED_WARN_STEPS = 10  # a run none of whose first steps trained says so then, not only at its end


def since_resume(start_step: int) -> str:
    """Which steps a resumed run's note speaks of: those before the resume may have trained."""
    return f" since the resume at step {start_step}" if start_step else ""


def untrained_note(cfg: RLConfig, metrics: dict, when: str, engine: EngineConfig) -> str:
    """The sentence for a run none of whose steps trained, with the fix that fits its start;
    `engine` is the model it trains (its start run's model and LoRA rank where not given)."""
    model, rank = engine.model_name, engine.lora_rank
    if rank and random_tiny(model) and metrics.get("format_rate", 0) < 0.5:
        # longer SFT does not fix it: an adapter on random weights never learned the format (measured:
        # 0 % parsed after 30 steps at lr 1e-2; full fine-tuning parses 94-100 % by 160 steps)
        fix = (f"{model} has random weights, and a LoRA adapter (lora_rank={rank}) on them learns little: warm "
               "start from an SFT run with lora_rank=0 (every weight trained, as the demo does)")
    elif cfg.load_checkpoint_path:
        fix = "train that SFT run longer, or raise group_size or temperature so rollouts differ"
    else:
        fix = "a start model that never answers in the format needs an SFT warm start (load_checkpoint_path=<sft run>)"
    return (f"no step trained: {when} every group's rewards were equal (format_rate "
            f"{metrics.get('format_rate', 0):.2f}), so GRPO had nothing to compare; {fix}")


def run(cfg: RLConfig, writer=None, *, clock=time.perf_counter) -> RunResult:
    """Train; the result's metrics are the last step's (with the last eval's under `eval/`).
    `clock` measures `max_seconds` (a benchmark on a shared machine passes time.process_time)."""
    cfg.validate()  # a config built in Python comes here unchecked (geospot.api checks it as the command line does)
    # Everything that can fail cheaply fails before the model loads (train/lifecycle.py).
    # the keys left unset are the start run's
    unset = [k for k in ENGINE_KEYS if getattr(cfg, k) is None]
    try:
        inherited = inherited_engine_fields(cfg.load_checkpoint_path)
    except ConfigError:  # the start run is gone (pruned, deleted): fine for a resume, whose config.json holds
        if cfg.model_name is None or cfg.data is None or cfg.behavior_if_log_dir_exists != "resume":
            raise  # (the keys resolved and its checkpoint the weights: a resume's alone)
        inherited = {}
    if cfg.data is None:
        cfg = dataclasses.replace(cfg, data=inherited.get("data", DEFAULT_DATA))
    engine_config = cfg.engine_config(inherited)
    cfg = dataclasses.replace(cfg, **{k: getattr(engine_config, k) for k in unset})  # config.json: what it trains
    log_path = run_folder_name(cfg, "rl", engine_config.model_name, engine_config)
    run = start_run(cfg, "rl", log_path, engine_config, writer=writer, set_reference=cfg.kl_coef > 0, clock=clock)
    engine, writer, budget, d = run.engine, run.writer, run.budget, run.dist
    # everything from here on runs inside `finishing`: a failure while setting up still closes the writer,
    # marks the run failed and lets its folder claim go
    with finishing(writer, run.stream, close_writer=run.own_writer, folder=run.log_dir):
        # the tau schedule's history (follow_error: the recent errors) lives in its state and the checkpoint
        tau = make_tau_schedule(cfg.tau_schedule, cfg.tau_start_km, cfg.tau_end_km, cfg.max_steps,
                                **({"window": cfg.tau_window} if cfg.tau_schedule == "follow_error" else {}))
        # (checkpoints written before the schedule kept its own state hold the errors as `recent_km`)
        tau.load_state_dict(run.loop_state.get("tau") or {"recent_km": run.loop_state.get("recent_km", [])})
        # step -> held-out metrics, the evals before a resume included
        eval_history = {int(k): v for k, v in run.loop_state.get("eval_history", {}).items()}

        credit = CREDITS[cfg.advantage]
        loss_config = None
        if cfg.loss_fn == "ppo":
            loss_config = {"clip_low_threshold": 1 - cfg.ppo_clip, "clip_high_threshold": 1 + cfg.ppo_clip}
        # the lr of each step is the schedule's (constant by default), read as SFT reads it
        adam = AdamParams(cfg.learning_rate, cfg.adam_beta1, cfg.adam_beta2, cfg.adam_eps, cfg.weight_decay,
                          cfg.grad_clip_norm)
        played_envs = tuple(env for env in (cfg.env_type, cfg.mix_env_type) if env)
        # labels for samples that carry none, where an env asks them (the synthetic world's, else reverse geocoding)
        train_geocoder = geocoder_for(cfg.data) if any(KINDS[e].needs_labels(cfg) for e in played_envs) else None
        coordinate_turns = {env: KINDS[env].coordinate_turns(cfg) for env in played_envs}  # per env, fixed by its keys
        progress = Progress(cfg.max_steps, run.start_step, run.stderr, cfg.log_every, budget.seconds_left)
        if cfg.max_steps_off_policy and d.is_main:  # said once: the progress line does not show it
            progress.note(f"async GRPO: a thread samples each step with the weights of {cfg.max_steps_off_policy} "
                          "step(s) before while this one trains; staleness, importance ratios and waits are logged as "
                          "async/* (metrics.jsonl, dashboard)")
        metrics: dict = {}
        steps = run.start_step
        steps_trained = 0  # steps where some group's rewards differed: the others update nothing

        # Rollouts come from the pipeline (geospot/rl/pipeline.py): max_steps_off_policy=0 samples each
        # step right here, as before; k >= 1 samples the next steps on a thread while this one trains.
        # A batch's tau is the one published with the weights it samples with. Under torchrun every rank
        # reads the same global batch and plays its share of the groups (a group never spans ranks:
        # advantages are group-local). A torchrun job samples each group from its own seed (group_ids), so
        # where it is played does not change its rollouts; a plain run keeps one generator per call.
        source = BatchSource(
            samples=lambda s: run.draw(s, cfg.batch_size),
            builders=lambda samples, ctx: make_group_builders(cfg, samples, engine.renderer, ctx["tau_km"],
                                                              geocoder=train_geocoder, seed=cfg.seed),
            params=lambda s: SampleParams(max_tokens=cfg.turn_max_tokens(cfg.max_tokens), temperature=cfg.temperature,
                                          seed=cfg.seed * 1_000_003 + s * 7919))
        pipeline = RolloutPipeline(source, cfg.group_size, cfg.max_steps_off_policy, end_step=cfg.max_steps,
                                   share=d.share, seed_groups=run.group_seeds)
        new_sampler = sampler_factory(engine, cfg.max_steps_off_policy)

        def tau_context(s: int) -> dict:
            return {"tau_km": float(tau.tau(budget.schedule_step(s, cfg.max_steps)))}

        # the batches a resumed run's checkpoint holds sampled ahead of training (async only)
        sampled_ahead = pipeline.restore(read_extra(run.checkpoint, "inflight") or []) if run.checkpoint else []

        with pipeline:
            if run.held_out and cfg.eval_at_start and run.start_step == 0:
                eval_history[0] = eval_now(run, 0, progress)
                progress.restart()  # the ETA counts training steps, not the baseline eval
            pipeline.start(run.start_step, new_sampler(), tau_context(run.start_step), sampled_ahead)
            for step in run.steps():
                t_step = time.perf_counter()
                batch, async_metrics = pipeline.next_batch(step)
                samples, stats = batch.samples, batch.stats  # the global batch; this rank's groups:
                my_trajectories = batch.trajectories_BG
                tau_km = batch.context["tau_km"]

                adv = compute_advantages(my_trajectories, credit, cfg.scale_by_std)
                datums_D = build_datums(my_trajectories, adv)  # each datum carries its group
                t_train = time.perf_counter()
                if cfg.kl_coef > 0:
                    datums_D, kl = apply_kl_penalty(engine, datums_D, cfg.kl_coef) if datums_D else (datums_D, 0.0)
                    kl_sums = d.sum({"kl": kl * len(datums_D), "n": len(datums_D)})
                    kl = kl_sums["kl"] / max(kl_sums["n"], 1)
                # no datums on any rank = every group constant: nothing to learn this step
                lr = run.lr(step)
                trained, train_logprobs = train_on(engine, d, datums_D, cfg.loss_fn,
                                                   dataclasses.replace(adam, learning_rate=lr), loss_config)
                train_s = time.perf_counter() - t_train

                # the metrics, the tau schedule and the records see every rank's rollouts
                trajectories_BG, versions_B = everyones(d, my_trajectories, batch.versions_B)
                counts = d.sum({"dropped": adv.dropped, "datums": len(datums_D), "sampled": stats.sampled_tokens})
                coords_B = [coordinate_turns[env] for env, part in
                            registry.split_batch(samples, cfg.env_type, cfg.mix_env_type, cfg.mix_share) for _ in part]
                metrics = rollout_metrics(samples, trajectories_BG, coords_B)
                metrics.update(registry.env_metrics(trajectories_BG))  # label accuracy per turn, geohash cells shared
                metrics.update(reasoning_metrics(trajectories_BG))  # reasoning=true: length, truncation, format
                tau.observe(  # the distances of the groups just trained
                    np.asarray(
                        [t.transitions[-1].metrics.get("distance_km", math.nan) for g in trajectories_BG for t in g],
                        dtype=float,
                    )
                )
                # tau means nothing to the GeoScore reward: charted only when an env's reward uses it
                if any(registry.uses_tau(registry.reward_name(env, cfg.reward)) for env in played_envs):
                    metrics["tau_km"] = tau_km
                metrics.update(
                    {
                        "dropped_groups": counts["dropped"],
                        "datums": counts["datums"],
                        "sampled_tokens": counts["sampled"],
                        "tokens_per_s": counts["sampled"] / max(d.max(stats.sample_s), 1e-9),
                        "time_sample_s": stats.sample_s,
                        "time_train_s": train_s,
                        "time_step_s": time.perf_counter() - t_step,
                        "lr": lr,
                    }
                )
                if cfg.kl_coef > 0 and counts["datums"]:
                    metrics["kl"] = kl
                if trained is not None:
                    metrics.update({f"train/{k}": float(v) for k, v in trained.items()})
                    if not d.active:  # (rank 0's own datums only would misreport them under torchrun)
                        metrics.update(importance_ratio_metrics(datums_D, train_logprobs, cfg.ppo_clip))
                # (k = 0: a resume's stale groups)
                if cfg.max_steps_off_policy > 0 or async_metrics["async/stale_dropped"]:
                    metrics.update(async_metrics)
                done = step + 1  # logged as SFT does: the number of optimizer steps done
                writer.log_step(done, metrics)
                if d.is_main and cfg.log_images_every and step % cfg.log_images_every == 0:
                    records = image_records(samples, trajectories_BG, engine.renderer, versions_B)
                    writer.log_images(done, records, split="train")
                shown = ("reward_mean", "median_km", "tau_km", "format_rate", "dropped_groups", "tokens_per_s")
                steps, last = done, run.end_step(done)  # (before the line: the step the time limit ends prints it)
                progress.update(step, {k: metrics[k] for k in shown if k in metrics}, last)
                steps_trained += counts["datums"] > 0
                if not steps_trained and done - run.start_step == UNTRAINED_WARN_STEPS and not last:
                    # said early, not only at the end: on a GPU every such step is paid for and learns nothing
                    early = f"in its first {UNTRAINED_WARN_STEPS} steps{since_resume(run.start_step)}"
                    progress.note(untrained_note(cfg, metrics, early, engine_config) +
                                  "; the run goes on (Ctrl-C stops it and says how to resume)")
                pipeline.publish(done, new_sampler(), tau_context(done))  # the next batches sample these weights
                if run.held_out and due(cfg.eval_every, done, last):
                    with pipeline.paused():  # the sampling thread stays off the engine while it evaluates
                        eval_history[done] = eval_now(run, done, progress)
                    metrics.update({f"eval/{k}": v for k, v in eval_history[done].items()})
                stop = run.stop_asked()  # Ctrl-C / SIGTERM during the step: it is saved, then the run stops
                if due(cfg.save_every, done, last) or stop:
                    inflight = pipeline.inflight()  # every step sampled ahead; the stream rests until the next publish
                    run.save(done, {"tau": tau.state_dict(), "eval_history": eval_history},
                             extra={"inflight": inflight} if inflight else None)
                if stop:
                    raise stop
                if last:
                    break
    if steps > run.start_step and not steps_trained:
        progress.note(untrained_note(cfg, metrics, f"on every step{since_resume(run.start_step)}", engine_config))
    return RunResult(run.log_dir, steps, metrics, eval_history, skipped=dict(run.stream.skipped),
                     passes=run.stream.passes)


def main(argv: list[str] | None = None) -> int:
    title = "geospot rl — GRPO for geolocation (single, telescoping, hierarchical, geohash)"
    return run_command("rl", RLConfig, title, argv, prepare_keys, run)


def prepare_keys(cfg: RLConfig, given: set[str], resumed: set[str]) -> RLConfig:
    cfg = env_from_start_run(cfg, given, resumed)  # a resumed run's env keys are its own, not its start run's again
    if cfg.reasoning and "max_tokens" in given and distributed.speaks():  # (reasoning may be the start run's)
        print(f"note: max_tokens is not used with reasoning=true: reasoning_max_tokens={cfg.reasoning_max_tokens} is "
              "each turn's budget", file=sys.stderr)
    if not cfg.log_path and not distributed.under_torchrun():  # (under torchrun rank 0's clock names it)
        model = cfg.engine_config(inherited_engine_fields(cfg.load_checkpoint_path)).model_name
        cfg = dataclasses.replace(cfg, log_path=default_log_path("rl", model))  # named now: a Ctrl-C points at it
    return cfg


if __name__ == "__main__":
    sys.exit(main())
