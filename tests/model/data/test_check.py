"""``python -m model.data check``: a folder's sets, what is missing, what differs."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from model.data.check import SETS, check_set, read_manifest
from tests.conftest import ROOT
from tests.model.commands import assert_one_line_mistake, modules_loaded_by_help, run_module

DATASETS = Path(os.environ.get("AESERVE_DATASETS", ROOT.parent / "shared" / "datasets"))


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


def test_the_command_names_what_is_missing(tmp_path: Path) -> None:
    (tmp_path / "bsd68").mkdir()
    result = run_module("model.data", "check", "--data-dir", str(tmp_path), "--sets", "bsd68", "cbsd68")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0].startswith("BAD     bsd68/: 68 of 68 files missing")
    assert result.stdout.splitlines()[1].startswith("MISSING cbsd68/")
    assert_one_line_mistake(run_module("model.data", "check", "--data-dir", str(tmp_path / "x")),
                            "no such folder")
    assert "torch" not in modules_loaded_by_help("model.data")


@pytest.mark.skipif(not (DATASETS / "bsd68").is_dir(),
                    reason=f"{DATASETS / 'bsd68'} is missing (docs/data.md; or set AESERVE_DATASETS)")
def test_the_shared_data_passes() -> None:
    result = run_module("model.data", "check", "--data-dir", str(DATASETS), "--sets", "bsd68", "mnist")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("checksums match") == 2
    unchecked = run_module("model.data", "check", "--data-dir", str(DATASETS), "--sets", "bsd68",
                           "--no-checksums")
    assert unchecked.returncode == 0, unchecked.stdout + unchecked.stderr
    assert unchecked.stdout.startswith("ok      bsd68/: 68 files, checksums not checked")
