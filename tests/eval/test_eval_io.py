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
    assert best["median_km"] == {"b"} and best["parsed"] == {"a"} and best["acc_25km"] == {"a", "b"}
    assert "n" not in best and "country_acc" not in best  # NaN never wins; one value is no contest
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
    assert row_a[cols.index("acc_25km")].endswith("*") and row_b[cols.index("acc_25km")].endswith("*")
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
