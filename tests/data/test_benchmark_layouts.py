"""IM2GPS3K and YFCC4K load as distributed: CSV columns IMG_ID,LAT,LON (upper case) and
ids that are file names with their extension."""

import csv

from PIL import Image

from geospot.data import load_samples


def test_im2gps3k_layout_loads_without_conversion(tmp_path):
    root = tmp_path / "im2gps3k"
    (root / "images").mkdir(parents=True)
    rows = [("1000_123@N00_456.jpg", 48.85, 2.35), ("2000_789@N01_012.jpg", -33.87, 151.21)]
    for k, (name, _, _) in enumerate(rows):  # two photos: their bytes differ (the same bytes are one photo)
        Image.new("RGB", (64, 48), (120, 80, 40 + k)).save(root / "images" / name)
    with open(root / "im2gps3k_places365.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["IMG_ID", "author", "LAT", "LON", "S3_Label"])
        for name, lat, lon in rows:
            w.writerow([name, "someone", lat, lon, 3])

    samples = load_samples(str(root), split="all")
    got = sorted((s.id, s.lat, s.lon) for s in samples)
    assert got == sorted(rows)


def _osv5m_like(root, splits):
    """OSV-5M as downloaded: one CSV per split beside images/<split>/<id>.jpg."""
    for split, ids in splits.items():
        (root / "images" / split).mkdir(parents=True)
        with open(root / f"{split}.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["id", "latitude", "longitude"])
            for i in ids:
                Image.new("RGB", (32, 32), (i * 30 % 256, 80, 40)).save(root / "images" / split / f"{i}.jpg")
                w.writerow([i, 10.0 + i, 20.0])


def test_a_folder_of_train_and_test_tables_is_refused_naming_the_files(tmp_path):
    import pytest

    from geospot.data.spec import SpecError

    root = tmp_path / "osv5m"
    _osv5m_like(root, {"train": [1, 2, 3], "test": [7, 8]})
    with pytest.raises(SpecError) as e:
        load_samples(str(root), split="all")
    said = str(e.value)
    assert "(test.csv, train.csv)" in said and "held-out rows would be trained on" in said
    assert f"data={root / 'train.csv'} eval_data={root / 'test.csv'} to train" in said
    assert f"data={root / 'test.csv'} to evaluate" in said
    # the file it names reads that split's rows only, with the images found below images/<split>/
    assert sorted(s.id for s in load_samples(str(root / "train.csv"), split="all")) == ["1", "2", "3"]
    assert sorted(s.id for s in load_samples(str(root / "test.csv"), split="all")) == ["7", "8"]


def test_split_names_are_read_from_the_file_names_only_when_they_differ(tmp_path):
    from geospot.data.csv_source import mixed_splits

    def said(*names):
        return mixed_splits("/d", [f"/d/{n}" for n in names])

    assert said("train.csv", "part2.csv") is None  # one split named: nothing to mix up
    assert said("train-00.csv", "train-01.csv") is None  # shards of one split
    assert said("train_test.csv", "labels.csv") is None  # a name that says two splits says none
    assert said("contest.csv", "training_data.csv") is None  # 'contest' is a word, not 'test'
    assert said("val.csv", "test.csv") == ("/d: holds the tables of different splits (test.csv, val.csv); read as "
                                           "one, the held-out rows would be trained on. Name the file: "
                                           "data=/d/test.csv or data=/d/val.csv")
    three = said("osv5m_train.csv", "validation.csv", "test.csv")
    assert "data=/d/osv5m_train.csv eval_data=/d/validation.csv to train, data=/d/test.csv to evaluate" in three
