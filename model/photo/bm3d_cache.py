"""BM3D's scores on the evaluation's noisy images, kept in a JSON file between evaluations.

BM3D does not depend on the checkpoint being evaluated: on the same clean image, the same noisy
image and the same sigma it scores the same. It is also most of an evaluation's time (about an hour
on a 2-core CPU for 20 images of BSD68 and CBSD68, both protocols), so ``python -m model.evaluate
--bm3d-cache FILE`` keeps every score it measures in ``FILE`` and, next time, reuses any whose
inputs are the same. An entry's key is the sha256 of the clean image, the noisy image, sigma and
the ``bm3d`` package's version: another image, seed, noise protocol or version is a miss, never a
stale hit. Only numbers are kept (PSNR, seconds), so the figure's image is always computed again.
"""

from __future__ import annotations

import hashlib
import json
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from model.checkpoint import atomic_write_bytes


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
        self.entries: dict[str, dict[str, Any]] = {}
        if path is not None and path.is_file():
            data = json.loads(path.read_text())
            if not isinstance(data, dict) or not isinstance(data.get("entries"), dict):
                raise ValueError(f"{path}: not a BM3D cache (expected {{'entries': {{...}}}})")
            self.entries = data["entries"]

    def key(self, clean: bytes, noisy: bytes, sigma: float) -> str:
        digest = hashlib.sha256()
        for part in (clean, noisy, f"{sigma!r}".encode(), self.version.encode()):
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
        """Write the file whole (a crash leaves the old one); nothing without a path."""
        if self.path is None:
            return
        body = {"about": __doc__.split("\n\n")[0] if __doc__ else "", "bm3d": self.version,
                "entries": dict(sorted(self.entries.items()))}
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.path, (json.dumps(body, indent=1) + "\n").encode())
