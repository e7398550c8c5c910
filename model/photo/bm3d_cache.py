"""BM3D's scores on the evaluation's noisy images, kept in a JSON file between evaluations.

BM3D does not depend on the checkpoint being evaluated: on the same clean image, the same noisy
image and the same sigma it scores the same. It is also most of an evaluation's time
(docs/photo-denoiser.md), so ``python -m model.evaluate --bm3d-cache FILE`` keeps every score it
measures in ``FILE`` and, next time, reuses any whose inputs are the same. An entry's key is the
sha256 of the clean image, the noisy image (bytes, shape and type of each), sigma, the ``bm3d``
package's version and ``RECIPE``: another image, seed, noise protocol or version is a miss, not a
stale hit, and a change to how the evaluation runs BM3D or scores it must change ``RECIPE``. Only
numbers are kept (PSNR, seconds), so the figure's image is always computed again.

Several evaluations may share a file: a save takes an exclusive lock (``fcntl.flock`` on
``.FILE.lock`` beside it), reads the file again, adds its entries to those there and replaces the
file whole (a temporary file, then ``os.replace``), so no run loses another's entries and a reader
never sees a torn file.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
from collections.abc import Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from model.checkpoint import atomic_write_bytes
from model.cli import UsageError

# how model/photo/evaluate.py runs and scores BM3D: bm3d.bm3d (gray) or bm3d_rgb (colour) with
# sigma_psd = sigma / 255 on the noisy image in [0, 1]; psnr_8bit of its output, rounded to 8 bits
RECIPE = "bm3d(sigma_psd=sigma/255), bm3d_rgb for colour; psnr_8bit; v1"


def bm3d_version() -> str:
    try:
        return version("bm3d")
    except PackageNotFoundError:
        return "absent"


class Bm3dCache:
    """BM3D's PSNR and seconds by input; ``path`` None keeps nothing (every lookup misses)."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.version = bm3d_version()
        self.entries: dict[str, dict[str, Any]] = self.read() if path is not None else {}

    def read(self) -> dict[str, dict[str, Any]]:
        """The entries in the file (none when there is no file); ``UsageError`` for a file that is
        not a BM3D cache, which is never overwritten."""
        assert self.path is not None
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(f"--bm3d-cache {self.path}: not a BM3D cache (not valid JSON: {exc})") from exc
        if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
            raise UsageError(f"--bm3d-cache {self.path}: not a BM3D cache (expected "
                             "{'entries': {...}})")
        return dict(data["entries"])

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """The file's exclusive lock, held by one save at a time (any process, any thread)."""
        assert self.path is not None
        with (self.path.parent / f".{self.path.name}.lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def key(self, clean: np.ndarray, noisy: np.ndarray, sigma: float) -> str:
        digest = hashlib.sha256()
        parts = [f"{a.dtype.str}{a.shape}".encode() + np.ascontiguousarray(a).tobytes()
                 for a in (clean, noisy)]
        parts += [f"{sigma!r}".encode(), self.version.encode(), RECIPE.encode()]
        for part in parts:
            digest.update(len(part).to_bytes(8, "little"))
            digest.update(part)
        return digest.hexdigest()

    def get(self, key: str) -> tuple[float, float] | None:
        """``(psnr, seconds)`` measured earlier on the same inputs, else None."""
        entry = self.entries.get(key) if self.path is not None else None
        return None if entry is None else (float(entry["psnr"]), float(entry["seconds"]))

    def put(self, key: str, psnr: float, seconds: float, **about: Any) -> None:
        """Keep a score; ``about`` (set, image, sigma, protocol) is for a person reading the file."""
        self.entries[key] = {"psnr": psnr, "seconds": seconds, **about}

    def save(self) -> None:
        """Under the file's lock: add this run's entries to the file's (another run's saved since
        this one read it included) and replace the file whole (a crash leaves the old one);
        nothing without a path."""
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.locked():
            self.entries = {**self.read(), **self.entries}
            body = {"about": __doc__.split("\n\n")[0] if __doc__ else "", "bm3d": self.version,
                    "recipe": RECIPE, "entries": dict(sorted(self.entries.items()))}
            atomic_write_bytes(self.path, (json.dumps(body, indent=1) + "\n").encode())
