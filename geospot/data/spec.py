r"""Data spec strings: one string chooses and mixes every source.

Grammar
-------
    SPEC    := PART ( ";" PART )*            several parts are mixed (see weights)
    PART    := SOURCE [ "@" WEIGHT ]          WEIGHT: a positive number, default 1
    SOURCE  := "synthetic:" [ OPTS ]
             | "hf:" REPO [ "," OPTS ]        a Hugging Face dataset repo, streamed
             | [ KIND ":" ] PATH [ "," OPTS ]  local data; KIND is inferred when omitted
    KIND    := "wds" | "parquet" | "csv" | "jsonl" | "exif"
    OPTS    := KEY "=" VALUE ( "," KEY "=" VALUE )*    KEY: the kind's option or a stream option
    PATH    := a file, a folder, a glob (* ? [..] **) and/or brace expansions:
               ranges {000..009} (zero padding kept) and lists {train,val};
               commas inside braces do not separate options

Quoting: text inside "..." or '...', and any one of ; , @ = " ' \ { } : after a backslash,
is literal, so a path holding ; , @ or = is written "/data/photos@2" or /data/photos\@2
(in a shell, put the whole spec in single quotes). Quotes protect the spec's syntax only:
glob characters and braces in a quoted path still expand. A part naming an existing file or
folder is read as that path even when it ends in @<number>.

Stream options: any stream option (max_side, square, max_pixels, min_side, repeat, shuffle,
shuffle_buffer, workers, prefetch, val_frac, test_frac, max_skips_in_a_row; README.md's table
"Data stream options") may be written among a part's options. It applies to the whole stream
and overrides the command's own value; two parts may not set one differently.

Kinds and their options
-----------------------
    synthetic   n=10000 size=112 seed=0 regions=16 difficulty=0.3 ambiguity=0.0
                subregions=4 cities=6           (a SyntheticWorld; see synthetic.py)
    wds         WebDataset tar shards, members <key>.jpg + <key>.json {lat, lon, city,
                country, source}: the sdan/geospot-unified layout. lat= lon= name the
                JSON keys when they differ.
    parquet     image column (HF struct {bytes,path}, bytes, or a relative path) and
                latitude/longitude columns: image= lat= lon= id=
    csv         the OSV-5M layout: a folder with images/<id>.jpg (any depth) and a CSV
                keyed by id with latitude/longitude (+ city, region, country), or the
                CSV file itself: lat= lon= id=
    jsonl       one object per line {image: relative path, lat, lon, ...}: lat= lon= image=
                (a nested key with dots: lat=location.lat)
    exif        geotagged photos: a folder (any depth), files or a glob of images whose EXIF
                GPS tags give latitude/longitude (a phone's or a GPS camera's pictures); the
                id is the path below the folder. A photo without usable GPS is skipped as
                no_gps, gps_void (status V, or 0,0: no fix) or bad_gps (see data/exif.py).
    hf          REPO is owner/name. Either a manifest repo whose `text` column lists tar
                shard paths inside the same repo (sdan/geospot-unified), streamed as wds,
                or parquet data files with image + latitude/longitude columns
                (osv5m/osv5m style). Options: revision= split= (a substring of the data
                file paths, e.g. train/test) column= (manifest column, default text)
                image= lat= lon= id= root=<local mirror folder of the repo> (or set
                GEOSPOT_HF_MIRROR=<folder holding owner/name/>). The token comes from
                HF_TOKEN / `hf auth login`.
    every kind  name=<label for per-source counts> (records whose metadata has a `source`
                field keep it: the unified shards count per original dataset)

Folders are inferred: a folder holding a CSV and an images/ folder (or images) is csv;
one holding *.tar shards is wds; *.parquet is parquet; *.jsonl is jsonl; one holding only
images, some of them with EXIF GPS tags, is exif (as is an image file or a glob of them).

Splits: every source is split into train/val/test by a hash of the sample id
(`split_of`; fractions are the stream options val_frac/test_frac, default 5% each), so
"synthetic:n=2000" has ~100 val samples. split="heldout" is val + test (every id training never
reads); split="all" disables the split. A CSV folder whose tables are named for splits (train.csv
beside test.csv, as OSV-5M ships them) is refused, naming the file to give: read as one, the
held-out rows would be trained on.

Bad records are skipped and counted by reason (`geospot data inspect` lists them). A stream
that repeats (training) first checks that every part gives at least one usable sample in
its split, so a source with none fails at once, naming the part and its skip reasons; and
max_skips_in_a_row unusable records in a row stop any stream with the same kind of message.
Coordinates are JSON numbers or strings in plain decimal/scientific notation (booleans,
"4_5", hex, "inf", lists and objects are bad_coords). What a source says twice is skipped, never
guessed: in local CSV / JSONL parts (up to 1M rows in all) decided once for every pass and split
(data/dedup.py) -- rows giving one photo (a file, a symlink to it, a byte-identical copy) other
coordinates are none used (duplicate_id_conflict / duplicate_image_conflict; tables that each give
it one other label: refused, naming each); a photo several ids name is the first row's (duplicate_image);
an id naming several photos keeps the first (duplicate_id). Elsewhere the record read first wins:
an id seen again is duplicate_id (duplicate_id_conflict when its coordinates differ), a file or
image bytes an earlier id named are duplicate_image (duplicate_image_conflict), in every split.
A table with two latitude or longitude columns (lat
and latitude) fails in one sentence (name one: lat=); a record whose two such keys disagree is
skipped as ambiguous_coords. A row without an id is named by its file (the file's path below the
folder the files share, where two share a name: train/0000.parquet, test/0000.parquet) and its
row or line. A folder whose shards sit one folder down (train/, data/) is read. CSVs may carry
a byte-order mark, use , ; or tab (read off the header line) and CRLF; a row that is not UTF-8
is skipped as bad_encoding, one with more or fewer fields than the header (an unquoted comma)
as malformed_row; in a ;-separated CSV `48,85` is a decimal comma. A CSV id is an image's file
name or stem anywhere below images/ (in any case), or a path relative to the CSV or to images/
(pandas' `123.0` is 123; an
`image_path`, `image`, `file_name`, `filename` or `path` column serves when there is no id); a
name two files share is skipped as ambiguous_image. A table without latitude/longitude columns,
or whose columns look swapped (of its first 1000 rows, at least 10 % with a latitude beyond ±90°
while no longitude is beyond ±90°: in a small table one typo reads the same, and the sentence says
so), and a .json holding a JSON array fail at once in one sentence. JSONL images are `image`, or
HF imagefolder's `file_name`, relative to the file's folder.
Folders are walked once per real folder (symlink loops are safe).
WebDataset members group by key, which ends at the FIRST dot of the file name
(`a.v2.jpg` is key `a`, extension `v2.jpg`): such members are skipped as dotted_member_name.

Weights: parts are interleaved by smooth weighted round robin, so the share of each
part over any window is its weight / total (exact up to one item), and a part that is
exhausted (repeat off) drops out.

Examples
--------
    synthetic:n=4000,size=112,seed=0
    /work/shared/data/osv5m-samples
    wds:/data/shards/unified-{000..009}.tar@3;csv:/data/osv5m,name=osv5m@1
    hf:sdan/geospot-unified,split=train
    hf:osv5m/osv5m,split=test,lat=latitude,lon=longitude
    synthetic:n=2000,val_frac=0.2,max_side=224
    /work/shared/data/osv5m-samples,max_pixels=1000000,min_side=16
    csv:"/data/my photos@home",name=home@2;'/data/a,b.jsonl'
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from geospot.data.csv_source import CsvFolderSource, mixed_splits
from geospot.data.files import other_case_hint
from geospot.data.layout import GPS_PEEK, KINDS, infer_kind, labelled_csv  # noqa: F401  (callers import them here)
from geospot.data.options import STREAM_KEYS
from geospot.data.sources import (
    IMAGE_EXTS,
    JsonlSource,
    LocalOpener,
    ParquetSource,
    Source,
    SyntheticSource,
    WebDatasetSource,
    expand_braces,
    unique_files,
    walk_files,
)
from geospot.data.types import SpecError  # noqa: F401  (re-exported: callers import it from here)


@dataclass(frozen=True)
class SpecPart:
    kind: str
    target: str
    options: dict
    weight: float
    text: str


# A spec is scanned into characters that are either syntax or literal: quoted text ("..." or
# '...') and backslash-escaped characters are literal, so a path may hold ; , @ = and quotes.
ESCAPABLE = set(";,@=\"'\\{}:")
Chars = list[tuple[str, bool]]  # (character, literal)


def _scan(spec: str) -> Chars:
    out: Chars = []
    quote, i = "", 0
    while i < len(spec):
        ch = spec[i]
        if ch == "\\" and i + 1 < len(spec) and spec[i + 1] in ESCAPABLE:
            out.append((spec[i + 1], True))
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
            else:
                out.append((ch, True))
        elif ch in "\"'":
            quote = ch
        else:
            out.append((ch, False))
        i += 1
    if quote:
        raise SpecError(f"data spec {spec!r}: a {quote} quote is not closed")
    return out


def _text(chars: Chars) -> str:
    return "".join(c for c, _ in chars)


def _split_top(chars: Chars, sep: str) -> list[Chars]:
    """Split on a syntax `sep` outside braces/brackets."""
    out: list[Chars] = [[]]
    depth = 0
    for ch, literal in chars:
        if not literal and ch in "{[":
            depth += 1
        elif not literal and ch in "}]":
            depth -= 1
        if ch == sep and not literal and depth == 0:
            out.append([])
        else:
            out[-1].append((ch, literal))
    return out


def _strip(chars: Chars) -> Chars:
    lo, hi = 0, len(chars)
    while lo < hi and not chars[lo][1] and chars[lo][0].isspace():
        lo += 1
    while hi > lo and not chars[hi - 1][1] and chars[hi - 1][0].isspace():
        hi -= 1
    return chars[lo:hi]


def _rfind(chars: Chars, sep: str) -> int:
    depth = 0
    found = -1
    for i, (ch, literal) in enumerate(chars):
        if not literal and ch in "{[":
            depth += 1
        elif not literal and ch in "}]":
            depth -= 1
        elif ch == sep and not literal and depth == 0:
            found = i
    return found


def _find(chars: Chars, sep: str) -> int:
    return next((i for i, (ch, literal) in enumerate(chars) if ch == sep and not literal), -1)


def parse_spec(spec: str, infer: bool = True) -> list[SpecPart]:
    """The spec's parts; infer=False leaves a local part's kind "" when the spec does not name it
    (what the path holds is not read: the path may not exist here)."""
    if not isinstance(spec, str):  # a DataFrame or a list of samples from Python: a spec names where data is
        raise SpecError(f"data is a spec string (a folder, a file, 'synthetic:n=2000', hf:...), not a "
                        f"{type(spec).__name__}; write a table to parquet with image (bytes or path), latitude and "
                        "longitude columns and give its path")
    if not spec.strip():
        raise SpecError("empty data spec; try 'synthetic:n=2000' or a folder path")
    parts = []
    for raw in _split_top(_scan(spec), ";"):
        chars = _strip(raw)
        if not chars:
            continue
        text = _text(chars)
        weight = 1.0
        at = _rfind(chars, "@")
        tail = _text(chars[at + 1:]).strip() if at >= 0 else ""
        if at >= 0 and tail and "/" not in tail and "," not in tail and not _is_path(text):
            try:
                weight = float(tail)
            except ValueError:
                raise SpecError(f"{text!r}: the weight after '@' must be a number, e.g. @0.5 (a path holding "
                                "'@' goes in quotes or as \\@, see the grammar)") from None
            if not weight > 0 or weight == float("inf"):
                raise SpecError(f"{text!r}: the weight must be a positive number")
            chars = _strip(chars[:at])
            text = _text(chars)
        kind, body = "", chars
        colon = _find(chars, ":")
        k = _text(chars[:colon]) if colon >= 0 else ""
        if colon >= 0 and k in KINDS:
            kind, body = k, chars[colon + 1:]
        elif colon >= 0 and len(k) > 1 and "/" not in k and not os.path.exists(text):
            raise SpecError(f"{text!r}: unknown source kind {k!r}; use one of {', '.join(KINDS)} or a path")
        target, options = "", {}
        for i, field_chars in enumerate(_split_top(body, ",")):
            field_chars = _strip(field_chars)
            eq = _find(field_chars, "=")
            if i == 0 and (eq < 0 or kind not in ("synthetic", "")):
                target = _text(field_chars)
                continue
            if eq < 0:
                raise SpecError(f"{text!r}: option {_text(field_chars)!r} is not key=value (a path holding ',' goes "
                                "in quotes or as \\,, see the grammar)")
            options[_text(field_chars[:eq]).strip()] = _text(field_chars[eq + 1:]).strip()
        if kind not in ("synthetic", "hf") and target.startswith("~"):
            target = os.path.expanduser(target)  # `data=~/photos` quoted, or in a shell that leaves it (zsh)
        if kind == "" and infer:
            kind = infer_kind(target)
            if kind == "exif" and options.keys() & {"lat", "lon", "id"}:  # columns named: the folder's CSV is meant
                kind = "csv"
        parts.append(SpecPart(kind, target, options, weight, text))
    if not parts:
        raise SpecError(f"data spec {spec!r} has no parts")
    return parts


def _is_path(text: str) -> bool:
    """An existing file or folder whose name merely looks like `...@2` is a path, not a weight."""
    k, colon, rest = text.partition(":")
    return os.path.exists(os.path.expanduser(text)) or (bool(colon) and k in KINDS and
                                                        os.path.exists(os.path.expanduser(rest)))


def _opts(part: SpecPart, allowed: dict) -> dict:
    out = {}
    for key, value in part.options.items():
        if key in STREAM_KEYS:  # the stream's own options (max_side, val_frac, ...): read by SampleStream
            continue
        if key not in allowed:
            raise SpecError(f"{part.text!r}: unknown option {key!r} for {part.kind}; allowed: "
                            f"{', '.join(sorted(allowed))}, or a stream option ({', '.join(sorted(STREAM_KEYS))})")
        tp = allowed[key]
        try:
            out[key] = tp(value)
        except ValueError:
            raise SpecError(f"{part.text!r}: {key}={value!r} is not a valid {tp.__name__}") from None
    return out


def _globbed(part: SpecPart, target: str) -> list[str]:
    """The regular files a pattern names. A named pipe, socket or device is refused when named and
    passed over when matched: opening a pipe with no writer would wait for ever."""
    if os.path.exists(target) and not os.path.isdir(target) and not os.path.isfile(target):
        raise SpecError(f"{part.text!r}: {target} is not a regular file or a folder; give the data's file or folder")
    return [p for p in LocalOpener().glob(target) if os.path.isfile(p)]


def _files(part: SpecPart, exts: tuple[str, ...]) -> list[str]:
    target = os.path.expanduser(part.target)
    if os.path.isdir(target):  # each real file once, however many symlinks lead to it
        found = unique_files([p for p in walk_files(target) if p.lower().endswith(tuple(f".{e}" for e in exts))])
    elif os.path.isfile(target):  # a literal name, even one holding glob characters
        found = [target]
    else:
        found = _globbed(part, target)
    if not found:
        raise SpecError(f"{part.text!r}: no files match {part.target!r}" + (
            f" (expanded to {len(expand_braces(target))} names)" if "{" in target else other_case_hint(target)))
    return found


def build_source(part: SpecPart) -> Source:
    o = part.options
    name = o.get("name")
    if part.kind == "synthetic":
        kw = _opts(part, {"n": int, "size": int, "seed": int, "regions": int, "difficulty": float,
                          "ambiguity": float, "subregions": int, "cities": int, "name": str})
        if part.target:
            raise SpecError(f"{part.text!r}: synthetic takes only key=value options, e.g. synthetic:n=2000,size=112")
        for key, ok, need in (("n", lambda v: v >= 1, ">= 1"), ("size", lambda v: v >= 8, ">= 8 (px)"),
                              ("regions", lambda v: v >= 1, ">= 1"), ("subregions", lambda v: v >= 1, ">= 1"),
                              ("cities", lambda v: v >= 1, ">= 1"), ("difficulty", lambda v: 0 <= v <= 1, "in [0, 1]"),
                              ("ambiguity", lambda v: 0 <= v <= 1, "in [0, 1]")):
            if key in kw and not ok(kw[key]):
                raise SpecError(f"{part.text!r}: {key}={kw[key]} must be {need}")
        return SyntheticSource(**kw)
    if part.kind == "wds":
        kw = _opts(part, {"lat": str, "lon": str, "name": str})
        return WebDatasetSource(_files(part, ("tar", "tar.gz", "tgz")), name=name or "wds",
                                lat_key=kw.get("lat"), lon_key=kw.get("lon"))
    if part.kind == "parquet":
        kw = _opts(part, {"lat": str, "lon": str, "image": str, "id": str, "name": str})
        return ParquetSource(_files(part, ("parquet",)), name=name or "parquet", lat_col=kw.get("lat"),
                             lon_col=kw.get("lon"), image_col=kw.get("image"), id_col=kw.get("id"))
    if part.kind == "csv":
        kw = _opts(part, {"lat": str, "lon": str, "id": str, "name": str})
        target = os.path.expanduser(part.target)
        root = target if os.path.isdir(target) else os.path.dirname(target)
        csvs = (sorted(os.path.join(target, n) for n in os.listdir(target) if n.lower().endswith((".csv", ".tsv"))
                       and os.path.isfile(os.path.join(target, n))) if os.path.isdir(target)
                else [target] if os.path.isfile(target) else _globbed(part, target))
        if not csvs:
            raise SpecError(f"{part.text!r}: no CSV file found{other_case_hint(target)}")
        mixed = mixed_splits(target, csvs) if os.path.isdir(target) else None
        if mixed:
            raise SpecError(mixed)
        return CsvFolderSource(csvs, root, name=name or os.path.basename(os.path.normpath(root)) or "csv",
                               lat_col=kw.get("lat"), lon_col=kw.get("lon"), id_col=kw.get("id"))
    if part.kind == "jsonl":
        kw = _opts(part, {"lat": str, "lon": str, "image": str, "name": str})
        return JsonlSource(_files(part, ("jsonl",)), name=name or "jsonl", lat_key=kw.get("lat"),
                           lon_key=kw.get("lon"), image_key=kw.get("image", "image"))
    if part.kind == "exif":
        from geospot.data.exif import ExifGpsSource

        _opts(part, {"name": str})  # (refuses an unknown option)
        target = os.path.expanduser(part.target)
        if os.path.isdir(target):
            return ExifGpsSource(target, name=name or os.path.basename(os.path.normpath(target)) or "exif")
        files = _files(part, IMAGE_EXTS)
        return ExifGpsSource(os.path.commonpath([os.path.dirname(f) for f in files]) if files else "", files,
                             name=name or "exif")
    if part.kind == "hf":
        from geospot.data.hub import build_hub_source

        kw = _opts(part, {"lat": str, "lon": str, "image": str, "id": str, "name": str, "revision": str,
                          "split": str, "column": str, "root": str})
        return build_hub_source(part.target, **kw)
    raise SpecError(f"{part.text!r}: unknown kind {part.kind!r}")


def world_from_spec(spec: str):
    """The SyntheticWorld of the (first) synthetic part of a spec: its `.geocoder` labels
    predictions for country/region/city accuracy. None when the spec has no synthetic part."""
    for part in parse_spec(spec):
        if part.kind == "synthetic":
            return build_source(part).world  # type: ignore[attr-defined]
    return None
