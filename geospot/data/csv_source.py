"""A user's table of photos: a CSV keyed by id (the OSV-5M layout, IM2GPS3K's, a spreadsheet's
export) beside a folder of images. What spreadsheets do to a CSV is read, not refused: a BOM,
`;` with decimal commas, UTF-16, ids written as file names, stems or paths."""

from __future__ import annotations

import csv
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

from geospot.data.files import FileBytes, walk_files
from geospot.data.sources import (
    CSV_ID_KEYS,
    IMAGE_EXTS,
    Record,
    Skip,
    _find_col,
    _labels,
    _shard_order,
)
from geospot.data.types import DataError
from geospot.geo.columns import LAT_KEYS, LON_KEYS


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

    @functools.cached_property
    def _index_any_case(self) -> dict[str, str | tuple[str, ...]]:
        """The index by lower-cased name: `IMG_0001.JPG` in a CSV and `img_0001.jpg` on disk are one
        photo where the file system ignores case (Windows, macOS), and should be here too."""
        found: dict[str, str | tuple[str, ...]] = {}
        for name, hit in self._index.items():
            paths = (hit,) if isinstance(hit, str) else hit
            have = found.get(name.lower(), ())
            merged = tuple(dict.fromkeys(((have,) if isinstance(have, str) else have) + paths))
            found[name.lower()] = merged[0] if len(merged) == 1 else merged
        return found

    def unnamed_images(self) -> list[str]:
        """The image files below the folder that no row names (never read: `geospot data inspect` says so)."""
        named = {os.path.normpath(r.payload.path) for p in self.csv_paths for r in self.table_records(p)
                 if isinstance(r, Record)}
        every = {os.path.normpath(p) for hit in self._index.values() for p in ((hit,) if isinstance(hit, str) else hit)}
        return sorted(every - named)

    def _image_of(self, csv_path: str, sid: str) -> str | tuple[str, ...] | None:
        """The image a row's id names: a file name or stem anywhere below images/ (or the root),
        the same in another case, else a path as written, relative to the CSV's folder or to
        images/ (or absolute)."""
        hit = self._index.get(sid)
        if hit is None and sid.endswith(".0") and sid[:-2].isdigit():
            hit = self._index.get(sid[:-2])  # a numeric id that pandas wrote as a float: 123 -> "123.0"
        if hit is None and (os.sep in sid or "/" in sid or "\\" in sid or "." in sid):
            images = os.path.join(self.root, "images")
            for rel in dict.fromkeys([sid, sid.replace("\\", "/")]):  # a path written on Windows: images\\x.jpg
                for p in ([rel] if os.path.isabs(rel) else [os.path.join(os.path.dirname(csv_path), rel),
                                                            os.path.join(images, rel)]):
                    if os.path.isfile(p):
                        return p
        if hit is None and sid:
            hit = self._index_any_case.get(sid.lower())
        return hit

    @property
    def tables(self) -> list[str]:
        return self.csv_paths

    def records(self, epoch: int, seed: int, shuffle: bool) -> Iterator[Record | Skip]:
        for path in _shard_order(self.csv_paths, epoch, seed, shuffle):
            yield from self.table_records(path)

    def table_records(self, path: str) -> Iterator[Record | Skip]:
        """One CSV's rows, in its order."""
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
            # ('\t' too: Excel's "Unicode text" export, where no comma can be a separator)
            coord = _decimal_comma if dialect.delimiter in ";\t" else (lambda v: v)
            names = [n.strip() for n in reader.fieldnames or []]
            reader.fieldnames = names
            trailing = _ends_each_row(head, dialect, len(names))
            id_c = _find_col(names, self.id_col, CSV_ID_KEYS, "id", path)
            lat_c = _find_col(names, self.lat_col, LAT_KEYS, "latitude", path)
            lon_c = _find_col(names, self.lon_col, LON_KEYS, "longitude", path)
            if None in (id_c, lat_c, lon_c) and _looks_like_a_row(names):  # "set id=<column>" would be no help
                raise DataError(f"{path}: its first line looks like a row, not a header ({', '.join(names[:3])}, …); "
                                "add a header line naming the columns, e.g. id,latitude,longitude")
            if None in (id_c, lat_c, lon_c) and names and names[0].startswith("#"):
                raise DataError(f"{path}: its first line is a comment ({names[0][:40]}), not the header; delete it, "
                                "so that the line naming the columns comes first")
            if id_c is None:  # (another table of the folder may be the one meant)
                others = [p for p in self.csv_paths if p != path]
                also = f", or give the table of your photos: data={others[0]}" if len(others) == 1 else (
                    ", or give the table of your photos (data=<folder>/<file>.csv)" if others else "")
                raise DataError(f"{path}: no id column (looked for {', '.join(CSV_ID_KEYS)}; columns: {names}); "
                                f"set id=<column> in the spec{also}")
            if lat_c is None or lon_c is None:
                raise DataError(f"{path}: no {'latitude' if lat_c is None else 'longitude'} column (looked for "
                                f"{', '.join(LAT_KEYS if lat_c is None else LON_KEYS)}; columns: {names}); "
                                "name the columns with lat=<column>,lon=<column> in the spec")
            for row in reader:
                line = reader.line_num  # the file's line: blank lines, which the reader passes over, count
                if trailing and row.get(None) == [""] and None not in row.values():  # a separator ending each
                    del row[None]  # row, as some spreadsheets export: an empty field past the header's, no value
                if not any((v or "").strip() for v in row.values() if isinstance(v, str)) and not row.get(None):
                    continue  # a spreadsheet's empty row (;;;): a blank line
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
                    why = (f"{sid!r} is a URL, and images are not downloaded: fetch them into the folder and name "
                           "them by file" if re.match(r"(?i)[a-z][a-z0-9+.-]*://", sid) else
                           f"no image named {sid!r} below {self.root}")
                    yield Skip("missing_image", f"{path}:{line}: {why}", self.name, sid or None)
                    continue
                if isinstance(img_path, tuple):
                    yield Skip("ambiguous_image", f"{path}:{line}: {sid!r} names {len(img_path)} files "
                               f"({', '.join(img_path[:3])}); give each a unique name or use paths as ids", self.name,
                               sid)
                    continue
                yield Record(sid, str(row.get("source") or self.name), coord(row.get(lat_c)),
                             coord(row.get(lon_c)), _labels(row), FileBytes(img_path))


