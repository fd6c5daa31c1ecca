import io
import random

import numpy as np
import pytest
import torch

from geospot.config import ConfigError
from geospot.runs.checkpoint import rng_state, set_rng_state
from geospot.runs.folder import prepare_log_dir, read_config, read_jsonl, truncate_jsonl, write_config
from geospot.train.common import Progress, format_duration, seed_everything


def test_new_and_empty_dirs_are_fresh(tmp_path):
    p, resuming = prepare_log_dir(tmp_path / "a" / "b", "raise")
    assert p.is_dir() and not resuming
    p, resuming = prepare_log_dir(p, "raise")  # still empty
    assert not resuming


def test_existing_dir_raise_names_key(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"behavior_if_log_dir_exists=resume"):
        prepare_log_dir(tmp_path, "raise")


def test_existing_dir_resume_and_delete(tmp_path):
    (tmp_path / "x.txt").write_text("x")
    assert prepare_log_dir(tmp_path, "resume") == (tmp_path, True)
    assert (tmp_path / "x.txt").exists()
    assert prepare_log_dir(tmp_path, "delete") == (tmp_path, False)
    assert list(tmp_path.iterdir()) == []


def test_ask_never_prompts_without_terminal(tmp_path):
    (tmp_path / "x.txt").write_text("x")

    def no_prompt(_):
        raise AssertionError("prompted without a terminal")

    with pytest.raises(ConfigError, match="already holds a run"):
        prepare_log_dir(tmp_path, "ask", ask=no_prompt, isatty=lambda: False)
    # with a terminal, the answer decides
    assert prepare_log_dir(tmp_path, "ask", ask=lambda _: "r", isatty=lambda: True) == (tmp_path, True)
    with pytest.raises(ConfigError):
        prepare_log_dir(tmp_path, "ask", ask=lambda _: "q", isatty=lambda: True)


def test_log_path_that_is_a_file(tmp_path):
    f = tmp_path / "f"
    f.write_text("")
    with pytest.raises(ConfigError, match="log_path"):
        prepare_log_dir(f, "resume")


def test_config_json_roundtrip(tmp_path):
    write_config(tmp_path, "sft", {"lr": 1e-3, "n": np.int64(3), "t": (1, 2)})
    cfg = read_config(tmp_path)
    assert cfg["kind"] == "sft" and cfg["config"] == {"lr": 1e-3, "n": 3, "t": [1, 2]}


def test_rng_state_roundtrip():
    seed_everything(3)
    state = rng_state()
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == a


def test_progress_line_and_eta():
    out = io.StringIO()
    prog = Progress(total_steps=10, stream=out, every=5)
    prog.t0 -= 4.0  # pretend 4 s passed over 2 steps -> 2 s/step, 8 left -> 16 s
    text = prog.update(1, {"loss": 1.23456, "tok_per_s": 1234.5})
    assert text.startswith("step 2/10 | loss 1.235 | 1,234 tok/s | eta 00:1")
    assert out.getvalue() == ""  # not a terminal: prints every 5th step only
    prog.update(4, {"loss": 1.0})
    assert out.getvalue().startswith("step 5/10")
    assert format_duration(3725) == "1:02:05" and format_duration(float("nan")) == "--:--"


def test_a_time_limit_is_the_nearer_end_of_the_eta_and_its_step_prints_the_last_line():
    """max_seconds=12 with max_steps=100000 said `step 200/100000 ... eta 1:33:28` and stopped 0.5 s later
    without a last line; the ETA is now the nearer of the two ends, and the step the limit ends prints."""
    from geospot.train.lifecycle import TimeBudget

    now = [0.0]
    budget = TimeBudget(12.0, spent=10.0, clock=lambda: now[0])
    out = io.StringIO()
    prog = Progress(total_steps=100000, stream=out, every=1000, seconds_left=budget.seconds_left)
    prog.t0 -= 4.0  # 2 steps in 4 s: by steps, (100000 - 2) x 2 s left
    budget.begin_step()
    now[0] = 1.5  # this step has run 1.5 s of the 2 left
    assert prog.update(1, {"loss": 1.0}).endswith("eta 00:00") and out.getvalue() == ""  # (0.5 s)
    now[0] = 2.0  # the limit is reached inside this step: the loop says it is the last, and its line prints
    budget.end_step()
    assert budget.expired() and out.getvalue() == ""
    assert prog.update(2, {"loss": 1.0}, last=True).startswith("step 3/100000")
    assert out.getvalue().startswith("step 3/100000")
    assert TimeBudget(0.0).seconds_left() == float("inf")
    unlimited = Progress(10, stream=io.StringIO(), seconds_left=TimeBudget(0.0).seconds_left)  # no limit: by steps
    unlimited.t0 -= 4.0
    assert unlimited.line(1, {}).endswith("eta 00:16")


def test_jsonl_writer_truncates_on_resume(tmp_path):
    from geospot.runs.loggers import JsonlWriter

    w = JsonlWriter(tmp_path)
    for s in range(5):
        w.log_step(s, {"loss": float(s)})
    w.close()
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 5, "lo')  # torn line from a SIGKILL
    truncate_jsonl(tmp_path / "metrics.jsonl", 2)
    w = JsonlWriter(tmp_path)
    w.log_step(3, {"loss": 9.0})
    w.close()
    assert [(r["step"], r["loss"]) for r in read_jsonl(tmp_path / "metrics.jsonl")] == [
        (0, 0.0),
        (1, 1.0),
        (2, 2.0),
        (3, 9.0),
    ]
