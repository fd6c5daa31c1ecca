"""Held-out evaluation: run a model over samples, parse its answers, score them.

`evaluate(engine, samples)` is what the SFT / RL loops call for their periodic eval and
what `geospot eval` runs over a whole benchmark. Eval is rollouts without training: each batch
of images goes through the training envs (any env_type, eval/env_turns.py) and `do_group_rollouts`,
greedy with G = 1 or k samples per image, so eval asks exactly what training asks and there is
one episode implementation. It only speaks the Engine protocol, so a local model, a Tinker
sampler and the scripted fake engine in the tests all work alike. An answer that does not
parse is a miss (NaN); for telescoping the final turn is the prediction.

With k > 1 samples per image the prediction is the *medoid* of the parsed guesses (the
guess with the smallest summed distance to the others): a self-consistency vote that
works on coordinates, where a plain majority vote never matches exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace

import numpy as np

from geospot.data.types import Sample
from geospot.distributed import Dist
from geospot.engines.types import SampleParams
from geospot.envs.kinds import coordinate_prompts, env_kind
from geospot.geo import haversine_km
from geospot.geo.metrics import compute_metrics
from geospot.runs.writer import ImageRecord, RolloutRecord

NAN = float("nan")


@dataclass(frozen=True)
class Prediction:
    """One image's answer. `latitude`/`longitude` are NaN when nothing parsed.

    `turn_guesses` / `turn_texts` hold every turn of the (first) sample: one entry for
    single-turn, three for telescoping. `sample_guesses` holds the final guess of each of
    the k samples (k = 1 for greedy)."""

    id: str
    latitude: float
    longitude: float
    raw_text: str
    true_latitude: float = NAN
    true_longitude: float = NAN
    turn_guesses: tuple[tuple[float, float] | None, ...] = ()
    turn_texts: tuple[str, ...] = ()
    sample_guesses: tuple[tuple[float, float] | None, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)
    # hierarchical eval: what each turn asked ("" = coordinates) and which label answers were right
    turn_fields: tuple[str, ...] = ()
    label_correct: dict[str, float] = field(default_factory=dict)
    # reasoning=true: (reasoning tokens, truncated, answer format) of every turn of every sample
    turn_reasoning: tuple[tuple[float, float, float], ...] = ()

    @property
    def parsed(self) -> bool:
        return not (math.isnan(self.latitude) or math.isnan(self.longitude))


@dataclass
class EvalResult:
    metrics: dict[str, float]
    predictions: list[Prediction]


# ---------------------------------------------------------------------------------------
# sampling parameters: greedy is temperature 0 (the local engine takes the argmax; Tinker
# treats temperature 0 as greedy too).


def resolve_sampling(sampling: None | int | SampleParams, max_tokens: int) -> tuple[SampleParams, int]:
    """(params, samples per image) from evaluate()'s `sampling` argument:
    None -> greedy, one sample; k (int) -> k samples at temperature 1; SampleParams -> as
    given, one sample (pass `(params, k)` for k samples with custom params)."""
    if sampling is None:
        return SampleParams(max_tokens=max_tokens, temperature=0.0), 1
    if isinstance(sampling, bool):
        raise TypeError("sampling must be None (greedy), an int k, SampleParams or (SampleParams, k); got a bool")
    if isinstance(sampling, int):
        if sampling < 1:
            raise ValueError(f"sampling={sampling}: the number of samples per image must be >= 1")
        return SampleParams(max_tokens=max_tokens, temperature=1.0), sampling
    if isinstance(sampling, SampleParams):
        return sampling, 1
    if isinstance(sampling, tuple) and len(sampling) == 2 and isinstance(sampling[0], SampleParams):
        params, k = sampling
        if int(k) < 1:
            raise ValueError(f"sampling=(params, {k}): k must be >= 1")
        return params, int(k)
    raise TypeError(f"sampling={sampling!r}: use None (greedy), an int k, SampleParams or (SampleParams, k)")


# ---------------------------------------------------------------------------------------
# parsing and voting


def medoid(guesses: Sequence[tuple[float, float] | None]) -> tuple[float, float] | None:
    """The parsed guess with the smallest summed great-circle distance to the other parsed
    guesses (ties -> the earliest); None when nothing parsed."""
    pts = [g for g in guesses if g is not None]
    if not pts:
        return None
    if len(pts) <= 2:
        return pts[0]
    lat_N = np.array([p[0] for p in pts])
    lon_N = np.array([p[1] for p in pts])
    d_NN = haversine_km(lat_N[:, None], lon_N[:, None], lat_N[None, :], lon_N[None, :])
    return pts[int(np.argmin(np.asarray(d_NN).sum(axis=1)))]


# ---------------------------------------------------------------------------------------
# prompt styles: what to ask at each turn. Both share one loop below. The telescoping texts
# come from the env (`turn_prompt`), so eval asks exactly what training asked.


def turn_texts_for(prompt_style: str, reasoning: bool = False) -> tuple[str, ...]:
    """The default prompts an env that asks prompt texts asks (asking to reason first with
    `reasoning`: envs/kinds.py)."""
    options = SimpleNamespace(reasoning=reasoning)
    texts = env_kind(prompt_style, "prompt_style").prompt_texts(options)
    if not texts:
        raise ValueError(f"prompt_style={prompt_style!r} builds its prompts from its keys: it has no prompt texts")
    return coordinate_prompts(options, texts)


def _final_guess(history, num_turns: int) -> tuple[float, float] | None:
    """The last turn's guess; a conversation that stopped early (unparsed) is a miss."""
    return history[-1][1] if len(history) == num_turns else None