# File names that say which split a table is (OSV-5M ships train.csv and test.csv side by side).
_SPLIT_WORDS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                "dev": "val", "test": "test", "testing": "test"}


def mixed_splits(folder: str, paths: list[str]) -> str | None:
    """The sentence refusing a folder whose CSVs' names say different splits (train.csv beside
    test.csv), naming the file to give for what; None when they do not. Read as one table, the
    held-out rows would be trained on. A name that says two splits (train_test.csv) says none."""
    first: dict[str, str] = {}
    for path in sorted(paths, reverse=True):  # the first file of each split in name order wins
        stem = os.path.basename(path).rpartition(".")[0].lower()
        said = {_SPLIT_WORDS[w] for w in re.split(r"[^a-z]+", stem) if w in _SPLIT_WORDS}
        if len(said) == 1:
            first[said.pop()] = path
    if len(first) < 2:
        return None
    names = ", ".join(sorted(os.path.basename(p) for p in first.values()))
    held = first.get("val", first.get("test"))
    use = (f"data={first['train']} eval_data={held} to train, data={first.get('test', held)} to evaluate"
           if "train" in first else " or ".join(f"data={p}" for p in sorted(first.values())))
    return (f"{folder}: holds the tables of different splits ({names}); read as one, the held-out rows would be "
            f"trained on. Name the file: {use}")


def _ends_each_row(head: str, dialect, width: int) -> bool:
    """Whether every data row of the file's first 64 KB has one empty field past the header's `width`
    (a spreadsheet that ends each row, not the header, with the separator). Decided for the file, not
    per row: one row with an unquoted comma and an empty last value would look the same (48,85 -> 48, 85)."""
    lines = head.lstrip("\ufeff").splitlines()[1:]
    rows = [r for r in csv.reader(lines[:-1] if not head.endswith(("\n", "\r")) else lines, dialect) if r]
    return bool(rows) and all(len(r) == width + 1 and not r[-1].strip() for r in rows)


def _looks_like_a_row(names: list[str]) -> bool:
    """A header of numbers or image file names is a data row read as the header."""
    def number(v: str) -> bool:
        try:
            float(v.replace(",", "."))
            return True
        except ValueError:
            return False

    return any(number(n) or n.lower().endswith(tuple(f".{e}" for e in IMAGE_EXTS)) for n in names if n)


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
