"""Every benchmark's JSON line is strict JSON (a NaN / inf is null, through geospot.jsonutil's
finite_json), and what reads those lines back (rl_vs_sft / envs --merge, run_all's results.json)
works on the nulls. Hand-made results; nothing is trained."""

from __future__ import annotations

import json
import math
import re

from bench_scripts import BENCH, load, strict_loads

from geospot.jsonutil import finite_json


def test_every_benchmark_prints_its_json_line_through_finite_json():
    loose = re.compile(r"print\(\s*json\.dumps\((?!\s*finite_json\()")
    bad = [f"{p.name}: {m.group(0)!r}" for p in sorted(BENCH.glob("*.py")) for m in loose.finditer(p.read_text())]
    assert not bad, bad


def test_rl_vs_sft_summary_survives_strict_json():
    rl = load("rl_vs_sft")
    grpo = {"median_km": rl.summarise([100.0, 120.0]), "geoscore": rl.summarise([2.0, 3.0])}
    sft = {"median_km": rl.summarise([math.inf, math.inf]), "geoscore": rl.summarise([0.0, 0.0])}
    back = rl.restore_summary(strict_loads(json.dumps(finite_json({"grpo": grpo, "sft": sft}))))
    km = back["sft"]["median_km"]
    assert km["mean"] == km["max"] == km["min"] == math.inf and km["seeds"] == [math.inf] * 2
    assert math.isnan(km["std"])
    for k in ("median_km", "geoscore"):  # the verdict on the read-back numbers is the one on the originals
        before, after = rl.verdict(grpo[k], sft[k], k), rl.verdict(back["grpo"][k], back["sft"][k], k)
        assert finite_json(after) == finite_json(before)
    assert rl.verdict(back["grpo"]["median_km"], km, "median_km")["beats_beyond_spread"]


def test_envs_merge_reads_strict_lines(tmp_path, capsys):
    envs = load("envs")

    def modes(geo, km):
        row = {"geoscore": envs.summarise(geo), "median_km": envs.summarise(km)}
        return {"greedy": row, "sampled": row}

    common = {"data": "d", "seeds": [0, 1], "eval_images": 4, "budget_s": 1.0, "clock": "cpu", "warm_start": {},
              "total_wall_s": 1.0}
    single = {**common, "summary": {"single": modes([1.0, 2.0], [math.inf, math.inf])}, "runs": {"single": {}}}
    geohash = {**common, "summary": {"geohash": modes([3.0, 4.0], [20.0, 30.0])}, "runs": {"geohash": {}}}
    paths = []
    for i, line in enumerate((single, geohash)):
        paths.append(tmp_path / f"{i}.json")
        paths[-1].write_text(json.dumps(finite_json(line)) + "\n")
    assert "null" in paths[0].read_text()
    assert envs.main(["--merge", *map(str, paths)]) == 0
    merged = strict_loads(capsys.readouterr().out.strip().splitlines()[-1])
    v = merged["verdicts_vs_single"]["geohash"]["greedy"]
    assert v["median_km"]["beats_beyond_spread"] is True  # every geohash seed parsed; no single seed did (inf km)
    assert v["geoscore"]["beats_beyond_spread"] is True
    assert merged["summary"]["single"]["greedy"]["median_km"]["mean"] is None  # inf


def test_run_all_writes_strict_results(tmp_path, monkeypatch, capsys):
    run_all = load("run_all")
    monkeypatch.setattr(run_all, "run_one", lambda name, timeout: {"ratio": math.nan, "best": math.inf, "wall_s": 1.0})
    out = tmp_path / "results.json"
    assert run_all.main(["--out", str(out), "--only", "geo"]) == 0
    doc = strict_loads(out.read_text())
    assert doc["results"]["geo"]["ratio"] is None and doc["results"]["geo"]["best"] is None
    strict_loads(capsys.readouterr().out.strip().splitlines()[-1])
