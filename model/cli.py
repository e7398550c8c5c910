"""How the command lines of ``model/`` answer ordinary mistakes: one line on stderr, no traceback.

Commands raise ``UsageError`` (or the data loaders' ``DataError``, or ``CheckpointError``) for what
the person running them can fix: missing or malformed data, an unknown preset, a bad value, a
device that is not there. ``run`` prints ``<prog>: error: <message>`` and returns exit code 2;
anything else is a bug and keeps its traceback. This module imports no torch, so ``--help`` stays
fast.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

# (module, class) of the other ordinary mistakes; an exception can only be one of them when its
# module is loaded, so nothing is imported here to check
ORDINARY = (("model.data.loaders", "DataError"), ("model.checkpoint", "CheckpointError"))
# the packages of the ``train`` extra (pyproject.toml), which serving does without
TRAIN_EXTRA = frozenset({"tqdm", "bm3d", "skimage", "matplotlib"})


class UsageError(Exception):
    """A mistake in how a command was called or in the data it was given."""


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    value = int(_number(int, text))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    value = int(_number(int, text))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be an integer >= 0, not {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(float, text)
    if not value > 0.0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive number, not {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(float, text)
    if not 0.0 <= value < float("inf"):  # NaN too
        raise argparse.ArgumentTypeError(f"must be a number >= 0, not {text!r}")
    return value


def fraction(text: str) -> float:
    value = _number(float, text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number between 0 and 1, not {text!r}")
    return value


def _number(kind: Callable[[str], float], text: str) -> int | float:
    try:
        return kind(text)
    except ValueError:
        name = "an integer" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"must be {name}, not {text!r}") from None


def output_folder(path: Path, flag: str = "--out") -> Path:
    """``path`` checked as a folder to write in, before any work rather than after it: a file on
    its way, or a folder there that cannot be written, is a ``UsageError``. Nothing is made: the
    first file written makes it, and a run that fails before leaves no trace."""
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        where = "" if existing == path else f" ({existing} is a file)"
        raise UsageError(f"{flag} {path}: a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path}: {existing} cannot be written")
    return path


def is_ordinary(exc: BaseException) -> bool:
    """Whether ``exc`` is a mistake the person running the command can fix."""
    if isinstance(exc, UsageError):
        return True
    if isinstance(exc, ModuleNotFoundError) and (exc.name or "").split(".")[0] in TRAIN_EXTRA:
        return True
    for module, name in ORDINARY:
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type) and isinstance(exc, cls):
            return True
    return False


def run(prog: str, main: Callable[[list[str] | None], int], argv: Sequence[str] | None = None) -> int:
    """Call ``main(argv)``; an ordinary mistake becomes one line on stderr and exit code 2."""
    try:
        return main(None if argv is None else list(argv))
    except Exception as exc:
        if not is_ordinary(exc):
            raise
        message = " ".join(str(exc).split())
        if isinstance(exc, ModuleNotFoundError):
            message = (f"{message}: this command needs the training extras "
                       "(pip install -e '.[train]')")
        print(f"{prog}: error: {message}", file=sys.stderr)
        return 2
