"""`geospot score --pred PRED.csv --truth TRUTH.csv [--json]`: the metrics table for a
predictions file. Both CSVs have an id, a latitude and a longitude column (named as the data
readers name them, in any case: id/img_id, latitude/lat, longitude/lon/lng/long; extra columns
are ignored), separated by , ; or tab; a blank predicted latitude means the answer was not parsed
(a miss). Rows are matched by id, or a predicted path's file name or stem (`geospot predict
--csv` names photos by path, OSV-5M's truth by stem); a prediction without a truth row is left
out and said, a truth row without a prediction refused.
Bad input (missing column, unknown or duplicate id, non-number) -> one line naming file, row
and column, exit code 2."""

from __future__ import annotations

import csv
import json
import math
import sys
from pathlib import Path

import numpy as np

from geospot.config import FlagParser
from geospot.geo.columns import ID_KEYS, LAT_KEYS, LON_KEYS, find_column
from geospot.geo.geocode import reverse_geocode
from geospot.geo.metrics import METRIC_KEYS, compute_metrics, format_metrics_table
from geospot.jsonutil import finite_json

REQUIRED = ("id", "latitude", "longitude")


# what a predictions file writes for an answer that did not parse: a blank latitude (geospot's own), and the
# spellings of "no answer" spreadsheets and pandas write; scored as misses, like a blank
NO_ANSWER = frozenset({"", "n/a", "na", "nan", "none", "null", "-"})


class ScoreInputError(ValueError):
    """A problem in an input CSV; the message names the file, row and column."""


def _number(path: Path, row: int, column: str, raw: str, limit: float, hint: str = "") -> float:
    value = _float(raw)  # ("nan" and "inf" parse, and are no more degrees than "N/A")
    if value is None:
        raise ScoreInputError(f"{path}: row {row}, column {column!r}: {raw!r} is not a number (use decimal degrees)"
                              + hint)
    if abs(value) > limit:
        raise ScoreInputError(
            f"{path}: row {row}, column {column!r}: {raw!r} is outside [-{limit:g}, {limit:g}] degrees"
        )
    return value


def _float(raw: str) -> float | None:
    """`raw` as a finite number, else None."""
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def read_coordinates(path: Path, *, allow_blank: bool) -> dict[str, tuple[float, float]]:
    """id -> (lat, lon); with `allow_blank`, a blank latitude (or N/A: NO_ANSWER) gives (NaN, NaN) (unparsed).
    Row numbers in errors are the file's lines (a record's last, for a quoted value over several lines), the
    header row 1, like a spreadsheet's."""
    path = Path(path)
    if path.is_dir():  # a data folder given for its table
        csvs = sorted(p.name for p in path.iterdir() if p.suffix.lower() in (".csv", ".tsv"))
        raise ScoreInputError(f"{path}: a folder; give its CSV file" + (f", e.g. {path / csvs[0]}" if csvs else ""))
    try:
        f = open(path, newline="", encoding="utf-8-sig")
    except OSError as e:
        raise ScoreInputError(f"{path}: cannot open ({e.strerror})") from None
    with f:
        header = f.readline()
        f.seek(0)
        # the separator the header uses: a spreadsheet in a comma-decimal locale writes ';', a TSV tabs
        sep = max(",;\t", key=header.count) if header.strip() else ","
        reader = csv.DictReader(f, delimiter=sep)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        found = dict(zip(REQUIRED, (find_column(columns, keys) for keys in (ID_KEYS, LAT_KEYS, LON_KEYS))))
        missing = [c for c in REQUIRED if found[c] is None]
        if missing:
            raise ScoreInputError(f"{path}: row 1 (header): missing column(s) {', '.join(missing)}; "
                                  f"expected {','.join(REQUIRED)}, found {','.join(columns) or 'nothing'}")
        reader.fieldnames = columns
        out: dict[str, tuple[float, float]] = {}
        for row in reader:
            row_no = reader.line_num  # the file's line (a blank line is a spreadsheet row too), not the record's
            raw = {c: (row.get(found[c]) or "").strip() for c in REQUIRED}
            if sep == ";":  # a ';' file's numbers may use the decimal comma: 48,85 is 48.85
                raw.update({c: raw[c].replace(",", ".", 1) for c in REQUIRED[1:] if "." not in raw[c]})
            if not raw["id"]:
                raise ScoreInputError(f"{path}: row {row_no}, column 'id': empty id")
            if raw["id"] in out:
                raise ScoreInputError(f"{path}: row {row_no}, column 'id': duplicate id {raw['id']!r}")
            if allow_blank and raw["latitude"].lower() in NO_ANSWER:  # a blank, or how people write "none"
                out[raw["id"]] = (math.nan, math.nan)
                continue
            for c in ("latitude", "longitude"):
                if not raw[c]:
                    raise ScoreInputError(
                        f"{path}: row {row_no}, column {c!r}: blank value"
                        + (" (only a blank or N/A latitude marks an unparsed answer)" if allow_blank else "")
                    )
            try:
                lat = _number(path, row_no, "latitude", raw["latitude"], 90.0)
            except ScoreInputError as e:  # 108.9 where a latitude belongs, and a longitude column of -19.1
                la, lo = _float(raw["latitude"]), _float(raw["longitude"])
                swapped = la is not None and lo is not None and abs(la) > 90 and abs(lo) <= 90
                raise ScoreInputError(f"{e}" + (" (latitude and longitude swapped? the longitude column holds "
                                                f"{raw['longitude']})" if swapped else "")) from None
            unparsed = " (only a blank or N/A latitude marks an unparsed answer)" if allow_blank and raw[
                "longitude"].lower() in NO_ANSWER else ""
            out[raw["id"]] = (lat, _number(path, row_no, "longitude", raw["longitude"], 180.0, unparsed))
    return out


