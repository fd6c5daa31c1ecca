"""train/command.py: what a training command says when it is stopped."""

from dataclasses import dataclass, replace

import pytest

from geospot.config import option
from geospot.train.command import STOPPED, TERMINATED, Terminated, run_command, stopped_line


def test_a_stopped_run_says_where_it_stands(tmp_path):
    assert stopped_line("sft", "") == "geospot sft: stopped (Ctrl-C) before training began; nothing was kept"
    run = tmp_path / "run"
    run.mkdir()
    assert "before its first checkpoint" in stopped_line("rl", str(run))
    (run / "checkpoints" / "6").mkdir(parents=True)
    (run / "checkpoints" / "6" / "state.json").write_text('{"step": 6}')
    line = stopped_line("rl", str(run))
    assert line == (f"geospot rl: stopped (Ctrl-C); the last checkpoint is step 6 in {run}; resume with: "
                    f"geospot rl log_path={run.resolve()} behavior_if_log_dir_exists=resume")
    assert stopped_line("sft", "", "SIGTERM").startswith("geospot sft: stopped (SIGTERM) before training began")


@dataclass(frozen=True)
class _Keys:
    log_path: str = option("", "run folder")
    behavior_if_log_dir_exists: str = option("delete", "resume / delete / raise")
    steps: int = option(1, "steps")


class _Done:
    def done_line(self) -> str:
        return "geospot toy: done"


def _command(raise_in_train: BaseException | None, argv: list[str], seen: list) -> int:
    def prepare(cfg, given, resumed):
        seen.append((cfg.steps, sorted(given), sorted(resumed)))
        return replace(cfg, log_path=cfg.log_path or "named-by-prepare")

    def train(cfg):
        if raise_in_train is not None:
            raise raise_in_train
        return _Done()

    return run_command("toy", _Keys, "geospot toy — a test", argv, prepare, train)


def test_a_command_answers_help_bad_keys_a_stop_and_done(capsys):
    """Exit codes as a shell reads them: 0 done (the done line said), 2 a wrong key (one sentence,
    no traceback), 130 Ctrl-C, 143 SIGTERM (each with the stopped line naming the folder prepare chose)."""
    seen: list = []
    assert _command(None, ["--help"], seen) == 0 and "geospot toy — a test" in capsys.readouterr().out
    assert seen == []  # help parses nothing
    assert _command(None, ["steps=3"], seen) == 0
    assert seen == [(3, ["steps"], [])] and "geospot toy: done" in capsys.readouterr().err
    assert _command(None, ["stepz=3"], seen) == 2
    err = capsys.readouterr().err
    assert err.startswith("geospot toy: ") and "stepz" in err and "Traceback" not in err
    assert _command(KeyboardInterrupt(), [], seen) == STOPPED
    assert capsys.readouterr().err.strip() == "geospot toy: stopped (Ctrl-C) before training began; nothing was kept"
    assert _command(Terminated(), ["log_path=elsewhere"], seen) == TERMINATED
    assert "geospot toy: stopped (SIGTERM)" in capsys.readouterr().err
    with pytest.raises(ValueError, match="boom"):  # anything else is the caller's traceback
        _command(ValueError("boom"), [], seen)


def test_a_quoted_home_folder_is_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    seen: list = []

    def prepare(cfg, given, resumed):
        seen.append(cfg.log_path)
        return cfg

    run_command("toy", _Keys, "toy", ["log_path=~/runs/x"], prepare, lambda cfg: _Done())
    assert seen == [str(tmp_path / "runs" / "x")]  # not a folder named ~ under the current one


def test_resuming_a_folder_that_holds_no_run_says_so(tmp_path):
    """Only the folder typed, and no run there (a mistyped path, or one stopped before its first
    step): one sentence, not a new run of every default (its hub model unreachable here)."""
    from geospot.config import ConfigError
    from geospot.train.resume import resume_config
    from geospot.train.sft import SFTConfig

    only_folder = {"log_path", "behavior_if_log_dir_exists"}
    gone = SFTConfig(log_path=str(tmp_path / "runs" / "int3"), behavior_if_log_dir_exists="resume")
    with pytest.raises(ConfigError, match=r"int3' is no folder, so there is no run to resume; check the path"):
        resume_config(gone, only_folder, "sft")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"empty' holds no config.json, so there is no run to resume"):
        resume_config(replace(gone, log_path=str(tmp_path / "empty")), only_folder, "sft")
    # the keys of a new run typed too: resume-or-start, a new run here
    typed = replace(gone, model_name="tiny:qwen2_5_vl")
    assert resume_config(typed, only_folder | {"model_name"}, "sft") == (typed, set())


def test_a_run_started_under_nohup_keeps_ignoring_the_hangup():
    """`nohup geospot rl …`: SIGHUP is ignored so the run outlives its terminal; the handler that saves and
    stops on a closed terminal is for runs that did not ask that."""
    import signal

    from geospot.train.command import stop_signals

    before = signal.signal(signal.SIGHUP, signal.SIG_IGN)
    try:
        restore = stop_signals("toy")
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN and callable(signal.getsignal(signal.SIGTERM))
        restore()
        signal.signal(signal.SIGHUP, signal.SIG_DFL)
        restore = stop_signals("toy")
        assert callable(signal.getsignal(signal.SIGHUP))  # a terminal's run: saved and stopped as on SIGTERM
        restore()
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
    finally:
        signal.signal(signal.SIGHUP, before)
