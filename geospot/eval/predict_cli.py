"""`geospot predict model=<model> IMAGES...|DIR [--json] [--csv out.csv] [--map out.html]`:
coordinates and a place name for photos with no known truth, one line (or JSON object) per image."""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import unicodedata
from collections.abc import Sequence
from pathlib import Path

from geospot.config import ConfigError, help_text, parse_overrides
from geospot.envs.kinds import env_kind
from geospot.eval.cli_config import PredictConfig, split_args
from geospot.eval.predictor import Predictor, photos_and_broken_links, prepared_samples
from geospot.eval.run_defaults import describe_defaults, given_keys, with_run_defaults
from geospot.jsonutil import finite_json
from geospot.stops import exit_code, how

PREDICT_HELP = """usage: geospot predict model=<model> IMAGE... | DIR [key=value ...] [greedy|samples=k] [--json]
                       [--csv out.csv] [--map out.html]

One line per image: latitude, longitude, country/region/city (the nearest GeoNames place; when
none is within 100 km, it says so and names the nearest with its distance) and the raw answer
(telescoping: each turn's guess); for a photo with GPS in its EXIF (a phone's), how far the answer
landed from it. --json prints one JSON object per line instead (JSON Lines). --csv writes
id,latitude,longitude,place,photo_latitude,photo_longitude,km_from_gps,answer,skipped rows as they
come (a blank latitude: no answer parsed, the raw answer beside it; a file that is no image: a row
saying why), which `geospot score --pred out.csv --truth <id,latitude,longitude>` scores. --map
writes a self-contained offline HTML map.
"""

# the envs whose every turn is a guess of coordinates: the line shows them first -> last (a
# hierarchical answer's label turns are its `answers:`, its coordinates the line's own)
CSV_COLUMNS = ("id", "latitude", "longitude", "place", "photo_latitude", "photo_longitude", "km_from_gps", "answer",
               "skipped")


