"""Hand-worked rewards of the hierarchical env (both original variants) and its teacher forcing."""

import math

import pytest
from PIL import Image

from geospot.data.types import Sample
from geospot.envs.hierarchical import HierarchicalEnv, HierarchicalGroupBuilder, HierarchySpec
from geospot.envs.rewards import KernelReward
from geospot.geo import haversine_km
from geospot.geo.geocode import GeoLabels
from geospot.prompts import format_answer
from geospot.rl.testing import EOT, CharRenderer, text_of

R = CharRenderer()
PARIS = Sample(id="paris", image=Image.new("RGB", (8, 8)), lat=48.8566, lon=2.3522,
               labels={"country": "FR", "region": "Île-de-France", "city": "Paris"})
# 2.7 degrees of latitude north of Paris: ~300 km off
OFF = (PARIS.lat + 2.7, PARIS.lon)
D_OFF = haversine_km(OFF[0], OFF[1], PARIS.lat, PARIS.lon)
TAU = 300.0
MULTI_TURN = HierarchySpec()  # country, region, city, coords; 0.2 x 3 + 0.4; no teacher forcing
HIER = HierarchySpec(("country", "region", "coords"), (0.2, 0.3, 0.5), teacher_forcing=1.0, partial_credit=0.25)


def toks(text):
    return [ord(c) for c in text] + [EOT]


def play(env, answers):
    env.initial_observation()
    results = [env.step(toks(a)) for a in answers]
    return results


def make(spec, sample=PARIS, seed=0):
    return HierarchicalGroupBuilder(sample, R, KernelReward(TAU), spec, seed=seed).make_envs(1)[0]


def test_right_country_wrong_region_300km_off_is_the_sum_of_the_weights_that_apply():
    assert 299 < D_OFF < 301
    res = play(make(MULTI_TURN), ["Country: France", "Region: Bavaria", "City: Munich", format_answer(*OFF, 4)])
    assert [r.reward for r in res[:3]] == [0.2, 0.0, 0.0]
    assert res[3].reward == pytest.approx(0.4 * math.exp(-D_OFF / TAU), abs=1e-12)
    total = sum(r.reward for r in res)
    assert total == pytest.approx(0.2 + 0.4 * math.exp(-D_OFF / TAU), abs=1e-12)  # 0.2 + 0.4 * 0.368 = 0.347
    assert [r.done for r in res] == [False, False, False, True]
    assert res[0].metrics["country_correct"] == 1.0 and res[1].metrics["region_correct"] == 0.0
    assert res[3].metrics["distance_km"] == pytest.approx(D_OFF) and res[3].metrics["lat"] == pytest.approx(OFF[0])


def test_all_right_earns_every_weight():
    res = play(make(MULTI_TURN), ["fr", "Ile-de-France", "City: PARIS", format_answer(PARIS.lat, PARIS.lon, 4)])
    assert sum(r.reward for r in res) == pytest.approx(0.2 + 0.2 + 0.2 + 0.4 * math.exp(-0.0 / TAU), abs=1e-6)


def test_original_hierarchical_variant_partial_credit():
    # wrong country, wrong region: the region turn still earns 0.25 of its weight
    res = play(make(HIER), ["Country: Germany", "Region: Bavaria", format_answer(*OFF, 4)])
    assert [r.reward for r in res[:2]] == [0.0, pytest.approx(0.3 * 0.25)]
    assert res[2].reward == pytest.approx(0.5 * math.exp(-D_OFF / TAU))
    # right country, wrong region: no partial credit (only after a wrong label)
    res = play(make(HIER), ["Country: France", "Region: Bavaria", format_answer(*OFF, 4)])
    assert [r.reward for r in res[:2]] == [0.2, 0.0]


def test_teacher_forcing_switch():
    forced = make(HIER)  # teacher_forcing = 1: later turns are told the truth, whatever was answered
    forced.initial_observation()
    nxt = forced.step(toks("Country: Germany"))
    assert "This photo was taken in France." in text_of(nxt.next_observation).split("<u>")[-1]
    assert nxt.metrics["next_teacher_forced"] == 1.0
    nxt = forced.step(toks("Region: Bavaria"))
    assert "This photo was taken in Île-de-France, France." in text_of(nxt.next_observation).split("<u>")[-1]

    own = make(MULTI_TURN)  # teacher_forcing = 0: later turns see the policy's own answers
    own.initial_observation()
    nxt = own.step(toks("Country: Germany"))
    last_user = text_of(nxt.next_observation).split("<u>")[-1]
    assert "This photo was taken in Germany." in last_user and "France" not in last_user
    assert nxt.metrics["next_teacher_forced"] == 0.0


def test_teacher_forcing_draws_are_seeded_per_rollout():
    half = HierarchySpec(teacher_forcing=0.5)
    def draws(seed):
        envs = HierarchicalGroupBuilder(PARIS, R, KernelReward(TAU), half, seed=seed).make_envs(16)
        out = []
        for env in envs:
            env.initial_observation()
            out.append(env.step(toks("Country: Germany")).metrics["next_teacher_forced"])
        return out
    assert draws(0) == draws(0)  # a resumed run repeats them
    assert 0 < sum(draws(0)) < 16 and draws(0) != draws(1)


def test_unparseable_answers_end_with_the_format_penalty():
    res = play(make(MULTI_TURN), ["   "])
    assert res[0].reward == -0.1 and res[0].done and res[0].metrics["parsed"] == 0.0
    res = play(make(MULTI_TURN), ["France", "Ile-de-France", "Paris", "somewhere nice"])
    assert [r.reward for r in res] == [0.2, 0.2, 0.2, -0.1] and res[-1].done


def test_labels_from_the_reverse_geocoder_when_the_data_has_none():
    bare = Sample(id="bare", image=PARIS.image, lat=PARIS.lat, lon=PARIS.lon)
    calls = []

    def geocoder(lats, lons):
        calls.append(1)
        return [GeoLabels("FR", "Ile-de-France, FR", "Paris, Paris, Ile-de-France, FR")]

    env = HierarchicalGroupBuilder(bare, R, KernelReward(TAU), MULTI_TURN, geocoder).make_envs(3)[0]
    res = play(env, ["Country: France", "Region: Île-de-France", "City: Paris", format_answer(*OFF, 4)])
    assert [r.reward for r in res[:3]] == [0.2, 0.2, 0.2] and len(calls) == 1  # once per image, not per rollout


def test_the_real_reverse_geocoder_labels_paris():
    from geospot.geo import reverse_geocode

    bare = Sample(id="bare", image=PARIS.image, lat=PARIS.lat, lon=PARIS.lon)
    env = HierarchicalGroupBuilder(bare, R, KernelReward(TAU), MULTI_TURN, reverse_geocode).make_envs(1)[0]
    res = play(env, ["Country: FR", "Region: Ile-de-France", "City: Paris", format_answer(*OFF, 4)])
    assert [r.reward for r in res[:3]] == [0.2, 0.2, 0.2]


def test_spec_validation():
    with pytest.raises(ValueError, match="end with coords"):
        HierarchySpec(("country", "region"), (0.5, 0.5))
    with pytest.raises(ValueError, match="one weight each"):
        HierarchySpec(("country", "coords"), (1.0,))
    spec = HierarchySpec(("country", "coords"), (0.5, 0.5))
    env = HierarchicalEnv(PARIS, R, KernelReward(TAU), {"country": "FR"}, spec)
    with pytest.raises(RuntimeError, match="initial_observation"):
        env.step(toks("France"))
