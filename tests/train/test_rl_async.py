"""Async GRPO (max_steps_off_policy=1) end to end on a tiny offline model: the staleness and
importance-ratio metrics, the weights version in the dashboard's rollout records, and a resume
from a checkpoint holding an in-flight batch that ends exactly as the uninterrupted run."""

import shutil

from resume_helpers import assert_same_final_tensors
from test_rl_run import DATA, sft_run  # noqa: F401  (the module's SFT warm start, a fixture)

from geospot.runs.folder import read_jsonl
from geospot.runs.store import RunReader
from geospot.train.rl import RLConfig, run


def _cfg(sft, log, **kw):
    kw = {"max_steps_off_policy": 1, **kw}
    return RLConfig(load_checkpoint_path=str(sft), data=DATA, env_type="single", max_steps=4, save_every=2,
                    batch_size=4, group_size=4, learning_rate=1e-4, eval_every=0, max_tokens=20, reward="kernel",
                    tau_start_km=10000, seed=3, log_path=str(log), **kw)


def test_async_run_metrics_records_and_resume_from_in_flight_batch(sft_run, tmp_path):  # noqa: F811
    full = tmp_path / "full"
    run(_cfg(sft_run, full))
    rows = [r for r in read_jsonl(full / "metrics.jsonl") if "reward_mean" in r]
    assert [r["async/staleness_max"] for r in rows] == [0.0, 1.0, 1.0, 1.0]  # step s samples with s-1's weights
    assert sum(r["datums"] for r in rows) > 0, "no step trained: the resume check below would not test training"
    trained = [r for r in rows if r["datums"] > 0]
    assert all(r["async/ratio_mean"] > 0 and 0 <= r["async/ratio_share_clipped"] <= 1 for r in trained)
    assert all(r["async/stale_dropped"] == 0 for r in rows)
    reader = RunReader(full)
    versions = [{ro["weights_version"] for im in reader.images(step) for ro in im["rollouts"]} for step in (1, 2, 3, 4)]
    assert versions == [{0}, {0}, {1}, {2}]
    assert (full / "checkpoints" / "2" / "extra.pt").exists()  # step 3's batch, sampled before the checkpoint

    # Resume from checkpoint 2 as if the run had died in step 3: the in-flight batch (version 1) is
    # trained, not resampled with version 2, so the run ends where the uninterrupted one did.
    resumed = tmp_path / "resumed"
    shutil.copytree(full, resumed)
    shutil.rmtree(resumed / "checkpoints" / "4")
    shutil.rmtree(resumed / "checkpoints" / "3", ignore_errors=True)
    run(_cfg(sft_run, resumed, behavior_if_log_dir_exists="resume"))
    assert_same_final_tensors(full, resumed, 4)
    key = lambda path: [(r["step"], r["reward_mean"], r["async/staleness_max"])
                        for r in read_jsonl(path / "metrics.jsonl") if "reward_mean" in r]
    assert key(resumed) == key(full)

    # Resumed with k = 0 instead: the checkpoint's in-flight batches (logged steps 3 and 4, sampled
    # with versions 1 and 2) are each a step older than the weights that train them, so their groups
    # are sampled again with those weights, and counted
    sync = tmp_path / "sync"
    shutil.copytree(full, sync)
    shutil.rmtree(sync / "checkpoints" / "4")
    shutil.rmtree(sync / "checkpoints" / "3", ignore_errors=True)
    run(_cfg(sft_run, sync, behavior_if_log_dir_exists="resume", max_steps_off_policy=0))
    rows = {r["step"]: r for r in read_jsonl(sync / "metrics.jsonl") if "reward_mean" in r}
    assert [rows[s]["async/stale_dropped"] for s in (3, 4)] == [4.0, 4.0]
    assert [rows[s]["async/staleness_max"] for s in (3, 4)] == [0.0, 0.0]

