"""Shared fixtures: a tiny MNIST-format data set and small checkpoints made by the training code."""

from __future__ import annotations

import gzip
import struct
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
# The environment of a torch process of the tests: one thread. Their tensors are small, and two
# threads on a busy machine (runs at once, servers, the rest of the suite) wait for each other at
# every operation: minutes where one thread takes seconds. The weights come out the same.
ONE_THREAD = {"OMP_NUM_THREADS": "1"}


@pytest.fixture(scope="session", autouse=True)
def one_thread_processes() -> Iterator[None]:
    """Every process a test starts (``python -m app``, ``python -m model.train``, torchrun's ranks,
    the evaluation's BM3D workers) runs torch on one thread unless told otherwise (``--threads``,
    ``AESERVE_TORCH_THREADS``): they read ``OMP_NUM_THREADS``."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in ONE_THREAD.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Each test starts on one torch thread in this process too, and leaves the count as it found
    it: a test may set another (an app's ``torch_threads``, a command's ``--threads``)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def write_idx_images(path: Path, images: np.ndarray) -> None:
    """Write uint8 images (N, H, W) as a gzip'd IDX3 file, the format of MNIST's files."""
    n, h, w = images.shape
    with gzip.open(path, "wb") as fh:
        fh.write(struct.pack(">IIII", 2051, n, h, w))
        fh.write(images.astype(np.uint8).tobytes())


def make_digits(n: int, seed: int) -> np.ndarray:
    """Synthetic 28x28 'digits': random bright strokes on black, MNIST-like statistics."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), dtype=np.uint8)
    for img in images:
        for _ in range(3):
            r0, c0 = rng.integers(4, 24, size=2)
            r1, c1 = rng.integers(4, 24, size=2)
            for t in np.linspace(0.0, 1.0, 30):
                r, c = int(r0 + t * (r1 - r0)), int(c0 + t * (c1 - c0))
                img[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2] = 255
    return images


@pytest.fixture(scope="session")
def tiny_mnist_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("tiny-mnist")
    write_idx_images(folder / "train-images-idx3-ubyte.gz", make_digits(600, 0))
    write_idx_images(folder / "t10k-images-idx3-ubyte.gz", make_digits(100, 1))
    return folder


def train_tiny(preset: str, data_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m model.train`` for a few steps on the tiny data set, as a user would.

    On one torch thread (``one_thread_processes``), which the recorded command does not show."""
    cmd = [
        sys.executable, "-m", "model.train", "--preset", preset, "--data-dir", str(data_dir),
        "--out", str(out), "--max-steps", "20", "--batch-size", "32", "--epochs", "2",
        "--no-progress", "--device", "cpu", *extra,
    ]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)


def train_tiny_at_once(*runs: tuple[Any, ...]) -> list[subprocess.CompletedProcess[str]]:
    """``train_tiny(*run)`` for each of ``runs``, all running at the same time (their results in
    order): for runs that do not depend on one another, most of whose time is Python starting and
    importing torch."""
    with ThreadPoolExecutor(len(runs)) as pool:
        return list(pool.map(lambda run: train_tiny(*run), runs))


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory: pytest.TempPathFactory, tiny_mnist_dir: Path) -> Path:
    """A checkpoint directory holding ``mnist-dae`` and ``mnist-vae`` trained for 20 steps.

    The VAE is the preset narrowed to a 32-d latent, so that it stays small and fast in the tests.
    """
    root = tmp_path_factory.mktemp("checkpoints")
    small: dict[str, tuple[str, ...]] = {
        "mnist-dae": (),
        "mnist-vae": ("--hidden", "32", "64", "--extra-convs", "0", "--latent-dim", "32"),
    }
    results = train_tiny_at_once(*((preset, tiny_mnist_dir, root / preset, *extra)
                                   for preset, extra in small.items()))  # the API speaks 32-d latents
    for result in results:
        assert result.returncode == 0, result.stderr[-2000:]
    return root


def make_photos(folder: Path, n: int, size: int, seed: int) -> Path:
    """Gray PNG 'photographs': smooth gradients with a few flat shapes, ``size`` x ``size``."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    for i in range(n):
        img = 60 + 120 * (rng.uniform() * xx + rng.uniform() * yy)
        for _ in range(4):
            r0, c0 = rng.integers(0, size - 8, size=2)
            h, w = rng.integers(4, size // 2, size=2)
            img[r0 : r0 + h, c0 : c0 + w] = rng.uniform(0, 255)
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "L").save(folder / f"photo_{i:03d}.png")
    return folder


@pytest.fixture(scope="session")
def tiny_photo_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint directory holding only ``photo-denoiser``, trained for 4 steps on 6 photos."""
    data = make_photos(tmp_path_factory.mktemp("tiny-photos"), 6, 64, 0)
    root = tmp_path_factory.mktemp("photo-checkpoints")
    cmd = [
        sys.executable, "-m", "model.train", "--preset", "photo-denoiser", "--data-dir", str(data),
        "--out", str(root / "photo-denoiser"), "--max-steps", "4", "--batch-size", "4", "--epochs", "1",
        "--threads", "1", "--no-progress", "--device", "cpu", "--hidden", "8", "16", "32", "64",
    ]
    result = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return root
