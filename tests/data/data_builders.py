"""Builders for small local datasets and a corpus of damaged inputs (the tests write them,
nothing is downloaded)."""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib

import numpy as np
from PIL import Image

from geospot.data.pack import add_member, write_shards
from geospot.data.types import Sample


def make_image(i: int, size=(40, 30)) -> Image.Image:
    rng = np.random.default_rng(i)
    a = np.zeros((size[1], size[0], 3), np.uint8)
    a[:] = rng.integers(0, 255, 3)
    a[: size[1] // 2, : size[0] // 2] = rng.integers(0, 255, 3)
    return Image.fromarray(a)


def make_samples(n: int, source: str = "test") -> list[Sample]:
    return [Sample(id=f"s{i:04d}", image=make_image(i), lat=-60 + i * 1.5, lon=-170 + i * 3.25,
                   labels={"country": f"C{i % 3}", "city": f"City{i}", "region": f"R{i % 2}"}, source=source)
            for i in range(n)]


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def jpeg_bytes(im: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def write_csv_folder(root: str, samples: list[Sample], ext: str = "png") -> None:
    os.makedirs(os.path.join(root, "images"), exist_ok=True)
    with open(os.path.join(root, "labels.csv"), "w") as f:
        f.write("id,latitude,longitude,city,region,country\n")
        for s in samples:
            s.image.save(os.path.join(root, "images", f"{s.id}.{ext}"))
            f.write(f"{s.id},{s.lat},{s.lon},{s.labels['city']},{s.labels['region']},{s.labels['country']}\n")


def write_jsonl(path: str, samples: list[Sample]) -> None:
    d = os.path.dirname(path)
    os.makedirs(os.path.join(d, "img"), exist_ok=True)
    with open(path, "w") as f:
        for s in samples:
            s.image.save(os.path.join(d, "img", f"{s.id}.png"))
            f.write(json.dumps({"id": s.id, "image": f"img/{s.id}.png", "lat": s.lat, "lon": s.lon, **s.labels}) + "\n")


def write_parquet(path: str, samples: list[Sample], lat="latitude", lon="longitude") -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({
        "id": [s.id for s in samples],
        "image": [{"bytes": png_bytes(s.image), "path": None} for s in samples],
        lat: [s.lat for s in samples],
        lon: [s.lon for s in samples],
        "country": [s.labels["country"] for s in samples],
        "city": [s.labels["city"] for s in samples],
    })
    os.makedirs(os.path.dirname(path), exist_ok=True)
    pq.write_table(table, path, row_group_size=4)


def bomb_png(width: int, height: int) -> bytes:
    """A tiny valid PNG whose header claims width x height (the decoder would allocate it)."""
    data = bytearray(png_bytes(Image.new("RGB", (4, 4))))
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    return bytes(data)


def meta(i, **kw):
    m = {
        "lat": 10.0 + i % 50,
        "lon": 20.0 + i % 50,
        "city": f"c{i}",
        "country": "XX",
        "source": "corpus",
        "id": f"k{i}",
    }
    m.update(kw)
    return json.dumps(m).encode()


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display
    return jpeg_bytes(make_image(1, (40, 20)), exif=exif)


PNG_MAGIC = b"\x89PNG"


def build_corpus(d):
    good = jpeg_bytes(make_image(0))

    def photo(k: int) -> bytes:  # a photo of its own per member: one photo under two ids is a duplicate_image
        return jpeg_bytes(make_image(k))

    arr16 = (np.arange(40 * 30, dtype=np.uint16).reshape(30, 40) * 50)
    members = [
        # kept as they are
        ("000", photo(0), meta(0)), ("001", photo(1), meta(1)), ("002", photo(2), meta(2)),
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
        ("103", photo(103), json.dumps({"city": "nowhere"}).encode()),   # missing_coords
        ("104", photo(104), meta(104, lat=float("nan"))),                # nan_coords
        ("105", photo(105), meta(105, lat=123.0)),                       # coords_out_of_range
        ("106", photo(106), meta(106, lon=float("inf"))),                # nan_coords (inf)
        ("107", photo(107), meta(107, lat="north-ish")),                 # bad_coords
        ("108", bomb_png(20000, 20000), meta(108)),                      # decompression_bomb (PIL's limit)
        ("109", bomb_png(12500, 12500), meta(109)),                      # decompression_bomb (our max_pixels)
        ("110", photo(110), None),                                       # missing_metadata
        ("111", None, meta(111)),                                        # missing_image
        ("112", photo(112), b"{not json"),                               # bad_metadata
        ("113", png_bytes(Image.new("RGB", (3, 3))), meta(113)),         # too_small
        ("114", photo(114), meta(114, lat=None)),                        # missing_coords
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
