"""Loading a data set's splits: the MNIST test split is optional for training, never silently bad."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from model.data.loaders import DataError, Splits, load_image_folder, load_splits


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


@pytest.mark.parametrize(("mode", "values", "expected"), [
    ("I;16", [0, 257 * 100, 65535], [0, 100, 255]),  # a 16-bit PNG
    ("I", [0, 257 * 100, 65535], [0, 100, 255]),  # the same values as 32-bit integers
    ("F", [0.0, 100 / 255, 1.0], [0, 100, 255]),  # a float TIFF on the 0-1 scale
    ("I", [0, 100, 255], [0, 100, 255]),  # integers that fit 8 bits stay as they are
])
@pytest.mark.parametrize("channels", [1, 3])
def test_16_bit_and_float_gray_images_are_scaled_not_clipped_white(
    tmp_path: Path, mode: str, values: list[float], expected: list[int], channels: int
) -> None:
    """Pillow's convert to L or RGB clips every value over 255: a 16-bit photo trained (and was
    evaluated) as a white image. Its white is 65535, as the service reads it."""
    dtype = {"I;16": np.uint16, "I": np.int32, "F": np.float32}[mode]
    pixels = np.array([values], dtype=dtype).repeat(2, axis=0)
    image = Image.fromarray(pixels)
    assert image.mode == mode
    image.save(tmp_path / ("photo.png" if mode == "I;16" else "photo.tif"))
    (loaded,) = load_image_folder(tmp_path, channels)
    assert loaded.dtype == np.uint8 and loaded.shape == (channels, 2, 3)
    assert (loaded == np.array(expected, dtype=np.uint8)).all()
