"""README's configuration reference and benchmark table are generated; they must match."""

from geospot import docs


def test_readme_generated_sections_are_current():
    text = docs.README.read_text()
    assert docs.render(text) == text, "README.md drifted from the code: run `python -m geospot.docs`"


def test_config_reference_lists_every_key():
    import dataclasses

    from geospot.eval.cli_config import EvalConfig, PredictConfig
    from geospot.train.rl import RLConfig
    from geospot.train.sft import SFTConfig

    ref = docs.config_reference()
    for cls in (SFTConfig, RLConfig, EvalConfig, PredictConfig):
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in ref


def test_a_partial_benchmark_run_keeps_each_results_date(tmp_path, monkeypatch):
    """run_all --only geo re-measures geo; data keeps the date it was measured on, and the README
    table says so on its row instead of labelling it with the new run's date."""
    import importlib
    import json
    import sys

    monkeypatch.syspath_prepend(str(docs.ROOT / "benchmarks"))
    run_all = importlib.import_module("run_all")
    monkeypatch.setattr(run_all, "run_one", lambda name, timeout: {"pairs_per_s": 3.0, "peer_pairs_per_s": 1.0})
    path = tmp_path / "results.json"
    path.write_text(json.dumps({"date": "2026-11-26", "machine": {}, "results": {
        "geo": {"pairs_per_s": 1.0}, "data": {"images_per_s": 7.0}}}))
    assert run_all.main(["--out", str(path), "--only", "geo"]) == 0
    doc = json.loads(path.read_text())
    assert doc["results"]["data"]["date"] == "2026-11-26"
    assert doc["results"]["geo"]["date"] == doc["date"] != "2026-11-26"
    table = docs.benchmark_table(path)
    assert "| data (2026-11-26) |" in table and "| geo |" in table and "| geo (" not in table
    sys.modules.pop("run_all", None)


def _anchor(heading: str) -> str:
    """GitHub's anchor of a markdown heading: lower case, punctuation dropped, spaces -> '-'."""
    import re

    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_every_relative_link_in_the_docs_resolves():
    """README.md and docs/*.md: a link to a file names one that exists, and a #fragment names a
    heading of that file (a renamed heading broke README's link into docs/rl_vs_sft.md)."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    pages = [root / "README.md", *sorted((root / "docs").glob("*.md"))]
    anchors = {}
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        anchors[page.resolve()] = {_anchor(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}
    broken = []
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.DOTALL)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z]+:", target):
                continue  # http(s), mailto: not checked offline
            path, _, frag = target.partition("#")
            dest = (page.parent / path).resolve() if path else page.resolve()
            if not dest.exists():
                broken.append(f"{page.name}: {target} (no such file)")
            elif frag and dest.suffix == ".md" and frag not in anchors.get(dest, set()):
                broken.append(f"{page.name}: {target} (no such heading)")
    assert not broken, broken