def _prediction(sample: Sample, histories, num_turns: int, turn_fields: tuple[str, ...] = (),
                label_correct: dict[str, float] | None = None, turn_reasoning: tuple = ()) -> Prediction:
    finals = tuple(_final_guess(h, num_turns) for h in histories)
    guess = finals[0] if len(finals) == 1 else medoid(finals)
    # the answer's text and turns are the chosen sample's own (the medoid's), so a row's raw_text,
    # its turn guesses and its coordinates tell one story, and the last turn's metrics are the headline's
    first = histories[finals.index(guess)] if guess is not None else histories[0]
    return Prediction(
        id=str(sample.id),
        latitude=NAN if guess is None else guess[0],
        longitude=NAN if guess is None else guess[1],
        raw_text=first[-1][0],
        true_latitude=float(sample.lat),
        true_longitude=float(sample.lon),
        turn_guesses=tuple(g for _, g in first),
        turn_texts=tuple(t for t, _ in first),
        sample_guesses=finals,
        labels=dict(sample.labels or {}),
        turn_fields=tuple(turn_fields),
        label_correct=dict(label_correct or {}),
        turn_reasoning=tuple(turn_reasoning),
    )


# ---------------------------------------------------------------------------------------
# metrics over predictions (also what `geospot eval` recomputes from the CSV on resume)


def metrics_for(predictions: Sequence[Prediction], geocoder=None) -> dict[str, float]:
    pred_lat = np.array([p.latitude for p in predictions], dtype=float)
    pred_lon = np.array([p.longitude for p in predictions], dtype=float)
    true_lat = np.array([p.true_latitude for p in predictions], dtype=float)
    true_lon = np.array([p.true_longitude for p in predictions], dtype=float)
    # The geocoder labels both the guesses and the truth (the OSV-5M way), exactly as
    # `geospot score` does, so the two always agree.
    metrics = compute_metrics(pred_lat, pred_lon, true_lat, true_lon, geocoder=geocoder)
    metrics.update(turn_metrics(predictions, true_lat, true_lon))
    metrics.update(label_metrics(predictions))
    metrics.update(reasoning_eval_metrics(predictions))
    return metrics


def reasoning_eval_metrics(predictions: Sequence[Prediction]) -> dict[str, float]:
    """reasoning=true only: the RL step's `reasoning_tokens` / `truncation_rate` /
    `answer_format_rate` (rl/metrics.py), over every turn of every sample. {} otherwise."""
    turns_N3 = np.asarray([t for p in predictions for t in p.turn_reasoning], dtype=float)
    if not turns_N3.size:
        return {}
    tokens, truncated, fmt = turns_N3.mean(axis=0)
    return {"reasoning_tokens": float(tokens), "truncation_rate": float(truncated), "answer_format_rate": float(fmt)}


