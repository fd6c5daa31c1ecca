"""`geospot export checkpoint=<run or checkpoints/<step>> out=DIR [merged=true]`.

What it writes depends on what the run trained, and it says which:

  LoRA run            -> `adapter`: a PEFT folder (adapter_config.json + adapter weights) that
                         `PeftModel.from_pretrained(base, DIR)` and vLLM's `LoRARequest` load as
                         they are; `base_model_name_or_path` is the hub id when the base came
                         from the hub (a local path only for local / tiny bases)
  LoRA run, merged    -> `merged`: the adapter folded into a full transformers model
  full fine-tuning    -> `full`: the full weights (there is no adapter to write)

Every folder also carries the tokenizer, chat template and an image-processor config whose
pixel budget is the one the model was trained with, a model card (README.md, eval/card.py)
whose code block runs as written, and geospot.json: the run's ModelSpec (prompt style, image
budget and shape, answer length; an adapter's LoRA shape), so `geospot predict model=DIR` and
`geospot eval model=DIR` ask the export exactly as `model=<run>` would. An export replaces its
folder whole, so `out` must be new, empty or an earlier export."""

from __future__ import annotations

import json
import shutil
import sqlite3
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from geospot.config import ConfigError, help_text, option, parse_overrides
from geospot.models.load import image_budget


@dataclass(frozen=True)
class ExportConfig:
    KEY_ALIASES: ClassVar[dict[str, str]] = {"model": "checkpoint", "load_checkpoint_path": "checkpoint"}  # (eval's)
    checkpoint: str = option("", "a training run folder (its latest checkpoint) or a checkpoints/<step> folder")
    out: str = option("", "output folder")
    merged: bool = option(False, "LoRA runs: false = a PEFT adapter (+ base model id); true = LoRA merged into a "
                                 "full HF model. Full fine-tuning runs always export full weights")
    eval: str | None = option(None, "an eval run folder whose summary.json goes into the model card (default: the "
                                    "run's eval/ folders of the exported checkpoint, and its training evals)")


EXPORT_HELP = """usage: geospot export checkpoint=<run or checkpoint dir> out=DIR [merged=true]

Writes a PEFT adapter (LoRA runs), a merged model (LoRA, merged=true) or the full weights
(full fine-tuning runs), with tokenizer, chat template, image-processor config and a model
card README.md (base model, prompt, decimals, image budget, eval tables, code that loads it).
"""

WHAT = {
    "adapter": "PEFT LoRA adapter",
    "merged": "full model (LoRA merged into the base)",
    "full": "full weights (full fine-tuning: the run trained every weight, so there is no adapter)",
}

# files of the base model folder an export lacks and a reader needs: tokenizer, chat template,
# generation config (the image-processor config is the engine's, with the trained pixel budget)
_BASE_FILES = ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "chat_template.json",
               "special_tokens_map.json", "vocab.json", "merges.txt", "generation_config.json")


def base_reference(base_model: str) -> str:
    """What a reader passes to from_pretrained for the base: the hub id for a hub model, the
    local folder for a local or tiny one (a tiny model exists only on the machine that built it)."""
    from geospot.models.load import resolve_model_path

    if base_model.startswith("tiny:") or Path(base_model).expanduser().is_dir():
        return str(resolve_model_path(base_model).resolve())
    return base_model


