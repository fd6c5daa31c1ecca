"""engines.start_checks.check_start: what used to fail only after the data was opened or a model
half loaded (a traceback, or 24 lines) is one ConfigError sentence before anything starts."""

import pytest

from geospot.config import ConfigError
from geospot.engines.start_checks import check_start


def test_tinker_without_a_key(monkeypatch):
    import geospot.engines.tinker_engine as te

    monkeypatch.setattr(te, "_stored_key", lambda: None)
    with pytest.raises(ConfigError, match="TINKER_API_KEY") as e:
        check_start("tinker", "Qwen/Qwen3-VL-30B-A3B-Instruct", None, env={})
    assert "\n" not in str(e.value)
    check_start("tinker", "Qwen/Qwen3-VL-30B-A3B-Instruct", None, env={"TINKER_API_KEY": "tml-abc"})


def test_tinker_checkpoint_with_the_local_engine():
    with pytest.raises(ConfigError, match="engine=tinker"):
        check_start("local", "tiny:qwen2_5_vl", "tinker://run/weights/step-000001", env={})
    # RL with no engine given: a tinker:// path is no run folder to inherit engine=tinker from, so the
    # local default would take it and fail after loading the model (it did, with a traceback)
    with pytest.raises(ConfigError, match="the local engine \\(the default\\) cannot load; add engine=tinker"):
        check_start(None, None, "tinker://run/weights/step-000001", env={})
    check_start("tinker", None, "tinker://run/weights/step-000001", env={"TINKER_API_KEY": "tml-abc"})


@pytest.mark.parametrize(("name", "match"), [
    ("/no/such/folder", "not a model folder"),
    ("./relative/missing", "not a model folder"),
    ("a/b/c", "not a model folder"),
    ("nobody/no-such-model-xyz", "HF_HUB_OFFLINE is set"),
    ("bad name!!/x", "not a valid hub id"),
])
def test_a_model_that_cannot_be_had_offline(name, match):
    with pytest.raises(ConfigError, match=match) as e:
        check_start("local", name, None, env={"HF_HUB_OFFLINE": "1"})
    assert "\n" not in str(e.value) and "model_name=" in str(e.value)


def test_models_that_are_fine(tmp_path):
    check_start("local", "tiny:qwen2_5_vl:small", None, env={"HF_HUB_OFFLINE": "1"})
    (tmp_path / "config.json").write_text("{}")
    check_start("local", str(tmp_path), None, env={"HF_HUB_OFFLINE": "1"})  # a local model folder


def test_a_folder_that_holds_no_model_and_an_empty_name(tmp_path):
    """model_name= a run folder (load_checkpoint_path's), a folder without config.json, or nothing:
    one sentence before the data opens (they were tracebacks from the model load)."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    with pytest.raises(ConfigError, match=r"is a training run, not a model folder; to train on from its weights pass "
                                          rf"load_checkpoint_path={run} "):
        check_start("local", str(run), None, env={})
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    with pytest.raises(ConfigError, match=r"holds no model \(it holds a.txt: no config.json\)"):
        check_start("local", str(tmp_path / "notes"), None, env={})
    with pytest.raises(ConfigError, match=r"^model_name= is empty; give a hub id"):
        check_start("local", "", None, env={})
    check_start("local", None, None, env={})  # None: inherited from a start run, nothing typed


def test_sft_fails_before_the_model_and_leaves_no_folder(tmp_path, monkeypatch, capsys):
    from geospot import engines
    from geospot.train import sft

    monkeypatch.setattr(engines, "make_engine", lambda *a, **k: pytest.fail("model loaded"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    log = tmp_path / "run"
    rc = sft.main(["model_name=nobody/no-such-model-xyz", "data=synthetic:n=20,size=16", f"log_path={log}",
                   "behavior_if_log_dir_exists=raise"])
    err = capsys.readouterr().err
    assert rc == 2 and "model_name='nobody/no-such-model-xyz'" in err and "Traceback" not in err
    assert not log.exists()


def test_a_folder_geospot_model_tiny_wrote_is_a_random_tiny_model(tmp_path):
    """`geospot model tiny --out DIR` then model_name=DIR: the same random weights as tiny:…, so the
    same notes (a LoRA adapter on them learns little); they were said only for the tiny: name."""
    from geospot.engines.start_checks import random_tiny
    from geospot.models.tiny import build_tiny_model

    assert random_tiny(str(build_tiny_model())) and random_tiny("tiny:qwen2_5_vl")
    assert not random_tiny(str(tmp_path)) and not random_tiny(None) and not random_tiny("Qwen/Qwen2.5-VL-3B")


def test_an_export_names_the_key_that_takes_it(tmp_path):
    """An adapter export is no whole model and no checkpoint: its run is named; a full export is a
    model (model_name), not a checkpoint. Hand-made export records, no model loads."""
    import json

    from geospot.engines.start_checks import export_problem
    from geospot.runs.model_spec import ModelSpec, export_record

    spec = ModelSpec(kind="sft", base_model="tiny:qwen2_5_vl", engine="local", lora_rank=4, trained_styles=("single",),
                     env_type="single", prompt="", turn_prompts=(), answer_decimals=2, max_pixels=448 * 448,
                     image_side=None, max_tokens=24, data=None, run_dir=tmp_path / "runs" / "sft")
    for kind in ("adapter", "full"):
        (tmp_path / kind).mkdir()
        (tmp_path / kind / "geospot.json").write_text(json.dumps(export_record(spec, kind, "tiny:qwen2_5_vl", {})))
    run = tmp_path / "runs" / "sft"
    for key in ("model_name", "load_checkpoint_path"):
        assert export_problem(key, str(tmp_path / "adapter")) == (
            f"{key}={str(tmp_path / 'adapter')!r} is a LoRA adapter export, not a whole model; to train on from its "
            f"weights give its run: load_checkpoint_path={run} (or export that run with merged=true and pass "
            "model_name=<that folder>)")
    full = str(tmp_path / "full")
    assert export_problem("model_name", full) is None  # a whole model: it trains on from it
    assert export_problem("load_checkpoint_path", full).startswith(
        f"load_checkpoint_path={full!r} is an export (full weights: a whole model), not a checkpoint; pass "
        f"model_name={full}")
    with pytest.raises(ConfigError, match="is a LoRA adapter export"):  # said with the other start checks
        check_start("local", str(tmp_path / "adapter"), None)
    assert export_problem("model_name", str(tmp_path)) is None  # no export
