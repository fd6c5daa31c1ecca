import math

import numpy as np
import pytest
from eval_fakes import ScriptedEngine, exact, make_samples

from geospot.engines.types import SampleParams
from geospot.eval import evaluate, medoid, resolve_sampling
from geospot.runs.writer import ListWriter

POINTS = [(48.86, 2.35), (-33.87, 151.21), (40.71, -74.01), (35.68, 139.69), (-23.55, -46.63)]


def test_greedy_single_turn_exact_answers_score_perfectly():
    eng = ScriptedEngine(exact)
    res = evaluate(eng, make_samples(POINTS), batch_size=2)
    assert [p.id for p in res.predictions] == ["s0", "s1", "s2", "s3", "s4"]
    assert eng.calls == 3  # ceil(5 / 2): one sample call per batch
    assert all(p.temperature == 0.0 and p.max_tokens == 24 for p in eng.params_seen)
    m = res.metrics
    assert m["n"] == 5 and m["parsed"] == 1.0
    assert m["median_km"] == pytest.approx(0.0, abs=1e-6)
    assert m["acc_1km"] == 1.0
    p0 = res.predictions[0]
    assert (p0.latitude, p0.longitude) == (48.86, 2.35)
    assert (p0.true_latitude, p0.true_longitude) == (48.86, 2.35)
    assert p0.raw_text == "Latitude: 48.86\nLongitude: 2.35"
    assert p0.turn_guesses == ((48.86, 2.35),)


def test_unparsed_answer_is_nan_and_a_miss():
    def script(image, text, turn, j):
        return "somewhere nice" if image.info["id"] == "s1" else exact(image, text, turn, j)

    res = evaluate(ScriptedEngine(script), make_samples(POINTS[:2]))
    bad = res.predictions[1]
    assert math.isnan(bad.latitude) and math.isnan(bad.longitude) and not bad.parsed
    assert bad.raw_text == "somewhere nice"
    assert res.metrics["n"] == 2 and res.metrics["parsed"] == 0.5
    assert res.metrics["acc_2500km"] == 0.5


def test_telescoping_runs_three_turns_and_scores_the_last():
    # coarse: truth rounded to 10 deg; refine: to 1 deg; final: exact
    def script(image, text, turn, j):
        lat, lon = image.info["lat"], image.info["lon"]
        r = {0: -1, 1: 0, 2: 2}[turn]
        return f"Latitude: {round(lat, r)}\nLongitude: {round(lon, r)}"

    eng = ScriptedEngine(script)
    samples = make_samples(POINTS[:3])
    seen = []
    orig = eng.sample

    def spy(prompts, k, params):
        seen.extend(eng.renderer.text_of(p) for p in prompts)
        return orig(prompts, k, params)

    eng.sample = spy
    res = evaluate(eng, samples, prompt_style="telescoping", batch_size=8)
    assert eng.calls == 3
    p = res.predictions[0]
    assert p.turn_guesses == ((50.0, 0.0), (49.0, 2.0), (48.86, 2.35))
    assert (p.latitude, p.longitude) == (48.86, 2.35)
    assert len(p.turn_texts) == 3 and p.raw_text == p.turn_texts[-1]
    # turn 2 shows the coarse guess with 1 decimal, turn 3 the refined one with 2
    assert "Your previous guess was (50.0, 0.0)" in seen[3]
    assert "Your previous guess was (49.00, 2.00)" in seen[6]
    # the final prompt is one sequence holding all three user turns
    assert seen[6].count("<user>") == 3
    assert res.metrics["median_km"] == pytest.approx(0.0, abs=1e-6)
    # per-turn medians: coarse (10 deg) > refine (1 deg) > final (exact)
    t1, t2, t3 = (res.metrics[f"turn_{k}_median_km"] for k in (1, 2, 3))
    assert t1 > t2 > t3 == pytest.approx(0.0, abs=1e-6)
    from geospot.geo import haversine_km

    d2 = [haversine_km(49.0, 2.0, 48.86, 2.35), haversine_km(-34.0, 151.0, -33.87, 151.21),
          haversine_km(41.0, -74.0, 40.71, -74.01)]
    assert t2 == pytest.approx(float(np.median(d2)))


def test_telescoping_unparsed_turn_ends_the_conversation():
    def script(image, text, turn, j):
        if image.info["id"] == "s0" and turn == 1:
            return "no idea"
        return exact(image, text, turn, j)

    eng = ScriptedEngine(script)
    res = evaluate(eng, make_samples(POINTS[:2]), prompt_style="telescoping")
    assert eng.prompts_seen == 2 + 2 + 1  # s0 is not asked a third time
    p0, p1 = res.predictions
    assert p0.turn_guesses == ((48.86, 2.35), None) and not p0.parsed
    assert p1.parsed and len(p1.turn_guesses) == 3
    assert res.metrics["parsed"] == 0.5
    assert res.metrics["turn_2_median_km"] == math.inf  # median of (inf, 0): numpy takes the mean of the two


