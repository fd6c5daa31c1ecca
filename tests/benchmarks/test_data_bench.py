"""benchmarks/data.py builds its shards from ~20 photos used many times: each copy must read as
its own image (the stream skips a photo read before as duplicate_image, and the script asserts
that nothing was skipped; at its default --n 300 it failed on every run)."""

import io

from bench_scripts import load
from PIL import Image

from geospot.data import open_stream


def test_the_benchmarks_copies_of_a_photo_are_other_bytes_with_the_same_pixels(tmp_path):
    data = load("data")
    im = Image.new("RGB", (40, 30), (200, 120, 40))
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    a, b = data.with_comment(buf.getvalue(), "copy 1"), data.with_comment(buf.getvalue(), "copy 2")
    assert a != b and Image.open(io.BytesIO(a)).tobytes() == Image.open(io.BytesIO(b)).tobytes() == Image.open(
        buf).tobytes()
    shards = data.build_shards(str(tmp_path), 45, long_side=64, per_shard=20)  # > 20 photos: copies
    with open_stream(f"{tmp_path}/bench-*.tar", "all", repeat=False) as stream:
        got = stream.next_batch(100)
        assert len(shards) == 3 and len(got) == 45 and not stream.skipped
