"""The demo's recipe (geospot/demo_recipe.py): the configs of its stages, each starting from the one
before it, and where `zoom` and the τ study's arms go."""

from dataclasses import replace

from geospot.demo_recipe import PRESETS, DemoConfig, stage_configs, tau_configs


def test_each_grpo_stage_starts_from_the_one_before(tmp_path):
    out = tmp_path / "x"
    cfg = DemoConfig(out=str(out))
    sft, single, rl = stage_configs(cfg)
    for c in (sft, single, rl):
        c.validate()
    assert single.env_type == "telescoping" and single.load_checkpoint_path == sft.log_path
    assert rl.load_checkpoint_path == single.log_path and sft.prompt_style == "both"
    # the default: one GRPO stage, a quarter of each batch telescoping, written to `rl` (what README's commands name)
    assert (single.mix_env_type, single.mix_share, single.log_path, cfg.rl_steps) == ("single", 0.75, f"{out}/rl", 0)
    assert single.advantage == rl.advantage == "own_turn"  # each telescoping turn paid for its own distance / gain
    assert stage_configs(replace(cfg, rl_steps=3))[1].log_path == f"{out}/rl-single"
    assert (rl.model_name, rl.lora_rank, rl.train_vision) == (cfg.model_name, 0, True)  # not lost on the way
    assert sft.behavior_if_log_dir_exists == "raise"  # the demo never deletes a run itself
    # no single-turn stage: the telescoping stage starts from SFT
    q = PRESETS["quick"]
    sft, _, rl = stage_configs(replace(cfg, sft_steps=q.sft_steps, rl_single_steps=0, rl_steps=2))
    rl.validate()
    assert rl.env_type == "telescoping" and rl.load_checkpoint_path == sft.log_path and rl.max_steps == 2


def test_zoom_reaches_every_telescoping_stage_and_no_tau_arm(tmp_path):
    zoomed = DemoConfig(out=str(tmp_path / "z"), zoom=2, tau_steps=7)
    assert all(c.zoom == 2 for c in stage_configs(zoomed))
    for c in (*stage_configs(zoomed), *tau_configs(zoomed)[1:]):
        c.validate()
    # the τ study's arms are single-turn only: they ask no telescoping turn
    assert {c.zoom for c in tau_configs(zoomed)[1:]} == {1}


def test_tau_arms_differ_only_in_tau(tmp_path):
    out = tmp_path / "x"
    fmt, follow, fixed = tau_configs(DemoConfig(out=str(out), tau_steps=7))
    assert (follow.tau_schedule, fixed.tau_schedule, fixed.tau_start_km) == ("follow_error", "constant", 25.0)
    assert follow.max_steps == fixed.max_steps == 7
    assert follow.load_checkpoint_path == fmt == f"{out}/sft/checkpoints/150"
    assert fixed.load_checkpoint_path == fmt and (follow.seed, follow.data) == (fixed.seed, fixed.data)


def test_the_demo_is_judged_on_every_id_no_stage_trains_on():
    from geospot.data.stream import load_samples, split_of

    cfg, default = DemoConfig(), PRESETS["default"]
    held = load_samples(cfg.data, split=cfg.eval_split, n=default.eval_n + 50)
    # the default preset takes all of them: a narrower noise band than the val split alone gives
    assert len(held) == default.eval_n
    assert {split_of(s.id) for s in held} == {"val", "test"}  # neither is read by SFT or GRPO (split="train")
