"""Files for the sources: where shard/manifest bytes come from (an `Opener`), which paths a
pattern names (braces, globs with `**`, folder walks safe against symlink loops), and reading
an image file beside a manifest now or lazily in a worker thread."""

from __future__ import annotations

import glob as globlib
import os
import re
from collections.abc import Iterator
from typing import BinaryIO, Protocol


class Opener(Protocol):
    """Where shard/manifest bytes come from: the local disk, a hub repo, a local mirror."""

    def open(self, path: str) -> BinaryIO: ...


class LocalOpener:
    def glob(self, pattern: str) -> list[str]:
        out: list[str] = []
        for p in expand_braces(pattern):
            if "**" in p:  # glob's own ** follows symlinked folders round a loop: walk once instead
                out.extend(_glob_walk(p))
            else:
                out.extend(globlib.glob(p) if any(c in p for c in "*?[") else ([p] if os.path.exists(p) else []))
        return unique_files(sorted(out))

    def open(self, path: str) -> BinaryIO:
        return open(path, "rb")


def unique_files(paths: list[str]) -> list[str]:
    """`paths` without a second name for the same file (a symlink, `a/../a`): order kept."""
    seen: set[str] = set()
    out = []
    for p in paths:
        real = os.path.realpath(p)
        if real not in seen:
            seen.add(real)
            out.append(p)
    return out


def walk_files(root: str) -> Iterator[str]:
    """Every regular file below `root`, following symlinked folders but entering each real folder
    once: a symlink loop (`a/loop -> ..`) never yields a file twice or runs forever. A named pipe,
    socket or device is not yielded: opening a pipe with no writer would wait for ever."""
    return (p for p in _entries(root) if os.path.isfile(p))


def files_and_broken_links(root: str) -> tuple[list[str], list[str]]:
    """walk_files(root) and, from the same walk, every symlink below `root` whose target is gone
    (walk_files passes over them: a user who named such a photo hears of it from whoever reads the
    folder)."""
    files, broken = [], []
    for p in _entries(root):
        if os.path.isfile(p):
            files.append(p)
        elif os.path.islink(p) and not os.path.exists(p):
            broken.append(p)
    return files, broken


def _entries(root: str) -> Iterator[str]:
    """Every non-folder entry below `root`, each real folder entered once (symlinked ones followed)."""
    seen: set[str] = set()
    for d, dirs, files in os.walk(root, followlinks=True):
        real = os.path.realpath(d)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        dirs.sort()
        for fn in sorted(files):
            yield os.path.join(d, fn)


def _glob_regex(pattern: str) -> re.Pattern:
    """A glob with `**` as a regex over '/'-separated paths (`**/` = any folders, even none)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out, i = out + "(?:[^/]+/)*", i + 3
            continue
        if pattern.startswith("**", i):
            out, i = out + ".*", i + 2
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[" and "]" in pattern[i + 2:]:
            j = pattern.index("]", i + 2)
            body = pattern[i + 1:j]
            out += "[" + ("^" + body[1:] if body.startswith("!") else body).replace("\\", "\\\\") + "]"
            i = j
        else:
            out += re.escape(c)
        i += 1
    return re.compile(out)


def _glob_walk(pattern: str) -> list[str]:
    head = pattern[: min(pattern.index(c) for c in "*?[" if c in pattern)]
    root = head if head.endswith("/") else os.path.dirname(head)
    rx = _glob_regex(pattern)
    return [p for p in walk_files(root or ".") if rx.fullmatch(p if root else os.path.relpath(p))]


def other_case_hint(pattern: str) -> str:
    """For a pattern (or path) that matched nothing: what matches it in another case, as a clause
    ("; 12 files, e.g. a/IMG_1.JPG, match it in another case: names are case-sensitive here"), or ''.
    A phone writes IMG_0001.JPG; `*.jpg` finds none of them on Linux."""
    folder, name = os.path.split(os.path.expanduser(pattern))
    if not name or "**" in pattern or "{" in pattern or os.path.exists(pattern) or not os.path.isdir(folder or "."):
        return ""  # (a folder that is there but holds nothing of the kind asked for is its own message)
    rx, exact = _glob_regex(name.lower()), _glob_regex(name)
    try:
        hits = sorted(n for n in os.listdir(folder or ".") if rx.fullmatch(n.lower()) and not exact.fullmatch(n))
    except OSError:
        return ""
    if not hits:
        return ""
    which = (os.path.join(folder, hits[0]) if len(hits) == 1
             else f"{len(hits)} files, e.g. {os.path.join(folder, hits[0])},")
    return f"; {which} match{'es' * (len(hits) == 1)} it in another case: names are case-sensitive here"


_RANGE = re.compile(r"\{(-?\d+)\.\.(-?\d+)\}")


def expand_braces(pattern: str) -> list[str]:
    """`a-{000..002}.tar` -> a-000.tar a-001.tar a-002.tar (zero padding kept);
    `{train,val}/x` -> train/x val/x. Nested/multiple braces expand left to right."""
    start = pattern.find("{")
    if start < 0:
        return [pattern]
    depth, end = 0, -1
    for i in range(start, len(pattern)):
        depth += {"{": 1, "}": -1}.get(pattern[i], 0)
        if depth == 0:
            end = i
            break
    if end < 0:
        raise ValueError(f"unbalanced '{{' in {pattern!r}")
    body, head, tail = pattern[start + 1:end], pattern[:start], pattern[end + 1:]
    m = _RANGE.fullmatch("{" + body + "}")
    if m:
        a, b = m.group(1), m.group(2)
        width = len(a) if a.lstrip("-").startswith("0") or len(a) == len(b) else 0
        lo, hi = int(a), int(b)
        step = 1 if hi >= lo else -1
        items = [str(k).zfill(width) for k in range(lo, hi + step, step)]
    else:
        items, depth, cur = [], 0, ""
        for ch in body:
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            cur += ch
        items.append(cur)
    return [x for it in items for x in expand_braces(head + it + tail)]


def read_relative(anchor: str, rel: str) -> bytes | None:
    """The bytes of `rel`, a path relative to the folder of `anchor` (or absolute); None if unreadable."""
    p = rel if os.path.isabs(rel) else os.path.join(os.path.dirname(anchor), rel)
    try:
        with open(p, "rb") as f:
            return f.read()
    except (OSError, ValueError):  # ValueError: a NUL byte in the path
        return None


class FileBytes:
    """A lazy payload: the file is read in the worker thread, not while replaying."""

    __slots__ = ("path",)

    def __init__(self, path: str):
        self.path = path

    def __call__(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()
