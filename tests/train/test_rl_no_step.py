"""GRPO that never trains (every group's rewards equal: the model never answers in the format)
says so at the end, with the fix that fits where it started."""

import io

from test_time_limit import rl_config, sft_config

from geospot.train.rl import run
from geospot.train.sft import train


def test_no_step_trained_names_the_fix_for_where_it_started(tmp_path, capsys):
    # an untrained tiny model: nothing parses, so every reward is the format penalty
    result = run(rl_config(tmp_path / "base", max_steps=1))
    said = capsys.readouterr().err
    assert result.steps == 1 and "no step trained" in said
    assert "needs an SFT warm start (load_checkpoint_path=<sft run>)" in said

    # a "warm start" that learned nothing (1 step at lr 1e-12): it has one, it is too weak
    sft = tmp_path / "sft"
    train(sft_config(sft, max_steps=1, learning_rate=1e-12), stderr=io.StringIO())
    run(rl_config(tmp_path / "rl", max_steps=1, load_checkpoint_path=str(sft), model_name=None, lora_rank=None))
    said = capsys.readouterr().err
    assert "no step trained" in said and "train that SFT run longer" in said
    assert "needs an SFT warm start" not in said
