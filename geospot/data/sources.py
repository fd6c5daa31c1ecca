"""Sources: each turns one spec part into a deterministic sequence of raw records.

A source yields `Record`s (id, coordinates as found, labels, an image payload that is
decoded later in a worker thread) and `Skip`s for damage it finds itself (a truncated tar,
a sample without metadata). The order depends only on (seed, epoch), so a stream can be
replayed to any position. Files are read through an `Opener` (files.py) so the hub source can reuse the
WebDataset reader over HTTP and tests can stand a local folder in for the hub."""

from __future__ import annotations

import csv
import functools
import json
import os
import re
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
from geospot.geo.columns import ID_KEYS, LAT_KEYS, LON_KEYS, find_column

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


class Source(Protocol):
    name: str

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]: ...


def _shard_order(paths: list[str], epoch: int, seed: int, shuffle: bool) -> list[str]:
    if not shuffle or len(paths) < 2:
        return list(paths)
    rng = np.random.default_rng([seed, epoch, 0x5A4D])
    return [paths[i] for i in rng.permutation(len(paths))]


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
        lat = meta.get(self.lat_key) if self.lat_key else _first(meta, LAT_KEYS)
        lon = meta.get(self.lon_key) if self.lon_key else _first(meta, LON_KEYS)
        sid = str(meta.get("id") or f"{os.path.basename(url)}/{key}")
        return Record(sid, str(meta.get("source") or self.name), lat, lon, _labels(meta), parts[img_ext])

    def _shard(self, url: str) -> Iterator[Record | Skip]:
        key, parts = None, {}
        try:
            with self.opener.open(url) as f, tarfile.open(fileobj=f, mode="r|*") as tar:
                for m in tar:
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
            yield Skip("truncated_tar", f"{url}: {e}", self.name)
            return
        if key is not None:
            yield self._group(url, key, parts)


def _find_col(names: list[str], want: str | None, candidates: tuple[str, ...], what: str, where: str) -> str | None:
    if want:
        if want not in names:
            raise DataError(f"{where}: no column {want!r} for {what}; columns are {names}")
        return want
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
        row = 0
        for batch in pf.iter_batches(batch_size=256):
            for r in batch.to_pylist():
                sid = str(r[id_c]) if id_c and r.get(id_c) is not None else f"{os.path.basename(path)}:{row}"
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
                               "not bytes or a path", self.name)
                    continue
                if img is None:
                    where = (f"no file {os.path.join(os.path.dirname(path), named)} (paths are relative to the "
                             "parquet file's folder)" if isinstance(named, str) and named else
                             f"{path}: the {img_c!r} column is empty")
                    yield Skip("missing_image", f"{sid}: {where}", self.name)
                    continue
                yield Record(sid, str(r.get("source") or self.name), r.get(lat_c), r.get(lon_c), _labels(r), img)


