"""What kind of data a folder or file holds, from what is in it: `data=<folder>` needs no kind
(spec.py's grammar: a part without `kind:` is inferred here). A CSV beside images is csv, shards
are wds / parquet / jsonl (one folder down too: a hub dataset's layout), photos with EXIF GPS are
exif; anything else is one sentence saying what was expected."""

from __future__ import annotations

import csv
import os

from geospot.data.csv_source import csv_encoding
from geospot.data.files import walk_files
from geospot.data.sources import IMAGE_EXTS
from geospot.data.types import SpecError

KINDS = ("synthetic", "hf", "wds", "parquet", "csv", "jsonl", "exif")  # the spec grammar's kinds (spec.py)
GPS_PEEK = 50  # photos of a labels-less folder looked at for EXIF GPS before it is called unlabeled


def infer_kind(target: str) -> str:
    if not target:
        raise SpecError("a spec part without a kind needs a path")
    if os.path.isdir(target):
        names = os.listdir(target)
        if not names:
            raise SpecError(f"{target}: an empty folder; put the images there with a CSV of id, latitude, longitude "
                            "(or give the folder that holds them)")
        exts = {n.rsplit(".", 1)[-1].lower() for n in names if "." in n}
        if any(n.lower().endswith((".tar.gz", ".tgz")) for n in names):
            exts.add("tar")
        if exts & {"csv", "tsv"}:  # a .tsv is a CSV with tabs (the sniffer finds the separator)
            # a camera roll with a stray spreadsheet in it (expenses.csv) is still a camera roll
            if (labelled_csv(target, names) is None and (exts & set(IMAGE_EXTS) or _image_subfolder(target))
                    and _geotagged(target)):
                return "exif"
            return "csv"
        sheets = sorted(n for n in names if n.lower().endswith((".xlsx", ".xls", ".ods", ".numbers")))
        if sheets and not exts & {"tar", "parquet", "jsonl"}:
            raise SpecError(f"{target}: holds a spreadsheet ({sheets[0]}), which is not read; save it as CSV (UTF-8) "
                            "in the same folder")
        # shards one folder down too: a hub dataset's layout (data/train-0000.parquet, train/0000.parquet)
        below = exts if exts & {"tar", "parquet", "jsonl"} else _exts_below(target, names)
        # a folder of datasets, not one: shards, and a labelled CSV beside its images in another subfolder
        # (a metadata table beside a hub dataset's shards is no dataset): reading the shards drops the CSVs unsaid
        shards = sorted(below & {"tar", "parquet", "jsonl"}) if below is not exts else []
        if shards and any(_csv_dataset(os.path.join(target, n)) for n in names):
            raise SpecError(f"{target}: its subfolders hold datasets of several kinds ({', '.join(shards)} shards, and "
                            "a CSV beside its images); give the folder of one dataset, or name each (a;b mixes them)")
        for ext, kind in (("tar", "wds"), ("parquet", "parquet"), ("jsonl", "jsonl")):
            if ext in below:
                return kind
        if exts & set(IMAGE_EXTS) or _image_subfolder(target):
            if _geotagged(target):  # a phone's photos: their EXIF GPS is the label
                return "exif"
            # photos with no labels: what `predict` takes, not training or eval
            json_files = sorted(n for n in names if n.lower().endswith(".json"))
            named = (f" ({json_files[0]} is read as JSON Lines when named itself: data="
                     f"{os.path.join(target, json_files[0])})") if json_files else ""
            parent = os.path.dirname(os.path.abspath(target))
            if labels := _labels_above(parent, names):  # the images/ folder of a dataset whose CSV sits one level up
                named += f" (its parent's {labels} labels them: give data={parent})"
            raise SpecError(f"{target}: holds images but no labels (a CSV of id, latitude, longitude beside them, a "
                            f".jsonl, or GPS tags in the photos' EXIF: none of the first {GPS_PEEK} has them){named}; "
                            f"to train or evaluate, add one; to see where a model places them: geospot predict "
                            f"model=<model> {target}")
        raise SpecError(f"{target}: cannot tell the layout (expected a CSV + images/, *.tar, *.parquet or *.jsonl)")
    low = target.lower()
    for suffix, kind in ((".tar", "wds"), (".tar.gz", "wds"), (".tgz", "wds"), (".parquet", "parquet"),
                         (".jsonl", "jsonl"), (".json", "jsonl"), (".csv", "csv"), (".tsv", "csv"),
                         *((f".{e}", "exif") for e in IMAGE_EXTS)):
        if low.endswith(suffix) or (suffix in low and "{" in low):
            return kind
    if os.path.isfile(target):
        if low.endswith((".xlsx", ".xls", ".ods", ".numbers")):
            raise SpecError(f"{target!r}: spreadsheets are not read; save it as CSV (UTF-8) next to images/ "
                            "and give that folder or file")
        raise SpecError(f"{target!r}: cannot tell what kind of data this file is (geospot reads .csv, .jsonl, "
                        f".parquet and .tar shards); prefix it with its kind, e.g. csv:{target} (kinds: "
                        f"{', '.join(KINDS)})")
    where = "" if os.path.isabs(target) else f" (a relative path is read from the current folder, {os.getcwd()})"
    # owner/name could be a hub dataset; a path with more parts, or absolute, could not
    hub = f"; a Hugging Face dataset is written hf:{target}" if target.count("/") == 1 and not os.path.isabs(
        target) else ""
    raise SpecError(f"{target!r}: no such file or folder{where}{hub}")


