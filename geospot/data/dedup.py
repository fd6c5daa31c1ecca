"""One photo, one label, in every pass and in every split.

A user's local tables (CSV, JSONL: every such part of a spec together, up to MAX_TABLE_ROWS rows; their
images are files, so nothing is read here but the tables and, for files of one size and one start,
their bytes) are read through once before the stream starts, and whatever they say twice is decided
per row, the same whatever order a shuffled pass reads them in (stream.py asks `Resolution.skip`):
about two passes over the records, ~2 s per 100,000 rows on a core. A photo is a file whatever names
it (a symlink, another spelling of its path) or a byte-identical copy of it (`123 (1).jpg`).

- rows that give one photo other coordinates (one id twice, or several ids: a placeholder image
  named at many places is one): which is right cannot be told, so none is used
  (`duplicate_id_conflict` / `duplicate_image_conflict`). Two tables that each name a photo once
  and disagree on it (a labels.csv beside an older copy of it) refuse the stream instead, naming
  the table to give;
- one photo named by several ids: the first row in the tables' order keeps it, so the training and
  the held-out streams agree on which side of the split it is (`duplicate_image` for the others);
- one id naming several photos (JSONL files that each number their rows 0, 1, ...): the first row's
  photo keeps the id (`duplicate_id`, or `duplicate_id_conflict` where the label differs, for the
  others): an id is one sample downstream (its split, its row in predictions.csv).

A row whose coordinates do not read takes no part (the stream skips it for them). The same id naming
the same photo with the same coordinates is left to the stream's per-pass check (`duplicate_id`):
whichever row is read first, the sample is the same. Parquet and hub shards (whose image bytes would
have to be read here) and larger tables keep the stream's first-seen checks."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from geospot.data.files import FileBytes
from geospot.data.prep import BadSample, check_coords
from geospot.data.sources import Record, Skip
from geospot.data.types import DataError

log = logging.getLogger("geospot.data")
Photo = tuple[int, int] | str  # (device, inode), or the real path where the file system has no inodes
# Tables of more rows than this (estimated from their first MB; OSV-5M's own train.csv holds 5M) keep the
# stream's first-seen checks: reading them through would cost every stream's start seconds to minutes
MAX_TABLE_ROWS = 1_000_000


def read_coords(lat: Any, lon: Any) -> tuple[tuple[float, float] | None, BadSample | None]:
    """(the coordinates as degrees, None) or (None, why they do not read)."""
    try:
        return check_coords(lat, lon), None
    except BadSample as e:
        return None, e


@dataclass
class Resolution:
    """What a part's tables say twice, by the paths its rows name: the photos whose rows disagree
    (-> the skip's reason and words), the id that keeps a photo several ids name, and the photo that
    keeps an id naming several."""

    photo_of: dict[str, Photo] = field(default_factory=dict)  # each path a decision below is about
    conflict: dict[Photo, tuple[str, str]] = field(default_factory=dict)
    keeper: dict[Photo, tuple[str, tuple]] = field(default_factory=dict)  # -> (id, its coordinates)
    kept_photo: dict[str, tuple[Photo, tuple]] = field(default_factory=dict)  # id -> (photo, coordinates)

    def skip(self, record: Record, coords: tuple) -> Skip | None:
        """The Skip this row (its coordinates read) gets whatever the order it is read in, or None."""
        path = record.payload.path if isinstance(record.payload, FileBytes) else None
        photo = self.photo_of.get(path) if path is not None else None
        if photo is None:
            return None
        if photo in self.conflict:
            reason, words = self.conflict[photo]
            return Skip(reason, f"{record.id}: {words}", record.source, record.id)
        kept = self.kept_photo.get(record.id)
        if kept is not None and kept[0] != photo:
            return Skip("duplicate_id" if kept[1] == coords else "duplicate_id_conflict",
                        f"{record.id} names {path} and, in an earlier row, another photo; an id is one photo: "
                        "give each its own id", record.source, record.id)
        keep = self.keeper.get(photo)
        if keep is None or keep[0] == record.id:
            return None
        return Skip("duplicate_image", f"{record.id}: its photo {path} is named before by {keep[0]!r}, with the "
                    f"same coordinates; it is used once, as {keep[0]!r}", record.source, record.id)


def _rows(paths: list[str]) -> int:
    """The tables' rows, estimated from the lines of each one's first MB (a table of wide rows is few rows)."""
    total = 0
    for p in paths:
        try:
            with open(p, "rb") as f:
                head = f.read(1 << 20)
            total += round(os.path.getsize(p) * max(head.count(b"\n"), 1) / max(len(head), 1))
        except OSError:
            continue  # read (and said) by the stream
    return total


def resolve_parts(parts: list[str], sources: list, limit: int | None = None) -> dict[int, Resolution]:
    """One Resolution over every part that is a user's local table (a source with `tables`; `limit`
    rows in all, MAX_TABLE_ROWS by default), shared by those parts' indexes: a photo is one sample
    whatever part names it."""
    limit = MAX_TABLE_ROWS if limit is None else limit
    local = [(k, part, src) for k, (part, src) in enumerate(zip(parts, sources)) if hasattr(src, "table_records")]
    if not local:
        return {}
    if _rows([p for _, _, src in local for p in src.tables]) > limit:
        log.warning("data: %s holds more than %s rows: what it says twice is checked as each pass reads it (the "
                    "first row seen wins), not decided once", "; ".join(part for _, part, _ in local), f"{limit:,}")
        return {}
    found = resolve("; ".join(part for _, part, _ in local),
                    ((p, src.table_records(p)) for _, _, src in local for p in src.tables), limit)
    return {} if found is None else {k: found for k, _, _ in local}


@dataclass
class _Photo:
    """What the rows naming one photo say: id -> coordinates -> the tables saying so."""

    paths: set[str] = field(default_factory=set)
    said: dict[str, dict[tuple, set[int]]] = field(default_factory=dict)
    first: int = 0  # the order of the first row naming it
    size: int = 0


def resolve(part: str, tables: Iterable[tuple[str, Iterable[Record | Skip]]], limit: int) -> Resolution | None:
    """Read a part's tables (path, its records) through once. None past `limit` records (the
    stream's first-seen checks then stand alone); a DataError when two tables disagree on a photo."""
    photos: dict[Photo, _Photo] = {}
    ids: dict[str, list[tuple[int, Photo]]] = {}  # id -> (order, photo) of each of its rows
    names: list[str] = []
    n = 0
    for t, (path, records) in enumerate(tables):
        names.append(path)
        for r in records:
            if not isinstance(r, Record):
                continue
            n += 1
            if n > limit:
                return None
            coords, _ = read_coords(r.lat, r.lon)
            if coords is None or not isinstance(r.payload, FileBytes):
                continue
            try:
                st = os.stat(r.payload.path)
            except OSError:
                continue  # read (and skipped) later, by its reason
            key = (st.st_dev, st.st_ino) if st.st_ino else os.path.realpath(r.payload.path)
            p = photos.setdefault(key, _Photo(first=n, size=st.st_size))
            p.paths.add(r.payload.path)
            p.said.setdefault(r.id, {}).setdefault(coords, set()).add(t)
            ids.setdefault(r.id, []).append((n, key))
    merged: dict[Photo, Photo] = {}  # a byte-identical copy -> the photo it is
    for group in _same_bytes(photos):  # byte-identical copies: one photo, the first named
        keep, *rest = sorted(group, key=lambda k: photos[k].first)
        for other in rest:
            gone, merged[other] = photos.pop(other), keep
            photos[keep].paths |= gone.paths
            for i, by in gone.said.items():
                for c, ts in by.items():
                    photos[keep].said.setdefault(i, {}).setdefault(c, set()).update(ts)
    if merged:
        ids = {i: [(o, merged.get(k, k)) for o, k in rows] for i, rows in ids.items()}
    res, across = Resolution(), []
    for key, p in photos.items():
        by_coords: dict[tuple, set[int]] = {}
        for by in p.said.values():
            for c, ts in by.items():
                by_coords.setdefault(c, set()).update(ts)
        if len(by_coords) > 1:
            (c1, t1), (c2, t2) = sorted(by_coords.items(), key=lambda x: min(x[1]))[:2]
            per_table: dict[int, set] = {}  # table -> the coordinates it gives the photo
            for c, ts in by_coords.items():
                for t in ts:
                    per_table.setdefault(t, set()).add(c)
            one, many = len(p.said) == 1, any(len(cs) > 1 for cs in per_table.values())
            if not many:  # each table gives it one label, and they differ: versions of one table
                across.append((os.path.basename(min(p.paths)), c1, min(t1), c2, min(t2 - t1 or t2)))
            words = (f"its photo {min(p.paths)} is named by {len(p.said)} ids at {len(by_coords)} places: a "
                     "placeholder image (\"photo unavailable\")? None of them is used" if len(by_coords) > 2 else
                     f"its photo {min(p.paths)} is given other coordinates ({c1} and {c2}) by "
                     f"{'another row' if one else 'another id'}; which is right cannot be told, so none is used: fix "
                     "or delete the wrong row")
            res.conflict[key] = ("duplicate_id_conflict" if one else "duplicate_image_conflict", words)
            res.photo_of.update(dict.fromkeys(p.paths, key))
    for i, rows in ids.items():  # an id naming several photos keeps its first (that is not in conflict)
        named = [k for _, k in sorted(rows) if k not in res.conflict]
        if len(set(named)) > 1:
            res.kept_photo[i] = (named[0], next(iter(photos[named[0]].said[i])))
            for k in set(named):
                res.photo_of.update(dict.fromkeys(photos[k].paths, k))
    for key, p in photos.items():  # a photo several ids name: the first row's id that keeps this photo
        if key in res.conflict or len(p.said) < 2:
            continue
        order = {i: min(o for o, k in ids[i] if k == key) for i in p.said}
        eligible = [i for i in sorted(order, key=order.get) if res.kept_photo.get(i, (key,))[0] == key]
        if eligible:
            res.keeper[key] = (eligible[0], next(iter(p.said[eligible[0]])))
            res.photo_of.update(dict.fromkeys(p.paths, key))
    if across:
        _refuse(part, names, across)
    return res


