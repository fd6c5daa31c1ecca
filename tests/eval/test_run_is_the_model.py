"""After training, the run is the model: `geospot predict` / `geospot eval` on a run folder, an
RL run or a checkpoints/<step> folder with NO other key ask the model the way it was trained
(telescoping prompts, the 112 px image budget, its answer length) and parse real photos.

One short telescoping SFT run (tiny model, full fine-tuning, 120 steps of 8 synthetic 112 px
images: 40 steps left it at 0 % parsed, 80 steps at 100 % on its synthetic held-out set but
10/12 on real photos, 120 steps 12/12) and two GRPO steps on top of it serve every test."""

import io
import json
from pathlib import Path

import pytest

from geospot.eval import cli

OSV = Path("/work/shared/data/osv5m-samples")
MODEL = "tiny:qwen2_5_vl:tiny"
DATA = "synthetic:n=400,size=112,seed=0"

pytestmark = pytest.mark.skipif(not OSV.exists(), reason="needs the shared OSV-5M samples")


@pytest.fixture(scope="module")
def sft_run(tmp_path_factory):
    from geospot.train.sft import SFTConfig, train

    log = tmp_path_factory.mktemp("runmodel") / "sft"
    train(SFTConfig(model_name=MODEL, lora_rank=0, train_vision=True, data=DATA, eval_n=16, prompt_style="telescoping",
                    answer_decimals=1, batch_size=8, learning_rate=1e-2, lr_schedule="cosine", warmup_steps=3,
                    max_steps=120, eval_every=60, eval_at_start=False, save_every=60, keep_checkpoints=0,
                    eval_batch_size=16, eval_max_tokens=16, log_path=str(log), behavior_if_log_dir_exists="raise"),
          stderr=io.StringIO())
    return log


@pytest.fixture(scope="module")
def rl_run(sft_run):
    from geospot.train.rl import RLConfig, run

    log = sft_run.parent / "rl"
    run(RLConfig(env_type="telescoping", load_checkpoint_path=str(sft_run), batch_size=2, group_size=2, max_steps=2,
                 eval_every=2, eval_n=8, eval_at_start=False, learning_rate=1e-5, max_tokens=16, save_every=2,
                 log_images_every=1, log_path=str(log), behavior_if_log_dir_exists="raise"))
    return log


@pytest.fixture(params=["sft", "rl", "checkpoint"])
def model_dir(request, sft_run):
    if request.param == "rl":
        return request.getfixturevalue("rl_run")
    return sft_run / "checkpoints" / "120" if request.param == "checkpoint" else sft_run


def test_the_spec_of_a_run(sft_run, rl_run):
    from geospot.models.load import image_budget
    from geospot.prompts import TELESCOPING_PROMPTS
    from geospot.runs.model_spec import model_spec

    sft, rl, ck = model_spec(sft_run), model_spec(rl_run), model_spec(sft_run / "checkpoints" / "60")
    assert (sft.kind, sft.env_type, sft.lora_rank, sft.adapter) == ("sft", "telescoping", 0, False)
    assert sft.image_side == 112 and image_budget(sft) == 112 * 112 and sft.max_pixels == 448 * 448
    assert sft.answer_decimals == 1 and sft.max_tokens == 16 and sft.turn_prompts == TELESCOPING_PROMPTS
    assert ck.step == 60 and sft.step == 120
    # RL records only what it changed: decimals, data and image budget come from its SFT run
    assert (rl.kind, rl.env_type, rl.base_model, rl.answer_decimals, rl.data) == ("rl", "telescoping", MODEL, 1, DATA)
    assert image_budget(rl) == 112 * 112 and rl.trained_styles == ("telescoping",)


