"""IM2GPS3K and YFCC4K load as distributed: CSV columns IMG_ID,LAT,LON (upper case) and
ids that are file names with their extension."""

import csv

from PIL import Image

from geospot.data import load_samples


def test_im2gps3k_layout_loads_without_conversion(tmp_path):
    root = tmp_path / "im2gps3k"
    (root / "images").mkdir(parents=True)
    rows = [("1000_123@N00_456.jpg", 48.85, 2.35), ("2000_789@N01_012.jpg", -33.87, 151.21)]
    for name, _, _ in rows:
        Image.new("RGB", (64, 48), (120, 80, 40)).save(root / "images" / name)
    with open(root / "im2gps3k_places365.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["IMG_ID", "author", "LAT", "LON", "S3_Label"])
        for name, lat, lon in rows:
            w.writerow([name, "someone", lat, lon, 3])

    samples = load_samples(str(root), split="all")
    got = sorted((s.id, s.lat, s.lon) for s in samples)
    assert got == sorted(rows)
