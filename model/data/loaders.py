"""Datasets: MNIST's IDX files, a folder of PNG/JPEG images, or a torchvision dataset.

Everything comes back as a uint8 tensor (N, C, H, W) held in memory; the train/validation split is a
seeded permutation of the train set, and the test split is only ever used for reporting.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from model.image_depth import eight_bit

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
MNIST_FILES = {"train": "train-images-idx3-ubyte", "test": "t10k-images-idx3-ubyte"}
SPLIT_SEED = 12345  # the validation split does not move with the training seed


class DataError(Exception):
    """Data that is missing or malformed; the message names the file or folder and the problem."""


def read_idx_images(path: Path) -> np.ndarray:
    """Parse an IDX3 image file (optionally gzip'd): big-endian magic 2051, count, rows, cols."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            data = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: unreadable ({exc})") from exc
    if len(data) < 16:
        raise DataError(f"{path}: too short for an IDX header")
    magic, count, rows, cols = struct.unpack(">IIII", data[:16])
    if magic != 2051:
        raise DataError(f"{path}: bad IDX magic {magic} (expected 2051)")
    expected = 16 + count * rows * cols
    if len(data) != expected:
        raise DataError(f"{path}: {len(data)} bytes, header promises {expected}")
    return np.frombuffer(data, dtype=np.uint8, offset=16).reshape(count, 1, rows, cols)


def find_mnist_file(data_dir: Path, split: str) -> Path:
    stem = MNIST_FILES[split]
    for name in (stem + ".gz", stem, stem.replace("-idx3", ".idx3")):
        candidate = data_dir / name
        if candidate.is_file():
            return candidate
    raise DataError(f"no MNIST {split} images ({stem}.gz) in {data_dir} "
                    "(python -m model.data check --data-dir DIR says what a data folder needs)")


def load_image_folder(
    folder: Path, channels: int, size: tuple[int, int] | None = None
) -> list[np.ndarray]:
    """Every image in ``folder`` (sorted by name) as uint8 (C, H, W); resized when ``size`` given."""
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder "
                        "(python -m model.data check --data-dir DIR says what a data folder needs)")
    paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not paths:
        raise DataError(f"{folder}: no PNG/JPEG images")
    images = []
    for path in paths:
        try:
            with Image.open(path) as src:
                img = eight_bit(src).convert("L" if channels == 1 else "RGB")
        except (OSError, ValueError) as exc:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"{path}: not a readable image ({exc})") from exc
        if size is not None:
            img = img.resize((size[1], size[0]), Image.Resampling.BICUBIC)
        arr = np.asarray(img, dtype=np.uint8)
        images.append(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1))
    return images


def load_torchvision(name: str, root: Path, train: bool) -> np.ndarray:
    """A torchvision dataset by class name (needs torchvision and, the first time, a network)."""
    import torchvision

    cls = getattr(torchvision.datasets, name)
    ds = cls(root=str(root), train=train, download=True)
    data = np.asarray(ds.data)
    return data[:, None] if data.ndim == 3 else data.transpose(0, 3, 1, 2)


@dataclass
class Splits:
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor | None
    description: dict[str, object]


def load_splits(
    dataset: str,
    data_dir: Path,
    channels: int,
    image_size: tuple[int, int],
    val_fraction: float,
    limit: int = 0,
) -> Splits:
    """Train/validation (carved from train with a fixed seed) and test, as uint8 tensors."""
    data_dir = Path(data_dir)
    test: np.ndarray | None
    if dataset == "mnist":
        train = read_idx_images(find_mnist_file(data_dir, "train"))
        try:
            test_file = find_mnist_file(data_dir, "test")
        except DataError:  # no test files: training needs none (a corrupt one still stops)
            test = None
        else:
            test = read_idx_images(test_file)
    elif dataset == "folder":
        train = np.stack(load_image_folder(data_dir, channels, image_size))
        test = None
    elif dataset.startswith("torchvision:"):
        name = dataset.split(":", 1)[1]
        train = load_torchvision(name, data_dir, True)
        test = load_torchvision(name, data_dir, False)
    else:
        raise DataError(f"unknown dataset {dataset!r}")
    if tuple(train.shape[1:]) != (channels, *image_size):
        raise DataError(
            f"{data_dir}: images are {tuple(train.shape[1:])}, the model expects "
            f"{(channels, *image_size)}"
        )
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(train))
    n_val = max(1, round(len(train) * val_fraction))
    val_idx, train_idx = perm[:n_val], perm[n_val:]
    if limit:
        train_idx = train_idx[:limit]
        val_idx = val_idx[: max(1, limit // 10)]
    description = {
        "name": dataset,
        "path": str(data_dir),
        "train": len(train_idx),
        "val": len(val_idx),
        "test": None if test is None else len(test),
        "split": f"validation = first {len(val_idx)} of a permutation of train (numpy seed "
                 f"{SPLIT_SEED})" + (f", train = the first {len(train_idx)} of the rest (--limit)"
                                     if limit else ""),
    }
    return Splits(
        train=torch.from_numpy(train[train_idx].copy()),
        val=torch.from_numpy(train[val_idx].copy()),
        test=None if test is None else torch.from_numpy(test.copy()),
        description=description,
    )


def load_test(dataset: str, data_dir: Path, channels: int, image_size: tuple[int, int]) -> torch.Tensor:
    """The test split only (folders: every image in the folder)."""
    if dataset == "mnist":
        return torch.from_numpy(read_idx_images(find_mnist_file(Path(data_dir), "test")).copy())
    if dataset == "folder":
        return torch.from_numpy(np.stack(load_image_folder(Path(data_dir), channels, image_size)))
    raise DataError(f"no test split for dataset {dataset!r}")


def to_float(batch: torch.Tensor) -> torch.Tensor:
    return batch.float().div_(255.0)


def binarize(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Dynamic binarisation: each pixel is 1 with probability equal to its intensity."""
    return (torch.rand(x.shape, generator=generator, device=x.device) < x).to(x.dtype)
