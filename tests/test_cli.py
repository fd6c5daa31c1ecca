import subprocess
import sys

from geospot.cli import COMMANDS, main


def test_help_lists_commands(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in COMMANDS:
        assert name in out


def test_unknown_command_suggests(capsys):
    assert main(["scor"]) == 2
    assert "did you mean `geospot score`" in capsys.readouterr().err.lower()


def test_help_of_a_command_an_upper_case_one_and_a_terminal_that_is_not_utf8(capsys):
    assert main(["help", "sft"]) == 0 and "Keys (key=value)" in capsys.readouterr().out  # `geospot help sft`
    assert main(["SFT"]) == 2 and "did you mean `geospot sft`" in capsys.readouterr().err.lower()
    env = {**__import__("os").environ, "PYTHONIOENCODING": "latin-1"}  # (an em dash in the help: UnicodeEncodeError)
    out = subprocess.run([sys.executable, "-m", "geospot", "sft", "--help"], capture_output=True, env=env)
    assert out.returncode == 0 and b"Traceback" not in out.stderr and b"\\u2014" in out.stdout


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "geospot", "--help"], capture_output=True, text=True, check=True)
    assert "usage: geospot" in out.stdout


def test_every_option_of_the_argparse_commands_says_what_it_does(monkeypatch):
    """`geospot model tiny --help`, `data inspect --help`, … : no option listed bare (--seed, --size
    and --workers once were)."""
    import argparse

    import pytest

    bare, add = [], argparse._ActionsContainer.add_argument

    def recording(self, *args, **kwargs):
        action = add(self, *args, **kwargs)
        if not action.help and not isinstance(action, argparse._SubParsersAction):
            bare.append((getattr(self, "prog", "?"), action.dest))
        return action

    monkeypatch.setattr(argparse._ActionsContainer, "add_argument", recording)
    for argv in (["model", "tiny"], ["data", "inspect"], ["data", "pack"], ["score"], ["dashboard"], ["demo"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
    assert bare == []


def test_the_flag_commands_answer_a_key_value_with_the_flag_to_type(capsys):
    """score / dashboard / demo / data / model take --flags; `pred=x.csv`, as the training commands are
    typed, said argparse's 'required: --pred' or 'unrecognized arguments'."""
    import pytest

    for argv, said in ((["score", "pred=a.csv", "truth=b.csv"], "pred=a.csv: this command takes --pred a.csv"),
                       (["dashboard", "runs=DIR"], "runs=DIR: this command takes --runs DIR"),
                       (["demo", "preset=quick"], "preset=quick: this command takes --preset quick"),
                       (["data", "inspect", "synthetic:n=3", "split=val"], "split=val: this command takes --split val"),
                       (["model", "tiny", "family=qwen3_vl"], "family=qwen3_vl: this command takes --family")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and said in capsys.readouterr().err


def test_a_reader_that_leaves_early_gets_no_traceback():
    """`geospot help | head -1`: the pipe closed before the help was written raised BrokenPipeError
    with a traceback from `geospot help` (1 run in 3 in a walk); a command's own --help said nothing."""
    import subprocess
    import sys

    for argv in (["help"], ["rl", "--help"]):
        proc = subprocess.Popen([sys.executable, "-m", "geospot", *argv], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        proc.stdout.close()  # the reader is gone before a word is written
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 0 and err == "", (argv, err)
