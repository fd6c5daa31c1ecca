"""`geospot eval`: what people run after training (predict: predict_cli.py; export: export.py).

    geospot eval model=<model> data=<spec> [n=...] [env_type=single|telescoping|hierarchical|geohash]
                 [greedy|samples=k] [out=<run dir>] [--json]
    geospot eval --compare runA runB ...
    geospot predict model=<model> IMAGES...|DIR [--json] [--map out.html]   (geospot/eval/predict_cli.py)
    geospot export ...   (geospot/eval/export.py)

`model` is anything geospot.eval.loading understands: hub id, local folder, tiny:..., a
training run / checkpoint folder, tinker://... . An eval run folder holds config.json,
predictions.csv (appended as batches finish: rerunning the same command resumes) and
summary.json (the metrics; what --compare reads)."""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import time
from dataclasses import asdict
from itertools import islice
from pathlib import Path

from geospot.config import ConfigError, help_text, parse_overrides
from geospot.data import skip_reasons
from geospot.data.spec import SpecError
from geospot.envs.kinds import env_kind
from geospot.eval import predictions as io
from geospot.eval.cli_config import (
    EvalConfig,
    PredictConfig,
    SamplingConfig,
    engine_overrides,
    oracle_note,
    sampling_for,
    sampling_words,
    split_args,
)
from geospot.eval.compare import default_name, distinct_data, extra_lines
from geospot.eval.geocoding import geocoder_for
from geospot.eval.predict_cli import _predict_line, predict_main
from geospot.eval.predictor import answered_labels
from geospot.eval.run_defaults import describe_defaults, env_resume_keys, given_keys, with_run_defaults
from geospot.eval.runner import metrics_for, predict
from geospot.jsonutil import finite_json
from geospot.stops import how

# the configs and predict live in cli_config.py / predict_cli.py; re-exported so callers of
# `geospot.eval.cli` (and the tests) keep finding every name there
__all__ = ["EvalConfig", "PredictConfig", "SamplingConfig", "eval_main", "predict_main", "run_eval",
           "answered_labels", "_predict_line"]


# ---------------------------------------------------------------------------------------
# small helpers


def _slug(text: str) -> str:
    """A folder-name form of a model or data spec; a local path is named by its last folder or
    file (`../shared/data/osv5m-samples/` -> `osv5m-samples`, not a hidden `.._shared_…`)."""
    def short(part: str) -> str:
        names = [n for n in part.strip().split("/") if n not in ("", ".", "..")]
        local = "/" in part and ":" not in part.split("/")[0]  # hf:…, synthetic:…, s3://… keep their text
        return names[-1] if local and names else part
    text = "+".join(short(p) for p in text.split(";"))
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text.strip("/")).strip("_.")[:60] or "run"


def resolve_split(split: str, data_spec: str) -> str:
    """`auto`: a synthetic world's `test` split (its other ids train the model); every
    other source whole (`all`): a benchmark folder is a test set already."""
    if split != "auto":
        return split
    from geospot.data.spec import parse_spec

    parts = parse_spec(data_spec)
    return "test" if parts and all(p.kind == "synthetic" for p in parts) else "all"


def held_out_split(cfg, split: str) -> str:
    """A run (or its export) evaluated on the data it trained on: with split=auto, the ids it never
    trained on (`heldout`: val + test), said in one line; with a split that holds training images,
    a note that the numbers are not held-out ones. The same data is the same files with the same
    split fractions, whatever else the spec says (a fine-tune adds `square=true` to new photos), or
    the shards `geospot data pack` made of them, or the other way round (`trained_on`). Any other
    model or data: `split` as it is."""
    from geospot.runs.model_spec import is_export_path, is_run_path, model_spec

    if split not in ("all", "train") or not cfg.model or not (is_run_path(cfg.model) or is_export_path(cfg.model)):
        return split
    spec = model_spec(cfg.model)
    run = spec.run_dir or cfg.model
    started_in = spec.started_in or "."
    via = trained_on(spec.data, started_in, cfg.data) if spec.data else None
    if via is None:
        return split
    if split_fractions(spec.data) != split_fractions(cfg.data):  # another split of the ids: held-out ones unknown
        print(f"note: data={cfg.data} reads the data {run} trained on{via} with other val_frac / test_frac than its "
              f"data={spec.data}, so which images it held out is not known here and these numbers may include "
              "trained ones; give the run's fractions to score only the held-out images", file=sys.stderr)
        return split
    if cfg.split == "auto":
        print(f"data={cfg.data} is what {run} trained on{via} (its train split): evaluating the images it held "
              "out (split=heldout: val + test); split=all evaluates every image, the trained ones included",
              file=sys.stderr)
        return "heldout"
    print(f"note: data={cfg.data} is what {run} trained on{via}, and split={split} holds the images it trained "
          "on: these numbers are not held-out ones (split=heldout evaluates only the others)", file=sys.stderr)
    return split