@dataclass
class CsvFolderSource:
    """The OSV-5M layout: a CSV keyed by `id` with latitude/longitude (+ city, region,
    country) and the images at images/<id>.jpg (any depth below images/)."""

    csv_paths: list[str]
    root: str
    name: str = "csv"
    lat_col: str | None = None
    lon_col: str | None = None
    id_col: str | None = None  # None: `id`, else IMG_ID (IM2GPS3K / YFCC4K), any case

    @functools.cached_property
    def _index(self) -> dict[str, str | tuple[str, ...]]:
        """Image files by stem AND by full file name: OSV-5M ids are stems, IM2GPS3K and
        YFCC4K ids are file names with the extension. Walked once per source, not per epoch:
        an OSV-5M-sized folder is millions of entries. A name that two files share (e.g.
        2023/001.jpg and 2024/001.jpg) maps to all of them: its rows are skipped as ambiguous,
        never given one of the photos at random."""
        found: dict[str, str | tuple[str, ...]] = {}
        base = os.path.join(self.root, "images")
        base = base if os.path.isdir(base) else self.root
        for path in walk_files(base):
            fn = os.path.basename(path)
            stem, _, ext = fn.rpartition(".")
            if ext.lower() in IMAGE_EXTS:
                for name in {stem, fn}:
                    have = found.get(name)
                    found[name] = path if have is None else (*((have,) if isinstance(have, str) else have), path)
        return found

    def _image_of(self, csv_path: str, sid: str) -> str | tuple[str, ...] | None:
        """The image a row's id names: a file name or stem anywhere below images/ (or the
        root), else a path as written, relative to the CSV's folder (or absolute)."""
        hit = self._index.get(sid)
        if hit is None and sid.endswith(".0") and sid[:-2].isdigit():
            hit = self._index.get(sid[:-2])  # a numeric id that pandas wrote as a float: 123 -> "123.0"
        if hit is None and (os.sep in sid or "/" in sid or "." in sid):
            p = sid if os.path.isabs(sid) else os.path.join(os.path.dirname(csv_path), sid)
            hit = p if os.path.isfile(p) else None
        return hit

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        for path in _shard_order(self.csv_paths, epoch, seed, shuffle):
            try:
                yield from self._file(path)
            except csv.Error as e:  # e.g. a NUL byte or a field past csv's size limit: the rest is lost
                yield Skip("bad_csv", f"{path}: {e}", self.name)

    def _file(self, path: str) -> Iterator[Record | Skip]:
        # (csv_encoding: a row that does not decode is skipped, never misread)
        encoding, errors = csv_encoding(path)
        with open(path, newline="", encoding=encoding, errors=errors) as f:
            head = f.read(65536)
            if not head.strip():
                yield Skip("empty_file", path, self.name)
                return
            f.seek(0)
            if head.startswith("\ufeff"):
                f.read(1)
            dialect = _sniff(head)
            reader = csv.DictReader(f, dialect=dialect)
            # ';'-separated CSVs come from spreadsheets in locales that write 48,85 for 48.85
            coord = _decimal_comma if dialect.delimiter == ";" else (lambda v: v)
            names = [n.strip() for n in reader.fieldnames or []]
            reader.fieldnames = names
            id_c = _find_col(names, self.id_col, CSV_ID_KEYS, "id", path)
            if id_c is None:
                raise DataError(f"{path}: no id column (looked for {', '.join(CSV_ID_KEYS)}; columns: {names}); "
                                "set id=<column> in the spec")
            lat_c = _find_col(names, self.lat_col, LAT_KEYS, "latitude", path)
            lon_c = _find_col(names, self.lon_col, LON_KEYS, "longitude", path)
            if lat_c is None or lon_c is None:
                raise DataError(f"{path}: no {'latitude' if lat_c is None else 'longitude'} column (looked for "
                                f"{', '.join(LAT_KEYS if lat_c is None else LON_KEYS)}; columns: {names}); "
                                "name the columns with lat=<column>,lon=<column> in the spec")
            for line, row in enumerate(reader, start=2):
                if None in row or None in row.values():  # more or fewer fields than the header names
                    n = len(row) - (None in row) + len(row.get(None) or ()) - sum(v is None for v in row.values())
                    yield Skip("malformed_row", f"{path}:{line}: {n} fields where the header has {len(names)} "
                               "(an unquoted comma in a value? quote it)", self.name)
                    continue
                if any(_has_surrogate(v) for v in row.values() if isinstance(v, str)):
                    yield Skip("bad_encoding", f"{path}:{line}: not UTF-8 (re-save the CSV as UTF-8)", self.name)
                    continue
                sid = (row.get(id_c) or "").strip()
                img_path = self._image_of(path, sid) if sid else None
                if img_path is None:
                    yield Skip("missing_image", f"{path}:{line}: no image named {sid!r} below {self.root}", self.name)
                    continue
                if isinstance(img_path, tuple):
                    yield Skip("ambiguous_image", f"{path}:{line}: {sid!r} names {len(img_path)} files "
                               f"({', '.join(img_path[:3])}); give each a unique name or use paths as ids", self.name)
                    continue
                yield Record(sid, str(row.get("source") or self.name), coord(row.get(lat_c)),
                             coord(row.get(lon_c)), _labels(row), FileBytes(img_path))


