"""benchmarks/async_rl.py without its training: a --warm that cannot be the start is one sentence
and exit 2 before anything runs, and a quality run too short for a step time reports null and
why, in a strict JSON line (the loop and the timing arms replaced by hand-made metrics)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from bench_scripts import load, strict_loads

bench = load("async_rl")


def fake_run(folder: Path, model: str = bench.MODEL) -> Path:
    (folder / "checkpoints" / "400").mkdir(parents=True)
    (folder / "checkpoints" / "400" / "state.json").write_text("{}")
    (folder / "config.json").write_text(json.dumps({"kind": "sft", "config": {"model_name": model}}))
    return folder


def test_warm_problem(tmp_path):
    assert bench.warm_problem(str(tmp_path / "missing")) == "no such folder"
    assert "holds no checkpoint" in bench.warm_problem(str(tmp_path))
    assert bench.warm_problem(str(fake_run(tmp_path / "run"))) is None
    assert bench.warm_problem(str(tmp_path / "run" / "checkpoints" / "400")) is None  # a checkpoint folder
    assert "not tiny:qwen2_5_vl:tiny" in bench.warm_problem(str(fake_run(tmp_path / "other", "tiny:qwen3_vl:tiny")))


@pytest.mark.parametrize("warm", ["missing", "empty"])
def test_a_bad_warm_is_one_sentence_before_anything_runs(warm, tmp_path, monkeypatch, capsys):
    (tmp_path / "empty").mkdir()
    monkeypatch.setattr(bench, "timing_arm", lambda *a: pytest.fail("ran before checking --warm"))
    monkeypatch.setattr(sys, "argv", ["async_rl.py", "--warm", str(tmp_path / warm)])
    with pytest.raises(SystemExit) as e:
        bench.main()
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert "--warm must be an SFT run folder" in err and "leave --warm out" in err and "trains one here" in err


def test_steps_below_three_is_a_usage_error(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["async_rl.py", "--steps", "2"])
    with pytest.raises(SystemExit) as e:
        bench.main()
    assert e.value.code == 2


@pytest.mark.parametrize("steps", [1, 2])
def test_short_quality_run_reports_no_step_time(steps, tmp_path, monkeypatch, capsys):
    import geospot.train.rl as rl

    def run(cfg):  # the rows the loop logs: eval at 0, one row per step, the final eval
        rows = [{"step": 0, "eval/geoscore": 10.0}]
        rows += [{"step": s, "time": 100.0 + s, "reward_mean": 0.1 * s} for s in range(1, steps + 1)]
        log = Path(cfg.log_path)
        log.mkdir(parents=True)
        (log / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return SimpleNamespace(metrics={"eval/geoscore": 20.0, "eval/median_km": float("inf")})

    timing = {"k": 0, "split": 0.55, "steps": 3, "wall_per_step_s": 1.0}
    monkeypatch.setattr(rl, "run", run)
    monkeypatch.setattr(bench, "timing_arm", lambda k, *a: {**timing, "k": k})
    monkeypatch.setattr(sys, "argv", ["async_rl.py", "--warm", str(fake_run(tmp_path / "warm")),
                                      "--quality-steps", str(steps), "--seeds", "0"])
    bench.main()
    out = capsys.readouterr()
    line = strict_loads(out.out.strip().splitlines()[-1])
    local = line["local_engine_one_device"]
    assert local["speedup_k1"] is None and "--quality-steps >= 3" in local["note"]
    arms = line["quality"]["arms"]
    assert [a["local_wall_per_step_s"] for a in arms] == [None, None]
    assert [a["median_km"] for a in arms] == [None, None]  # inf: at least half the answers unparsed
    assert line["quality"]["geoscore_k1"] == 20.0
