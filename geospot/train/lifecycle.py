"""The run lifecycle both loops share, one meaning per knob.

    start_run:   run folder (resume / delete / refuse), data, held-out images, geocoder, start
                 weights and wandb checked BEFORE the model loads (a typo costs seconds); a
                 resume refused when the folder has no checkpoint or its config changed what is
                 trained (train/resume.py); config.json; seed; the engine; the start weights
                 (and the KL reference); a resumed run's checkpoint (weights, optimizer, RNG, data
                 cursor, loop state, seconds spent); the writer. A fresh run whose start fails
                 (anything up to here, model not found included) leaves no folder behind.
    due:         the eval / checkpoint cadence: every N steps and at the end; 0 = only at the end.
    draw:        a step's samples; end_step: the last step is max_steps, the time limit, or the one
                 that drew a non-repeating stream's last samples (the run then ends as at max_steps:
                 last eval, checkpoint, `done`, a note).
    save:        a checkpoint with the data cursor and the loop's state.
    finishing:   the run ends `done`, or `failed` if anything escapes; writer and stream closed.
    TimeBudget:  `max_seconds`, counted over training steps only.

The keys every loop has mean the same in both (`RUN_HELP`) and are checked by one validator
(`validate_run`); each loop validates its own keys after it."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geospot import distributed, engines
from geospot.config import ConfigError, check_types, require, to_dict
from geospot.data import skip_reasons
from geospot.distributed import Dist
from geospot.runs.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from geospot.runs.folder import (
    claim_run_folder,
    prepare_log_dir,
    read_config,
    release_run_folder,
    truncate_jsonl,
    write_config,
)
from geospot.runs.loggers import open_run_writer
from geospot.runs.store import STORE_FILE, RunReader
from geospot.runs.writer import NullWriter
from geospot.train import rank_death
from geospot.train.command import defer_stop, stop_asked, stop_between_steps
from geospot.train.common import seed_everything
from geospot.train.inputs import check_start_weights, open_inputs
from geospot.train.lr import SCHEDULES, learning_rate, lr_rise, schedule_step
from geospot.train.resume import check_resume, write_resumed_config

EVAL_SPLITS = ("val", "test", "heldout")  # data/stream.py's SPLITS that hold no training id
MAX_BATCH = 16_384  # images held in memory at once (~1 MB each): batch_size=1e9 grew for ever, unstoppable

# Other tools' names for a training key (said with the key to type): Tinker's / HF's spellings, and eval's model=.
TRAINING_ALIASES = {"checkpoint": "load_checkpoint_path", "lr": "learning_rate", "model": "model_name"}
# One meaning per knob, shared by SFTConfig and RLConfig (their defaults may differ).
RUN_HELP = {
    "load_checkpoint_path": "start from these weights (fresh optimizer, step 0): a run folder, its "
                            "checkpoints/<step> or tinker://…; a local run's model, adapter, image size and answer "
                            "format carry over unless given",
    "eval_n": "held-out images per eval (0 = no eval)",
    "eval_data": "held-out data spec, all of it used (None = the `eval_split` ids of `data`)",
    "eval_split": "the ids of `data` the held-out eval reads when eval_data is not given: `val`, `test` or "
                  "`heldout` (both); training reads none of them",
    "eval_every": "held-out eval every N steps and at the end (0 = only at the end; eval_n=0 = never)",
    "eval_at_start": "also evaluate the starting model first (the baseline row)",
    "save_every": "checkpoint every N steps and at the end (0 = only at the end)",
    "keep_checkpoints": "how many of the latest checkpoints to keep (0 = all)",
    "max_steps": "optimizer steps",
    "max_seconds": "also stop after this many seconds of training steps (not load, evals, checkpoints), ending as at "
                   "max_steps; schedules then follow the time; 0 = no limit (docs/design.md)",
    "behavior_if_log_dir_exists": "when log_path holds a run: `resume` from its last checkpoint, `delete` it, "
                                  "`raise`, or `ask` (a prompt on a terminal; `raise` otherwise)",
    "seed": "seed of data order, sampling and initialisation",
    "log_every": "print the progress line every N steps when stderr is not a terminal (a terminal's line is "
                 "rewritten in place)",
    "wandb_project": "also log to this Weights & Biases project (needs `pip install wandb`)",
    "wandb_name": "W&B run name (default: the run folder's name)",
    "adam_beta1": "Adam beta1 (first-moment decay)",
    "adam_beta2": "Adam beta2 (second-moment decay)",
    "adam_eps": "Adam epsilon",
    "grad_clip_norm": "clip the global gradient norm to this before each step (None = no clipping)",
    "lr_schedule": "decay after warmup: `linear` (to 0), `cosine` (to 0) or `constant`",
    "warmup_steps": "linear warmup steps before the decay",
    "min_lr_ratio": "floor of the decay as a fraction of learning_rate",
    "weight_decay": "decoupled weight decay",
}


def validate_run(cfg: Any) -> None:
    """The checks of the keys both loops share; each loop's `validate` calls it first."""
    check_types(cfg)  # (a config built in Python: no command line coerced its values)
    require(cfg, cfg.max_steps >= 1, "max_steps", "must be >= 1")
    require(cfg, 0 <= cfg.max_seconds < float("inf"), "max_seconds", "must be >= 0 (0 = no time limit)")
    for key in ("eval_n", "eval_every", "save_every", "keep_checkpoints"):
        require(cfg, getattr(cfg, key) >= 0, key, "must be >= 0")
    require(cfg, cfg.eval_split in EVAL_SPLITS, "eval_split",
            f"must be one of {', '.join(EVAL_SPLITS)}: the ids training never reads")
    require(cfg, 1 <= cfg.batch_size <= MAX_BATCH, "batch_size", f"must be in 1..{MAX_BATCH:,} (held in memory)")
    require(cfg, cfg.log_every >= 1, "log_every", "must be >= 1 (1 = every step)")
    require(cfg, 0 < cfg.learning_rate < float("inf"), "learning_rate", "must be a positive number, e.g. 2e-4")
    for key in ("adam_beta1", "adam_beta2"):
        require(cfg, 0 <= getattr(cfg, key) < 1, key, "must be in [0, 1)")
    require(cfg, cfg.adam_eps > 0, "adam_eps", "must be > 0")
    require(cfg, cfg.grad_clip_norm is None or cfg.grad_clip_norm > 0, "grad_clip_norm", "must be > 0 or None")
    require(cfg, cfg.lr_schedule in SCHEDULES, "lr_schedule", f"must be one of {', '.join(SCHEDULES)}")
    require(cfg, 0 <= cfg.warmup_steps <= cfg.max_steps, "warmup_steps", f"must be in [0, max_steps={cfg.max_steps}]")
    require(cfg, 0.0 <= cfg.min_lr_ratio <= 1.0, "min_lr_ratio", "must be in [0, 1]")
    require(cfg, cfg.weight_decay >= 0, "weight_decay", "must be >= 0")


