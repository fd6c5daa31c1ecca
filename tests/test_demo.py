"""`geospot demo`: flags, the run folder it picks, its report and verdicts (hand-made numbers),
and a shortened real run whose learning is visible in its table."""

import json
import math
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from geospot import demo
from geospot import demo_report as R
from geospot.config import ConfigError
from geospot.eval.verdict import IMPROVED, NO_CHANGE, WORSE


def test_the_held_out_images_are_the_eval_split_before_any_model_loads(monkeypatch, tmp_path):
    import geospot.data

    seen = {}

    def stop(spec, split="val", n=None, **kw):
        seen.update(split=split, n=n)
        raise FileNotFoundError("stop here")

    monkeypatch.setattr(geospot.data, "load_samples", stop)
    with pytest.raises(ConfigError, match="stop here"):
        demo.run(demo.DemoConfig(out=str(tmp_path / "d")))
    assert seen == {"split": "heldout", "n": 431} and not (tmp_path / "d").exists()


def test_presets_and_flags_parse(monkeypatch, tmp_path, capsys):
    seen = {}

    def fake_run(cfg, log=print):
        seen["cfg"] = cfg
        return {"stages": {}, "seed": cfg.seed}

    monkeypatch.setattr(demo, "run", fake_run)
    out = tmp_path / "x"
    assert demo.main(["--preset", "quick", "--rl-steps", "2", "--rl-single-steps", "0", "--out", str(out),
                      "--seed", "3", "--json"]) == 0
    cfg = seen["cfg"]
    q = demo.PRESETS["quick"]
    assert (cfg.sft_steps, cfg.rl_single_steps, cfg.rl_steps, cfg.eval_n, cfg.out, cfg.seed, cfg.tau_steps) == (
        q.sft_steps, 0, 2, q.eval_n, str(out), 3, 0)
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == {"stages": {}, "seed": 3}
    assert demo.main(["--preset", "quick", "--zoom", "2", "--tau-study", "7", "--out", str(tmp_path / "z")]) == 0
    assert (seen["cfg"].zoom, seen["cfg"].tau_steps) == (2, 7)


def test_no_grpo_stage_is_refused_before_any_model_loads(tmp_path):
    with pytest.raises(ConfigError, match="rl_single_steps and rl_steps are both 0"):
        demo.run(replace(demo.DemoConfig(out=str(tmp_path / "d")), rl_single_steps=0, rl_steps=0))
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("change, said", [(dict(eval_n=0), "--eval-n 0: give 1 or more"),  # (a TypeError)
                                          (dict(sft_steps=-1), "--sft-steps -1: give 1 or more"),  # (said max_steps)
                                          (dict(tau_steps=-5), "--tau-study -5: give 0 or more"),
                                          (dict(model_name="tiny:qwen25_vl"), "--model='tiny:qwen25_vl': the tiny")])
def test_a_mistyped_flag_is_named_as_typed_before_the_data_is_built(tmp_path, change, said):
    with pytest.raises(ConfigError, match=re.escape(said)):
        demo.run(replace(demo.DemoConfig(out=str(tmp_path / "d")), **change))
    assert not (tmp_path / "d").exists()


def test_earlier_runs_are_kept(tmp_path):
    base = tmp_path / "demo"
    assert demo.resolve_out(str(base), explicit=False, fresh=False) == base  # nothing there yet
    (base / "sft").mkdir(parents=True)
    assert demo.resolve_out(str(base), explicit=False, fresh=False) == tmp_path / "demo-2"
    (tmp_path / "demo-2").mkdir()
    assert demo.resolve_out(str(base), explicit=False, fresh=False) == tmp_path / "demo-3"
    with pytest.raises(ConfigError, match="--fresh"):
        demo.resolve_out(str(base), explicit=True, fresh=False)
    assert (base / "sft").exists()  # refused: nothing lost
    assert demo.resolve_out(str(base), explicit=True, fresh=True) == base and not base.exists()


def _stage(d_N, sampled, turns):
    return R.StageEval.from_km(d_N, sampled, turns)


