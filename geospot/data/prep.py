"""Turn raw records into clean samples: coordinate checks and image preparation.

Everything here either returns a usable value (possibly *fixed*, e.g. CMYK -> RGB, the fix
is appended to `fixes`) or raises `BadSample(reason)`; the stream counts both by reason.
Runs in worker threads (PIL releases the GIL while decoding)."""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from geospot.config import option


class BadSample(Exception):
    """A record that cannot become a sample; `reason` is the key it is counted under."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason, self.detail = reason, detail


@dataclass(frozen=True)
class PrepConfig:
    max_side: int = option(512, "longest image side after preparation (px); 0 keeps the size")
    square: bool = option(False, "centre-crop every image to a square")
    max_pixels: int = option(40_000_000, "images declaring more pixels are skipped as decompression bombs")
    min_side: int = option(8, "images with a side shorter than this (px) are skipped")


def check_coords(lat: Any, lon: Any) -> tuple[float, float]:
    """WGS84 degrees as floats, or BadSample naming what is wrong. Never guesses a fix:
    a wrong label is worse than a skipped sample."""
    if lat is None or lon is None or (isinstance(lat, str) and not lat.strip()) or (isinstance(lon, str) and not lon.strip()):
        raise BadSample("missing_coords")
    try:
        la, lo = float(lat), float(lon)
    except (TypeError, ValueError):
        raise BadSample("bad_coords", f"{lat!r}, {lon!r}") from None
    if math.isnan(la) or math.isnan(lo) or math.isinf(la) or math.isinf(lo):
        raise BadSample("nan_coords")
    if not (-90.0 <= la <= 90.0 and -180.0 <= lo <= 180.0):
        raise BadSample("coords_out_of_range", f"{la}, {lo}")
    return la, lo


def _open(data: bytes | Image.Image, cfg: PrepConfig) -> Image.Image:
    if isinstance(data, Image.Image):
        return data
    if not data:
        raise BadSample("empty_image")
    try:
        im = Image.open(io.BytesIO(data))
    except Image.DecompressionBombError as e:
        raise BadSample("decompression_bomb", str(e)) from None
    except UnidentifiedImageError as e:
        raise BadSample("decode_error", str(e)) from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:  # a header cut short reads as truncated
        raise BadSample("truncated_image" if "truncat" in str(e).lower() else "decode_error", str(e)) from None
    w, h = im.size
    if w * h > cfg.max_pixels:  # checked on the header, before any pixel is decoded
        raise BadSample("decompression_bomb", f"{w}x{h}")
    if cfg.max_side and im.format == "JPEG" and im.mode in ("RGB", "L"):
        # JPEG DCT scaling: decode at 1/2, 1/4, 1/8 while the longest side stays >= max_side
        # (draft keeps a scale only if BOTH sides stay >= the requested box).
        scale = cfg.max_side / max(w, h)
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
        fixes.append("16bit")
        a = np.asarray(im, dtype=np.float64)
        top = 65535.0 if mode.startswith("I;16") or a.max() > 255 else 255.0
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


def prepare_image(data: bytes | Image.Image, cfg: PrepConfig, fixes: list[str] | None = None) -> Image.Image:
    """Decode (with the bomb check), apply EXIF orientation, make RGB, cap the longest side,
    optionally centre-crop to a square."""
    fixes = fixes if fixes is not None else []
    im = _open(data, cfg)
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