def due(every: int, done: int, last: bool) -> bool:
    """Whether an eval / checkpoint is due after `done` steps: every N and at the end (0: only at the end)."""
    return last or (every > 0 and done % every == 0)


class TimeBudget:
    """Seconds spent in training steps (`begin_step` .. `end_step`; not load, evals, checkpoints) against
    `max_seconds` (0 = no limit); a resumed run starts from its checkpoint's. `clock`: wall time, or
    another (benchmarks/rl_vs_sft.py: CPU time, so a shared machine's neighbours are not charged)."""

    def __init__(self, max_seconds: float, spent: float = 0.0, clock: Callable[[], float] = time.perf_counter) -> None:
        self.max_seconds, self.spent, self.clock = float(max_seconds), float(spent), clock
        self._t0: float | None = None

    def begin_step(self) -> None:
        self._t0 = self.clock()

    def end_step(self) -> None:
        if self._t0 is not None:
            self.spent += self.clock() - self._t0
            self._t0 = None

    def expired(self) -> bool:
        return self.max_seconds > 0 and self.spent >= self.max_seconds

    def seconds_left(self) -> float:
        """Of max_seconds (inf: no limit), the step being timed counted so far."""
        now = self.clock() - self._t0 if self._t0 is not None else 0.0
        return max(0.0, self.max_seconds - self.spent - now) if self.max_seconds > 0 else float("inf")

    def schedule_step(self, step: int, total_steps: int) -> int:
        """The step the lr / tau schedules are evaluated at: `step`, or, when the time spent is
        further along max_seconds than `step` is along `total_steps`, that fraction of
        `total_steps` — so a run the clock stops still finishes its decay, as a run that
        reaches max_steps does. No limit: exactly `step`."""
        return schedule_step(step, total_steps, self.spent, self.max_seconds)


