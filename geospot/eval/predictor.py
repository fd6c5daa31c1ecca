"""`geospot predict` from Python: a model loaded once and asked about images the way the command
asks it (a run's prompt style, image budget and shape, answer length: eval/run_defaults.py).

    from geospot.eval.predictor import Predictor
    ask = Predictor("runs/demo/rl")                 # predict's keys too: Predictor(m, samples=8)
    rows = ask(["photo.jpg", pil_image, jpeg_bytes])  # one dict per image, as `predict --json` prints

The command (predict_cli.py) reads its photos in batches and prints each batch's rows as they come;
both build the rows here."""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from geospot.config import ConfigError, config_from
from geospot.data.sources import IMAGE_EXTS as DATA_IMAGE_EXTS
from geospot.eval.cli_config import PredictConfig, engine_overrides, sampling_for
from geospot.eval.run_defaults import with_run_defaults
from geospot.eval.runner import Prediction, predict

IMAGE_EXTS = {f".{e}" for e in DATA_IMAGE_EXTS}  # the suffixes the data sources read as images
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
        cfg, run_defaults = with_run_defaults(config_from(PredictConfig, {"model": model, **keys}), set(keys))
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

    def __call__(self, images: Any) -> list[dict]:
        """One row per image, as `geospot predict --json` prints it: its answer, nearest place, each turn's
        guess. `images`: one or a list of paths (a folder: the photos in it, as predict walks it), file
        bytes or PIL images (named `image-<i>`). An image that cannot be read gets a row with NaN
        coordinates and `skipped` saying why. Asked `batch_size` images at a time, so a long list of
        paths is never all in memory at once."""
        items = [images] if isinstance(images, (str, os.PathLike, bytes)) or hasattr(images, "getpixel") else images
        named, skipped = [], {}
        for i, item in enumerate(items):
            if not isinstance(item, (str, os.PathLike)):
                named.append((f"image-{i}", item))
                continue
            try:  # a folder, a glob: its photos (a broken link among them: skipped, said)
                photos, broken = photos_and_broken_links([os.fspath(item)])
            except (FileNotFoundError, ConfigError) as e:
                named.append((os.fspath(item), None))
                skipped[len(named) - 1] = str(e)
                continue
            named += [(str(p), p) for p in photos]
            for link, why in broken:
                named.append((link, None))
                skipped[len(named) - 1] = why
        rows: list[dict | None] = [None] * len(named)
        for start in range(0, len(named), self.cfg.batch_size):
            # keyed by position (two images of one name are two rows), named in the rows
            part = [(str(k), x) for k, (_, x) in enumerate(named[start:start + self.cfg.batch_size], start)
                    if k not in skipped]
            samples, unread = prepared_samples(part, square=self.cfg.square)
            skipped.update((int(k), why) for k, why in unread)
            asked = [dataclasses.replace(s, id=named[int(s.id)][0]) for s in samples]
            for sample, row in zip(samples, self.rows(asked)):
                rows[int(sample.id)] = row
        for k, why in skipped.items():
            rows[k] = {"name": named[k][0], "latitude": math.nan, "longitude": math.nan, "skipped": why}
        return rows

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


def image_paths(args: Sequence[str]) -> list[Path]:
    """The image files the arguments name (photos_and_broken_links without the links)."""
    return photos_and_broken_links(args)[0]


def photos_and_broken_links(args: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The image files the arguments name: files as given, folders walked to any depth (a camera
    roll keeps its photos in year / trip subfolders; a data folder in images/), in sorted order; a
    file named twice (a folder and a glob of it, or a symlink) is answered once. With them, a skip
    line for each image-named symlink in those folders whose photo is gone (the same walk finds
    both: a file walk passes over such a link, which would go unanswered without a word): (path, why)."""
    from geospot.data.files import LocalOpener, files_and_broken_links, other_case_hint, unique_files, walk_files

    paths: list[str] = []
    broken: list[tuple[str, str]] = []
    for a in args:
        p = Path(a).expanduser()
        # a pattern the shell did not expand (quoted, or matching nothing): expanded here, as the shell would
        pattern = any(c in a for c in "*?[") and not p.exists()
        matched = [Path(m) for m in LocalOpener().glob(str(p))] if pattern else [p]
        for m in matched:
            if m.is_dir():
                files, links = files_and_broken_links(str(m))
                paths += [f for f in files if Path(f).suffix.lower() in IMAGE_EXTS]
                broken += [line for q in links if Path(q).suffix.lower() in IMAGE_EXTS if (line := _broken_line(q))]
            elif m.is_file():
                paths.append(str(m))
        if not any(m.exists() for m in matched):
            raise FileNotFoundError(f"{a}: no such image or folder{other_case_hint(str(p))}")
    if not paths:
        shards = [a for a in args if Path(a).is_dir() and any(
            f.lower().endswith((".tar", ".tar.gz", ".tgz", ".parquet")) for f in walk_files(str(Path(a).expanduser())))]
        hint = (f"; {shards[0]} holds tar or parquet shards, which predict does not open: score them with geospot "
                f"eval model=<model> data={shards[0]}") if shards else ""
        if broken:  # links into a drive that is not mounted, say
            hint += (f"; {len(broken)} {'is a broken link' if len(broken) == 1 else 'are broken links'}: "
                     f"{broken[0][0]} ({broken[0][1]})")
        raise ConfigError(f"no images found in {', '.join(args)} or its subfolders (looked for "
                          f"{', '.join(sorted(IMAGE_EXTS))}){hint}")
    return [Path(f) for f in unique_files(paths)], broken


def _broken_line(link: str) -> tuple[str, str] | None:
    """(link, why) of a symlink whose photo is gone, its target as a path from here (None when it
    stopped being a link since the walk: nothing to say of it)."""
    try:
        target = os.path.normpath(os.path.join(os.path.dirname(link), os.readlink(link)))
    except OSError:
        return None
    return link, f"a broken link: {target} does not exist"


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
