"""An export's model card code run as written, in a fresh interpreter, and `geospot predict` asked
the same photo: the card tests compare their answers turn by turn."""

from __future__ import annotations

import ast
import io
import json
import os
import subprocess
import sys
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_card(code: str, cwd: Path) -> str:
    """The card code's stdout; it must exit 0 (offline, this checkout's geospot importable)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=300,
                          env=env, cwd=cwd)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def card_answers(stdout: str) -> list[str]:
    """Each `turn k: '<answer>'` line's answer, in order."""
    return [ast.literal_eval(line.split(": ", 1)[1]) for line in stdout.splitlines() if line.startswith("turn ")]


def predicted_answers(model: Path, photo: Path) -> list[str]:
    """`geospot predict model=<model> <photo> --json`'s answer text per turn."""
    from geospot.eval import cli

    buf = io.StringIO()
    with redirect_stdout(buf):
        assert cli.predict_main([f"model={model}", str(photo), "--json"]) == 0
    return json.loads(buf.getvalue().strip().splitlines()[-1])["turn_texts"]