def trained_on(run_data: str, started_in: str, data: str) -> str | None:
    """Whether `data` (read from here) holds the images a run trained on `run_data` (read from
    `started_in`) did, as the words to say how: "" for the same data, a phrase when one was packed
    from the other (pack keeps each id, and a split is a hash of the id); None when not."""
    from geospot.data.spec_paths import packed_from, same_data

    if same_data(run_data, started_in, data, options=False):
        return ""
    packed = packed_from(run_data, started_in)
    if packed is not None and same_data(packed[0], "/", data, options=False):
        return f" (as the shards packed from it, {run_data})"
    packed = packed_from(data, os.getcwd())
    # shards of its val / test ids only hold no image it trained on: other data, scored whole
    if packed is not None and packed[1] in ("all", "train") and same_data(run_data, started_in, packed[0],
                                                                             options=False):
        return " (these shards were packed from it)"
    return None


def split_fractions(spec: str) -> tuple[float, float]:
    """(val_frac, test_frac) a data spec splits its ids by (a stream option in any part, else the default)."""
    from geospot.data.options import StreamConfig
    from geospot.data.spec import parse_spec

    opts = {k: v for p in parse_spec(spec, infer=False) for k, v in p.options.items()}
    default = StreamConfig()
    return float(opts.get("val_frac", default.val_frac)), float(opts.get("test_frac", default.test_frac))


def _count(k: int, noun: str) -> str:
    return f"{k} {noun}" if k == 1 else f"{k} {noun}s"


def _fmt_metrics(name: str, metrics: dict) -> str:
    from geospot.geo.metrics import format_metrics_table

    return format_metrics_table({name: metrics})


# ---------------------------------------------------------------------------------------
# geospot eval


EVAL_HELP = """usage: geospot eval model=<model> data=<spec> [key=value ...] [greedy|samples=k] [--json]
       geospot eval --compare RUN_DIR RUN_DIR ...

Runs the model over the data, writes <out>/predictions.csv as it goes (rerun the same
command to resume an interrupted eval), then <out>/summary.json, and prints the metrics.
"""

# keys that must match for a rerun into the same folder to count as a resume
RESUME_KEYS = ("model", "data", "split", "n", "env_type", "samples", "temperature", "max_tokens", "max_pixels",
               "square")


def eval_main(argv: list[str]) -> int:
    argv = list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(EVAL_HELP + "\n" + help_text(EvalConfig))
        return 0
    as_json = "--json" in argv
    try:
        kv, flags, _, pos = split_args(argv, {"--json", "--compare", "greedy", "--greedy"})
        if "--compare" in flags:
            if kv or len(pos) < 1:
                raise ConfigError("usage: geospot eval --compare RUN_DIR [RUN_DIR ...] [--json]")
            from geospot.eval.compare import compare_main

            return compare_main(pos, as_json)
        if pos:
            raise ConfigError(f"unexpected argument {pos[0]!r}: eval takes key=value pairs (try --help)")
        cfg = parse_overrides(EvalConfig, kv, validate=False)  # checked in run_eval, with a run's keys
        given = given_keys(kv)
        if ("greedy" in flags or "--greedy" in flags) and cfg.samples:
            raise ConfigError("pass either greedy or samples=k, not both")
        if not cfg.model or not cfg.data:
            raise ConfigError(_missing_keys(cfg))
        summary = run_eval(cfg, given=given)
    except (ConfigError, SpecError, FileNotFoundError) as e:
        print(f"geospot eval: {e}", file=sys.stderr)
        return 2
    if as_json:
        print(json.dumps(finite_json(summary)))
    else:
        print(_fmt_metrics(summary["name"], summary["metrics"]))
        for line in extra_lines(summary["metrics"]):  # an env's own numbers: label answers, turns, reasoning
            print(line)
        if summary["skipped_samples"]:
            print("not evaluated (skipped records, by reason): "
                  + skip_reasons(summary["skipped_samples"]))
        print(f"predictions: {summary['predictions']}\nsummary:     {summary['summary']}")
    return 0


