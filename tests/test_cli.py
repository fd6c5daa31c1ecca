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


def test_console_entry_point_runs():
    out = subprocess.run([sys.executable, "-m", "geospot", "--help"], capture_output=True, text=True, check=True)
    assert "usage: geospot" in out.stdout
