"""The data sets' manifests: a folder's sets, what is missing, what differs."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from model.data.check import SETS, check_set, read_manifest
from tests.model.datasets import DATASETS


def test_every_set_has_a_manifest() -> None:
    counts = {name: len(read_manifest(name)) for name in SETS}
    assert counts == {"mnist": 4, "train400": 400, "cbsd432": 432, "bsd68": 68, "cbsd68": 68}
    assert all(len(d) == 64 for d in read_manifest("bsd68").values())


def test_a_folder_missing_files_and_holding_altered_ones(tmp_path: Path) -> None:
    bsd = tmp_path / "bsd68"
    bsd.mkdir()
    (bsd / "test001.png").write_bytes(b"not the published image")
    report = check_set(tmp_path, "bsd68")
    assert report.present and not report.ok
    assert len(report.missing) == 67 and report.differ == ["test001.png"]
    assert "67 of 68 files missing" in report.line() and "test001.png" in report.line()
    assert not check_set(tmp_path, "cbsd68").present


def test_mnist_is_checked_on_its_decompressed_bytes(tmp_path: Path) -> None:
    if not (DATASETS / "mnist" / "t10k-labels-idx1-ubyte.gz").is_file():
        pytest.skip(f"{DATASETS / 'mnist'} is missing (docs/data.md; or set AESERVE_DATASETS)")
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    raw = gzip.decompress((DATASETS / "mnist" / "t10k-labels-idx1-ubyte.gz").read_bytes())
    (mnist / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(raw, compresslevel=1))  # re-compressed
    report = check_set(tmp_path, "mnist")
    assert report.differ == [] and len(report.missing) == 3
