"""What the benchmarks serve and send: a snapshot of the checkpoints, and the request bodies (one
noisy 28x28 digit as PNG, wrapped in multipart)."""

from __future__ import annotations

import io
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

BOUNDARY = "aeservebenchboundary"


def snapshot_checkpoints(checkpoints: Path, into: Path, names: Sequence[str] | None = None) -> Path:
    """Copy the model folders ``names`` (default: all) of ``checkpoints`` into ``into``, without
    training state (hidden files), so that a training run writing there meanwhile cannot change
    what is measured; returns ``into``."""
    into.mkdir(parents=True, exist_ok=True)
    for folder in ([checkpoints / n for n in names] if names is not None
                   else [p for p in checkpoints.iterdir() if p.is_dir() and not p.name.startswith(".")]):
        shutil.copytree(folder, into / folder.name, ignore=shutil.ignore_patterns(".*"))
    return into


def digit_png(seed: int = 0) -> bytes:
    """A 28x28 stroke 'digit' with Gaussian noise (sigma 0.3), as an MNIST-like PNG."""
    rng = np.random.default_rng(seed)
    img = np.zeros((28, 28), dtype=np.float32)
    for _ in range(3):
        r0, c0, r1, c1 = rng.integers(5, 23, size=4)
        for t in np.linspace(0.0, 1.0, 30):
            r, c = int(r0 + t * (r1 - r0)), int(c0 + t * (c1 - c0))
            img[r - 1 : r + 2, c - 1 : c + 2] = 1.0
    noisy = np.clip(img + rng.normal(0.0, 0.3, img.shape), 0.0, 1.0)
    buf = io.BytesIO()
    Image.fromarray((noisy * 255 + 0.5).astype(np.uint8), "L").save(buf, format="PNG")
    return buf.getvalue()


def multipart(png: bytes, field: str = "image") -> tuple[str, bytes]:
    """(Content-Type, body) of a multipart/form-data upload of ``png`` in ``field``."""
    head = (
        f"--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{field}\"; filename=\"digit.png\"\r\n"
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + png + f"\r\n--{BOUNDARY}--\r\n".encode()
    return f"multipart/form-data; boundary={BOUNDARY}", body
