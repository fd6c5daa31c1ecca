"""Hand-worked rewards of the geohash curriculum: w_t * (shared_t / chars_t + bonus if closer)."""

import pytest
from PIL import Image

from geospot.data.types import Sample
from geospot.envs.geohash import GeohashGroupBuilder, GeohashSpec, read_guess
from geospot.geo import haversine_km
from geospot.geo.geohash import ALPHABET, decode, encode
from geospot.prompts import format_answer, format_geohash
from geospot.rl.testing import EOT, CharRenderer, text_of

R = CharRenderer()
PARIS = Sample(id="paris", image=Image.new("RGB", (8, 8)), lat=48.8566, lon=2.3522)
TRUTH = encode(PARIS.lat, PARIS.lon, 6)  # u09tvw


def toks(text):
    return [ord(c) for c in text] + [EOT]


def other(c):
    return next(x for x in ALPHABET if x != c)


def centre(h):
    c = decode(h)
    return c.lat, c.lon


def km(p):
    return haversine_km(p[0], p[1], PARIS.lat, PARIS.lon)


def play(spec, answers, seed=0):
    env = GeohashGroupBuilder(PARIS, R, spec, seed=seed).make_envs(1)[0]
    env.initial_observation()
    return [env.step(toks(a)) for a in answers]


# turn 1: the centre of the truth's 2-character cell (shares 2 of 2)
G1 = centre(TRUTH[:2])
# turn 2: a 4-character cell sharing 3 characters with the truth (shares 3 of 4)
G2 = centre(TRUTH[:3] + other(TRUTH[3]))
# turn 3: a 6-character cell sharing 4 characters (shares 4 of 6)
G3 = centre(TRUTH[:4] + other(TRUTH[4]) + "0")


def test_hand_worked_curriculum_with_the_improvement_bonus():
    assert km(G2) < km(G1) and km(G3) < km(G2)  # each turn closer: the bonus applies to turns 2 and 3
    res = play(GeohashSpec(), [format_answer(*g, 6) for g in (G1, G2, G3)])
    assert [r.reward for r in res] == pytest.approx([0.2 * 1.0, 0.3 * (3 / 4 + 0.1), 0.5 * (4 / 6 + 0.1)])
    assert [r.metrics["geohash_shared"] for r in res] == [2, 3, 4]
    assert [r.metrics["improved"] for r in res] == [0, 1, 1]
    assert [r.done for r in res] == [False, False, True]


def test_no_bonus_when_a_turn_moves_away():
    res = play(GeohashSpec(), [format_answer(*g, 6) for g in (G2, G1, G1)])
    # G1 is farther than G2; turn 3 repeats G1 (equal distance is not an improvement)
    assert [r.reward for r in res] == pytest.approx([0.2 * 1.0, 0.3 * (2 / 4), 0.5 * (2 / 6)])


def test_geohash_answers_are_graded_as_is():
    spec = GeohashSpec(answer="geohash")
    res = play(spec, [format_geohash(TRUTH[:2]), format_geohash(TRUTH[:3] + other(TRUTH[3])), "Geohash: " + TRUTH])
    assert [r.metrics["geohash_shared"] for r in res] == [2, 3, 6]
    assert res[2].reward == pytest.approx(0.5 * (1.0 + 0.1))
    assert read_guess("Geohash: u09t") == centre("u09t") and read_guess("nothing") is None


def test_prompts_show_the_previous_guess_or_the_truth():
    env = GeohashGroupBuilder(PARIS, R, GeohashSpec()).make_envs(1)[0]
    env.initial_observation()
    nxt = env.step(toks(format_answer(10.04, 20.06, 2)))
    assert "Your previous guess was (10.0, 20.1)." in text_of(nxt.next_observation)
    forced = GeohashGroupBuilder(PARIS, R, GeohashSpec(teacher_forcing=1.0, answer="geohash")).make_envs(1)[0]
    forced.initial_observation()
    nxt = forced.step(toks("Geohash: 7z"))
    want = f"Your previous answer was {TRUTH[:2]}. Refine it to a geohash of 4 characters."
    assert want in text_of(nxt.next_observation)
    assert nxt.metrics["next_teacher_forced"] == 1.0


def test_unparseable_turn_ends_with_the_penalty():
    res = play(GeohashSpec(format_penalty=-0.2), [format_answer(*G1, 6), "no idea"])
    assert res[1].reward == -0.2 and res[1].done and res[1].metrics["parsed"] == 0.0


def test_spec_validation():
    with pytest.raises(ValueError, match="one weight each"):
        GeohashSpec(chars=(2, 4), weights=(1.0,))


def test_a_photo_without_a_known_place_plays_all_turns():
    """predict asks a geohash run about photos with no truth (NaN): the turns run and parse; the
    reward has nothing to share (0 characters), never an error."""
    photo = Sample(id="photo", image=Image.new("RGB", (8, 8)), lat=float("nan"), lon=float("nan"))
    env = GeohashGroupBuilder(photo, R, GeohashSpec()).make_envs(1)[0]
    env.initial_observation()
    res = [env.step(toks(format_answer(*g, 6))) for g in (G1, G2, G3)]
    assert [r.done for r in res] == [False, False, True]
    assert [r.metrics["geohash_shared"] for r in res] == [0, 0, 0]
