"""`geospot rl env_type=hierarchical|geohash` and `reward=mixed` end to end on the tiny model
(untrained: its answers rarely parse, which is fine: this checks the wiring, the metrics and
the eval, not learning)."""

import math

import pytest

from geospot.config import ConfigError, parse_overrides
from geospot.runs.folder import read_jsonl
from geospot.train.rl import RLConfig, run

DATA = "synthetic:n=256,size=56,seed=0"
COMMON = {"model_name": "tiny:qwen2_5_vl:tiny", "data": DATA, "batch_size": 2, "group_size": 2, "max_steps": 1,
          "eval_n": 2, "eval_every": 1, "eval_at_start": False, "max_tokens": 12, "behavior_if_log_dir_exists": "raise"}


@pytest.mark.parametrize("env_type, reward, want", [
    ("hierarchical", "auto", ("label_country_acc", "label_region_acc", "label_city_acc", "eval/label_country_acc")),
    ("geohash", "auto", ("turn3_median_km", "eval/geoscore")),  # one per geohash turn
    ("single", "mixed", ("tau_km",)),
])
def test_new_envs_and_the_mixed_reward_run(tmp_path, env_type, reward, want):
    log = tmp_path / env_type
    metrics = run(RLConfig(**COMMON, env_type=env_type, reward=reward, log_path=str(log))).metrics
    rows = read_jsonl(log / "metrics.jsonl")
    logged = {k for r in rows for k in r}
    for key in want:
        assert key in logged, key
    assert math.isfinite(metrics["reward_mean"])


def test_env_keys_are_validated_before_any_model_loads():
    with pytest.raises(ConfigError, match="hier_weights"):
        parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,region,coords"])
    cfg = parse_overrides(RLConfig, ["env_type=hierarchical", "hier_turns=country,region,coords",
                                     "hier_weights=0.2,0.3,0.5", "teacher_forcing=1", "hier_partial_credit=0.25"])
    assert cfg.hier_weights == (0.2, 0.3, 0.5) and cfg.teacher_forcing == 1.0
    assert parse_overrides(RLConfig, ["reward=mixed", "mixed_weights=0.5,0.5"]).mixed_weights == (0.5, 0.5)
