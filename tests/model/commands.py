"""Running ``python -m model.<command>`` as a user would, and what a mistake must look like."""

from __future__ import annotations

import contextlib
import io
import signal
import subprocess
import sys
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from tests.conftest import ROOT

# what Python's default warning filters hide from a command's stderr
HIDDEN_WARNINGS = (DeprecationWarning, PendingDeprecationWarning, ImportWarning, ResourceWarning)


def run_module(module: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` (on one torch thread, as every process a test starts)."""
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)


def train_tiny_flags(preset: str, data: Path, out: Path, *extra: str) -> list[str]:
    """The flags ``tests.conftest.train_tiny`` gives ``python -m model.train``, then ``extra``: for
    ``run_main(model.train.main, ...)``."""
    return ["--preset", preset, "--data-dir", str(data), "--out", str(out), "--max-steps", "20",
            "--batch-size", "32", "--epochs", "2", "--no-progress", "--device", "cpu", *extra]


def run_main(main: Callable[[list[str] | None], int], *args: str) -> subprocess.CompletedProcess[str]:
    """``main(args)`` of a ``model`` command, in this process, with what ``python -m`` would make of
    it: its exit status, its stdout, and its stderr with the warnings the interpreter would print
    (Python's default filters) after it. For a command whose process is not the point: a mistake it
    refuses, a short run. An exception that is not ``SystemExit`` is raised: the traceback a process
    would print. The process's signal handlers and torch's thread count are put back after it."""
    out, err = io.StringIO(), io.StringIO()
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    threads = torch.get_num_threads()
    try:
        with (warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(out),
              contextlib.redirect_stderr(err)):
            warnings.simplefilter("always")
            try:
                code = main(list(args))
            except SystemExit as exc:  # as the interpreter ends on it
                if exc.code is None or isinstance(exc.code, int):
                    code = exc.code or 0
                else:
                    print(exc.code, file=sys.stderr)
                    code = 1
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        torch.set_num_threads(threads)
    for w in caught:
        if not issubclass(w.category, HIDDEN_WARNINGS):
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno, w.line))
    return subprocess.CompletedProcess(["python", "-m", main.__module__, *args], code, out.getvalue(),
                                       err.getvalue())


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
