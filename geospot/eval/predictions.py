"""The predictions CSV and the summary JSON of an eval run folder.

predictions.csv is appended batch by batch while an eval runs (flushed and fsynced), so
an interrupted eval loses at most the batch in flight: a rerun reads the finished ids back
and only evaluates the rest. A torn last line (killed mid-write) is dropped on read.

Columns: id, latitude, longitude, raw_text (what `geospot score` reads), then the truth
and everything needed to rebuild a `Prediction` exactly (per-turn guesses and texts, the
k samples' guesses) as JSON cells."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from geospot.eval.runner import NAN, Prediction
from geospot.runs.folder import latest_checkpoint, read_jsonl
from geospot.runs.model_spec import EXPORT_RECORD

PREDICTIONS = "predictions.csv"
SUMMARY = "summary.json"

COLUMNS = (
    "id",
    "latitude",
    "longitude",
    "raw_text",
    "true_latitude",
    "true_longitude",
    "distance_km",
    "country",
    "region",
    "city",
    "turn_guesses",
    "turn_texts",
    "sample_guesses",
    "turn_fields",
    "label_correct",
    "turn_reasoning",
)
LABEL_KEYS = ("country", "region", "city")


def _num(x: float) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else repr(float(x))


def _float(cell: str) -> float:
    return NAN if cell in ("", "nan", "NaN", None) else float(cell)


def _guesses_json(guesses) -> str:
    return json.dumps([None if g is None else [g[0], g[1]] for g in guesses])


def _guesses_from(cell: str) -> tuple[tuple[float, float] | None, ...]:
    return tuple(None if g is None else (float(g[0]), float(g[1])) for g in json.loads(cell or "[]"))


def to_row(p: Prediction) -> dict[str, str]:
    from geospot.geo import haversine_km

    d = NAN
    if p.parsed and not math.isnan(p.true_latitude):
        d = float(haversine_km(p.latitude, p.longitude, p.true_latitude, p.true_longitude))
    return {
        "id": p.id,
        "latitude": _num(p.latitude),
        "longitude": _num(p.longitude),
        "raw_text": p.raw_text,
        "true_latitude": _num(p.true_latitude),
        "true_longitude": _num(p.true_longitude),
        "distance_km": _num(d),
        **{k: p.labels.get(k, "") for k in LABEL_KEYS},
        "turn_guesses": _guesses_json(p.turn_guesses),
        "turn_texts": json.dumps(list(p.turn_texts)),
        "sample_guesses": _guesses_json(p.sample_guesses),
        "turn_fields": json.dumps(list(p.turn_fields)),
        "label_correct": json.dumps(p.label_correct),
        "turn_reasoning": json.dumps([list(t) for t in p.turn_reasoning]),
    }


def from_row(row: dict[str, str]) -> Prediction:
    return Prediction(
        id=row["id"],
        latitude=_float(row["latitude"]),
        longitude=_float(row["longitude"]),
        raw_text=row.get("raw_text", ""),
        true_latitude=_float(row.get("true_latitude", "")),
        true_longitude=_float(row.get("true_longitude", "")),
        turn_guesses=_guesses_from(row.get("turn_guesses", "")),
        turn_texts=tuple(json.loads(row.get("turn_texts") or "[]")),
        sample_guesses=_guesses_from(row.get("sample_guesses", "")),
        labels={k: row[k] for k in LABEL_KEYS if row.get(k)},
        turn_fields=tuple(json.loads(row.get("turn_fields") or "[]")),
        label_correct={str(k): float(v) for k, v in json.loads(row.get("label_correct") or "{}").items()},
        turn_reasoning=tuple(tuple(float(x) for x in t) for t in json.loads(row.get("turn_reasoning") or "[]")),
    )


def append_predictions(path: str | os.PathLike, predictions: Iterable[Prediction]) -> None:
    """Append rows (header first if the file is new), then flush them to disk."""
    path = Path(path)
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="", encoding="utf-8", errors="replace") as f:
        # "\r\n" rows: then a bare "\r" inside an answer gets quoted too (csv quotes the
        # characters of its line terminator), and a model can write anything
        w = csv.DictWriter(f, fieldnames=COLUMNS, lineterminator="\r\n")
        if new:
            w.writeheader()
        for p in predictions:
            w.writerow(to_row(p))
        f.flush()
        os.fsync(f.fileno())


def read_predictions(path: str | os.PathLike) -> list[Prediction]:
    """All complete rows; a row that does not parse (a torn write) is dropped. If an id
    appears twice the last wins."""
    path = Path(path)
    if not path.exists():
        return []
    out: dict[str, Prediction] = {}
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        columns = [c for c in COLUMNS if c in (reader.fieldnames or ())]  # files from before a column was added
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error:  # an unterminated quote at a torn end
                break
            try:
                if any(row.get(c) is None for c in columns):  # short row: torn
                    continue
                p = from_row(row)
            except (ValueError, KeyError, TypeError, json.JSONDecodeError):
                continue
            out[p.id] = p
    return list(out.values())


def repair_predictions(path: str | os.PathLike) -> list[Prediction]:
    """Read the complete rows of an interrupted run and rewrite the file with exactly those
    (atomically), so rows appended next never glue onto half a row."""
    path = Path(path)
    preds = read_predictions(path)
    if path.exists():
        tmp = path.with_name(path.name + ".tmp")
        tmp.unlink(missing_ok=True)
        append_predictions(tmp, preds)
        os.replace(tmp, path)
    return preds


def write_truth_csv(path: str | os.PathLike, predictions: Sequence[Prediction]) -> None:
    """id,latitude,longitude[,country,region,city] of the ground truth (what `geospot score`
    takes as its truth file)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "latitude", "longitude", *LABEL_KEYS])
        for p in predictions:
            w.writerow([p.id, _num(p.true_latitude), _num(p.true_longitude),
                        *(p.labels.get(k, "") for k in LABEL_KEYS)])


