"""`resume` of a run folder whose start stopped before its first checkpoint (train/resume.py,
runs/folder.py): nothing there to resume or lose."""

import io
import shutil

import pytest

from geospot.config import ConfigError
from geospot.runs.checkpoint import latest_checkpoint
from geospot.runs.folder import read_config, write_config
from geospot.train.sft import train
from tests.train.test_run_folder import MODEL, sft_cfg


def test_resume_of_a_start_that_never_saved_starts_it_over(tmp_path, capsys):
    """A start stopped before its first checkpoint (killed, preempted: a scheduler re-ran `resume` into refusals
    for ever): nothing to resume or lose, so it starts over; a folder holding anything else is refused, untouched."""
    log, other = tmp_path / "run", tmp_path / "other"
    for d in (log, other):
        d.mkdir()
        write_config(d, "sft", sft_cfg(d, model_name="Qwen/Qwen2.5-VL-3B-Instruct"))
    train(sft_cfg(log), stderr=io.StringIO())
    assert "holds a start that stopped before its first checkpoint: starting it over" in capsys.readouterr().err
    assert latest_checkpoint(log).name == "2" and read_config(log)["config"]["model_name"] == MODEL["model_name"]
    # never wiped: another kind's start, a finished run whose checkpoints were deleted, a run evaluated since
    from geospot.runs.folder import prepare_log_dir
    from geospot.runs.store import RunStore

    write_config(other, "rl", sft_cfg(other))
    assert prepare_log_dir(other, "resume", kind="sft") == (other, True)  # (check_resume: "is an RL run")
    write_config(other, "sft", sft_cfg(other))
    writer = RunStore(other)
    writer.set_status("done")
    writer.close()
    assert prepare_log_dir(other, "resume", kind="sft") == (other, True)
    for f in other.iterdir():  # the store gone again: an eval folder alone says the run saved once
        if f.name != "config.json":
            shutil.rmtree(f) if f.is_dir() else f.unlink()
    (other / "eval").mkdir()
    assert prepare_log_dir(other, "resume", kind="sft") == (other, True) and (other / "eval").is_dir()
    (other / "eval").rmdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"holds no checkpoint .* nothing to resume; pass "
                                          r"behavior_if_log_dir_exists=delete"):
        train(sft_cfg(other), stderr=io.StringIO())
    assert sorted(p.name for p in other.iterdir()) == ["config.json", "notes.txt"]  # nothing written or removed


def test_resume_without_the_runs_config_is_refused(tmp_path):
    """Checkpoints but no config.json (or a broken one): the keys it trained with are unknown, and a
    resume trained on with the command's defaults (lr, batch size) without a word."""
    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    saved = (log / "config.json").read_text()
    (log / "config.json").unlink()
    with pytest.raises(ConfigError, match=r"has checkpoints but no config.json, so what it trained with is unknown"):
        train(sft_cfg(log, max_steps=3), stderr=io.StringIO())
    (log / "config.json").write_text(saved[: len(saved) // 2])  # cut short
    with pytest.raises(ConfigError, match=r"config.json is not valid JSON \(.*\); restore it"):
        train(sft_cfg(log, max_steps=3), stderr=io.StringIO())
    assert latest_checkpoint(log).name == "2"  # nothing trained


def test_a_hand_edited_value_of_the_wrong_kind_is_named(tmp_path):
    """config.json edited by hand ("four" for batch_size): the file, the key and its kind, not a TypeError from
    deep in the loop; an int where a float is, and a list where a tuple is, are what JSON writes."""
    import json

    from geospot.train.resume import resume_config

    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    record = json.loads((log / "config.json").read_text())
    record["config"].update(learning_rate=1, batch_size="four")
    (log / "config.json").write_text(json.dumps(record))
    only = {"log_path", "behavior_if_log_dir_exists"}
    with pytest.raises(ConfigError, match=r"config.json: batch_size='four' is not an int \(this key's default is 32\)"):
        resume_config(sft_cfg(log), only, "sft")
    record["config"]["batch_size"] = 2
    (log / "config.json").write_text(json.dumps(record))
    assert resume_config(sft_cfg(log), only, "sft")[0].learning_rate == 1


def test_a_read_only_run_folder_is_said_before_the_model_loads(tmp_path, monkeypatch):
    """A run folder on a read-only mount: resume failed writing config.json after the model had loaded, and
    eval of it after its progress bar; both now say so first (eval names out=)."""
    import os

    from geospot.eval import cli

    log = tmp_path / "run"
    train(sft_cfg(log), stderr=io.StringIO())
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p).startswith(str(log)) and mode == os.W_OK
                        else real(p, mode))
    with pytest.raises(ConfigError, match=r"log_path='.*run' is read-only to you; make it writable, or start a new "
                                          r"run from its weights with load_checkpoint_path="):
        train(sft_cfg(log, max_steps=3), stderr=io.StringIO())
    with pytest.raises(ConfigError, match=r"run/eval/.* cannot be written \(.*run is read-only to you\); pass out="):
        cli.run_eval(cli.EvalConfig(model=str(log), data="synthetic:n=16,size=28,seed=0", n=2))
