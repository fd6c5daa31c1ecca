import json
import os
from itertools import islice

import numpy as np
import pytest
from data_builders import make_samples, write_csv_folder, write_jsonl, write_parquet

from geospot.data import load_samples, open_stream
from geospot.data.pack import write_shards
from geospot.data.sources import expand_braces

OSV = "/work/shared/data/osv5m-samples"


def _same(got, want, exact=True):
    assert [s.id for s in got] == [s.id for s in want]
    for g, w in zip(got, want):
        assert (g.lat, g.lon) == pytest.approx((w.lat, w.lon), abs=1e-9)
        assert g.image.mode == "RGB" and g.image.size == w.image.size
        for k in ("country", "city"):
            assert g.labels[k] == w.labels[k]
        diff = np.abs(np.asarray(g.image, np.int16) - np.asarray(w.image, np.int16))
        assert (diff.max() == 0) if exact else (diff.mean() < 4)


def test_expand_braces():
    assert expand_braces("a-{000..002}.tar") == ["a-000.tar", "a-001.tar", "a-002.tar"]
    assert expand_braces("{train,val}/x-{1..2}") == ["train/x-1", "train/x-2", "val/x-1", "val/x-2"]
    assert expand_braces("plain.tar") == ["plain.tar"]
    assert expand_braces("{8..10}") == ["8", "9", "10"]


