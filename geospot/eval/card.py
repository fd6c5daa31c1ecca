"""The model card `geospot export` writes next to the weights (README.md, HF style).

It states what a reader needs to trust or reuse the model: the base model, how it was
trained (kind, data, steps, LoRA), how to load it, and the eval table when the run has
one (an eval folder's summary.json: `eval=` or the run folder's own / `eval/` child)."""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from types import SimpleNamespace

from geospot.envs.kinds import CardTurns, env_kind
from geospot.eval.predictions import SUMMARY, read_summary
from geospot.models.load import image_budget
from geospot.prompts import PREVIOUS_GUESS_DECIMALS


def _find_summaries(run_dir: Path | None, eval_dir: str | None) -> list[dict]:
    cands: list[Path] = []
    if eval_dir:
        p = Path(eval_dir)
        cands.append(p if p.is_file() else p / SUMMARY)
    elif run_dir is not None:
        cands += [run_dir / SUMMARY, *sorted(run_dir.glob(f"eval*/{SUMMARY}")),
                  *sorted(run_dir.glob(f"eval/*/{SUMMARY}"))]
    out = []
    for c in cands:
        try:
            out.append(read_summary(c))
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # no eval there yet, or a half-written summary: the card goes without it
    return out


def evaluated_weights(summary: dict) -> tuple[str, str] | None:
    """(run folder, step) of the weights an eval scored where its summary says: a run's checkpoint,
    or an export of one (its geospot.json); None for a hub model or an older eval."""
    from geospot.runs.model_spec import export_spec, is_export_path

    if summary.get("checkpoint"):
        ck = Path(summary["checkpoint"])
        return str(ck.parent.parent.resolve()), ck.name
    model = summary.get("model")
    if isinstance(model, str) and is_export_path(model):
        spec, record = export_spec(model)
        return (str(Path(record["source_run"]).resolve()), str(spec.step)) if record.get("source_run") else None
    return None


def check_eval_dir(eval_dir: str, spec) -> None:
    """export's eval=: a folder (or summary.json) that a `geospot eval` of the exported weights wrote,
    else one sentence saying what it is instead (before the model loads)."""
    from geospot.config import ConfigError

    p = Path(eval_dir).expanduser()
    path = p if p.is_file() else p / SUMMARY
    if not path.is_file():
        raise ConfigError(f"eval={eval_dir}: no {SUMMARY} there; give a folder that `geospot eval` of these weights "
                          "wrote (its out=, by default <run>/eval/<data>-<env_type>-step<k>), or leave eval= out")
    ours = (str(Path(spec.run_dir).resolve()), str(spec.step)) if spec.run_dir else None
    summary = read_summary(path)
    theirs = evaluated_weights(summary)
    moved = (ours and theirs and theirs[1] == ours[1] and not Path(theirs[0]).exists()  # a run copied from elsewhere:
             and path.resolve().is_relative_to(ours[0]))  # its own eval folder, of the same step
    if theirs != ours and not moved:
        what = f"step {theirs[1]} of {theirs[0]}" if theirs else f"model={summary.get('model')}"
        raise ConfigError(f"eval={eval_dir} scored {what}, not the weights exported (step {spec.step} of "
                          f"{spec.run_dir}): a model card shows evals of its own weights; evaluate them with "
                          f"`geospot eval model={spec.checkpoint} data=<labelled photos>`")


def _training_evals(run_dir: Path | None, step: int | None) -> dict[str, dict]:
    """The training loop's own held-out evals (`eval/<metric>` lines of metrics.jsonl): the
    first (the base model) and the last one up to the exported step."""
    if run_dir is None:
        return {}
    from geospot.eval.predictions import training_evals

    evals = training_evals(run_dir, step)
    picked = evals[:1] + evals[1:][-1:]
    # the last one up to the step may be of earlier weights (evals every k steps, checkpoints every m): said
    return {f"training eval, step {r['step']}" + (f" (earlier weights than these, step {step})"
                                                   if step is not None and r["step"] not in (0, step) else ""):
            r["metrics"] for r in picked}


