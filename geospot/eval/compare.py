"""`geospot eval --compare runA runB ...`: one table, one row per run, best per column marked.

Reads each eval folder's summary.json (written by `geospot eval`) or a training run's last
held-out eval (its metrics.jsonl, with what that eval scored and how read from its config.json).
Distances are better low, every accuracy / score better high; `n` is not ranked. The best value
of each column gets a `*` (all tied bests get one; a column where every run ties gets none).
Beside compute_metrics' columns, the ones an env adds when any row has them: a hierarchical
eval's `label_<level>_acc` (the model's own label answers), a geohash / telescoping eval's
`turn_<k>_median_km`, a reasoning eval's reasoning_tokens / truncation_rate / answer_format_rate."""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path

from geospot.envs.kinds import KINDS, as_options, eval_env
from geospot.eval.predictions import SUMMARY, read_summary_or_training_eval
from geospot.geo.metrics import METRIC_KEYS

COLUMNS = METRIC_KEYS  # compute_metrics' keys, in its order: every table's first columns
LABEL_LEVELS = ("country", "region", "city")  # a hierarchical eval's label turns, in asking order
REASONING_KEYS = ("reasoning_tokens", "truncation_rate", "answer_format_rate")
LOWER_IS_BETTER = {"median_km", "mean_km", "truncation_rate"}  # and every other `*_km` column
UNRANKED = {"n", "reasoning_tokens"}
_TURN_KM = re.compile(r"turn_(\d+)_median_km")
LABELS_NOTE = ("label_<level>_acc: the model's own label answers (its label turns: country / region / city); "
               "country_acc / region_acc / city_acc: its coordinates reverse-geocoded")
TURNS_NOTE = "turn_<k>_median_km: median km of the k-th coordinate answer (geohash / telescoping turns)"
INF_NOTE = ("inf km: unparsed answers count as infinitely far, so mean_km is inf once any is (see parsed) "
            "and median_km once half are")


def lower_is_better(col: str) -> bool:
    return col in LOWER_IS_BETTER or col.endswith("_km")


def columns_of(rows: dict[str, dict]) -> list[str]:
    """compute_metrics' columns, then the env extras any row holds (labels, turns, reasoning)."""
    held = {k for m in rows.values() for k in m}
    labels = [f"label_{lv}_acc" for lv in LABEL_LEVELS]
    labels += sorted(k for k in held if k.startswith("label_") and k.endswith("_acc") and k not in labels)
    turns = sorted((k for k in held if _TURN_KM.fullmatch(k)), key=lambda k: int(_TURN_KM.fullmatch(k)[1]))
    return [c for c in (*COLUMNS, *labels, *turns, *REASONING_KEYS) if c in held]


def best_per_column(rows: dict[str, dict], columns: Sequence[str] | None = None) -> dict[str, set[str]]:
    """column -> names of the rows holding its best value (NaN never wins)."""
    best: dict[str, set[str]] = {}
    for col in columns_of(rows) if columns is None else columns:
        if col in UNRANKED:
            continue
        vals = {name: float(m[col]) for name, m in rows.items()
                if col in m and m[col] is not None and not math.isnan(float(m[col]))}
        if len(vals) < 2 or len(set(vals.values())) == 1:  # no contest: nothing to mark
            continue
        target = min(vals.values()) if lower_is_better(col) else max(vals.values())
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
    if col in ("geoscore", "reasoning_tokens"):
        return f"{v:,.0f}"
    return f"{100 * v:.1f}%"  # accuracies and rates


ASKED = ("data", "split", "env_type", "sampling")  # what an eval's summary says it scored, and how


def distinct_data(specs: Sequence[str]) -> list[str]:
    """`specs` with those naming data an earlier one names dropped (`labelled`, `labelled/` and
    `./labelled` are one folder; data/spec_paths.same_data, read from here)."""
    from geospot.data.spec_paths import same_data

    out: list[str] = []
    for s in specs:
        if not any(s == t or same_data(t, os.getcwd(), s) for t in out):
            out.append(s)
    return out