def make_writer(log_dir: Path, cfg: Any, start_step: int) -> Any:
    """The run store + metrics.jsonl (+ wandb) through one RunWriter. A resumed run first
    drops the metrics lines past its checkpoint (and the run store its steps and images past
    it), so the file and the dashboard read like one run."""
    from geospot.runs.store import truncate_store

    truncate_jsonl(log_dir / "metrics.jsonl", start_step)
    truncate_store(log_dir, start_step)
    return open_run_writer(log_dir, wandb_project=cfg.wandb_project, wandb_name=cfg.wandb_name)


# ---------------------------------------------------------------------------------------
# The run


@dataclass
class Run:
    """What a loop holds from start to finish."""

    cfg: Any
    log_dir: Path
    stream: Any
    held_out: list[Any]
    geocoder: Any
    engine: Any
    writer: Any
    budget: TimeBudget
    start_step: int = 0  # optimizer steps already done (a resumed run's checkpoint)
    loop_state: dict[str, Any] = field(default_factory=dict)  # what the loop saved with that checkpoint
    checkpoint: Path | None = None  # the checkpoint a resumed run started from (its extra.pt: runs/checkpoint.py)
    own_writer: bool = True
    stderr: Any = None
    data_end: int | None = None  # a non-repeating stream's last step: the step that drew its last samples, + 1
    data_end_noted: bool = False
    small_data_noted: bool = False
    dist: Dist = field(default_factory=Dist)  # this process's place in a torchrun job (one process: rank 0 of 1)
    changed: dict[str, tuple] = field(default_factory=dict)  # a resume's changed keys: (saved, now)
    # GRPO: each group samples from its own seed (torchrun's scheme: rollouts whatever the world size), else
    group_seeds: bool = False  # one generator per sampling call (a plain run's); kept by a resume (config.json)

    def stop_asked(self) -> BaseException | None:
        """A Ctrl-C / SIGTERM's stop (raise it once the step is saved), agreed by every rank: one asked, all stop."""
        asked = stop_asked()
        if not self.dist.active:
            return asked
        # 0 none, 1 Ctrl-C, 2 SIGTERM: every rank raises the same one (its exit code, and rank 0's words)
        agreed = self.dist.max(0.0 if asked is None else 2.0 if isinstance(asked, rank_death.Terminated) else 1.0)
        if agreed:
            rank_death.stopping()  # (a signal now lets the run close undisturbed)
            return rank_death.Terminated() if agreed == 2 else KeyboardInterrupt()
        return None

    def steps(self) -> Iterator[int]:
        """The 0-based steps left to run, each timed by the budget until `end_step`; stops at
        max_steps, or before a step when a time-limited run (e.g. a resumed one) has no time left
        or the data has ended (a resumed run whose data ran out)."""
        with stop_between_steps():  # a first Ctrl-C / SIGTERM in here waits for the step's end (train/command.py)
            for step in range(self.start_step, self.cfg.max_steps):
                if self.budget.expired() or self.data_ran_out(step):
                    return
                self.budget.begin_step()
                yield step

    def lr(self, step: int) -> float:
        """The learning rate of 0-based `step`: the run's schedule (lr_schedule, warmup, floor) read at
        the step, or the time (max_seconds), whichever is further along -- the same in both loops."""
        cfg = self.cfg
        return learning_rate(self.budget.schedule_step(step, cfg.max_steps), cfg.max_steps, cfg.learning_rate,
                             cfg.lr_schedule, cfg.warmup_steps, cfg.min_lr_ratio)

    def draw(self, step: int, n: int) -> list[Any]:
        """Step `step`'s samples, in step order, on whichever thread samples (async GRPO draws ahead); a non-repeating
        stream's end is found as its last samples are drawn (`has_more`), so the step training them is the last."""
        samples: list[Any] = []
        while len(samples) < n:  # in parts: a batch far past the data is refused once a pass has shown its size
            samples += (part := self.stream.next_batch(want := min(n - len(samples), 1024)))
            self.note_small_data(n)
            if len(part) < want:  # a finite stream's end
                break
        if self.data_end is None and not getattr(self.stream, "repeat", True) and not self.stream.has_more():
            self.data_end = step + 1 if samples else step
        return samples

    def note_small_data(self, n: int) -> None:
        """Once: a batch larger than the whole (repeating) data holds some images twice or more ("at most": records
        read, not images decoded, count: one whose image fails to decode too)."""
        size = getattr(self.stream, "records_per_pass", None)
        if self.small_data_noted or size is None or size >= n or not getattr(self.stream, "repeat", False):
            return
        if n > 64 * size:  # every image dozens of times in each batch, held in memory: no batch meant that
            raise ConfigError(f"batch_size={n} is {n // size}x the at most {size} images of data={self.cfg.data!r} "
                              f"(its train split); lower batch_size to {size} or less, or bring more data")
        self.small_data_noted = True
        if distributed.speaks():
            print(f"batch_size={n} is more than the at most {size} image{'s' * (size != 1)} of data={self.cfg.data!r} "
                  f"(its train split), so every batch repeats images; lower batch_size to {size} or less, or bring "
                  "more data", file=self.stderr or sys.stderr)

    def end_step(self, done: int) -> bool:
        """Stop timing the step; whether it was the last: max_steps, the time limit, or the end of
        a non-repeating stream all end a run the same way (last eval, checkpoint, `done`)."""
        self.budget.end_step()
        return done == self.cfg.max_steps or self.budget.expired() or self.data_ran_out(done)

    def data_ran_out(self, done: int) -> bool:
        """Whether the data has ended after `done` steps (noted once)."""
        if self.data_end is None or done < self.data_end:
            return False
        if not self.data_end_noted:
            self.data_end_noted = True
            print(f"data ran out at step {self.data_end}: {self.cfg.data!r} gave its last sample (repeat=false), so "
                  "the run ends here; pass repeat=true in the spec to loop over it", file=self.stderr or sys.stderr)
        return True

    def save(self, done: int, loop_state: dict[str, Any], extra: dict[str, Any] | None = None) -> Path:
        """checkpoints/<done>/ with the data cursor, the loop's state and the seconds spent (and
        `extra`: objects JSON cannot hold, e.g. async GRPO's batches sampled ahead). Under torchrun
        rank 0 writes it (every rank holds the same cursor and, after the step, the same weights);
        the others take part in gathering sharded weights (FSDP2) and write nothing."""
        path = Path(self.log_dir) / "checkpoints" / str(done)
        if self.dist.is_main:
            path = save_checkpoint(self.log_dir, done, self.engine, data_state=self.stream.state_dict(),
                                   loop_state={**loop_state, "train_seconds": self.budget.spent,
                                               **({"data_end": self.data_end} if self.data_end is not None else {})},
                                   extra=extra, keep_last=self.cfg.keep_checkpoints or None)
        else:
            self.engine.save_state(None)
        self.dist.barrier()  # no rank runs ahead of a checkpoint a resume would start from
        return path