def _steps(run_dir: Path | None, step: int | None) -> str:
    """The card's steps cell: the exported step, and how many of the steps before it trained
    nothing (RL steps whose groups all had equal rewards: the weights never moved on them)."""
    if run_dir is None or step is None:
        return f"{step}"
    from geospot.runs.folder import read_jsonl
    from geospot.runs.store import idle_step, training_step

    by_step: dict = {}  # a step's lines merged, as the store does: a held-out eval logs its own line at its step
    for r in read_jsonl(run_dir / "metrics.jsonl"):
        by_step.setdefault(r.get("step"), {}).update(r)
    training = [r for s, r in by_step.items() if s is not None and s <= step and training_step(r)]
    idle = sum(map(idle_step, training))
    why = "every group's rewards were equal, so GRPO had nothing to compare"
    if idle and idle == len(training):
        return f"{step} (none of them trained: {why})"
    return f"{step} ({idle} of them trained nothing: {why})" if idle else f"{step}"


def _pick(cfg: dict, *keys: str):
    """The first of `keys` found anywhere in the (nested) run config."""
    if not isinstance(cfg, dict):
        return None
    for k in keys:
        if k in cfg and not isinstance(cfg[k], dict):
            return cfg[k]
    for v in cfg.values():
        found = _pick(v, *keys) if isinstance(v, dict) else None
        if found is not None:
            return found
    return None


_WEIGHTS = {"adapter": "PEFT LoRA adapter{rank}", "merged": "full model (LoRA merged into the base)",
            "full": "full weights (full fine-tuning)"}


def _load_lines(kind: str, folder: str, base_ref: str) -> list[str]:
    if kind == "adapter":
        return [
            "from peft import PeftModel",
            f"base = AutoModelForImageTextToText.from_pretrained({base_ref!r})",
            "model = PeftModel.from_pretrained(base, folder).eval()",
        ]
    return ["model = AutoModelForImageTextToText.from_pretrained(folder).eval()"]


def card_turns(spec) -> CardTurns:
    """The turns an export of `spec` is asked with: its env's (envs/kinds.py: `card`), with the
    run's own prompts and keys, and its answer budget (an env the kinds do not know: ValueError)."""
    kind = env_kind(spec.env_type)
    reasoning = spec.reasoning and kind.prompt_key is not None  # the envs that ask prompt texts reason
    keys = SimpleNamespace(**{**(spec.config or {}), "prompt": spec.prompt, "turn_prompts": spec.turn_prompts,
                              "reasoning": reasoning})
    budget = spec.reasoning_max_tokens if reasoning else spec.max_tokens
    return kind.card(keys)._replace(max_tokens=budget, reasoning=reasoning)


_ASK = [
    "def ask(messages):",
    "    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)",
    "    parts = chat.split('<|image_pad|>')  # one per photo shown so far: expanded as AutoProcessor does",
    "    shown = pixels[:len(parts) - 1]",
    "    chat = parts[0] + ''.join('<|image_pad|>' * n + rest for n, rest in zip(n_image_tokens, parts[1:]))",
    "    ids = tokenizer(chat, return_tensors='pt').input_ids",
    "    mm = (ids == tokenizer.convert_tokens_to_ids('<|image_pad|>')).int()",
    "    with torch.no_grad():",
    "        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids),",
    "                             pixel_values=torch.cat([p['pixel_values'] for p in shown]),",
    "                             image_grid_thw=torch.cat([p['image_grid_thw'] for p in shown]),",
    "                             mm_token_type_ids=mm, max_new_tokens=max_new_tokens, do_sample=False,",
    "                             suppress_tokens=placeholders)",
    "    answer = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)",
    "    messages.append({'role': 'assistant', 'content': [{'type': 'text', 'text': answer}]})",
    "    return answer.split('</think>')[-1]  # reasoning=true: the answer follows the reasoning",
    "",
    "",
    "def user(t, text):  # a turn's question, with the photo it brings (views[t]; later turns: none)",
    "    image = [{'type': 'image'}] if t < len(views) else []",
    "    return {'role': 'user', 'content': image + [{'type': 'text', 'text': text}]}",
    "",
]

