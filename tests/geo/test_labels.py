from geospot.geo.geocode import GeoLabels
from geospot.geo.labels import country_code, country_name, display, forms, label_matches, normalize, truth_labels
from geospot.geo.parse_labels import parse_geohash, parse_label


def test_normalize_drops_accents_case_and_punctuation():
    assert normalize("Île-de-France, FR.") == "ile de france fr"
    assert normalize("  São Paulo ") == "sao paulo"


def test_country_codes_names_and_aliases():
    assert country_code("France") == country_code("fr") == country_code("FR") == "FR"
    assert country_code("USA") == country_code("United States of America") == "US"
    assert country_code("Czechia") == country_code("Czech Republic") == "CZ"
    assert country_code("Atlantis") is None
    assert country_name("GB") == "United Kingdom" and country_name("Valora") == "Valora"


def test_label_matching_case_insensitive_and_through_aliases():
    assert label_matches("country", "france", "FR")  # OSV-5M's code vs a name
    assert label_matches("country", "FR", "France")  # a name in the data vs the code
    assert label_matches("country", "U.S.A.", "US")
    assert not label_matches("country", "Germany", "FR")
    # the reverse geocoder's region "admin1, cc" and city "name, admin2, admin1, cc"
    assert label_matches("region", "Ile-de-France", "Ile-de-France, FR")
    assert label_matches("region", "ÎLE-DE-FRANCE, France", "Ile-de-France, FR")
    assert label_matches("city", "New York City", "New York City, , New York, US")
    assert not label_matches("region", "FR", "Ile-de-France, FR")  # the country is not a region
    assert not label_matches("region", "FR", ", FR")  # a place without admin1: nothing is right
    assert not label_matches("city", "a", "Paris")  # no substring matching
    assert not label_matches("country", None, "FR") and not label_matches("country", "France", "")
    assert forms("city", "") == frozenset()


def test_display_for_prompts():
    assert display("country", "FR") == "France"
    assert display("region", "Ile-de-France, FR") == "Ile-de-France"
    assert display("city", "Valora City") == "Valora City"


def test_truth_labels_prefer_the_data_then_the_geocoder():
    calls = []

    def geocoder(lats, lons):
        calls.append((list(lats), list(lons)))
        return [GeoLabels("FR", "Ile-de-France, FR", "Paris, Paris, Ile-de-France, FR")]

    assert truth_labels({"country": "Valora", "region": "Ka", "city": "Zo"}, 1.0, 2.0, geocoder) == \
        {"country": "Valora", "region": "Ka", "city": "Zo"}
    assert calls == []  # never asked when the data has every label
    got = truth_labels({"country": "France"}, 48.85, 2.35, geocoder)
    assert got == {"country": "France", "region": "Ile-de-France, FR", "city": "Paris, Paris, Ile-de-France, FR"}
    assert calls == [([48.85], [2.35])]
    assert truth_labels({}, 0, 0, None) == {"country": "", "region": "", "city": ""}


def test_parse_label():
    assert parse_label("Country: **France**.", "country") == "France"
    assert parse_label("France", "country") == "France"
    assert parse_label("<think>maybe Spain</think>\nGermany", "country") == "Germany"
    assert parse_label("<think>still thinking", "country") is None
    assert parse_label("Region: Bavaria\nregion = Saxony", "region") == "Saxony"  # the last restatement
    assert parse_label("", "country") is None and parse_label(None, "country") is None
    assert parse_label("x" * 200, "city") is None


def test_parse_geohash():
    assert parse_geohash("Geohash: U09T") == "u09t"
    assert parse_geohash("u09tvw") == "u09tvw"
    assert parse_geohash("Latitude: 1\nLongitude: 2") is None
    assert parse_geohash("hello") is None  # 'l' and 'o' are not geohash characters
    assert parse_geohash(3) is None


def test_parsers_never_raise_on_any_text():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.text(max_size=300), st.sampled_from(["country", "region", "city"]))
    def check(text, field):
        label = parse_label(text, field)
        assert label is None or 0 < len(label) <= 80
        cell = parse_geohash(text)
        assert cell is None or (cell == cell.lower() and 0 < len(cell) <= 12)
        assert isinstance(label_matches(field, label, text), bool)

    check()
