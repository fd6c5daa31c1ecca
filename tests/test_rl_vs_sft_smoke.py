"""benchmarks/rl_vs_sft.py: the verdict arithmetic on hand-worked numbers, and the whole
plumbing (cached warm start -> time-budgeted arms -> held-out eval -> one JSON line) at a
toy size. The numbers of a real run live in docs/rl_vs_sft.md."""

import importlib.util
import json
import os
from pathlib import Path

import pytest

from geospot.jsonutil import finite_json

os.environ.setdefault("HF_HUB_OFFLINE", "1")
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "rl_vs_sft.py"


def strict(constant):
    raise ValueError(f"not strict JSON: {constant}")


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("rl_vs_sft", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_summarise_and_verdict(bench):
    s = bench.summarise([1.0, 2.0, 3.0])
    assert s["mean"] == 2.0 and s["std"] == 1.0 and (s["min"], s["max"]) == (1.0, 3.0)
    grpo, sft = bench.summarise([10.0, 11.0, 12.0]), bench.summarise([7.0, 8.0, 9.0])
    v = bench.verdict(grpo, sft, "geoscore")
    assert v == {"gap": 3.0, "gap_over_std": 3.0, "beats_beyond_spread": True}
    # overlapping seed ranges: a better mean is not a win
    assert not bench.verdict(bench.summarise([8.5, 11.0, 12.0]), sft, "geoscore")["beats_beyond_spread"]
    # distances: lower is better
    v = bench.verdict(bench.summarise([100.0, 110.0, 120.0]), bench.summarise([200.0, 210.0, 220.0]), "median_km")
    assert v["gap"] == 100.0 and v["beats_beyond_spread"]


def test_benchmark_plumbing_end_to_end(bench, tmp_path, capsys):
    rc = bench.main(["--budget-s", "0.2", "--seeds", "0,1", "--arms", "sft,grpo_single", "--styles", "single",
                     "--data", "synthetic:n=200,size=28,seed=0", "--eval-n", "2", "--k", "2", "--sft-steps", "1",
                     "--rl-batch-size", "2", "--rl", "group_size=2", "--cache", str(tmp_path)])
    assert rc == 0
    out = capsys.readouterr()
    line = json.loads(out.out.strip().splitlines()[-1], parse_constant=strict)  # strict JSON: NaN / inf are null
    assert line["bench"] == "rl_vs_sft" and line["seeds"] == [0, 1]
    for arm in ("start", "sft", "grpo_single"):
        g = line["summary"][arm]["single"]["greedy"]["geoscore"]
        assert len(g["seeds"]) == 2 and g["min"] <= g["mean"] <= g["max"]
    for arm in ("sft", "grpo_single"):  # every arm ran at least one step, on its own clock
        assert all(r["steps"] >= 1 and r["clock_s"] >= 0.2 for r in line["runs"][arm].values())
    assert set(line["verdicts"]["grpo_single"]["greedy"]) == {"geoscore", "median_km"}
    assert "single prompt, greedy" in out.err
    # the warm start is cached: a second run reuses the same folder
    assert (Path(line["warm_start"]["dir"]) / "DONE").exists()

    # --merge joins runs on the same warm start; a clashing arm name gets its run's tag
    path = tmp_path / "run.json"
    path.write_text(json.dumps(line) + "\n")
    merged = bench.merge([str(path), str(path)])
    # (this run had --rl overrides, so its GRPO arm is named by its tag)
    assert set(merged["summary"]) == {
        "start",
        "sft",
        "grpo_single[defaults]",
        "sft[defaults]",
        "grpo_single[defaults]#1",
    }
    same = json.dumps(finite_json(merged["verdicts"]["grpo_single[defaults]"])) == json.dumps(
        line["verdicts"]["grpo_single"])
    assert same  # compared as strict JSON: an untrained toy's median can be inf (null in the line)
