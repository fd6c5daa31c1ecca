"""`geospot export` says what it wrote and the card's code runs as written: a LoRA run exports
a PEFT adapter that plain PEFT loads (log-probs equal to the engine's), a full fine-tuning run
exports full weights; both cards' code blocks are executed in a fresh interpreter."""

import io
import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from card_runs import card_answers, predicted_answers, run_card  # noqa: E402

from geospot.eval.card import card_code  # noqa: E402
from geospot.eval.export import export_main  # noqa: E402

MODEL = "tiny:qwen2_5_vl:tiny"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module", params=[4, 0], ids=["lora", "full"])
def run(request, tmp_path_factory):
    from geospot.train.sft import SFTConfig, train

    log = tmp_path_factory.mktemp("export") / "run"
    train(SFTConfig(model_name=MODEL, lora_rank=request.param, lora_alpha=8.0, data="synthetic:n=64,size=112,seed=0",
                    eval_n=4, prompt_style="telescoping", answer_decimals=1, batch_size=4, learning_rate=1e-2,
                    max_steps=3, eval_every=0, eval_at_start=False, save_every=0, eval_max_tokens=12,
                    log_path=str(log), behavior_if_log_dir_exists="raise"), stderr=io.StringIO())
    return log, request.param


@pytest.fixture(scope="module")
def exported(run, tmp_path_factory):
    log, rank = run
    out = tmp_path_factory.mktemp("out") / "export"
    buf = io.StringIO()
    from contextlib import redirect_stdout

    with redirect_stdout(buf):
        assert export_main([f"checkpoint={log}", f"out={out}"]) == 0
    return out, buf.getvalue(), rank


def test_export_says_what_it_wrote(exported):
    out, printed, rank = exported
    card = (out / "README.md").read_text()
    if rank:
        assert printed.startswith("exported adapter: PEFT LoRA adapter")
        assert (out / "adapter_config.json").exists() and not (out / "model.safetensors").exists()
        assert "library_name: peft" in card and "PEFT LoRA adapter (rank 4)" in card
        from geospot.models.load import resolve_model_path

        # a tiny base exists only on this machine: its local folder; a hub base: the hub id
        base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
        assert base == str(resolve_model_path(MODEL).resolve())
    else:
        assert printed.startswith("exported full: full weights (full fine-tuning")
        assert (out / "model.safetensors").exists() and not (out / "adapter_config.json").exists()
        assert "library_name: transformers" in card and "PEFT" not in card.split("## Use")[0]
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "preprocessor_config.json"):
        assert (out / name).exists(), name
    # the weights are as readable as every other file (safetensors writes them owner-only)
    assert {f.stat().st_mode & 0o777 for f in out.iterdir()} == {(out / "README.md").stat().st_mode & 0o777}
    assert json.loads((out / "preprocessor_config.json").read_text())["max_pixels"] == 112 * 112
    # the card names how it was trained and says what to do without torchvision
    for text in ("| prompt style | telescoping (3 turns) |", "| answer decimals | 1 |", "max_pixels=12544",
                 "112 px", "torchvision", "## Evaluation", "| image shape | square", "image.crop("):
        assert text in card, text


def test_the_cards_code_runs_as_written(exported):
    out, _, _ = exported
    stdout = run_card(card_code((out / "README.md").read_text()), out.parent)
    assert stdout.startswith("turn 1: "), stdout
    # ... and answers what `geospot predict` answers, turn by turn (greedy, the same placeholders banned)
    card_turns, asked = card_answers(stdout), predicted_answers(out, out / "example.jpg")
    assert card_turns == asked[:len(card_turns)] and card_turns


def test_the_cards_code_never_answers_a_placeholder(exported, tmp_path):
    """A head doctored to favour <|image_pad|> or <|video_pad|> at every step (rows of +-1000 x a
    token's row: one of the two has the largest logit wherever that token's logit is not 0).
    geospot's sampler bans both; the card's code must too, or its answer is (invisible) placeholders."""
    import shutil

    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    out, _, rank = exported
    if rank:
        pytest.skip("an adapter's head is its base model's, not in the export")
    folder = tmp_path / "doctored"
    shutil.copytree(out, folder)
    tok = AutoTokenizer.from_pretrained(folder)
    weights = load_file(folder / "model.safetensors")
    head = weights["lm_head.weight"]
    row = head[tok("Latitude").input_ids[0]].clone()
    for sign, name in ((1000.0, "<|image_pad|>"), (-1000.0, "<|video_pad|>")):
        head[tok.convert_tokens_to_ids(name)] = sign * row
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    code = card_code((folder / "README.md").read_text()).replace(str(out), str(folder))
    card_turn_1 = card_answers(run_card(code, tmp_path))[0]
    assert card_turn_1 == predicted_answers(folder, folder / "example.jpg")[0] != ""


