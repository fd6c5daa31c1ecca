import math

import pytest
from eval_fakes import ScriptedEngine, exact, make_samples

from geospot.eval import evaluate
from geospot.eval import predictions as io
from geospot.eval.compare import best_per_column, compare_table, load_runs
from geospot.eval.htmlmap import render_map
from geospot.eval.runner import Prediction

POINTS = [(48.86, 2.35), (-33.87, 151.21), (40.71, -74.01)]


def _preds():
    def script(image, text, turn, j):
        return "no clue\nsorry, \"really\"" if image.info["id"] == "s1" else exact(image, text, turn, j)

    labels = [{"country": "FR", "region": "IDF", "city": "Paris"}, {"country": "AU", "region": "NSW", "city": "Sydney"},
              {"country": "US", "region": "NY", "city": "New York"}]
    return evaluate(ScriptedEngine(script), make_samples(POINTS, labels), prompt_style="telescoping").predictions


def test_csv_round_trip_is_exact(tmp_path):
    preds = _preds()
    path = tmp_path / "predictions.csv"
    io.append_predictions(path, preds[:2])
    io.append_predictions(path, preds[2:])
    back = io.read_predictions(path)
    assert [p.id for p in back] == ["s0", "s1", "s2"]
    for a, b in zip(preds, back):
        assert a.id == b.id and a.raw_text == b.raw_text and a.turn_texts == b.turn_texts
        assert a.turn_guesses == b.turn_guesses and a.sample_guesses == b.sample_guesses and a.labels == b.labels
        for x, y in [(a.latitude, b.latitude), (a.longitude, b.longitude), (a.true_latitude, b.true_latitude)]:
            assert x == y or (math.isnan(x) and math.isnan(y))
    header = path.read_text().splitlines()[0]
    assert header.startswith("id,latitude,longitude,raw_text,")


def test_any_answer_text_survives_the_csv(tmp_path):
    nasty = "fin\rongitude\x00\x1f\ufffd,\"q\"\n\r\nend"
    p = Prediction("a", 1.0, 2.0, nasty, 3.0, 4.0, turn_texts=(nasty,))
    path = tmp_path / "p.csv"
    io.append_predictions(path, [p, Prediction("b", float("nan"), float("nan"), "\r", 3.0, 4.0)])
    back = io.read_predictions(path)
    assert [b.id for b in back] == ["a", "b"]
    assert back[0].raw_text == nasty and back[0].turn_texts == (nasty,) and back[1].raw_text == "\r"


def test_torn_last_row_is_dropped_and_repaired(tmp_path):
    preds = _preds()
    path = tmp_path / "predictions.csv"
    io.append_predictions(path, preds)
    data = path.read_bytes()
    # cut inside the last row (a crash mid-write)
    path.write_bytes(data[: len(data) - 25])
    assert [p.id for p in io.read_predictions(path)] == ["s0", "s1"]
    kept = io.repair_predictions(path)
    assert [p.id for p in kept] == ["s0", "s1"]
    io.append_predictions(path, preds[2:])
    assert [p.id for p in io.read_predictions(path)] == ["s0", "s1", "s2"]
    # cut inside a quoted multi-line raw_text
    io.append_predictions(path, [Prediction("s9", 1.0, 2.0, "line one\nline two, \"q\"", 0.0, 0.0)])
    data = path.read_bytes()
    path.write_bytes(data[: data.rindex(b"line two")])
    assert [p.id for p in io.repair_predictions(path)] == ["s0", "s1", "s2"]


