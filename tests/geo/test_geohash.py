import math

import pytest

from geospot.geo.geohash import ALPHABET, common_prefix_len, decode, encode, is_geohash, shared_cells


def test_known_cells():
    # Wikipedia's worked examples
    assert encode(57.64911, 10.40744, 11) == "u4pruydqqvj"
    assert encode(42.6, -5.6, 5) == "ezs42"
    cell = decode("ezs42")
    assert (cell.lat, cell.lon) == (42.60498046875, -5.60302734375)
    assert cell.lat_err == cell.lon_err == 45 / 2 ** 11  # 25 bits: 12 lat (180/2^12 tall), 13 lon (360/2^13 wide)
    # the corners of the world: first character of each quadrant
    assert encode(-89.9, -179.9, 1) == "0" and encode(89.9, 179.9, 1) == "z"
    assert encode(0.0, 0.0, 2) == "s0"  # the boundary point goes to the upper cell on both axes


def test_round_trip_stays_in_the_cell():
    for lat, lon in [(48.8566, 2.3522), (-33.8688, 151.2093), (0.0, -179.99), (89.99, 179.99), (-90.0, -180.0)]:
        for n in range(1, 13):
            h = encode(lat, lon, n)
            c = decode(h)
            assert abs(c.lat - lat) <= c.lat_err and abs(c.lon - lon) <= c.lon_err
            assert encode(c.lat, c.lon, n) == h  # a cell's centre encodes back to the cell
            assert h.startswith(encode(lat, lon, n - 1)) if n > 1 else True  # finer cells nest


def test_decode_is_case_insensitive_and_rejects_bad_strings():
    assert decode("EZS42") == decode("ezs42")
    with pytest.raises(ValueError, match="'a' is not in"):
        decode("eza")
    with pytest.raises(ValueError, match="length"):
        decode("")
    with pytest.raises(ValueError, match="precision"):
        encode(0, 0, 13)
    with pytest.raises(ValueError, match="-90 <= lat"):
        encode(math.nan, 0, 5)
    assert is_geohash("u09T") and not is_geohash("hello") and len(ALPHABET) == 32


def test_common_prefix():
    assert common_prefix_len("u09tvw", "u09tun") == 4
    assert common_prefix_len("u09", "U09TVW") == 3
    assert common_prefix_len("", "u0") == 0
    # Paris is u09t..., London gcpv...: no shared cell, though only 340 km apart (a cell border)
    assert shared_cells(48.8566, 2.3522, 51.5074, -0.1278, 5) == 0
    assert shared_cells(48.8566, 2.3522, 48.8566, 2.3522, 5) == 5
