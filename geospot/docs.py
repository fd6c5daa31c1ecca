"""README's generated sections: the configuration reference (from the config classes)
and the benchmark table (from benchmarks/results.json). `python -m geospot.docs` rewrites
them in place; tests/test_docs.py fails when README has drifted from the code.

A generated section sits between `<!-- BEGIN generated:NAME -->` and
`<!-- END generated:NAME -->`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from geospot.config import markdown_table

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
RESULTS = ROOT / "benchmarks" / "results.json"


def config_reference() -> str:
    from geospot.data.stream import StreamConfig
    from geospot.engines.config import EngineConfig
    from geospot.eval.cli_config import EvalConfig, PredictConfig
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    parts = []
    for title, cls in [
        ("`geospot sft` / `python -m geospot.sft` (SFTConfig)", SFTConfig),
        ("`geospot rl` / `python -m geospot.train_rl` (RLConfig)", RLConfig),
        ("`geospot eval` (EvalConfig)", EvalConfig),
        ("`geospot predict` (PredictConfig)", PredictConfig),
        ("Engine (EngineConfig; its keys are accepted by sft and rl)", EngineConfig),
        ("Data stream options (StreamConfig; `key=value` inside a data spec's options)", StreamConfig),
    ]:
        parts.append(f"#### {title}\n\n{markdown_table(cls)}\n")
    return "\n".join(parts)


def _fmt(v) -> str:
    if isinstance(v, list):
        return ", ".join(map(str, v)) or "none"
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# rows: (benchmark, what it measures, our value, the peer's value, ratio) as dotted paths
# into that benchmark's JSON line; None = not shown.
HEADLINES = [
    (
        "geo",
        "haversine pairs/s, 1 core (peer: textbook numpy)",
        "haversine_pairs_per_s",
        "peer_numpy_naive_pairs_per_s",
        "ratio_vs_numpy_naive",
    ),
    (
        "geo",
        "reverse-geocode points/s (peer: reverse_geocoder.search)",
        "reverse_geocode_points_per_s",
        "peer_reverse_geocoder_search_mode1_points_per_s",
        "ratio_vs_reverse_geocoder_search",
    ),
    (
        "data",
        "decode+resize 512 px images/s from shards, 2 threads (peer: webdataset)",
        "osv_geospot_2_threads_images_per_s",
        "osv_peer_images_per_s",
        "osv_ratio_vs_peer_wall",
    ),
    (
        "data",
        "decode+resize from 1536 px originals, 2 threads (peer: webdataset)",
        "big1536_geospot_2_threads_images_per_s",
        "big1536_peer_images_per_s",
        "big1536_ratio_vs_peer_wall",
    ),
    ("data", "synthetic world images/s at 224 px, 1 core", "synthetic_224_images_per_s_1core", None, None),
    ("eval", "greedy eval images/s (peer: one by one)", "batched_images_per_s", "one_by_one_images_per_s", "ratio"),
    (
        "engine",
        "sample 8x32 tokens, 448 px, small model, s (peer: HF generate)",
        "results.-1.ours_sample_s",
        "results.-1.hf_generate_s",
        "ratio",
    ),
    (
        "engine",
        "one LoRA train step, small model, s (peer: PEFT fwd+bwd)",
        "results.-1.ours_train_step_s",
        "results.-1.hf_peft_train_step_s",
        "train_ratio",
    ),
    (
        "engine",
        "3 telescoping turns x 8 rollouts, small model, s (peer: no KV reuse across turns)",
        "results.-1.telescoping_3turn_s_on",
        "results.-1.telescoping_3turn_s_off",
        "results.-1.telescoping_speedup_kv_reuse",
    ),
    (
        "engine",
        "the same 3 turns: prefill tokens processed (peer: no KV reuse)",
        "results.-1.telescoping_prefill_processed_on",
        "results.-1.telescoping_prefill_processed_off",
        None,
    ),
    (
        "grpo_step",
        "GRPO step rollouts/s (peer: TRL GRPOTrainer)",
        "ours.rollouts_per_s",
        "trl.rollouts_per_s",
        "ratio_rollouts_per_s",
    ),
    ("grpo_step", "token efficiency (needed / processed)", "ours.token_efficiency", "trl.token_efficiency", None),
    ("grpo_step", "peak RSS, MB", "ours.peak_rss_mb", "trl.peak_rss_mb", "ratio_peak_rss"),
    (
        "async_rl",
        "GRPO s/step at Tinker-log latencies, max_steps_off_policy=1 (peer: synchronous)",
        "timing.k1.wall_per_step_s",
        "timing.k0.wall_per_step_s",
        "speedup_k1",
    ),
    # benchmarks/gpu_check.py: a Qwen2.5-VL-3B-shaped model on one GPU ({device} = the card it ran on)
    (
        "gpu_check",
        "{device}: GRPO step 8x8 rollouts/s, 3B shape, bf16 (peer: TRL GRPOTrainer)",
        "phases.grpo_torch.rollouts_per_s",
        "phases.trl.rollouts_per_s",
        "ratio_rollouts_per_s",
    ),
    (
        "gpu_check",
        "{device}: the same with sampler=vllm (peer: TRL + colocated vLLM)",
        "phases.grpo_vllm.rollouts_per_s",
        "phases.trl_vllm.rollouts_per_s",
        "ratio_vllm_rollouts_per_s",
    ),
    (
        "gpu_check",
        "{device}: sampler-vs-trainer logprob gap, mean (ours: torch sampler, peer column: vllm)",
        "phases.grpo_torch.logprob_gap_mean",
        "phases.grpo_vllm.logprob_gap_mean",
        None,
    ),
    (
        "gpu_check",
        "{device}: GRPO step peak GiB, training part (peer: TRL's step)",
        "phases.grpo_torch.train_peak_gb",
        "phases.trl.step_peak_gb",
        None,
    ),
    (
        "gpu_check",
        "{device}: SFT step s, LoRA r32 (peer column: full fine-tuning)",
        "phases.sft_lora.step_s",
        "phases.sft_full.step_s",
        None,
    ),
    (
        "gpu_check",
        "{device}: 3 telescoping turns x 8 rollouts, s (peer: no KV reuse)",
        "phases.kv_reuse.telescoping_3turn_s_on",
        "phases.kv_reuse.telescoping_3turn_s_off",
        "phases.kv_reuse.telescoping_speedup_kv_reuse",
    ),
    ("gpu_check", "{device}: phases that failed (errors in results.json)", "phases_failed", None, None),
]


def _get(obj, path: str | None):
    if path is None:
        return None
    for part in path.split("."):
        if isinstance(obj, list):
            obj = obj[int(part)] if obj else None
        elif isinstance(obj, dict):
            obj = obj.get(part)
        if obj is None:
            return None
    return obj


def _status(obj, path: str | None) -> str | None:
    """'error' / 'skipped' when the value is missing because the part that measures it (the
    dict above it, e.g. one gpu_check phase) failed or was skipped."""
    if path is None or "." not in path:
        return None
    parent = _get(obj, path.rsplit(".", 1)[0])
    if isinstance(parent, dict):
        return "error" if "error" in parent else "skipped" if "skipped" in parent else None
    return None


def benchmark_table(results_path: Path = RESULTS) -> str:
    if not results_path.exists():
        return "_No results yet: run `python benchmarks/run_all.py`._\n"
    doc = json.loads(results_path.read_text())
    m = doc.get("machine", {})
    lines = [
        f"Measured {doc.get('date', '?')} on {m.get('cpus', '?')} CPU cores ({m.get('platform', '?')}, "
        f"torch {m.get('torch', '?')}), one torch thread per side, other jobs sharing the machine; each peer ran "
        "in the same run. Read the ratios, not the absolute numbers.",
        "",
        "| benchmark | what | ours | peer | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    results = doc.get("results", {})
    for name, what, ours, peer, ratio in HEADLINES:
        r = results.get(name)
        if r is None:
            continue
        what = what.format(device=str(r.get("device", "?")) + (" (DRY RUN, tiny shape)" if r.get("dry_run") else ""))
        # a row kept from an earlier run_all (--only ran the others) names its own date
        label = name if r.get("date") in (None, doc.get("date")) else f"{name} ({r['date']})"
        if "error" in r:
            lines.append(f"| {label} | {what} | error: {str(r['error'])[:80]} | | |")
            continue
        cells = [_get(r, p) if _get(r, p) is not None else _status(r, p) for p in (ours, peer, ratio)]
        lines.append(f"| {label} | {what} | " + " | ".join("" if c is None else _fmt(c) for c in cells) + " |")
    gpu = results.get("gpu_check")
    if gpu and "error" not in gpu:
        what = ("a DRY RUN: the tiny shape on CPU, not a GPU measurement" if gpu.get("dry_run")
                else "random weights in Qwen2.5-VL-3B's shape")
        lines += ["", f"gpu_check rows: measured {gpu.get('date', '?')} on {gpu.get('device', '?')} (torch "
                  f"{gpu.get('torch', '?')}) by `benchmarks/gpu_check.py`, {what}; see [docs/gpu.md](docs/gpu.md)."]
    lines.append("")
    lines.append("All numbers: `benchmarks/results.json`. RL-vs-SFT and credit-assignment studies: see below.")
    return "\n".join(lines) + "\n"


SECTIONS = {"config": config_reference, "benchmarks": benchmark_table}


def render(text: str) -> str:
    for name, fn in SECTIONS.items():
        pat = re.compile(rf"(<!-- BEGIN generated:{name} -->\n)(.*?)(<!-- END generated:{name} -->)", re.DOTALL)
        if not pat.search(text):
            raise SystemExit(f"README.md has no generated:{name} section markers")
        text = pat.sub(lambda m, fn=fn: m.group(1) + fn() + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args:
        print("usage: python -m geospot.docs   (rewrites README.md's generated sections: the configuration "
              "reference and the benchmark table; no options)", file=sys.stderr if args[0] not in ("-h", "--help")
              else sys.stdout)
        return 0 if args[0] in ("-h", "--help") else 2
    old = README.read_text()
    new = render(old)
    if new != old:
        README.write_text(new)
        print("README.md: generated sections updated")
    else:
        print("README.md: up to date")
    return 0


if __name__ == "__main__":
    sys.exit(main())
