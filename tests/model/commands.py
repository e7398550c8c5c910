"""Running ``python -m model.<command>`` as a user would, and what a mistake must look like."""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from tests.conftest import ROOT


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def run_modules_at_once(*commands: tuple[str, ...]) -> list[subprocess.CompletedProcess[str]]:
    """``run_module(*command)`` for each of ``commands``, all running at the same time (their results
    in order): for commands that do not depend on one another, whose time is mostly Python
    starting and importing torch."""
    with ThreadPoolExecutor(len(commands)) as pool:
        return list(pool.map(lambda command: run_module(*command), commands))


def assert_one_line_mistake(result: subprocess.CompletedProcess[str], *words: str) -> None:
    """Exit code 2, one line on stderr naming the problem, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "error:" in lines[0]
    for word in words:
        assert word in lines[0], lines[0]


def modules_loaded_by_help(module: str) -> set[str]:
    """The modules that ``python -m <module> --help`` loads (it must answer without torch)."""
    code = (f"import runpy, sys\ntry:\n    sys.argv = ['{module}', '--help']\n"
            f"    runpy.run_module('{module}', run_name='__main__')\nexcept SystemExit as exc:\n"
            "    assert exc.code == 0, exc.code\nprint('LOADED', ' '.join(sorted(sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return set(out.split("LOADED", 1)[1].split())