# How the card reads an answer, per protocol: a plain-Python copy of geospot's own reading
# (geo/parse.py, geo/parse_labels.py) on the shapes a trained model writes, so the card plays the
# turns predict plays (tests/eval/test_card_envs.py compares them on such answers).
_READERS = {
    "coordinates": [
        "def read_coordinates(answer):  # labelled: both labels' numbers; else the first two; in range",
        "    lat, lon = (re.findall(rf'\\b{k}\\w*\\W*?(-?\\d+(?:\\.\\d+)?)', answer, re.I) for k in ('lat', 'lon'))",
        "    labelled = re.search(r'\\b(lat|lon)', answer, re.I)",
        "    numbers = [float(lat[-1]), float(lon[-1])] if lat and lon else [] if labelled else [",
        "        float(x) for x in re.findall(r'-?\\d+(?:\\.\\d+)?', answer)[:2]]",
        "    ok = len(numbers) == 2 and abs(numbers[0]) <= 90 and abs(numbers[1]) <= 180",
        "    return tuple(numbers) if ok else None",
    ],
    "labels": [
        "def read_label(answer, field):  # the last '<field>: value' line, else the first non-empty line",
        "    keyed = re.findall(rf'^\\W*{field}\\W*[:=]\\s*(.+)$', answer, re.IGNORECASE | re.MULTILINE)",
        "    lines = keyed[-1:] or [x for x in answer.splitlines() if x.strip(STRIP)][:1]",
        "    return lines[0].strip().strip(STRIP).strip() if lines else None",
    ],
    "cells": [
        "def read_cell(answer):  # the keyed cell (Geohash: ...), else the whole answer as one word",
        "    found = re.findall(r'geohash\\W*[:=]?\\s*([0-9a-z]+)', answer, re.IGNORECASE)[-1:] or answer.split()",
        "    cell = found[0].strip(STRIP).lower() if len(found) == 1 else None",
        "    return cell if cell and re.fullmatch('[0-9b-hjkmnp-z]+', cell) else None",
    ],
}

# The per-protocol loop: each turn's question, the model's answer, what the next turn is told.
_LOOPS = {
    "coordinates": [
        "messages, guess = [], None",
        "for t, prompt in enumerate(turns):",
        "    d = prev_decimals[min(t - 1, len(prev_decimals) - 1)]  # the previous guess, rounded as in training",
        "    text = prompt if t == 0 else prompt.format(prev=f'({guess[0]:.{d}f}, {guess[1]:.{d}f})')",
        "    messages.append(user(t, text))",
        "    answer = ask(messages)",
        "    print(f'turn {t + 1}: {answer!r}')",
        "    guess = read_coordinates(answer)",
        "    if guess is None:",
        "        break",
    ],
    "labels": [
        "messages, known = [], []  # known: the labels answered so far, coarse first",
        "for t, (field, prompt) in enumerate(zip(fields, turns)):",
        "    messages.append(user(t, prompt.format(known=', '.join(reversed(known)))))",
        "    answer = ask(messages)",
        "    print(f'turn {t + 1} ({field}): {answer!r}')",
        "    if field != 'coords':",
        "        label = read_label(answer, field)",
        "        if not label:",
        "            break",
        "        known.append(label)",
    ],
    "cells": [
        "messages, cell = [], None",
        "for t, prompt in enumerate(turns):",
        "    # the next turn is told the answered cell at the previous turn's length",
        "    messages.append(user(t, prompt if t == 0 else prompt.format(prev=cell[:chars[t - 1]])))",
        "    answer = ask(messages)",
        "    print(f'turn {t + 1}: {answer!r}')",
        "    cell = read_cell(answer)",
        "    if not cell:",
        "        break",
    ],
}


def usage_code(kind: str, folder: str, base_ref: str, spec, photo: str, budget: int) -> list[str]:
    """The card's code block: load the export with plain transformers (+ PEFT for an adapter)
    and ask it the way it was trained (its env's prompts and turns, its token budget, its image
    budget, which the folder's preprocessor_config.json carries, and its image shape). No
    torchvision needed: the image processor is the PIL one and the image tokens are expanded by
    hand, as AutoProcessor would."""
    from geospot.geo.parse_labels import _STRIP

    how = card_turns(spec)
    setup = {"coordinates": [f"prev_decimals = {list(PREVIOUS_GUESS_DECIMALS)!r}"],
             "labels": [f"fields = {list(how.fields)!r}", f"STRIP = {_STRIP!r}  # around a label answer"],
             "cells": [f"chars = {list(how.chars)!r}", f"STRIP = {_STRIP!r}  # around a cell answer"]}[how.protocol]
    return [
        "import math",
        "import re",
        "import torch",
        "from PIL import Image",
        "from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoTokenizer",
        "",
        f"folder = {folder!r}  # this folder; once uploaded to the Hub, its repo id (\"owner/name\")",
        *_load_lines(kind, folder, base_ref),
        "tokenizer = AutoTokenizer.from_pretrained(folder)",
        "images = AutoImageProcessor.from_pretrained(folder, backend='pil')  # the trained pixel budget",
        f"turns = {list(how.prompts)!r}",
        *setup,
        f"max_new_tokens = {how.max_tokens}",
        "",
        f"image = Image.open({photo!r}).convert('RGB')",
        *(["(w, h), s = image.size, min(image.size)  # trained on square images: ask with the centre square",
           "image = image.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))"]
          if spec.square else []),
        *_views(how.zoom, budget),
        "pixels = [images(images=[v], return_tensors='pt') for v in views]",
        "n_image_tokens = [int(p['image_grid_thw'].prod()) // images.merge_size ** 2 for p in pixels]",
        "# an answer is text: never the image or video placeholder (geospot's sampler bans them too)",
        "placeholders = [tokenizer.convert_tokens_to_ids(t) for t in ('<|image_pad|>', '<|video_pad|>')]",
        "",
        "",
        *_ASK,
        "",
        *_READERS[how.protocol],
        "",
        "",
        *_LOOPS[how.protocol],
    ]


