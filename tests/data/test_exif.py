"""Geotagged photos as labelled data: EXIF GPS tags read by hand-worked numbers, a photo whose
tags are missing, void or malformed skipped by reason (never guessed), and a folder of real
photos with GPS written into them read, inferred and trained on like any labelled folder."""

import math
import shutil
from pathlib import Path

import pytest
from PIL import Image
from PIL.TiffImagePlugin import IFDRational

from geospot.data import load_samples, open_stream
from geospot.data.exif import GPS_IFD, BadGps, gps_coords, read_gps
from geospot.data.spec import SpecError, infer_kind, parse_spec

OSV = Path(__file__).resolve().parents[3] / "shared" / "data" / "osv5m-samples"
SYDNEY = {1: "S", 2: (33.0, 52.0, 4.0), 3: "E", 4: (151.0, 12.0, 36.0)}  # 33°52'04"S 151°12'36"E


def geotag(src: Path, dst: Path, gps: dict | None, fmt: str | None = None) -> Path:
    """A copy of a real photo with `gps` as its EXIF GPS tags (None: an EXIF block without GPS)."""
    im = Image.open(src)
    exif = im.getexif()
    im = im.reduce(4)  # 227x128: the HEIC encoder takes ~0.5 s for the full photo
    if gps is not None:
        exif.get_ifd(GPS_IFD).update(gps)
    dst.parent.mkdir(parents=True, exist_ok=True)
    im.save(dst, format=fmt, exif=exif.tobytes())  # (PNG writes an Exif object only as bytes)
    return dst


def test_degrees_minutes_seconds_signed_by_their_references():
    lat, lon = gps_coords(SYDNEY)
    assert lat == pytest.approx(-(33 + 52 / 60 + 4 / 3600))  # -33.867778
    assert lon == pytest.approx(151 + 12 / 60 + 36 / 3600)  # 151.21
    paris = {1: "N", 2: (IFDRational(48, 1), IFDRational(514, 10), IFDRational(0, 1)), 3: "E", 4: (2.3522,)}
    assert gps_coords(paris) == pytest.approx((48 + 51.4 / 60, 2.3522))  # decimal minutes; plain degrees
    assert gps_coords({**SYDNEY, 1: "S\x00", 3: "w"}) == pytest.approx((-33.867778, -151.21), abs=1e-6)


@pytest.mark.parametrize("gps,reason", [
    ({}, "no_gps"),
    ({1: "N", 2: (48.0, 51.0, 24.0)}, "no_gps"),                         # latitude only
    ({**SYDNEY, 9: "V"}, "gps_void"),                                    # the receiver's "void"
    ({1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}, "gps_void"),  # a phone's no-fix (0, 0)
    ({**SYDNEY, 1: ""}, "bad_gps"),                                      # S not written: never read as north
    ({**SYDNEY, 3: "X"}, "bad_gps"),
    ({**SYDNEY, 2: (33.0, 75.0, 0.0)}, "bad_gps"),                       # 75 minutes
    ({**SYDNEY, 2: (95.0, 0.0, 0.0)}, "bad_gps"),                        # off the globe
    ({**SYDNEY, 2: (IFDRational(33, 0), 0.0, 0.0)}, "bad_gps"),          # a zero denominator: NaN
    ({**SYDNEY, 2: "33.8"}, "bad_gps"),                                  # text, not numbers
    ({**SYDNEY, 2: (1.0, 2.0, 3.0, 4.0)}, "bad_gps"),
])
def test_unusable_gps_is_skipped_by_reason(gps, reason):
    with pytest.raises(BadGps) as e:
        gps_coords(gps)
    assert e.value.reason == reason and str(e.value)


