"""Hugging Face hub datasets, streamed (nothing is downloaded up front).

Two layouts are understood, decided from the repo's file list:
  * manifest (sdan/geospot-unified): data files (parquet / jsonl / csv / txt) whose `text`
    column lists WebDataset tar shard paths inside the same repo; the shards are read
    over HTTP with the WebDataset reader (members jpg + json {lat, lon, city, country, source}).
  * parquet (osv5m/osv5m style): parquet data files with an image column and
    latitude/longitude columns (names configurable), read row group by row group.
  Repos that only hold tar shards are read as WebDataset directly.

All file access goes through a `RepoOpener`: `HubOpener` (HTTP, the user's token via
huggingface_hub: HF_TOKEN or `hf auth login`) or `DirOpener` (a local folder with the same
layout - a mirror, and what the tests use). Choose a mirror with the spec option
`root=<dir>` or the environment variable GEOSPOT_HF_MIRROR=<dir holding owner/name/>."""

from __future__ import annotations

import csv
import io
import json
import os
import re
from typing import BinaryIO, Protocol

from geospot.data.sources import IMAGE_COLS, ParquetSource, WebDatasetSource
from geospot.data.types import SpecError

DATA_EXTS = (".parquet", ".jsonl", ".json", ".csv", ".txt")
TAR_EXTS = (".tar", ".tar.gz", ".tgz")


class RepoOpener(Protocol):
    """Files of one dataset repo, by path relative to the repo root."""

    def list(self) -> list[str]: ...

    def open(self, path: str) -> BinaryIO: ...


class DirOpener:
    def __init__(self, root: str):
        if not os.path.isdir(root):
            raise SpecError(f"hub mirror folder {root!r} does not exist")
        self.root = root

    def list(self) -> list[str]:
        out = []
        for d, dirs, files in os.walk(self.root):
            dirs[:] = [x for x in dirs if not x.startswith(".")]
            out.extend(os.path.relpath(os.path.join(d, f), self.root).replace(os.sep, "/") for f in files)
        return sorted(out)

    def open(self, path: str) -> BinaryIO:
        return open(os.path.join(self.root, path), "rb")


class HubOpener:
    """A dataset repo on the hub, read lazily over HTTP (ranged reads: parquet footers and
    tar streams never fetch the whole repo)."""

    def __init__(self, repo_id: str, revision: str | None = None, token: str | bool | None = None):
        from huggingface_hub import HfFileSystem

        self.fs = HfFileSystem(token=token)
        self.base = f"datasets/{repo_id}" + (f"@{revision}" if revision else "")
        self.repo_id = repo_id

    def list(self) -> list[str]:
        try:
            found = self.fs.find(self.base)
        except Exception as e:  # network, auth, missing repo: say which and how to fix
            raise SpecError(
                f"cannot list hf:{self.repo_id} ({type(e).__name__}: {e}); check the name, "
                "your token (HF_TOKEN or `hf auth login`) and the network, or use root=<local mirror>"
            ) from e
        prefix = self.base + "/"
        return sorted(p[len(prefix):] for p in found if p.startswith(prefix))

    def open(self, path: str) -> BinaryIO:
        return self.fs.open(f"{self.base}/{path}", "rb", block_size=4 << 20)


def normalize_shard_path(entry: str, repo_id: str) -> str:
    """Manifest entries may be repo-relative ('shards/x-000.tar'), hf:// URLs (optionally
    @revision) or https resolve URLs of the same repo; all become repo-relative paths."""
    e = entry.strip()
    m = re.search(rf"datasets/{re.escape(repo_id)}(?:/resolve/[^/]+|@[^/]+)?/(.*)$", e)
    if m:
        e = m.group(1)
    while e.startswith("./"):
        e = e[2:]
    return e.lstrip("/")


def _read_column(repo: RepoOpener, path: str, column: str, image_col: str | None = None) -> list[str]:
    """The `column` values of a data file; [] for a parquet file that holds images itself (an
    image dataset, not a manifest), judged on the schema this one open reads anyway."""
    low = path.lower()
    with repo.open(path) as f:
        if low.endswith(".parquet"):
            import pyarrow.parquet as pq

            pf = pq.ParquetFile(f)
            names = pf.schema_arrow.names
            has_image = (image_col in names) if image_col else any(c in names for c in IMAGE_COLS)
            if has_image or column not in names:
                return []
            return [str(v) for v in pf.read(columns=[column]).column(column).to_pylist() if v]
        text = f.read().decode("utf-8", errors="replace")
    if low.endswith((".jsonl", ".json")):
        out = []
        for line in text.splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and row.get(column):
                out.append(str(row[column]))
        return out
    if low.endswith(".csv"):
        rows = list(csv.DictReader(io.StringIO(text)))
        return [r[column] for r in rows if r.get(column)]
    return [ln for ln in text.splitlines() if ln.strip()]  # .txt: one row per line (the `text` column)


def build_hub_source(repo_id: str, *, lat: str | None = None, lon: str | None = None, image: str | None = None,
                     id: str | None = None, name: str | None = None, revision: str | None = None,
                     split: str | None = None, column: str = "text", root: str | None = None,
                     opener: RepoOpener | None = None):
    if not repo_id or repo_id.count("/") != 1:
        raise SpecError(f"hf:{repo_id}: expected hf:<owner>/<name>, e.g. hf:osv5m/osv5m")
    if opener is None:
        mirror = os.environ.get("GEOSPOT_HF_MIRROR")
        if root:
            opener = DirOpener(os.path.expanduser(root))
        elif mirror and os.path.isdir(os.path.join(mirror, repo_id)):
            opener = DirOpener(os.path.join(mirror, repo_id))
        else:
            opener = HubOpener(repo_id, revision, token=os.environ.get("HF_TOKEN") or None)
    files = opener.list()
    picked = [f for f in files if split is None or split in f]
    data = [f for f in picked if f.lower().endswith(DATA_EXTS) and not f.rsplit("/", 1)[-1].startswith(("README", "."))]
    label = name or repo_id.split("/")[1]
    files_set = set(files)

    # 1. A manifest: data files whose `column` lists tar shards of this repo.
    shards: list[str] = []
    for f in data:
        entries = _read_column(opener, f, column, image)
        tars = [normalize_shard_path(e, repo_id) for e in entries if e.strip().lower().endswith(TAR_EXTS)]
        shards.extend(tars)
    if shards:
        missing = [s for s in shards if s not in files_set]
        if missing:
            raise SpecError(f"hf:{repo_id}: the manifest lists {len(missing)} shard(s) not in the repo, "
                            f"e.g. {missing[0]!r}")
        return WebDatasetSource(list(dict.fromkeys(shards)), name=label, opener=opener,
                                lat_key=lat, lon_key=lon)
    # 2. Parquet with images.
    pq_files = [f for f in data if f.lower().endswith(".parquet")]
    if pq_files:
        return ParquetSource(pq_files, name=label, lat_col=lat, lon_col=lon, image_col=image, id_col=id,
                             opener=opener)
    # 3. Bare tar shards.
    tars = [f for f in picked if f.lower().endswith(TAR_EXTS)]
    if tars:
        return WebDatasetSource(tars, name=label, opener=opener, lat_key=lat, lon_key=lon)
    raise SpecError(f"hf:{repo_id}: found no manifest ({column!r} column listing .tar shards), no parquet with "
                    f"images and no tar shards" + (f" matching split={split!r}" if split else "")
                    + f" among {len(files)} files")