@dataclass
class RunResult:
    """What both loops return."""

    log_dir: Path
    steps: int  # optimizer steps done
    metrics: dict[str, float]  # the last step's (RL: with the last eval's under `eval/`)
    eval_history: dict[int, dict[str, float]] = field(default_factory=dict)  # step -> held-out metrics
    skipped: dict[str, int] = field(default_factory=dict)  # training records skipped, by reason (this rank's)
    passes: int = 1  # passes over the training data begun (each counts its skips again)

    @property
    def final_loss(self) -> float:
        return float(self.metrics.get("loss", float("nan")))

    def done_line(self) -> str:
        """The last line a training command prints: what it did, where, and what it skipped."""
        line = f"done: {self.steps} step{'s' * (self.steps != 1)}, run folder {self.log_dir}"
        if self.skipped:
            # (passes begun, read ahead by the shuffle buffer, outrun the ones consumed: no count is given)
            again = "; counted again on each pass over the data" if self.passes > 1 else ""
            line += ("; data records skipped: " + skip_reasons(self.skipped)
                     + f" (the first of each reason is named above{again})")
        return line


def start_run(
    cfg: Any,
    kind: str,
    log_path: str,
    engine_config: Any,
    *,
    writer: Any = None,
    set_reference: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    stderr: Any = None,
) -> Run:
    """Everything before the first step (see the module docstring). `set_reference`: load the
    start weights even when resuming and freeze them as the KL reference. Under torchrun every
    rank runs this; rank 0 alone prepares and writes the run folder and tells the others what
    it found (geospot/distributed.py, docs/distributed.md)."""
    if distributed.under_torchrun():  # refused before joining the process group
        require_torchrun_ok(engine_config, set_reference)
    d = distributed.init(engine_config.device)
    engine_config = dataclasses.replace(engine_config, device=distributed.rank_device(engine_config.device, d))
    stderr = (stderr or sys.stderr) if d.is_main else open(os.devnull, "w")  # noqa: SIM115
    made = [p for p in Path(log_path).parents if not p.exists()]  # the folders this start makes to hold the run
    log_dir, resuming, changed = _prepare_folder(d, log_path, kind, cfg)
    # a rank that dies: one sentence from rank 0; a Ctrl-C / SIGTERM: the step is saved first (train/rank_death.py)
    rank_death.watch(d, log_dir, defer=defer_stop, pending=stop_asked)
    stream = own_writer = None
    try:
        # a resume's weights are its checkpoint's: the start run's are read only as the KL reference
        stream, held_out, geocoder, init_weights = open_inputs(cfg, start_weights=not resuming or set_reference)
        check_start_weights(engine_config, init_weights, cfg.load_checkpoint_path)
        if not resuming and d.is_main:
            # started_in: the folder the config's relative paths (data, weights) are read from;
            # a resume from elsewhere is refused by it (train/resume.py)
            write_config(log_dir, kind, cfg, extra={"started_in": os.getcwd(), "processes": d.world,
                                                    "group_seeds": distributed.launched_by_torchrun()})
        if d.active and d.is_main:  # said once: which share each process trains
            idle = f"; batch_size={cfg.batch_size} leaves {d.world - cfg.batch_size} of them without an image each " \
                   f"step: raise it to {d.world} or more" if cfg.batch_size < d.world else ""
            print(f"torchrun: {d.world} processes, each with its share of every batch of {cfg.batch_size} "
                  f"images{idle}", file=stderr)
        seed_everything(cfg.seed)

        engine = engines.make_engine(engine_config)
        ckpt_dir = latest_checkpoint(log_dir) if resuming else None
        if init_weights and (ckpt_dir is None or set_reference):
            engine.load_state(init_weights, with_optimizer=False)
        if set_reference:
            engine.set_reference()  # KL to where this run started (the SFT policy), not the untrained base
        budget = TimeBudget(cfg.max_seconds, clock=clock)
        run = Run(cfg, log_dir, stream, held_out, geocoder, engine, writer, budget, stderr=stderr, dist=d,
                  group_seeds=distributed.launched_by_torchrun())
        if ckpt_dir is not None:
            ckpt = load_checkpoint(ckpt_dir, engine, with_optimizer=True)
            # the cursor names the data as the run spelled it where it started; resumed from another folder
            # the spec reads the same files spelled absolute (check_resume refused any other data)
            stream.load_state_dict({**ckpt.data_state, "spec": stream.spec})
            run.start_step, run.loop_state, run.checkpoint = ckpt.step, dict(ckpt.loop_state), ckpt_dir
            run.changed = dict(changed)
            run.budget.spent = float(ckpt.loop_state.get("train_seconds", 0.0))
            run.data_end = ckpt.loop_state.get("data_end")
            print(f"resuming {log_dir} from step {ckpt.step}", file=stderr)
            saved = (read_config(log_dir) or {}).get("group_seeds")  # (an older run: none recorded)
            if saved is not None:  # its own scheme (several processes need per-group seeds whatever it was)
                run.group_seeds = bool(saved) or d.world > 1
                if kind == "rl" and not saved and d.world > 1:
                    print("note: this run sampled as one process (one generator per call); under torchrun each group "
                          "samples from its own seed, so its rollouts differ from an uninterrupted run's", file=stderr)
            for k, (a, b) in changed.items():  # (a schedule over the run's length is read at the new one from here)
                what = "the lr schedule now ends" if kind == "sft" else "the lr and τ schedules now end"
                then = f"; {what} there" if k in ("max_steps", "max_seconds") else ""
                print(f"resuming with {k} changed: {a!r} -> {b!r} (recorded in config.json{then})", file=stderr)
            old = {k: changed.get(k, (getattr(cfg, k),))[0] for k in ("max_steps", "max_seconds")}
            if set(old) & set(changed) and (rise := lr_rise(cfg, ckpt.step, **old, spent=run.budget.spent)):
                print(rise, file=stderr)  # (both loops: a decayed lr rises again, said in numbers)
            if d.is_main:
                write_resumed_config(log_dir, kind, cfg, changed, ckpt.step, processes=d.world,
                                     group_seeds=run.group_seeds)
        if not d.is_main:
            run.writer = NullWriter()
        elif writer is None:
            run.writer = own_writer = make_writer(log_dir, cfg, run.start_step if ckpt_dir is not None else -1)
        run.own_writer = writer is None or not d.is_main
        run.writer.log_config(kind, to_dict(cfg))
        return run
    except BaseException:
        if own_writer is not None:
            own_writer.close()
        if stream is not None:
            stream.close()
        if not resuming and d.is_main:  # the folder is this start's own (new, or just emptied): a failed start
            shutil.rmtree(log_dir, ignore_errors=True)  # leaves none, nor the folders made to hold it, if empty
            for parent in made:  # (innermost first; another start may have made its own run in runs/ meanwhile)
                if not parent.is_dir() or any(parent.iterdir()):
                    break
                parent.rmdir()
        release_run_folder(log_dir)  # a failed start or resume: another process may try it now
        raise


