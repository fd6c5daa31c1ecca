import json
import os

import pytest
from data_builders import EXPECTED_SKIPPED, build_corpus

from geospot.data import load_samples
from geospot.data.cli import main
from geospot.data.spec_paths import PACK_RECORD, packed_from

OSV = "/work/shared/data/osv5m-samples"


def _json(capsys, argv):
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_inspect_osv5m_samples(capsys):
    if not os.path.isdir(OSV):
        pytest.skip("shared OSV-5M samples not present")
    assert _json(capsys, ["inspect", OSV, "--json"]) == {  # the text's numbers, bounds included
        "samples": 8, "skipped": {}, "fixed": {}, "sources": {"osv5m-samples": 8},
        "latitude": [-19.123342, 43.261569], "longitude": [-88.163811, 108.942887], "images_without_a_row": 0}
    assert _json(capsys, ["inspect", f"data={OSV}", "--json"])["samples"] == 8  # the training commands' spelling
    assert main(["inspect", OSV]) == 0
    out = capsys.readouterr().out
    assert "samples: 8" in out and "skipped: 0" in out and "latitude: -19.1233 .. 43.2616" in out


def test_inspect_counts_skips_and_limit(tmp_path, capsys):
    build_corpus(str(tmp_path))
    got = _json(capsys, ["inspect", f"{tmp_path}/a-{{000..001}}.tar", "--json"])
    lat, lon = got.pop("latitude"), got.pop("longitude")
    assert got == {"samples": 11, "skipped": EXPECTED_SKIPPED, "fixed": got["fixed"], "sources": {"corpus": 11},
                   "images_without_a_row": 0}  # (tar shards: every member is a record)
    assert -90 <= lat[0] <= lat[1] <= 90 and -180 <= lon[0] <= lon[1] <= 180
    assert _json(capsys, ["inspect", "synthetic:n=30,size=16", "--json", "--limit", "7"])["samples"] == 7


def test_pack_then_read_back(tmp_path, capsys):
    spec = "synthetic:n=25,size=32,seed=4"
    assert main(["pack", spec, "--out", str(tmp_path), "--shard-size", "10"]) == 0
    assert "wrote 25 samples in 3 shard(s)" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path)) == [PACK_RECORD, "shard-000000.tar", "shard-000001.tar", "shard-000002.tar"]
    # what they were packed from (paths absolute), read by eval to know a run's held-out images of it
    assert json.loads((tmp_path / PACK_RECORD).read_text()) == {"from": spec, "split": "all", "samples": 25}
    assert packed_from(str(tmp_path), "/elsewhere") == (spec, "all") and packed_from(spec, str(tmp_path)) is None
    want, got = load_samples(spec, "all"), load_samples(str(tmp_path), "all")
    assert [s.id for s in got] == [s.id for s in want]
    assert [s.labels["country"] for s in got] == [s.labels["country"] for s in want]
    assert got[0].lat == pytest.approx(want[0].lat)
    assert main(["pack", spec, "--out", str(tmp_path / "b"), "--max-side", "0"]) == 0
    assert f"to {tmp_path / 'b'}, as JPEG (quality 90), at full size" in capsys.readouterr().out
    assert main(["pack", str(OSV), "--out", str(tmp_path / "c")]) == 0  # real photos: said to be shrunk
    assert "as JPEG (quality 90), longest side at most 512 px (--max-side 0 keeps full size)" in capsys.readouterr().out


def test_pack_takes_its_output_folder_as_a_second_argument(tmp_path, capsys, monkeypatch):
    """`geospot data pack SPEC OUT`, as a user first types it (--out still works; two folders are refused)."""
    assert main(["pack", "synthetic:n=5,size=16", str(tmp_path / "a")]) == 0
    assert sorted(os.listdir(tmp_path / "a")) == [PACK_RECORD, "shard-000000.tar"]
    monkeypatch.chdir(tmp_path)  # out=…, export's spelling: the folder after it, not one named "out=…"
    assert main(["pack", "data=synthetic:n=5,size=16", f"out={tmp_path / 'd'}"]) == 0
    assert sorted(os.listdir(tmp_path / "d")) == [PACK_RECORD, "shard-000000.tar"] and not (tmp_path / "out=").exists()
    for argv, word in ((["pack", "synthetic:n=5,size=16"], "needs an output folder"),
                       (["pack", "synthetic:n=5,size=16", str(tmp_path / "b"), "--out", str(tmp_path / "c")],
                        "two output folders")):
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and word in capsys.readouterr().err


