"""Builders for small local datasets (the tests write them, nothing is downloaded)."""

from __future__ import annotations

import io
import json
import os

import numpy as np
from PIL import Image

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
