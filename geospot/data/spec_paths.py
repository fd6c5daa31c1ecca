"""Data specs read from another folder than the one they were written in: a run's saved spec,
its relative paths meant from the folder it was started in (config.json's `started_in`).

    same_data:   whether two specs name the same data, each read from its own folder;
    rebase_spec: a spec with its relative local paths made absolute under a folder.

train/resume.py resumes a run from anywhere with them; eval/cli.py knows a run's training data."""

from __future__ import annotations

import os

from geospot.data.spec import ESCAPABLE, KINDS, SpecError, parse_spec


def same_data(a: str, a_dir: str, b: str, options: bool = True) -> bool:
    """Whether spec `a`, its relative paths read from the folder `a_dir`, names the same data as
    spec `b` read from here: the same parts, options and weights, each local path the same file or
    folder however it is spelled (`photos` in a_dir and `/home/u/proj/photos/` are one folder).
    options=False: the same sources, whatever their options (val_frac, max_side, ...) and weights."""
    def key(spec: str, base: str) -> list:
        out = []
        for p in parse_spec(spec, infer=False):
            local = p.kind not in ("synthetic", "hf")
            target = os.path.realpath(os.path.join(base, os.path.expanduser(p.target))) if local else p.target
            out.append(("local" if local else p.kind, target, *((sorted(p.options.items()), p.weight) if options
                                                                else ())))
        return sorted(out)

    try:
        return key(a, a_dir) == key(b, os.getcwd())
    except SpecError:
        return False


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
