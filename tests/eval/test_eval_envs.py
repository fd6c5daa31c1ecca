"""Eval of the hierarchical and geohash envs: the training env run by the rollout loop,
label accuracy per turn, and the predictions CSV keeping what resume needs."""

import pytest
from eval_fakes import ScriptedEngine, exact, make_samples

from geospot.envs.config import EnvOptions
from geospot.eval import evaluate
from geospot.eval import predictions as io
from geospot.eval.runner import metrics_for
from geospot.geo.geohash import encode

POINTS = [(48.86, 2.35), (40.71, -74.01)]
LABELS = [{"country": "FR", "region": "Ile-de-France", "city": "Paris"},
          {"country": "United States", "region": "New York", "city": "New York City"}]


def hierarchical_script(image, text, turn, j):
    """Right country for both (a code for one, a name for the other), right region for s0
    only, city never; exact coordinates."""
    first = image.info["id"] == "s0"
    return {0: "Country: France" if first else "Country: US",
            1: "Region: Île-de-France" if first else "Region: New Jersey",
            2: "City: Lyon"}.get(turn) or exact(image, text, turn, j)


def test_hierarchical_eval_reports_label_accuracy_per_turn(tmp_path):
    samples = make_samples(POINTS, LABELS)
    res = evaluate(ScriptedEngine(hierarchical_script), samples, prompt_style="hierarchical", batch_size=2)
    m = res.metrics
    assert (m["label_country_acc"], m["label_region_acc"], m["label_city_acc"]) == (1.0, 0.5, 0.0)
    assert m["median_km"] == pytest.approx(0.0, abs=1e-6) and m["parsed"] == 1.0
    assert not any(k.startswith("turn_") for k in m)  # one coordinate turn: no per-turn distances
    p = res.predictions[0]
    assert p.turn_fields == ("country", "region", "city", "") and len(p.turn_texts) == 4
    assert p.label_correct == {"country": 1.0, "region": 1.0, "city": 0.0}
    # the CSV keeps it: a resumed eval recomputes the same metrics
    io.append_predictions(tmp_path / "p.csv", res.predictions)
    back = io.read_predictions(tmp_path / "p.csv")
    assert [b.label_correct for b in back] == [q.label_correct for q in res.predictions]
    assert metrics_for(back) == pytest.approx(m, nan_ok=True)


def test_hierarchical_eval_uses_the_env_keys_and_ends_early_on_a_broken_turn():
    samples = make_samples(POINTS, LABELS)
    opts = EnvOptions(hier_turns=("country", "coords"), hier_weights=(0.5, 0.5))

    def script(image, text, turn, j):
        if turn == 0:
            return "Country: France" if image.info["id"] == "s0" else ""  # s1 says nothing: format break
        return exact(image, text, turn, j)

    res = evaluate(ScriptedEngine(script), samples, prompt_style="hierarchical", env_options=opts)
    assert res.metrics["label_country_acc"] == 0.5 and res.metrics["parsed"] == 0.5
    assert res.predictions[0].turn_fields == ("country", "")
    assert not res.predictions[1].parsed and len(res.predictions[1].turn_texts) == 1


def test_geohash_eval_answers_geohashes():
    samples = make_samples(POINTS)
    opts = EnvOptions(geohash_answer="geohash")

    def script(image, text, turn, j):
        assert f"of {(2, 4, 6)[turn]} characters" in text.split("<user>")[-1]
        return "Geohash: " + encode(image.info["lat"], image.info["lon"], (2, 4, 6)[turn])

    res = evaluate(ScriptedEngine(script), samples, prompt_style="geohash", env_options=opts)
    assert res.metrics["parsed"] == 1.0 and res.metrics["median_km"] < 1.0  # a 6-character cell's centre
    assert res.metrics["turn_1_median_km"] > res.metrics["turn_2_median_km"] > res.metrics["turn_3_median_km"]


def test_old_prediction_files_without_the_new_columns_still_read(tmp_path):
    path = tmp_path / "old.csv"
    old_cols = [c for c in io.COLUMNS if c not in ("turn_fields", "label_correct", "turn_reasoning")]
    path.write_text(",".join(old_cols) + "\r\n" + "a,1.0,2.0,txt,1.0,2.0,0.0,,,,[],[],[]\r\n")
    (p,) = io.read_predictions(path)
    assert p.id == "a" and p.turn_fields == () and p.label_correct == {} and p.turn_reasoning == ()


def test_predict_output_names_each_label_answer():
    from geospot.eval.cli import _predict_line, answered_labels
    from geospot.eval.runner import predict

    (p,) = predict(ScriptedEngine(hierarchical_script), make_samples(POINTS[:1], LABELS[:1]),
                   prompt_style="hierarchical", label_geocoder=lambda lats, lons: [])
    answers = answered_labels(p)
    assert answers == {"country": "France", "region": "Île-de-France", "city": "Lyon"}
    row = {"name": p.id, "latitude": p.latitude, "longitude": p.longitude, "place": None, "raw_text": p.raw_text,
           "turns": [None if g is None else list(g) for g in p.turn_guesses], "answers": answers}
    from geospot.eval.predict_cli import turn_guesses

    line = _predict_line(row, telescoping=turn_guesses("hierarchical", None))
    assert "answers: country=France, region=Île-de-France, city=Lyon" in line and "48.8600, 2.3500" in line
    assert "turns:" not in line  # the label turns are the answers, not "? -> ? -> ?" before the coordinates


@pytest.mark.parametrize("env", ["telescoping", "geohash"])
def test_turns_no_episode_reached_are_reported_as_misses(tmp_path, env):
    """A model whose first answers never parse still gets a column per coordinate turn of its env,
    each inf, as the docstring of turn_metrics says (the columns were those of the turns reached, so
    an eval of a 3-turn env looked single-turn to `eval --compare`); a resumed eval reads the same."""
    res = evaluate(ScriptedEngine(lambda image, text, turn, j: "somewhere warm"), make_samples(POINTS),
                   prompt_style=env, batch_size=2)
    turns = {k: v for k, v in res.metrics.items() if k.startswith("turn_")}
    assert turns == {"turn_1_median_km": float("inf"), "turn_2_median_km": float("inf"),
                     "turn_3_median_km": float("inf")}
    assert res.predictions[0].turn_fields == ("", "", "") and len(res.predictions[0].turn_guesses) == 1
    io.append_predictions(tmp_path / "p.csv", res.predictions)
    assert {k: v for k, v in metrics_for(io.read_predictions(tmp_path / "p.csv")).items() if k.startswith("turn_")} \
        == turns
