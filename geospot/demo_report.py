"""What `geospot demo` prints: per-image evals of each stage, verdicts from a noise band, the
table, the sentences and the JSON object. Pure functions over arrays; no model, no training.

A stage's eval keeps the per-image distances (misses at MISS_KM) so that every metric can be
compared with the stage before it by a paired bootstrap over the same held-out images
(geospot.eval.verdict): a change is called "improved" or "worse" only when its 95 % interval
excludes zero, else "no change beyond noise"."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import numpy as np

from geospot.eval.verdict import IMPROVED, NO_CHANGE, Change, paired_bootstrap
from geospot.geo import geoguessr_score

# An unparsed answer is scored as the farthest possible guess (half the Earth's circumference):
# a finite stand-in, so the median and the bootstrap treat a miss as the worst answer, not as NaN.
MISS_KM = 20037.5
THRESHOLDS = (200, 750, 2500)


@dataclass
class StageEval:
    """One stage's held-out eval, per image: greedy final-answer km `d_N`, the seeded
    temperature-1 samples' km `sampled_d_SN` (one row per seed) and the greedy telescoping
    turns' km `turn_d_TN` (first turn to last)."""

    d_N: np.ndarray
    sampled_d_SN: np.ndarray
    turn_d_TN: np.ndarray

    @staticmethod
    def from_km(d_N, sampled_d_SN, turn_d_TN) -> StageEval:
        def clean(x):
            x = np.asarray(x, dtype=float)
            return np.where(np.isfinite(x), x, MISS_KM)

        return StageEval(clean(d_N), clean(np.atleast_2d(sampled_d_SN)), clean(np.atleast_2d(turn_d_TN)))


def score(d):
    """Per-image GeoScore; a miss scores 0 (as geoguessr_score of NaN does), not the score of MISS_KM."""
    d = np.asarray(d, dtype=float)
    return np.where(d >= MISS_KM, 0.0, geoguessr_score(d))


# metric -> (per-image values, statistic over images, higher is better)
PER_IMAGE = {
    "geoscore": (lambda e: score(e.d_N), np.mean, True),
    "sampled_geoscore": (lambda e: score(e.sampled_d_SN).mean(axis=0), np.mean, True),
    "median_km": (lambda e: e.d_N, np.median, False),
    "parsed": (lambda e: (e.d_N < MISS_KM).astype(float), np.mean, True),
    **{f"acc_{t}km": (lambda e, t=t: (e.d_N <= t).astype(float), np.mean, True) for t in THRESHOLDS},
}
METRICS = tuple(PER_IMAGE)


def metrics(e: StageEval) -> dict:
    """The JSON fields of a stage (median_km of an all-miss stage is inf: no answer parsed)."""
    out = {k: float(stat(values(e))) for k, (values, stat, _) in PER_IMAGE.items()}
    if out["parsed"] < 0.5:
        out["median_km"] = math.inf  # most answers unparsed: the median is a miss
    out["turn_median_km"] = [float(np.median(d)) if np.mean(d < MISS_KM) >= 0.5 else math.inf for d in e.turn_d_TN]
    return out


def compare(before: StageEval, after: StageEval, seed: int = 0) -> dict[str, Change]:
    """Every metric of `after` against `before`, paired over the same images."""
    return {k: paired_bootstrap(values(before), values(after), stat, higher_is_better=hib, seed=seed)
            for k, (values, stat, hib) in PER_IMAGE.items()}


def refinement(e: StageEval, seed: int = 0) -> Change:
    """Is the last telescoping turn closer than the first (greedy median km, paired per image)?"""
    return paired_bootstrap(e.turn_d_TN[0], e.turn_d_TN[-1], np.median, higher_is_better=False, seed=seed)


def stage_json(e: StageEval, before: StageEval | None, seed: int = 0) -> dict:
    """One stage's JSON object: metrics, the change against the stage before it with its 95 %
    interval, and a verdict per metric (`turn_median_km`: the last turn against the first)."""
    out = metrics(e)
    verdict, change = {}, {}
    if before is not None:
        for k, c in compare(before, e, seed).items():
            verdict[k], change[k] = c.verdict, {"delta": c.delta, "ci95": [c.lo, c.hi]}
    if len(e.turn_d_TN) > 1:
        r = refinement(e, seed)
        verdict["turn_median_km"] = r.verdict
        change["turn_median_km"] = {"delta": r.delta, "ci95": [r.lo, r.hi]}
    return {**out, "verdict": verdict, "change": change}


