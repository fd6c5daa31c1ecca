"""Turn raw records into clean samples: coordinate checks and image preparation.

Everything here either returns a usable value (possibly *fixed*, e.g. CMYK -> RGB, the fix
is appended to `fixes`) or raises `BadSample(reason)`; the stream counts both by reason.
Runs in worker threads (PIL, simplejpeg and torch all release the GIL while they work).

Speed: a 910x512 street photo costs ~2 ms to decode and ~4 ms to resize with PIL's bilinear
filter on the dev machine, so the resize, not the decode, is the bottleneck. Colour JPEGs that
need shrinking therefore take a fast path: libjpeg-turbo through `simplejpeg` (fast IDCT and
chroma upsampling, which the shrink hides, plus DCT-domain scaling for images at least twice the
target) and torch's antialiased uint8 bilinear resize, which matches PIL's filter to 1 grey level
at ~1/3 of its cost. Anything else, and any input the fast path rejects, goes through PIL, which
also names the reason a sample is skipped."""

from __future__ import annotations

import decimal
import functools
import io
import math
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from geospot.config import option


@functools.cache
def register_image_formats() -> bool:
    """Teach PIL to open HEIC/HEIF, the format iPhones save photos in (pillow-heif, a dependency);
    -> whether it could. Called on import here and by whoever opens an image file without prep
    (exif.py's GPS reader, predict's probe). Without it such a photo is a decode_error."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


register_image_formats()

# Our `max_pixels` check on the header is the decompression-bomb guard; Pillow's own warning at half
# its limit (89 MP: a 108 MP phone photo) would only repeat it, once per image.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Qwen-VL's image processors refuse a side more than 200x the other (smart_resize): such an image
# (a 16000x60 strip) is skipped here, counted, instead of failing the step that draws it.
MAX_ASPECT = 200


class BadSample(Exception):
    """A record that cannot become a sample; `reason` is the key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class PrepConfig:
    max_side: int = option(512, "longest image side after preparation (px); 0 keeps the size")
    square: bool = option(False, "centre-crop every image to a square")
    max_pixels: int = option(150_000_000, "images declaring more pixels are skipped as decompression bombs "
                             "(a 108 MP phone photo passes)")
    min_side: int = option(8, "images with a side shorter than this (px) are skipped")


_DECIMAL = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)


