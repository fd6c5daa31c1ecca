"""Async GRPO's rollout pipeline against a scripted engine whose answers name the weights version
they were sampled with: which version each rollout used, the order of sample and train calls for
k = 0, 1, 2, stale groups dropped / counted / resampled, and a resume that repeats the run."""

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from geospot.data.types import Sample
from geospot.engines.types import SampleParams
from geospot.envs.rewards import KernelReward
from geospot.envs.single_turn import SingleTurnGroupBuilder
from geospot.prompts import format_answer
from geospot.rl.pipeline import (
    BatchSource,
    RolloutPipeline,
    importance_ratio_metrics,
    sampler_factory,
    staleness_metrics,
)
from geospot.rl.testing import ScriptedEngine, VersionedScriptedEngine

B, G = 2, 3


def answer_version(prompt, i, version):
    return format_answer(float(version), float(i))  # latitude = the weights version, longitude = the sample index


class OverlapEngine(VersionedScriptedEngine):
    """train_step for step s waits until batch s + k has been sampled (at most 5 s), and logs the train
    AFTER that wait: the call order is then fixed, and a pipeline that did not sample ahead while
    training would leave `waited_out` set instead of hanging the test."""

    def __init__(self, k, steps):
        super().__init__(answer_version)
        self.k, self.steps, self.cond, self.waited_out = k, steps, threading.Condition(), []

    def _sample_at(self, version, prompts, n):
        with self.cond:
            out = super()._sample_at(version, prompts, n)
            self.cond.notify_all()
        return out

    def train_step(self, datums, loss_fn, adam, loss_config=None):
        want = min(self.version + self.k, self.steps - 1) + 1  # batches sampled before step s may train
        with self.cond:
            if self.k and not self.cond.wait_for(lambda: self.sampled() >= want, timeout=5):
                self.waited_out.append(self.version)
            return super().train_step(datums, loss_fn, adam, loss_config)

    def sampled(self):
        return sum(e == "sample" for e, _ in self.events)


def source(log=None):
    def samples(step):
        if log is not None:
            log.append(step)
        return [Sample(id=f"{step}-{b}", image=Image.new("RGB", (8, 8)), lat=0.0, lon=0.0) for b in range(B)]

    def builders(samples, ctx):
        return [SingleTurnGroupBuilder(s, ENGINE_RENDERER, KernelReward(ctx["tau_km"])) for s in samples]

    return BatchSource(samples=samples, builders=builders,
                       params=lambda step: SampleParams(max_tokens=32, seed=step))


ENGINE_RENDERER = ScriptedEngine(lambda p, i: "").renderer


def versions_of(batch):
    """The version each rollout answered with (its latitude), per group."""
    return [[int(t.transitions[-1].metrics["lat"]) for t in group] for group in batch.trajectories_BG]


def run(engine, k, steps, start=0, inflight=(), stop_after=None, datums=True):
    """The loop as geospot/train/rl.py runs it; -> (batches, metrics, in-flight state at the stop)."""
    pipe = RolloutPipeline(source(), G, k, end_step=steps)
    new_sampler = sampler_factory(engine, k)
    ctx = lambda v: {"tau_km": 1000.0 + v}
    batches, metrics, state = [], [], None
    with pipe:
        pipe.start(start, new_sampler(), ctx(start), pipe.restore(inflight))
        for step in range(start, steps):
            batch, m = pipe.next_batch(step)
            batches.append(batch)
            metrics.append(m)
            engine.train_step([], "importance_sampling", None)
            if stop_after is not None and step + 1 == stop_after:  # a checkpoint (before publishing: the
                with pipe.paused():                                  # in-flight set is then fixed)
                    state = pipe.inflight()
                break
            pipe.publish(step + 1, new_sampler(), ctx(step + 1))
    return batches, metrics, state