def test_report_verdicts_from_hand_made_stages():
    n = 64
    untrained = _stage([math.nan] * n, [[math.nan] * n], [[math.nan] * n] * 3)
    # SFT: every image 1000 km off; turns 1200 -> 1100 -> 1000 (refines on every image)
    sft = _stage([1000.0] * n, [[2000.0] * n, [2000.0] * n], [[1200.0] * n, [1100.0] * n, [1000.0] * n])
    # GRPO: greedy 500 km closer on every image; sampled 300 km closer on half the images, 300 km farther
    # on the other half: GeoScore +291 / -238 per image, mean +26 against a per-image spread of ~265
    flip = np.where(np.arange(n) % 2 == 0, 300.0, -300.0)
    rl = _stage([500.0] * n, [2000.0 - flip, 2000.0 - flip], [[900.0] * n, [700.0] * n, [500.0] * n])
    stages = {"untrained": R.stage_json(untrained, None), "sft": R.stage_json(sft, untrained),
              "rl": R.stage_json(rl, sft)}
    u, s, g = stages["untrained"], stages["sft"], stages["rl"]
    assert u["parsed"] == 0 and math.isinf(u["median_km"]) and u["geoscore"] == 0 and u["verdict"] == {
        "turn_median_km": NO_CHANGE}
    assert s["verdict"]["parsed"] == IMPROVED and s["verdict"]["geoscore"] == IMPROVED
    assert s["verdict"]["median_km"] == IMPROVED and s["turn_median_km"] == [1200, 1100, 1000]
    # GeoScore of 1000 km is 5000 exp(-1000/1492.7) = 2559; of 500 km 3576: +1017 on every image
    assert s["geoscore"] == pytest.approx(2559, abs=1) and g["geoscore"] == pytest.approx(3577, abs=1)
    assert g["verdict"]["geoscore"] == IMPROVED and g["change"]["geoscore"]["delta"] == pytest.approx(1017, abs=2)
    assert g["verdict"]["sampled_geoscore"] == NO_CHANGE  # +26 inside a ~+-65 band
    assert g["verdict"]["acc_750km"] == IMPROVED and g["verdict"]["acc_2500km"] == NO_CHANGE  # 100% both
    assert g["verdict"]["turn_median_km"] == IMPROVED  # the last turn is closer than the first
    text = "\n".join(R.verdict_lines(stages))
    assert "rl vs sft: greedy GeoScore 2,559 -> 3,577 (improved; change 95% CI [+1,018, +1,018])" in text
    assert "sampled GeoScore" in text and "no change beyond noise" in text
    assert "telescoping after rl: the last turn is closer than the first (greedy median 900 -> 700 -> 500 km)" in text
    # the untrained model parses nothing: its turns have no median, and the line says what '-' means
    assert ("telescoping after untrained: no change beyond noise from turn to turn (greedy median - -> - -> - km; "
            "- = most of that turn's answers did not parse)") in text
    assert R.verdict_summary(stages) == ("GRPO improved greedy GeoScore beyond noise "
                                         "(sampled GeoScore: no change beyond noise).")
    table = R.table(stages, n, "single")
    assert "untrained" in table and "sampled GS" in table and "1,200 -> 1,100 -> 1,000" in table
    # a worse final turn is called worse
    worse = R.stage_json(_stage([1000.0] * n, [[1000.0] * n], [[800.0] * n, [1000.0] * n]), sft)
    assert worse["verdict"]["turn_median_km"] == WORSE
    assert json.dumps(__import__("geospot.jsonutil", fromlist=["x"]).finite_json(stages))  # strict JSON