def _views(zoom: int, budget: int) -> list[str]:
    """The card's `views`: the photo each turn brings. zoom > 1: envs/telescoping.py's turn_images
    (a thumbnail zoom x smaller per side than the photo within the pixel budget, each pixel a block's
    mean; then the photo on the second turn); else the photo on the first turn only."""
    if zoom <= 1:
        return ["views = [image]  # the photo comes with the first question"]
    return [
        f"# the first turn sees a thumbnail, {zoom}x smaller per side than the photo within the pixel budget;",
        "# the second turn brings the photo itself (a closer look); later turns bring none",
        f"scale = math.sqrt(min(image.width * image.height, {budget}) / (image.width * image.height)) / {zoom}",
        "thumbnail = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),",
        "                         Image.Resampling.BOX)",
        "views = [thumbnail, image]",
    ]


_COORDS = "`Latitude: <deg>\\nLongitude: <deg>`"


def _answers(how: CardTurns) -> str:
    """What the model answers, in the card's first sentence: its protocol's answers, turn by turn."""
    labels = [f for f in how.fields if f != "coords"]
    if how.protocol == "cells":
        text = "as a geohash cell per turn (`Geohash: <cell>`), each finer than the last"
    elif labels:
        asked = ", ".join(f"`{f.capitalize()}: <name>`" for f in labels)
        text = f"with its place labels turn by turn ({asked}), then {_COORDS}"
    else:
        text = f"as {_COORDS}" + (f", refined over {len(how.prompts)} turns" if len(how.prompts) > 1 else "")
    return text + (", each after reasoning inside `<think></think>`" if how.reasoning else "")


_TOLD = {
    "coordinates": "Later turns show the previous guess in `{prev}`, rounded to the turn's decimals.",
    "labels": "Later turns are told the labels answered so far in `{known}`, finest first (\"Paris, France\").",
    "cells": "Later turns show the previous answer's geohash, cut to the previous turn's length, in `{prev}`.",
}


