"""Sources: each turns one spec part into a deterministic sequence of raw records.

A source yields `Record`s (id, coordinates as found, labels, an image payload that is
decoded later in a worker thread) and `Skip`s for damage it finds itself (a truncated tar,
a sample without metadata). The order depends only on (seed, epoch), so a stream can be
replayed to any position. Files are read through an `Opener` (files.py) so the hub source can reuse the
WebDataset reader over HTTP and tests can stand a local folder in for the hub."""

from __future__ import annotations

import functools
import json
import os
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from geospot.data.files import (  # noqa: F401  (expand_braces, unique_files re-exported: callers import them here)
    FileBytes,
    LocalOpener,
    Opener,
    expand_braces,
    read_relative,
    unique_files,
    walk_files,
)
from geospot.data.types import DataError
from geospot.geo.columns import ID_KEYS, LAT_KEYS, LON_KEYS, find_column, matching_columns

LABEL_KEYS = ("country", "region", "city", "sub_region", "continent")
# what PIL decodes, and HEIC/HEIF (a phone's photos) through pillow-heif (data/prep.py registers it)
IMAGE_EXTS = ("jpg", "jpeg", "png", "webp", "bmp", "gif", "tif", "tiff", "heic", "heif")


class Record(NamedTuple):
    id: str
    source: str
    lat: Any  # as found (validated later: may be None, NaN, a string...)
    lon: Any
    labels: dict
    payload: Any  # bytes | PIL.Image | callable() -> Sample (already complete)


class Skip(NamedTuple):
    reason: str
    detail: str
    source: str
    id: str | None = None  # the record's id where it is known: the skip then counts in that id's split only


class Source(Protocol):
    name: str

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]: ...


def _shard_order(paths: list[str], epoch: int, seed: int, shuffle: bool) -> list[str]:
    if not shuffle or len(paths) < 2:
        return list(paths)
    rng = np.random.default_rng([seed, epoch, 0x5A4D])
    return [paths[i] for i in rng.permutation(len(paths))]


def file_names(paths: list[str]) -> dict[str, str]:
    """What names each file in the ids of its records that carry none: the file's name, or where two
    files share one (a hub layout's train/0000.parquet and test/0000.parquet), its path below the
    folder they share, so the two files' rows never read as duplicates of each other."""
    names = {p: p.replace("\\", "/").rsplit("/", 1)[-1] for p in paths}
    if len(set(names.values())) == len(names):
        return names
    parts = [p.replace("\\", "/").split("/") for p in paths]
    shared = 0
    while all(len(x) > shared + 1 and x[shared] == parts[0][shared] for x in parts):
        shared += 1
    return {p: "/".join(x[shared:]) for p, x in zip(paths, parts)}


def _named_in_ids(names: dict[str, str], path: str) -> str:
    """How a record's made-up id names its file: file_names' name, or the file's own name for a path
    the source was not built with (a caller reading another shard)."""
    return names.get(path) or os.path.basename(path)


def _labels(meta: dict) -> dict:
    """The place labels a record carries; a missing one (None, "", a NaN from pandas or JSON) is
    left out, so hierarchical training geocodes it instead of learning the country "nan"."""
    return {k: str(v) for k in LABEL_KEYS if (v := _first(meta, (k,))) not in (None, "") and not _is_nan(v)}


def _is_nan(v: Any) -> bool:
    return isinstance(v, float) and v != v


def _first_key(meta: dict, keys: tuple[str, ...]) -> str | None:
    """The first of `keys` that `meta` holds; else the first it holds in another case ("Latitude",
    "LAT"), as a CSV's columns are matched: the key as written wins when both are there."""
    exact = next((k for k in keys if k in meta), None)
    if exact is not None:
        return exact
    lower = {k.lower(): k for k in meta if isinstance(k, str)}
    return next((lower[k] for k in keys if k in lower), None)


def _first(meta: dict, keys: tuple[str, ...]) -> Any:
    k = _first_key(meta, keys)
    return None if k is None else meta[k]


def _clash(meta: dict, keys: tuple[str, ...]) -> str | None:
    """Where a record holds two of `keys` (lat and latitude) with different values: which is meant
    cannot be told, so the record is skipped, never read from the first one found."""
    found = [(k, v) for k, v in meta.items() if isinstance(k, str) and k.lower() in keys and v not in (None, "")]

    def number(v: Any) -> Any:
        try:
            return float(v)
        except (TypeError, ValueError):
            return repr(v)

    if len({number(v) for _, v in found}) < 2:
        return None
    return " and ".join(f"{k!r} ({str(v)[:20]})" for k, v in found[:2]) + " disagree"


