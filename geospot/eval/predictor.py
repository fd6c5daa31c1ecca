"""`geospot predict` from Python: a model loaded once and asked about images the way the command
asks it (a run's prompt style, image budget and shape, answer length: eval/run_defaults.py).

    from geospot.eval.predictor import Predictor
    ask = Predictor("runs/demo/rl")                 # predict's keys too: Predictor(m, samples=8)
    rows = ask(["photo.jpg", pil_image, jpeg_bytes])  # one dict per image, as `predict --json` prints

The command (predict_cli.py) reads its photos in batches and prints each batch's rows as they come;
both build the rows here."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geospot.config import ConfigError, check_types
from geospot.eval.cli_config import PredictConfig, engine_overrides, sampling_for
from geospot.eval.run_defaults import with_run_defaults
from geospot.eval.runner import Prediction, predict

# A guess farther than this from every GeoNames place (> 1000 inhabitants) is in open sea, ice
# or wilderness: the nearest place is then named as such, with its distance, not as the answer's
# place (on inhabited land the nearest such place is rarely more than a few tens of km away).
PLACE_WITHIN_KM = 100.0


class Predictor:
    """`model`: a run folder, one of its checkpoints, an export, a hub id, `tiny:…` or tinker://…;
    `keys`: `geospot predict`'s key=value keys (env_type, samples, temperature, max_tokens, device, ...);
    the keys not given take the run's own values, as on the command line (`run_defaults` says which).
    `engine`: an engine already loaded (tests), in place of loading `model`."""

    def __init__(self, model: str = "", engine: Any = None, **keys: Any):
        try:
            cfg = PredictConfig(model=model, **keys)
        except TypeError as e:  # a key predict does not have
            raise ConfigError(f"{e}; predict's keys: geospot predict --help") from None
        check_types(cfg)
        cfg, run_defaults = with_run_defaults(cfg, set(keys))
        cfg.validate()
        self._start(cfg, run_defaults, engine)

    @classmethod
    def from_config(cls, cfg: PredictConfig, run_defaults: dict, engine: Any = None) -> Predictor:
        """A config the command line settled (its keys typed, the run's values of the rest)."""
        self = cls.__new__(cls)
        self._start(cfg, run_defaults, engine)
        return self

    def _start(self, cfg: PredictConfig, run_defaults: dict, engine: Any) -> None:
        self.cfg, self.run_defaults = cfg, run_defaults
        if engine is None:
            from geospot.eval.loading import check_model, load_model

            if not cfg.model:
                raise ConfigError("model= is required (a run folder, an export, a hub id, tiny:… or tinker://…)")
            check_model(cfg.model, **engine_overrides(cfg))  # a tiny typo, a hub id offline: one sentence
            engine = load_model(cfg.model, **engine_overrides(cfg)).engine
        self.engine = engine

    def __call__(self, images: Sequence[Any]) -> list[dict]:
        """One row per image (a path, the file's bytes or a PIL image; named by its path, else
        `image-<i>`): its answer, nearest place, each turn's guess. An image that cannot be read
        gets a row with NaN coordinates and `skipped` saying why."""
        named = [(str(x) if isinstance(x, (str, Path)) else f"image-{i}", x) for i, x in enumerate(images)]
        samples, skipped = prepared_samples(named, square=self.cfg.square)
        rows = {r["name"]: r for r in self.rows(samples)}
        rows.update({name: {"name": name, "latitude": math.nan, "longitude": math.nan, "skipped": why}
                     for name, why in skipped})
        return [rows[name] for name, _ in named]

    def rows(self, samples: list) -> list[dict]:
        """The rows of samples already prepared (prepared_samples), each photo's EXIF GPS beside its answer."""
        from geospot.data.exif import gps_of

        cfg = self.cfg
        budget = cfg.turn_max_tokens(cfg.max_tokens)  # reasoning=true: reasoning_max_tokens
        turns = tuple(self.run_defaults["turn_prompts"]) if self.run_defaults else None  # a run's own prompts
        preds = predict(self.engine, samples, prompt_style=cfg.env_type, batch_size=cfg.batch_size, max_tokens=budget,
                        sampling=sampling_for(cfg.samples, cfg.temperature, budget), env_options=cfg,
                        label_geocoder=_no_labels, turns=turns)
        gps = {s.id: gps_of(s.id) for s in samples if Path(s.id).is_file()}
        return prediction_rows(preds, gps)


def prepared_samples(named: Sequence[tuple[str, Any]], square: bool = False):
    """(samples with unknown truth (NaN), [(name, why) skipped]) of (name, path | bytes | PIL image):
    prepared as the data stream prepares training images (upright by EXIF, RGB; centre-cropped to a
    square when `square`), at full size (the engine's renderer fits them to its pixel budget)."""
    from geospot.data.prep import BadSample, PrepConfig, prepare_image
    from geospot.data.types import Sample

    prep = PrepConfig(max_side=0, square=square)
    samples, skipped = [], []
    for name, image in named:
        try:
            img = prepare_image(Path(image).read_bytes() if isinstance(image, (str, Path)) else image, prep)
        except (BadSample, OSError) as e:
            skipped.append((name, str(e) if isinstance(e, BadSample) else type(e).__name__))
            continue
        samples.append(Sample(id=name, image=img, lat=math.nan, lon=math.nan, source="predict"))
    return samples, skipped


def _shown(label: str) -> str:
    """A GeoNames label as a reader wants it: the empty parts the exact-match labels keep left out
    ("Georgetown, , Ascension, SH" -> "Georgetown, Ascension, SH")."""
    return ", ".join(x for x in label.split(", ") if x)


def place_name(label, km: float = 0.0) -> str:
    """The place, most specific first: the city label already holds its admin areas and country,
    e.g. "Steinshamn, Sandoy, More og Romsdal, NO"."""
    if label is None:
        return ""
    name = _shown(label.city or label.region or label.country)
    if km > PLACE_WITHIN_KM:
        return f"no place within {PLACE_WITHIN_KM:.0f} km (nearest: {name}; {km:,.0f} km away)"
    return name


def prediction_rows(preds: Sequence[Prediction], gps: dict[str, tuple[float, float] | None]) -> list[dict]:
    """One output row per prediction: the answer, its nearest place, each turn's guess, and where
    the photo's EXIF GPS puts it ({name: (lat, lon) or None})."""
    from geospot.geo.distance import haversine_scalar_km

    labels, place_km = _reverse_geocode_parsed(preds)
    rows = []
    for p, lab, km in zip(preds, labels, place_km):
        truth = gps.get(p.id)
        rows.append({
            "name": p.id,
            "latitude": p.latitude,
            "longitude": p.longitude,
            "country": lab.country if lab else None,
            "region": _shown(lab.region) if lab else None,
            "city": _shown(lab.city) if lab else None,
            "place": place_name(lab, km),
            "place_km": km,  # to the place country/region/city name: the nearest, however far
            "raw_text": p.raw_text,
            "turns": [None if g is None else list(g) for g in p.turn_guesses],
            "turn_texts": list(p.turn_texts),
            **({"answers": answered_labels(p)} if any(p.turn_fields) else {}),
            # reasoning=true: raw_text holds the <think> block; its length per turn (first sample)
            **({"reasoning_tokens": [t[0] for t in p.turn_reasoning[:len(p.turn_guesses)]]}
               if p.turn_reasoning else {}),
            "photo_gps": list(truth) if truth else None,
            "km_from_gps": haversine_scalar_km(p.latitude, p.longitude, *truth) if truth and p.parsed else None,
        })
    return rows


def _no_labels(lats, lons):
    """predict has no truth: nothing to label, and no geocoder load for it."""
    from geospot.geo import UNKNOWN

    return [UNKNOWN for _ in lats]


def answered_labels(p: Prediction) -> dict[str, str | None]:
    """The label each label turn of a hierarchical prediction named, e.g. {"country": "France"}."""
    from geospot.geo.parse_labels import parse_label

    return {f: parse_label(t, f) for f, t in zip(p.turn_fields, p.turn_texts) if f}


def _reverse_geocode_parsed(preds: Sequence[Prediction]):
    """(labels, km to the labelled place) per prediction; (None, NaN) where nothing parsed."""
    from geospot.geo.geocode import reverse_geocode_km

    idx = [i for i, p in enumerate(preds) if p.parsed]
    out, km = [None] * len(preds), [math.nan] * len(preds)
    if idx:
        labs, dist = reverse_geocode_km([preds[i].latitude for i in idx], [preds[i].longitude for i in idx])
        for i, lab, d in zip(idx, labs, dist.tolist()):
            out[i], km[i] = lab, d
    return out, km
