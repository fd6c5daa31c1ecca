"""A corpus of damaged inputs (data_builders.build_corpus: 13 kinds skipped, 6 kinds fixed),
read with exact counts by reason."""

import logging

import pytest
from data_builders import EXPECTED_FIXED, EXPECTED_SKIPPED, build_corpus, jpeg_bytes, make_image, make_samples
from PIL import Image

from geospot.data import open_stream
from geospot.data.pack import write_shards
from geospot.data.prep import BadSample, PrepConfig, check_coords, prepare_image


def test_corrupt_corpus_exact_counts(tmp_path, caplog):
    build_corpus(str(tmp_path))
    caplog.set_level(logging.WARNING, logger="geospot.data")
    stream = open_stream(f"{tmp_path}/a-{{000..001}}.tar", "all", repeat=False, workers=2)
    samples = list(stream)
    assert len(EXPECTED_SKIPPED) >= 12
    assert stream.skipped == EXPECTED_SKIPPED
    assert stream.fixed == EXPECTED_FIXED
    assert [s.id for s in samples] == [f"k{i}" for i in range(9)] + ["s0000", "s0001"]
    for s in samples:
        assert s.image.mode == "RGB" and min(s.image.size) >= 8
    by_id = {s.id: s for s in samples}
    assert by_id["k7"].image.size == (20, 40)  # EXIF orientation applied
    assert by_id["k6"].image.getpixel((0, 0))[1] > 100  # alpha composited on white, not black
    assert by_id["k3"].image.getpixel((5, 5))[0] > 200  # CMYK magenta -> red channel high
    # Each reason is logged once, however many times it occurs.
    logged = [r.getMessage() for r in caplog.records if "skipping" in r.getMessage()]
    assert len(logged) == len(EXPECTED_SKIPPED)


def test_each_lost_shard_is_named_and_a_file_that_is_no_tar_is_said_to_be_none(tmp_path, caplog):
    """A shard lost is a whole file of samples: each is named (other reasons once each), and a
    file no tar reader can open says so (it read like a shard cut short)."""
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "a.tar").write_bytes(b"garbage not a tar" * 10)
    (tmp_path / "x" / "b.tar").write_bytes(b"")
    caplog.set_level(logging.WARNING, logger="geospot.data")
    stream = open_stream(str(tmp_path / "x"), "all", repeat=False)
    assert list(stream) == [] and stream.skipped == {"truncated_tar": 2}
    logged = sorted(r.getMessage() for r in caplog.records if "skipping" in r.getMessage())
    assert len(logged) == 2 and all("not a readable tar archive" in m for m in logged)
    assert "a.tar" in logged[0] and "b.tar" in logged[1] and "only counted" not in logged[0]
    # a repeating stream reopens every shard each pass: a lost one is still named once
    write_shards(make_samples(3), str(tmp_path / "rep"), shard_size=10)
    (tmp_path / "rep" / "bad.tar").write_bytes(b"garbage not a tar" * 10)
    caplog.clear()
    stream = open_stream(str(tmp_path / "rep"), "all", repeat=True)
    assert len(stream.next_batch(30)) == 30 and stream.skipped["truncated_tar"] >= 5
    assert sum("bad.tar" in r.getMessage() for r in caplog.records) == 1


def test_corpus_counts_survive_a_cursor_restore(tmp_path):
    build_corpus(str(tmp_path))
    spec = f"{tmp_path}/a-{{000..001}}.tar"
    a = open_stream(spec, "all", repeat=False)
    a.next_batch(4)
    state = a.state_dict()
    rest_a = [s.id for s in a]
    b = open_stream(spec, "all", repeat=False)
    b.load_state_dict(state)
    assert [s.id for s in b] == rest_a and b.skipped == a.skipped == EXPECTED_SKIPPED


def test_csv_and_jsonl_damage(tmp_path):
    root = tmp_path / "osv"
    (root / "images").mkdir(parents=True)
    for i in range(3):
        make_image(i).save(root / "images" / f"{i}.jpg")
    (root / "labels.csv").write_text(
        "id,latitude,longitude,country\n0,1.5,2.5,AA\n1,,2.5,AA\n2,95,120.5,AA\n3,1,1,AA\n")
    s = open_stream(str(root), "all", repeat=False)
    assert [x.id for x in s] == ["0"]
    assert s.skipped == {"missing_coords": 1, "coords_out_of_range": 1, "missing_image": 1}
    (tmp_path / "m.jsonl").write_text(
        '{"image": "osv/images/0.jpg", "lat": 1, "lon": 2}\nnot json\n{"image": "nope.jpg", "lat": 1, "lon": 2}\n[1]\n')
    s = open_stream(str(tmp_path / "m.jsonl"), "all", repeat=False)
    assert len(list(s)) == 1 and s.skipped == {"bad_metadata": 2, "missing_image": 1}