def _missing_keys(cfg: EvalConfig) -> str:
    """The sentence for an eval without model= or data=: a training run's own data where model= is one
    (held_out_split then scores the images it held out), else a generic example."""
    from geospot.data.spec_paths import read_here
    from geospot.runs.model_spec import is_run_path, model_spec

    if cfg.model and not cfg.data and is_run_path(cfg.model):
        try:
            spec = model_spec(cfg.model)
            data = read_here(spec.data, spec.started_in) if spec.data else None  # its relative paths, from here
        except Exception:  # an unreadable run: the generic example
            data = None
        if data:
            return (f"data= is required, e.g. the data {cfg.model} trained on: `geospot eval model={cfg.model} "
                    f"data={shlex.quote(data)}` (its held-out images: the ids it never trained on)")
    return "model= and data= are required, e.g. `geospot eval model=tiny:qwen2_5_vl:small data=synthetic:n=64`"


def _resolved_checkpoint(model: str) -> str | None:
    from geospot.eval.loading import is_checkpoint_path

    if not is_checkpoint_path(model):
        return None
    from geospot.runs.checkpoint import resolve_checkpoint

    return str(resolve_checkpoint(model).resolve())


def default_out(cfg: EvalConfig, checkpoint: str | None) -> Path:
    """A checkpoint's evals live in its training run (`<run>/eval/<data>-<env>-step<k>`, where
    `geospot export` finds them for the model card); anything else under runs/eval/. A teacher-forced
    eval (an oracle study) says so in its name, which --compare shows as the row's."""
    env = cfg.env_type + (f"-teacher_forcing{cfg.teacher_forcing:g}" if cfg.teacher_forcing else "")
    if checkpoint is not None:
        ck = Path(checkpoint)
        return ck.parent.parent / "eval" / f"{_slug(cfg.data)}-{env}-step{ck.name}"
    return Path("runs") / "eval" / f"{_slug(cfg.model)}-{_slug(cfg.data)}-{env}"


def _chunks(it, size: int):
    chunk = []
    for x in it:
        chunk.append(x)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