def test_k_samples_score_the_medoid():
    # sample 0 is far off; 1..4 cluster around the truth with sample 1 (and 4) at the centre
    offsets = {1: 0.0, 2: 0.1, 3: -0.1, 4: 0.0}

    def script(image, text, turn, j):
        lat, lon = image.info["lat"], image.info["lon"]
        if j == 0:
            return f"Latitude: {-lat:.2f}\nLongitude: {lon + 90:.2f}"
        return f"Latitude: {lat + offsets[j]:.2f}\nLongitude: {lon:.2f}"

    eng = ScriptedEngine(script)
    res = evaluate(eng, make_samples(POINTS[:2]), sampling=5)
    assert eng.calls == 1 and eng.params_seen[0].temperature == 1.0
    p = res.predictions[0]
    assert len(p.sample_guesses) == 5
    assert (p.latitude, p.longitude) == (48.86, 2.35)
    # raw_text and turns are the chosen sample's (sample 1, the medoid), not sample 0's far-off one
    assert p.raw_text == "Latitude: 48.86\nLongitude: 2.35" and p.turn_guesses == ((48.86, 2.35),)
    assert res.metrics["acc_1km"] == 1.0


def test_medoid_hand_worked():
    assert medoid([(0.0, 0.0), (0.0, 1.0), (0.0, 50.0)]) == (0.0, 1.0)
    assert medoid([None, (1.0, 2.0)]) == (1.0, 2.0)
    assert medoid([None, None]) is None


def test_resolve_sampling():
    assert resolve_sampling(None, 24) == (SampleParams(max_tokens=24, temperature=0.0), 1)
    assert resolve_sampling(4, 24) == (SampleParams(max_tokens=24, temperature=1.0), 4)
    sp = SampleParams(max_tokens=10, temperature=0.7)
    assert resolve_sampling(sp, 24) == (sp, 1)
    assert resolve_sampling((sp, 2), 24) == (sp, 2)
    with pytest.raises(ValueError):
        resolve_sampling(0, 24)
    with pytest.raises(ValueError, match="prompt_style"):
        evaluate(ScriptedEngine(exact), make_samples(POINTS[:1]), prompt_style="multi")


def test_writer_and_on_batch_callbacks():
    w = ListWriter()
    batches = []
    res = evaluate(ScriptedEngine(exact), make_samples(POINTS), batch_size=2, writer=w, step=7,
                   on_batch=lambda preds: batches.append([p.id for p in preds]))
    assert batches == [["s0", "s1"], ["s2", "s3"], ["s4"]]
    (step, split, records), = w.images
    assert step == 7 and split == "eval" and [r.image_id for r in records] == [p.id for p in res.predictions]
    assert records[0].rollouts[0].distance_km == pytest.approx(0.0, abs=1e-6)
    assert math.isnan(records[0].rollouts[0].reward)  # eval pays no reward: the store keeps null, the page none
    (step, metrics), = w.steps
    assert step == 7 and metrics["eval/n"] == 5.0 and metrics["eval/median_km"] == pytest.approx(0.0, abs=1e-6)


def test_geocoder_gives_label_accuracy():
    from geospot.geo.geocode import GeoLabels

    def geocoder(lats, lons):
        return [GeoLabels("N" if la > 0 else "S", "r", "c") for la in np.asarray(lats)]

    def script(image, text, turn, j):  # flips the hemisphere of s1 only
        lat = -image.info["lat"] if image.info["id"] == "s1" else image.info["lat"]
        return f"Latitude: {lat}\nLongitude: {image.info['lon']}"

    res = evaluate(ScriptedEngine(script), make_samples(POINTS[:4]), geocoder=geocoder)
    assert res.metrics["country_acc"] == pytest.approx(0.75)


def test_telescoping_with_k_samples_continues_each_chain():
    def script(image, text, turn, j):
        lat, lon = image.info["lat"], image.info["lon"]
        if turn == 0:  # two different coarse guesses per image; later turns refine the one they see
            return f"Latitude: {lat + 5 * (j + 1)}\nLongitude: {lon}"
        prev = float(text.rsplit("Your previous guess was (", 1)[1].split(",")[0])
        return f"Latitude: {(prev + lat) / 2:.4f}\nLongitude: {lon}"

    eng = ScriptedEngine(script)
    res = evaluate(eng, make_samples(POINTS[:2]), prompt_style="telescoping", sampling=2)
    assert eng.calls == 3 and eng.prompts_seen == 2 + 4 + 4  # turn 1: k samples per image; then one per chain
    p = res.predictions[0]
    assert len(p.sample_guesses) == 2
    # chain 0: 53.86 (shown 53.9) -> 51.38 (shown 51.38) -> 50.12
    # chain 1: 58.86 (shown 58.9) -> 53.88 -> 51.37
    assert p.turn_guesses == ((53.86, 2.35), (51.38, 2.35), (50.12, 2.35))
    assert p.sample_guesses[0][0] == pytest.approx(50.12, abs=1e-9)
    assert p.sample_guesses[1][0] == pytest.approx(51.37, abs=1e-9)
