"""A run started from another run's weights continues that model in both loops: the keys the
command line leaves out are the start run's (engine, answers' decimals, image shape, data), said on
stderr; a key typed wins; a resumed run is left as it was. Hand-made run folders, no model loads."""

import json

from geospot.config import parse_overrides
from geospot.eval.run_defaults import given_keys
from geospot.train.inherit import sft_from_start_run, square_from_start_run
from geospot.train.rl import RLConfig, env_from_start_run
from geospot.train.sft import SFTConfig

START = {"model_name": "tiny:qwen2_5_vl:tiny", "lora_rank": 8, "max_pixels": None, "train_vision": False,
         "data": "synthetic:n=100,size=112", "answer_decimals": 1, "telescoping_decimals": [0, 0],
         "prompt_style": "both"}


def start_run(tmp_path, config=START, kind="sft"):
    run = tmp_path / "start"
    (run / "checkpoints" / "3").mkdir(parents=True)
    (run / "checkpoints" / "3" / "state.json").write_text(json.dumps({"step": 3}))
    (run / "config.json").write_text(json.dumps({"kind": kind, "config": config}))
    return run


def sft(argv, resumed=frozenset()):
    return sft_from_start_run(parse_overrides(SFTConfig, argv), given_keys(argv), set(resumed))


def test_a_fine_tune_on_new_photos_continues_the_start_runs_model(tmp_path, capsys):
    run = start_run(tmp_path)
    cfg = sft([f"load_checkpoint_path={run}", "data=/photos", "max_steps=5"])
    assert (cfg.model_name, cfg.lora_rank, cfg.max_pixels, cfg.train_vision) == (
        "tiny:qwen2_5_vl:tiny", 8, 12544, False)
    assert (cfg.answer_decimals, cfg.telescoping_decimals) == (1, (0, 0))
    # the new photos are shown as the run saw its 112 px square images: 12,544 pixels, cropped square
    assert cfg.data == "/photos,square=true"
    err = capsys.readouterr().err
    assert err.startswith("load_checkpoint_path: from the run: model_name=tiny:qwen2_5_vl:tiny, lora_rank=8, ")
    assert "max_pixels=12544" in err and "square=True" in err and "answer_decimals=1" in err
    assert "data=" not in err  # the data was typed: the run added only its square crop
    # a key typed wins; no data typed: the start run's, at its own budget; a shape the data names is kept
    cfg = sft([f"load_checkpoint_path={run}", "lora_rank=4", "answer_decimals=3"])
    assert (cfg.lora_rank, cfg.answer_decimals, cfg.data) == (4, 3, "synthetic:n=100,size=112")
    assert sft([f"load_checkpoint_path={run}", "data=/photos", "max_pixels=50176"]).max_pixels == 50176
    assert sft([f"load_checkpoint_path={run}", "data=/photos,square=false"]).data == "/photos,square=false"
    # a resumed run is what it was (its keys taken from its config.json); the command its Ctrl-C used to
    # print typed the data again: shaped as at its start, so it is the data the run saved
    resumed = sft([f"load_checkpoint_path={run}", "data=/photos"], resumed={"model_name", "max_pixels"})
    assert (resumed.data, resumed.model_name, resumed.max_pixels) == (
        "/photos,square=true", SFTConfig().model_name, SFTConfig().max_pixels)
    resumed = sft([f"load_checkpoint_path={run}"], resumed={"data", "model_name"})
    assert (resumed.data, resumed.model_name) == (SFTConfig().data, SFTConfig().model_name)
    # no start run, or a remote one: nothing to read
    assert sft(["data=/photos"]) == parse_overrides(SFTConfig, ["data=/photos"])
    assert sft(["load_checkpoint_path=tinker://x", "data=/photos"]).model_name == SFTConfig().model_name


def test_rl_on_new_photos_crops_them_as_its_start_run_trained(tmp_path, capsys):
    run = start_run(tmp_path)
    argv = [f"load_checkpoint_path={run}", "data=/photos"]
    cfg = env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv))
    assert (cfg.data, cfg.max_pixels) == ("/photos,square=true", 112 * 112)
    err = capsys.readouterr().err
    assert "max_pixels=12544" in err and "square=True" in err and "data=/photos" not in err
    assert env_from_start_run(parse_overrides(RLConfig, argv), given_keys(argv), {"data"}).data == "/photos"


def test_square_from_start_run_by_hand():
    synthetic, photos = "synthetic:n=10", "/p"
    assert square_from_start_run(photos, synthetic) == "/p,square=true"
    assert square_from_start_run(photos, "/q") == "/p"  # the start run saw uncropped photos
    assert square_from_start_run(photos, "/q,square=true") == "/p,square=true"
    assert square_from_start_run("synthetic:n=5", synthetic) == "synthetic:n=5"  # square already
    assert square_from_start_run("/p,square=false", synthetic) == "/p,square=false"
    assert square_from_start_run(None, synthetic) is None
