"""`geospot rl env_type=hierarchical|geohash` and `reward=mixed` end to end on the tiny model
(untrained: its answers rarely parse, which is fine: this checks the wiring, the metrics and
the eval, not learning)."""

import math

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.data.types import Sample
from geospot.envs.rewards import GeoScoreReward, KernelReward
from geospot.envs.single_turn import SingleTurnGroupBuilder
from geospot.envs.telescoping import TelescopingGroupBuilder
from geospot.rl.testing import CharRenderer
from geospot.runs.folder import read_jsonl
from geospot.train.rl import RLConfig, make_group_builders, run

DATA = "synthetic:n=256,size=56,seed=0"
COMMON = {"model_name": "tiny:qwen2_5_vl:tiny", "data": DATA, "batch_size": 2, "group_size": 2, "max_steps": 1,
          "eval_n": 2, "eval_every": 1, "eval_at_start": False, "max_tokens": 12, "behavior_if_log_dir_exists": "raise"}


@pytest.mark.parametrize("env_type, reward, want, said", [
    ("hierarchical", "auto", ("label_country_acc", "label_region_acc", "label_city_acc", "eval/label_country_acc"),
     "the model's own label answers"),
    ("geohash", "auto", ("turn_3_median_km", "eval/geoscore"),  # one per geohash turn
     "median km of each turn's answer"),
    ("single", "mixed", ("tau_km",), None),
])
def test_new_envs_and_the_mixed_reward_run(tmp_path, capsys, env_type, reward, want, said):
    log = tmp_path / env_type
    metrics = run(RLConfig(**COMMON, env_type=env_type, reward=reward, log_path=str(log))).metrics
    if said:  # the held-out eval's own numbers of the env are printed too, not only in metrics.jsonl
        err = capsys.readouterr().err
        assert said in err, err
    rows = read_jsonl(log / "metrics.jsonl")
    logged = {k for r in rows for k in r}
    for key in want:
        assert key in logged, key
    assert math.isfinite(metrics["reward_mean"])


def test_a_mixed_batch_plays_both_envs_each_with_its_reward(tmp_path):
    """mix_env_type=telescoping inside single-turn GRPO: half the images play 3 turns (per-turn
    metrics appear), the other half one turn with the τ-kernel (tau_km is charted)."""
    log = tmp_path / "mix"
    cfg = RLConfig(**{**COMMON, "batch_size": 4, "max_steps": 2, "eval_n": 0}, env_type="single",
                   mix_env_type="telescoping", mix_share=0.5, log_path=str(log))
    run(cfg)
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert len(rows) == 2 and all("tau_km" in r and "turn_1_median_km" in r for r in rows)
    # which images play which env, with which reward (no model: the builders only)
    samples = [Sample(id=str(i), image=None, lat=0.0, lon=float(i)) for i in range(4)]
    builders = make_group_builders(cfg, samples, CharRenderer(), 321.0)
    assert [type(b) for b in builders] == [TelescopingGroupBuilder] * 2 + [SingleTurnGroupBuilder] * 2
    assert [b.sample.id for b in builders] == ["0", "1", "2", "3"]
    assert isinstance(builders[0].score, GeoScoreReward) and builders[2].reward == KernelReward(321.0)
    with pytest.raises(ConfigError, match="mix_env_type"):
        parse_overrides(RLConfig, ["env_type=single", "mix_env_type=single"])
    with pytest.raises(ConfigError, match="mix_share"):
        parse_overrides(RLConfig, ["mix_env_type=telescoping", "mix_share=1"])
    # a share that rounds to no image (or every image) of the batch would mix nothing
    with pytest.raises(ConfigError, match=r"mix_share=0.25 of batch_size=2 is 0 image\(s\), so no image"):
        parse_overrides(RLConfig, ["mix_env_type=telescoping", "batch_size=2"])
    with pytest.raises(ConfigError, match="temperature=0.0 must be > 0"):
        parse_overrides(RLConfig, ["temperature=0"])


def test_env_keys_are_validated_before_any_model_loads():
    with pytest.raises(ConfigError, match=r"hier_weights=\(0.5, 0.5\) needs one weight per turn of hier_turns \(3\); "
                                          r"give 3, or hier_weights= \(empty: each turn's default weight\)"):
        parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,region,coords", "hier_weights=0.5,0.5"])
    with pytest.raises(ConfigError, match=r"geohash_weights=\(1.0,\) needs one weight per turn of geohash_chars \(2\)"):
        parse_overrides(RLConfig, ["env_type=geohash", "geohash_chars=2,4", "geohash_weights=1"])
    cfg = parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,region,coords",
                                     "hier_weights=0.2,0.3,0.5", "teacher_forcing=1", "hier_partial_credit=0.25"])
    assert cfg.hier_weights == (0.2, 0.3, 0.5) and cfg.teacher_forcing == 1.0
    assert parse_overrides(RLConfig, ["reward=mixed", "mixed_weights=0.5,0.5"]).mixed_weights == (0.5, 0.5)


def test_turns_without_weights_take_each_turns_default_weight_scaled_to_sum_1():
    """hier_turns / geohash_chars typed alone: the env weighs each turn by its default (they were refused
    against the four / three default weights, in predict and SFT too, which pay no reward)."""
    from geospot.envs.kinds import geohash_spec, hierarchy_spec

    assert hierarchy_spec(RLConfig()).weights == (0.2, 0.2, 0.2, 0.4)  # the default turns: as before
    cfg = parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,region,coords"])
    assert cfg.hier_weights == () and hierarchy_spec(cfg).weights == pytest.approx((0.25, 0.25, 0.5))
    cfg = parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,coords"])
    assert hierarchy_spec(cfg).weights == pytest.approx((1 / 3, 2 / 3))
    assert geohash_spec(RLConfig()).weights == (0.2, 0.3, 0.5)
    cfg = parse_overrides(RLConfig, ["env_type=geohash", "geohash_chars=2,4"])
    assert geohash_spec(cfg).weights == pytest.approx((0.375, 0.625))  # the finest two of 0.2/0.3/0.5, scaled
    assert geohash_spec(parse_overrides(RLConfig, ["env_type=geohash", "geohash_chars=6"])).weights == (1.0,)
    typed = parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,coords", "hier_weights=0.1,0.9"])
    assert hierarchy_spec(typed).weights == (0.1, 0.9)  # given weights are used as given


def test_a_run_that_trained_no_step_says_so(tmp_path, capsys):
    """The untrained tiny model never answers in the format: every group's rewards are the format
    penalty, so no step updates anything, and the run ends saying so and why (it said `done`)."""
    cfg = RLConfig(**{**COMMON, "eval_n": 0, "max_steps": 2}, env_type="single", log_path=str(tmp_path / "u"))
    run(cfg)
    rows = [r for r in read_jsonl(tmp_path / "u" / "metrics.jsonl") if "datums" in r]
    assert rows and all(r["datums"] == 0 for r in rows)
    assert "no step trained: on every step every group's rewards were equal" in capsys.readouterr().err