def test_plain_peft_loads_the_adapter_with_the_engines_logprobs(run, exported):
    out, _, rank = exported
    if not rank:
        pytest.skip("full fine-tuning exports no adapter")
    from peft import PeftModel
    from transformers import AutoModelForImageTextToText

    from geospot.data import load_samples
    from geospot.engines.datums import make_datum
    from geospot.eval.loading import load_model
    from geospot.prompts import SINGLE_TURN_PROMPT, user_message

    engine = load_model(str(run[0]), device="cpu", max_pixels=112 * 112).engine
    base = json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"]
    model = PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(base), out).eval()
    image = load_samples("synthetic:n=64,size=112,seed=0", split="train", n=1)[0].image
    prompt = engine.renderer.generation_prompt([user_message(image, SINGLE_TURN_PROMPT)])
    answer = engine.renderer.tokenizer.encode("Latitude: 12.3\nLongitude: 45.6", add_special_tokens=False)
    full = prompt.append_tokens(answer)
    ids = torch.from_numpy(engine.renderer.tokens_of(full))[None]
    pv, grid = engine.image_processor([c.image for c in full.images()])
    with torch.no_grad():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv, image_grid_thw=grid,
                       mm_token_type_ids=(ids == engine.renderer.image_pad_id).int()).logits[0].float()
    lp_plain = torch.log_softmax(logits[:-1], -1).gather(-1, ids[0, 1:, None])[:, 0].numpy()
    lp_engine = np.asarray(engine.forward([make_datum(full, weights=np.ones(full.length, np.float32))])[0])
    mask = full.token_mask()[1:]
    assert np.abs(lp_plain[mask] - lp_engine[mask]).max() < 1e-5


def test_an_adapter_names_its_base_by_hub_id_when_it_came_from_the_hub(tmp_path):
    from geospot.eval.export import base_reference

    assert base_reference("Qwen/Qwen2.5-VL-3B-Instruct") == "Qwen/Qwen2.5-VL-3B-Instruct"
    (tmp_path / "mymodel").mkdir()
    assert base_reference(str(tmp_path / "mymodel")) == str((tmp_path / "mymodel").resolve())


def test_the_export_is_asked_as_its_run_was(run, exported, capsys):
    """`predict model=<export>` loads an adapter export (base + LoRA) or full weights, takes the
    run's prompt style, image budget and shape from the export's geospot.json, and answers exactly
    what `predict model=<run>` answers; the answers on the same photo are the same, turn by turn."""
    from geospot.eval.predict_cli import predict_main

    out, _, rank = exported
    record = json.loads((out / "geospot.json").read_text())
    assert record["export_kind"] == ("adapter" if rank else "full") and record["square"] is True
    photos = "/work/shared/data/osv5m-samples/unlabeled"
    if not Path(photos).is_dir():
        pytest.skip("needs the shared OSV-5M samples")
    answers = []
    for model in (run[0], out):
        assert predict_main([f"model={model}", photos, "--json"]) == 0
        captured = capsys.readouterr()
        answers.append([(r["name"], r["turns"]) for r in map(json.loads, captured.out.splitlines())])
        assert "env_type=telescoping" in captured.err and "square=True" in captured.err
    assert answers[0] == answers[1] and len(answers[0]) == 12


def test_export_refuses_a_folder_that_is_not_an_earlier_export(run, exported, tmp_path, capsys):
    """An export replaces its folder whole: a folder holding other files (here a copy of the run
    itself) is refused before the model loads, and nothing in it is touched; an earlier export
    is replaced."""
    import shutil

    log, _ = run
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("precious")
    assert export_main([f"checkpoint={log}", f"out={mine}"]) == 2
    assert "holds 1 entry that is not an earlier geospot export" in capsys.readouterr().err
    assert (mine / "notes.txt").read_text() == "precious"
    copy = tmp_path / "runcopy"
    shutil.copytree(log, copy)
    assert export_main([f"checkpoint={log}", f"out={copy}"]) == 2
    assert (copy / "checkpoints").is_dir() and (copy / "config.json").exists()
    again = tmp_path / "again"
    shutil.copytree(exported[0], again)
    assert export_main([f"checkpoint={log}", f"out={again}"]) == 0  # an earlier export: replaced


