"""What model a training run folder describes: everything `eval`, `predict`, `export`, RL's
`load_checkpoint_path`, the demo and the dashboard need to ask it questions the way it was
trained, read from the folder alone (config.json, the checkpoint's engine state).

    spec = model_spec("runs/demo/rl")        # a run folder or one of its checkpoints/<step>
    spec.env_type, spec.max_pixels, spec.max_tokens, spec.turn_prompts, ...

Why it matters: a model trained on 112 px images and the telescoping prompts answers nothing
parseable when asked with the single-turn prompt about a 448 px photo (256 image tokens it never
saw); one trained on square images only stops after the latitude on a quarter of real 16:9
photos in its coarse telescoping turn, and parses them all as centre-cropped squares. An RL run
records its engine keys resolved (older ones left them null); what it inherited (answer decimals,
image budget) is read from the run its `load_checkpoint_path` names, so a chain sft -> rl -> rl resolves.

Pure: reads files, loads no model. `state.pt` is memory-mapped, only its small engine config read."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from geospot import prompts as P
from geospot.config import TRUE_WORDS
from geospot.runs.folder import latest_checkpoint

SYNTHETIC_SIZE = 112  # geospot.data.synthetic's default image side
PREPARED_MAX_SIDE = 512  # geospot.data.prep.PrepConfig.max_side: the loops' real images


@dataclass(frozen=True)
class ModelSpec:
    """The model a run folder describes. `env_type` is the prompt style to ask it with by
    default: an RL run's env, an SFT run's style (`both` / `all` -> `single`)."""

    kind: str  # "sft" | "rl" | "" (unknown)
    base_model: str
    engine: str  # "local" | "tinker"
    lora_rank: int  # 0 = full fine-tuning (the weights are the model, not an adapter)
    trained_styles: tuple[str, ...]  # prompt styles it was trained on, oldest first ("single", "telescoping")
    env_type: str  # what eval / predict ask with by default
    prompt: str  # the single-turn prompt
    turn_prompts: tuple[str, ...]  # the telescoping turns
    answer_decimals: int
    max_pixels: int  # the engine's pixel budget as trained
    image_side: int | None  # the longest side of the training images (synthetic size / prepared max_side)
    max_tokens: int  # answer token budget per turn it was evaluated / sampled with
    data: str | None
    run_dir: Path | None = None
    checkpoint: Path | None = None
    step: int | None = None
    reasoning: bool = False  # trained to think before answering (reasoning=true)
    reasoning_max_tokens: int = 256  # its token budget per turn when reasoning
    square: bool = False  # trained on square images only (synthetic, or square=true): ask it with square crops
    started_in: str | None = None  # the folder its config's relative paths (data, start run) are read from
    # the run's resolved config (config.json), over its parent run's for keys it lacks: eval /
    # predict / rl read the env keys (envs.config.ENV_KEYS) from it
    config: dict = field(default_factory=dict)

    @property
    def adapter(self) -> bool:
        return self.lora_rank > 0


def is_run_path(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and ((p / "state.json").exists() or (p / "checkpoints").is_dir())


# An export folder's record of the model it holds (geospot export writes it): the run's spec
# without paths into the run, so the export is asked as it was trained, on any machine.
EXPORT_RECORD = "geospot.json"
_PATH_FIELDS = ("run_dir", "checkpoint", "started_in")  # where the run lives on this machine: not exported


def is_export_path(path: str | Path) -> bool:
    p = Path(path)
    return p.is_dir() and (p / EXPORT_RECORD).is_file()


def export_record(spec: ModelSpec, export_kind: str, base_model: str, engine: dict) -> dict:
    """The JSON an export keeps: the spec's fields (base_model as a reader finds it), what the
    folder holds (`adapter`, `merged`, `full`) and, for an adapter, the LoRA shape to rebuild."""
    record = {f.name: getattr(spec, f.name) for f in fields(ModelSpec) if f.name not in _PATH_FIELDS}
    record.update(base_model=base_model, export_kind=export_kind, source_run=str(spec.run_dir or ""),
                  **{k: engine[k] for k in ("lora_alpha", "lora_targets", "train_vision") if k in engine})
    return json.loads(json.dumps(record, default=str))


def export_spec(path: str | Path) -> tuple[ModelSpec, dict]:
    """(ModelSpec, the whole record) of an export folder; a full or merged export's base model is
    the folder itself (it holds every weight)."""
    record = _read_json(Path(path) / EXPORT_RECORD)
    known = {f.name for f in fields(ModelSpec)} - set(_PATH_FIELDS)
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in record.items() if k in known}
    if record.get("export_kind") != "adapter":
        values.update(base_model=str(Path(path).resolve()), lora_rank=0)
    try:
        return ModelSpec(**values), record
    except TypeError as e:
        raise FileNotFoundError(f"{path}/{EXPORT_RECORD} is not a geospot export record ({e})") from None


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _checkpoint_of(path: Path) -> tuple[Path | None, Path]:
    """(checkpoint folder or None, run folder) for a run or checkpoint folder."""
    if (path / "state.json").exists():
        return path, path.parent.parent
    return latest_checkpoint(path), path


def engine_state_config(checkpoint: Path | None) -> dict:
    """The engine config the checkpoint's state.pt recorded (the local engine), or its
    tinker.json's; {} when there is none."""
    if checkpoint is None:
        return {}
    state = _read_json(checkpoint / "state.json")
    engine_path = Path(str(state.get("engine_path", "engine")))
    engine_dir = engine_path if engine_path.is_absolute() else checkpoint / engine_path
    record = _read_json(engine_dir / "tinker.json") or _read_json(checkpoint / "engine" / "tinker.json")
    if record.get("base_model"):
        return {"engine": "tinker", "model_name": record["base_model"], "lora_rank": int(record.get("lora_rank") or 0)}
    return saved_engine_config(engine_dir)


