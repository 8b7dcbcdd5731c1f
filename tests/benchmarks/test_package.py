"""The benchmarks as a package: importable as ``benchmarks.NAME``, runnable as scripts, no import
circle, and the fast planner settings written once (in the presets)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = sorted(p.stem for p in (ROOT / "benchmarks").glob("*.py") if p.stem != "__init__")


def _imports() -> dict[str, set[str]]:
    """Each benchmark module's imports of other benchmark modules."""
    graph = {}
    for name in SCRIPTS:
        tree = ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text())
        graph[name] = {
            node.module.split(".")[1]
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("benchmarks.")
        }
    return graph


def test_benchmark_modules_import_each_other_without_a_circle() -> None:
    graph = _imports()
    assert graph["plan_speed"] and "common" in graph["grid"]  # the scan sees imports

    def visit(name: str, path: tuple[str, ...]) -> None:
        for dep in graph[name]:
            assert dep not in path, f"import circle {' -> '.join((*path, dep))}"
            visit(dep, (*path, dep))

    for name in graph:
        visit(name, (name,))


def test_no_benchmark_imports_a_sibling_by_its_bare_name() -> None:
    for name in SCRIPTS:
        tree = ast.parse((ROOT / "benchmarks" / f"{name}.py").read_text())
        bare = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module in SCRIPTS]
        assert not bare, f"{name} imports {bare}: use benchmarks.NAME"


@pytest.mark.parametrize("how", ["module", "script"])
def test_a_benchmark_runs_as_a_module_and_as_a_script(how: str, tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "benchmarks.learning_curves", "--help"]
    if how == "script":
        cmd = [sys.executable, str(ROOT / "benchmarks" / "learning_curves.py"), "--help"]
    out = subprocess.run(cmd, cwd=ROOT if how == "module" else tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout


def test_the_fast_settings_are_the_presets() -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks import common, grid
    from diffplan.presets import get_preset

    fast = common.fast_settings()
    plan = get_preset("small-dit").plan
    assert fast == {k: getattr(plan, k) for k in fast}
    assert grid.FAST == fast and grid.PLANNERS["diffplan"].plan == fast
