"""The layout of app/: no import cycle; from model/ only what serving may load (``SERVING_MAY_LOAD``:
the loader, the networks, inference, the gray-depth scaling of uploads); one way
(bench -> app -> model); the routers on top, imported only by the app that includes them."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT
from tests.model.test_imports import SERVING_MAY_LOAD, find_cycle


def modules(folder: str) -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / folder).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


APP = modules("app")


def imported(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, anywhere in the file."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
    return names


def test_no_import_cycle_in_app() -> None:
    graph = {name: {m for m in imported(path) if m in APP and m != name}
             for name, path in APP.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_imports_go_one_way() -> None:
    for name, path in APP.items():
        assert not {m for m in imported(path) if m.split(".")[0] == "bench"}, name
    for name, path in modules("model").items():
        assert not {m for m in imported(path) if m.split(".")[0] in ("app", "bench")}, name


def test_only_the_app_imports_the_routers() -> None:
    """The routers sit on top of app/: what they share lives below them, in app/, and only
    ``app.main``, which includes them, imports them."""
    for name, path in APP.items():
        if name == "app.main" or name.startswith("app.routers"):
            continue
        assert not {m for m in imported(path) if m.split(".")[:2] == ["app", "routers"]}, name
    assert {m for m in imported(APP["app.main"]) if m.startswith("app.routers")}  # the rule sees them


def test_serving_loads_no_training_or_evaluation_code() -> None:
    code = ("import sys, app.main, app.registry, app.kinds\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('model'))))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                            timeout=120, check=True)
    loaded = set(result.stdout.split())
    assert "model.checkpoint" in loaded and "model.photo.inference" in loaded
    assert loaded <= SERVING_MAY_LOAD, loaded - SERVING_MAY_LOAD  # no training, data or evaluation
