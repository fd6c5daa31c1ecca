"""The answer parser: a table of real answer shapes, then a fuzz test that nothing raises."""

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geospot.geo import LatLon, parse_coordinates
from geospot.prompts import format_answer, format_previous_guess

P = (48.8566, 2.3522)  # Paris
DMS_PARIS = (48 + 51 / 60 + 24 / 3600, 2 + 21 / 60 + 8 / 3600)

CASES = [
    # the trained format and its cousins
    ("Latitude: 48.8566\nLongitude: 2.3522", P),
    ("Latitude: -33.87\nLongitude: 151.21", (-33.87, 151.21)),
    ("latitude: 48.8566, longitude: 2.3522", P),
    ("Lat: 48.8566\nLong: 2.3522", P),
    ("lat=48.8566, lon=2.3522", P),
    ("lat = 48.8566; lng = 2.3522", P),
    ('{"latitude": 48.8566, "longitude": 2.3522}', P),
    ("{'lat': 48.8566, 'lon': 2.3522}", P),
    ("**Latitude:** 48.8566\n**Longitude:** 2.3522", P),
    ("The latitude is approximately 48.8566 and the longitude is about 2.3522.", P),
    ("Longitude: 2.3522\nLatitude: 48.8566", P),  # order does not matter when labelled
    ("Latitude: 48.8566° N\nLongitude: 2.3522° E", P),
    ("Latitude: 33.87 S\nLongitude: 151.21 E", (-33.87, 151.21)),
    ("Latitude: 40.7128\nLongitude: \u221274.0060", (40.7128, -74.006)),  # unicode minus
    ("Latitude: 40\nLongitude: -74", (40.0, -74.0)),  # integers
    # pairs
    ("(48.8566, 2.3522)", P),
    ("[48.8566, 2.3522]", P),
    ("48.8566, 2.3522", P),
    ("Coordinates: 48.8566, 2.3522", P),
    ("I'd guess it's around (48, 2).", (48.0, 2.0)),
    ("lat, lon = -22.9068, -43.1729", (-22.9068, -43.1729)),
    ("geo:48.8566,2.3522", P),
    # hemispheres
    ("48.8566° N, 2.3522° E", P),
    ("48.8566°N 2.3522°E", P),
    ("33.8688° S, 151.2093° E", (-33.8688, 151.2093)),
    ("40.7128° N, 74.0060° W", (40.7128, -74.006)),
    ("22.9° S 43.2° W", (-22.9, -43.2)),
    ("N 48.8566, E 2.3522", P),
    ("S 34.6 W 58.4", (-34.6, -58.4)),
    ("2.3522° E, 48.8566° N", P),  # longitude first, the letters decide
    ("48.8566 North, 2.3522 East", P),
    # degrees-minutes-seconds
    ("48°51'24\"N 2°21'8\"E", DMS_PARIS),
    ("48°51\u203224\u2033N 2°21\u20328\u2033E", DMS_PARIS),  # unicode primes
    ("48° 51' 24\" N, 2° 21' 8\" E", DMS_PARIS),
    ("48º51'24''N 2º21'8''E", DMS_PARIS),  # ordinal indicator and two single quotes
    ("33°52'S 151°12'E", (-(33 + 52 / 60), 151.2)),  # degrees + minutes
    ("48°51.4'N, 2°21.13'E", (48 + 51.4 / 60, 2 + 21.13 / 60)),  # decimal minutes
    # reasoning and restating
    ("<think>Maybe Latitude: 10\nLongitude: 10? No, the signs are French.</think>\n"
     "Latitude: 48.8566\nLongitude: 2.3522", P),
    ("Latitude: 10.0\nLongitude: 20.0\nWait, the script is Cyrillic. "
     "Latitude: 55.75\nLongitude: 37.62", (55.75, 37.62)),
    ("My first guess (10.0, 20.0) was wrong; final answer (55.75, 37.62)", (55.75, 37.62)),
    ("The architecture suggests Paris.\n\nLatitude: 48.8566\nLongitude: 2.3522\n", P),
    ("reasoning...</think>Latitude: 48.8566\nLongitude: 2.3522", P),  # opening tag was in the prompt
    # no answer / out of range
    ("Latitude: 95.0\nLongitude: 10.0", None),
    ("Latitude: 45.0\nLongitude: 190.0", None),
    ("(123.4, 45.6)", None),
    ("48°61'0\"N 2°0'0\"E", None),  # 61 minutes
    ("I cannot tell where this is.", None),
    ("Latitude: <degrees>\nLongitude: <degrees>", None),
    ("There are 3 cars and 2 people.", None),
    ("<think>Latitude: 48.8566\nLongitude: 2.3522", None),  # still thinking: no answer yet
    ("", None),
    ("Latitude: 1e5\nLongitude: 2", None),  # exponent: not an answer, and not 1.0
    ("Latitude: 1E5\nLongitude: 2", None),
    ("Latitude: 48.8566", None),  # half an answer
    ("Latitude: 2.3522 E\nLongitude: 48.8566 N", None),  # hemispheres contradict the labels
]


@pytest.mark.parametrize("text,expected", CASES, ids=[repr(c[0])[:40] for c in CASES])
def test_parse_table(text, expected):
    got = parse_coordinates(text)
    if expected is None:
        assert got is None
    else:
        assert isinstance(got, LatLon)
        assert got.lat == pytest.approx(expected[0], abs=1e-9)
        assert got.lon == pytest.approx(expected[1], abs=1e-9)


def test_table_is_big_enough():
    assert len(CASES) >= 30


@pytest.mark.parametrize(
    "lat,lon", [(48.8566, 2.3522), (-33.8688, 151.2093), (0.0, -0.0), (-90.0, 180.0), (89.999, -179.999)]
)
@pytest.mark.parametrize("decimals", [0, 1, 2, 4])
def test_parses_what_format_answer_writes(lat, lon, decimals):
    got = parse_coordinates(format_answer(lat, lon, decimals))
    assert got == pytest.approx((round(lat, decimals), round(lon, decimals)), abs=10 ** -decimals)
    prev = parse_coordinates(format_previous_guess(lat, lon, decimals))
    assert prev == pytest.approx((round(lat, decimals), round(lon, decimals)), abs=10 ** -decimals)


def test_non_strings_give_none():
    assert parse_coordinates(None) is None
    assert parse_coordinates(48.85) is None


_ALPHABET = st.sampled_from(
    list("0123456789.,;:-+ \n°'\"NSEWnsewlatongiud()[]{}<>/=*\u2212\u2032\u2033º")
    + ["<think>", "</think>", "Latitude:", "Longitude:", "lat=", "lon="]
)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=200), st.lists(_ALPHABET, max_size=60).map("".join)))
def test_fuzz_never_raises(text):
    got = parse_coordinates(text)
    if got is not None:
        assert -90 <= got.lat <= 90 and -180 <= got.lon <= 180
        assert math.isfinite(got.lat) and math.isfinite(got.lon)