class _bar:
    """tqdm on stderr (total unknown unless n= is given), started at the images already done;
    drawn from `show()` on (when the first images arrive: data that fails to open prints its
    error alone, not under an empty bar). Not on a terminal (a log file, a pipe): a plain line
    every `every` seconds and at the end, as training writes, not tqdm's carriage-return frames."""

    def __init__(self, total: int | None, done: int, every: float = 30.0) -> None:
        self.total, self.done, self.every = total, done, every
        self._t = None  # the tqdm bar, on a terminal
        self._start = self._last = None  # the lines' clock, elsewhere

    def show(self) -> None:
        if self._t is not None or self._start is not None:
            return
        if sys.stderr.isatty():
            from tqdm import tqdm

            self._t = tqdm(total=self.total, initial=self.done, unit="img", desc="eval", dynamic_ncols=True,
                           file=sys.stderr)
        else:
            self._start = self._last = time.perf_counter()
            self._first = self.done

    def update(self, k: int) -> None:
        self.show()
        if self._t is not None:
            self._t.update(k)
            return
        self.done += k
        if time.perf_counter() - self._last >= self.every:
            self._line()

    def _line(self) -> None:
        self._last = time.perf_counter()
        new, seconds = self.done - self._first, self._last - self._start
        rate = f", {new / seconds:.1f} img/s" if new and seconds > 0 else ""
        print(f"eval: {self.done}{f'/{self.total}' if self.total else ''} images{rate}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._t is not None:
            self._t.close()
        elif self._start is not None:
            self._line()


def _differs(out: Path, resume_cfg: dict) -> list[str]:
    """The resume keys whose value the eval already in `out` does not share ([] = none there,
    or the same eval: a rerun resumes it)."""
    config_path = out / "config.json"
    if not (out / io.PREDICTIONS).exists() and not (out / io.SUMMARY).exists():
        return []
    if not config_path.exists():
        return ["config.json (not a geospot eval folder)"]
    old = json.loads(config_path.read_text()).get("resume", {})

    def same(k: str) -> bool:  # `labelled`, `labelled/` and `./labelled` are one folder
        return old.get(k) == resume_cfg[k] or (
            k == "data" and isinstance(old.get(k), str) and len(distinct_data([old[k], resume_cfg[k]])) == 1)

    return [f"{k} ({old.get(k)!r} there)" for k in resume_cfg if not same(k)]


def eval_folder(cfg: EvalConfig, checkpoint: str | None, resume_cfg: dict) -> Path:
    """Where this eval writes. A named out= holding another eval is refused; the default
    folder moves on to `<name>-2`, `-3`, ... so an earlier eval of a different config is never
    overwritten."""
    if cfg.out:
        out = Path(cfg.out).expanduser()
        differs = _differs(out, resume_cfg)
        if differs:
            raise ConfigError(f"out={out} holds an eval with different {', '.join(differs)}; "
                              "pick another out= or delete that folder")
        return out
    first = out = default_out(cfg, checkpoint)
    i = 2
    while _differs(out, resume_cfg):
        out, i = first.with_name(f"{first.name}-{i}"), i + 1
    if out != first:
        print(f"{first} holds an eval of another config; writing {out}", file=sys.stderr)
    return out


def run_eval(cfg: EvalConfig, engine=None, given: set[str] | None = None) -> dict:
    """The body of `geospot eval` (importable; `engine` skips model loading, for tests).
    `given`: the keys named on the command line (the rest default to the run's, if any)."""
    from geospot.data import open_stream
    from geospot.data.spec import parse_spec

    parse_spec(cfg.data)  # a bad spec fails here, before any folder is made
    cfg, run_defaults = with_run_defaults(cfg, given)
    cfg.validate()  # the keys typed with the run's values of the rest
    if engine is None:  # and a model that cannot be served, before the progress bar and the data
        from geospot.eval.loading import check_model

        check_model(cfg.model, **engine_overrides(cfg))
    if run_defaults:
        print(describe_defaults(run_defaults), file=sys.stderr)
    if note := oracle_note(cfg):  # whatever the model: a run's, an export's or a hub id
        print(note, file=sys.stderr)
    checkpoint = _resolved_checkpoint(cfg.model)
    # what must match for a rerun to resume: the eval settings and the exact weights (a run
    # folder's latest checkpoint moves on while training runs)
    resume_cfg = {**{k: getattr(cfg, k) for k in RESUME_KEYS}, **env_resume_keys(cfg), "checkpoint": checkpoint}
    out = eval_folder(cfg, checkpoint, resume_cfg)
    there = next(p for p in (out, *out.parents) if p.exists())  # where it would be made: said before the model loads
    if not os.access(there, os.W_OK):
        raise ConfigError(f"{out} cannot be written ({there} is read-only to you); pass out=<a folder you can write "
                          "to>")
    name = cfg.name or default_name(out)  # what --compare calls it too
    pred_path = out / io.PREDICTIONS
    done: list = io.repair_predictions(pred_path) if pred_path.exists() else []
    turns = tuple(run_defaults["turn_prompts"]) if run_defaults else None

    split = held_out_split(cfg, resolve_split(cfg.split, cfg.data))
    # a resumed eval reuses an answer only while its image's truth is the one it was scored against
    # (a label fixed in the data since: evaluated again, and the newer row wins in predictions.csv)
    done_truth = {p.id: (p.true_latitude, p.true_longitude) for p in done}
    relabelled = 0
    order: list[str] = []  # every id of the data, in data order (ids only: a benchmark can be 200k images)
    evaluated, busy_s = 0, 0.0  # busy_s: time inside the model (not loading it, not reading data)
    bar = _bar(cfg.n, len(done))
    # an env that asks labels (hierarchical): the true labels of samples without their own (None = reverse geocoding)
    label_geocoder = geocoder_for(cfg.data, cfg.geocoder) if env_kind(cfg.env_type).needs_labels(cfg) else None
    # Stream the data in chunks instead of loading it: only a chunk of images is in memory.
    # square=true (a run trained on square images only): the stream centre-crops, as training's did
    try:  # a Ctrl-C keeps what was answered (predictions.csv, flushed per batch): said, not a traceback
        with open_stream(cfg.data, split, repeat=False, shuffle=False, force={"square": True} if cfg.square else None
                         ) as stream:
            for chunk in _chunks(islice(stream, cfg.n), cfg.batch_size * 4):
                bar.show()
                order += [str(x.id) for x in chunk]
                todo = [x for x in chunk if done_truth.get(str(x.id)) != (x.lat, x.lon)]
                relabelled += sum(str(x.id) in done_truth for x in todo)
                if not todo:
                    continue
                if engine is None:
                    from geospot.eval.loading import load_model

                    engine = load_model(cfg.model, **engine_overrides(cfg)).engine
                    if done:
                        print(f"resuming: {_count(len(done), 'image')} already in {pred_path}", file=sys.stderr)

                def finished(preds):
                    if not pred_path.exists():  # the folder is made with its first answers: a failed start leaves none
                        out.mkdir(parents=True, exist_ok=True)
                        record = {"kind": "eval", "config": asdict(cfg), "resume": resume_cfg,
                                  "run_defaults": run_defaults}
                        (out / "config.json").write_text(json.dumps(record, indent=1) + "\n")
                    io.append_predictions(pred_path, preds)
                    bar.update(len(preds))

                t0 = time.perf_counter()
                budget = cfg.turn_max_tokens(cfg.max_tokens)  # reasoning=true: reasoning_max_tokens
                predict(engine, todo, prompt_style=cfg.env_type, batch_size=cfg.batch_size, max_tokens=budget,
                        sampling=sampling_for(cfg.samples, cfg.temperature, budget), on_batch=finished,
                        env_options=cfg, label_geocoder=label_geocoder, turns=turns)
                busy_s += time.perf_counter() - t0
                evaluated += len(todo)
            skipped = dict(stream.skipped)
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM (stops.Terminated)
        bar.close()
        kept = len(io.read_predictions(pred_path)) if pred_path.exists() else 0
        where = (f"the answers for {_count(kept, 'image')} are kept in {pred_path}: the same command goes on from "
                 "there" if kept else "no answer was kept")
        raise type(e)(f"geospot eval: stopped ({how(e)}); {where}") from None
    bar.close()
    if not order:
        why = f" ({skip_reasons(skipped)})" if skipped else ""
        if split == "heldout" and cfg.split == "auto":  # the run's own data, too small to have held any image out
            raise ConfigError(f"data={cfg.data}: the run trained on it and held none of its images out (val_frac "
                              "and test_frac of its ids, 5 % each by default); evaluate other data, or pass "
                              "split=all to score the images it trained on")
        raise ConfigError(f"data={cfg.data} split={split} holds no usable samples{why}; "
                          f"see `geospot data inspect '{cfg.data}'`")
    reused = sum(i in done_truth for i in order) - relabelled
    if reused:  # say where the numbers come from: a rerun of the same command resumes the same folder
        again = (f"; {relabelled} whose label changed since {'was' if relabelled == 1 else 'were'} evaluated again"
                 if relabelled else "")
        whose = "images' answers were" if reused > 1 else "images had its answer"
        print(f"{reused} of {len(order)} {whose} reused from {pred_path} (the same eval, resumed{again}); "
              "out=<another folder> evaluates anew", file=sys.stderr)
    if cfg.split == "auto" and split == "test":  # synthetic data: a table of 2 images when n=64 was asked
        print(f"split=auto: synthetic data is scored on its test split (the ids training holds out, 5 % by default): "
              f"{_count(len(order), 'image')} here; split=all scores every image", file=sys.stderr)
    if cfg.n is not None and len(order) < cfg.n:  # asked for more than there is: say what the table is of
        print(f"n={cfg.n}, but data={cfg.data} split={split} holds {_count(len(order), 'usable image')}: "
              f"{'all of them are' if len(order) > 1 else 'it is'} evaluated", file=sys.stderr)

    # The metrics come from the file, in data order, so a resumed run and a fresh one agree
    # and `geospot score predictions.csv` reproduces them.
    by_id = {p.id: p for p in io.read_predictions(pred_path)}
    preds = [by_id[i] for i in order if i in by_id]
    metrics = metrics_for(preds, geocoder_for(cfg.data, cfg.geocoder))
    # the truth beside the predictions: `geospot score --pred predictions.csv --truth truth.csv`
    io.write_truth_csv(out / "truth.csv", preds)
    summary = {
        "name": name,
        "model": cfg.model,
        "data": cfg.data,
        "split": split,
        "env_type": cfg.env_type,
        "sampling": sampling_words(cfg),
        "metrics": metrics,
        "evaluated_now": evaluated,
        "skipped_samples": skipped,
        "model_seconds_now": round(busy_s, 3),
        "images_per_s_now": round(evaluated / busy_s, 3) if evaluated and busy_s > 0 else None,
        "predictions": str(pred_path),
        "truth": str(out / "truth.csv"),
        "summary": str(out / io.SUMMARY),
        "checkpoint": checkpoint,
        "config": asdict(cfg),
        "run_defaults": run_defaults,
    }
    io.write_summary(out, summary)
    return summary

