"""What a user's tables say twice is decided per row, the same in every pass and split (data/dedup.py)."""

import json
import os

import pytest
from PIL import Image

from geospot.data import load_samples, open_stream, split_of
from geospot.data.dedup import resolve
from geospot.data.files import FileBytes
from geospot.data.sources import Record
from geospot.data.types import DataError


def _photos(folder, n):
    os.makedirs(folder / "images", exist_ok=True)
    for i in range(n):  # photos of their own: the same bytes would be one photo
        Image.new("RGB", (48, 40), (i * 37 % 256, 90, 200 - i)).save(folder / "images" / f"p{i}.png")


def _csv(path, rows):
    path.write_text("id,latitude,longitude\n" + "".join(f"{i},{a},{o}\n" for i, a, o in rows))


def test_a_conflicting_id_in_one_table_is_never_used_in_any_pass(tmp_path):
    _photos(tmp_path, 4)
    _csv(tmp_path / "labels.csv", [("p0", 10, 20), ("p1", 11, 21), ("p2", 12, 22), ("p3", 13, 23), ("p0", 50, 60)])
    with open_stream(str(tmp_path) + ",val_frac=0,test_frac=0", split="train", seed=3) as stream:
        seen = [(s.id, s.lat) for s in (next(stream) for _ in range(30))]
        skipped = dict(stream.skipped)
    assert {i for i, _ in seen} == {"p1", "p2", "p3"}  # before: p0 came with 10 in one pass and 50 in another
    assert skipped["duplicate_id_conflict"] >= 2 * 10  # both rows of it, every pass


def test_two_tables_that_disagree_are_refused_naming_each(tmp_path):
    _photos(tmp_path, 3)
    rows = [(f"p{i}", 10 + i, 20) for i in range(3)]
    _csv(tmp_path / "labels.csv", rows)
    _csv(tmp_path / "labels_old.csv", [(i, a + 5, o) for i, a, o in rows])  # an older copy of the labels
    with pytest.raises(DataError) as e:
        load_samples(str(tmp_path), split="all")
    said = str(e.value)
    assert "its tables give 3 photos other coordinates" in said
    assert "(e.g. p0.png: (10.0, 20.0) in labels.csv, (15.0, 20.0) in labels_old.csv)" in said
    assert f"data={tmp_path / 'labels.csv'} or data={tmp_path / 'labels_old.csv'}" in said
    assert len(load_samples(str(tmp_path / "labels.csv"), split="all")) == 3  # the table it names reads


def test_three_versions_of_a_table_are_refused_not_taken_for_a_placeholder(tmp_path):
    _photos(tmp_path, 3)
    for k, name in enumerate(("labels.csv", "labels_old.csv", "labels_older.csv")):
        _csv(tmp_path / name, [(f"p{i}", 10 + i + 5 * k, 20) for i in range(3)])
    with pytest.raises(DataError, match="its tables give 3 photos other coordinates"):
        load_samples(str(tmp_path), split="all")


def test_two_jsonl_files_without_ids_that_disagree_on_a_photo_are_refused(tmp_path):
    _photos(tmp_path, 2)
    for name, dlat in (("data.jsonl", 0), ("data_old.jsonl", 5)):
        (tmp_path / name).write_text("".join(json.dumps({"image": f"images/p{i}.png", "lat": 10 + i + dlat,
                                                         "lon": 20}) + "\n" for i in range(2)))
    with pytest.raises(DataError, match=r"its tables give 2 photos other coordinates \(e.g. p0.png"):
        load_samples(str(tmp_path), split="all")


def test_a_copy_and_a_symlink_of_a_photo_are_one_photo_on_one_side_of_the_split(tmp_path):
    _photos(tmp_path, 1)
    img = tmp_path / "images"
    (img / "p0 (3).png").write_bytes((img / "p0.png").read_bytes())  # a byte-identical copy
    os.symlink(img / "p0.png", img / "p0-link.png")
    ids = ["p0", "p0 (3)", "p0-link"]
    _csv(tmp_path / "labels.csv", [(i, 10, 20) for i in ids])
    spec = str(tmp_path) + ",val_frac=0.5,test_frac=0"
    sides = {i: split_of(i, 0.5, 0.0) for i in ids}
    assert len(set(sides.values())) == 2, sides  # the names fall on both sides: only the photo can keep them apart
    train = [s.id for s in load_samples(spec, split="train")]
    held = [s.id for s in load_samples(spec, split="val")]
    assert train + held == ["p0"]  # the smallest id keeps it, on its own side only
    assert (train if sides["p0"] == "train" else held) == ["p0"]


def _rec(i, lat, lon, path):
    return Record(i, "t", lat, lon, {}, FileBytes(str(path)))


def test_resolve_by_hand(tmp_path):
    for name, color in (("a.png", 1), ("b.png", 2), ("c.png", 1), ("x.png", 3), ("y.png", 4)):  # c: a's bytes
        Image.new("RGB", (8, 8), (color, 0, 0)).save(tmp_path / name)
    a, b, c, x, y = (tmp_path / n for n in ("a.png", "b.png", "c.png", "x.png", "y.png"))
    rows = [_rec("k", 1, 2, a), _rec("j", "1.0", 2, c),  # one photo, two ids, one label: the first row's id keeps it
            _rec("z", 3, 4, b), _rec("z", 3, 5, b), _rec("w", "?", 0, b),  # one photo, two labels: none used
            _rec("m", 1, 1, x), _rec("m", 2, 2, y), _rec("n", 2, 2, y)]  # m keeps x; y stays n's (not m's, lost)
    res = resolve("part", [("t.csv", rows)], limit=100)
    said = [res.skip(r, (float(r.lat), float(r.lon))) if r.lat != "?" else None for r in rows]
    assert said[0] is None and said[1].reason == "duplicate_image" and "used once, as 'k'" in said[1].detail
    assert said[2].reason == said[3].reason == "duplicate_id_conflict"  # "w" has no coordinates: no part in it
    assert "((3.0, 4.0) and (3.0, 5.0))" in said[2].detail
    assert said[5] is None and said[6].reason == "duplicate_id_conflict" and said[7] is None
    assert resolve("part", [("t.csv", rows)], limit=4) is None  # past the limit: the stream's own checks