def test_bad_spec_exits_2(capsys):
    assert main(["inspect", "/no/such/folder"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_pack_with_nothing_usable_exits_2(tmp_path, capsys):
    (tmp_path / "d" / "images").mkdir(parents=True)
    (tmp_path / "d" / "labels.csv").write_text("id,latitude,longitude\nnope,1,2\n")
    assert main(["pack", str(tmp_path / "d"), "--out", str(tmp_path / "out")]) == 2
    out, err = capsys.readouterr()
    assert "wrote 0 samples" in out and "skipped 1" in out and "gave no usable sample to pack" in err


def test_option_mistakes_are_one_sentence_and_a_reused_folder_is_refused(tmp_path, capsys):
    """--limit -1, --shard-size 0, a '/' in --prefix, a file as OUT: tracebacks before; a folder holding
    an earlier pack's shards was written into, and a reader of it then read the old shards too."""
    spec = "synthetic:n=6,size=16,seed=1"
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\n")
    cases = [(["inspect", spec, "--limit", "-1"], "--limit -1: give a number of samples >= 0"),
             (["pack", spec, str(tmp_path / "p"), "--shard-size", "0"], "--shard-size 0: give the samples per shard"),
             (["pack", spec, str(tmp_path / "p"), "--prefix", "a/b"], "--prefix 'a/b': give a file name start"),
             (["pack", spec, str(tmp_path / "labels.csv")], "labels.csv is a file: give a folder"),
             (["pack", spec, str(tmp_path / "p"), "--limit", "0"], "--limit 0 packs nothing")]
    for argv, said in cases:
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2 and said in capsys.readouterr().err
    assert not (tmp_path / "p").exists()  # refused before anything is written
    assert main(["pack", spec, str(tmp_path / "p"), "--shard-size", "2"]) == 0
    with pytest.raises(SystemExit):
        main(["pack", spec, str(tmp_path / "p"), "--prefix", "other"])
    assert "already holds .tar files (shard-000000.tar, shard-000001.tar, …)" in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path / "p")) == [PACK_RECORD, *(f"shard-00000{i}.tar" for i in range(3))]


def test_inspect_of_nothing_usable_exits_2_with_its_report(tmp_path, capsys):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\n")  # a header and no row
    assert main(["inspect", str(tmp_path), "--json"]) == 2
    out, err = capsys.readouterr()
    assert json.loads(out)["samples"] == 0 and "gave no usable sample" in err
    assert main(["inspect", "synthetic:n=6,size=16", "--limit", "0"]) == 0  # asked for none: none is no failure
    capsys.readouterr()
    assert main(["inspect", "synthetic:n=3,size=16", "--split", "val"]) == 2  # no id hashed into val: said so
    assert "no record of it is in that split: try --split all" in capsys.readouterr().err


def test_a_datasets_images_folder_points_at_the_labels_above_it(tmp_path, capsys):
    """Given the images/ folder of a labelled dataset, the refusal names the CSV one level up and the
    folder to give; a folder of other images beside it (unlabeled/) gets no such hint."""
    import shutil

    if not os.path.isdir(OSV):
        pytest.skip("shared OSV-5M samples not present")
    root = tmp_path / "set"
    shutil.copytree(OSV, root)
    assert main(["inspect", str(root / "images")]) == 2
    said = capsys.readouterr().err
    assert f"its parent's labels.csv labels them: give data={root}" in said
    (root / "unlabeled").mkdir(exist_ok=True)
    shutil.copy(next((root / "images").glob("*.jpg")), root / "unlabeled" / "other_photo.jpg")
    assert main(["inspect", str(root / "unlabeled")]) == 2
    assert "labels them" not in capsys.readouterr().err


def test_a_url_where_a_file_is_named_says_images_are_not_downloaded(tmp_path, caplog):
    import logging

    (tmp_path / "urls").mkdir()
    (tmp_path / "urls" / "labels.csv").write_text("image_path,latitude,longitude\n"
                                                  "https://example.com/a.jpg,48.8,2.3\nb.jpg,1.0,2.0\n")
    (tmp_path / "urls" / "x.jpg").write_bytes(b"")  # a folder with an image, so it is read as a CSV dataset
    caplog.set_level(logging.WARNING, logger="geospot.data")
    assert load_samples(str(tmp_path / "urls"), split="all", n=5) == []
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "'https://example.com/a.jpg' is a URL, and images are not downloaded: fetch them into the folder" in said


def test_the_labels_hint_matches_whole_names_and_reads_a_utf16_csv(tmp_path):
    """A short photo name ('1.jpg') is no hint that a CSV whose coordinates hold a 1 labels it; a
    UTF-16 CSV (Excel's 'Unicode text') that does name the photo gives the hint."""
    from geospot.data.layout import _labels_above

    (tmp_path / "fp" / "other").mkdir(parents=True)
    (tmp_path / "fp" / "labels.csv").write_text("image,latitude,longitude\nparis.jpg,48.81,2.35\n")
    assert _labels_above(str(tmp_path / "fp"), ["1.jpg", "IMG_001.jpg"]) is None
    assert _labels_above(str(tmp_path / "fp"), ["paris.jpg"]) == "labels.csv"
    (tmp_path / "u16").mkdir()
    (tmp_path / "u16" / "labels.csv").write_text("id\tlatitude\tlongitude\r\nphoto_7\t1.5\t2.5\r\n", encoding="utf-16")
    assert _labels_above(str(tmp_path / "u16"), ["photo_7.jpg"]) == "labels.csv"
    assert _labels_above(str(tmp_path / "u16"), ["photo_70.jpg"]) is None


def test_inspect_says_how_many_photos_no_row_names(tmp_path, capsys):
    """3 photos without a row were passed over without a word (not read: no skip counts them)."""
    from PIL import Image

    from geospot.data.cli import main

    (tmp_path / "images").mkdir()
    for i in range(4):
        Image.new("RGB", (40, 30), (i * 50, 0, 0)).save(tmp_path / "images" / f"p{i}.png")
    (tmp_path / "labels.csv").write_text("id,latitude,longitude\n./images/p0.png,1,2\n")
    assert main(["inspect", str(tmp_path), "--split", "all"]) == 0
    out = capsys.readouterr().out
    assert f"images no row names (not read): 3, e.g. {tmp_path / 'images' / 'p1.png'}; give each a row" in out
