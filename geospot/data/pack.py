"""Write samples as WebDataset tar shards in the sdan/geospot-unified member layout:
`<key>.jpg` (JPEG) + `<key>.json` {"lat", "lon", "city", "country", "source", ...}.

Shards are written under a temporary name and renamed when complete, so a crash never
leaves a truncated shard that looks finished."""

from __future__ import annotations

import io
import json
import os
import tarfile
from collections.abc import Iterable

from geospot.data.types import Sample


def sample_members(sample: Sample, key: str, quality: int = 90) -> list[tuple[str, bytes]]:
    buf = io.BytesIO()
    sample.image.convert("RGB").save(buf, format="JPEG", quality=quality)
    meta = {"lat": sample.lat, "lon": sample.lon, "city": sample.labels.get("city", ""),
            "country": sample.labels.get("country", ""), "source": sample.source, "id": sample.id}
    for k, v in sample.labels.items():
        meta.setdefault(k, v)
    return [(f"{key}.jpg", buf.getvalue()), (f"{key}.json", json.dumps(meta).encode())]


def add_member(tar: tarfile.TarFile, name: str, data: bytes, mtime: float = 0) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = int(mtime)  # fixed: the same samples give byte-identical shards
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def write_shards(samples: Iterable[Sample], out_dir: str, shard_size: int = 1000, prefix: str = "shard",
                 quality: int = 90) -> list[str]:
    """Returns the shard paths: out_dir/<prefix>-000000.tar, ..."""
    if shard_size < 1:
        raise ValueError("shard_size must be >= 1")
    os.makedirs(out_dir, exist_ok=True)
    paths: list[str] = []
    tar, tmp, n_in = None, "", 0

    def close() -> None:
        nonlocal tar
        if tar is not None:
            tar.close()
            os.replace(tmp, paths[-1])
            tar = None

    for i, s in enumerate(samples):
        if tar is None:
            paths.append(os.path.join(out_dir, f"{prefix}-{len(paths):06d}.tar"))
            tmp = paths[-1] + ".tmp"
            tar, n_in = tarfile.open(tmp, "w"), 0
        for name, data in sample_members(s, f"{i:09d}", quality):
            add_member(tar, name, data)
        n_in += 1
        if n_in >= shard_size:
            close()
    close()
    return paths