def compare_table(rows: dict[str, dict], columns: Sequence[str] | None = None,
                  asked: dict[str, dict] | None = None) -> str:
    """A markdown table: `rows` maps a run name to its metrics dict; `asked` (optional) to what
    its eval scored and how (ASKED keys), so rows of unlike evals are said to be unlike. A null
    distance (a training log's inf) is shown and ranked as inf."""
    rows = {name: _infinite_km(m) for name, m in rows.items()}
    columns = [c for c in (columns_of(rows) if columns is None else columns) if any(c in m for m in rows.values())]
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
    lower = "km and truncation_rate" if "truncation_rate" in columns else "km"
    out.append(f"(* = best in column; {lower} lower is better, the rest higher; '-' = not in that row's eval)")
    if any(c.startswith("label_") for c in columns):
        out.append(f"({LABELS_NOTE})")
    if any(_TURN_KM.fullmatch(c) for c in columns):
        out.append(f"({TURNS_NOTE})")
    if any(_fmt(c, m.get(c)) == "inf" for m in rows.values() for c in columns):
        out.append(f"({INF_NOTE})")
    counts = sorted({int(m["n"]) for m in rows.values() if isinstance(m.get("n"), (int, float)) and
                     math.isfinite(m["n"])})
    if len(counts) > 1:  # a best mark across different image sets says little
        out.append(f"(the rows are evals of different numbers of images, n = {', '.join(map(str, counts))}: "
                   "compare evals of the same data)")
    differ = {k: sorted({str(a[k]) for a in (asked or {}).values() if a.get(k) is not None}) for k in ASKED}
    differ["data"] = distinct_data(differ["data"])
    differ = {k: v for k, v in differ.items() if len(v) > 1}
    if differ:  # a best mark across other data, or other ways of asking, says little
        out.append("(the rows differ in " + "; ".join(f"{k}: {', '.join(v)}" for k, v in differ.items())
                   + ": compare evals of the same data asked the same way)")
    return "\n".join(out)


def extra_lines(metrics: dict) -> list[str]:
    """What `geospot eval` prints under its table for the env extras (columns_of's) an eval holds."""
    out = []
    labels = [c for c in columns_of({"": metrics}) if c.startswith("label_")]
    if labels:
        geocoded = [f"{lv}_acc" for lv in LABEL_LEVELS if f"{lv}_acc" in metrics]  # said only where the table has them
        said = f"; {' / '.join(geocoded)} {'are' if len(geocoded) > 1 else 'is'} its coordinates reverse-geocoded" \
            if geocoded else ""
        out.append(f"the model's own label answers (its label turns{said}): "
                   + ", ".join(f"{c[6:-4]} {_fmt(c, metrics[c])}" for c in labels))
    turns = [c for c in columns_of({"": metrics}) if _TURN_KM.fullmatch(c)]
    if turns:
        out.append("median km of each turn's answer (telescoping / geohash turns, a geohash cell read as its centre; "
                   "the last is median km): "
                   + ", ".join(f"turn {_TURN_KM.fullmatch(c)[1]} {_fmt(c, metrics[c])}" for c in turns))
    if "reasoning_tokens" in metrics:
        out.append(f"reasoning: {_fmt('reasoning_tokens', metrics['reasoning_tokens'])} tokens per turn, "
                   f"{_fmt('truncation_rate', metrics.get('truncation_rate'))} of turns cut off, "
                   f"{_fmt('answer_format_rate', metrics.get('answer_format_rate'))} answered in the format")
    return out


def _asked_env(metrics: dict, run_env: str | None, run_keys: dict | None = None) -> str | None:
    """The env a logged eval asked, from what it logged: label accuracies are an eval of an env that
    asks labels (hierarchical), per-turn medians one of several coordinate turns (telescoping,
    geohash), neither a single-turn one's (the demo logs its single-prompt eval into a telescoping
    run). The run's env, read with the run's own keys (`run_keys`: hier_turns=coords asks no label),
    when it has that shape, else the first env that does with its defaults (envs/kinds.py)."""
    if not metrics:
        return run_env
    labels = any(k.startswith("label_") and k.endswith("_acc") for k in metrics)
    turns = any(_TURN_KM.fullmatch(k) for k in metrics)

    def fits(env: str, keys: dict | None = None) -> bool:
        kind, options = KINDS[env], as_options(keys)
        # eval/runner.py logs per-turn medians where two or more turns answer coordinates
        several = sum(kind.coordinate_turns(options)) > 1
        return kind.needs_labels(options) == labels and (labels or several == turns)

    if run_env in KINDS and fits(run_env, run_keys):
        return run_env
    return next((e for e in KINDS if fits(e)), run_env)