def require_torchrun_ok(engine_config: Any, set_reference: bool = False) -> None:
    """What a torchrun job cannot run, in one sentence each."""
    if engine_config.engine != "local":
        raise ConfigError(f"engine={engine_config.engine} does not run under torchrun: Tinker is already the remote "
                          "cluster, so start the run as one process (python -m geospot ...)")
    if set_reference and engine_config.lora_rank == 0:
        raise ConfigError("kl_coef > 0 with full fine-tuning (lora_rank=0) does not run under torchrun yet: the KL "
                          "reference would be a copy of the FSDP2-sharded model; use LoRA, kl_coef=0 or one process")


def default_log_path(kind: str, model_name: str | None) -> str:
    """runs/<kind>-<model>-<time>: a run given no log_path never lands in an earlier run's folder."""
    name = str(model_name or "model").rstrip("/").replace(":", "-").split("/")[-1]
    return str(Path("runs") / f"{kind}-{name}-{time.strftime('%Y%m%d-%H%M%S')}")


def run_folder_name(cfg: Any, kind: str, model_name: str | None, engine_config: Any) -> str:
    """The run folder: log_path, else default_log_path, named once for all ranks under torchrun
    (rank 0's clock names it)."""
    log_path = cfg.log_path or default_log_path(kind, model_name)
    if distributed.under_torchrun() and not cfg.log_path:
        require_torchrun_ok(engine_config)
        log_path = distributed.init(engine_config.device).broadcast(log_path)
    return log_path