def test_predict_with_no_other_key_parses_real_photos(model_dir, capsys):
    assert cli.predict_main([f"model={model_dir}", str(OSV / "unlabeled"), "--json"]) == 0
    out = capsys.readouterr()
    rows = [json.loads(line) for line in out.out.splitlines()]
    parsed = sum(r["latitude"] is not None for r in rows)
    assert len(rows) == 12 and parsed / len(rows) >= 0.9, [r["raw_text"] for r in rows]
    assert all(len(r["turns"]) == 3 for r in rows)  # asked with the telescoping turns it trained on
    assert "from the run: env_type=telescoping, max_pixels=12544" in out.err
    assert "; weights: its checkpoint of step " in out.err  # which of the run's weights answered


def _parsed_real_photos(model, capsys, *keys) -> tuple[int, list[dict]]:
    assert cli.predict_main([f"model={model}", str(OSV / "images"), str(OSV / "unlabeled"), *keys, "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(rows) == 20
    return sum(r["latitude"] is not None for r in rows), rows


def test_a_run_trained_on_squares_is_asked_with_square_crops_of_every_real_photo(rl_run, capsys):
    # trained on 112 px synthetic squares only: real photos (16:9, 4:3) are asked as centre crops,
    # as a `square=true` stream prepares them; asked uncropped, the coarse turn of a model this
    # small often ends after the latitude (the demo's final run: 15/20 -> 20/20)
    parsed, rows = _parsed_real_photos(rl_run, capsys)
    print("square crops", parsed, "uncropped", _parsed_real_photos(rl_run, capsys, "square=false")[0])
    assert parsed == 20, [r["turn_texts"] for r in rows if r["latitude"] is None]
    assert all(len(r["turns"]) == 3 for r in rows)


def test_eval_with_no_other_key_parses_and_records_where_settings_came_from(model_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # a plain model folder would eval into ./runs/eval
    assert cli.eval_main([f"model={model_dir}", f"data={OSV}", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["metrics"]["n"] == 8 and summary["metrics"]["parsed"] >= 0.9
    assert summary["env_type"] == "telescoping"
    # (reasoning is said only for a run that reasoned: its keys come with the env keys, when they differ)
    assert summary["run_defaults"]["from_run"] == {"env_type": "telescoping", "max_pixels": 12544, "max_tokens": 16,
                                                    "square": True}


def test_a_key_overrides_is_recorded_and_never_overwrites_another_eval(sft_run, capsys):
    assert cli.eval_main([f"model={sft_run}", f"data={OSV}", "n=2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    # the same default folder, another image budget: a new folder, the first eval intact
    assert cli.eval_main([f"model={sft_run}", f"data={OSV}", "n=2", "max_pixels=50176", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    a, b = Path(first["summary"]).parent, Path(second["summary"]).parent
    assert b != a and b.parent == a.parent and b.name.rsplit("-", 1)[0].startswith(a.name.rsplit("-", 1)[0])
    assert second["run_defaults"]["overridden"] == {"max_pixels": 50176}
    assert json.loads(Path(first["summary"]).read_text())["config"]["max_pixels"] == 12544
    # the style named on the command line wins: single-turn asks the telescoping model once
    assert cli.eval_main([f"model={sft_run}", f"data={OSV}", "n=2", "env_type=single", "--json"]) == 0
    third = json.loads(capsys.readouterr().out)
    assert third["env_type"] == "single" and third["run_defaults"]["overridden"] == {"env_type": "single"}


def test_compare_takes_training_runs_and_eval_folders(sft_run, rl_run, capsys):
    assert cli.eval_main(["--compare", str(sft_run), str(rl_run), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)["runs"]
    assert set(rows) == {"sft (held-out, step 120)", "rl (held-out, step 2)"}
    assert all(0 <= r["parsed"] <= 1 and r["n"] in (8, 16) for r in rows.values())
    assert cli.eval_main(["--compare", str(sft_run / "checkpoints")]) == 2  # neither: one clear sentence
    assert "neither an eval folder" in capsys.readouterr().err
    assert cli.eval_main(["--compare", str(sft_run), str(sft_run.parent / "nope")]) == 2  # a typo: said as such
    assert capsys.readouterr().err.strip().endswith("nope: no such file or folder")