def test_an_export_of_a_run_on_the_users_photos_says_it_holds_one(run, tmp_path, capsys):
    """example.jpg of a run trained on local photos is one of them, in a folder made to be
    published: the export says so (a synthetic world's image goes without a word, above)."""
    import shutil

    log, _ = run
    mine = tmp_path / "run"
    shutil.copytree(log, mine)
    record = json.loads((mine / "config.json").read_text())
    record["config"]["data"] = str(ROOT.parent / "shared" / "data" / "osv5m-samples")
    (mine / "config.json").write_text(json.dumps(record))
    assert export_main([f"checkpoint={mine}", f"out={tmp_path / 'export'}"]) == 0
    assert (tmp_path / "export" / "example.jpg").exists()
    # (the 8 labelled photos all hash into the train split: it said "one held-out photo" of a training one)
    assert "example.jpg is one training photo (the run held none out) of data=" in capsys.readouterr().err


def test_export_of_a_run_stopped_before_its_first_checkpoint_says_so(tmp_path, capsys):
    """As predict and eval say it (export said only 'not a training run or checkpoint folder')."""
    log = tmp_path / "knock"
    log.mkdir()
    (log / "config.json").write_text(json.dumps({"kind": "sft", "config": {"model_name": "tiny:qwen2_5_vl"}}))
    assert export_main([f"checkpoint={log}", f"out={tmp_path / 'out'}"]) == 2
    assert (f"checkpoint={log}: this training run stopped before its first checkpoint, so it holds no weights; "
            "train it again") in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_eval_must_be_an_eval_of_the_weights_exported(run, tmp_path, capsys, monkeypatch):
    """`eval=` put another model's eval in the card as this model's, and a mistyped one was ignored
    without a word; `out=~/x` (quoted, or from a shell that leaves it) wrote a folder named `~`."""
    log, _ = run

    def summary(folder, step):
        folder.mkdir(parents=True)
        (folder / "summary.json").write_text(json.dumps({
            "name": folder.name, "data": "synthetic:n=4", "model": str(log), "env_type": "telescoping",
            "checkpoint": str((log / "checkpoints" / str(step)).resolve()),
            "metrics": {"n": 4, "median_km": 1234.5, "geoscore": 321.0}}))
        return folder

    assert export_main([f"checkpoint={log}", f"out={tmp_path / 'a'}", f"eval={tmp_path / 'nope'}"]) == 2
    assert f"eval={tmp_path / 'nope'}: no summary.json there" in capsys.readouterr().err
    other = summary(tmp_path / "other", 2)
    assert export_main([f"checkpoint={log}", f"out={tmp_path / 'a'}", f"eval={other}"]) == 2
    assert f"eval={other} scored step 2 of {log.resolve()}, not the weights exported (step 3 of" in \
        capsys.readouterr().err
    assert not (tmp_path / "a").exists()  # refused before the model loaded
    summary(tmp_path / "home" / "ours", 3)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert export_main([f"checkpoint={log}", "out=~/exported", "eval=~/ours"]) == 0
    card = (tmp_path / "home" / "exported" / "README.md").read_text()
    assert "ours: synthetic:n=4" in card and not (Path.cwd() / "~").exists()  # (eval=~/ours: checked and shown)


def test_the_card_names_the_run_its_weights_started_from(run, tmp_path):
    """An RL run's card said only "Fine-tuned from <base>", hiding the SFT warm start under its steps."""
    import shutil

    log, _ = run
    mine = tmp_path / "rl"
    shutil.copytree(log, mine)
    record = json.loads((mine / "config.json").read_text())
    record["config"]["load_checkpoint_path"] = "runs/sft-warm"
    (mine / "config.json").write_text(json.dumps(record))
    assert export_main([f"checkpoint={mine}", f"out={tmp_path / 'export'}"]) == 0
    card = (tmp_path / "export" / "README.md").read_text()
    assert "| started from | `runs/sft-warm` (its weights; its own card tells its training) |" in card


def test_an_export_given_to_export_is_named_as_one(exported, tmp_path, capsys):
    """It said only "is not a training run or checkpoint folder", with no way to a merged export."""
    folder, _, _ = exported
    assert export_main([f"checkpoint={folder}", f"out={tmp_path / 'again'}", "merged=true"]) == 2
    assert f"checkpoint={folder} is an export already; export its run again for another kind: checkpoint=" in \
        capsys.readouterr().err
