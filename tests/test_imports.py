"""The house's seams: no import circles among the project's modules, and reading results needs
no training code (a report can be made where torch is not installed)."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = {"mtrl_bench": "mtrl_bench", "mtrl_bench_methods": "methods",
            "mtrl_bench_envs": "envs"}


def import_arrows() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere in its code (lazy imports too)."""
    modules = {}
    for package, folder in PACKAGES.items():
        for path in (REPO / folder).glob("*.py"):
            modules[package if path.stem == "__init__" else f"{package}.{path.stem}"] = path
    arrows: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                targets = [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                continue
            arrows[name] |= {t for t in targets if t in modules and t != name}
    return arrows


def circles(arrows: dict[str, set[str]]) -> list[list[str]]:
    """Every import circle, found as a path that comes back to where it started."""
    found, done = [], set()

    def walk(node: str, path: list[str]) -> None:
        for nxt in sorted(arrows[node]):
            if nxt in path:
                circle = path[path.index(nxt):]
                if frozenset(circle) not in done:
                    done.add(frozenset(circle))
                    found.append(circle)
            elif len(path) < 12:
                walk(nxt, [*path, nxt])

    for start in sorted(arrows):
        walk(start, [start])
    return found


def test_no_module_imports_itself_round_about():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c"]]  # the check works
    assert circles(import_arrows()) == []


def test_reading_results_imports_no_training_code():
    code = ("import sys; from mtrl_bench.results import collect, mask_activity; "
            "collect('results/table1'); mask_activity('results/table1'); "
            "print(sorted(m for m in ('torch', 'mtrl_bench.trainer', 'mtrl_bench.model', "
            "'mtrl_bench.data', 'mtrl_bench.evaluation', 'mtrl_bench.reference') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         timeout=300, check=True).stdout
    assert out.strip() == "[]"
