"""Data specs read from another folder than the one they were written in: a run's saved spec,
its relative paths meant from the folder it was started in (config.json's `started_in`).

    same_data:   whether two specs name the same data, each read from its own folder;
    rebase_spec: a spec with its relative local paths made absolute under a folder;
    read_here:   a run's saved spec as this folder reads it (rebased when the run began elsewhere);
    packed_from: the data a `geospot data pack` folder was packed from (its PACK_RECORD).

train/resume.py resumes a run from anywhere with them; eval/cli.py knows a run's training data."""

from __future__ import annotations

import json
import os

from geospot.data.options import STREAM_KEYS
from geospot.data.spec import ESCAPABLE, KINDS, SpecError, parse_spec

# written by `geospot data pack` beside its shards: the spec they were packed from (absolute paths).
# Pack keeps each sample's id, and a split is a hash of the id, so a run trained on the shards held
# out the same images of the original as of the shards.
PACK_RECORD = "geospot-pack.json"


def same_data(a: str, a_dir: str, b: str, options: bool = True) -> bool:
    """Whether spec `a`, its relative paths read from the folder `a_dir`, names the same data as
    spec `b` read from here: the same parts, options and weights, each local part reading the same
    files however it is spelled (`photos` in a_dir and `/home/u/proj/photos/` are one folder, and so
    are a folder and the one CSV or JSONL it holds, named as a file).
    options=False: the same sources, whatever their stream options (val_frac, max_side, square, ...)
    and weights; a source's own options (a synthetic world's n and seed, a hub dataset's split) count."""
    def key(spec: str, base: str) -> list:
        out = []
        for p in parse_spec(spec, infer=False):
            local = p.kind not in ("synthetic", "hf")
            target = os.path.realpath(os.path.join(base, os.path.expanduser(p.target))) if local else p.target
            out.append(("local" if local else p.kind, target, *((sorted(p.options.items()), p.weight) if options
                                                                else (_own(p.options),))))
        return sorted(out)

    try:
        if key(a, a_dir) == key(b, os.getcwd()):
            return True
    except SpecError:
        return False
    read_a, read_b = _files_read(a, a_dir, options), _files_read(b, os.getcwd(), options)
    return read_a is not None and read_a == read_b


def _files_read(spec: str, base: str, options: bool) -> list | None:
    """Each part of `spec` (relative paths read from `base`) as what it reads: a local part's files
    (and a CSV's image folder), resolved; None when that cannot be told here (a path that is gone,
    a spec that cannot be rebased)."""
    from geospot.data.spec import build_source
    from geospot.data.types import DataError

    rebased = rebase_spec(spec, base)
    if rebased is None:
        return None
    out = []
    try:
        for p in parse_spec(rebased):
            src = build_source(p) if p.kind not in ("synthetic", "hf") else None
            files = getattr(src, "csv_paths", None) or getattr(src, "paths", None) or getattr(src, "urls", None)
            root = [getattr(src, "root", None) or ""] if src is not None else []
            what = ("files", tuple(sorted(os.path.realpath(f) for f in [*(files or ()), *root] if f))) \
                if src is not None else (p.kind, p.target)
            out.append((*what, *((sorted((k, v) for k, v in p.options.items() if k != "name"), p.weight)
                                 if options else (_own(p.options),))))
    except (SpecError, DataError, OSError):
        return None
    return sorted(out)


def _own(options: dict) -> list:
    """A part's options that say which data it is (not how it is streamed, nor its `name`)."""
    return sorted((k, v) for k, v in options.items() if k not in STREAM_KEYS and k != "name")


def rebase_spec(spec: str, base: str) -> str | None:
    """`spec` with each relative local path made absolute under the folder `base` (a run's saved
    data, read from another folder than the one it was started in); the spec itself when it has
    none. None when that cannot be written safely: the spec quotes or escapes, or `base` holds a
    character the grammar reads as syntax."""
    parts = parse_spec(spec, infer=False)
    relative = [p for p in parts if p.kind not in ("synthetic", "hf") and p.target and not os.path.isabs(p.target)]
    if not relative:
        return spec
    if any(c in spec for c in "\"'\\") or any(c in base for c in ESCAPABLE | {"*", "?", "["}):
        return None
    out = []
    for raw in spec.split(";"):
        head, colon, rest = raw.strip().partition(":")
        kind_prefix = colon and head in KINDS
        body = rest if kind_prefix else raw.strip()
        target = next((p.target for p in relative if body.startswith(p.target)), None)
        if target is not None:
            body = os.path.join(base, target) + body[len(target):]
        out.append(f"{head}:{body}" if kind_prefix else body)
    return ";".join(out)


def read_here(spec: str, started_in: str | None) -> str:
    """A run's saved `spec` as read from the current folder: rebased under `started_in` (the folder the
    run began in) when that is another one; as it is where it began, where nothing is known of it, or
    where it cannot be rewritten safely (rebase_spec's None)."""
    if not started_in or os.path.realpath(started_in) == os.path.realpath(os.getcwd()):
        return spec
    return rebase_spec(spec, started_in) or spec


def packed_from(spec: str, base: str) -> tuple[str, str] | None:
    """(the spec `geospot data pack` read to write `spec`, the split it packed), for one folder of its
    shards or shard files in it (relative paths read from `base`), from the folder's PACK_RECORD;
    None for anything else."""
    try:
        parts = parse_spec(spec, infer=False)
    except SpecError:
        return None
    if len(parts) != 1 or parts[0].kind in ("synthetic", "hf") or not parts[0].target:
        return None
    target = os.path.join(base, os.path.expanduser(parts[0].target))
    folder = target if os.path.isdir(target) else os.path.dirname(target)
    try:
        with open(os.path.join(folder, PACK_RECORD), encoding="utf-8") as f:
            record = json.load(f)
        source, split = record.get("from"), record.get("split", "all")
    except (OSError, ValueError, AttributeError):
        return None
    return (source, str(split)) if isinstance(source, str) and source else None
