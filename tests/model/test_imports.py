"""The layout of model/: every module imports, no import cycle, serving imports no training code."""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

MODEL = ROOT / "model"
SERVING = ["model.checkpoint", "model.photo.inference", "model.photo.pair", "model.scoring", "model.networks",
           "model.distributions"]
# all that loading and serving a checkpoint may bring in: anything else (training, evaluation, data,
# noise, metrics, the command line) is kept out of the service
SERVING_MAY_LOAD = {*SERVING, "model", "model.config", "model.kinds", "model.photo", "model.photo.colour",
                    "model.photo.network", "model.photo.noise_level", "model.image_depth"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(MODEL.rglob("*.py"))}


def imports_of(name: str) -> set[str]:
    """The model modules ``name`` imports anywhere in its file (functions included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(MODULES[name].read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in MODULES and t != name}
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt):], nxt] if nxt in path else [node, nxt]
            if nxt not in state and (cycle := visit(nxt, [*path, nxt])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start, [start])):
            return cycle
    return None


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    importlib.import_module(name)


def test_no_import_cycle_in_model() -> None:
    graph = {name: imports_of(name) for name in MODULES}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])
    # the finder itself sees a cycle when there is one
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_serving_modules_load_no_training_or_evaluation_code() -> None:
    code = ("import sys; " + "; ".join(f"import {m}" for m in SERVING)
            + "; print(' '.join(sorted(m for m in sys.modules if m.startswith('model'))))")
    loaded = set(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                check=True).stdout.split())
    assert set(SERVING) <= loaded
    assert loaded - SERVING_MAY_LOAD == set()
    assert set(MODULES) >= SERVING_MAY_LOAD  # the list names real modules

