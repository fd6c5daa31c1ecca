"""End to end on the offline tiny Qwen2.5-VL: predict, eval from a training checkpoint,
export -> plain transformers reload gives the checkpoint's outputs."""

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch = pytest.importorskip("torch")

from geospot.engines import EngineConfig, make_engine  # noqa: E402
from geospot.engines.datums import make_datum  # noqa: E402
from geospot.engines.types import AdamParams, SampleParams  # noqa: E402
from geospot.eval import cli  # noqa: E402
from geospot.prompts import SINGLE_TURN_PROMPT, assistant_message, format_answer, user_message  # noqa: E402

OSV = Path("/work/shared/data/osv5m-samples")
MODEL = "tiny:qwen2_5_vl:tiny"


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A run folder with one checkpoint of a LoRA engine that took a few real SFT steps."""
    from geospot.data.synthetic import cached_world
    from geospot.runs.checkpoint import save_checkpoint
    from geospot.runs.folder import write_config

    run = tmp_path_factory.mktemp("sft-run")
    ecfg = EngineConfig(model_name=MODEL, lora_rank=4, lora_alpha=8.0, device="cpu", max_pixels=112 * 112)
    engine = make_engine(ecfg)
    world = cached_world()
    datums = []
    for i in range(4):
        s = world.sample(i)
        mi, w = engine.renderer.supervised_example(
            [user_message(s.image, SINGLE_TURN_PROMPT), assistant_message(format_answer(s.lat, s.lon))])
        datums.append(make_datum(mi, weights=w))
    for _ in range(3):
        engine.train_step(datums, "cross_entropy", AdamParams(learning_rate=2e-2))
    write_config(run, "sft", {"engine": {"model_name": MODEL, "lora_rank": 4}, "data": "synthetic:n=4", "steps": 3})
    save_checkpoint(run, 3, engine)
    return run, engine


def _image():
    from PIL import Image

    return Image.open(sorted((OSV / "images").iterdir())[0]).convert("RGB")


@pytest.mark.skipif(not OSV.exists(), reason="needs the shared OSV-5M samples")
def test_predict_unlabeled_prints_12_lines(capsys):
    assert cli.predict_main([f"model={MODEL}", str(OSV / "unlabeled"), "max_tokens=8", f"max_pixels={224 * 224}",
                             "device=cpu"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 12
    assert all(len(l.split("\t")) == 4 for l in lines)


def test_eval_from_checkpoint_matches_the_trained_engine(trained_run, tmp_path):
    run, engine = trained_run
    from geospot.eval.loading import load_model

    loaded = load_model(str(run), device="cpu")
    assert loaded.base_model == MODEL and loaded.step == 3 and loaded.checkpoint.name == "3"
    s = _image()
    prompt = engine.renderer.generation_prompt([user_message(s, SINGLE_TURN_PROMPT)])
    greedy = SampleParams(max_tokens=12, temperature=0.0, stop=(-1,))
    a = engine.sample([prompt], 1, greedy)[0][0].tokens
    b = loaded.engine.sample([prompt], 1, greedy)[0][0].tokens
    assert a == b
    # ... and `geospot eval model=<run folder>` runs end to end on it
    summary = cli.run_eval(cli.EvalConfig(model=str(run), data="synthetic:n=60", out=str(tmp_path / "ev"),
                                          batch_size=4, max_tokens=12, device="cpu"))
    assert summary["split"] == "test" and summary["metrics"]["n"] >= 1
    assert (tmp_path / "ev" / "predictions.csv").exists()


def _plain_logits(model, renderer, image_processor, prompt):
    """A plain transformers forward, fed what the HF processor would give it
    (mm_token_type_ids marks image tokens: without it transformers 5 uses 1-D positions)."""
    ids = torch.from_numpy(renderer.tokens_of(prompt))[None]
    pv, grid = image_processor([c.image for c in prompt.images()])
    mm = (ids == renderer.image_pad_id).int()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pv, image_grid_thw=grid,
                    mm_token_type_ids=mm)
    return out.logits[0].float()


@pytest.mark.parametrize("merged", [False, True])
def test_export_reloads_in_plain_transformers_with_identical_outputs(trained_run, tmp_path, merged):
    from transformers import AutoModelForImageTextToText

    from geospot.models.load import resolve_model_path

    run, engine = trained_run
    # an eval of the checkpoint, in its default place inside the run (scripted answers: fast)
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    from eval_fakes import ScriptedEngine

    fixed = ScriptedEngine(lambda image, text, turn, j: "Latitude: 1.0\nLongitude: 2.0")
    ev = cli.run_eval(cli.EvalConfig(model=str(run), data="synthetic:n=40", geocoder="none"), engine=fixed)
    assert Path(ev["summary"]).parent == run / "eval" / "synthetic_n_40-single-step3"
    out = tmp_path / ("merged" if merged else "adapter")
    argv = [f"checkpoint={run}", f"out={out}"] + (["merged=true"] if merged else [])
    from geospot.eval.export import export_main

    assert export_main(argv) == 0
    card = (out / "README.md").read_text()
    assert f"base_model: {MODEL}" in card and "| steps | 3 |" in card and "synthetic:n=4" in card
    assert "## Evaluation" in card and "synthetic_n_40-single-step3: synthetic:n=40" in card

    if merged:
        model = AutoModelForImageTextToText.from_pretrained(out)
    else:
        from peft import PeftModel

        assert (out / "adapter_config.json").exists()
        base = AutoModelForImageTextToText.from_pretrained(resolve_model_path(MODEL))
        model = PeftModel.from_pretrained(base, out)
    model.eval()
    prompt = engine.renderer.generation_prompt([user_message(_image(), SINGLE_TURN_PROMPT)])
    full = prompt.append_tokens(
        engine.renderer.tokenizer.encode("Latitude: 12.34\nLongitude: 56.78", add_special_tokens=False))
    plain = _plain_logits(model, engine.renderer, engine.image_processor, full)
    # the checkpoint's own log-probs of the same sequence
    lp_engine = engine.forward([make_datum(full, weights=np.ones(full.length, np.float32))])[0]
    ids = torch.from_numpy(engine.renderer.tokens_of(full))
    lp_plain = torch.log_softmax(plain[:-1], -1).gather(-1, ids[1:, None])[:, 0].numpy()
    mask = full.token_mask()[1:]
    assert np.allclose(lp_plain[mask], np.asarray(lp_engine)[mask], atol=1e-4)
    # greedy continuation: identical tokens
    greedy = SampleParams(max_tokens=10, temperature=0.0, stop=(-1,))
    expect = list(engine.sample([prompt], 1, greedy)[0][0].tokens)
    got = []
    seq = prompt
    for _ in range(10):
        nxt = int(_plain_logits(model, engine.renderer, engine.image_processor, seq)[-1].argmax())
        got.append(nxt)
        seq = seq.append_tokens([nxt])
    assert got == expect
    # and the base model alone differs (the export carries the training)
    base_only = AutoModelForImageTextToText.from_pretrained(resolve_model_path(MODEL))
    assert not torch.allclose(_plain_logits(base_only, engine.renderer, engine.image_processor, full), plain, atol=1e-4)


def test_telescoping_on_the_real_renderer_and_engine():
    """Turn 1 is scripted (an untrained model never parses), turns 2-3 are the real engine
    sampling from real `renderer.continuation` prompts."""
    from geospot.data.synthetic import cached_world
    from geospot.engines.types import SampledSequence
    from geospot.eval import evaluate

    engine = make_engine(EngineConfig(model_name=MODEL, lora_rank=0, device="cpu"))
    real_sample, seen = engine.sample, []

    def sample(prompts, k, params):
        seen.append([engine.renderer.tokenizer.decode(engine.renderer.tokens_of(p)) for p in prompts])
        if len(seen) == 1:
            toks = tuple(engine.renderer.tokenizer.encode("Latitude: 10.0\nLongitude: 20.0", add_special_tokens=False))
            toks += (engine.renderer.end_of_turn_id,)
            return [[SampledSequence(toks, (0.0,) * len(toks), "stop")] * k for _ in prompts]
        answer = engine.renderer.tokenizer.encode("Latitude: 11.5\nLongitude: 21.25", add_special_tokens=False)
        return [[SampledSequence((*answer, engine.renderer.end_of_turn_id), (0.0,) * 20, "stop")]
                for _ in real_sample(prompts, k, params)]

    engine.sample = sample
    samples = [cached_world().sample(i) for i in range(3)]
    res = evaluate(engine, samples, prompt_style="telescoping", batch_size=3)
    assert len(seen) == 3 and all(len(s) == 3 for s in seen)
    assert "Your previous guess was (10.0, 20.0)" in seen[1][0]
    assert "Your previous guess was (11.50, 21.25)" in seen[2][0]
    assert seen[2][0].count("<|im_start|>user") == 3 and seen[2][0].count("<|im_start|>assistant") == 3
    p = res.predictions[0]
    assert p.turn_guesses == ((10.0, 20.0), (11.5, 21.25), (11.5, 21.25)) and (p.latitude, p.longitude) == (11.5, 21.25)


def test_a_checkpoint_pruned_while_it_loads_gives_the_runs_newest(trained_run, tmp_path, monkeypatch):
    """predict / eval of a run still training: keep_checkpoints may delete the checkpoint chosen before
    its weights are read ("… is not a geospot engine state", every time in a walk); the newest is taken."""
    import shutil

    from geospot.engines.local import LocalEngine
    from geospot.eval import loading
    from geospot.runs.checkpoint import save_checkpoint

    src, engine = trained_run
    run = tmp_path / "live"
    shutil.copytree(src, run)
    save_checkpoint(run, 4, engine)  # the newest when predict looks: pruned under it, 3 is left
    real, pruned = LocalEngine.load_state, []

    def load_state(self, path, with_optimizer=True):
        if not pruned:
            pruned.append(path)
            shutil.rmtree(run / "checkpoints" / "4")
        return real(self, path, with_optimizer)

    monkeypatch.setattr(LocalEngine, "load_state", load_state)
    loaded = loading.load_model(str(run), device="cpu")
    assert pruned and "checkpoints/4" in str(pruned[0]) and loaded.step == 3
    pruned.clear()
    save_checkpoint(run, 4, engine)
    with pytest.raises((FileNotFoundError, ValueError)):  # a checkpoint named itself, gone: its own error
        loading.load_model(str(run / "checkpoints" / "4"), device="cpu")
