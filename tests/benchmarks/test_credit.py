"""benchmarks/credit.py's summary on hand-made eval curves: an arm whose held-out median is never
finite is reported (null and why), not a crash, and the JSON line is strict JSON."""

from __future__ import annotations

from bench_scripts import load, strict_loads

credit = load("credit")


def arm(curve, median, parsed=None):
    steps = sorted(curve)
    return {"curve": curve, "median_km": median, "parsed": parsed or {}, "wall_s": 1.0,
            "cum_train_s": {s: float(s) for s in steps}}


def test_race_reports_an_arm_whose_median_never_parsed():
    never = arm({0: 0.0, 1: 0.0, 2: 155.8}, {}, {0: 0.0, 1: 0.0, 2: 0.0})
    good = arm({0: 0.0, 1: 200.0, 2: 300.0}, {0: 900.0, 1: 800.0, 2: 700.0}, {2: 1.0})
    target, a, b = credit.race(never, good)
    assert target == 155.8
    assert a["final_median_km"] is None and a["final_parsed"] == 0.0 and "never finite" in a["final_median_note"]
    assert a["steps_to_target"] == 2 and b["steps_to_target"] == 1
    assert b["final_median_km"] == 700.0 and "final_median_note" not in b


def test_race_takes_the_median_of_the_last_eval_not_an_earlier_one():
    # finite at step 1, inf (left out) at the last eval: the final median is null, not step 1's
    r = arm({0: 0.0, 1: 50.0, 2: 40.0}, {1: 1234.0})
    _, a, _ = credit.race(r, r)
    assert a["final_median_km"] is None and "last eval" in a["final_median_note"]


def test_main_prints_strict_json_when_nothing_parsed(monkeypatch, capsys, tmp_path):
    never = arm({0: 0.0, 1: 155.8}, {})
    never["cum_train_s"] = {0: 0.0}  # no step logged a time: the time to the target is unknown (NaN)
    monkeypatch.setattr(credit, "run_rl", lambda *a, **k: dict(never))
    assert credit.main(["--sft", str(tmp_path), "--out", str(tmp_path)]) == 0
    line = strict_loads(capsys.readouterr().out.strip().splitlines()[-1])
    for part, a in (("credit", "per_turn"), ("tau", "fixed_25km")):
        assert line[part][a]["final_median_km"] is None
    assert line["credit"]["per_turn"]["train_s_to_target"] is None