def complete_folder(folder: Path, base_model: str, kind: str, max_pixels: int) -> None:
    """Copy the base folder's tokenizer / chat-template / generation files the export lacks,
    set the image processor's pixel budget to the trained one (`max_pixels`), and point an
    adapter's base_model_name_or_path at `base_reference` (PEFT writes the local snapshot path
    the engine loaded from, which means nothing on another machine)."""
    from geospot.models.load import resolve_model_path

    try:
        src = resolve_model_path(base_model, weights=False)
    except (FileNotFoundError, ValueError):
        src = None
    for name in _BASE_FILES if src is not None else ():
        if (src / name).exists() and not (folder / name).exists():
            if kind == "adapter" and name == "generation_config.json":
                continue
            shutil.copy2(src / name, folder / name)
    pre = folder / "preprocessor_config.json"
    if pre.exists():
        pcfg = json.loads(pre.read_text())
        pcfg["max_pixels"] = max_pixels
        pcfg["size"] = {**pcfg.get("size", {}), "longest_edge": max_pixels}
        pre.write_text(json.dumps(pcfg, indent=2) + "\n")
    cfg_path = folder / "adapter_config.json"
    if kind == "adapter" and cfg_path.exists():
        cfg = json.loads(cfg_path.read_text())
        cfg["base_model_name_or_path"] = base_reference(base_model)
        cfg_path.write_text(json.dumps(cfg, indent=2) + "\n")


def write_example_image(folder: Path, data: str | None) -> tuple[str, bool] | None:
    """example.jpg: one held-out image of the run's data (a training one where none is held out), so
    the card's code runs as written (only for synthetic or local data: an export never waits on the
    network). -> (its path, whether it is held out)."""
    from geospot.data.spec import SpecError, parse_spec

    try:
        parts = parse_spec(data or "")
    except (SpecError, ValueError):
        return None
    if not parts or not all(p.kind == "synthetic" or Path(p.target).expanduser().exists() for p in parts):
        return None
    from geospot.data import load_samples

    samples, held = [], True
    for split in ("val", "test", "train"):  # a small world may have no val image
        try:
            samples, held = (samples, held) if samples else (load_samples(data, split=split, n=1), split != "train")
        except (FileNotFoundError, ValueError, OSError):
            return None
    if not samples:
        return None
    out = folder / "example.jpg"
    samples[0].image.convert("RGB").save(out, quality=92)
    return str(out.resolve()), held


def check_out_folder(out: str) -> None:
    """An export replaces its folder whole: refuse one that holds anything but an earlier export
    (a run folder, a home directory), before the model loads."""
    from geospot.runs.model_spec import EXPORT_RECORD, is_export_path

    folder = Path(out).expanduser()
    if not folder.exists() or is_export_path(folder):
        return
    if not folder.is_dir():
        raise ConfigError(f"out={out} is a file; give a folder for the export")
    entries = sorted(p.name for p in folder.iterdir())
    if entries:
        held = "1 entry that is" if len(entries) == 1 else f"{len(entries)} entries that are"
        raise ConfigError(f"out={out} holds {held} not an earlier geospot export (no "
                          f"{EXPORT_RECORD}; e.g. {entries[0]!r}) and an export replaces its folder whole; give a "
                          "new or empty folder")


