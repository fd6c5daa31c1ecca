"""Run the benchmarks README's table shows and collect their JSON lines into one file.

    python benchmarks/run_all.py [--out benchmarks/results.json] [--only geo,data] [--timeout 1800]

Each benchmark script prints ONE JSON line (its last stdout line) that names the peer it
was measured against in the same run. This script records them with the date and the
machine, and `python -m geospot.docs` renders README's benchmark table from the file."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from geospot.jsonutil import finite_json

HERE = Path(__file__).resolve().parent
# Order: cheap first, so a time-out late in the list loses the least. Not here, each run on its own:
# envs.py (a warm start plus arms x seeds, run in parallel parts and --merge'd: docs/envs.md),
# distributed.py (2 processes, wants a quiet machine), levers.py (a profiling aid, no peer),
# gpu_check.py and vllm_check.py (a GPU; gpu_check --merge puts a run's JSON in).
BENCHMARKS = ("geo", "data", "eval", "engine", "grpo_step", "credit", "rl_vs_sft", "async_rl")


def machine() -> dict:
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover
        torch_version = None
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch_version,
        "processor": platform.processor() or platform.machine(),
    }


def run_one(name: str, timeout: float) -> dict:
    t0 = time.perf_counter()
    # One torch thread per side unless told otherwise: on a shared 2-core machine two
    # threads oversubscribe and the timings (ours and the peer's) become noise.
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.setdefault("OMP_NUM_THREADS", "1")
    try:
        proc = subprocess.run(
            [sys.executable, str(HERE / f"{name}.py")], capture_output=True, text=True, timeout=timeout, env=env
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    wall = round(time.perf_counter() - t0, 1)
    lines = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {proc.returncode}: " + " | ".join(tail), "wall_s": wall}
    result = json.loads(lines[-1])
    result["wall_s"] = wall
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(HERE / "results.json"))
    ap.add_argument("--only", default="", help="comma-separated subset of: " + ",".join(BENCHMARKS))
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per benchmark")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or list(BENCHMARKS)
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(BENCHMARKS)}")

    out = Path(args.out)
    previous = json.loads(out.read_text()) if out.exists() else {}
    # each result keeps the date it was measured on, so a partial run (--only) does not relabel the rest
    results = {k: {"date": previous.get("date"), **v} for k, v in previous.get("results", {}).items()}
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    for name in names:
        print(f"[run_all] {name} ...", file=sys.stderr, flush=True)
        results[name] = {"date": today, **run_one(name, args.timeout)}
        print(json.dumps(finite_json({name: results[name]})), flush=True)
    doc = {
        "date": today,
        "machine": machine(),
        "results": results,
    }
    out.write_text(json.dumps(finite_json(doc), indent=1, sort_keys=False) + "\n")  # strict JSON: NaN -> null
    print(f"[run_all] wrote {out}", file=sys.stderr)
    return 0 if all("error" not in results[n] for n in names) else 1


if __name__ == "__main__":
    sys.exit(main())
