"""`geospot eval --compare` rows and `geospot eval`'s printed extras, on hand-made run and eval
folders (no model): a training run's row says what its eval scored (so unlike rows are said to be
unlike) and shows an infinite distance as an eval folder's does; an eval inside a run is named by
its run; a hierarchical eval's own label answers and a geohash eval's per-turn distances are shown."""

import json
import math
from pathlib import Path

from geospot.eval import cli
from geospot.eval import predictions as io
from geospot.eval.compare import INF_NOTE, LABELS_NOTE, TURNS_NOTE, compare_table, default_name, load_runs

BASE = {"n": 16, "parsed": 0.9375, "median_km": 9453.6, "mean_km": math.inf, "geoscore": 28.7, "acc_1km": 0.0,
        "acc_25km": 0.0, "acc_200km": 0.0, "acc_750km": 0.0, "acc_2500km": 0.0, "country_acc": 0.0,
        "region_acc": 0.0, "city_acc": 0.0}
LABELS = {"label_city_acc": 0.0625, "label_country_acc": 0.125, "label_region_acc": 0.0625}
TURNS = {"turn_1_median_km": 7688.4, "turn_2_median_km": 7854.0, "turn_3_median_km": 9453.6}


def training_run(root: Path, name: str, metrics: dict, kind: str = "rl", **config) -> Path:
    """A training run folder as the loop leaves it: config.json, a checkpoint, and metrics.jsonl with a
    held-out eval (an infinite distance logged as null, as finite_json writes it)."""
    run = root / name
    (run / "checkpoints" / "10").mkdir(parents=True)
    (run / "checkpoints" / "10" / "state.json").write_text(json.dumps({"step": 10}))
    cfg = {"data": "synthetic:n=2000,size=112", "model_name": "tiny:qwen2_5_vl:tiny", **config}
    (run / "config.json").write_text(json.dumps({"kind": kind, "started_in": str(root), "config": cfg}))
    logged = {f"eval/{k}": (None if isinstance(v, float) and math.isinf(v) else v) for k, v in metrics.items()}
    lines = [{"step": 10, "reward_mean": 0.1}, {"step": 10, **logged}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


def eval_folder(folder: Path, metrics: dict, name: str | None = None, **asked) -> Path:
    folder.mkdir(parents=True)
    asked = {"data": "/data/osv5m", "split": "all", "env_type": "hierarchical", "sampling": "greedy", **asked}
    io.write_summary(folder, {"name": name or folder.name, **asked, "metrics": metrics, "config": {"name": name}})
    return folder


def cells(table: str, row: str) -> dict[str, str]:
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].split("|")[1:-1]]
    for line in lines[2:]:
        got = [c.strip() for c in line.split("|")[1:-1]]
        if got and got[0] == row:
            return dict(zip(header, got))
    raise AssertionError(f"no row {row!r} in\n{table}")


def test_training_run_rows_say_how_their_evals_differ_and_show_inf(tmp_path, capsys):
    # (n logged as a float, as a step's metrics may be)
    hier = training_run(tmp_path, "q3-hierarchical", {**BASE, **LABELS, "n": 16.0}, env_type="hierarchical")
    geo = training_run(tmp_path, "q3-geohash", {**BASE, **TURNS}, env_type="geohash")
    assert cli.eval_main(["--compare", str(hier), str(geo)]) == 0
    table = capsys.readouterr().out.strip()
    assert table.splitlines()[-1] == ("(the rows differ in env_type: geohash, hierarchical: compare evals of the "
                                      "same data asked the same way)")
    h, g = cells(table, "q3-hierarchical (held-out, step 10)"), cells(table, "q3-geohash (held-out, step 10)")
    assert h["mean_km"] == g["mean_km"] == "inf" and f"({INF_NOTE})" in table  # as an eval folder shows it
    # the env's own numbers, as columns, with what they are said under the table
    assert (h["label_country_acc"], h["label_city_acc"], g["label_country_acc"]) == ("12.5%", "6.2%", "-")
    assert (g["turn_1_median_km"], g["turn_3_median_km"], h["turn_2_median_km"]) == ("7,688.4", "9,453.6", "-")
    assert f"({LABELS_NOTE})" in table and f"({TURNS_NOTE})" in table
    assert list(cells(table, "q3-geohash (held-out, step 10)"))[-3:] == [f"turn_{k}_median_km" for k in (1, 2, 3)]
    # an eval folder beside them shows inf the same way; --json says what each row's eval asked
    ev = eval_folder(tmp_path / "q3-hierarchical" / "eval" / "osv", {**BASE, "n": 8, **LABELS})
    assert cli.eval_main(["--compare", str(hier), str(ev), "--json"]) == 0
    js = json.loads(capsys.readouterr().out)
    assert js["asked"]["q3-hierarchical (held-out, step 10)"] == {
        "data": "synthetic:n=2000,size=112", "split": "val", "env_type": "hierarchical", "sampling": "greedy"}
    assert js["asked"]["q3-hierarchical/osv"]["data"] == "/data/osv5m"
    assert all(r["mean_km"] is None for r in js["runs"].values())
    # the images counted are a count in both rows (the training log holds a step's metrics as floats)
    assert [type(r["n"]) for r in js["runs"].values()] == [int, int]


