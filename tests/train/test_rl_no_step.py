"""GRPO that never trains (every group's rewards equal: the model never answers in the format)
says so (after its first steps and at the end), with the fix that fits where it started."""

import io

from test_time_limit import rl_config, sft_config

from geospot.train.rl import run
from geospot.train.sft import train


def test_no_step_trained_names_the_fix_for_where_it_started(tmp_path, capsys):
    # an untrained tiny model: nothing parses, so every reward is the format penalty
    result = run(rl_config(tmp_path / "base", max_steps=1))
    said = capsys.readouterr().err
    assert result.steps == 1 and "no step trained" in said
    # the run's records say it too: the dashboard's steps cell and the model card's
    from geospot.eval.card import _steps
    from geospot.runs.store import RunReader

    summary = RunReader(tmp_path / "base").summary()
    assert (summary["steps"], summary["idle_steps"]) == (1, 1)
    assert _steps(tmp_path / "base", 1).startswith("1 (none of them trained: every group's rewards were equal")
    assert "needs an SFT warm start (load_checkpoint_path=<sft run>)" in said
    run(rl_config(tmp_path / "base-lora", max_steps=1, lora_rank=8))  # the engine's LoRA on random weights
    assert "a LoRA adapter (lora_rank=8) on them learns little" in capsys.readouterr().err

    # a "warm start" that learned nothing (1 step at lr 1e-12): it has one, it is too weak
    sft = tmp_path / "sft"
    train(sft_config(sft, max_steps=1, learning_rate=1e-12), stderr=io.StringIO())
    run(rl_config(tmp_path / "rl", max_steps=1, load_checkpoint_path=str(sft), model_name=None, lora_rank=None))
    said = capsys.readouterr().err
    assert "no step trained" in said and "train that SFT run longer" in said
    assert "needs an SFT warm start" not in said

    # a LoRA warm start on the random tiny model: longer SFT would not help, full fine-tuning does
    lora = tmp_path / "lora"
    train(sft_config(lora, max_steps=1, learning_rate=1e-12, lora_rank=4), stderr=io.StringIO())
    run(rl_config(tmp_path / "rl-lora", max_steps=1, load_checkpoint_path=str(lora), model_name=None, lora_rank=None))
    said = capsys.readouterr().err
    assert ("tiny:qwen2_5_vl:tiny has random weights, and a LoRA adapter (lora_rank=4) on them learns little: warm "
            "start from an SFT run with lora_rank=0") in said and "train that SFT run longer" not in said


def test_sft_says_a_lora_adapter_on_a_random_tiny_model_learns_little(tmp_path, capsys):
    """Also when lora_rank is typed: that is what a LoRA user does, and the format may never parse."""
    from geospot.train.sft import SFTConfig, prepare_keys

    for given in (set(), {"lora_rank"}):
        prepare_keys(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=8, log_path=str(tmp_path / "x")), given,
                     set())
        assert "a LoRA adapter on random weights learns little" in capsys.readouterr().err
    prepare_keys(SFTConfig(model_name="tiny:qwen2_5_vl:tiny", lora_rank=0, log_path=str(tmp_path / "x")), set(), set())
    assert "learns little" not in capsys.readouterr().err


def test_a_run_that_trains_nothing_says_so_early_too(tmp_path, capsys, monkeypatch):
    """Not only at the end: after UNTRAINED_WARN_STEPS steps with nothing trained it says so once,
    and that the run goes on (on a GPU each such step is paid for)."""
    import geospot.train.rl as rl

    monkeypatch.setattr(rl, "UNTRAINED_WARN_STEPS", 2)
    run(rl_config(tmp_path / "base", max_steps=4))
    said = capsys.readouterr().err
    assert said.count("no step trained: in its first 2 steps every group's rewards were equal") == 1
    assert "the run goes on (Ctrl-C stops it and says how to resume)" in said
    assert said.count("no step trained: on every step") == 1  # and the end's note, as before
    run(rl_config(tmp_path / "short", max_steps=2))  # a run that ends at the warning's step: the end's note only
    said = capsys.readouterr().err
    assert "in its first" not in said and "no step trained: on every step" in said


def test_a_resumed_run_speaks_of_the_steps_since_the_resume(tmp_path, capsys):
    """The steps before a resume may have trained: the note names the ones it saw (it said "on every step")."""
    run(rl_config(tmp_path / "base", max_steps=1))  # saved at its last step
    capsys.readouterr()
    run(rl_config(tmp_path / "base", max_steps=2))  # behavior_if_log_dir_exists=resume
    said = capsys.readouterr().err
    assert "no step trained: on every step since the resume at step 1 every group's rewards were equal" in said
