"""`geospot demo`, shortened: the learning is visible in its table and its run folder is
one the dashboard can show. (Full preset timings: the demo prints them; see .status/demo.md.)"""

import math

import pytest

from geospot import demo


def test_presets_and_flags_parse(monkeypatch):
    seen = {}
    monkeypatch.setattr(demo, "run", lambda cfg, log=print: seen.setdefault("cfg", cfg))
    assert demo.main(["--preset", "quick", "--rl-steps", "2", "--out", "x"]) == 0
    cfg = seen["cfg"]
    assert (cfg.sft_steps, cfg.rl_steps, cfg.eval_n, cfg.out) == (demo.PRESETS["quick"].sft_steps, 2,
                                                                 demo.PRESETS["quick"].eval_n, "x")
    sft, rl = demo.stage_configs(cfg)
    sft.validate()
    assert rl.env_type == "telescoping" and rl.load_checkpoint_path == sft.log_path
    assert sft.telescoping_noise_km == cfg.telescoping_noise_km


def test_verdict_says_when_grpo_did_not_help_greedy():
    base = {"parsed": 1.0, "median_km": 1000.0, "geoscore": 2000.0, "sampled_geoscore": 1000.0,
            "turn_1_median_km": 1200.0, "turn_3_median_km": 1000.0}
    rows = {"untrained": {"parsed": 0.0, "median_km": math.inf, "geoscore": 0.0, "sampled_geoscore": 0.0},
            "SFT": base, "SFT+GRPO": {**base, "geoscore": 1990.0, "sampled_geoscore": 1100.0}}
    text = "\n".join(demo.verdict(rows))
    assert "did not improve the greedy" in text and "+100" in text and "-10" in text
    assert "refines" in text
    rows["SFT+GRPO"]["geoscore"] = 2100.0
    assert "did not improve" not in "\n".join(demo.verdict(rows))
    table = demo.table(rows, 48)
    assert "untrained" in table and "sampled GS" in table and "1,200 -> - -> 1,000" in table


@pytest.mark.slow
def test_short_demo_shows_learning(short_demo):
    """The demo run is tests/conftest.py's `short_demo`, shared with the dashboard screenshot test."""
    from geospot.runs.store import RunReader

    quick, rows, out = short_demo.cfg, short_demo.rows, short_demo.out
    print(out)
    u, s, g = rows["untrained"], rows["SFT"], rows["SFT+GRPO"]

    # SFT: the format is learned and the guesses land far closer than the untrained model's
    assert s["parsed"] >= 0.8 and s["parsed"] - u["parsed"] >= 0.5
    untrained_median = u["median_km"] if math.isfinite(u["median_km"]) else 20_000.0
    assert s["median_km"] <= 0.5 * untrained_median and s["median_km"] < 3000
    assert s["geoscore"] >= u["geoscore"] + 500
    # GRPO: reported (greedy and sampled), still answering in format
    assert g["parsed"] >= 0.7 and math.isfinite(g["median_km"]) and math.isfinite(g["sampled_geoscore"])
    for title in ("parsed", "median km", "GeoScore", "@200km", "@750km", "@2500km", "sampled GS"):
        assert title in out
    assert "GRPO: greedy GeoScore" in out and "time: CPU" in out

    # the run folder the dashboard shows: SFT steps; GRPO steps with per-image rollouts
    sft_store, rl_store = RunReader(short_demo.folder / "sft"), RunReader(short_demo.folder / "rl")
    assert len(sft_store.steps()) == quick.sft_steps
    assert len(rl_store.steps()) >= quick.rl_steps
    image_steps = rl_store.image_steps()
    assert image_steps
    images = rl_store.images(image_steps[-1]["step"])
    assert len(images) == quick.rl_batch_size
    assert all(len(im["rollouts"]) == quick.rl_group_size and im["has_thumb"] for im in images)
    assert all(len(r["guesses"]) >= 1 for im in images for r in im["rollouts"])
