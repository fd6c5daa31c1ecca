"""Geotagged photos: a folder of pictures whose EXIF GPS tags are their labels.

A phone or a camera with GPS writes where each picture was taken into its EXIF block (the GPS
IFD: latitude and longitude as degrees, minutes, seconds, with N/S and E/W references). That is
the labelled data most users already own, so `data=<such a folder>` trains and evaluates on it
like any CSV folder: each photo is a record, its id the path below the folder.

    gps_coords:    the GPS tags -> (lat, lon) in signed degrees, or BadGps(reason) -- a photo
                   whose tags are missing, void or malformed is skipped by reason, never guessed;
    read_gps:      those tags from an image file's header (the pixels are not decoded); gps_of:
                   a photo's (lat, lon) or None;
    ExifGpsSource: the source (data/spec.py builds it for `exif:` and infers it for a folder of
                   photos with no labels file when one of them carries GPS tags)."""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from geospot.data.files import FileBytes, walk_files
from geospot.data.sources import IMAGE_EXTS, Record, Skip

GPS_IFD = 0x8825  # the EXIF pointer to the GPS tags
# GPS tag numbers (EXIF 2.3, section 4.6.6)
LAT_REF, LAT, LON_REF, LON, STATUS = 1, 2, 3, 4, 9


class BadGps(Exception):
    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason


def _degrees(value: Any, what: str) -> float:
    """(degrees, minutes, seconds) as EXIF rationals -> decimal degrees. Some writers store
    (degrees, decimal minutes) or plain decimal degrees: both read the same way."""
    parts = value if isinstance(value, (tuple, list)) else (value,)
    if not 1 <= len(parts) <= 3:
        raise BadGps("bad_gps", f"{what} has {len(parts)} parts (expected degrees, minutes, seconds)")
    if any(isinstance(p, (str, bytes)) for p in parts):  # EXIF stores rationals; text is a broken writer's
        raise BadGps("bad_gps", f"{what} {value!r} is text, not numbers")
    try:
        d, m, s = (float(p) for p in (*parts, 0.0, 0.0)[:3])
    except (TypeError, ValueError, ZeroDivisionError):
        raise BadGps("bad_gps", f"{what} {value!r} is not numbers") from None
    if not all(math.isfinite(x) and x >= 0 for x in (d, m, s)) or m >= 60 or s >= 60:
        raise BadGps("bad_gps", f"{what} {value!r} is not degrees, minutes (< 60), seconds (< 60)")
    return d + m / 60.0 + s / 3600.0


def gps_coords(gps: Mapping[int, Any]) -> tuple[float, float]:
    """The GPS IFD's tags -> (latitude, longitude), signed by their references. Raises BadGps:
    no_gps (no latitude or longitude tag), gps_void (the receiver marked the fix void: status V,
    or the (0, 0) a phone writes when it had no fix), bad_gps (a missing or unknown N/S / E/W
    reference -- a southern latitude without its `S` would be read north, so none is assumed --
    or values that are not degrees or lie off the globe)."""
    if LAT not in gps or LON not in gps:
        raise BadGps("no_gps", "no GPS latitude/longitude in the EXIF")
    if str(gps.get(STATUS, "A")).strip().upper().startswith("V"):
        raise BadGps("gps_void", "the GPS status is V (void: no fix)")
    refs = []
    for tag, ok, what in ((LAT_REF, "NS", "latitude"), (LON_REF, "EW", "longitude")):
        ref = str(gps.get(tag, "")).strip("\x00 ").upper()
        if ref not in tuple(ok):
            raise BadGps("bad_gps", f"the {what} reference is {ref or 'missing'!r} (expected {' or '.join(ok)})")
        refs.append(ref)
    lat = _degrees(gps[LAT], "latitude") * (-1 if refs[0] == "S" else 1)
    lon = _degrees(gps[LON], "longitude") * (-1 if refs[1] == "W" else 1)
    if abs(lat) > 90 or abs(lon) > 180:
        raise BadGps("bad_gps", f"({lat:.4f}, {lon:.4f}) is off the globe")
    if lat == 0 and lon == 0:
        raise BadGps("gps_void", "GPS (0, 0): what a device writes with no fix")
    # 7 decimals (~1 cm): the seconds' fractions leave float noise (48.85666666666667) in every table
    return round(lat, 7), round(lon, 7)


def read_gps(path: str) -> dict[int, Any]:
    """The GPS tags of an image file ({} when it has none). Only the header is read (a JPEG's
    APP1 block); a PNG keeps its EXIF chunk after the pixels, so a PNG without one up front is
    loaded to look there."""
    from PIL import Image

    from geospot.data.prep import register_image_formats

    register_image_formats()  # a phone's HEIC photos carry the same EXIF
    with Image.open(path) as im:
        gps = dict(im.getexif().get_ifd(GPS_IFD))
        if not gps and im.format == "PNG":
            im.load()
            gps = dict(im.getexif().get_ifd(GPS_IFD))
    return gps


def gps_of(path: str) -> tuple[float, float] | None:
    """Where the photo at `path` was taken, by its EXIF GPS; None when it does not say (usably)."""
    try:
        return gps_coords(read_gps(path))
    except (BadGps, OSError, ValueError, SyntaxError):
        return None


@dataclass
class ExifGpsSource:
    """Every image file below `root` (or the files `paths` names), labelled by its EXIF GPS."""

    root: str
    paths: list[str] | None = None
    name: str = "exif"

    @functools.cached_property
    def _labelled(self) -> list[tuple[str, Any]]:
        """(path, (lat, lon) or BadGps) per image, read once per source (headers only: ~0.2 ms a
        photo), not per epoch."""
        files = self.paths if self.paths is not None else [
            p for p in walk_files(self.root) if p.rpartition(".")[2].lower() in IMAGE_EXTS]
        out = []
        for path in files:
            try:
                if os.path.getsize(path) == 0:  # (a camera roll's interrupted copy)
                    raise BadGps("empty_image", "an empty file")
                out.append((path, gps_coords(read_gps(path))))
            except BadGps as e:
                out.append((path, e))
            except (OSError, ValueError, SyntaxError) as e:  # PIL: not an image, or a broken header
                out.append((path, BadGps("decode_error", f"{type(e).__name__}: {e}")))
            except Exception as e:  # PIL's DecompressionBombError: too many pixels to open at all
                out.append((path, BadGps("decompression_bomb", str(e))))
        return out

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        # the order is the folder's (sorted): the stream's shuffle buffer mixes it
        for path, found in self._labelled:
            sid = os.path.relpath(path, self.root) if self.root else path
            if isinstance(found, BadGps):
                yield Skip(found.reason, f"{path}: {found}", self.name)
            else:
                yield Record(sid, self.name, found[0], found[1], {}, FileBytes(path))