def test_tags_are_read_from_jpeg_webp_png_and_an_iphones_heic(tmp_path):
    src = OSV / "unlabeled" / sorted(p.name for p in (OSV / "unlabeled").iterdir())[0]
    for suffix, fmt in ((".jpg", None), (".webp", None), (".png", "PNG"), (".heic", "HEIF")):
        path = geotag(src, tmp_path / f"p{suffix}", SYDNEY, fmt)
        assert gps_coords(read_gps(str(path))) == pytest.approx((-33.867778, 151.21), abs=1e-6), suffix
    assert read_gps(str(geotag(src, tmp_path / "none.jpg", None))) == {}
    # the HEIC photo is data like any other: found in the folder, decoded, labelled by its GPS
    (heic,) = load_samples(f"exif:{tmp_path}/*.heic", "all", max_side=128)
    assert (heic.lat, heic.lon) == pytest.approx((-33.867778, 151.21), abs=1e-6)
    assert heic.image.mode == "RGB" and max(heic.image.size) == 128


def test_a_folder_of_geotagged_photos_is_labelled_data(tmp_path):
    """Real photos, three geotagged (one in a subfolder), one without GPS, one with a no-fix
    (0, 0): inferred as exif, the three read with their coordinates, the two counted by reason;
    a training stream yields the three; the same folder without any GPS gets the sentence that
    says what labels are and points to predict."""
    photos = sorted((OSV / "unlabeled").iterdir())
    trip = tmp_path / "trip"
    tags = [SYDNEY, {1: "N", 2: (48.0, 51.0, 24.0), 3: "E", 4: (2.0, 21.0, 7.2)},
            {1: "N", 2: (40.0, 42.0, 46.0), 3: "W", 4: (74.0, 0.0, 21.6)}, None,
            {1: "N", 2: (0.0, 0.0, 0.0), 3: "E", 4: (0.0, 0.0, 0.0)}]
    names = ["a.jpg", "day2/b.jpg", "day2/c.JPG", "d.jpg", "e.jpg"]
    for src, name, gps in zip(photos, names, tags):
        geotag(src, trip / name, gps)
    (trip / "copying.jpg").write_bytes(b"")  # an interrupted copy
    assert infer_kind(str(trip)) == "exif"
    got = {s.id: (s.lat, s.lon) for s in load_samples(str(trip), "all")}
    want = {"a.jpg": (-33.867778, 151.21), "day2/b.jpg": (48.856667, 2.352), "day2/c.JPG": (40.712778, -74.006)}
    assert sorted(got) == sorted(want)
    assert all(got[k] == pytest.approx(want[k], abs=1e-5) for k in want)
    with open_stream(str(trip), "all", 0, force={"repeat": False}, shuffle=False) as stream:
        assert len(list(stream)) == 3
        assert stream.skipped == {"no_gps": 1, "gps_void": 1, "empty_image": 1}
    assert {s.id for s in load_samples(f"exif:{trip}/day2/*.jpg", "all")} == {"b.jpg"}  # (c.JPG: globs see case)
    with open_stream(str(trip), "train", 0) as stream:  # a training stream repeats: it never runs dry
        assert all(not math.isnan(next(stream).lat) for _ in range(7))
    plain = tmp_path / "plain"
    shutil.copytree(OSV / "unlabeled", plain)
    with pytest.raises(SpecError, match=r"holds images but no labels .* GPS tags in the photos' EXIF: none of the "
                                        r"first 50 has them.* geospot predict model=<model> "):
        load_samples(str(plain), "all")


def test_a_stray_spreadsheet_does_not_hide_a_camera_roll(tmp_path, monkeypatch):
    """expenses.csv among geotagged photos: the folder is still read by their GPS; a labels CSV
    (a latitude column) or a spec naming columns still makes it a CSV folder; `~` is the home."""
    src = sorted((OSV / "unlabeled").iterdir())
    roll = tmp_path / "roll"
    geotag(src[0], roll / "a.jpg", SYDNEY)
    (roll / "expenses.csv").write_text("date,amount\n2024-01-02,12.50\n")
    assert infer_kind(str(roll)) == "exif"
    assert [s.id for s in load_samples(str(roll), "all")] == ["a.jpg"]
    assert parse_spec(f"{roll},lat=amount,lon=amount,id=date")[0].kind == "csv"
    (roll / "labels.csv").write_text("id,Latitude,Longitude\na,1,2\n")
    assert infer_kind(str(roll)) == "csv"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert parse_spec("~/roll/a.jpg")[0].target == str(roll / "a.jpg")