def training_asked(run_dir: str | Path, metrics: dict | None = None) -> dict:
    """What a training run's loop eval scored and how (ASKED keys), from its config.json: its
    eval_data whole, else its data's eval_split ids (val unless said); greedy unless eval_temperature > 0 (one seeded
    sample per image); its env as the eval's own metrics show it (`metrics`, its logged eval),
    else the run's (an SFT run's style). {} for a folder without a run's config."""
    try:
        record = json.loads((Path(run_dir) / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    cfg = record.get("config") or {}
    if record.get("kind") not in ("rl", "sft") or not cfg.get("data"):
        return {}
    try:
        from geospot.runs.model_spec import model_spec

        env_type = model_spec(run_dir).env_type
    except Exception:  # an unreadable run: its config's own words
        style = cfg.get("env_type") or cfg.get("prompt_style")
        env_type = eval_env(style) if isinstance(style, str) else None
    env_type = _asked_env(metrics, env_type, cfg) if metrics is not None else env_type
    separate = bool(cfg.get("eval_data")) and cfg["eval_data"] != cfg["data"]
    temperature = cfg.get("eval_temperature") or 0
    return {"data": cfg["eval_data"] if separate else cfg["data"],
            "split": "all" if separate else cfg.get("eval_split") or "val",
            "env_type": env_type, "sampling": f"samples=1,temperature={temperature}" if temperature > 0 else "greedy"}


def _infinite_km(metrics: dict) -> dict:
    """A training log stores an infinite distance as null (JSON has no inf): with n > 0 a distance
    is never NaN (only unparsed answers make it non-finite), so a null one is inf, as in summary.json."""
    n = metrics.get("n")
    if not isinstance(n, (int, float)) or not n > 0:
        return metrics
    return {k: math.inf if k.endswith("_km") and (v is None or (isinstance(v, float) and math.isnan(v))) else v
            for k, v in metrics.items()}


def _path_name(d: str | Path) -> tuple[list[str], int]:
    """(the parts naming an eval folder, how many of the last ones its name uses): `<run>/eval/<x>`
    (a training run's eval) is `<run>/<x>`, any other folder its own name."""
    path = Path(d).resolve()
    path = path.parent if path.is_file() else path
    parts = list(path.parts)
    if path.parent.name == "eval" and (path.parent.parent / "config.json").exists():
        del parts[-2]  # the `eval` between the run and its eval says nothing
        return parts, 2
    return parts, 1


def default_name(folder: str | Path) -> str:
    """An eval folder's row name when name= is not given: its folder's name, `<run>/<folder>` inside a training run."""
    parts, k = _path_name(folder)
    return "/".join(parts[-k:])


def _unique_suffixes(found: list) -> None:
    """Lengthen (in place) the path names that clash to the shortest suffix telling their folders apart."""
    def name(i: int, k: int | None = None) -> str:
        _, parts, used = found[i]
        return "/".join(parts[-(k or used):])

    paths = [i for i, f in enumerate(found) if f[1] is not None]
    for shown in {name(i) for i in paths}:
        group = [i for i in paths if name(i) == shown]
        whole = {tuple(found[i][1]) for i in group}
        if len(whole) < 2:  # one folder (given twice): nothing tells them apart
            continue
        for k in range(max(found[i][2] for i in group), max(len(found[i][1]) for i in group) + 1):
            if len({name(i, k) for i in group}) == len(whole):
                for i in group:
                    found[i] = (found[i][0], found[i][1], max(k, found[i][2]))
                break


def load_runs(run_dirs: Sequence[str], asked: dict[str, dict] | None = None) -> dict[str, dict]:
    """row name -> metrics, from each eval folder's summary.json or each training run's last
    held-out eval; `asked`, when given, is filled with each row's ASKED keys. An eval folder's row
    is its name= if one was given, else its folder's (`<run>/<folder>` inside a training run),
    with as many parent folders more as tell clashing names apart (then `#2`, `#3`)."""
    found: list = []  # (summary, path parts naming the row or None: its summary's name, how many parts)
    for d in run_dirs:
        summary = read_summary_or_training_eval(d)
        is_eval_folder = Path(d).is_file() or (Path(d) / SUMMARY).exists()
        if is_eval_folder and not (summary.get("config") or {}).get("name"):
            found.append((summary, *_path_name(d)))
        else:  # named on its eval's command line, or a training run's eval
            summary.setdefault("name", Path(d).resolve().name)
            found.append((summary, None, 0))
        if not is_eval_folder and not any(summary.get(k) for k in ASKED):
            summary.update(training_asked(d, summary.get("metrics")))
    _unique_suffixes(found)
    rows: dict[str, dict] = {}
    for summary, parts, k in found:
        name = summary["name"] if parts is None else "/".join(parts[-k:])
        base, i = name, 2
        while name in rows:
            name, i = f"{base}#{i}", i + 1
        rows[name] = _infinite_km(summary["metrics"])
        if asked is not None:
            asked[name] = {k: summary.get(k) for k in ASKED}
    return rows


def compare_main(run_dirs: Sequence[str], as_json: bool) -> int:
    """`geospot eval --compare`: the table, or {"runs", "best", "asked"} as JSON."""
    from geospot.jsonutil import finite_json

    asked: dict[str, dict] = {}
    rows = load_runs(run_dirs, asked)
    if as_json:
        best = {k: sorted(v) for k, v in best_per_column(rows).items()}
        print(json.dumps(finite_json({"runs": rows, "best": best, "asked": asked})))
    else:
        print(compare_table(rows, asked=asked))
    return 0