@pytest.mark.parametrize("k, order", [
    (0, "S0 T0 S1 T1 S2 T2 S3 T3"),
    (1, "S0 S0 T0 S1 T1 S2 T2 T3"),  # step s+1 sampled (with s's weights) while step s trains
    (2, "S0 S0 S0 T0 S1 T1 T2 T3"),  # two steps ahead; nothing is drawn past the last step
])
def test_order_of_sample_and_train_calls_and_the_version_of_every_rollout(k, order):
    eng = OverlapEngine(k, steps=4)
    batches, metrics, _ = run(eng, k, steps=4)
    assert " ".join(f"{e[0].upper()}{v}" for e, v in eng.events) == order
    assert eng.waited_out == [], "the pipeline did not sample ahead while a step trained"
    expected = [max(0, s - k) for s in range(4)]
    assert [b.versions_B for b in batches] == [[v] * B for v in expected]
    assert [versions_of(b) for b in batches] == [[[v] * G] * B for v in expected]  # what each rollout really used
    assert [m["async/staleness_max"] for m in metrics] == [float(s - v) for s, v in enumerate(expected)]
    assert all(m["async/stale_dropped"] == 0 for m in metrics)
    # each batch's builders got the context published with its version (the tau of that moment)
    assert [b.context["tau_km"] for b in batches] == [1000.0 + v for v in expected]


def test_data_is_drawn_once_per_step_in_step_order():
    log = []
    pipe = RolloutPipeline(source(log), G, 2, end_step=5)
    eng = VersionedScriptedEngine(answer_version)
    with pipe:
        pipe.start(0, eng.snapshot_sampler(), {"tau_km": 1.0})
        for step in range(5):
            batch, _ = pipe.next_batch(step)
            assert [s.id for s in batch.samples] == [f"{step}-{b}" for b in range(B)]
            eng.train_step([], "importance_sampling", None)
            pipe.publish(step + 1, eng.snapshot_sampler(), {"tau_km": 1.0})
    assert log == [0, 1, 2, 3, 4]


def test_stale_groups_are_dropped_counted_and_resampled_with_the_current_weights():
    # A k=2 run checkpointed after step 2 holds steps 3 and 4 sampled with versions 1 and 2; resumed
    # with k=1, step 3's groups (2 versions old) are too old: dropped, counted, sampled again at v3.
    # Step 4's (version 2) is then 2 versions old too when step 4 trains.
    _, _, state = run(OverlapEngine(2, steps=5), 2, steps=5, stop_after=3)
    assert [s["step"] for s in state] == [3, 4] and [s["versions_B"] for s in state] == [[1] * B, [2] * B]
    resumed = VersionedScriptedEngine(answer_version)
    resumed.version = 3
    batches, metrics, _ = run(resumed, 1, steps=5, start=3, inflight=state)
    assert [m["async/stale_dropped"] for m in metrics] == [B, B]
    assert [b.versions_B for b in batches] == [[3] * B, [4] * B]
    assert [versions_of(b) for b in batches] == [[[3] * G] * B, [[4] * G] * B]  # the resampled rollouts used them
    assert [s.id for s in batches[0].samples] == ["3-0", "3-1"]  # same images, fresh rollouts
    assert [m["async/staleness_max"] for m in metrics] == [0.0, 0.0]
    assert resumed.events == [("sample", 3), ("train", 3), ("sample", 4), ("train", 4)]
    # kept within k: the same state resumed with k=2 trains it as it is, nothing resampled
    again = VersionedScriptedEngine(answer_version)
    again.version = 3
    batches, metrics, _ = run(again, 2, steps=5, start=3, inflight=state)
    assert [m["async/stale_dropped"] for m in metrics] == [0, 0] and [b.versions_B[0] for b in batches] == [1, 2]


@pytest.mark.parametrize("k", [0, 1])
def test_resume_from_the_in_flight_state_repeats_the_uninterrupted_run(k):
    full, _, _ = run(VersionedScriptedEngine(answer_version), k, steps=6)
    first, _, state = run(OverlapEngine(k, steps=6), k, steps=6, stop_after=3)  # step 3 sampled before the stop
    buf = io.BytesIO()
    torch.save({"inflight": state}, buf)  # what save_checkpoint(extra=...) writes
    state = torch.load(io.BytesIO(buf.getvalue()), weights_only=False)["inflight"]
    assert [s["step"] for s in state] == list(range(3, 3 + k))  # k = 1: step 3, sampled with version 2
    eng = VersionedScriptedEngine(answer_version)
    eng.version = 3  # the checkpoint's weights
    rest, _, _ = run(eng, k, steps=6, start=3, inflight=state)
    key = lambda b: (b.step, [s.id for s in b.samples], b.versions_B, versions_of(b), b.context)
    assert [key(b) for b in first + rest] == [key(b) for b in full]


def test_in_flight_batches_must_continue_the_start_step():
    pipe = RolloutPipeline(source(), G, 1)
    batch = {"step": 5, "samples": [], "trajectories_BG": [], "versions_B": [], "context": {}}
    with pytest.raises(ValueError, match="do not continue step 3"):
        pipe.start(3, None, {}, pipe.restore([batch]))