def _labels_above(parent: str, names: list[str]) -> str | None:
    """The labelled CSV in `parent` one of whose cells (in its first 64 KB) names one of the images
    `names` (its file name, or its stem as an id), or None: a user who gave a dataset's images/
    folder, whose labels sit beside it."""
    try:
        csv_name = labelled_csv(parent, sorted(os.listdir(parent)))
        if csv_name is None:
            return None
        path = os.path.join(parent, csv_name)
        encoding, errors = csv_encoding(path)
        with open(path, encoding=encoding, errors=errors, newline="") as f:
            text = f.read(1 << 16)
        head = (text.splitlines()[:-1] if len(text) == 1 << 16 else text.splitlines()) or [""]  # whole lines
    except OSError:
        return None
    delimiter = max(",;\t", key=head[0].count)
    cells = {os.path.basename(c.strip()) for row in csv.reader(head, delimiter=delimiter) for c in row}
    cells |= {c.rpartition(".")[0] for c in cells if "." in c}
    images = [n for n in names if n.rpartition(".")[2].lower() in IMAGE_EXTS]
    return csv_name if any(n in cells or n.rpartition(".")[0] in cells for n in images) else None


def _csv_dataset(folder: str) -> bool:
    """Whether `folder` is a CSV dataset: a labelled CSV with images beside it (or in images/)."""
    try:
        names = os.listdir(folder) if os.path.isdir(folder) else []
    except OSError:
        return False
    return labelled_csv(folder, names) is not None and (
        any(n.rpartition(".")[2].lower() in IMAGE_EXTS for n in names) or _image_subfolder(folder))


def _exts_below(target: str, names: list[str]) -> set[str]:
    """The file extensions one folder below `target` (its subfolders' files; no deeper)."""
    out: set[str] = set()
    for n in names:
        sub = os.path.join(target, n)
        if os.path.isdir(sub):
            try:
                out |= {m.rsplit(".", 1)[-1].lower() for m in os.listdir(sub) if "." in m}
            except OSError:
                continue
    return out


def labelled_csv(target: str, names: list[str]) -> str | None:
    """The first of `names` (files in the folder `target`) that is a CSV / TSV with a latitude
    column in its header line, or None."""
    from geospot.geo.columns import LAT_KEYS

    for n in names:
        if n.lower().endswith((".csv", ".tsv")):
            path = os.path.join(target, n)
            try:
                with open(path, encoding=csv_encoding(path)[0], errors="replace") as f:
                    header = f.readline().lower()
            except OSError:
                continue
            cells = {c.strip().strip('"').strip() for c in header.replace(";", ",").replace("\t", ",").split(",")}
            if cells & set(LAT_KEYS):
                return n
    return None


def _image_subfolder(target: str) -> bool:
    """Whether images sit one level down (photos/2024-trip/*.jpg; the first 20 subfolders looked at)."""
    subs = [os.path.join(target, n) for n in os.listdir(target) if os.path.isdir(os.path.join(target, n))]
    try:
        return any(n.rpartition(".")[2].lower() in IMAGE_EXTS for d in subs[:20] for n in os.listdir(d))
    except OSError:  # a subfolder that cannot be listed: not this layout
        return False


def _geotagged(target: str) -> bool:
    """Whether any of the first GPS_PEEK images below `target` carries usable EXIF GPS."""
    from geospot.data.exif import gps_of

    images = (p for p in walk_files(target) if p.rpartition(".")[2].lower() in IMAGE_EXTS)
    return any(gps_of(p) is not None for _, p in zip(range(GPS_PEEK), images))
