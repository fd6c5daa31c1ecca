"""Data throughput: decode + resize (longest side 512) from local WebDataset shards with the
geospot stream (2 worker threads; colour JPEGs decoded by libjpeg-turbo via simplejpeg, with
DCT scaling for >= 2x shrinks, and resized by torch's antialiased uint8 bilinear kernel) vs the
`webdataset` package's plain pipeline (`WebDataset(urls).decode("pil")` + resize, one process)
and a plain single-thread PIL loop, measured in the same run; plus synthetic-world images/s on one core.

The shards hold real street-view photos (the OSV-5M samples in /work/shared/data; synthetic
images when absent), once as OSV-5M ships them (682-910 x 512, "osv_*") and once upscaled to
1536 px on the long side like phone/Mapillary originals ("big1536_*"). The 2 cores of the
dev machine are shared, so `load_avg_1m` is reported with the numbers.
Prints ONE JSON line.  Usage: python benchmarks/data.py [--n 300]"""

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
from geospot.jsonutil import finite_json  # noqa: E402

OSV = "/work/shared/data/osv5m-samples"
MAX_SIDE = 512


def source_photos(long_side: int | None) -> list[bytes]:
    paths = sorted(glob.glob(os.path.join(OSV, "**", "*.jpg"), recursive=True))
    ims = [Image.open(p).convert("RGB") for p in paths]
    if not ims:
        w = SyntheticWorld(seed=0, image_size=112)
        ims = [w.sample(i).image for i in range(20)]
    out = []
    for im in ims:
        scale = (long_side or max(im.size)) / max(im.size)
        big = im.resize((round(im.width * scale), round(im.height * scale)), Image.LANCZOS) if scale != 1 else im
        buf = io.BytesIO()
        big.save(buf, format="JPEG", quality=90)
        out.append(buf.getvalue())
    return out


def with_comment(jpeg: bytes, text: str) -> bytes:
    """`jpeg` with a comment segment (COM) right after its start marker: the same pixels, decoded at
    the same cost, but other bytes — the stream skips a photo it has read before as duplicate_image."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def build_shards(d: str, n: int, long_side: int | None, per_shard: int = 100) -> list[str]:
    photos = source_photos(long_side)  # ~20: each is used n / 20 times, each time as other bytes
    paths = []
    for s in range(0, n, per_shard):
        path = os.path.join(d, f"bench-{s // per_shard:03d}.tar")
        with tarfile.open(path, "w") as tar:
            for i in range(s, min(n, s + per_shard)):
                add_member(tar, f"{i:06d}.jpg", with_comment(photos[i % len(photos)], f"bench copy {i}"))
                add_member(tar, f"{i:06d}.json", json.dumps({"lat": 1.0, "lon": 2.0, "source": "bench"}).encode())
        paths.append(path)
    return paths


def resize(im: Image.Image) -> Image.Image:
    scale = MAX_SIDE / max(im.size)
    return im.resize((round(im.width * scale), round(im.height * scale)), Image.BILINEAR) if scale < 1 else im


def best_rate(fn, repeats: int = 2) -> tuple[float, float]:
    """(images per wall second, images per CPU second of this process, all threads)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        n = fn()
        wall.append(n / (time.perf_counter() - t))
        cpu.append(n / max(time.process_time() - c, 1e-9))
    return round(max(wall), 1), round(max(cpu), 1)


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


def measure(n: int, long_side: int | None, tag: str, result: dict) -> None:
    with tempfile.TemporaryDirectory() as d:
        urls = build_shards(d, n, long_side)
        spec = os.path.join(d, f"bench-{{000..{len(urls) - 1:03d}}}.tar")
        ours(spec, 2)  # warm the page cache
        runs = {"geospot_2_threads": lambda: ours(spec, 2), "geospot_1_thread": lambda: ours(spec, 0),
                "plain_pil": lambda: peer_pil(urls)}
        try:
            import webdataset  # noqa: F401

            runs["peer"] = lambda: peer_webdataset(urls)
            result["peer"] = "webdataset WebDataset(urls).decode('pil') + PIL bilinear resize, 1 process"
        except ImportError:
            runs["peer"] = runs["plain_pil"]
            result["peer"] = "plain PIL decode + bilinear resize, 1 thread (webdataset not installed)"
        for name, fn in runs.items():
            wall, cpu = best_rate(fn)
            result[f"{tag}_{name}_images_per_s"] = wall
            result[f"{tag}_{name}_images_per_cpu_s"] = cpu
        # The comparison that survives a shared machine: work per CPU second; on 2 free cores
        # the 2-thread stream does ~2x its per-CPU-second rate (decode/resize release the GIL).
        result[f"{tag}_ratio_vs_peer_cpu"] = round(result[f"{tag}_geospot_2_threads_images_per_cpu_s"]
                                                   / result[f"{tag}_peer_images_per_cpu_s"], 2)
        result[f"{tag}_ratio_vs_peer_wall"] = round(result[f"{tag}_geospot_2_threads_images_per_s"]
                                                    / result[f"{tag}_peer_images_per_s"], 2)
        result[f"{tag}_geospot_2_cores_projected_images_per_s"] = round(
            2 * result[f"{tag}_geospot_2_threads_images_per_cpu_s"], 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=300, help="images in the shards")
    args = ap.parse_args()
    result = {"bench": "data", "images": args.n, "max_side": MAX_SIDE, "cores": os.cpu_count(),
              "load_avg_1m": round(os.getloadavg()[0], 2)}
    # osv: the photos as OSV-5M ships them (~682x512); big: upscaled to 1536 px like phone/Mapillary originals.
    measure(args.n, None, "osv", result)
    measure(args.n, 1536, "big1536", result)
    result["synthetic_224_images_per_s_1core"] = round(synthetic(224), 1)
    result["synthetic_112_images_per_s_1core"] = round(synthetic(112), 1)
    print(json.dumps(finite_json(result)))


if __name__ == "__main__":
    main()