def saved_engine_config(engine_dir: Path) -> dict:
    """The engine config a local engine state (engine_dir/state.pt) recorded; {} without one. state.pt also
    holds the optimizer's moments (twice the trainable weights): torch.save writes a zip archive, so
    mmap=True maps the tensors lazily and only the small engine_config dict is read."""
    state = engine_dir / "state.pt"
    if not state.exists():
        return {}
    import torch  # only here: a spec of a run without a local engine state needs no torch

    from geospot.runs.checkpoint import UNREADABLE, damaged

    try:
        saved = torch.load(state, map_location="cpu", weights_only=False, mmap=True)
    except UNREADABLE as e:  # (mmap's own error would blame the file's format)
        raise damaged(engine_dir.parent, state, e) from None
    return dict(saved.get("engine_config") or {})


def _spec_options(spec: str | None) -> list[tuple[str, dict[str, str]]]:
    """(kind, options) per part of a data spec (`;`-separated, an optional `@weight`): a
    synthetic part's options follow its colon, any other's its first comma. runs/ sits below
    data/ and must not import its grammar; the few options read here need none of its quoting."""
    parts = []
    for part in (p.strip() for p in (spec or "").split(";")):
        if not part:
            continue
        part = re.sub(r"@\s*[0-9.eE+-]+$", "", part)  # the weight
        kind, _, rest = part.partition(":")
        options = rest if kind.strip() == "synthetic" else part.partition(",")[2]
        opts = dict(o.split("=", 1) for o in options.split(",") if "=" in o)
        parts.append((kind.strip(), {k.strip(): v.strip() for k, v in opts.items()}))
    return parts


def data_image_side(spec: str | None) -> int | None:
    """The longest side of the images a data spec yields to the training loops: a synthetic
    world's `size`, else what preparation resizes real photos to (the spec's `max_side`, else
    prep's default); None if unknown or kept at any size (max_side=0)."""
    parts, sides = _spec_options(spec), []
    # a stream option (any part's applies to the whole stream): photos prepared to max_side, 0 = kept as they are
    prepared = next((opts["max_side"] for _, opts in parts if "max_side" in opts), str(PREPARED_MAX_SIDE))
    for kind, opts in parts:
        try:
            side = int(opts.get("size", SYNTHETIC_SIZE)) if kind == "synthetic" else int(prepared)
            side = min(side, int(prepared)) if int(prepared) > 0 else side  # a world painted larger, prepared down
        except ValueError:
            return None
        if side <= 0:  # photos of any size: the budget is max_pixels
            return None
        sides.append(side)
    return max(sides) if sides else None


def data_square(spec: str | None) -> bool:
    """Whether every image a data spec yields to the training loops is square: synthetic worlds
    paint size x size, and the stream option `square=true` (any part's: it applies to the whole
    stream) centre-crops real photos."""
    parts = _spec_options(spec)
    if any(opts.get("square", "").lower() in TRUE_WORDS for _, opts in parts):
        return True
    return bool(parts) and all(kind == "synthetic" for kind, _ in parts)


