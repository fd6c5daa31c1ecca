"""A corpus of damaged inputs, built here, read with exact counts by reason."""

import io
import json
import logging
import os
import struct
import tarfile
import zlib

import numpy as np
import pytest
from PIL import Image

from geospot.data import open_stream
from geospot.data.pack import add_member, write_shards
from geospot.data.prep import BadSample, PrepConfig, check_coords, prepare_image
from tests.data.helpers import jpeg_bytes, make_image, make_samples, png_bytes


def bomb_png(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height (the decoder would allocate it)."""
    data = bytearray(png_bytes(Image.new("RGB", (4, 4))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def meta(i, **kw):
    m = {"lat": 10.0 + i % 50, "lon": 20.0 + i % 50, "city": f"c{i}", "country": "XX", "source": "corpus", "id": f"k{i}"}
    m.update(kw)
    return json.dumps(m).encode()


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return jpeg_bytes(make_image(1, (40, 20)), exif=exif)


PNG_MAGIC = b"\x89PNG"


def build_corpus(d):
    good = jpeg_bytes(make_image(0))
    arr16 = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    members = [
        # kept as they are
        ("000", good, meta(0)), ("001", good, meta(1)), ("002", good, meta(2)),
        # kept, fixed
        ("003", jpeg_bytes(Image.new("CMYK", (40, 30), (0, 255, 0, 0))), meta(3)),
        ("004", png_bytes(Image.fromarray(arr16)), meta(4)),
        ("005", png_bytes(make_image(5).convert("P", palette=Image.ADAPTIVE)), meta(5)),
        ("006", png_bytes(Image.new("RGBA", (40, 30), (255, 0, 0, 128))), meta(6)),
        ("007", exif_rotated_jpeg(), meta(7)),
        ("008", png_bytes(Image.new("L", (40, 30), 90)), meta(8)),
        # skipped
        ("100", os.urandom(500), meta(100)),                             # decode_error
        ("101", good[: len(good) // 2], meta(101)),                      # truncated_image
        ("102", b"", meta(102)),                                         # empty_image
        ("103", good, json.dumps({"city": "nowhere"}).encode()),         # missing_coords
        ("104", good, meta(104, lat=float("nan"))),                      # nan_coords
        ("105", good, meta(105, lat=123.0)),                             # coords_out_of_range
        ("106", good, meta(106, lon=float("inf"))),                      # nan_coords (inf)
        ("107", good, meta(107, lat="north-ish")),                       # bad_coords
        ("108", bomb_png(20000, 20000), meta(108)),                      # decompression_bomb (PIL's limit)
        ("109", bomb_png(8000, 8000), meta(109)),                        # decompression_bomb (our max_pixels)
        ("110", good, None),                                             # missing_metadata
        ("111", None, meta(111)),                                        # missing_image
        ("112", good, b"{not json"),                                     # bad_metadata
        ("113", png_bytes(Image.new("RGB", (3, 3))), meta(113)),         # too_small
        ("114", good, meta(114, lat=None)),                              # missing_coords
    ]
    with tarfile.open(os.path.join(d, "a-000.tar"), "w") as tar:
        for key, img, js in members:
            if img is not None:
                ext = "png" if img.startswith(PNG_MAGIC) else "jpg"
                add_member(tar, f"{key}.{ext}", img)
            if js is not None:
                add_member(tar, f"{key}.json", js)
    # A shard cut in the middle of its third image: 2 samples, then truncated_tar.
    path = write_shards(make_samples(3, source="corpus"), d, shard_size=10, prefix="a-001")[0]
    with tarfile.open(path) as tar:
        cut = tar.getmembers()[4].offset_data + 40
    with open(path, "r+b") as f:
        f.truncate(cut)
    os.replace(path, os.path.join(d, "a-001.tar"))


EXPECTED_SKIPPED = {
    "decode_error": 1, "truncated_image": 1, "empty_image": 1, "missing_coords": 2, "nan_coords": 2,
    "coords_out_of_range": 1, "bad_coords": 1, "decompression_bomb": 2, "missing_metadata": 1,
    "missing_image": 1, "bad_metadata": 1, "too_small": 1, "truncated_tar": 1,
}
EXPECTED_FIXED = {"cmyk": 1, "16bit": 1, "palette": 1, "alpha": 1, "exif_orientation": 1, "grayscale": 1}


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
        "id,latitude,longitude,country\n0,1.5,2.5,AA\n1,,2.5,AA\n2,95,2.5,AA\n3,1,1,AA\n")
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
