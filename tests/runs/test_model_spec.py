"""What a run folder says about its model, from hand-made folders (no model loads)."""

import json

import pytest

from geospot.runs.model_spec import data_image_side, data_square, model_spec


def _run(path, kind, config, step=5):
    (path / "checkpoints" / str(step) / "engine").mkdir(parents=True)
    (path / "checkpoints" / str(step) / "state.json").write_text(json.dumps({"step": step, "engine_path": "engine"}))
    (path / "config.json").write_text(json.dumps({"kind": kind, "config": config}))
    return path


def test_sft_both_asks_single_and_an_rl_run_on_top_asks_its_env(tmp_path):
    sft = _run(tmp_path / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 8, "max_pixels": 200704,
                                          "prompt_style": "both", "answer_decimals": 3, "eval_max_tokens": 20,
                                          "data": "synthetic:n=100,size=56"})
    spec = model_spec(sft)
    assert spec.trained_styles == ("single", "telescoping") and spec.env_type == "single"
    assert (spec.adapter, spec.answer_decimals, spec.max_tokens, spec.step) == (True, 3, 20, 5)
    assert spec.image_side == 56  # (the budget it is asked with: tests/models/test_image_budget.py)
    rl = _run(tmp_path / "rl", "rl", {"env_type": "telescoping", "load_checkpoint_path": str(sft), "max_pixels": None,
                                       "max_tokens": 24, "model_name": None, "data": None}, step=3)
    spec = model_spec(rl / "checkpoints" / "3")
    assert spec.env_type == "telescoping" and spec.trained_styles == ("single", "telescoping")
    assert (spec.base_model, spec.lora_rank, spec.max_pixels) == ("tiny:qwen2_5_vl:tiny", 8, 200704)
    assert spec.answer_decimals == 3
    assert spec.data == "synthetic:n=100,size=56" and spec.max_tokens == 24 and spec.step == 3


def test_a_relative_start_run_is_read_from_the_folder_the_run_was_started_in(tmp_path, monkeypatch):
    """rl load_checkpoint_path=runs/sft, started in proj/: the RL run asked from any folder still
    knows what its start run trained (the base model, the rank, the prompts it saw)."""
    proj = tmp_path / "proj"
    _run(proj / "runs" / "sft", "sft", {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 8, "prompt_style": "both"})
    rl = _run(proj / "runs" / "rl", "rl", {"env_type": "telescoping", "load_checkpoint_path": "runs/sft",
                                            "model_name": None}, step=3)
    record = json.loads((rl / "config.json").read_text())
    (rl / "config.json").write_text(json.dumps({**record, "started_in": str(proj)}))
    monkeypatch.chdir(tmp_path)  # not proj: "runs/sft" is no folder from here
    spec = model_spec(rl)
    assert (spec.base_model, spec.lora_rank, spec.trained_styles) == ("tiny:qwen2_5_vl:tiny", 8,
                                                                      ("single", "telescoping"))


def test_a_run_that_starts_from_itself_does_not_loop(tmp_path):
    run = _run(tmp_path / "rl", "rl", {"env_type": "single", "model_name": "m"})
    cfg = json.loads((run / "config.json").read_text())
    cfg["config"]["load_checkpoint_path"] = str(run)
    (run / "config.json").write_text(json.dumps(cfg))
    assert model_spec(run).env_type == "single"


def test_image_side_of_data_specs():
    assert data_image_side("synthetic:n=10") == 112  # the synthetic default
    assert data_image_side("synthetic:n=10,size=224") == 224
    assert data_image_side("hf:osv5m/osv5m") == 512  # prepared real photos: max_side 512
    assert data_image_side(None) is None


def test_not_a_run_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a training run"):
        model_spec(tmp_path)


def test_image_side_of_mixed_and_weighted_specs():
    assert data_image_side("synthetic:n=10,size=64@2;synthetic:size=96") == 96
    assert data_image_side("synthetic:n=10,size=64;/data/osv5m@1") == 512
    assert data_image_side("synthetic:size=abc") is None
    # photos prepared to another side (a stream option: any part's applies to the whole stream), or kept as they are
    assert data_image_side("/data/photos,max_side=256") == 256
    assert data_image_side("synthetic:n=10,size=64;/data/osv5m,max_side=320@1") == 320
    assert data_image_side("/data/photos,max_side=0") is None


def test_square_images_of_data_specs():
    assert data_square("synthetic:n=10,size=64@2;synthetic:size=96")  # synthetic worlds paint squares
    assert not data_square("synthetic:n=10;/data/osv5m@1")  # real photos keep their shape...
    assert data_square("synthetic:n=10;/data/osv5m,square=true@1")  # ...unless the stream crops (whole stream)
    assert data_square("hf:osv5m/osv5m,square=1") and not data_square("hf:osv5m/osv5m,square=false")
    assert not data_square(None) and not data_square("")
    # the words a bool key reads on a command line read the same in a spec
    assert data_square("/data/osv5m,square=on") and data_square("/data/osv5m,square=yes")
    assert not data_square("/data/osv5m,square=off")