def _styles(kind: str, cfg: dict) -> tuple[str, ...]:
    if kind == "rl":
        return (cfg.get("env_type") or "single",)
    style = cfg.get("prompt_style") or "single"
    if style == "all":
        return ("single", "telescoping", "hierarchical", "geohash")
    return ("single", "telescoping") if style == "both" else (style,)


def model_spec(path: str | Path, _seen: frozenset = frozenset()) -> ModelSpec:
    """The ModelSpec of a training run folder or checkpoints/<step> folder (FileNotFoundError
    when it is neither)."""
    path = Path(path)
    if is_export_path(path):
        return export_spec(path)[0]
    if not is_run_path(path):
        raise FileNotFoundError(f"{path} is not a training run or checkpoint folder (no checkpoints/ or state.json)")
    checkpoint, run_dir = _checkpoint_of(path)
    record = _read_json(run_dir / "config.json")
    kind, cfg = record.get("kind", ""), record.get("config", {}) or {}
    parent = _parent_spec(cfg.get("load_checkpoint_path"), _seen | {run_dir.resolve()}, record.get("started_in"))
    engine = engine_state_config(checkpoint)

    def get(key: str, default: Any) -> Any:  # the engine state's value, else the config's, else the default
        return next((v for v in (engine.get(key), cfg.get(key)) if v is not None), default)


    styles = _styles(kind, cfg)
    if parent is not None and kind == "rl":
        styles = tuple(s for s in parent.trained_styles if s not in styles) + styles
    env_type = styles[-1] if kind == "rl" else (styles[0] if len(styles) == 1 else "single")
    data = cfg.get("data") or (parent.data if parent else None)
    max_tokens = cfg.get("max_tokens") or cfg.get("eval_max_tokens") or (parent.max_tokens if parent else 24)
    step = _read_json(checkpoint / "state.json").get("step") if checkpoint else None
    return ModelSpec(
        kind=kind,
        base_model=str(get("model_name", parent.base_model if parent else "")),
        engine=str(get("engine", parent.engine if parent else "local")),
        lora_rank=int(get("lora_rank", parent.lora_rank if parent else 0)),
        trained_styles=styles,
        env_type=env_type,
        prompt=cfg.get("prompt") or (parent.prompt if parent else P.SINGLE_TURN_PROMPT),
        turn_prompts=tuple(cfg.get("turn_prompts") or (parent.turn_prompts if parent else P.TELESCOPING_PROMPTS)),
        answer_decimals=int(cfg.get("answer_decimals", parent.answer_decimals if parent else 2)),
        max_pixels=int(get("max_pixels", parent.max_pixels if parent else 448 * 448)),
        image_side=data_image_side(data),
        square=data_square(data),
        max_tokens=int(max_tokens),
        data=data,
        run_dir=run_dir,
        checkpoint=checkpoint,
        step=None if step is None else int(step),
        reasoning=bool(cfg.get("reasoning", parent.reasoning if parent else False)),
        reasoning_max_tokens=int(cfg.get("reasoning_max_tokens") or (parent.reasoning_max_tokens if parent else 256)),
        config={**(parent.config if parent else {}), **{k: v for k, v in cfg.items() if v is not None}},
        started_in=record.get("started_in") if isinstance(record.get("started_in"), str) else None,
    )


def start_run_path(load_path: str, started_in: Any) -> str:
    """A run's load_checkpoint_path as a path from here: a relative one is read from the folder the
    run was started in (config.json's `started_in`), so a chain of runs reads the same from any folder."""
    if isinstance(started_in, str) and not Path(load_path).expanduser().is_absolute():
        return str(Path(started_in) / load_path)
    return load_path


def _parent_spec(load_path: Any, seen: frozenset, started_in: Any = None) -> ModelSpec | None:
    """The spec of the run a run started from (its load_checkpoint_path), when local. A relative
    load_checkpoint_path is read from the folder the run was started in (config.json's
    `started_in`), so the run reads the same from any folder."""
    if not isinstance(load_path, str) or "://" in load_path:
        return None
    load_path = start_run_path(load_path, started_in)
    if not is_run_path(load_path):
        return None
    _, parent_run = _checkpoint_of(Path(load_path))
    if parent_run.resolve() in seen:  # a run cannot start from itself; stop a cycle
        return None
    return model_spec(load_path, seen)
