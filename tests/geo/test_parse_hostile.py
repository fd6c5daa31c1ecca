"""The answer parser on hostile text: never a cut-off number, decimal commas only when
unambiguous, and linear time on any 100k-character input (the old regex for `<think>` took
3.45 s on 80k characters of unclosed tags)."""

import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geospot.geo import parse as P
from geospot.geo.parse import LatLon, parse_coordinates

CASES = [
    ("Latitude: 48,85\nLongitude: 2,35", LatLon(48.85, 2.35)),  # decimal comma, both labelled
    ("Lat: 48,85, Lon: 2,35", LatLon(48.85, 2.35)),
    ("**Latitude:** -33,87\n**Longitude:** 151,21", LatLon(-33.87, 151.21)),
    ("Latitude: 0,5\nLongitude: -0,25", LatLon(0.5, -0.25)),
    ("Latitude: 48,85,3\nLongitude: 2,35", None),  # a third part: which comma is the decimal?
    ("Latitude: 48,85.3\nLongitude: 2,35", None),
    ("Latitude: 33,87 S\nLongitude: 151,21 E", None),  # a hemisphere after a comma number: unclear
    ("Latitude: 48,85°\nLongitude: 2,35°", None),
    ("Latitude: 48,85", None),  # one label: never (48, 85)
    ("48,85, 2,35", None),  # unlabelled commas: never (48, 85) or (85, 2)
    ("48.85.12, 2.35", None),  # was 48.85 (a cut-off number)
    ("Latitude: 48.85.12\nLongitude: 2.35", None),
    ("Latitude: 48.85\nLongitude: 2.35.1", None),
    ("48.85,2.35", LatLon(48.85, 2.35)),  # a comma between two decimals is a separator
    ("(48,2)", LatLon(48.0, 2.0)),  # bracketed integers stay a pair
    ("<think>" * 3000 + "Latitude: 1.5\nLongitude: 2.5", None),  # still thinking: no answer
    ("<think>x</think><think>y</think>Latitude: 1.5\nLongitude: 2.5", LatLon(1.5, 2.5)),
    ("<think>a<think>b</think>Latitude: 1.5\nLongitude: 2.5", LatLon(1.5, 2.5)),
    ("prompt</think> Latitude: 1.5\nLongitude: 2.5", LatLon(1.5, 2.5)),
    ("Latitude: 9.5\nLongitude: 9.5</think>Latitude: 1.5\nLongitude: 2.5", LatLon(1.5, 2.5)),
    ("Latitude: 1.5\nLongitude: 2.5<think>more", LatLon(1.5, 2.5)),
    ("The latitude is approximately 48.85 and the longitude is about 2.35.", LatLon(48.85, 2.35)),
    ("x" * 200_000 + " Latitude: 48.85\nLongitude: 2.35", LatLon(48.85, 2.35)),  # the end of a long answer
    ("1" * 200_000 + "5 and 2.5", None),  # the window starts inside a number: that number is dropped
]


@pytest.mark.parametrize(("text", "want"), CASES, ids=[repr(c[0][:40]) for c in CASES])
def test_hostile_answers(text, want):
    got = parse_coordinates(text)
    if want is None:
        assert got is None
    else:
        assert got is not None and got.lat == pytest.approx(want.lat) and got.lon == pytest.approx(want.lon)


def test_the_window_never_starts_inside_a_number():
    # 1025 characters: the window of 1024 would begin at "2.35"'s "2" cut to ".35" if not moved
    text = "Latitude: 48.85\nLongitude: 12.35"
    long = "z" * (P.MAX_CHARS - len(text) + 1) + text
    assert parse_coordinates(long) is None or parse_coordinates(long) == LatLon(48.85, 12.35)
    cut = P._last_chars("a 123456 b", 5)  # window "456 b" starts inside 123456: moved past it
    assert cut == "b"


# Pieces a hostile or broken model might repeat: tags, digits, separators, labels, signs.
PIECES = ["<think>", "</think>", "<THINK>", "1", "12", "48.85", ".", ",", " ", "\n", "°", "'", '"', "N", "S", "E",
          "W", "-", "+", "(", ")", "[", "lat", "Latitude: ", "lon", "Longitude: ", "is about ", "e5", "x", "_",
          "\u2212", "\u2032", "\uff0c", "approx. "]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.lists(st.sampled_from(PIECES), min_size=1, max_size=8), st.integers(0, 5))
def test_any_100k_characters_parse_in_bounded_time(unit, seed):
    """A 100k-character input built by repeating a random run of pieces: the parse must not
    raise and must stay far from quadratic. The bound is loose (the shared CI machine is noisy;
    `benchmarks/` is where speed is measured): 0.25 s, where the old parser took seconds."""
    base = "".join(unit)
    text = (base * (100_000 // len(base) + 1))[:100_000 - seed]
    t0 = time.perf_counter()
    out = parse_coordinates(text)
    elapsed = time.perf_counter() - t0
    assert out is None or isinstance(out, LatLon)
    assert elapsed < 0.25, (elapsed, repr(base))


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=0, max_size=300))
def test_never_raises_and_never_out_of_range(text):
    out = parse_coordinates(text)
    assert out is None or (abs(out.lat) <= 90 and abs(out.lon) <= 180)
