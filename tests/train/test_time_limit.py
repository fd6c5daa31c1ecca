"""`max_seconds`: the RL and SFT loops stop on a clock, end as at max_steps (checkpoint with the
seconds spent), resume with the time left, and run their schedules over whichever limit is
further along. A fake clock (1 s per reading: `begin_step` + `end_step` = 1 s a step) makes
the step counts exact on any machine."""

import io
import itertools

import pytest
from resume_helpers import saved_tensors

from geospot.config import ConfigError
from geospot.runs.checkpoint import latest_checkpoint, read_checkpoint
from geospot.runs.folder import read_jsonl
from geospot.train.lifecycle import TimeBudget

DATA = "synthetic:n=64,size=28,seed=0"
MODEL = dict(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, device="cpu")


def fake_clock():
    """1 s later at every reading."""
    return itertools.count().__next__


def test_time_budget_hand_worked():
    b = TimeBudget(0.0, clock=fake_clock())
    b.begin_step()
    b.end_step()
    assert b.spent == 1.0 and not b.expired() and b.schedule_step(7, 100) == 7  # no limit: the step itself
    b = TimeBudget(60.0, spent=30.0)
    assert not b.expired()
    assert b.schedule_step(10, 100) == 50  # half the time spent: half-way through the schedule
    assert b.schedule_step(70, 100) == 70  # steps further along than time: the step
    b.spent = 60.0
    assert b.expired() and b.schedule_step(10, 100) == 99  # never past the last step


def rl_config(log, **kw):
    from geospot.train.rl import RLConfig

    base = dict(
        **MODEL,
        data=DATA,
        batch_size=2,
        group_size=2,
        max_tokens=12,
        eval_every=0,
        save_every=1000,
        log_images_every=0,
        tau_schedule="linear",
        tau_start_km=2000.0,
        tau_end_km=25.0,
        log_path=str(log),
        behavior_if_log_dir_exists="resume",
    )
    return RLConfig(**{**base, **kw})


def test_rl_time_limit_stops_checkpoints_and_resumes(tmp_path, capsys):
    from geospot.geo import make_tau_schedule
    from geospot.train.rl import run

    log = tmp_path / "rl"
    run(rl_config(log, max_steps=100, max_seconds=2.5), clock=fake_clock())
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "tau_km" in r]
    assert [r["step"] for r in rows] == [1, 2, 3]  # 1 s a step: 3 s >= 2.5 s after the third
    ckpt = latest_checkpoint(log)
    assert ckpt.name == "3" and read_checkpoint(ckpt).loop_state["train_seconds"] == 3.0
    # tau runs over the time budget: steps 0, 1, 2 start 0, 1, 2 s into 2.5 s = 0, 40, 80 % of max_steps
    linear = make_tau_schedule("linear", 2000.0, 25.0, 100)
    assert [r["tau_km"] for r in rows] == pytest.approx([linear.tau(0), linear.tau(40), linear.tau(80)])

    # resumed with the same limit: its time is spent, no step runs
    run(rl_config(log, max_steps=100, max_seconds=2.5), clock=fake_clock())
    assert latest_checkpoint(log).name == "3"
    # resumed with more time: it carries on from 3 s, three more steps
    run(rl_config(log, max_steps=100, max_seconds=5.5), clock=fake_clock())
    assert [r["step"] for r in read_jsonl(log / "metrics.jsonl") if "tau_km" in r] == [1, 2, 3, 4, 5, 6]
    assert latest_checkpoint(log).name == "6"

    # no limit: max_steps decides, tau by step
    log2 = tmp_path / "rl2"
    run(rl_config(log2, max_steps=2), clock=fake_clock())
    rows = [r for r in read_jsonl(log2 / "metrics.jsonl") if "tau_km" in r]
    assert [r["step"] for r in rows] == [1, 2] and latest_checkpoint(log2).name == "2"
    assert rows[1]["tau_km"] == pytest.approx(make_tau_schedule("linear", 2000.0, 25.0, 2).tau(1))


def sft_config(log, **kw):
    from geospot.train.sft import SFTConfig

    base = dict(
        **MODEL,
        data=DATA,
        eval_n=0,
        prompt_style="single",
        batch_size=2,
        learning_rate=1e-3,
        lr_schedule="linear",
        save_every=0,
        log_path=str(log),
        behavior_if_log_dir_exists="resume",
    )
    return SFTConfig(**{**base, **kw})


def test_sft_time_limit_and_load_checkpoint_path(tmp_path):
    from geospot.train.lr import learning_rate
    from geospot.train.sft import train

    log = tmp_path / "sft"
    result = train(sft_config(log, max_steps=10, max_seconds=2.5), stderr=io.StringIO(), clock=fake_clock())
    assert result.steps == 3 and latest_checkpoint(log).name == "3"
    assert read_checkpoint(latest_checkpoint(log)).loop_state["train_seconds"] == 3.0
    lrs = [r["lr"] for r in read_jsonl(log / "metrics.jsonl") if "lr" in r]
    assert lrs == pytest.approx([learning_rate(s, 10, 1e-3, "linear") for s in (0, 4, 8)])  # 0, 1, 2 s of 2.5 s
    result = train(sft_config(log, max_steps=10, max_seconds=4.5), stderr=io.StringIO(), clock=fake_clock())
    assert result.steps == 5 and latest_checkpoint(log).name == "5"

    # a fresh run from those weights (fresh optimizer, step 0): at lr ~0 its weights stay the checkpoint's
    def weights(run):  # the model's tensors, not the optimizer's or the RNG's
        return {
            k: v for k, v in saved_tensors(latest_checkpoint(run)).items() if "optimizer" not in k and "rng" not in k
        }

    start = weights(log)
    cont = tmp_path / "cont"
    result = train(
        sft_config(cont, max_steps=1, learning_rate=1e-12, load_checkpoint_path=str(log)), stderr=io.StringIO()
    )
    after = weights(cont)
    assert result.steps == 1 and start and after.keys() == start.keys()
    assert all((after[k].double() - start[k].double()).abs().max() < 1e-6 for k in start)
    # ... whereas the model's own weights are far from them (the check above can fail)
    plain = tmp_path / "plain"
    train(sft_config(plain, max_steps=1, learning_rate=1e-12), stderr=io.StringIO())
    assert any((weights(plain)[k].double() - start[k].double()).abs().max() > 1e-4 for k in start)

    with pytest.raises(ConfigError, match="load_checkpoint_path"):
        train(
            sft_config(tmp_path / "typo", max_steps=1, load_checkpoint_path=str(tmp_path / "nope")),
            stderr=io.StringIO(),
        )
    assert not (tmp_path / "typo").exists()  # a typo leaves no empty run folder behind