def test_compare_marks_best_per_column(tmp_path):
    a = {"n": 10, "parsed": 1.0, "median_km": 100.0, "acc_25km": 0.2, "country_acc": float("nan")}
    b = {"n": 10, "parsed": 0.9, "median_km": 50.0, "acc_25km": 0.2, "country_acc": 0.5}
    best = best_per_column({"a": a, "b": b})
    assert best["median_km"] == {"b"} and best["parsed"] == {"a"} and "acc_25km" not in best  # a tie of all
    assert best_per_column({"a": a, "b": b, "c": {**b, "acc_25km": 0.1}})["acc_25km"] == {"a", "b"}
    assert "n" not in best and "country_acc" not in best  # NaN never wins; one value is no contest
    assert best_per_column({"a": a, "b": dict(a)}) == {}  # all tied: nothing marked
    for name, m in (("a", a), ("b", b)):
        (tmp_path / name).mkdir()
        io.write_summary(tmp_path / name, {"metrics": m})
    rows = load_runs([str(tmp_path / "a"), str(tmp_path / "b")])
    table = compare_table(rows)
    lines = table.splitlines()
    assert lines[0].split("|")[1].strip() == "run"
    row_a = [c.strip() for c in lines[2].split("|")[1:-1]]
    row_b = [c.strip() for c in lines[3].split("|")[1:-1]]
    cols = [c.strip() for c in lines[0].split("|")[1:-1]]
    assert row_b[cols.index("median_km")] == "50.0*" and row_a[cols.index("median_km")] == "100.0"
    assert row_a[cols.index("parsed")] == "100.0%*"
    assert row_a[cols.index("acc_25km")] == "20.0%" and row_b[cols.index("acc_25km")] == "20.0%"
    assert "different numbers of images" not in table  # both n = 10
    mixed = compare_table({"a": a, "b": {**b, "n": 48}})
    assert mixed.splitlines()[-1] == ("(the rows are evals of different numbers of images, n = 10, 48: "
                                      "compare evals of the same data)")
    # evals of other data, or asked another way: the best marks are said to say little
    io.write_summary(tmp_path / "b", {"metrics": b, "data": "roll", "split": "heldout", "env_type": "single"})
    io.write_summary(tmp_path / "a", {"metrics": a, "data": "synthetic:n=8", "split": "test", "env_type": "single"})
    asked: dict = {}
    table = compare_table(load_runs([str(tmp_path / "a"), str(tmp_path / "b")], asked), asked=asked)
    assert table.splitlines()[-1] == ("(the rows differ in data: roll, synthetic:n=8; split: heldout, test: compare "
                                      "evals of the same data asked the same way)")
    with pytest.raises(FileNotFoundError, match="summary.json"):
        load_runs([str(tmp_path)])


def test_html_map_is_offline_and_has_every_point(tmp_path):
    rows = [
        {"name": "a.jpg", "latitude": 48.86, "longitude": 2.35, "place": "FR/IDF/Paris", "raw_text": "x",
         "turns": [(50.0, 0.0), (49.0, 2.0), (48.86, 2.35)]},
        {"name": "b<.jpg", "latitude": float("nan"), "longitude": float("nan"), "place": "", "raw_text": "?"},
    ]
    page = render_map(rows)
    assert "<svg" in page and page.count("<circle") == 1 and "<polyline" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page
    assert "<script" not in page and "b&lt;.jpg" in page
    assert 'cx="182.35"' in page and 'cy="41.14"' in page  # x = lon + 180, y = 90 - lat
    plain = render_map(rows, world_file=tmp_path / "missing.json")
    assert 'class="grid"' in plain and 'class="land"' not in plain and "grid" in plain