def test_a_batch_sampled_ahead_by_one_process_is_cut_to_each_ranks_share_on_restore():
    """A 1-process async checkpoint resumed under torchrun (k = 0): every rank trained the whole saved
    batch (each group counted once per rank; the metrics then failed on mismatched lengths)."""
    from geospot.rl.rollouts import RolloutStats

    saved = {"step": 3, "samples": ["a", "b", "c", "d"], "trajectories_BG": [["ta"], ["tb"], ["tc"], ["td"]],
             "versions_B": [1, 2, 2, 3], "context": {}, "stats": RolloutStats(4.0, 400, 8), "groups": None}
    rank1 = RolloutPipeline(source(), G, 0, share=lambda n: range(1, n, 2))  # rank 1 of 2
    (batch,) = rank1.restore([saved])
    assert (batch.trajectories_BG, batch.versions_B, list(batch.groups)) == ([["tb"], ["td"]], [2, 3], [1, 3])
    assert (batch.stats.sample_s, batch.stats.sampled_tokens, batch.stats.turns) == (2.0, 200, 4)
    (whole,) = RolloutPipeline(source(), G, 0).restore([saved])  # one process: the batch as saved
    assert whole.trajectories_BG == saved["trajectories_BG"] and whole.groups is None


def test_a_failing_sampler_reaches_the_loop_instead_of_hanging_it():
    class Broken(VersionedScriptedEngine):
        def _sample_at(self, version, prompts, n):
            raise OSError("sampler down")

    eng = Broken(answer_version)
    with RolloutPipeline(source(), G, 1, end_step=3, wait_timeout_s=10) as pipe:
        pipe.start(0, eng.snapshot_sampler(), {"tau_km": 1.0})
        with pytest.raises(RuntimeError, match="failed while waiting for step 0") as e:
            pipe.next_batch(0)
    assert isinstance(e.value.__cause__, OSError)


def test_off_policy_samples_with_snapshots_that_keep_their_version():
    eng = VersionedScriptedEngine(answer_version)
    assert sampler_factory(eng, 0)() is eng  # k = 0 samples with the live engine, as before
    pinned = sampler_factory(eng, 1)()
    eng.train_step([], "importance_sampling", None)  # the live weights move on to version 1
    pinned.sample([], 1, None)
    eng.sample([], 1, None)
    assert eng.events == [("train", 0), ("sample", 0), ("sample", 1)]
    with pytest.raises(ValueError, match="must be >= 0"):
        RolloutPipeline(source(), G, -1)


def test_staleness_metrics_by_hand():
    from geospot.rl.pipeline import Batch

    batch = Batch(step=7, samples=[0, 0, 0], trajectories_BG=[], versions_B=[7, 6, 5], context={}, resampled=1)
    m = staleness_metrics(batch, 7, wait_s=0.25)
    assert m == {"async/staleness_mean": 1.0, "async/staleness_max": 2.0, "async/stale_dropped": 1.0,
                 "async/wait_s": 0.25}


def test_importance_ratio_metrics_by_hand():
    from geospot.engines.types import Datum, ModelInput

    # 4 positions; only the 2 with an advantage count. trainer - sampler = ln 1.5 and ln 0.5
    d = Datum(ModelInput.from_ints([1, 2, 3, 4]),
              {"target_tokens": np.array([2, 3, 4, 0]), "logprobs": np.array([0.0, -1.0, -2.0, -3.0], np.float32),
               "advantages": np.array([0.0, 0.5, 0.5, 0.0], np.float32)})
    train_lp = [np.array([9.0, -1.0 + np.log(1.5), -2.0 + np.log(0.5), 9.0])]
    m = importance_ratio_metrics([d], train_lp, clip=0.2)
    assert m["async/ratio_mean"] == pytest.approx(1.0, abs=1e-6)  # (1.5 + 0.5) / 2
    assert m["async/ratio_max"] == pytest.approx(1.5, abs=1e-6)
    assert m["async/ratio_share_clipped"] == 1.0  # both outside [0.8, 1.2]
    m = importance_ratio_metrics([d], [np.array([0.0, -1.0, -2.0 + np.log(1.1), 0.0])], clip=0.2)
    assert m["async/ratio_share_clipped"] == 0.0 and m["async/ratio_max"] == pytest.approx(1.1, abs=1e-6)
    assert importance_ratio_metrics([], [], clip=0.2) == {}
