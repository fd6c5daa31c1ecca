"""Fixtures shared by test folders (each folder's own conftest.py holds the rest)."""

from __future__ import annotations

import fcntl
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class ShortDemo:
    cfg: object          # the geospot.demo_recipe.DemoConfig it ran with
    rows: dict           # demo.run's result: {"stages": {stage: held-out metrics + verdict}, ...}
    out: str             # everything it printed
    folder: Path         # its run folder: sft/ and rl/ (what the dashboard shows)


@pytest.fixture(scope="session")
def short_demo(tmp_path_factory) -> ShortDemo:
    """ONE shortened `geospot demo` run (~2 min of CPU) for every test that needs one:
    tests/test_demo.py checks the learning in it, tests/dashboard/test_demo_screenshot.py
    photographs its dashboard. The quick preset, a little smaller: 250 SFT steps (150 left the
    format at 85 % parsed), 20 single-turn and 3 telescoping GRPO steps of 4 images x 8 rollouts,
    48 held-out images, 2 sampling seeds."""
    from dataclasses import replace

    from geospot import demo

    def run(folder: Path) -> ShortDemo:
        cfg = replace(demo.DemoConfig(), sft_steps=250, rl_single_steps=20, rl_steps=3, rl_batch_size=4, eval_n=48,
                      eval_sample_seeds=(5, 6), out=str(folder))
        lines: list[str] = []
        rows = demo.run(cfg, log=lambda *a: lines.append(" ".join(map(str, a))))
        return ShortDemo(cfg, rows, "\n".join(lines), folder)

    if "PYTEST_XDIST_WORKER" not in os.environ:  # one process: run it here
        return run(tmp_path_factory.mktemp("short_demo") / "demo")
    # pytest-xdist (scripts/test.sh runs 2 workers): the files that use it land on either worker and
    # the run is ~2 min of CPU, so the first worker to ask runs it and the others wait for its result
    shared = tmp_path_factory.getbasetemp().parent / "short_demo"
    shared.mkdir(exist_ok=True)
    with open(shared / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / "result.pickle"
        if not done.exists():
            d = run(shared / "demo")
            done.write_bytes(pickle.dumps((d.cfg, d.rows, d.out)))
        return ShortDemo(*pickle.loads(done.read_bytes()), shared / "demo")