def test_jsonl_files_that_each_number_their_rows_are_read_not_refused(tmp_path):
    """part-0.jsonl and part-1.jsonl each with ids 0, 1, 2 naming other photos: not two tables that
    disagree (no photo is given two labels); each id keeps its first photo, in every pass."""
    _photos(tmp_path, 6)
    for f in range(2):
        (tmp_path / f"part-{f}.jsonl").write_text("".join(json.dumps(
            {"id": i, "image": f"images/p{3 * f + i}.png", "lat": 10 * f + i, "lon": 20}) + "\n" for i in range(3)))
    got = {s.id: (s.lat, s.lon) for s in load_samples(str(tmp_path), split="all")}
    assert got == {"0": (0.0, 20.0), "1": (1.0, 20.0), "2": (2.0, 20.0)}


def test_a_table_past_the_size_bound_keeps_the_streams_own_checks(tmp_path, monkeypatch):
    from geospot.data import dedup

    _photos(tmp_path, 2)
    _csv(tmp_path / "labels.csv", [("p0", 10, 20), ("p1", 11, 21)])
    _csv(tmp_path / "labels_old.csv", [("p0", 15, 20), ("p1", 16, 21)])
    monkeypatch.setattr(dedup, "MAX_TABLE_ROWS", 3)  # (OSV-5M's train.csv: reading it through would take minutes)
    assert len(load_samples(str(tmp_path), split="all")) == 2  # first seen wins, as before: not refused


def test_the_parts_of_a_spec_are_one_set_of_photos(tmp_path):
    """`photos;more.jsonl` naming the same files under other ids put a photo in training and held out,
    and two parts giving them other labels were read as 16 samples of 8 photos."""
    _photos(tmp_path, 4)
    _csv(tmp_path / "labels.csv", [(f"p{i}", 10 + i, 20) for i in range(4)])
    (tmp_path / "more").mkdir()
    (tmp_path / "more" / "b.jsonl").write_text("".join(json.dumps(
        {"image": str(tmp_path / "images" / f"p{i}.png"), "lat": 10 + i, "lon": 20}) + "\n" for i in range(4)))
    spec = f"{tmp_path / 'labels.csv'};{tmp_path / 'more' / 'b.jsonl'}"
    both = load_samples(spec + ",val_frac=0.5,test_frac=0", split="all")
    assert sorted(s.id for s in both) == ["p0", "p1", "p2", "p3"]  # the first part's names keep the photos
    (tmp_path / "more" / "b.jsonl").write_text("".join(json.dumps(
        {"image": str(tmp_path / "images" / f"p{i}.png"), "lat": 15 + i, "lon": 20}) + "\n" for i in range(4)))
    with pytest.raises(DataError, match="its tables give 4 photos other coordinates"):
        load_samples(spec, split="all")


def test_a_placeholder_named_at_many_places_is_skipped_not_refused_and_empty_files_are_no_copies(tmp_path):
    """A "photo unavailable" image under 6 ids at 6 places, split over two tables, refused the whole
    folder as two tables that disagree; 0-byte files were one photo."""
    _photos(tmp_path, 2)
    gone = Image.new("RGB", (48, 40), (128, 128, 128))
    for i in range(6):
        gone.save(tmp_path / "images" / f"gone{i}.png")
    for i in range(3):
        (tmp_path / "images" / f"empty{i}.png").write_bytes(b"")
    _csv(tmp_path / "batch1.csv", [("p0", 1, 1), *[(f"gone{i}", i, i) for i in range(3)], ("empty0", 5, 5),
                                   ("empty1", 5, 5)])
    _csv(tmp_path / "batch2.csv", [("p1", 2, 2), *[(f"gone{i}", i, i) for i in range(3, 6)], ("empty2", 5, 5)])
    with open_stream(str(tmp_path), split="all", repeat=False) as stream:
        got = sorted(s.id for s in stream)
        skipped = dict(stream.skipped)
    assert got == ["p0", "p1"]
    assert skipped == {"duplicate_image_conflict": 6, "empty_image": 3}


def test_a_row_appended_while_training_is_still_checked(tmp_path):
    """Rows the table did not hold when the stream opened passed every duplicate check."""
    _photos(tmp_path, 2)
    _csv(tmp_path / "labels.csv", [("p0", 10, 20), ("p1", 11, 21)])
    with open_stream(str(tmp_path) + ",val_frac=0,test_frac=0", split="train", shuffle=False) as stream:
        with open(tmp_path / "labels.csv", "a") as f:
            f.write("images/p0.png,50,60\n")  # the same photo, another id and label
        ids = [next(stream).id for _ in range(6)]
    assert "images/p0.png" not in ids and stream.skipped.get("duplicate_image_conflict", 0) >= 1
