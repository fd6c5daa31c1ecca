"""The import graph of geospot/, every import counted (module level and inside functions):
no file-level cycles, and no upward imports between packages (e.g. eval never imports train)."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent / "geospot"

# A package may import from packages of a lower rank only (and from itself). Entry points sit on top.
RANK = {
    "geospot": 0, "jsonutil": 0, "config": 0, "prompts": 0, "distributed": 0,
    "geo": 1, "runs": 1, "stops": 1,
    "data": 2,
    "models": 3,
    "engines": 4,
    "envs": 5,
    "rl": 6,
    "eval": 7,
    "train": 8, "dashboard": 8, "demo_report": 8,
    "demo_recipe": 9,
    "docs": 10, "demo": 10, "cli": 10, "api": 10,
    "sft": 11, "train_rl": 11,  # the seed's entry points, through cli's dispatcher
    "__main__": 11,
}
KNOWN_CYCLES: list[set[str]] = []  # none: keep it that way


def modules() -> dict[str, Path]:
    out = {}
    for p in ROOT.rglob("*.py"):
        parts = list(p.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def import_graph() -> dict[str, set[str]]:
    """module -> the geospot modules it imports (a `from pkg import name` counts pkg.name when
    that is a module, else pkg)."""
    mods = modules()

    def resolve(name: str) -> str | None:
        while name not in mods and "." in name:
            name = name.rsplit(".", 1)[0]
        return name if name in mods else None

    graph: dict[str, set[str]] = {m: set() for m in mods}
    for m, path in mods.items():
        package = m if path.name == "__init__.py" else m.rsplit(".", 1)[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([node.module] if node.module else []))
                names = [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name) if name.startswith("geospot") else None
                if target and target != m:
                    graph[m].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[set[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                on.discard(w)
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_package_has_a_rank():
    assert sorted({package(m) for m in modules()} - set(RANK)) == []


def test_no_import_cycles():
    found = [c for c in cycles(import_graph()) if c not in KNOWN_CYCLES]
    assert found == []


def test_no_upward_imports():
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if package(a) != package(b) and RANK[package(b)] >= RANK[package(a)] and package(b) != "geospot")
    assert upward == []


def test_the_graph_sees_lazy_imports():
    """A check that can fail: an import inside a function is an edge too."""
    graph = import_graph()
    assert "geospot.engines.vllm_sampler" in graph["geospot.engines"]  # imported inside make_engine


MAX_FILE_LINES = 500  # docs/design.md's house rule: a file longer than this holds more than one job


def test_no_python_file_over_500_lines():
    """The package, its tests, benchmarks and scripts: a file that grows past the limit is split
    by job (as benchmarks/_device_memory.py came out of gpu_check.py)."""
    top = ROOT.parent
    long = {str(p.relative_to(top)): n for d in ("geospot", "tests", "benchmarks", "scripts")
            for p in sorted((top / d).rglob("*.py"))
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_FILE_LINES}
    assert not long, f"files over {MAX_FILE_LINES} lines (split each by job): {long}"
