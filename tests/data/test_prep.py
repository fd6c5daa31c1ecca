"""Image preparation: the libjpeg-turbo + torch fast path gives what the PIL path gives (size,
orientation, crop, pixels to within a grey level or two), and every input it cannot take falls
back to PIL, which still names the skip reason."""

import io

import numpy as np
import pytest
from data_builders import jpeg_bytes, png_bytes
from PIL import Image

from geospot.data import prep
from geospot.data.prep import BadSample, PrepConfig, prepare_image


def photo(w: int, h: int, seed: int = 0) -> Image.Image:
    """Smooth colour fields plus texture: enough structure that a wrong filter, crop or
    orientation shows up in the pixels."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    a = np.stack([128 + 100 * np.sin(x / (w / 3.1)), 128 + 100 * np.cos(y / (h / 2.3)),
                  128 + 60 * np.sin((x + y) / 37.0)], axis=-1)
    a[: h // 3, : w // 4] = (250, 30, 30)  # a red block top-left marks the orientation
    a += rng.normal(0, 12, a.shape)
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture
def pil_only(monkeypatch):
    monkeypatch.setattr(prep, "_fast_libs", lambda: None)


@pytest.fixture
def fast_calls(monkeypatch):
    calls = []
    real = prep._resize_uint8

    def spy(*a):
        calls.append(a[1].shape)
        return real(*a)

    monkeypatch.setattr(prep, "_resize_uint8", spy)
    return calls


def both_paths(data: bytes, cfg: PrepConfig, monkeypatch) -> tuple[Image.Image, Image.Image]:
    fast = prepare_image(data, cfg)
    with monkeypatch.context() as m:
        m.setattr(prep, "_fast_libs", lambda: None)
        slow = prepare_image(data, cfg)
    return fast, slow


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).mean())


# `resized`: the (h, w) array the fast path hands to the resize, after DCT scaling and crop.
@pytest.mark.parametrize("size,square,expect,resized", [
    ((910, 512), False, (512, 288), (512, 910)),   # OSV-5M-sized: full decode, then shrink
    ((1536, 864), False, (512, 288), (324, 576)),  # >= 2x: libjpeg scales by 3/8 in the DCT first
    ((1536, 864), True, (512, 512), (864, 864)),   # short side < 2x: full decode, centre crop
    ((4096, 1024), True, (512, 512), (512, 512)),  # a panorama: DCT 1/2 keeps the SHORT side at 512
])
def test_fast_path_matches_pil(size, square, expect, resized, monkeypatch, fast_calls):
    data = jpeg_bytes(photo(*size), quality=92)
    fast, slow = both_paths(data, PrepConfig(max_side=512, square=square), monkeypatch)
    assert [c[:2] for c in fast_calls] == [resized]
    assert fast.mode == slow.mode == "RGB"
    assert fast.size == slow.size == expect
    # Different decoders (fast IDCT, DCT scaling) and filter implementations: close, not equal.
    assert mean_abs_diff(fast, slow) < 3.0


def test_fast_resize_is_pils_bilinear_filter():
    a = np.array(photo(910, 512))
    import torch

    ours = prep._resize_uint8(torch, a, 288, 512)
    pil = np.asarray(Image.fromarray(a).resize((512, 288), Image.BILINEAR), np.int16)
    assert ours.shape == (288, 512, 3) and ours.flags["C_CONTIGUOUS"]
    assert np.abs(ours.astype(np.int16) - pil).max() <= 1


def test_exif_orientation_on_the_fast_path(monkeypatch, fast_calls):
    im = photo(1200, 600)
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show it rotated 90 degrees clockwise
    data = jpeg_bytes(im, exif=exif.tobytes(), quality=92)
    fixes_fast, fixes_slow = [], []
    fast = prepare_image(data, PrepConfig(max_side=512), fixes_fast)
    with monkeypatch.context() as m:
        m.setattr(prep, "_fast_libs", lambda: None)
        slow = prepare_image(data, PrepConfig(max_side=512), fixes_slow)
    assert fast_calls
    assert fast.size == slow.size == (256, 512)
    assert fixes_fast == fixes_slow == ["exif_orientation"]
    assert mean_abs_diff(fast, slow) < 3.0
    assert fast.getpixel((250, 10))[0] > 200  # the red top-left block is now top-right


def test_truncated_big_jpeg_falls_back_and_is_named(fast_calls):
    data = jpeg_bytes(photo(1200, 800), quality=92)
    with pytest.raises(BadSample) as e:
        prepare_image(data[: len(data) // 2], PrepConfig(max_side=512))
    assert e.value.reason == "truncated_image"
    assert not fast_calls  # libjpeg-turbo refused it; PIL decided the reason


def test_big_cmyk_and_grey_jpegs_go_through_pil(fast_calls):
    cmyk, grey = [], []
    a = prepare_image(jpeg_bytes(photo(1200, 800).convert("CMYK")), PrepConfig(max_side=512), cmyk)
    b = prepare_image(jpeg_bytes(photo(1200, 800).convert("L")), PrepConfig(max_side=512), grey)
    assert a.size == b.size == (512, 341) and a.mode == b.mode == "RGB"
    assert cmyk == ["cmyk"] and grey == ["grayscale"]
    assert not fast_calls


def test_small_and_non_jpeg_images_skip_the_fast_path(fast_calls):
    assert prepare_image(jpeg_bytes(photo(400, 300)), PrepConfig(max_side=512)).size == (400, 300)
    buf = io.BytesIO()
    photo(1024, 512).save(buf, format="PNG")
    assert prepare_image(buf.getvalue(), PrepConfig(max_side=512)).size == (512, 256)
    assert not fast_calls


def test_pil_only_when_the_libraries_are_missing(pil_only, fast_calls):
    out = prepare_image(jpeg_bytes(photo(910, 512)), PrepConfig(max_side=512))
    assert out.size == (512, 288) and not fast_calls


def test_bomb_check_comes_before_the_fast_path(fast_calls):
    with pytest.raises(BadSample) as e:
        prepare_image(jpeg_bytes(photo(1200, 800)), PrepConfig(max_side=512, max_pixels=500_000))
    assert e.value.reason == "decompression_bomb" and not fast_calls


@pytest.mark.parametrize("size, square, kept", [
    ((16000, 60), False, False),  # a strip no Qwen-VL processor takes (256:1)
    ((4020, 20), False, False),   # 201:1
    ((4000, 20), False, True),    # 200:1: the processors' own limit, still taken
    ((16000, 60), True, True),    # the square crop cuts it to 60 x 60
])
def test_a_side_over_200_times_the_other_is_skipped_by_name(size, square, kept, fast_calls):
    for data in (jpeg_bytes(photo(*size)), png_bytes(photo(*size))):  # fast path and PIL path
        cfg = PrepConfig(max_side=512, square=square)
        if kept:
            assert min(prepare_image(data, cfg).size) >= 1
            continue
        with pytest.raises(BadSample) as e:
            prepare_image(data, cfg)
        assert e.value.reason == "extreme_aspect" and f"{size[0]}x{size[1]}" in e.value.detail
        assert not fast_calls


def test_a_48_megapixel_phone_photo_is_read():
    # 8064 x 6048, what a 48 MP phone camera writes (a 1-bit PNG: small to build, the same header check)
    buf = io.BytesIO()
    Image.new("1", (8064, 6048), 1).save(buf, format="PNG")
    out = prepare_image(buf.getvalue(), PrepConfig(max_side=512))
    assert out.size == (512, 384) and out.mode == "RGB"


def test_an_empty_file_says_so():
    """Its skip line read `empty_image (x.jpg: )`: the reason with nothing after the name."""
    with pytest.raises(BadSample) as e:
        prepare_image(b"", PrepConfig())
    assert (e.value.reason, e.value.detail) == ("empty_image", "an empty file")


def test_a_float_image_keeps_its_brightness():
    fixes = []
    grey = prep.to_rgb(Image.fromarray(np.full((4, 4), 0.5, dtype=np.float32), "F"), fixes)  # brightness 0..1
    assert fixes == ["float"] and np.asarray(grey).mean() == 128  # it was read as levels 0..255: black
    levels = prep.to_rgb(Image.fromarray(np.full((4, 4), 200.0, dtype=np.float32), "F"), [])
    assert np.asarray(levels).mean() == 200
