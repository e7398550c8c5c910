"""Loading a data set's splits: the MNIST test split is optional for training, never silently bad."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from model.data.loaders import DataError, Splits, load_splits


def load(folder: Path) -> Splits:
    return load_splits("mnist", folder, 1, (28, 28), val_fraction=0.1)


def test_the_test_split_is_read_when_present_and_none_when_absent(
    tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    splits = load(tiny_mnist_dir)
    assert splits.test is not None and splits.test.shape == (100, 1, 28, 28)
    assert len(splits.train) + len(splits.val) == 600
    train_only = tmp_path / "train-only"
    train_only.mkdir()
    shutil.copy(tiny_mnist_dir / "train-images-idx3-ubyte.gz", train_only)
    assert load(train_only).test is None


def test_a_corrupt_test_file_stops_instead_of_passing_for_absent(
    tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "corrupt"
    shutil.copytree(tiny_mnist_dir, folder)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError):
        load(folder)
