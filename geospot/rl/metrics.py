"""What a GRPO step reports: metrics of the training rollouts, and the per-image rollout
records the dashboard shows (written through `RunWriter.log_images`).

The *final* answer of a rollout is its last turn's guess; a rollout that broke format has
an unparsed final answer, which counts as a miss (NaN) like everywhere else in geospot."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from geospot.envs.types import Trajectory
from geospot.geo import compute_metrics
from geospot.runs.writer import ImageRecord, RolloutRecord


def _final(traj: Trajectory, key: str) -> float:
    return float(traj.transitions[-1].metrics.get(key, math.nan))


def rollout_metrics(samples, trajectories_BG: Sequence[Sequence[Trajectory]],
                    coords_B: Sequence[Sequence[bool]] | None = None) -> dict[str, float]:
    """Mean reward, format rate, final-answer distance metrics, and the median distance per
    coordinate turn (`turn_<k>_median_km`, as eval names it, when any group's env has several turns). `coords_B`:
    per group, whether each turn of its env answers coordinates (envs/kinds.py: coordinate_turns), so a
    mixed batch's single-turn groups stay out of turn 2 on and a hierarchical label turn gets no
    median. As eval counts them, a rollout that broke format at or before turn k is a miss at
    infinite distance there."""
    trajs = [t for g in trajectories_BG for t in g]
    true_lat = np.array([s.lat for s, g in zip(samples, trajectories_BG) for _ in g], dtype=float)
    true_lon = np.array([s.lon for s, g in zip(samples, trajectories_BG) for _ in g], dtype=float)
    pred_lat = np.array([_final(t, "lat") for t in trajs])
    pred_lon = np.array([_final(t, "lon") for t in trajs])
    m = compute_metrics(pred_lat, pred_lon, true_lat, true_lon, geocoder=None)
    out = {
        "reward_mean": float(np.mean([t.total_reward for t in trajs])),
        "format_rate": float(np.mean([all(tr.metrics.get("parsed", 0.0) for tr in t.transitions) for t in trajs])),
        "median_km": float(m["median_km"]), "mean_km": float(m["mean_km"]), "geoscore": float(m["geoscore"]),
        "acc_25km": float(m["acc_25km"]), "acc_200km": float(m["acc_200km"]), "acc_750km": float(m["acc_750km"]),
    }
    coords_B = [tuple(c) for c in coords_B] if coords_B is not None else [(True,)] * len(trajectories_BG)
    if max(map(len, coords_B), default=1) > 1:
        for k in range(max(map(len, coords_B))):
            played = [t for g, c in zip(trajectories_BG, coords_B) if len(c) > k and c[k] for t in g]
            if not played:
                continue  # a label turn in every group that has one
            d = np.asarray([t.transitions[k].metrics.get("distance_km", math.nan) if len(t.transitions) > k
                            else math.nan for t in played], dtype=float)
            out[f"turn_{k + 1}_median_km"] = float(np.median(np.where(np.isfinite(d), d, np.inf)))
    return out


def reasoning_metrics(trajectories_BG: Sequence[Sequence[Trajectory]]) -> dict[str, float]:
    """reasoning=true only (turns carry `reasoning_tokens`; {} otherwise), over every turn played:
    `reasoning_tokens` (mean per turn), `truncation_rate` (stopped at max_tokens: the budget ran out,
    usually before the answer), `answer_format_rate` (closed the think block and an answer parsed)."""
    turns = [tr.metrics for g in trajectories_BG for t in g for tr in t.transitions if "reasoning_tokens" in tr.metrics]
    if not turns:
        return {}
    return {"reasoning_tokens": float(np.mean([m["reasoning_tokens"] for m in turns])),
            "truncation_rate": float(np.mean([m.get("truncated", 0.0) for m in turns])),
            "answer_format_rate": float(np.mean([m["answer_format"] for m in turns]))}


def _guess(tr) -> tuple[float, float] | None:
    """The turn's coordinates; None if unparsed or a turn that asked no coordinates (a label turn)."""
    return (tr.metrics["lat"], tr.metrics["lon"]) if tr.metrics.get("parsed") and "lat" in tr.metrics else None


def _dist(tr) -> float | None:
    d = tr.metrics.get("distance_km", math.nan)
    return float(d) if tr.metrics.get("parsed") and math.isfinite(d) else None


def image_records(samples, trajectories_BG: Sequence[Sequence[Trajectory]], renderer,
                  versions_B: Sequence[int] | None = None) -> list[ImageRecord]:
    """One record per image: the truth and each rollout's text, guesses, distances, rewards, and
    the weights version its group was sampled with (`versions_B`, if given)."""
    records = []
    for b, (s, group) in enumerate(zip(samples, trajectories_BG)):
        rollouts = tuple(
            RolloutRecord(
                text="\n---\n".join(renderer.decode(list(tr.action_tokens)) for tr in t.transitions),
                guesses=tuple(_guess(tr) for tr in t.transitions),
                distance_km=_dist(t.transitions[-1]),
                reward=t.total_reward,
                turn_distances_km=tuple(_dist(tr) for tr in t.transitions),
                turn_rewards=tuple(float(tr.reward) for tr in t.transitions),
                weights_version=None if versions_B is None else int(versions_B[b]),
            )
            for t in group
        )
        records.append(
            ImageRecord(
                image_id=s.id, lat=s.lat, lon=s.lon, rollouts=rollouts, image=s.image, labels=dict(s.labels or {})
            )
        )
    return records