def _at(meta: dict, key: str) -> Any:
    """meta[key], or a nested value by a dotted path (`lat=location.lat` for {"location": {"lat": ..}})
    where the record has no key of that name."""
    if key in meta or "." not in key:
        return meta.get(key)
    value: Any = meta
    for part in key.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _coords_clash(meta: dict, lat_key: str | None, lon_key: str | None) -> str | None:
    for given, keys, name in ((lat_key, LAT_KEYS, "lat"), (lon_key, LON_KEYS, "lon")):
        clash = None if given else _clash(meta, keys)
        if clash:
            return f"{clash}; name the key with {name}=<key> in the spec"
    return None


JSONL_IMAGE_KEYS = ("image", "file_name", "image_path", "path")  # geospot's, then HF imagefolder's metadata.jsonl
# a CSV's row names its image by id (a file name or stem below images/) or by path: the usual columns
CSV_ID_KEYS = (*ID_KEYS, "image", "image_path", "file_name", "filename", "path")
IMAGE_COLS = ("image", "jpg", "img", "image_bytes")  # parquet columns that hold the image


@dataclass
class WebDatasetSource:
    """Tar shards whose members group by key: `<key>.jpg` + `<key>.json` with lat, lon,
    city, country, source (the sdan/geospot-unified layout)."""

    urls: list[str]
    name: str = "wds"
    opener: Opener = field(default_factory=LocalOpener)
    lat_key: str | None = None
    lon_key: str | None = None

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        return file_names(self.urls)

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        for url in _shard_order(self.urls, epoch, seed, shuffle):
            yield from self._shard(url)

    def _group(self, url: str, key: str, parts: dict[str, bytes]) -> Record | Skip:
        img_ext = next((e for e in IMAGE_EXTS if e in parts), None)
        dotted = sorted(e for e in parts if "." in e)
        if dotted and ("json" not in parts or img_ext is None):
            # WebDataset's rule: the key ends at the FIRST dot of the member's file name.
            return Skip("dotted_member_name", f"{url}: member {key}.{dotted[0]} has key {key!r} and extension "
                        f"{dotted[0]!r} (WebDataset keys end at the first dot of the file name); rename it without "
                        "dots before the extension, e.g. with _", self.name)
        if "json" not in parts:
            return Skip("missing_metadata", f"{url}:{key}", self.name)
        if img_ext is None:
            return Skip("missing_image", f"{url}:{key}", self.name)
        try:
            meta = json.loads(parts["json"])
        except (ValueError, UnicodeDecodeError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            return Skip("bad_metadata", f"{url}:{key}", self.name)
        lat = _at(meta, self.lat_key) if self.lat_key else _first(meta, LAT_KEYS)
        lon = _at(meta, self.lon_key) if self.lon_key else _first(meta, LON_KEYS)
        sid = str(meta.get("id") or f"{_named_in_ids(self._names, url)}/{key}")
        if clash := _coords_clash(meta, self.lat_key, self.lon_key):
            return Skip("ambiguous_coords", f"{sid}: {clash}", self.name, sid)
        return Record(sid, str(meta.get("source") or self.name), lat, lon, _labels(meta), parts[img_ext])

    def _shard(self, url: str) -> Iterator[Record | Skip]:
        key, parts, members = None, {}, 0
        try:
            f = self.opener.open(url)
        except OSError as e:  # the file itself (a permission, a vanished file, a failed download)
            yield Skip("truncated_tar", f"{url}: cannot be opened ({e})", self.name)
            return
        try:
            with f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for m in tar:
                    members += 1
                    if not m.isfile():
                        continue
                    base = m.name.rsplit("/", 1)[-1]
                    if "." not in base:
                        continue
                    k = m.name[: len(m.name) - len(base)] + base.split(".", 1)[0]
                    ext = base.split(".", 1)[1].lower()
                    if k != key:  # a new key: the previous sample is complete
                        if key is not None:
                            yield self._group(url, key, parts)
                        key, parts = k, {}
                    data = tar.extractfile(m).read()  # type: ignore[union-attr]
                    if len(data) != m.size:
                        raise tarfile.ReadError("unexpected end of data")
                    parts[ext] = data
                # A proper end of archive is a whole zero block; tarfile stops silently at a
                # header cut short, which would lose the group being read without a word.
                if tar.fileobj.pos - tar.offset != tarfile.BLOCKSIZE:
                    raise tarfile.ReadError("the archive ends inside a member header (cut short)")
        except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
            # Earlier groups were yielded; the one being read counts only if it is whole
            # (metadata and an image read in full), else it is lost with the rest of the shard.
            if key is not None and "json" in parts and any(x in parts for x in IMAGE_EXTS):
                yield self._group(url, key, parts)
            what = f"{e}" if members else f"not a readable tar archive ({e})"  # nothing in it was ever read
            yield Skip("truncated_tar", f"{url}: {what}", self.name)
            return
        if key is not None:
            yield self._group(url, key, parts)


def _find_col(names: list[str], want: str | None, candidates: tuple[str, ...], what: str, where: str) -> str | None:
    if want:
        if want not in names:
            raise DataError(f"{where}: no column {want!r} for {what}; columns are {names}")
        return want
    if candidates in (LAT_KEYS, LON_KEYS) and len(found := matching_columns(names, candidates)) > 1:
        key = "lat" if candidates == LAT_KEYS else "lon"
        raise DataError(f"{where}: {len(found)} {what} columns ({', '.join(map(repr, found))}), and which one is "
                        f"meant cannot be told; name it with {key}=<column> in the spec")
    return find_column(names, candidates)  # any case: IM2GPS3K / YFCC4K ship LAT, LON, IMG_ID


@dataclass
class ParquetSource:
    """Parquet files with an image column (HF-style struct {bytes, path}, raw bytes, or a
    path relative to the file) and latitude/longitude columns."""

    paths: list[str]
    name: str = "parquet"
    lat_col: str | None = None
    lon_col: str | None = None
    image_col: str | None = None
    id_col: str | None = None
    opener: Opener = field(default_factory=LocalOpener)

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        return file_names(self.paths)

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        import pyarrow.parquet as pq

        for path in _shard_order(self.paths, epoch, seed, shuffle):
            yield from self._file(pq, path)

    def _file(self, pq, path: str) -> Iterator[Record | Skip]:
        import pyarrow as pa

        try:
            with self.opener.open(path) as fh:
                yield from self._rows(pq.ParquetFile(fh), path)
        except (pa.ArrowException, OSError) as e:  # not parquet, or cut short: the rest of the file is lost
            yield Skip("bad_parquet", f"{path}: {e}", self.name)

    def _rows(self, pf, path: str) -> Iterator[Record | Skip]:
        names = pf.schema_arrow.names
        lat_c = _find_col(names, self.lat_col, LAT_KEYS, "latitude", path)
        lon_c = _find_col(names, self.lon_col, LON_KEYS, "longitude", path)
        img_c = _find_col(names, self.image_col, IMAGE_COLS, "the image", path)
        id_c = _find_col(names, self.id_col, ("id", "key", "__key__"), "the id", path)
        if img_c is None or lat_c is None or lon_c is None:
            raise DataError(f"{path}: need image and latitude/longitude columns (found {names}); "
                            "name them with image=, lat=, lon= in the spec")
        row, named_as = 0, _named_in_ids(self._names, path)
        for batch in pf.iter_batches(batch_size=256):
            for r in batch.to_pylist():
                sid = str(r[id_c]) if id_c and r.get(id_c) is not None else f"{named_as}:{row}"
                row += 1
                img = named = r[img_c]
                if isinstance(img, dict):
                    named = img.get("path")
                    img = img.get("bytes") or (read_relative(path, named) if isinstance(named, str) and named
                                               else None)
                elif isinstance(img, str):
                    img = read_relative(path, img)
                if img is not None and not isinstance(img, (bytes, bytearray)):
                    yield Skip("bad_image_field", f"{sid}: the image column holds {type(img).__name__}, "
                               "not bytes or a path", self.name, sid)
                    continue
                if img is None:
                    where = (f"no file {os.path.join(os.path.dirname(path), named)} (paths are relative to the "
                             "parquet file's folder)" if isinstance(named, str) and named else
                             f"{path}: the {img_c!r} column is empty")
                    yield Skip("missing_image", f"{sid}: {where}", self.name, sid)
                    continue
                yield Record(sid, str(r.get("source") or self.name), r.get(lat_c), r.get(lon_c), _labels(r), img)


@dataclass
class JsonlSource:
    """One JSON object per line: `image` (a path relative to the manifest) and lat/lon
    (or latitude/longitude), optional id, labels and source."""

    paths: list[str]
    name: str = "jsonl"
    lat_key: str | None = None
    lon_key: str | None = None
    image_key: str = "image"

    @functools.cached_property
    def _names(self) -> dict[str, str]:
        return file_names(self.paths)

    @property
    def tables(self) -> list[str]:
        return self.paths

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        for path in _shard_order(self.paths, epoch, seed, shuffle):
            yield from self.table_records(path)

    def table_records(self, path: str) -> Iterator[Record | Skip]:
        """One JSONL file's lines, in its order."""
        with open(path, "rb") as f:  # bytes: one line that is not UTF-8 costs that line only
            if f.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"[":
                raise DataError(f"{path}: holds a JSON array, not JSON Lines (one object per line); convert "
                                f"it, e.g. jq -c '.[]' {os.path.basename(path)} > data.jsonl")
            f.seek(0)
            for i, raw in enumerate(f):
                yield from self._line(path, i + 1, raw)

    def _line(self, path: str, lineno: int, raw: bytes) -> Iterator[Record | Skip]:
        where = f"{path}:{lineno}"
        try:
            line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
        except UnicodeDecodeError:
            yield Skip("bad_encoding", f"{where}: not UTF-8", self.name)
            return
        if not line.strip():
            return
        try:
            meta, why = json.loads(line), ""
        except (ValueError, RecursionError) as e:
            meta, why = None, f"not JSON ({str(e)[:80]})"
        if not isinstance(meta, dict):
            why = why or f"a JSON {type(meta).__name__}, not an object"
            yield Skip("bad_metadata", f"{where}: {why}", self.name)
            return
        sid = meta.get("id")
        sid = str(sid) if isinstance(sid, (str, int)) and not isinstance(sid, bool) and sid != "" else \
            f"{_named_in_ids(self._names, path)}:{lineno}"
        key = self.image_key if self.image_key != "image" else _first_key(meta, JSONL_IMAGE_KEYS) or "image"
        rel = meta.get(key)
        if rel is None or rel == "":
            yield Skip("missing_image", f"{sid}: no {' / '.join(JSONL_IMAGE_KEYS) if key == 'image' else key!r} key "
                       f"(keys: {sorted(meta)[:8]}); name it with image=<key>", self.name, sid)
            return
        if not isinstance(rel, str) or "\0" in rel:
            yield Skip("bad_image_field", f"{sid}: {key!r} must be a path string, got "
                       f"{type(rel).__name__}", self.name, sid)
            return
        if rel.startswith("data:") or (len(rel) > 256 and not os.path.isfile(rel)):
            # an image's bytes written as text (base64 or a data: URI): one short sentence, not 68 KB of it
            yield Skip("bad_image_field", f"{sid}: {key!r} holds {len(rel):,} characters ({rel[:16]}…), an image "
                       "written as text (base64?), not a path; save the images as files and give their paths",
                       self.name, sid)
            return
        p = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        if not os.path.isfile(p) and "\\" in rel:  # a path written on Windows: pics\\x.jpg
            p = os.path.join(os.path.dirname(path), rel.replace("\\", "/"))
        if not os.path.isfile(p):
            yield Skip("missing_image", f"{sid}: no file {p} (paths are relative to the JSONL file's folder)",
                       self.name, sid)
            return
        if clash := _coords_clash(meta, self.lat_key, self.lon_key):
            yield Skip("ambiguous_coords", f"{sid}: {clash}", self.name, sid)
            return
        lat = _at(meta, self.lat_key) if self.lat_key else _first(meta, LAT_KEYS)
        lon = _at(meta, self.lon_key) if self.lon_key else _first(meta, LON_KEYS)
        if lat is None and lon is None and not (self.lat_key or self.lon_key) and _first_key(
                meta, LAT_KEYS + LON_KEYS) is None:
            nested = next((f"{k}.{n}" for k, v in meta.items() if isinstance(v, dict) for n in v
                           if isinstance(n, str) and n.lower() in LAT_KEYS), None)
            how = f"lat={nested},lon={nested.rsplit('.', 1)[0]}.<key>" if nested else "lat=<key>,lon=<key>"
            yield Skip("missing_coords", f"{sid}: no {' / '.join(LAT_KEYS)} key (keys: {sorted(meta)[:8]}); name "
                       f"them with {how}", self.name, sid)
            return
        yield Record(sid, str(meta.get("source") or self.name), lat, lon, _labels(meta), FileBytes(p))


# -- synthetic -----------------------------------------------------------------------------


@dataclass
class SyntheticSource:
    """Samples 0..n-1 of a SyntheticWorld (rendered in the worker threads)."""

    n: int = 10000
    size: int = 112
    seed: int = 0
    regions: int = 16
    difficulty: float = 0.3
    ambiguity: float = 0.0
    subregions: int = 4
    cities: int = 6
    name: str = "synthetic"

    @property
    def world(self):
        from geospot.data.synthetic import cached_world

        return cached_world(self.seed, self.regions, self.size, self.difficulty, self.ambiguity,
                            self.subregions, self.cities)

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        world = self.world
        order = np.random.default_rng([seed, epoch, 0x5137]).permutation(self.n) if shuffle else range(self.n)
        for i in order:
            i = int(i)
            yield Record(
                f"synthetic-{self.seed}-{i}",
                self.name,
                None,
                None,
                {},
                _SyntheticPayload(world, i, self.size, self.name),
            )


class _SyntheticPayload:
    __slots__ = ("index", "name", "size", "world")

    def __init__(self, world, index: int, size: int, name: str):
        self.world, self.index, self.size, self.name = world, index, size, name

    def __call__(self):
        return self.world.sample(self.index, self.size, self.name)