def _ready_to_write(flag: str, path: str) -> None:
    """`path`'s folder made (as an eval's out= is), or one sentence naming the flag and why not."""
    p = Path(path).expanduser()
    if p.is_dir():
        name = "map.html" if flag == "--map" else "predictions.csv"
        raise ConfigError(f"{flag} {path} is a folder; give a file name, e.g. {flag} {p / name}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"{flag} {path}: its folder cannot be made ({e.strerror or e})") from None


def labelled_folders(args: Sequence[str]) -> list[tuple[str, str]]:
    """(folder, its labels file) for each folder argument that is labelled data: a CSV with a
    latitude column, or a .jsonl, in it -- or in the folder above, for the images/ of an OSV-5M
    layout. predict answers without truth; eval scores against it; the user is told which is which."""
    from geospot.data.spec import labelled_csv

    found = []
    for a in args:
        p = Path(a).expanduser()
        for folder in ((p, p.parent) if p.name == "images" else (p,)) if p.is_dir() else ():
            names = sorted(os.listdir(folder))
            labels = labelled_csv(str(folder), names)
            if labels:
                found.append((str(folder), labels))
                break
            jsonl = [n for n in names if n.lower().endswith(".jsonl")]
            if jsonl:
                found.append((str(folder), jsonl[0]))
                break
    return found


def probe_images(paths: Sequence[Path]) -> tuple[list[Path], list[tuple[str, str]]]:
    """The paths whose header reads as an image (PIL reads the header only: ~0.1 ms a file), and
    the others as (path, why) -- so a folder of non-images is refused before the model loads.
    A file whose header reads but whose body does not is skipped later, by prepared_samples."""
    from PIL import Image, UnidentifiedImageError

    from geospot.data.prep import register_image_formats

    register_image_formats()  # HEIC photos (iPhones) too
    readable, skipped = [], []
    for p in paths:
        try:
            if p.stat().st_size == 0:
                skipped.append((str(p), "an empty file"))
                continue
            with Image.open(p) as im:
                im.size  # noqa: B018  (the header is parsed here)
        except Image.DecompressionBombError:
            pass  # a header that reads: prepared_samples applies the data stream's pixel limit and says why
        except (UnidentifiedImageError, OSError, ValueError) as e:
            skipped.append((str(p), "not an image" if isinstance(e, UnidentifiedImageError) else type(e).__name__))
            continue
        readable.append(p)
    return readable, skipped


def predict_main(argv: list[str], engine=None) -> int:
    argv = list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(PREDICT_HELP + "\n" + help_text(PredictConfig))
        return 0
    try:
        kv, flags, values, pos = split_args(argv, {"--json", "greedy", "--greedy"}, {"--map", "--csv"})
        values = {k: os.path.expanduser(v) for k, v in values.items()}  # ~/out.csv quoted: not a folder named ~
        cfg, run_defaults = with_run_defaults(parse_overrides(PredictConfig, kv, validate=False), given_keys(kv))
        cfg.validate()  # the keys typed with a run's values of the rest
        if ("greedy" in flags or "--greedy" in flags) and cfg.samples:  # (greedy is samples=0, the default)
            raise ConfigError("pass either greedy or samples=k, not both")
        if run_defaults:
            print(describe_defaults(run_defaults), file=sys.stderr)
        if not pos:
            raise ConfigError("give images or a folder, e.g. `geospot predict model=... photos/`")
        if not cfg.model and engine is None:
            raise ConfigError("model= is required (a hub id, local folder, tiny:..., run/checkpoint folder or tinker://...)")
        for flag in ("--map", "--csv"):  # writable before any photo is answered: a map comes after all of them
            if flag in values:
                _ready_to_write(flag, values[flag])
        paths, broken = photos_and_broken_links(pos)
        paths, skipped = probe_images(paths)
        skipped = broken + skipped
        for folder, labels in labelled_folders(pos):
            model = cfg.model or "<model>"
            print(f"note: {folder} holds labels ({labels}); `geospot eval model={model} data={folder}` scores "
                  "the model against them", file=sys.stderr)
        for p, why in skipped:
            print(f"skipped image: {p} ({why})", file=sys.stderr)
        if not paths:
            raise ConfigError("none of the images could be read")
        predictor = Predictor.from_config(cfg, run_defaults, engine)
    except (ConfigError, FileNotFoundError) as e:
        print(f"geospot predict: {e}", file=sys.stderr)
        return 2
    # A batch of photos at a time, each batch's lines printed as it is answered: a folder of
    # thousands of full-size photos never sits in memory at once, and the user sees answers
    # from the first batch on.
    rows = []
    table = _CsvRows(values.get("--csv"))
    table.skipped(skipped)
    try:  # a Ctrl-C keeps the rows answered (printed, and in --csv): said, not a traceback
        for start in range(0, len(paths), cfg.batch_size):
            chunk = paths[start:start + cfg.batch_size]
            samples, skipped = prepared_samples([(str(p), p) for p in chunk], square=cfg.square)
            for p, why in skipped:
                print(f"skipped image: {p} ({why})", file=sys.stderr)
            table.skipped(skipped)
            if not samples:
                continue
            # a phone's photos say where they were taken (EXIF GPS): each answer's distance from it
            batch = predictor.rows(samples)
            shows_turns = turn_guesses(cfg.env_type, cfg)
            for r in batch:
                print(json.dumps(finite_json(r)) if "--json" in flags else _predict_line(r, shows_turns), flush=True)
            table.write(batch)
            rows += batch
    except ConfigError as e:  # what only the loaded model can tell (a prompt past its context)
        table.close()
        print(f"geospot predict: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (stops.Terminated)
        table.close()
        print(f"geospot predict: stopped ({how(e)}) after {len(rows)} of {len(paths)} photos"
              + (f"; their rows are in {values['--csv']}" if "--csv" in values and rows else ""), file=sys.stderr)
        return exit_code(e)
    table.close()
    if not rows:
        print("geospot predict: none of the images could be read", file=sys.stderr)
        return 2
    km = [r["km_from_gps"] for r in rows if r["photo_gps"] is not None]
    if km:  # geotagged photos: how far the answers were, and where the full table comes from
        scored = [k for k in km if k is not None]
        median = f"median {statistics.median(scored):,.0f} km from it" if scored else "no answer parsed"
        print(f"{len(km)} of {len(rows)} photos carry GPS in their EXIF: {median} (`geospot eval model=... "
              "data=<the folder>` scores them in full)", file=sys.stderr)
    if "--map" in values:
        from geospot.eval.htmlmap import render_map

        Path(values["--map"]).write_text(render_map(rows), encoding="utf-8")
        print(f"map: {values['--map']}", file=sys.stderr)
    return 0


class _CsvRows:
    """--csv FILE: the rows as they are answered, flushed per batch (an interrupted predict keeps
    what it answered); nothing without a file."""

    def __init__(self, path: str | None):
        import csv

        self.file = open(path, "w", newline="", encoding="utf-8") if path else None  # noqa: SIM115
        self.writer = csv.writer(self.file) if self.file else None
        if self.writer:
            self.writer.writerow(CSV_COLUMNS)

    def write(self, rows: list[dict]) -> None:
        if not self.writer:
            return
        for r in rows:
            gps, km = r["photo_gps"] or ("", ""), r["km_from_gps"]
            parsed = not math.isnan(r["latitude"])
            self.writer.writerow([r["name"], r["latitude"] if parsed else "", r["longitude"] if parsed else "",
                                  r["place"], *gps, "" if km is None else round(km, 3), _one_line(r["raw_text"]), ""])
        self.file.flush()

    def skipped(self, files: list[tuple[str, str]]) -> None:
        """A row for each file that no answer was asked for, saying why: one row per input."""
        if self.writer:
            self.writer.writerows([path, *[""] * (len(CSV_COLUMNS) - 2), why] for path, why in files)
            self.file.flush()

    def close(self) -> None:
        if self.file:
            self.file.close()
            print(f"csv: {self.file.name}", file=sys.stderr)


def turn_guesses(env_type: str, options) -> bool:
    """Whether every turn of the env answers coordinates, over more than one turn (telescoping,
    geohash): a line then shows each turn's guess."""
    coords = env_kind(env_type).coordinate_turns(options)
    return len(coords) > 1 and all(coords)


def _one_line(text: str, escape: bool = True) -> str:
    """An answer on one line ("Latitude: 1 | Longitude: 2"), its other control characters shown as
    escapes (`escape`; the printed line's repr escapes them itself): a terminal or a line-based tool
    reads it as text."""
    text = text.replace("\r\n", "\n").replace("\n", " | ")
    return "".join(repr(c)[1:-1] if escape and unicodedata.category(c) == "Cc" else c for c in text)


def _predict_line(r: dict, telescoping: bool) -> str:
    if math.isnan(r["latitude"]):
        coords = "unparsed"
    else:
        coords = f"{r['latitude']:.4f}, {r['longitude']:.4f}"
    line = f"{r['name']}\t{coords}\t{r['place'] or '-'}\t{_one_line(r['raw_text'], escape=False)!r}"
    if r.get("answers"):
        line += "\tanswers: " + ", ".join(f"{k}={v or '?'}" for k, v in r["answers"].items())
    if r.get("photo_gps") is not None:
        gps = r["photo_gps"]
        line += (f"\tphoto's GPS: {gps[0]:.4f}, {gps[1]:.4f}" if r["km_from_gps"] is None
                 else f"\t{r['km_from_gps']:,.0f} km from the photo's GPS")
    if telescoping:
        turns = " -> ".join("?" if g is None else f"({g[0]:.2f}, {g[1]:.2f})" for g in r["turns"])
        line += f"\tturns: {turns}"
    return line