def export_run(cfg: ExportConfig) -> tuple[Path, str, Path]:
    """(folder, kind, card path); kind is `adapter`, `merged` or `full`."""
    from geospot.eval.card import check_eval_dir, write_model_card
    from geospot.eval.loading import load_model
    from geospot.runs.model_spec import (
        EXPORT_RECORD,
        engine_state_config,
        export_record,
        export_spec,
        is_export_path,
        is_run_path,
        model_spec,
    )

    if not cfg.checkpoint or not cfg.out:
        raise ConfigError("checkpoint= and out= are required, e.g. `geospot export checkpoint=runs/sft out=export/sft`")
    if is_export_path(cfg.checkpoint):  # (an adapter export made merged, say: from the run it came from)
        source = export_spec(cfg.checkpoint)[1].get("source_run") or "<its run>"
        raise ConfigError(f"checkpoint={cfg.checkpoint} is an export already; export its run again for another "
                          f"kind: checkpoint={source}")
    if not is_run_path(cfg.checkpoint):
        from geospot.eval.loading import run_without_weights

        raise ConfigError(run_without_weights(cfg.checkpoint, key="checkpoint")
                          or f"checkpoint={cfg.checkpoint} is not a training run or checkpoint folder")
    # (a quoted ~, or a shell that does not expand it in key=value): expanded once, for every use
    out, eval_dir = str(Path(cfg.out).expanduser()), cfg.eval and str(Path(cfg.eval).expanduser())
    check_out_folder(out)
    for attempt in (1, 2):  # a run still training may prune the checkpoint read: then its newest, once
        spec = model_spec(cfg.checkpoint)
        if eval_dir:
            check_eval_dir(eval_dir, spec)
        kind = ("merged" if cfg.merged else "adapter") if spec.adapter else "full"
        if spec.engine == "tinker" and kind != "adapter":
            raise ConfigError("engine=tinker runs export the LoRA adapter only; drop merged=true")
        try:  # the engine's image processor is saved with the budget the model was trained with
            # the checkpoint the spec read, not the run's newest again (it may have saved one since)
            budget = image_budget(spec)  # (reads the model's processor: once)
            loaded = load_model(str(spec.checkpoint or cfg.checkpoint), device="cpu", max_pixels=budget)
            break
        except (ConfigError, FileNotFoundError):
            if attempt == 2 or spec.checkpoint is None or Path(spec.checkpoint).exists():
                raise
    note_still_training(spec)
    from geospot.models.compat import no_progress_bars

    with no_progress_bars(quiet=spec.base_model.startswith("tiny:")):  # a tiny model writes in ms: no bar
        path = Path(loaded.engine.export(out, merged=cfg.merged))
    complete_folder(path, spec.base_model, kind, budget)
    # what predict / eval read to ask the export as its run was trained (and to rebuild an adapter)
    record = export_record(spec, kind, base_reference(spec.base_model), engine_state_config(spec.checkpoint))
    (path / EXPORT_RECORD).write_text(json.dumps(record, indent=1) + "\n")
    photo, held = write_example_image(path, spec.data) or (None, False)
    card = write_model_card(path, loaded, spec=spec, kind=kind, eval_dir=eval_dir,
                            base_ref=base_reference(spec.base_model), photo=photo)
    if photo and not data_is_synthetic(spec.data):  # a user's own photo, in a folder made to be published
        which = "one held-out photo" if held else "one training photo (the run held none out)"
        print(f"example.jpg is {which} of data={spec.data} (for the model card's code to run as "
              "written), and the card names that data spec; delete or replace them before publishing the folder "
              "if they are private", file=sys.stderr)
    return path, kind, card


def note_still_training(spec) -> None:
    """One line when the run exported is training right now: the export holds one checkpoint of it."""
    from geospot.runs.store import RunReader

    try:
        running = spec.run_dir is not None and RunReader(spec.run_dir).status()["status"] == "running"
    except (OSError, ValueError, KeyError, sqlite3.Error):
        return
    if running:
        print(f"note: {spec.run_dir} is training right now; this export holds its checkpoint of step {spec.step}",
              file=sys.stderr)


def data_is_synthetic(data: str | None) -> bool:
    from geospot.data.spec import SpecError, parse_spec

    try:
        return bool(data) and all(p.kind == "synthetic" for p in parse_spec(data, infer=False))
    except SpecError:
        return False


def export_main(argv: list[str]) -> int:
    argv = list(argv)
    if any(a in ("-h", "--help", "help") for a in argv):
        print(EXPORT_HELP + "\n" + help_text(ExportConfig))
        return 0
    try:
        cfg = parse_overrides(ExportConfig, argv)
        path, kind, card = export_run(cfg)
    except (ConfigError, FileNotFoundError) as e:
        print(f"geospot export: {e}", file=sys.stderr)
        return 2
    note = " (merged=true changes nothing for a full fine-tuning run)" if kind == "full" and cfg.merged else ""
    print(f"exported {kind}: {WHAT[kind]}{note}\nfolder: {path}\nmodel card: {card}")
    return 0