def label_metrics(predictions: Sequence[Prediction]) -> dict[str, float]:
    """Hierarchical only: `label_<field>_acc`, the share of images whose <field> answer named the
    true label (an episode that ended before the turn counts as wrong). {} otherwise."""
    fields = sorted({f for p in predictions for f in p.turn_fields if f})
    return {f"label_{f}_acc": float(np.mean([p.label_correct.get(f, 0.0) for p in predictions])) for f in fields}


def turn_metrics(predictions: Sequence[Prediction], true_lat, true_lon) -> dict[str, float]:
    """Envs of several coordinate turns (telescoping, geohash): `turn_<k>_median_km` of each
    coordinate turn's guess (first sample; a turn never reached or unparsed = inf), to see whether
    refining helps; the env's turns (`turn_fields`) count even when no episode reached them. {} for
    one coordinate turn."""
    # (an eval folder written before turn_fields named coordinate turns has only the turns reached)
    turns = max((max(len(p.turn_fields), len(p.turn_guesses)) for p in predictions), default=0)
    label_turns = {t for p in predictions for t, f in enumerate(p.turn_fields) if f}  # no coordinates asked
    if turns - len(label_turns) < 2:
        return {}
    out = {}
    for t in sorted(set(range(turns)) - label_turns):
        g = [p.turn_guesses[t] if t < len(p.turn_guesses) else None for p in predictions]
        lat_N = np.array([np.nan if x is None else x[0] for x in g])
        lon_N = np.array([np.nan if x is None else x[1] for x in g])
        d_N = np.asarray(haversine_km(lat_N, lon_N, true_lat, true_lon), dtype=float)
        out[f"turn_{t + 1}_median_km"] = float(np.median(np.where(np.isfinite(d_N), d_N, np.inf)))
    return out


# ---------------------------------------------------------------------------------------
# the entry point


def predict(
    engine,
    samples: Sequence[Sample],
    *,
    prompt_style: str = "single",
    batch_size: int = 16,
    max_tokens: int = 24,
    sampling: None | int | SampleParams | tuple = None,
    on_batch: Callable[[list[Prediction]], None] | None = None,
    env_options=None,
    label_geocoder: Callable | None = None,
    turns: tuple[str, ...] | None = None,
) -> list[Prediction]:
    """Predictions for `samples` (order kept), batch by batch; no scoring, so the truth may
    be NaN (`geospot predict`). Progress display is the caller's (via `on_batch`).
    Every prompt_style runs its training env (eval/env_turns.py): single / telescoping ask
    `turns` (None = the default prompts), hierarchical / geohash take the keys of `env_options`
    (any config with EnvOptions' keys; None = defaults); hierarchical's true labels are the
    samples' own, else `label_geocoder`'s of the truth (None = reverse geocoding)."""
    from geospot.eval.env_turns import asks_prompt_texts, env_batch, turn_fields

    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size} must be >= 1")
    # single / telescoping: the run's own prompts (turns) or the defaults; the env asks them to
    # reason first when env_options has reasoning=true (envs/kinds.py: coordinate_prompts)
    turns = (turns or turn_texts_for(prompt_style)) if asks_prompt_texts(prompt_style) else ()
    fields = turn_fields(prompt_style, env_options, turns)  # one per turn of a full episode
    n_turns = len(fields)
    if label_geocoder is None and env_kind(prompt_style, "prompt_style").needs_labels(env_options):
        from geospot.geo import reverse_geocode as label_geocoder
    params, k = resolve_sampling(sampling, max_tokens)
    samples = list(samples)
    predictions: list[Prediction] = []
    for start in range(0, len(samples), batch_size):
        batch = samples[start : start + batch_size]
        histories, correct, reasoned = env_batch(engine, batch, prompt_style, env_options, params, k,
                                                 label_geocoder, turns)
        batch_preds = [_prediction(s, h, n_turns, fields, c, r)
                       for s, h, c, r in zip(batch, histories, correct, reasoned)]
        predictions.extend(batch_preds)
        if on_batch is not None:
            on_batch(batch_preds)
    return predictions


