"""The model card `geospot export` writes next to the weights (README.md, HF style).

It states what a reader needs to trust or reuse the model: the base model, how it was
trained (kind, data, steps, LoRA), how to load it, and the eval table when the run has
one (an eval folder's summary.json: `eval=` or the run folder's own / `eval/` child)."""

from __future__ import annotations

import json
from pathlib import Path

from geospot.eval.predictions import SUMMARY, read_summary


def _find_summaries(run_dir: Path | None, eval_dir: str | None) -> list[dict]:
    cands: list[Path] = []
    if eval_dir:
        p = Path(eval_dir)
        cands.append(p if p.is_file() else p / SUMMARY)
    elif run_dir is not None:
        cands += [run_dir / SUMMARY, *sorted(run_dir.glob(f"eval*/{SUMMARY}")), *sorted(run_dir.glob(f"eval/*/{SUMMARY}"))]
    out = []
    for c in cands:
        try:
            out.append(read_summary(c))
        except (FileNotFoundError, json.JSONDecodeError):
            continue  # no eval there yet, or a half-written summary: the card goes without it
    return out


def _training_evals(run_dir: Path | None, step: int | None) -> dict[str, dict]:
    """The training loop's own held-out evals (`eval/<metric>` lines of metrics.jsonl): the
    first (the base model) and the last one up to the exported step."""
    if run_dir is None:
        return {}
    from geospot.runs.folder import read_jsonl

    evals = [r for r in read_jsonl(run_dir / "metrics.jsonl") if any(k.startswith("eval/") for k in r)]
    evals = [r for r in evals if step is None or r.get("step", 0) <= step]
    if not evals:
        return {}
    picked = [evals[0]] + ([evals[-1]] if len(evals) > 1 else [])
    nan = float("nan")
    return {
        f"training eval, step {r.get('step')}": {k[5:]: (nan if v is None else v) for k, v in r.items() if k.startswith("eval/")}
        for r in picked
    }


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


def model_card(loaded, *, merged: bool, eval_dir: str | None = None) -> str:
    run_cfg = (loaded.run_config or {}).get("config", loaded.run_config or {})
    kind = (loaded.run_config or {}).get("kind", "training")
    data = _pick(run_cfg, "data", "dataset", "train_data", "data_spec")
    env = _pick(run_cfg, "env_type", "prompt_style")
    lora_rank = _pick(run_cfg, "lora_rank")
    lines = [
        "---",
        f"base_model: {loaded.base_model}",
        "library_name: " + ("transformers" if merged else "peft"),
        "tags: [geolocation, vision-language, geospot]",
        "---",
        "",
        f"# geospot {kind} model",
        "",
        f"Fine-tuned from `{loaded.base_model}` with geospot to answer where a "
        "street-view photo was taken, as `Latitude: <deg>\\nLongitude: <deg>`.",
        "",
        "| | |",
        "| --- | --- |",
        f"| base model | `{loaded.base_model}` |",
        f"| training | {kind}{f' ({env})' if env else ''} |",
        f"| data | `{data}` |" if data else "| data | (not recorded) |",
        f"| steps | {loaded.step} |",
        f"| weights | {'merged full model' if merged else f'PEFT LoRA adapter (rank {lora_rank})' if lora_rank else 'PEFT adapter'} |",
        f"| checkpoint | `{loaded.checkpoint}` |",
        "",
        "## Use",
        "",
        "```python",
    ]
    if merged:
        lines += [
            "from transformers import AutoModelForImageTextToText",
            "model = AutoModelForImageTextToText.from_pretrained('<this folder>')",
        ]
    else:
        lines += [
            "from peft import PeftModel",
            "from transformers import AutoModelForImageTextToText",
            f"base = AutoModelForImageTextToText.from_pretrained('{loaded.base_model}')",
            "model = PeftModel.from_pretrained(base, '<this folder>')",
        ]
    lines += [
        "```",
        "",
        "or with geospot: `geospot predict model=<this folder> photo.jpg`" if merged else
        "or with geospot: `geospot predict model=<training run folder> photo.jpg`",
        "",
        "Prompt: the geospot single-turn prompt (`geospot.prompts.SINGLE_TURN_PROMPT`).",
        "",
    ]
    rows = {}
    for s in _find_summaries(loaded.run_dir, eval_dir):
        rows[f"{s.get('name', '?')}: {s.get('data', '?')} ({s.get('env_type', 'single')}, {s.get('sampling', 'greedy')})"] = s["metrics"]
    if not rows and eval_dir is None:
        rows = _training_evals(loaded.run_dir, loaded.step)
    if rows:
        from geospot.eval.compare import compare_table

        lines += ["## Evaluation", "", compare_table(rows), ""]
    else:
        lines += ["## Evaluation", "", "No eval summary found for this run; run `geospot eval model=<run> data=<spec>`.", ""]
    return "\n".join(lines)


def write_model_card(path: str | Path, loaded, *, merged: bool, eval_dir: str | None = None) -> Path:
    card = Path(path) / "README.md"
    card.write_text(model_card(loaded, merged=merged, eval_dir=eval_dir), encoding="utf-8")
    return card