def test_a_logged_null_distance_is_shown_and_ranked_as_inf():
    """What the model card's table of a run's held-out evals (metrics.jsonl, nulls) shows too."""
    logged = {**BASE, "mean_km": None, "median_km": None}
    table = compare_table({"log": logged, "eval": {**BASE, "mean_km": 8000.0}})
    assert cells(table, "log")["mean_km"] == "inf" and cells(table, "log")["median_km"] == "inf"
    assert cells(table, "eval")["mean_km"] == "8,000.0*" and cells(table, "eval")["median_km"] == "9,453.6*"
    assert cells(compare_table({"none": {**logged, "n": 0}}), "none")["mean_km"] == "-"  # no images: not computed


def test_a_training_runs_eval_is_read_from_its_config(tmp_path):
    from geospot.eval.compare import training_asked

    sft = training_run(tmp_path, "sft", BASE, kind="sft", prompt_style="both", eval_data="/data/im2gps3k")
    rl = training_run(tmp_path, "rl", {**BASE, **TURNS}, env_type="telescoping", eval_temperature=0.7)
    assert training_asked(sft) == {"data": "/data/im2gps3k", "split": "all", "env_type": "single",
                                   "sampling": "greedy"}
    assert training_asked(rl) == {"data": "synthetic:n=2000,size=112", "split": "val", "env_type": "telescoping",
                                  "sampling": "samples=1,temperature=0.7"}
    assert training_asked(tmp_path) == {}  # not a run: nothing claimed
    # eval_split=heldout (the demo's): its eval read the val and test ids, and says so
    assert training_asked(training_run(tmp_path, "hv", BASE, eval_split="heldout"))["split"] == "heldout"
    # a hierarchical run asking coordinates only logs no label accuracy: still its own env, read with its keys
    coords = training_run(tmp_path, "hc", BASE, env_type="hierarchical", hier_turns=["coords"], hier_weights=[1.0])
    assert training_asked(coords, BASE)["env_type"] == "hierarchical"
    assert training_asked(training_run(tmp_path, "h", BASE, env_type="hierarchical"), BASE)["env_type"] == "single"
    asked: dict = {}
    table = compare_table(load_runs([str(sft), str(rl)], asked), asked=asked)
    assert "(the rows differ in data: /data/im2gps3k, synthetic:n=2000,size=112; split: all, val; env_type: " \
           "single, telescoping; sampling: greedy, samples=1,temperature=0.7:" in table


def test_an_eval_inside_a_run_is_named_by_its_run(tmp_path, capsys):
    for run in ("q2-hierarchical", "q3-hierarchical"):
        training_run(tmp_path, run, BASE, env_type="hierarchical")
        eval_folder(tmp_path / run / "eval" / "osv5m-hier-step10", BASE)
    a, b = (str(tmp_path / r / "eval" / "osv5m-hier-step10") for r in ("q2-hierarchical", "q3-hierarchical"))
    assert list(load_runs([a, b])) == ["q2-hierarchical/osv5m-hier-step10", "q3-hierarchical/osv5m-hier-step10"]
    assert default_name(a) == "q2-hierarchical/osv5m-hier-step10"
    assert list(load_runs([a, a])) == ["q2-hierarchical/osv5m-hier-step10", "q2-hierarchical/osv5m-hier-step10#2"]
    # folders outside runs: their own names, and the shortest path suffix that tells clashing ones apart
    x, y = eval_folder(tmp_path / "m" / "base" / "osv", BASE), eval_folder(tmp_path / "n" / "base" / "osv", BASE)
    z = eval_folder(tmp_path / "other", BASE)
    assert list(load_runs([str(x), str(y), str(z)])) == ["m/base/osv", "n/base/osv", "other"]
    assert default_name(z) == "other"
    named = eval_folder(tmp_path / "named" / "osv", BASE, name="my model")  # name= given: kept as it is
    assert list(load_runs([str(named), a])) == ["my model", "q2-hierarchical/osv5m-hier-step10"]
    # the summary.json file itself names the same row as its folder
    assert list(load_runs([str(Path(a) / "summary.json"), b]))[0] == "q2-hierarchical/osv5m-hier-step10"


