"""Async GRPO's rollout pipeline: sample the next steps while this one trains.

The loop asks for step s's batch, trains on it, and publishes the new weights (version s + 1,
the number of optimizer steps done, with a sampler bound to them and the context the next
batches are built under, e.g. the tau of the kernel reward). With `max_steps_off_policy = k`:

  k = 0  no thread: next_batch(s) draws and samples step s with version s, on the caller's
         thread, exactly today's order  sample(0) train(0) sample(1) train(1) ...
  k >= 1 a background thread draws and samples the steps in order; step s samples with
         version s - k (the run's first version for the first k steps) as soon as it is
         published. So while step s trains, steps up to s + k can be sampled, and a trained
         group is exactly min(k, s - first) versions old.

Why s - k and not "the newest version published when step s starts": which one that is depends
on thread timing (the trainer may publish s - k + 1 just before the thread looks), so runs would
not repeat, nor would a resumed run repeat the uninterrupted one. s - k is the newest version a
fixed rule can promise, and it costs no speed: the thread waits for exactly the same publish
either way. With one sampling thread k = 1 already gives all the overlap there is; a larger k
adds staleness, and speed only where step times vary (a slow step's slack is taken up later).

A group more than k versions old when its step trains is dropped, counted, and sampled again
with the current weights (the batch keeps its images). The thread's gate makes that impossible
within a run; it happens when a run resumes with a smaller k than it checkpointed with.

`inflight()` lets the thread sample every step the published versions allow, then hands the loop
those batches sampled but not trained, so a checkpoint holds them (with the data stream's cursor,
which stays put until the next publish): a resumed run trains exactly the batches the
uninterrupted one would have (`restore`). `paused()` keeps the thread off a shared engine while
the loop evaluates.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, Self

from geospot.engines.types import Engine, SampleParams, Sampler
from geospot.envs.types import EnvGroupBuilder, Trajectory
from geospot.rl.rollouts import RolloutStats, do_group_rollouts


@dataclass(frozen=True)
class BatchSource:
    """How a step's batch is made: its images (advances the data stream, so it is called once per
    step, in step order), their group builders under a published context, its sampling params."""

    samples: Callable[[int], list]
    builders: Callable[[list, dict], Sequence[EnvGroupBuilder]]
    params: Callable[[int], SampleParams]


@dataclass
class Batch:
    step: int
    samples: list
    trajectories_BG: list[list[Trajectory]]
    versions_B: list[int]  # the weights version each group was sampled with
    context: dict  # what the builders were made under (e.g. tau_km)
    stats: RolloutStats = field(default_factory=RolloutStats)
    resampled: int = 0  # stale groups dropped and sampled again (counted at next_batch)
    groups: Sequence[int] | None = None  # each group's index in `samples` (torchrun: this rank's share); None = all

    def state(self) -> dict:
        """Everything but the builders (they hold the renderer): what a checkpoint stores."""
        return {"step": self.step, "samples": self.samples, "trajectories_BG": self.trajectories_BG,
                "versions_B": self.versions_B, "context": self.context, "stats": self.stats,
                "groups": None if self.groups is None else list(self.groups)}


def sampler_factory(engine: Engine, max_steps_off_policy: int) -> Callable[[], Sampler]:
    """k = 0 samples with the engine itself (its live weights); k >= 1 with a sampler that keeps
    the weights of the moment it was made while the trainer moves on (engine.snapshot_sampler)."""
    if max_steps_off_policy == 0:
        return lambda: engine
    return lambda: engine.snapshot_sampler(keep=max_steps_off_policy + 1)


class RolloutPipeline:
    def __init__(self, source: BatchSource, group_size: int, max_steps_off_policy: int, end_step: int | None = None,
                 rollout: Callable = do_group_rollouts, wait_timeout_s: float = 3600.0,
                 share: Callable[[int], Sequence[int]] = range, seed_groups: bool = False) -> None:
        """`end_step`: the thread draws no step at or past it (the run's max_steps). `share(n)`: which
        of a step's n images this process plays (torchrun: the rank's share; else all).
        `seed_groups`: each group samples from its own seed, by its index in the step (rollouts.py:
        group_ids), so the rollouts do not depend on which process plays it."""
        if max_steps_off_policy < 0:
            raise ValueError(f"max_steps_off_policy={max_steps_off_policy} must be >= 0 (0 = synchronous)")
        self.source, self.group_size, self.k = source, group_size, max_steps_off_policy
        self.end_step, self.rollout, self.wait_timeout_s, self.share = end_step, rollout, wait_timeout_s, share
        self.seed_groups = seed_groups
        self._cond = threading.Condition()
        self._published: dict[int, tuple[Sampler, dict]] = {}  # version -> its sampler and context
        self._first = self._latest = 0  # the run's first version, the newest published
        self._ready: dict[int, Batch] = {}
        self._next = 0  # the next step the thread draws
        self._busy = self._paused = self._closed = False
        self._error: BaseException | None = None
        self._thread: threading.Thread | None = None

    # -- the loop's side ---------------------------------------------------------------------

    def start(self, step: int, sampler: Sampler, context: dict, inflight: Sequence[Batch] = ()) -> None:
        """Begin at `step` with its weights (version `step`); `inflight`: batches a checkpoint held."""
        self._published = {step: (sampler, dict(context))}
        self._first = self._latest = step
        self._ready = {b.step: b for b in inflight}
        expected = list(range(step, step + len(self._ready)))
        if sorted(self._ready) != expected:
            raise ValueError(f"in-flight batches for steps {sorted(self._ready)} do not continue step {step}")
        self._next = step + len(self._ready)
        if self.k > 0:
            self._thread = threading.Thread(target=self._work, name="rollout-pipeline", daemon=True)
            self._thread.start()

    def publish(self, version: int, sampler: Sampler, context: dict) -> None:
        """The weights after `version` optimizer steps, and what later batches are built under."""
        with self._cond:
            self._published[version] = (sampler, dict(context))
            self._latest = version
            # versions older than the thread's next one (and not the newest) are never sampled again
            keep_from = version if self.k == 0 else min(self._version_for(self._next), version)
            for v in [v for v in self._published if v < keep_from]:
                del self._published[v]
            self._cond.notify_all()

    def next_batch(self, step: int) -> tuple[Batch, dict[str, float]]:
        """Step `step`'s batch (the published version must be `step`) and its staleness metrics."""
        t0 = time.perf_counter()
        version = self._latest
        sampler, context = self._published[version]
        if self.k == 0:  # a checkpoint's in-flight batch (a run resumed with k = 0) is trained, or resampled
            batch = self._ready.pop(step) if step in self._ready else self._produce(step, version, sampler, context)
        else:
            batch = self._take(step)
        wait_s = time.perf_counter() - t0
        batch = self._refresh_stale(batch, step, version, sampler, context)
        return batch, staleness_metrics(batch, step, wait_s)

    @contextmanager
    def paused(self):
        """No sampling inside (evals, checkpoints): waits for the batch being sampled to finish."""
        with self._cond:
            self._paused = True
            self._wait(lambda: not self._busy, "the batch being sampled")
        try:
            yield
        finally:
            with self._cond:
                self._paused = False
                self._cond.notify_all()

    def inflight(self) -> list[dict]:
        """Batches sampled but not yet trained, as checkpoint state: first every step the published
        versions allow is sampled (nothing more can be drawn until the next publish)."""
        with self._cond:
            if self.k > 0:
                last = self._latest + self.k + 1
                last = last if self.end_step is None else min(last, self.end_step)
                self._wait(lambda: self._next >= last and not self._busy, "the steps to checkpoint")
            return [self._ready[s].state() for s in sorted(self._ready)]

    def restore(self, states: Sequence[dict]) -> list[Batch]:
        """Batches back from inflight() states (their builders are rebuilt when a group is resampled),
        each cut to this rank's share of its groups: a batch a 1-process async run sampled ahead,
        resumed under torchrun (max_steps_off_policy=0), was trained whole on every rank."""
        out = []
        for batch in (Batch(**s) for s in states):
            saved = list(range(len(batch.samples))) if batch.groups is None else list(batch.groups)
            mine = list(self.share(len(batch.samples)))
            if mine != saved:
                at = {g: i for i, g in enumerate(saved)}
                if any(g not in at for g in mine):
                    raise ValueError(f"the batch of step {batch.step} sampled ahead holds groups {saved}, not this "
                                     f"process's {mine}")
                keep, frac = [at[g] for g in mine], len(mine) / max(len(saved), 1)
                stats = replace(batch.stats, sample_s=batch.stats.sample_s * frac,  # (its share of the work)
                                sampled_tokens=round(batch.stats.sampled_tokens * frac),
                                turns=round(batch.stats.turns * frac))
                batch = replace(batch, trajectories_BG=[batch.trajectories_BG[i] for i in keep],
                                versions_B=[batch.versions_B[i] for i in keep], groups=mine, stats=stats)
            out.append(batch)
        return out

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:  # it ends after the batch it is sampling; a daemon, so never waited on long
            self._thread.join(timeout=10.0)

    # -- the thread's side -------------------------------------------------------------------

    def _produce(self, step: int, version: int, sampler: Sampler, context: dict) -> Batch:
        samples = self.source.samples(step)
        groups = list(self.share(len(samples)))
        builders = self.source.builders([samples[i] for i in groups], context)
        stats = RolloutStats()
        trajectories_BG = self.rollout(sampler, builders, self.group_size, self.source.params(step), stats,
                                       group_ids=groups if self.seed_groups else None)
        return Batch(step, samples, trajectories_BG, [version] * len(groups), context, stats, groups=groups)

    def _version_for(self, step: int) -> int:
        return max(step - self.k, self._first)

    def _work(self) -> None:
        try:
            while True:
                with self._cond:
                    step = self._next
                    if self.end_step is not None and step >= self.end_step:
                        return
                    version = self._version_for(step)
                    self._cond.wait_for(lambda v=version: self._closed or (not self._paused and self._latest >= v))
                    if self._closed:
                        return
                    sampler, context = self._published[version]
                    self._busy = True
                try:
                    batch = self._produce(step, version, sampler, context)
                finally:
                    with self._cond:
                        self._busy = False
                        self._cond.notify_all()
                with self._cond:
                    self._ready[step] = batch
                    self._next = step + 1
                    self._cond.notify_all()
        except BaseException as e:  # noqa: BLE001 -- handed to the loop by next_batch / paused: never a silent hang
            with self._cond:
                self._error = e
                self._cond.notify_all()

    def _wait(self, done: Callable[[], bool], what: str) -> None:
        """Wait (holding the condition) until done(); the thread's error or death ends it too."""
        deadline = time.monotonic() + self.wait_timeout_s
        while not done():
            if self._error is not None:
                raise RuntimeError(f"rollout pipeline failed while waiting for {what}") from self._error
            if self._thread is not None and not self._thread.is_alive():
                raise RuntimeError(f"rollout pipeline thread ended while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"rollout pipeline: no {what} after {self.wait_timeout_s:.0f} s")
            self._cond.wait(timeout=1.0)

    def _take(self, step: int) -> Batch:
        with self._cond:
            self._wait(lambda: step in self._ready, f"step {step}'s batch")
            batch = self._ready.pop(step)
            self._cond.notify_all()
        return batch

    def _refresh_stale(self, batch: Batch, step: int, version: int, sampler: Sampler, context: dict) -> Batch:
        """Groups more than k versions old are dropped and sampled again with the current weights."""
        stale = [b for b, v in enumerate(batch.versions_B) if step - v > self.k]
        if not stale:
            return batch
        groups = batch.groups if batch.groups is not None else range(len(batch.samples))
        builders = self.source.builders([batch.samples[groups[b]] for b in stale], batch.context)
        fresh = self.rollout(sampler, builders, self.group_size, self.source.params(step), batch.stats,
                             group_ids=[groups[b] for b in stale] if self.seed_groups else None)
        trajectories_BG, versions_B = list(batch.trajectories_BG), list(batch.versions_B)
        for b, trajs in zip(stale, fresh):
            trajectories_BG[b], versions_B[b] = trajs, version
        return replace(batch, trajectories_BG=trajectories_BG, versions_B=versions_B, resampled=len(stale))


def staleness_metrics(batch: Batch, step: int, wait_s: float) -> dict[str, float]:
    """How old the trained groups are (in optimizer steps), and how many were too old."""
    ages = [step - v for v in batch.versions_B] or [0]
    return {"async/staleness_mean": sum(ages) / len(ages), "async/staleness_max": float(max(ages)),
            "async/stale_dropped": float(batch.resampled), "async/wait_s": wait_s}


def importance_ratio_metrics(datums_D: Sequence[Any], train_logprobs_D: Sequence[Any], clip: float) -> dict[str, float]:
    """exp(trainer logprob - sampler logprob) over the tokens that carry an advantage: 1 on
    policy (up to sampler/trainer numerics), drifting with staleness. `share_clipped` = the share
    outside ppo's [1 - clip, 1 + clip] (what ppo would clip; importance_sampling clips nothing)."""
    import numpy as np

    ratios = []
    for d, lp in zip(datums_D, train_logprobs_D):
        mask = np.asarray(d.loss_fn_inputs["advantages"]) != 0
        q = np.asarray(d.loss_fn_inputs["logprobs"], dtype=np.float64)[mask]
        ratios.append(np.exp(np.asarray(lp, dtype=np.float64)[mask] - q))
    r = np.concatenate(ratios) if ratios else np.zeros(0)
    if r.size == 0:
        return {}
    return {"async/ratio_mean": float(r.mean()), "async/ratio_max": float(r.max()),
            "async/ratio_share_clipped": float(np.mean((r < 1 - clip) | (r > 1 + clip)))}
