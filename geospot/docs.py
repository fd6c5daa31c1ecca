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
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    parts = []
    for title, cls in [
        ("`geospot sft` / `python -m geospot.sft` (SFTConfig)", SFTConfig),
        ("`geospot rl` / `python -m geospot.train_rl` (RLConfig)", RLConfig),
        ("Engine (EngineConfig; its keys are accepted by sft and rl)", EngineConfig),
        ("Data stream options (StreamConfig; `key=value` inside a data spec's options)", StreamConfig),
    ]:
        parts.append(f"#### {title}\n\n{markdown_table(cls)}\n")
    return "\n".join(parts)


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


# benchmark -> (what it measures, our key, peer key, ratio key)
HEADLINES = {
    "geo": ("haversine pairs/s (1 core)", "haversine_pairs_per_s", "peer_numpy_naive_pairs_per_s", "ratio_vs_numpy_naive"),
    "geo ": ("reverse-geocode points/s", "reverse_geocode_points_per_s", "peer_reverse_geocoder_search_mode1_points_per_s", "ratio_vs_reverse_geocoder_search"),
    "data": ("decode+resize images/s from shards", None, None, "ratio"),
    "eval": ("greedy eval images/s (batched vs 1-by-1)", "batched_images_per_s", "one_by_one_images_per_s", "ratio"),
    "engine": ("sample 8x32 tokens + LoRA step", None, None, "ratio"),
    "grpo_step": ("GRPO step rollouts/s vs TRL GRPOTrainer", None, None, "ratio"),
    "credit": ("telescoping credit: per-turn vs trajectory", None, None, None),
    "rl_vs_sft": ("GRPO vs equal-time SFT (held-out GeoScore)", None, None, None),
}


def benchmark_table(results_path: Path = RESULTS) -> str:
    if not results_path.exists():
        return "_No results yet: run `python benchmarks/run_all.py`._\n"
    doc = json.loads(results_path.read_text())
    m = doc.get("machine", {})
    lines = [
        f"Measured {doc.get('date', '?')} on {m.get('cpus', '?')} CPU cores ({m.get('platform', '?')}, "
        f"torch {m.get('torch', '?')}); each row's peer ran in the same process run. Machines are noisy: read the ratios.",
        "",
        "| benchmark | what | ours | peer | ratio |",
        "| --- | --- | --- | --- | --- |",
    ]
    results = doc.get("results", {})
    for key, (what, ours, peer, ratio) in HEADLINES.items():
        r = results.get(key.strip())
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {key.strip()} | {what} | error: {r['error'][:80]} | | |")
            continue
        ours_v = r.get(ours) if ours else r.get("ours", r.get("summary", ""))
        peer_v = r.get(peer) if peer else r.get("peer", "")
        ratio_v = r.get(ratio) if ratio else r.get("verdict", "")
        lines.append(f"| {key.strip()} | {what} | {_fmt(ours_v)} | {_fmt(peer_v)} | {_fmt(ratio_v)} |")
    lines.append("")
    lines.append("Full JSON lines: `benchmarks/results.json`.")
    return "\n".join(lines) + "\n"


SECTIONS = {"config": config_reference, "benchmarks": benchmark_table}


def render(text: str) -> str:
    for name, fn in SECTIONS.items():
        pat = re.compile(
            rf"(<!-- BEGIN generated:{name} -->\n)(.*?)(<!-- END generated:{name} -->)", re.DOTALL
        )
        if not pat.search(text):
            raise SystemExit(f"README.md has no generated:{name} section markers")
        text = pat.sub(lambda m: m.group(1) + fn() + m.group(3), text)
    return text


def main(argv: list[str] | None = None) -> int:
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