def model_card(loaded, *, spec, kind: str, eval_dir: str | None = None, folder: str | Path = ".",
               base_ref: str | None = None, photo: str | None = None) -> str:
    """The README.md of an export. `kind`: adapter | merged | full (export.py decides)."""
    run_cfg = (loaded.run_config or {}).get("config", loaded.run_config or {})
    train_kind = (loaded.run_config or {}).get("kind", "training")
    data = spec.data or _pick(run_cfg, "data", "dataset", "train_data", "data_spec")
    rank = f" (rank {spec.lora_rank})" if spec.lora_rank else ""
    side = f", training images {spec.image_side} px on the long side" if spec.image_side else ""
    folder = str(Path(folder).resolve())
    how = card_turns(spec)
    budget = image_budget(spec)  # (reads the model's processor: once)
    reasoning = ", reasoning first (<think>)" if how.reasoning else ""
    zoom = how.zoom
    lines = [
        "---",
        f"base_model: {spec.base_model}",
        "library_name: " + ("peft" if kind == "adapter" else "transformers"),
        "tags: [geolocation, vision-language, geospot]",
        "---",
        "",
        f"# geospot {train_kind} model",
        "",
        f"Fine-tuned from `{spec.base_model}` with geospot to answer where a street-view photo was taken, "
        + _answers(how) + ".",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | `{spec.base_model}` |",
        f"| training | {train_kind}, prompt styles trained: {', '.join(spec.trained_styles)} |",
        f"| data | `{data}` |" if data else "| data | (not recorded) |",
        f"| steps | {_steps(loaded.run_dir, loaded.step)} |",
        *([f"| started from | `{run_cfg['load_checkpoint_path']}` (its weights; its own card tells its training) |"]
          if isinstance(run_cfg.get("load_checkpoint_path"), str) else []),
        f"| weights | {_WEIGHTS[kind].format(rank=rank)} |",
        f"| prompt style | {spec.env_type}{reasoning} ({len(how.prompts)} turn{'s' if len(how.prompts) > 1 else ''}) |",
        f"| answer decimals | {spec.answer_decimals} |",
        f"| image budget | max_pixels={budget}{side} |",
        *(["| image shape | square (photos are asked as their centre square) |"] if spec.square else []),
        f"| max tokens per answer | {how.max_tokens} |",
        f"| checkpoint | `{loaded.checkpoint}` |",
        "",
        "## Prompts",
        "",
        *[f"{i + 1}. `{t!r}`" for i, t in enumerate(how.prompts)],
        "",
        *([_TOLD[how.protocol]] if len(how.prompts) > 1 else []),
        *([f"This run asks with zoom={zoom}: its first turn sees the photo shrunk {zoom}x per side and the second "
           "the full photo, as the code below does."] if zoom > 1 and len(how.prompts) > 1 else []),
        "",
        "## Use",
        "",
        "```python",
        *usage_code(kind, folder, base_ref or spec.base_model, spec, photo or "photo.jpg", budget),
        "```",
        "",
        ("The image processor above is transformers' PIL one, so no torchvision is needed. With torchvision "
        "installed (as on any GPU machine), `AutoProcessor.from_pretrained(folder)` builds the same inputs "
        "in one call; without it, AutoProcessor cannot build the Qwen-VL processor: use the code above."),
        "",
        ("Or with geospot, which asks the model exactly as it was trained (this folder's geospot.json records "
        f"how): `geospot predict model={shlex.quote(folder)} photo.jpg`, or `geospot eval "
        f"model={shlex.quote(folder)} data=<labelled photos>`."),
        "",
    ]
    from geospot.eval.compare import ASKED, compare_table, training_asked

    rows, asked, others = {}, {}, 0
    for s in _find_summaries(loaded.run_dir, eval_dir):
        checkpoint = s.get("checkpoint")
        if eval_dir is None and loaded.step is not None and checkpoint and Path(checkpoint).name != str(loaded.step):
            others += 1  # an eval of another checkpoint of the run says nothing of these weights
            continue
        how = f"{s.get('env_type', 'single')}, {s.get('sampling', 'greedy')}"
        label = f"{s.get('name', '?')}: {s.get('data', '?')} ({how})"
        rows[label], asked[label] = s["metrics"], {k: s.get(k) for k in ASKED}
    training = _training_evals(loaded.run_dir, loaded.step)

    lines += ["## Evaluation", ""]
    if rows:  # evals of other data or images: the table says its best marks say little
        lines += ["`geospot eval` runs of this model:", "", compare_table(rows, asked=asked), ""]
    if others:
        lines += [f"({others} `geospot eval` run{'s' if others > 1 else ''} of other checkpoints of the training run "
                  f"{'are' if others > 1 else 'is'} not shown: they are not these weights.)", ""]
    if training:
        how_asked = training_asked(loaded.run_dir, list(training.values())[-1])
        lines += [f"The training run's held-out evals ({_asked_words(how_asked, spec.env_type)}):", "",
                  compare_table(training), ""]
    if not rows and not training:
        lines += ["No eval found for this run; run `geospot eval model=<run> data=<spec>`.", ""]
    return "\n".join(lines)


def _asked_words(how: dict, card_env: str) -> str:
    """How a training run's loop eval asked (compare.training_asked), said under the card's question:
    the demo's RL run evaluates the single-turn prompt though the card asks its telescoping turns."""
    if not how:
        return "greedy"
    split = {"val": "the val split", "test": "the test split", "heldout": "the held-out ids (val + test)"}
    where = f"{split[how['split']]} of `{how['data']}`" if how["split"] in split else f"`{how['data']}`"
    env = how["env_type"]
    asked = f"env_type={env}" + (f", not the {card_env} turns this card asks with" if env != card_env else "")
    return f"{how['sampling']}, {asked}, on {where}"


def card_code(card_text: str) -> str:
    """The first ```python block of a card (what the tests execute)."""
    start = card_text.index("```python\n") + len("```python\n")
    return card_text[start:card_text.index("```", start)]


def write_model_card(path: str | Path, loaded, *, spec, kind: str, eval_dir: str | None = None,
                     base_ref: str | None = None, photo: str | None = None) -> Path:
    card = Path(path) / "README.md"
    card.write_text(model_card(loaded, spec=spec, kind=kind, eval_dir=eval_dir, folder=path, base_ref=base_ref,
                               photo=photo), encoding="utf-8")
    return card