def _degrees(v: Any) -> float:
    """A JSON number or a string in plain decimal/scientific notation as a float. Booleans
    (True is 1.0 to Python), underscores ("4_5" is 45.0 to float()), hex, "inf"/"nan" words,
    lists and objects are not coordinates: ValueError. A Decimal (parquet's decimal128 columns)
    is a number."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str, np.integer, np.floating, decimal.Decimal)):
        raise TypeError(type(v).__name__)
    if isinstance(v, str):
        v = v.strip()
        if not _DECIMAL.fullmatch(v):
            raise ValueError(v)
    return float(v)


def check_coords(lat: Any, lon: Any) -> tuple[float, float]:
    """WGS84 degrees as floats, or BadSample naming what is wrong. Never guesses a fix:
    a wrong label is worse than a skipped sample."""
    if (
        lat is None
        or lon is None
        or (isinstance(lat, str) and not lat.strip())
        or (isinstance(lon, str) and not lon.strip())
    ):
        raise BadSample("missing_coords", f"latitude {lat!r:.20}, longitude {lon!r:.20}")
    try:
        la, lo = _degrees(lat), _degrees(lon)
    except (TypeError, ValueError, OverflowError):
        raise BadSample("bad_coords", f"{lat!r:.40}, {lon!r:.40}") from None
    if math.isnan(la) or math.isnan(lo) or math.isinf(la) or math.isinf(lo):
        raise BadSample("nan_coords")
    if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
        swapped = abs(la) <= 180.0 and abs(lo) <= 90.0  # would be a valid (lon, lat)
        hint = " (latitude and longitude swapped?)" if swapped else ""
        raise BadSample("coords_out_of_range", f"{la}, {lo}{hint}")
    return la, lo


def latitude_beyond_90(lat: Any) -> bool:
    """Whether `lat` reads as a coordinate (_degrees) beyond ±90°: a row looks_swapped counts."""
    try:
        la = _degrees(lat)
    except (TypeError, ValueError, OverflowError):
        return False
    return math.isfinite(la) and abs(la) > 90


def looks_swapped(pairs: Iterable[tuple[Any, Any]], min_share: float = 0.1,
                  min_rows: int = 1) -> tuple[int, int] | None:
    """Whether a table's latitude and longitude columns look swapped, from its (lat, lon) values
    as found: (latitudes beyond ±90°, rows with both numbers) when at least `min_rows` and
    `min_share` of those rows have a latitude beyond ±90°, and no longitude is beyond ±90°
    (a real longitude column covering the world has ~half its values there); else None.

    A typo (latitude 123.4 among 1,000 rows) stays a counted `coords_out_of_range` skip, whose
    detail asks whether the columns are swapped; a swapped table is caught before it trains its
    other rows on mirrored places: in a world-wide one about half the "latitudes" exceed 90, and
    in a small one a single such row among ten is already 10 % (8 OSV-5M photos swapped have one).
    There a typo reads the same, so the message names both fixes. A swapped table whose every
    longitude lies within ±90° cannot be told from a true one by range."""
    beyond = n = 0
    for lat, lon in pairs:
        try:
            la, lo = _degrees(lat), _degrees(lon)
        except (TypeError, ValueError, OverflowError):
            continue
        if not (math.isfinite(la) and math.isfinite(lo)):
            continue
        n += 1
        if abs(lo) > 90:
            return None
        beyond += abs(la) > 90
    return (beyond, n) if beyond >= max(min_rows, min_share * n) else None


def _open(data: bytes | Image.Image, cfg: PrepConfig, header: Image.Image | None = None) -> Image.Image:
    """Decode with the checks; `header` is the same bytes already opened (not yet loaded)."""
    if isinstance(data, Image.Image):
        return data
    if not data:
        raise BadSample("empty_image", "an empty file")
    try:
        im = header if header is not None else Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadSample("decompression_bomb", str(e)) from None
    except UnidentifiedImageError:  # (PIL's text names an io.BytesIO object: say what the bytes are instead)
        raise BadSample("decode_error", f"{len(data):,} bytes that are not an image PIL can read (they begin "
                        f"{bytes(data[:8])!r})") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # a header cut short reads as truncated
        raise BadSample("truncated_image" if "truncat" in str(e).lower() else "decode_error", str(e)) from None
    w, h = im.size
    if w * h > cfg.max_pixels:  # checked on the header, before any pixel is decoded
        raise BadSample("decompression_bomb", f"{w}x{h}")
    if cfg.max_side and im.format == "JPEG" and im.mode in ("RGB", "L"):
        # JPEG DCT scaling: decode at 1/2, 1/4, 1/8 while the side that ends up max_side stays
        # >= max_side (draft keeps a scale only if BOTH sides stay >= the requested box).
        scale = cfg.max_side / (min(w, h) if cfg.square else max(w, h))
        im.draft(im.mode, (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale))))
    try:
        im.load()
    except Image.DecompressionBombError as e:
        raise BadSample("decompression_bomb", str(e)) from None
    except OSError as e:
        reason = "truncated_image" if "truncat" in str(e).lower() else "decode_error"
        raise BadSample(reason, str(e)) from None
    except (SyntaxError, ValueError, EOFError) as e:
        raise BadSample("decode_error", str(e)) from None
    return im


def _on_white(im: Image.Image) -> Image.Image:
    rgba = im.convert("RGBA")
    bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(bg, rgba).convert("RGB")


def to_rgb(im: Image.Image, fixes: list[str]) -> Image.Image:
    """8-bit RGB; each non-RGB mode is converted and the fix recorded."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode == "CMYK":
        fixes.append("cmyk")
        return im.convert("RGB")
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        fixes.append("float" if mode == "F" else "16bit")
        a = np.asarray(im, dtype=np.float64)
        # a float image's brightness is 0..1 (else it is read as integer levels)
        top = 1.0 if mode == "F" and a.max() <= 1.0 else 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
        a8 = np.clip(a / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return Image.fromarray(a8, "L").convert("RGB")
    if mode == "P":
        fixes.append("palette")
        if "transparency" in im.info:
            fixes.append("alpha")
            return _on_white(im)
        return im.convert("RGB")
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        fixes.append("alpha")
        return _on_white(im)
    if mode in ("L", "1"):
        fixes.append("grayscale")
        return im.convert("RGB")
    fixes.append(f"mode_{mode}")
    try:
        return im.convert("RGB")
    except (ValueError, OSError) as e:
        raise BadSample("unsupported_mode", mode) from e


# EXIF orientation -> the PIL transpose that puts the picture upright (as ImageOps.exif_transpose).
_UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
            5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
            8: Image.Transpose.ROTATE_90}


@functools.cache
def _fast_libs():
    """(simplejpeg, torch) or None when either is missing: then everything goes through PIL."""
    try:
        import simplejpeg
        import torch
    except ImportError:
        return None
    return simplejpeg, torch


def one_torch_thread() -> None:
    """Thread-pool initializer: each data worker resizes on one torch thread (torch's thread count
    is per OS thread here), so two workers on two cores do not each fan out into the cores the
    other and the training step are using."""
    libs = _fast_libs()
    if libs is not None:
        libs[1].set_num_threads(1)


def _fast_target(w: int, h: int, cfg: PrepConfig) -> tuple[int, int] | None:
    """Output (width, height) when the fast path applies (the image must shrink), else None.
    Square crops keep the centre min(w, h) square before the shrink."""
    if cfg.square:
        w = h = min(w, h)
    if not cfg.max_side or max(w, h) <= cfg.max_side:
        return None
    scale = cfg.max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