def test_model_card_states_base_data_steps_and_evals(tmp_path):
    import json as _json

    from geospot.eval.card import model_card
    from geospot.eval.loading import LoadedModel

    run = tmp_path / "run"
    run.mkdir()
    lines = [{"step": 0, "eval/n": 4, "eval/median_km": None, "eval/acc_25km": 0.0},
             {"step": 5, "loss": 1.0},
             {"step": 10, "eval/n": 4, "eval/median_km": 120.5, "eval/acc_25km": 0.5},
             {"step": 20, "eval/n": 4, "eval/median_km": 99.0, "eval/acc_25km": 0.75}]
    (run / "metrics.jsonl").write_text("\n".join(_json.dumps(x) for x in lines) + "\n")
    loaded = LoadedModel(engine=None, model=str(run), base_model="Qwen/Qwen2.5-VL-3B-Instruct",
                         checkpoint=run / "checkpoints" / "10", run_dir=run, step=10,
                         run_config={"kind": "rl", "config": {"data": "synthetic:n=99", "env_type": "telescoping",
                                                              "lora_rank": 32}})
    from geospot.prompts import SINGLE_TURN_PROMPT, TELESCOPING_PROMPTS
    from geospot.runs.model_spec import ModelSpec

    spec = ModelSpec(kind="rl", base_model="Qwen/Qwen2.5-VL-3B-Instruct", engine="local", lora_rank=32,
                     trained_styles=("single", "telescoping"), env_type="telescoping", prompt=SINGLE_TURN_PROMPT,
                     turn_prompts=TELESCOPING_PROMPTS, answer_decimals=2, max_pixels=448 * 448, image_side=112,
                     max_tokens=24, data="synthetic:n=99")
    card = model_card(loaded, spec=spec, kind="adapter")
    assert "base_model: Qwen/Qwen2.5-VL-3B-Instruct" in card and "library_name: peft" in card
    assert "| training | rl, prompt styles trained: single, telescoping |" in card
    assert "| data | `synthetic:n=99` |" in card and "| steps | 10 |" in card
    assert "PEFT LoRA adapter (rank 32)" in card and "| image budget | max_pixels=12544" in card
    assert "from_pretrained('Qwen/Qwen2.5-VL-3B-Instruct')" in card  # the hub id, not a cache path
    # the loop's own evals, the first and the last up to the exported step
    assert "training eval, step 0" in card and "training eval, step 10" in card and "step 20" not in card
    assert "| 120.5* " in card and "50.0%*" in card  # best median (step 0 logged inf as null) and acc@25km marked
    assert "The training run's held-out evals (greedy):" in card  # a folder without config.json: what is known
    # with the run's config.json: what its loop eval asked, from what it logged (no per-turn medians:
    # the single-turn prompt, as the demo logs into its telescoping run), not the card's turns
    (run / "config.json").write_text(_json.dumps({"kind": "rl", "config": {"data": "synthetic:n=99",
                                                                           "env_type": "telescoping"}}))
    assert ("The training run's held-out evals (greedy, env_type=single, not the telescoping turns this card asks "
            "with, on the val split of `synthetic:n=99`):") in model_card(loaded, spec=spec, kind="adapter")
    (run / "config.json").write_text(_json.dumps({"kind": "rl", "config": {
        "data": "synthetic:n=99", "env_type": "telescoping", "eval_split": "heldout"}}))
    assert "on the held-out ids (val + test) of `synthetic:n=99`):" in model_card(loaded, spec=spec, kind="adapter")
    # an eval run's summary shows too, in its own table
    (run / "eval" / "osv").mkdir(parents=True)
    io.write_summary(run / "eval" / "osv",
                     {"name": "osv", "data": "/data/osv5m", "metrics": {"n": 8, "median_km": 7.0}})
    card = model_card(loaded, spec=spec, kind="merged")
    assert "osv: /data/osv5m (single, greedy)" in card and "library_name: transformers" in card
    assert "full model (LoRA merged into the base)" in card
    # evals of other data in one table: its best marks are said to say little (the card is published)
    (run / "eval" / "im2gps").mkdir(parents=True)
    io.write_summary(run / "eval" / "im2gps",
                     {"name": "im2gps", "data": "/data/im2gps3k", "metrics": {"n": 8, "median_km": 9.0}})
    card = model_card(loaded, spec=spec, kind="merged")
    assert "(the rows differ in data: /data/im2gps3k, /data/osv5m: compare evals of the same data" in card
    # an eval of the run's step-20 checkpoint is not an eval of the step-10 weights exported here
    for name, step in (("late", 20), ("this", 10)):
        (run / "eval" / name).mkdir(parents=True)
        io.write_summary(run / "eval" / name, {"name": name, "data": "/data/osv5m", "metrics": {"n": 8},
                                               "checkpoint": str(run / "checkpoints" / str(step))})
    card = model_card(loaded, spec=spec, kind="merged")
    assert "this: /data/osv5m" in card and "late: /data/osv5m" not in card
    assert "(1 `geospot eval` run of other checkpoints of the training run is not shown" in card


def test_turn_reasoning_round_trips_through_predictions_csv(tmp_path):
    """reasoning=true: a resumed eval recomputes the reasoning metrics from the file."""
    from geospot.eval import predictions as pio
    from geospot.eval.runner import Prediction, reasoning_eval_metrics

    p = Prediction(id="a", latitude=1.0, longitude=2.0, raw_text="<think>x</think>\nLatitude: 1\nLongitude: 2",
                   turn_reasoning=((9.0, 0.0, 1.0), (40.0, 1.0, 0.0)))
    pio.append_predictions(tmp_path / "p.csv", [p])
    (back,) = pio.read_predictions(tmp_path / "p.csv")
    assert back.turn_reasoning == p.turn_reasoning
    assert reasoning_eval_metrics([back]) == {"reasoning_tokens": 24.5, "truncation_rate": 0.5,
                                              "answer_format_rate": 0.5}
    assert reasoning_eval_metrics([Prediction(id="b", latitude=1.0, longitude=2.0, raw_text="")]) == {}