# --- text ---------------------------------------------------------------------------------------

COLUMNS = [("parsed", "parsed", "{:.0%}"), ("median_km", "median km", "{:,.0f}"), ("geoscore", "GeoScore", "{:,.0f}"),
           ("acc_200km", "@200km", "{:.0%}"), ("acc_750km", "@750km", "{:.0%}"), ("acc_2500km", "@2500km", "{:.0%}"),
           ("sampled_geoscore", "sampled GS", "{:,.0f}")]


def cell(v, fmt: str) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else fmt.format(v)


def table(stages: dict[str, dict], n: int, eval_style: str) -> str:
    head = f"{'stage':<10}" + "".join(f"{title:>11}" for _, title, _ in COLUMNS)
    lines = [head, "-" * len(head)]
    for name, m in stages.items():
        lines.append(f"{name:<10}" + "".join(f"{cell(m.get(k), fmt):>11}" for k, _, fmt in COLUMNS))
    lines += [
        f"{n} held-out synthetic images, {eval_style} prompt; unparsed answers count as misses. Columns before",
        "`sampled GS`: greedy decoding. sampled GS: mean GeoScore (0-5000) of answers sampled at temperature 1",
        "(the policy GRPO trains; one per image per seed, averaged over the seeds).",
        "",
        "Median km per telescoping turn (first -> last), greedy:",
    ]
    lines += [
        f"  {name:<10}" + " -> ".join(cell(x, "{:,.0f}") for x in m["turn_median_km"]) for name, m in stages.items()
    ]
    return "\n".join(lines)


NAMES = {"geoscore": "greedy GeoScore", "sampled_geoscore": "sampled GeoScore", "median_km": "greedy median km",
         "parsed": "parsed", "acc_200km": "@200km", "acc_750km": "@750km", "acc_2500km": "@2500km"}


def _fmt(k: str, v: float) -> str:
    return cell(v, "{:.0%}" if k == "parsed" or k.startswith("acc_") else "{:,.0f}")


def verdict_lines(stages: dict[str, dict]) -> list[str]:
    """Each stage against the one before it, in words computed from the numbers and their band."""
    out, names = [], list(stages)
    for prev, name in itertools.pairwise(names):
        s, p = stages[name], stages[prev]
        parts = []
        for k in ("geoscore", "sampled_geoscore", "median_km", "parsed"):
            if k in s["change"]:
                lo, hi = s["change"][k]["ci95"]
                band = (f"; change 95% CI [{lo:+.0%}, {hi:+.0%}]" if k == "parsed"
                        else f"; change 95% CI [{lo:+,.0f}, {hi:+,.0f}]" if math.isfinite(p[k]) and math.isfinite(s[k])
                        else "")
                parts.append(f"{NAMES[k]} {_fmt(k, p[k])} -> {_fmt(k, s[k])} ({s['verdict'][k]}{band})")
        out.append(f"{name} vs {prev}: " + "; ".join(parts) + ".")
    for name, s in stages.items():
        if "turn_median_km" in s["verdict"]:
            t = s["turn_median_km"]
            word = {
                IMPROVED: "the last turn is closer than the first",
                NO_CHANGE: "no change beyond noise from turn to turn",
            }.get(s["verdict"]["turn_median_km"], "the last turn is FARTHER than the first")
            # an unparsed answer is an infinite distance: a turn most answers of which did not parse has no median
            why = "; - = most of that turn's answers did not parse" if any(
                x is None or not math.isfinite(x) for x in t) else ""
            km = " -> ".join(cell(x, "{:,.0f}") for x in t)
            out.append(f"telescoping after {name}: {word} (greedy median {km} km{why}).")
    return out


def verdict_summary(stages: dict[str, dict], stage: str = "rl", keys=("geoscore", "sampled_geoscore")) -> str:
    """One line: did `stage` improve on the one before it on `keys`, beyond noise?"""
    words = {k: stages[stage]["verdict"].get(k, NO_CHANGE) for k in keys}
    good = [NAMES[k] for k, w in words.items() if w == IMPROVED]
    other = [f"{NAMES[k]}: {w}" for k, w in words.items() if w != IMPROVED]
    return (f"GRPO improved {' and '.join(good) if good else 'nothing'} beyond noise"
            + (f" ({'; '.join(other)})" if other else "") + ".")
