"""One photo, one label, in every pass and in every split.

A user's local tables (CSV, JSONL up to MAX_TABLE_BYTES: their images are files, so nothing is read
here but the tables and, for files of one size, their bytes) are read through once before the stream
starts, and whatever they say twice is decided per row, the same whatever order a shuffled pass reads
them in (stream.py asks `Resolution.skip`): about two passes over the records, ~2 s per 100,000
rows on a core.

- an id given other coordinates by another row: which is right cannot be told, so no row of it is
  used (`duplicate_id_conflict`). Rows that disagree across two tables of one folder (a labels.csv
  beside an older copy of it) refuse the stream instead, naming the table to give;
- one photo named by several ids (`123` and `images/123.jpg`, a symlink, a byte-identical copy
  `123 (1).jpg`): the smallest id keeps it, so the training and the held-out streams agree on which
  side it is (`duplicate_image` for the others); ids that give it other coordinates lose it all
  (`duplicate_image_conflict`).

A row whose coordinates do not read takes no part (it is skipped for them). The same id with the
same coordinates is left to the stream's per-pass check (`duplicate_id`): whichever row is read
first, the label is the same. Hub shards and parquet (whose image bytes would have to be read
here) keep the stream's first-seen checks."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from geospot.data.files import FileBytes
from geospot.data.prep import BadSample, check_coords
from geospot.data.sources import Record, Skip
from geospot.data.types import DataError

Photo = tuple[int, int]  # (device, inode): a file whatever the path or symlink naming it


def coords_key(lat: Any, lon: Any) -> tuple:
    """What a duplicate id is compared on: the coordinates as read ("48.850" and 48.85 agree)."""
    try:
        return check_coords(lat, lon)
    except BadSample:
        return (repr(lat)[:40], repr(lon)[:40])


def _valid(lat: Any, lon: Any) -> tuple[float, float] | None:
    try:
        return check_coords(lat, lon)
    except BadSample:
        return None


@dataclass
class Resolution:
    """What a part's tables say twice: the ids whose rows disagree, and the photos named by more
    than one id (each path naming one -> its photo; each photo -> the id that keeps it, None when
    its ids disagree)."""

    conflicting_ids: dict[str, str] = field(default_factory=dict)  # id -> the coordinates its rows give
    photo_of: dict[str, Photo] = field(default_factory=dict)
    keeper: dict[Photo, str | None] = field(default_factory=dict)
    named: dict[Photo, list[str]] = field(default_factory=dict)  # the ids naming it, sorted

    def skip(self, record: Record) -> Skip | None:
        """The Skip this row gets whatever the order it is read in, or None (it goes on)."""
        if (said := self.conflicting_ids.get(record.id)) is not None:
            return Skip("duplicate_id_conflict", f"{record.id}: its rows give other coordinates ({said}); which is "
                        "right cannot be told, so none is used: fix or delete the wrong row", record.source,
                        record.id)
        path = record.payload.path if isinstance(record.payload, FileBytes) else None
        photo = self.photo_of.get(path) if path is not None else None
        if photo is None or self.keeper[photo] == record.id:
            return None
        ids = self.named[photo]
        others = ", ".join(repr(i) for i in ids[:4] if i != record.id) + (", …" if len(ids) > 4 else "")
        if self.keeper[photo] is None:
            return Skip("duplicate_image_conflict", f"{record.id}: its photo {path} is also named by {others} with "
                        "other coordinates; which is right cannot be told, so none is used", record.source, record.id)
        return Skip("duplicate_image", f"{record.id}: its photo {path} is also named by {others}, with the same "
                    f"coordinates; it is used once, as {self.keeper[photo]!r}", record.source, record.id)


# Tables past this size (~1M rows of id,latitude,longitude; OSV-5M's own train.csv is ~1 GB) keep the
# stream's first-seen checks: reading them through would cost every stream's start seconds to minutes
MAX_TABLE_BYTES = 48 << 20


def _size(paths: list[str]) -> int:
    try:
        return sum(os.path.getsize(p) for p in paths)
    except OSError:
        return 0  # read (and said) by the stream


def resolve_parts(parts: list[str], sources: list, limit: int) -> dict[int, Resolution]:
    """The Resolution of each part that is a user's local table (a source with `tables`) of at most
    MAX_TABLE_BYTES, by part index."""
    out = {}
    for k, (part, src) in enumerate(zip(parts, sources)):
        if hasattr(src, "table_records") and _size(src.tables) <= MAX_TABLE_BYTES:
            found = resolve(part, ((p, src.table_records(p)) for p in src.tables), limit)
            if found is not None:
                out[k] = found
    return out


def resolve(part: str, tables: Iterable[tuple[str, Iterable[Record | Skip]]], limit: int) -> Resolution | None:
    """Read a part's tables (path, its records) through once. None past `limit` records (the
    stream's first-seen checks then stand alone); a DataError when two tables give ids other
    coordinates."""
    first: dict[str, tuple[tuple, int]] = {}  # id -> (its coordinates, the table) of its first valid row
    clash: dict[str, tuple[tuple, int]] = {}  # id -> another row's
    photos: dict[Photo, dict[str, set]] = {}  # photo -> id -> the coordinates its rows give it
    paths: dict[Photo, set[str]] = {}
    size: dict[Photo, int] = {}
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
            coords = _valid(r.lat, r.lon)
            if coords is None:
                continue
            have = first.setdefault(r.id, (coords, t))
            if have[0] != coords and r.id not in clash:
                clash[r.id] = (coords, t)
            if isinstance(r.payload, FileBytes):
                try:
                    st = os.stat(r.payload.path)
                except OSError:
                    continue  # read (and skipped) later, by its reason
                photo = (st.st_dev, st.st_ino)
                photos.setdefault(photo, {}).setdefault(r.id, set()).add(coords)
                paths.setdefault(photo, set()).add(r.payload.path)
                size[photo] = st.st_size
    # (what, coordinates, table, other coordinates, other table) of each disagreement between two tables
    across = [(repr(i), first[i][0], first[i][1], *c) for i, c in clash.items() if c[1] != first[i][1]]
    res = Resolution(conflicting_ids={i: f"{first[i][0]} and {c[0]}" for i, c in clash.items()})
    for group in _same_bytes(paths, size):  # byte-identical copies: one photo
        keep = group[0]
        for other in group[1:]:
            for i, cs in photos.pop(other).items():
                photos[keep].setdefault(i, set()).update(cs)
            paths[keep] |= paths.pop(other)
    for photo, by_id in photos.items():
        if len(by_id) < 2:
            continue
        agree = len(set().union(*by_id.values())) == 1
        res.named[photo] = sorted(by_id)
        res.keeper[photo] = min(by_id) if agree else None
        res.photo_of.update(dict.fromkeys(paths[photo], photo))
        a, b = min(by_id), next((i for i in sorted(by_id) if first[i][1] != first[min(by_id)][1]), None)
        if not agree and b is not None and first[a][0] != first[b][0]:
            across.append((os.path.basename(min(paths[photo])), first[a][0], first[a][1], first[b][0], first[b][1]))
    if across:
        _refuse(part, names, across)
    return res


def _same_bytes(paths: dict[Photo, set[str]], size: dict[Photo, int]) -> list[list[Photo]]:
    """Groups of distinct files holding the same bytes: of the files of one size, those whose first
    4 KB agree are read whole (photos of one size are common; of one size and one start, copies)."""
    def digest(photo: Photo, n: int = -1) -> bytes | None:
        try:
            with open(min(paths[photo]), "rb") as f:
                return hashlib.blake2b(f.read(n), digest_size=16).digest()
        except OSError:
            return None

    def split(group: list[Photo], n: int) -> list[list[Photo]]:
        by: dict[bytes, list[Photo]] = {}
        for photo in group:
            if (d := digest(photo, n)) is not None:
                by.setdefault(d, []).append(photo)
        return [g for g in by.values() if len(g) > 1]

    by_size: dict[int, list[Photo]] = {}
    for photo, s in size.items():
        by_size.setdefault(s, []).append(photo)
    return [same for group in by_size.values() if len(group) > 1
            for head in split(group, 4096) for same in split(head, -1)]


def _refuse(part: str, names: list[str], across: list[tuple]) -> None:
    what, ca, ta, cb, tb = across[0]
    tables = sorted({names[x[2]] for x in across} | {names[x[4]] for x in across})
    raise DataError(f"data part {part!r}: its tables give {len(across)} ids or photos other coordinates (e.g. {what}: "
                    f"{ca} in {os.path.basename(names[ta])}, {cb} in {os.path.basename(names[tb])}); read as one, "
                    "which label is right cannot be told. Give the table to use: "
                    f"{' or '.join(f'data={p}' for p in tables)}")