def evaluate(
    engine,
    samples: Sequence[Sample],
    *,
    prompt_style: str = "single",
    batch_size: int = 16,
    max_tokens: int = 24,
    geocoder: Callable | None = None,
    sampling: None | int | SampleParams | tuple = None,
    writer=None,
    step: int = 0,
    on_batch: Callable[[list[Prediction]], None] | None = None,
    env_options=None,
    dist: Dist | None = None,
) -> EvalResult:
    """Evaluate `engine` on `samples` (a list; order kept).

    prompt_style: "single" (one question), "telescoping" (3 turns, the last is scored), or
        "hierarchical" / "geohash" (the training env's turns, keys from `env_options`; label
        accuracy per label turn as `label_<field>_acc`).
    sampling: None = greedy (temperature 0, 1 sample); k = k samples at temperature 1 and
        the medoid guess is scored; SampleParams or (SampleParams, k) for anything else.
    geocoder: callable(lats, lons) -> list[GeoLabels] for country/region/city accuracy
        (e.g. geospot.geo.reverse_geocode, or SyntheticWorld.geocoder); None -> NaN.
    writer: a RunWriter; gets `log_images(step, records, split="eval")` (every image with
        its samples) and `log_step(step, {"eval/<metric>": ...})`.
    on_batch: called with each batch's predictions as soon as they exist (the CLI appends
        them to predictions.csv, which is what makes `geospot eval` resumable).
    dist: under torchrun, each rank predicts its share of `samples` and every rank gets all the
        predictions (in order); pass a NullWriter on all but rank 0.
    """
    samples = list(samples)
    mine = list(dist.share(len(samples)) if dist is not None else range(len(samples)))
    n_mine = len(mine)
    if dist is not None and engine.lockstep is not None and samples:
        # FSDP2 resharding: each sample call is a collective; equal shares make the same calls on every
        # rank (the shortest shares repeat a sample, whose predictions are dropped)
        mine += [mine[-1] if mine else 0] * (int(dist.max(n_mine)) - n_mine)
    predictions = predict(engine, [samples[i] for i in mine], prompt_style=prompt_style, batch_size=batch_size,
                          max_tokens=max_tokens, sampling=sampling, on_batch=on_batch, env_options=env_options,
                          label_geocoder=geocoder)[:n_mine]
    if dist is not None and dist.active:
        predictions = [p for part in dist.gather(predictions) for p in part]
    metrics = metrics_for(predictions, geocoder) if predictions else {"n": 0}
    if writer is not None:
        writer.log_images(step, [_image_record(s, p) for s, p in zip(samples, predictions)], split="eval")
        writer.log_step(step, {f"eval/{key}": float(v) for key, v in metrics.items()})
    return EvalResult(metrics=metrics, predictions=predictions)


def _image_record(sample: Sample, pred: Prediction):
    def dist(g):
        return None if g is None else float(haversine_km(g[0], g[1], sample.lat, sample.lon))

    turn_d = tuple(dist(g) for g in pred.turn_guesses)
    rollouts = [
        RolloutRecord(
            text="\n---\n".join(pred.turn_texts),
            guesses=pred.turn_guesses,
            distance_km=dist(pred.turn_guesses[-1]) if pred.turn_guesses else None,
            reward=NAN,  # eval scores distances and pays no reward: stored null, the page shows none
            turn_distances_km=turn_d,
        )
    ]
    # extra samples (k > 1): their final guesses only
    rollouts += [
        RolloutRecord(text="", guesses=(g,), distance_km=dist(g), reward=NAN) for g in pred.sample_guesses[1:]
    ]
    return ImageRecord(
        image_id=pred.id,
        lat=sample.lat,
        lon=sample.lon,
        rollouts=tuple(rollouts),
        image=sample.image,
        labels=dict(sample.labels or {}),
    )