def refuse_a_live_run(log_path: str) -> None:
    """A ConfigError when a process is training in `log_path` now (its store says `running` and its
    writer lives: runs/liveness.py): a second one resuming there would train the same steps beside
    it, and `delete` would pull the folder from under it. A run killed without a word is not live."""
    if not (Path(log_path) / STORE_FILE).is_file():
        return
    try:
        reader = RunReader(log_path)
        status, meta = reader.status(), reader.meta()
    except Exception:  # noqa: BLE001 -- an unreadable store says nothing about a live writer
        return
    ours = meta.get("pid") == str(os.getpid()) and meta.get("host") == socket.gethostname()  # a run this process left
    if status.get("status") == "running" and not ours:
        who = f"pid {meta['pid']} on {meta.get('host', 'this machine')}" if "pid" in meta else "another process"
        raise ConfigError(f"log_path={log_path!r} is being trained right now ({who}); wait for it to end or stop it "
                          "(Ctrl-C), or choose another log_path")


def _prepare_folder(d: Dist, log_path: str, kind: str, cfg: Any) -> tuple[Path, bool, dict]:
    """(run folder, resuming, the harmless keys a resume changed). Rank 0 decides (it may ask on
    a terminal, or refuse) and the other ranks follow, with the same error if it refused."""
    found: tuple | str = ""
    if d.is_main:
        try:
            claim_run_folder(log_path)  # held until the run ends (finishing), so a second process is refused now
            try:
                refuse_a_live_run(log_path)  # (a writer on another host: its heartbeat)
                log_dir, resuming = prepare_log_dir(log_path, cfg.behavior_if_log_dir_exists, kind=kind)
                found = (str(log_dir), resuming, check_resume(log_dir, kind, cfg, d.world) if resuming else {})
            except BaseException:  # refused, or anything else (a Ctrl-C at the prompt): the folder is free again
                release_run_folder(log_path)
                raise
        except ConfigError as e:
            found = str(e)
    found = d.broadcast(found)
    if isinstance(found, str):
        raise ConfigError(found)
    return Path(found[0]), found[1], found[2]


@contextlib.contextmanager
def finishing(writer: Any, stream: Any, close_writer: bool = True, folder: Path | None = None):
    """The loop runs inside, `running` meanwhile: the run ends `done`, `stopped` on Ctrl-C,
    or `failed` if anything else escapes (the dashboard shows a crashed run as failed, not as
    running); the writer and the data stream's worker threads are closed either way, and the
    run `folder`'s claim let go (another process may resume it from here on)."""
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
        if folder is not None:
            release_run_folder(folder)
