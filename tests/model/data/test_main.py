"""``python -m model.data check``: one line per set, what is missing named, exit 1 unless complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.commands import assert_one_line_mistake, modules_loaded_by_help, run_module
from tests.model.datasets import DATASETS


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