def csv_encoding(path: str) -> tuple[str, str]:
    """(encoding, errors) a CSV's text is read with. A UTF-16 byte-order mark (Excel's "Unicode
    text"): UTF-16, a character it cannot decode becoming U+FFFD, which no coordinate parses. Else
    UTF-8, its optional BOM dropped (else the first column is '\ufeffid'), bytes that are not UTF-8
    kept as surrogates, so a row holding any is skipped by name."""
    with open(path, "rb") as raw:
        utf16 = raw.read(2) in (b"\xff\xfe", b"\xfe\xff")
    return ("utf-16", "replace") if utf16 else ("utf-8-sig", "surrogateescape")


def _sniff(head: str) -> type[csv.Dialect] | str:
    """The delimiter of a CSV from its first line: `,`, `;` or a tab (Excel in many locales
    writes `;`); quoting is csv's default."""
    first = head.splitlines()[0] if head else ""
    counts = {d: first.count(d) for d in (",", ";", "\t")}
    delim = max(counts, key=lambda d: counts[d]) if max(counts.values()) else ","

    class Sniffed(csv.excel):
        delimiter = delim

    return Sniffed


_COMMA_DECIMAL = re.compile(r"\s*[+-]?\d+,\d+\s*")


def _decimal_comma(v: str | None) -> str | None:
    """'48,85' -> '48.85' (one comma between digits: a decimal comma, never a thousands
    separator, since no coordinate reaches 1,000); anything else unchanged, for check_coords."""
    return v.replace(",", ".") if v is not None and _COMMA_DECIMAL.fullmatch(v) else v


def _has_surrogate(text: str) -> bool:
    return any("\udc80" <= ch <= "\udcff" for ch in text)


@dataclass
class JsonlSource:
    """One JSON object per line: `image` (a path relative to the manifest) and lat/lon
    (or latitude/longitude), optional id, labels and source."""

    paths: list[str]
    name: str = "jsonl"
    lat_key: str | None = None
    lon_key: str | None = None
    image_key: str = "image"

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        for path in _shard_order(self.paths, epoch, seed, shuffle):
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
            meta = json.loads(line)
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            yield Skip("bad_metadata", where, self.name)
            return
        sid = meta.get("id")
        sid = str(sid) if isinstance(sid, (str, int)) and not isinstance(sid, bool) and sid != "" else \
            f"{os.path.basename(path)}:{lineno}"
        key = self.image_key if self.image_key != "image" else _first_key(meta, JSONL_IMAGE_KEYS) or "image"
        rel = meta.get(key)
        if rel is None or rel == "":
            yield Skip("missing_image", f"{sid}: no {' / '.join(JSONL_IMAGE_KEYS) if key == 'image' else key!r} key "
                       f"(keys: {sorted(meta)[:8]}); name it with image=<key>", self.name)
            return
        if not isinstance(rel, str) or "\0" in rel:
            yield Skip("bad_image_field", f"{sid}: {key!r} must be a path string, got "
                       f"{type(rel).__name__}", self.name)
            return
        p = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(path), rel)
        if not os.path.isfile(p):
            yield Skip("missing_image", f"{sid}: no file {p} (paths are relative to the JSONL file's folder)",
                       self.name)
            return
        lat = meta.get(self.lat_key) if self.lat_key else _first(meta, LAT_KEYS)
        lon = meta.get(self.lon_key) if self.lon_key else _first(meta, LON_KEYS)
        if lat is None and lon is None and not (self.lat_key or self.lon_key) and _first_key(
                meta, LAT_KEYS + LON_KEYS) is None:
            yield Skip("missing_coords", f"{sid}: no {' / '.join(LAT_KEYS)} key (keys: {sorted(meta)[:8]}); name "
                       "them with lat=<key>,lon=<key>", self.name)
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