@pytest.mark.parametrize("lat,lon,reason", [(None, 1, "missing_coords"), ("", 1, "missing_coords"),
                                            ("x", 1, "bad_coords"), (float("nan"), 1, "nan_coords"),
                                            (90.5, 0, "coords_out_of_range"), (0, -180.01, "coords_out_of_range")])
def test_check_coords_reasons(lat, lon, reason):
    with pytest.raises(BadSample) as e:
        check_coords(lat, lon)
    assert e.value.reason == reason


def test_check_coords_accepts_edges_and_strings():
    assert check_coords("-90", 180) == (-90.0, 180.0)
    assert check_coords(" 12.5 ", "-3") == (12.5, -3.0)


def test_prepare_caps_side_and_crops():
    im = Image.new("RGB", (1200, 600), (10, 20, 30))
    out = prepare_image(jpeg_bytes(im), PrepConfig(max_side=512))
    assert out.size == (512, 256)
    assert prepare_image(im, PrepConfig(max_side=512, square=True)).size == (512, 512)
    assert prepare_image(im, PrepConfig(max_side=0)).size == (1200, 600)


def test_looks_swapped_hand_worked():
    from geospot.data.prep import looks_swapped

    # a swapped world table: the "latitudes" are longitudes, 2 of 3 beyond ±90, no "longitude" beyond
    assert looks_swapped([(2.35, 48.85), (151.21, -33.87), (139.69, 35.68)]) == (2, 3)
    # 8 OSV-5M photos swapped: one "latitude" beyond 90 (a typo in 8 rows reads the same)
    assert looks_swapped([(79.99, 23.27), (108.94, 11.58)] + [(10.0, 20.0)] * 6) == (1, 8)
    # a typo among many rows is a skip: 2 among 30 rows is 6.7 % < 10 %
    assert looks_swapped([(95, 2.5), (96, 2.5)] + [(10.0, 20.0)] * 28) is None
    assert looks_swapped([(95, 2.5), (96, 2.5)] + [(10.0, 20.0)] * 18) == (2, 20)
    # a longitude beyond ±90 anywhere: the columns are right, whatever the latitudes
    assert looks_swapped([(95, 2.5), (96, 2.5), (10.0, 120.0)]) is None
    # values that are not numbers are left to check_coords
    assert looks_swapped([("x", 1), (None, 2), (float("nan"), 3)]) is None
    with pytest.raises(BadSample, match=r"swapped\?"):
        check_coords(108.94, 11.58)


def test_decimal_coordinates_and_missing_labels():
    from decimal import Decimal

    from geospot.data.sources import _labels

    assert check_coords(Decimal("23.274160"), Decimal("-79.986495")) == (23.27416, -79.986495)
    assert _labels({"country": float("nan"), "region": None, "city": "", "continent": "EU"}) == {"continent": "EU"}


def test_max_side_below_min_side_is_refused():
    from geospot.config import ConfigError
    from geospot.data.options import StreamConfig

    with pytest.raises(ConfigError, match="max_side=3: use 0"):
        StreamConfig(max_side=3).validate()
    with pytest.raises(ConfigError, match="max_side=-1"):
        StreamConfig(max_side=-1).validate()
    StreamConfig(max_side=0).validate()


def test_csv_folder_reads_every_image_format_pil_decodes(tmp_path):
    root = tmp_path / "osv"
    (root / "images").mkdir(parents=True)
    for i, fmt in enumerate(("GIF", "BMP", "TIFF")):
        make_image(i).save(root / "images" / f"{i}.{fmt.lower()}", format=fmt)
    (root / "labels.csv").write_text("id,latitude,longitude\n0,1,2\n1,3,4\n2,5,6\n")
    s = open_stream(str(root), "all", repeat=False)
    assert sorted(x.id for x in s) == ["0", "1", "2"] and s.skipped == {}


def test_a_spreadsheet_gets_one_sentence(tmp_path):
    from geospot.data.spec import SpecError, infer_kind

    (tmp_path / "labels.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(SpecError, match="spreadsheets are not read; save it as CSV"):
        infer_kind(str(tmp_path / "labels.xlsx"))
    (tmp_path / "sheet").mkdir()
    (tmp_path / "sheet" / "labels.xlsx").write_bytes(b"PK\x03\x04")
    with pytest.raises(SpecError, match=r"holds a spreadsheet \(labels.xlsx\), which is not read"):
        infer_kind(str(tmp_path / "sheet"))
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SpecError, match="cannot tell what kind of data this file is"):
        infer_kind(str(tmp_path / "notes.txt"))