def write_summary(run_dir: str | os.PathLike, summary: dict) -> Path:
    path = Path(run_dir) / SUMMARY
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(summary, indent=1, default=_json_default, allow_nan=True) + "\n")
    os.replace(tmp, path)
    return path


def read_summary(run_dir: str | os.PathLike) -> dict:
    path = Path(run_dir)
    path = path if path.is_file() else path / SUMMARY
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {run_dir} a finished `geospot eval` run folder?")
    return json.loads(path.read_text())


def training_evals(run_dir: str | os.PathLike, up_to_step: int | None = None) -> list[dict]:
    """The held-out evals a training run logged (`eval/<metric>` lines of its metrics.jsonl),
    oldest first, as {"step": k, "metrics": {...}}, those after `up_to_step` left out; a torn
    last line is skipped."""
    out: list[dict] = []
    for row in read_jsonl(Path(run_dir) / "metrics.jsonl"):  # torn or damaged lines skipped
        if up_to_step is not None and (row.get("step") or 0) > up_to_step:
            continue
        metrics = {k[5:]: (math.nan if v is None else v) for k, v in row.items() if k.startswith("eval/")}
        if isinstance(metrics.get("n"), float) and metrics["n"].is_integer():
            metrics["n"] = int(metrics["n"])  # a count (a step's metrics are logged as floats), as summary.json has it
        if metrics:
            out.append({"step": row.get("step"), "metrics": metrics})
    return out


def read_summary_or_training_eval(run_dir: str | os.PathLike) -> dict:
    """An eval folder's summary.json, or a training run's last held-out eval in the same shape
    (name `<run> (held-out, step k)`; a run whose loop never evaluated: its newest `geospot eval`
    folder), for `geospot eval --compare`."""
    path = Path(run_dir)
    if not path.exists():
        raise FileNotFoundError(f"{run_dir}: no such file or folder")
    if path.is_file() or (path / SUMMARY).exists():
        return read_summary(path)
    # the evals of weights the run holds: a run killed after its last checkpoint lost the steps since
    # (predict / eval / export read that checkpoint), and a resume trains them again
    ckpt = latest_checkpoint(path)
    evals = training_evals(path, int(ckpt.name) if ckpt is not None else 0)  # none saved: the start's eval alone
    if not evals:  # no loop eval: the run's newest `geospot eval`
        found = sorted(path.glob(f"eval/*/{SUMMARY}"), key=lambda p: p.stat().st_mtime)
        if found:
            summary = read_summary(found[-1])
            return {**summary, "name": f"{path.resolve().name} ({summary.get('name', found[-1].parent.name)})"}
        if (path / EXPORT_RECORD).exists():  # an export holds weights, not evals
            raise FileNotFoundError(f"{run_dir} is an export (weights, no eval); evaluate it with `geospot eval "
                                    f"model={run_dir} data=<spec>` and compare the folder that writes")
        raise FileNotFoundError(f"{run_dir}: neither an eval folder (no {SUMMARY}) nor a training run with a held-out "
                                "eval in metrics.jsonl; run `geospot eval model=<run> data=<spec>` first")
    last = evals[-1]
    return {"name": f"{path.resolve().name} (held-out, step {last['step']})", "metrics": last["metrics"]}


def _json_default(x):
    if hasattr(x, "item"):
        return x.item()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON serialisable: {type(x).__name__}")