def _fast_jpeg(data: bytes, header: Image.Image, cfg: PrepConfig, fixes: list[str]) -> Image.Image | None:
    """The fast path for colour JPEGs that must shrink; None means 'use PIL' (not a JPEG we
    handle, libraries missing, or libjpeg-turbo refused the data -- PIL then decides the reason)."""
    libs = _fast_libs()
    w, h = header.size
    target = _fast_target(w, h, cfg)
    if libs is None or target is None or header.format != "JPEG" or header.mode != "RGB" or min(w, h) < cfg.min_side:
        return None
    simplejpeg, torch = libs
    # Let libjpeg-turbo scale in the DCT domain only by >= 2x (its M/8 scalings between 1/2 and 1
    # decode slower than full size), keeping the side that becomes max_side >= max_side: the
    # longer side, or the shorter one when the square crop follows.
    minimum = {}
    if (min(w, h) if cfg.square else max(w, h)) >= 2 * cfg.max_side:
        minimum = {"min_width": cfg.max_side} if (w >= h) != cfg.square else {"min_height": cfg.max_side}
    try:
        a = simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=True, fastupsample=True, **minimum)
    except (ValueError, RuntimeError):  # corrupt, truncated, unsupported: PIL names the reason
        return None
    dh, dw = a.shape[:2]
    if cfg.square:
        s = min(dw, dh)
        top, left = (dh - s) // 2, (dw - s) // 2
        a = a[top:top + s, left:left + s]
    tw, th = target
    im = Image.fromarray(_resize_uint8(torch, a, th, tw), "RGB")
    try:
        orientation = header.getexif().get(0x0112, 1)
    except Exception:  # a malformed EXIF block must not cost the sample
        fixes.append("bad_exif")
        orientation = 1
    if orientation in _UPRIGHT:  # after the shrink: fewer pixels to move
        im = im.transpose(_UPRIGHT[orientation])
        fixes.append("exif_orientation")
    return im


def _resize_uint8(torch, a: np.ndarray, h: int, w: int) -> np.ndarray:
    """HWC uint8 -> (h, w, 3) uint8 with torch's antialiased bilinear filter (PIL's BILINEAR).
    The kernel is fastest on channels-last uint8, and writing straight into an HWC buffer saves
    the NCHW -> HWC copy that F.interpolate's contiguous output would need (~1 ms a photo here,
    as much as the resize itself)."""
    x = torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0)  # a view with channels-last strides
    out = torch.empty((1, h, w, 3), dtype=torch.uint8)
    try:
        torch.ops.aten._upsample_bilinear2d_aa.out(x, [h, w], False, None, None, out=out.permute(0, 3, 1, 2))
    except (AttributeError, RuntimeError, TypeError):  # a torch without this overload: public API
        y = torch.nn.functional.interpolate(x, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
        return np.ascontiguousarray(y[0].permute(1, 2, 0).numpy())
    return out[0].numpy()


def _header(data: bytes) -> Image.Image | None:
    """The lazily opened image (header only), or None when PIL cannot even read that."""
    try:
        return Image.open(io.BytesIO(data))
    except Exception:  # _open raises the proper BadSample for the same bytes
        return None


def _check_aspect(w: int, h: int, cfg: PrepConfig) -> None:
    """A side more than MAX_ASPECT times the other is skipped (no model takes it), unless the square
    crop will cut it away."""
    if not cfg.square and min(w, h) > 0 and max(w, h) > MAX_ASPECT * min(w, h):
        raise BadSample("extreme_aspect", f"{w}x{h}, sides more than {MAX_ASPECT}:1; crop it")


def prepare_image(data: bytes | Image.Image, cfg: PrepConfig, fixes: list[str] | None = None) -> Image.Image:
    """Decode (with the bomb check), apply EXIF orientation, make RGB, cap the longest side,
    optionally centre-crop to a square."""
    fixes = fixes if fixes is not None else []
    header = None
    if isinstance(data, (bytes, bytearray)) and data:
        header = _header(data)
        if header is not None:
            _check_aspect(*header.size, cfg)
        if header is not None and header.size[0] * header.size[1] <= cfg.max_pixels:
            fast = _fast_jpeg(bytes(data), header, cfg, fixes)
            if fast is not None:
                return fast
    im = _open(data, cfg, header)
    try:
        if im.getexif().get(0x0112, 1) not in (1, 0):  # Orientation tag: the camera was turned
            im = ImageOps.exif_transpose(im)
            fixes.append("exif_orientation")
    except Exception:  # a malformed EXIF block must not cost the sample
        fixes.append("bad_exif")
    im = to_rgb(im, fixes)
    w, h = im.size
    if min(w, h) < cfg.min_side:
        raise BadSample("too_small", f"{w}x{h}")
    _check_aspect(w, h, cfg)
    if cfg.square and w != h:
        s = min(w, h)
        left, top = (w - s) // 2, (h - s) // 2
        im = im.crop((left, top, left + s, top + s))
        w, h = im.size
    if cfg.max_side and max(w, h) > cfg.max_side:
        scale = cfg.max_side / max(w, h)
        # reducing_gap: box-reduce by an integer factor first, then filter (much cheaper).
        im = im.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.BILINEAR, reducing_gap=2.0)
    return im