@pytest.mark.slow
def test_short_demo_shows_learning(short_demo):
    """The demo run is tests/conftest.py's `short_demo`, shared with the dashboard screenshot test."""
    from geospot.runs.store import RunReader

    quick, result, out = short_demo.cfg, short_demo.rows, short_demo.out
    print(out)
    stages = result["stages"]
    u, s, g = stages["untrained"], stages["sft"], stages["rl"]
    for m in (u, s, g):
        assert set(R.METRICS) | {"turn_median_km", "verdict"} <= set(m)
        assert len(m["turn_median_km"]) == 3
    # SFT: the format is learned and the guesses land far closer than the untrained model's. No
    # absolute km bound: in the demo's world half the images show a look-alike country, where
    # SFT's greedy answers fall between the twins (2,588-5,025 km median at the default 300 steps,
    # seeds 0-3), so the score's margin and its verdict carry the claim.
    assert s["parsed"] >= 0.8 and s["parsed"] - u["parsed"] >= 0.5
    untrained_median = u["median_km"] if math.isfinite(u["median_km"]) else 20_000.0
    assert s["median_km"] <= 0.5 * untrained_median
    assert s["geoscore"] >= u["geoscore"] + 500 and s["verdict"]["geoscore"] == IMPROVED
    # GRPO: reported (greedy and sampled) with a verdict for each, still answering in format
    assert g["parsed"] >= 0.7 and math.isfinite(g["median_km"]) and math.isfinite(g["sampled_geoscore"])
    assert all(g["verdict"][k] in (IMPROVED, NO_CHANGE, WORSE) for k in R.METRICS)
    for title in ("parsed", "median km", "GeoScore", "@200km", "@750km", "@2500km", "sampled GS"):
        assert title in out
    assert "rl vs sft: greedy GeoScore" in out and "time: CPU" in out and "GRPO improved" in out
    assert out.startswith(f"data: {demo.DEMO_DATA} (8 countries; two pairs look alike")  # the world is said first
    # every stage that runs is numbered in turn (here all five: the short demo has a telescoping-only stage);
    # a batch's envs are said in images (3 of 4 single-turn with rl_batch_size=4 and mix_share=0.75)
    assert [line.split("]")[0] + "]" for line in out.splitlines() if line.startswith("[")] == [
        "[1/5]", "[2/5]", "[3/5]", "[4/5]", "[5/5]"]
    assert "rollouts (3 of 4 images single, 1 telescoping)" in out

    # the run folder the dashboard shows: SFT steps; GRPO steps with per-image rollouts
    sft_store, rl_store = RunReader(short_demo.folder / "sft"), RunReader(short_demo.folder / "rl")
    assert len(sft_store.steps()) == quick.sft_steps
    assert len(RunReader(short_demo.folder / "rl-single").steps()) == quick.rl_single_steps
    assert len(rl_store.steps()) >= quick.rl_steps
    image_steps = rl_store.image_steps()
    assert image_steps
    images = rl_store.images(image_steps[-1]["step"])
    assert len(images) == quick.rl_batch_size
    assert all(len(im["rollouts"]) == quick.rl_group_size and im["has_thumb"] for im in images)
    assert all(len(r["guesses"]) >= 1 for im in images for r in im["rollouts"])


OSV = Path("/work/shared/data/osv5m-samples")


@pytest.mark.skipif(not OSV.exists(), reason="needs the shared OSV-5M samples")
def test_the_demos_final_run_predicts_every_real_photo(short_demo, capsys):
    """`geospot predict model=<the demo's final run>` with no other key: the telescoping turns it
    trained last, asked about real 16:9 / 4:3 photos, as centre-cropped squares (the default: it only
    ever saw 112 px squares) and uncropped. (With the return-to-go credit the coarse turn was a stub
    that on uncropped photos often ended after the latitude; paid for its own distance, it answers.)"""
    from geospot.eval.predict_cli import predict_main

    def parsed(*keys):
        assert predict_main([f"model={short_demo.folder / 'rl'}", str(OSV / "images"), str(OSV / "unlabeled"),
                             *keys, "--json"]) == 0
        rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert len(rows) == 20 and all(len(r["turns"]) in (1, 3) for r in rows)
        return sum(r["latitude"] is not None for r in rows)

    uncropped = parsed("square=false")
    cropped = parsed()
    print(f"parsed real photos: {cropped}/20 as square crops, {uncropped}/20 uncropped")
    assert cropped >= 19 and uncropped >= 19


def _tau_arm(km: float, gs: float, sgs: float) -> dict:
    return {"median_km": km, "geoscore": gs, "sampled_geoscore": sgs}


def test_tau_line_names_each_verdict():
    t = {"steps": 150, "format_only": _tau_arm(10574.0, 560.0, 342.0), "fixed_tau": _tau_arm(7388.0, 396.0, 417.0),
         "follow_error_tau": _tau_arm(6005.0, 818.0, 731.0),
         "verdict": {"median_km": NO_CHANGE, "geoscore": IMPROVED, "sampled_geoscore": IMPROVED}}
    assert demo.tau_line(t) == (
        "τ study (150 GRPO steps from a format-only warm start, greedy median km): format-only 10,574, fixed τ = 25 km "
        "7,388, τ following the error 6,005 — follow-error vs fixed: median no change beyond noise; greedy GeoScore "
        "396 -> 818: improved; sampled GeoScore 417 -> 731: improved.")