def _same_bytes(photos: dict[Photo, _Photo]) -> list[list[Photo]]:
    """Groups of distinct files holding the same bytes: of the files of one size, those whose first
    4 KB agree are read whole (photos of one size are common; of one size and one start, copies)."""
    def digest(key: Photo, n: int = -1) -> bytes | None:
        try:
            with open(min(photos[key].paths), "rb") as f:
                return hashlib.blake2b(f.read(n), digest_size=16).digest()
        except OSError:
            return None

    def split(group: list[Photo], n: int) -> list[list[Photo]]:
        by: dict[bytes, list[Photo]] = {}
        for key in group:
            if (d := digest(key, n)) is not None:
                by.setdefault(d, []).append(key)
        return [g for g in by.values() if len(g) > 1]

    by_size: dict[int, list[Photo]] = {}
    for key, p in photos.items():
        if p.size:  # an empty file is no photo (skipped as empty_image), not a copy of every other empty one
            by_size.setdefault(p.size, []).append(key)
    return [same for group in by_size.values() if len(group) > 1
            for head in split(group, 4096) for same in split(head, -1)]


def _refuse(part: str, names: list[str], across: list[tuple]) -> None:
    what, ca, ta, cb, tb = across[0]
    tables = sorted({names[x[2]] for x in across} | {names[x[4]] for x in across})
    raise DataError(f"data part {part!r}: its tables give {len(across)} photos other coordinates (e.g. {what}: "
                    f"{ca} in {os.path.basename(names[ta])}, {cb} in {os.path.basename(names[tb])}); read as one, "
                    "which label is right cannot be told. Give the table to use: "
                    f"{' or '.join(f'data={p}' for p in tables)}")