def test_eval_prints_the_envs_own_numbers_under_its_table(tmp_path, monkeypatch, capsys):
    summary = {"name": "q3/osv", "metrics": {**BASE, **LABELS, **TURNS, "reasoning_tokens": 41.5,
                                             "truncation_rate": 0.25, "answer_format_rate": 0.75},
               "skipped_samples": {}, "predictions": "p.csv", "summary": "s.json"}
    monkeypatch.setattr(cli, "run_eval", lambda c, given=None: summary)
    assert cli.eval_main(["model=x", "data=synthetic:n=4"]) == 0
    out = capsys.readouterr().out
    assert ("the model's own label answers (its label turns; country_acc / region_acc / city_acc are its "
            "coordinates reverse-geocoded): country 12.5%, region 6.2%, city 6.2%") in out
    assert ("median km of each turn's answer (telescoping / geohash turns, a geohash cell read as its centre; "
            "the last is median km): "
            "turn 1 7,688.4, turn 2 7,854.0, turn 3 9,453.6") in out
    assert "reasoning: 42 tokens per turn, 25.0% of turns cut off, 75.0% answered in the format" in out
    # no geocoder (an RL run's held-out eval): the columns it would name are not in the table, nor in the line
    geocoded = ("country_acc", "region_acc", "city_acc")
    summary["metrics"] = {**{k: v for k, v in BASE.items() if k not in geocoded}, **LABELS}
    assert cli.eval_main(["model=x", "data=synthetic:n=4"]) == 0
    assert "the model's own label answers (its label turns): country 12.5%" in capsys.readouterr().out
    summary["metrics"] = dict(BASE)  # a single-turn eval: nothing more
    assert cli.eval_main(["model=x", "data=synthetic:n=4"]) == 0
    assert "label answers" not in capsys.readouterr().out


def test_eval_of_a_run_without_data_suggests_the_runs_own(tmp_path, monkeypatch, capsys):
    run = training_run(tmp_path, "q3-hierarchical", BASE, env_type="hierarchical", data="photos,val_frac=0.2")
    monkeypatch.chdir(tmp_path)
    assert cli.eval_main(["model=q3-hierarchical"]) == 2
    err = capsys.readouterr().err
    assert "`geospot eval model=q3-hierarchical data=photos,val_frac=0.2` (its held-out images" in err
    monkeypatch.chdir(run)  # from elsewhere, its relative data as seen from here
    assert cli.eval_main([f"model={run}"]) == 2
    assert f"data={tmp_path}/photos,val_frac=0.2`" in capsys.readouterr().err
    assert cli.eval_main(["model=tiny:qwen2_5_vl:tiny"]) == 2  # not a run: the generic example
    assert "model= and data= are required, e.g." in capsys.readouterr().err


def test_a_runs_row_is_asked_as_its_logged_eval_was(tmp_path, capsys):
    """The demo logs its single-prompt held-out eval into the telescoping RL run: compared with the
    SFT run's single-prompt eval the rows are alike (it said they differ in env_type)."""
    sft = training_run(tmp_path, "sft", BASE, kind="sft", prompt_style="both")
    rl = training_run(tmp_path, "rl", BASE, env_type="telescoping", mix_env_type="single")
    tele = training_run(tmp_path, "tele", {**BASE, **TURNS}, env_type="telescoping")
    assert cli.eval_main(["--compare", str(sft), str(rl)]) == 0
    assert "differ" not in capsys.readouterr().out
    assert cli.eval_main(["--compare", str(sft), str(tele)]) == 0  # its eval asked the three turns
    assert "(the rows differ in env_type: single, telescoping" in capsys.readouterr().out


def test_one_folder_spelled_two_ways_is_not_said_to_be_other_data(tmp_path, monkeypatch):
    from geospot.eval.compare import compare_table, distinct_data

    (tmp_path / "labelled").mkdir()
    monkeypatch.chdir(tmp_path)
    assert distinct_data(["labelled", "labelled/", "./labelled", str(tmp_path / "labelled")]) == ["labelled"]
    assert distinct_data(["labelled", "synthetic:n=8"]) == ["labelled", "synthetic:n=8"]
    table = compare_table({"a": {"median_km": 9.0}, "b": {"median_km": 8.0}},
                          asked={"a": {"data": "labelled"}, "b": {"data": "labelled/"}})
    assert "differ in" not in table


def test_a_killed_runs_row_is_the_eval_of_the_weights_it_holds(tmp_path, capsys):
    """A run killed at step 22 with checkpoints/10: predict / eval / export read step 10's weights,
    so --compare shows the eval of step 5 (at or before 10), not step 20's, whose weights were lost."""
    run = training_run(tmp_path, "killed", BASE)
    lines = [{"step": 5, **{f"eval/{k}": v for k, v in {**BASE, "median_km": 5000.0}.items() if k != "mean_km"}},
             {"step": 20, **{f"eval/{k}": v for k, v in {**BASE, "median_km": 100.0}.items() if k != "mean_km"}}]
    (run / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert cli.eval_main(["--compare", str(run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert list(rows) == ["killed (held-out, step 5)"] and rows["killed (held-out, step 5)"]["median_km"] == 5000.0


def test_an_export_given_to_compare_is_named_as_one(tmp_path):
    import pytest

    from geospot.eval.predictions import read_summary_or_training_eval

    (tmp_path / "exp").mkdir()
    (tmp_path / "exp" / "geospot.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"exp is an export \(weights, no eval\); evaluate it with "
                                                r"`geospot eval model=.*exp data=<spec>`"):
        read_summary_or_training_eval(tmp_path / "exp")
