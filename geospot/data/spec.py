"""Data spec strings: one string chooses and mixes every source.

Grammar
-------
    SPEC    := PART ( ";" PART )*            several parts are mixed (see weights)
    PART    := SOURCE [ "@" WEIGHT ]          WEIGHT: a positive number, default 1
    SOURCE  := "synthetic:" [ OPTS ]
             | "hf:" REPO [ "," OPTS ]        a Hugging Face dataset repo, streamed
             | [ KIND ":" ] PATH [ "," OPTS ]  local data; KIND is inferred when omitted
    KIND    := "wds" | "parquet" | "csv" | "jsonl"
    OPTS    := KEY "=" VALUE ( "," KEY "=" VALUE )*
    PATH    := a file, a folder, a glob (* ? [..] **) and/or brace expansions:
               ranges {000..009} (zero padding kept) and lists {train,val};
               commas inside braces do not separate options

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
one holding *.tar shards is wds; *.parquet is parquet; *.jsonl is jsonl.

Splits: every source is split into train/val/test by a hash of the sample id
(`split_of`; fractions are the stream options val_frac/test_frac, default 5% each), so
"synthetic:n=2000" has ~100 val samples. split="all" disables the split.

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
"""

from __future__ import annotations

import glob as globlib
import os
from dataclasses import dataclass

from geospot.data.sources import (
    CsvFolderSource,
    JsonlSource,
    LocalOpener,
    ParquetSource,
    Source,
    SyntheticSource,
    WebDatasetSource,
    expand_braces,
)

KINDS = ("synthetic", "hf", "wds", "parquet", "csv", "jsonl")


class SpecError(ValueError):
    """A data spec that cannot be understood; the message names the part and the fix."""


@dataclass(frozen=True)
class SpecPart:
    kind: str
    target: str
    options: dict
    weight: float
    text: str


def _split_top(s: str, sep: str) -> list[str]:
    """Split on `sep` outside braces/brackets."""
    out, depth, cur = [], 0, ""
    for ch in s:
        if ch in "{[":
            depth += 1
        elif ch in "}]":
            depth -= 1
        if ch == sep and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return out


def parse_spec(spec: str) -> list[SpecPart]:
    if not isinstance(spec, str) or not spec.strip():
        raise SpecError("empty data spec; try 'synthetic:n=2000' or a folder path")
    parts = []
    for raw in _split_top(spec, ";"):
        text = raw.strip()
        if not text:
            continue
        weight = 1.0
        head, at, tail = text.rpartition("@")
        if at and tail.strip() and "/" not in tail and "," not in tail:
            try:
                weight = float(tail)
            except ValueError:
                raise SpecError(f"{text!r}: the weight after '@' must be a number, e.g. @0.5") from None
            if not weight > 0:
                raise SpecError(f"{text!r}: the weight must be > 0")
            text = head.strip()
        kind, body = "", text
        k, colon, rest = text.partition(":")
        if colon and k in KINDS:
            kind, body = k, rest
        elif colon and len(k) > 1 and "/" not in k and not os.path.exists(text):
            raise SpecError(f"{text!r}: unknown source kind {k!r}; use one of {', '.join(KINDS)} or a path")
        fields = _split_top(body, ",")
        target, options = "", {}
        for i, f in enumerate(fields):
            f = f.strip()
            if i == 0 and ("=" not in f or kind not in ("synthetic", "")):
                target = f
                continue
            if "=" not in f:
                raise SpecError(f"{text!r}: option {f!r} is not key=value")
            key, value = f.split("=", 1)
            options[key.strip()] = value.strip()
        if kind == "":
            kind = infer_kind(target)
        parts.append(SpecPart(kind, target, options, weight, raw.strip()))
    if not parts:
        raise SpecError(f"data spec {spec!r} has no parts")
    return parts


def infer_kind(target: str) -> str:
    if not target:
        raise SpecError("a spec part without a kind needs a path")
    if os.path.isdir(target):
        names = os.listdir(target)
        exts = {n.rsplit(".", 1)[-1].lower() for n in names if "." in n}
        if "csv" in exts:
            return "csv"
        for ext, kind in (("tar", "wds"), ("parquet", "parquet"), ("jsonl", "jsonl")):
            if ext in exts:
                return kind
        raise SpecError(f"{target}: cannot tell the layout (expected a CSV + images/, *.tar, *.parquet or *.jsonl)")
    low = target.lower()
    for suffix, kind in ((".tar", "wds"), (".tar.gz", "wds"), (".tgz", "wds"), (".parquet", "parquet"),
                         (".jsonl", "jsonl"), (".json", "jsonl"), (".csv", "csv")):
        if low.endswith(suffix) or (suffix in low and "{" in low):
            return kind
    raise SpecError(f"{target!r}: no such file or folder, and the kind cannot be inferred; "
                    f"prefix it with one of {', '.join(KINDS)}:")


def _opts(part: SpecPart, allowed: dict) -> dict:
    out = {}
    for key, value in part.options.items():
        if key not in allowed:
            raise SpecError(f"{part.text!r}: unknown option {key!r} for {part.kind}; allowed: {', '.join(sorted(allowed))}")
        tp = allowed[key]
        try:
            out[key] = tp(value)
        except ValueError:
            raise SpecError(f"{part.text!r}: {key}={value!r} is not a valid {tp.__name__}") from None
    return out


def _files(part: SpecPart, exts: tuple[str, ...]) -> list[str]:
    target = os.path.expanduser(part.target)
    if os.path.isdir(target):
        found = sorted(p for e in exts for p in globlib.glob(os.path.join(target, "**", f"*.{e}"), recursive=True))
    else:
        found = LocalOpener().glob(target)
    if not found:
        raise SpecError(f"{part.text!r}: no files match {part.target!r}" + (
            f" (expanded to {len(expand_braces(target))} names)" if "{" in target else ""))
    return found


def build_source(part: SpecPart) -> Source:
    o = part.options
    name = o.get("name")
    if part.kind == "synthetic":
        kw = _opts(part, {"n": int, "size": int, "seed": int, "regions": int, "difficulty": float,
                          "ambiguity": float, "subregions": int, "cities": int, "name": str})
        if part.target:
            raise SpecError(f"{part.text!r}: synthetic takes only key=value options, e.g. synthetic:n=2000,size=112")
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
        csvs = sorted(globlib.glob(os.path.join(target, "*.csv"))) if os.path.isdir(target) else LocalOpener().glob(target)
        if not csvs:
            raise SpecError(f"{part.text!r}: no CSV file found")
        return CsvFolderSource(csvs, root, name=name or os.path.basename(os.path.normpath(root)) or "csv",
                               lat_col=kw.get("lat"), lon_col=kw.get("lon"), id_col=kw.get("id"))
    if part.kind == "jsonl":
        kw = _opts(part, {"lat": str, "lon": str, "image": str, "name": str})
        return JsonlSource(_files(part, ("jsonl",)), name=name or "jsonl", lat_key=kw.get("lat"),
                           lon_key=kw.get("lon"), image_key=kw.get("image", "image"))
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