def _names(i: str) -> list[str]:
    """An id, then its file name, then its stem: a predictions file names photos by path
    (`geospot predict photos/` writes photos/2024/IMG_1.jpg), a truth file by name or stem."""
    name = i.replace("\\", "/").rsplit("/", 1)[-1]
    return list(dict.fromkeys([i, name, name.rsplit(".", 1)[0] if "." in name else name]))


def match_ids(pred: dict[str, tuple], truth: dict[str, tuple]) -> tuple[dict[str, tuple], list[str]]:
    """`pred` keyed by truth ids -- each prediction's id as it is, else its file name, else its stem,
    when exactly one truth id reads so -- and the prediction ids that match none. Two predictions
    for one truth id are refused."""
    index: dict[str, str | None] = {}
    sharing: dict[str, dict[str, None]] = {}  # name -> the truth ids it reads as (ordered, once each)
    for t in truth:
        for k in _names(t):
            index[k] = t if index.get(k, t) == t else None  # a name two truth ids share matches neither
            sharing.setdefault(k, {})[t] = None
    out: dict[str, tuple] = {}
    unmatched, by = [], {}
    for i, v in pred.items():
        # (its own id too: a stem predicted for a truth id written with its extension, 123 for 123.jpg)
        t = i if i in truth else next((index[k] for k in _names(i) if index.get(k)), None)
        shared = next((k for k in _names(i) if k in index and index[k] is None), None) if t is None else None
        if shared is not None and not all(x in pred for x in sharing[shared]):  # said as such, not as a truth id
            # "missing" from the predictions (where each of those truth ids has its own row, this one is an extra)
            ids = list(sharing[shared])
            raise ScoreInputError(f"prediction {i!r} reads as {len(ids)} truth ids by its name {shared!r} ("
                                  f"{', '.join(map(repr, ids[:3]))}); write its id as the truth file does")
        if t is None:
            unmatched.append(i)
        elif t in out:
            raise ScoreInputError(f"predictions {by[t]!r} and {i!r} both name the truth id {t!r}; keep one")
        else:
            out[t], by[t] = v, i
    return out, unmatched


def score_files(pred_path: Path, truth_path: Path, *, geocoder=reverse_geocode) -> dict:
    """The metrics dict for a predictions CSV against a truth CSV, rows matched by id (or by a
    predicted path's file name or stem). Predictions with no truth (a camera roll's photos without
    GPS) are left out and said; a truth id without a prediction is refused (every one counts)."""
    pred, extra = match_ids(read_coordinates(pred_path, allow_blank=True),
                            truth := read_coordinates(truth_path, allow_blank=False))
    absent = [i for i in truth if i not in pred]
    if absent:
        raise ScoreInputError(f"ids do not match: {len(absent)} id(s) in {truth_path} missing from {pred_path} "
                              f"(first: {absent[0]!r}). Predict every truth id exactly once (leave latitude blank "
                              "for an unparsed answer).")
    if extra:
        print(f"geospot score: {len(extra)} prediction(s) in {pred_path} have no row in {truth_path} and are not "
              f"scored (first: {extra[0]!r})", file=sys.stderr)
    ids = list(truth)
    p = np.array([pred[i] for i in ids], dtype=np.float64).reshape(-1, 2)
    t = np.array([truth[i] for i in ids], dtype=np.float64).reshape(-1, 2)
    return compute_metrics(p[:, 0], p[:, 1], t[:, 0], t[:, 1], geocoder=geocoder)


def score_main(argv: list[str]) -> int:
    ap = FlagParser(prog="geospot score", description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--pred", required=True, type=Path,
        help="predictions CSV: id,latitude,longitude (a blank or N/A latitude = unparsed)"
    )
    ap.add_argument("--truth", required=True, type=Path, help="ground-truth CSV: id,latitude,longitude[,...]")
    ap.add_argument("--json", action="store_true", help="print one JSON object (non-finite values as null)")
    ap.add_argument("--no-labels", action="store_true", help="skip reverse geocoding (country/region/city accuracy)")
    args = ap.parse_args(argv)
    try:
        metrics = score_files(args.pred, args.truth, geocoder=None if args.no_labels else reverse_geocode)
    except ScoreInputError as e:
        print(f"geospot score: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(finite_json({k: metrics[k] for k in METRIC_KEYS})))
    else:
        print(format_metrics_table({args.pred.name: metrics}))
    return 0
