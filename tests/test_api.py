"""geospot.api: the commands from Python go the command line's way — a start run's keys are
inherited, keys are checked before anything runs, and a run's Predictor answers what
`geospot predict` answers (the run's image budget and shape, not the engine's defaults)."""

import io
import json
import math
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest

pytest.importorskip("torch")

from geospot import api  # noqa: E402
from geospot.config import ConfigError  # noqa: E402

MODEL = "tiny:qwen2_5_vl:tiny"
PHOTOS = Path(__file__).resolve().parents[2] / "shared" / "data" / "osv5m-samples" / "unlabeled"
QUIET = dict(eval_n=0, eval_at_start=False, save_every=0, behavior_if_log_dir_exists="raise")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A full fine-tune on 112 px squares: an engine left at its default budget (448²) asks it wrong."""
    log = tmp_path_factory.mktemp("api") / "sft"
    with redirect_stderr(io.StringIO()):
        result = api.sft(model_name=MODEL, lora_rank=0, data="synthetic:n=64,size=112,seed=0", batch_size=4,
                         learning_rate=1e-3, max_steps=2, log_path=str(log), **QUIET)
    assert result.steps == 2
    return log


def test_a_fine_tune_from_python_inherits_its_start_runs_model_as_the_command_line_does(run, tmp_path):
    """`train(SFTConfig(load_checkpoint_path=run))` filled every key not passed with its default (the
    hub's 3B model, lora_rank=32) and was refused; the function takes the start run's, as `geospot sft` does."""
    with redirect_stderr(io.StringIO()):
        result = api.sft(load_checkpoint_path=str(run), data="synthetic:n=64,size=112,seed=1", batch_size=4,
                         max_steps=1, log_path=str(tmp_path / "more"), **QUIET)
    saved = json.loads((result.log_dir / "config.json").read_text())["config"]
    assert result.steps == 1 and saved["model_name"] == MODEL and saved["lora_rank"] == 0


def test_keys_are_checked_as_the_command_line_checks_them_before_any_folder_is_made(tmp_path):
    with pytest.raises(ConfigError, match="did you mean 'batch_size'"):
        api.sft(model_name=MODEL, batchsize=4)
    with pytest.raises(ConfigError, match=r"batch_size='4' is a str, not an int"):
        api.sft(model_name=MODEL, batch_size="4")
    log = tmp_path / "rl"
    with pytest.raises(ConfigError, match=r"env_type='nonsense' is not one of single, telescoping"):
        api.rl(model_name=MODEL, env_type="nonsense", log_path=str(log))
    with pytest.raises(ConfigError, match=r"hier_turns=\(5,\) holds 5, an int, not a str"):
        api.rl(model_name=MODEL, hier_turns=[5], log_path=str(log))  # (a list is a tuple's Python spelling)
    with pytest.raises(ConfigError, match=r"^data is a spec string .*, not a DataFrame; write a table to parquet"):
        api.sft(model_name=MODEL, data=type("DataFrame", (), {})(), log_path=str(log))
    with pytest.raises(ConfigError, match=r"is not in a module a resume can import"):
        api.rl(model_name=MODEL, reward=lambda d, g, t: 1.0, log_path=str(log))
    assert not log.exists()
    # Python's own spellings: a Path, a numpy number, a list; a module's function as the reward
    import numpy as np

    from geospot.config import config_from
    from geospot.envs.rewards import KernelReward
    from geospot.train.rl import RLConfig

    cfg = config_from(RLConfig, {"log_path": tmp_path / "x", "max_steps": np.int64(3), "tau_end_km": np.float32(25),
                                 "hier_turns": ["country", "coords"]})
    assert (cfg.log_path, cfg.max_steps, cfg.hier_turns) == (str(tmp_path / "x"), 3, ("country", "coords"))
    assert type(cfg.max_steps) is int and type(cfg.tau_end_km) is float
    assert api._importable_name(KernelReward) == "geospot.envs.rewards:KernelReward"


def test_a_runs_predictor_answers_what_geospot_predict_answers(run):
    from geospot.eval.loading import load_model
    from geospot.eval.predict_cli import predict_main

    photos = sorted(PHOTOS.glob("*.jpg"))[:3]
    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(io.StringIO()):
        assert predict_main([f"model={run}", *map(str, photos), "--json"]) == 0
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    ask = api.Predictor(str(run))
    assert ask.engine.cfg.max_pixels == 112 * 112  # the run's budget (load_model alone takes it too)
    assert load_model(str(run)).engine.cfg.max_pixels == 112 * 112
    rows = ask([*photos, photos[0].read_bytes(), "missing.jpg"])
    assert [(r["name"], r["raw_text"]) for r in rows[:3]] == [(str(p), r["raw_text"]) for p, r in zip(photos, printed)]
    # (and asked at the engine's default budget, as load_model did, the answers differ)
    assert [r["raw_text"] for r in api.Predictor(str(run), max_pixels=448 * 448)(photos)] != [
        r["raw_text"] for r in rows[:3]]
    assert rows[3]["name"] == "image-3" and rows[3]["raw_text"] == rows[0]["raw_text"]  # bytes: the same photo
    assert rows[4]["name"] == "missing.jpg" and math.isnan(rows[4]["latitude"])
    assert rows[4]["skipped"] == "missing.jpg: no such image or folder"
    # one path is one image (a string was read letter by letter); a folder is its photos, as predict walks it
    assert [r["raw_text"] for r in ask(str(photos[0]))] == [rows[0]["raw_text"]]
    folder = ask([PHOTOS, Path(photos[1])])
    assert [r["name"] for r in folder] == [*map(str, sorted(PHOTOS.glob("*.jpg"))), str(photos[1])]
    assert folder[1]["raw_text"] == folder[-1]["raw_text"] == rows[1]["raw_text"]  # (named twice: two rows)


def test_a_predictor_says_a_run_of_an_env_geospot_does_not_know_and_takes_one_named(run, tmp_path):
    """A run trained with an env kind of the user's own code (registered in envs.kinds.KINDS) was a
    KeyError in predict and eval; now one sentence, and env_type= asks it as a known env."""
    import shutil

    other = tmp_path / "own-env"
    shutil.copytree(run, other)
    record = json.loads((other / "config.json").read_text())
    record["config"]["prompt_style"] = "hemisphere"
    (other / "config.json").write_text(json.dumps(record))
    with pytest.raises(ConfigError, match="trained with env_type='hemisphere', which geospot does not know"):
        api.Predictor(str(other))
    assert api.Predictor(str(other), env_type="single").cfg.env_type == "single"