def test_webdataset_shards_roundtrip(tmp_path):
    samples = make_samples(12)
    paths = write_shards(samples, str(tmp_path), shard_size=5)
    assert [os.path.basename(p) for p in paths] == ["shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    for spec in (f"{tmp_path}/shard-{{000000..000002}}.tar", f"{tmp_path}/*.tar", str(tmp_path), f"wds:{tmp_path}"):
        _same(load_samples(spec, "all"), samples, exact=False)
    # Brace range selects a subset; source names come from the JSON.
    got = load_samples(f"{tmp_path}/shard-{{000001..000002}}.tar", "all")
    assert [s.id for s in got] == [s.id for s in samples[5:]] and got[0].source == "test"


def test_parquet_roundtrip(tmp_path):
    samples = make_samples(10)
    write_parquet(str(tmp_path / "a.parquet"), samples[:6])
    write_parquet(str(tmp_path / "b.parquet"), samples[6:])
    _same(load_samples(str(tmp_path), "all"), samples)
    write_parquet(str(tmp_path / "odd" / "c.parquet"), samples, lat="y", lon="x")
    _same(load_samples(f"parquet:{tmp_path}/odd/c.parquet,lat=y,lon=x", "all"), samples)
    with pytest.raises(ValueError, match="lat="):
        load_samples(f"{tmp_path}/odd/c.parquet", "all")


def test_csv_folder_roundtrip(tmp_path):
    samples = make_samples(9)
    write_csv_folder(str(tmp_path / "osv"), samples)
    _same(load_samples(str(tmp_path / "osv"), "all"), samples)
    _same(load_samples(f"csv:{tmp_path}/osv/labels.csv", "all"), samples)


def test_jsonl_roundtrip(tmp_path):
    samples = make_samples(7)
    write_jsonl(str(tmp_path / "m.jsonl"), samples)
    _same(load_samples(str(tmp_path / "m.jsonl"), "all"), samples)


def test_jsonl_keys_match_in_any_case_as_csv_columns_do(tmp_path):
    """{"Image", "Latitude", "LONG", "Country"}: read as image / lat / lon / country (a CSV's
    columns were already matched in any case); a record holding `lat` too, with another value,
    cannot say which is meant: skipped as ambiguous_coords, never read from either."""
    samples = make_samples(4)
    write_jsonl(str(tmp_path / "m.jsonl"), samples)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    with open(tmp_path / "m.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "Image": r["image"], "Latitude": r["lat"], "LONG": r["lon"],
                                "Country": r["country"], **({"lat": 0.5} if r["id"] == "s0003" else {})}) + "\n")
    with open_stream(str(tmp_path / "m.jsonl"), "all", repeat=False, workers=0) as stream:
        got = {s.id: s for s in stream}
        skipped = dict(stream.skipped)
    assert [(got[w.id].lat, got[w.id].lon) for w in samples[:3]] == [(w.lat, w.lon) for w in samples[:3]]
    assert "s0003" not in got and skipped == {"ambiguous_coords": 1}
    assert [got[w.id].labels["country"] for w in samples[:3]] == [w.labels["country"] for w in samples[:3]]


def test_osv5m_samples_folder():
    if not os.path.isdir(OSV):
        pytest.skip("shared OSV-5M samples not present")
    got = load_samples(OSV, "all")
    assert len(got) == 8 and all(max(s.image.size) == 512 for s in got)
    assert {s.labels["country"] for s in got} >= {"IN", "ES"}


MIX = ("synthetic:n=5000,size=8,seed=1,name=a@3;synthetic:n=5000,size=8,seed=2,name=b@1;"
       "synthetic:n=5000,size=8,seed=3,name=c@1")


def _shares(names):
    return {k: names.count(k) / len(names) for k in set(names)}


def test_mixing_weights_within_3_percent_on_10k():
    # The mixer and shuffle buffer run before decoding, so 10k records are cheap to check.
    stream = open_stream(MIX, seed=0, shuffle_buffer=200)
    names = [r.source for r in islice(stream._records(), 10_000)]
    shares = _shares(names)
    for name, want in (("a", 0.6), ("b", 0.2), ("c", 0.2)):
        assert abs(shares[name] - want) <= 0.03 * want
    # End to end (decoded samples), a shorter window holds the same shares.
    shares = _shares([s.source for s in open_stream(MIX, seed=1, shuffle_buffer=100).next_batch(1500)])
    for name, want in (("a", 0.6), ("b", 0.2), ("c", 0.2)):
        assert abs(shares[name] - want) <= 0.03 * want


def test_mixing_exhausted_part_drops_out(tmp_path):
    samples = make_samples(6)
    write_shards(samples, str(tmp_path), shard_size=6)
    got = load_samples(f"{tmp_path}@5;synthetic:n=20,size=8", "all")
    assert len(got) == 26 and sum(s.source == "test" for s in got) == 6


def test_shuffle_buffer_is_a_seeded_permutation():
    spec = "synthetic:n=200,size=8"
    plain = [s.id for s in load_samples(spec, "all")]
    a = [s.id for s in open_stream(spec, "all", seed=5, repeat=False, shuffle=True, shuffle_buffer=32)]
    b = [s.id for s in open_stream(spec, "all", seed=5, repeat=False, shuffle=True, shuffle_buffer=32)]
    c = [s.id for s in open_stream(spec, "all", seed=6, repeat=False, shuffle=True, shuffle_buffer=32)]
    assert a == b and a != c and a != plain and sorted(a) == sorted(plain)


def test_cursor_restore_on_mixed_local_shards(tmp_path):
    write_shards(make_samples(30), str(tmp_path / "w"), shard_size=7)
    spec = f"{tmp_path}/w/shard-{{000000..000004}}.tar@2;synthetic:n=50,size=16"
    a = open_stream(spec, "all", seed=3, repeat=True, shuffle=True, shuffle_buffer=10)
    a.next_batch(23)
    state = a.state_dict()
    want = [s.id for s in a.next_batch(60)]
    b = open_stream(spec, "all", seed=3, repeat=True, shuffle=True, shuffle_buffer=10)
    b.load_state_dict(state)
    assert [s.id for s in b.next_batch(60)] == want


def test_a_parquet_rows_missing_image_is_named_with_its_path(tmp_path):
    """A row whose relative image path names no file: skipped as missing_image, the detail giving
    the path looked for; an empty image cell names the column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geospot.data.spec import build_source, parse_spec

    pq.write_table(pa.table({"id": ["a", "b"], "image": [{"bytes": None, "path": "img/a.png"}, None],
                             "lat": [1.0, 2.0], "lon": [3.0, 4.0]}), tmp_path / "d.parquet")
    (part,) = parse_spec(str(tmp_path / "d.parquet"))
    skips = [r for r in build_source(part).records(0, 0, False)]
    assert [(s.reason, s.detail) for s in skips] == [
        ("missing_image", f"a: no file {tmp_path / 'img' / 'a.png'} (paths are relative to the parquet file's folder)"),
        ("missing_image", f"b: {tmp_path / 'd.parquet'}: the 'image' column is empty")]


def test_nested_coordinates_are_read_by_a_dotted_key(tmp_path):
    """{"location": {"lat": .., "lon": ..}}: `lat=location.lat,lon=location.lon` reads them; without the
    keys each record is skipped with the dotted keys to give."""
    samples = make_samples(3)
    write_jsonl(str(tmp_path / "m.jsonl"), samples)
    rows = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    with open(tmp_path / "m.jsonl", "w") as f:
        for r in rows:
            f.write(json.dumps({"id": r["id"], "image": r["image"], "location": {"lat": r["lat"], "lon": r["lon"]}})
                    + "\n")
    got = load_samples(f"{tmp_path / 'm.jsonl'},lat=location.lat,lon=location.lon", "all")
    assert [(s.id, s.lat, s.lon) for s in got] == [(s.id, s.lat, s.lon) for s in samples]
    with open_stream(str(tmp_path / "m.jsonl"), "all", repeat=False, workers=0) as stream:
        assert list(stream) == [] and stream.skipped == {"missing_coords": 3}


def test_a_skipped_rows_detail_names_the_files_line_past_blank_lines(tmp_path, caplog):
    from PIL import Image

    from geospot.data import open_stream

    (tmp_path / "images").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "images" / "a.jpg")
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\n\na,1,2\n\n\nb,1\n")  # the ragged row: line 6
    with open_stream(str(tmp_path), "all", repeat=False, workers=0) as stream:
        assert len(stream.next_batch(10)) == 1 and stream.skipped == {"malformed_row": 1}
    assert f"{tmp_path / 'labels.csv'}:6: 2 fields where the header has 3" in caplog.text
