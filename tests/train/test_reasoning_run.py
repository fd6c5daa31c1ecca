"""reasoning=true end to end on the tiny model: a few SFT steps on think-then-answer targets
(a templated rationale from the synthetic world's names), GRPO from that checkpoint with the
length penalty, then eval and predict — each completes and reports the reasoning metrics.
The tiny model's reasoning is nonsense; this checks budgets, wiring and logs, not learning."""

import io
import json
import math

import pytest

from geospot.eval import cli
from geospot.runs.folder import read_jsonl
from geospot.train.rl import RLConfig, run
from geospot.train.sft import SFTConfig, train

DATA = "synthetic:n=256,size=56,seed=0"  # n=64 leaves no val split
MODEL = "tiny:qwen2_5_vl:tiny"
REASONING = ("reasoning_tokens", "truncation_rate", "answer_format_rate")


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    log = tmp_path_factory.mktemp("sft") / "run"
    train(SFTConfig(model_name=MODEL, lora_rank=0, data=DATA, eval_n=2, eval_every=20, eval_at_start=False,
                    prompt_style="single", reasoning=True, reasoning_max_tokens=40, batch_size=4,
                    learning_rate=5e-3, max_steps=20, save_every=20, log_path=str(log),
                    behavior_if_log_dir_exists="raise"), stderr=io.StringIO())
    return log


def test_sft_then_rl_with_reasoning_logs_the_reasoning_metrics(sft_run, tmp_path):
    sft_rows = read_jsonl(sft_run / "metrics.jsonl")
    assert any(f"eval/{k}" in r for r in sft_rows for k in REASONING), "SFT's eval reports reasoning metrics"
    log = tmp_path / "rl"
    out = run(RLConfig(load_checkpoint_path=str(sft_run), env_type="single", reasoning=True,
                       reasoning_max_tokens=40, reasoning_penalty=1e-3, batch_size=2, group_size=2, max_steps=2,
                       eval_n=2, eval_every=2, eval_at_start=False, log_path=str(log),
                       behavior_if_log_dir_exists="raise"))
    rows = [r for r in read_jsonl(log / "metrics.jsonl") if "reward_mean" in r]
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert 0 <= r["reasoning_tokens"] <= 40, r  # never past the budget
        assert 0 <= r["truncation_rate"] <= 1 and 0 <= r["answer_format_rate"] <= 1
        # 4 rollouts of at most 40 tokens each (the budget is reasoning_max_tokens, not max_tokens=24);
        # a truncated one sampled all 40
        assert r["truncation_rate"] * 4 * 40 <= r["sampled_tokens"] <= 4 * 40
    assert any(r["sampled_tokens"] > 4 * 24 for r in rows) or all(r["truncation_rate"] < 1 for r in rows)
    assert all(f"eval/{k}" in out.metrics for k in REASONING)
    assert math.isfinite(out.metrics["reward_mean"])


def test_eval_and_predict_with_reasoning(sft_run, tmp_path, capsys):
    out = tmp_path / "eval"
    assert cli.eval_main([f"model={sft_run}", f"data={DATA}", "n=2", "reasoning=true", "reasoning_max_tokens=40",
                          f"out={out}", "--json", "geocoder=none", "device=cpu"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in REASONING:
        assert k in summary["metrics"], k
    assert 0 <= summary["metrics"]["truncation_rate"] <= 1
    # the run is the model: an eval that does not say inherits reasoning=true and its budget
    assert cli.eval_main([f"model={sft_run}", f"data={DATA}", "n=2", f"out={tmp_path / 'inherited'}", "--json",
                          "geocoder=none", "device=cpu"]) == 0
    inherited = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert inherited["run_defaults"]["from_run"]["reasoning"] is True and "reasoning_tokens" in inherited["metrics"]
    assert cli.eval_main([f"model={sft_run}", f"data={DATA}", "n=2", "reasoning=false", f"out={tmp_path / 'plain'}",
                          "--json", "geocoder=none", "device=cpu"]) == 0
    assert "reasoning_tokens" not in json.loads(capsys.readouterr().out.strip().splitlines()[-1])["metrics"]


def test_predict_with_reasoning_shows_the_reasoning(sft_run, tmp_path, capsys):
    from geospot.data.synthetic import SyntheticWorld

    world = SyntheticWorld(seed=0, image_size=56)
    for i in range(2):
        world.sample(i).image.save(tmp_path / f"img{i}.png")
    assert cli.predict_main([f"model={sft_run}", str(tmp_path), "reasoning=true", "reasoning_max_tokens=40",
                             "--json", "device=cpu"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(rows) == 2
    assert all(len(r["reasoning_tokens"]) == 1 and 0 <= r["reasoning_tokens"][0] <= 40 for r in rows)
    # asked as another env, one that does not reason: the run's reasoning is not taken, and that is said
    assert cli.predict_main([f"model={sft_run}", str(tmp_path), "env_type=geohash", "--json", "device=cpu"]) == 0
    err = capsys.readouterr().err
    assert "the run's reasoning=true is not taken: geohash turns answer without reasoning" in err, err
