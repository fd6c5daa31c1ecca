"""Data throughput: decode + resize (longest side 512) from local WebDataset shards with the
geospot stream (2 worker threads, JPEG draft decoding) vs the `webdataset` package's plain
pipeline (`WebDataset(urls).decode("pil")` + resize, one process) and a plain single-thread
PIL loop, measured in the same run; plus synthetic-world images/s on one core.

The shards hold real street-view photos (the OSV-5M samples in /work/shared/data, upscaled
to 1536 px on the long side as phone/Mapillary images are; synthetic images when absent).
Prints ONE JSON line.  Usage: python benchmarks/data.py [--n 400]"""

from __future__ import annotations

import argparse
import glob
import io
import json
import os
import tarfile
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

from PIL import Image  # noqa: E402

from geospot.data import open_stream  # noqa: E402
from geospot.data.pack import add_member  # noqa: E402
from geospot.data.synthetic import SyntheticWorld  # noqa: E402

OSV = "/work/shared/data/osv5m-samples"
MAX_SIDE = 512


def source_photos() -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(OSV, "**", "*.jpg"), recursive=True))
    ims = [Image.open(p).convert("RGB") for p in paths]
    if not ims:
        w = SyntheticWorld(seed=0, image_size=112)
        ims = [w.sample(i).image for i in range(20)]
    out = []
    for im in ims:
        scale = 1536 / max(im.size)
        big = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS)
        buf = io.BytesIO()
        big.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def build_shards(d: str, n: int, per_shard: int = 100) -> list[str]:
    photos = source_photos()
    paths = []
    for s in range(0, n, per_shard):
        path = os.path.join(d, f"bench-{s // per_shard:03d}.tar")
        with tarfile.open(path, "w") as tar:
            for i in range(s, min(n, s + per_shard)):
                add_member(tar, f"{i:06d}.jpg", photos[i % len(photos)])
                add_member(tar, f"{i:06d}.json", json.dumps({"lat": 1.0, "lon": 2.0, "source": "bench"}).encode())
        paths.append(path)
    return paths


def resize(im: Image.Image) -> Image.Image:
    scale = MAX_SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR) if scale < 1 else im


def best_rate(fn, repeats: int = 2) -> float:
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        n = fn()
        rates.append(n / (time.perf_counter() - t))
    return max(rates)


def ours(spec: str, workers: int) -> int:
    with open_stream(spec, "all", repeat=False, shuffle=False, workers=workers, max_side=MAX_SIDE) as s:
        n = sum(1 for x in s if max(x.image.size) == MAX_SIDE)
        assert not s.skipped, s.skipped
    return n


def peer_webdataset(urls: list[str]) -> int:
    import webdataset as wds

    ds = wds.WebDataset(urls, shardshuffle=False).decode("pil").to_tuple("jpg", "json")
    return sum(1 for im, _ in ds if max(resize(im).size) == MAX_SIDE)


def peer_pil(urls: list[str]) -> int:
    n = 0
    for u in urls:
        with tarfile.open(u) as tar:
            for m in tar:
                if m.name.endswith(".jpg"):
                    im = Image.open(io.BytesIO(tar.extractfile(m).read())).convert("RGB")
                    n += max(resize(im).size) == MAX_SIDE
    return n


def synthetic(size: int, n: int = 400) -> float:
    w = SyntheticWorld(seed=0, image_size=size)
    w.sample(0)
    t = time.perf_counter()
    for i in range(n):
        w.sample(i)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=400, help="images in the shards")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        urls = build_shards(d, args.n)
        spec = os.path.join(d, f"bench-{{000..{len(urls) - 1:03d}}}.tar")
        ours(spec, 2)  # warm the page cache
        result = {"bench": "data", "images": args.n, "max_side": MAX_SIDE, "cores": os.cpu_count(),
                  "source_long_side": 1536}
        result["geospot_2_threads_images_per_s"] = round(best_rate(lambda: ours(spec, 2)), 1)
        result["geospot_1_thread_images_per_s"] = round(best_rate(lambda: ours(spec, 0)), 1)
        try:
            result["peer"] = "webdataset 1.x WebDataset(urls).decode('pil') + PIL resize, 1 process"
            result["peer_images_per_s"] = round(best_rate(lambda: peer_webdataset(urls)), 1)
        except ImportError:
            result["peer"] = "plain PIL decode + resize, 1 thread (webdataset not installed)"
            result["peer_images_per_s"] = round(best_rate(lambda: peer_pil(urls)), 1)
        result["plain_pil_images_per_s"] = round(best_rate(lambda: peer_pil(urls)), 1)
        result["ratio_vs_peer"] = round(result["geospot_2_threads_images_per_s"] / result["peer_images_per_s"], 2)
    result["synthetic_224_images_per_s_1core"] = round(synthetic(224), 1)
    result["synthetic_112_images_per_s_1core"] = round(synthetic(112), 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
