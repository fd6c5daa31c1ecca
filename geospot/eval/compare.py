"""`geospot eval --compare runA runB ...`: one table, one row per run, best per column marked.

Reads each eval folder's summary.json (written by `geospot eval`) or a training run's last
held-out eval (its metrics.jsonl). Distances are better
low, every accuracy / score better high; `n` is not ranked. The best value of each column
gets a `*` (all tied bests get one; a column where every run ties gets none)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from geospot.eval.predictions import read_summary_or_training_eval
from geospot.geo.metrics import METRIC_KEYS

COLUMNS = METRIC_KEYS  # the table's columns are exactly compute_metrics' keys, in its order
LOWER_IS_BETTER = {"median_km", "mean_km"}
UNRANKED = {"n"}


def best_per_column(rows: dict[str, dict], columns: Sequence[str] = COLUMNS) -> dict[str, set[str]]:
    """column -> names of the rows holding its best value (NaN never wins)."""
    best: dict[str, set[str]] = {}
    for col in columns:
        if col in UNRANKED:
            continue
        vals = {name: float(m[col]) for name, m in rows.items()
                if col in m and m[col] is not None and not math.isnan(float(m[col]))}
        if len(vals) < 2 or len(set(vals.values())) == 1:  # no contest: nothing to mark
            continue
        target = min(vals.values()) if col in LOWER_IS_BETTER else max(vals.values())
        best[col] = {name for name, v in vals.items() if v == target}
    return best


def _fmt(col: str, v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    if col == "n":
        return f"{int(v)}"
    if col.endswith("_km"):
        return f"{v:,.1f}"
    if col == "geoscore":
        return f"{v:,.0f}"
    return f"{100 * v:.1f}%"  # accuracies


ASKED = ("data", "split", "env_type", "sampling")  # what an eval's summary says it scored, and how


def compare_table(rows: dict[str, dict], columns: Sequence[str] = COLUMNS,
                  asked: dict[str, dict] | None = None) -> str:
    """A markdown table: `rows` maps a run name to its metrics dict; `asked` (optional) to what
    its eval scored and how (ASKED keys), so rows of unlike evals are said to be unlike."""
    columns = [c for c in columns if any(c in m for m in rows.values())]
    best = best_per_column(rows, columns)
    header = ["run", *columns]
    body = []
    for name, m in rows.items():
        cells = [name]
        for col in columns:
            cell = _fmt(col, m.get(col))
            cells.append(cell + ("*" if name in best.get(col, ()) else ""))
        body.append(cells)
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    line = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    out = [line(header), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    out += [line(r) for r in body]
    out.append("(* = best in column; km lower is better, the rest higher)")
    counts = sorted({int(m["n"]) for m in rows.values() if isinstance(m.get("n"), (int, float)) and
                     math.isfinite(m["n"])})
    if len(counts) > 1:  # a best mark across different image sets says little
        out.append(f"(the rows are evals of different numbers of images, n = {', '.join(map(str, counts))}: "
                   "compare evals of the same data)")
    differ = {k: sorted({str(a[k]) for a in (asked or {}).values() if a.get(k) is not None}) for k in ASKED}
    differ = {k: v for k, v in differ.items() if len(v) > 1}
    if differ:  # a best mark across other data, or other ways of asking, says little
        out.append("(the rows differ in " + "; ".join(f"{k}: {', '.join(v)}" for k, v in differ.items())
                   + ": compare evals of the same data asked the same way)")
    return "\n".join(out)


def load_runs(run_dirs: Sequence[str], asked: dict[str, dict] | None = None) -> dict[str, dict]:
    """run name (folder name, made unique) -> metrics, from each eval folder's summary.json or
    each training run's last held-out eval; `asked`, when given, is filled with each row's ASKED keys."""
    rows: dict[str, dict] = {}
    for d in run_dirs:
        summary = read_summary_or_training_eval(d)
        name = summary.get("name") or Path(d).resolve().name
        base, i = name, 2
        while name in rows:
            name, i = f"{base}#{i}", i + 1
        rows[name] = summary["metrics"]
        if asked is not None:
            asked[name] = {k: summary.get(k) for k in ASKED}
    return rows


def compare_main(run_dirs: Sequence[str], as_json: bool) -> int:
    """`geospot eval --compare`: the table, or {"runs", "best"} as JSON."""
    import json

    from geospot.jsonutil import finite_json

    asked: dict[str, dict] = {}
    rows = load_runs(run_dirs, asked)
    if as_json:
        best = {k: sorted(v) for k, v in best_per_column(rows).items()}
        print(json.dumps(finite_json({"runs": rows, "best": best})))
    else:
        print(compare_table(rows, asked=asked))
    return 0
