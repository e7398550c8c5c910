"""``python -m model.evaluate``: --help at once, and ordinary mistakes in one line, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.model.commands import assert_one_line_mistake, modules_loaded_by_help, run_module


def test_help_answers_without_loading_torch() -> None:
    result = run_module("model.evaluate", "--help")
    assert result.returncode == 0 and "--protocols" in result.stdout and "--k-big" in result.stdout
    assert "torch" not in modules_loaded_by_help("model.evaluate")


def test_a_missing_checkpoint(tmp_path: Path) -> None:
    result = run_module("model.evaluate", "--checkpoint", str(tmp_path / "none"), "--data-dir",
                        str(tmp_path), "--out", str(tmp_path / "o"))
    assert_one_line_mistake(result, "config.json", "missing")


def test_missing_and_malformed_data(tiny_photo_checkpoint: Path, tiny_checkpoints: Path,
                                    tmp_path: Path) -> None:
    photo = tiny_photo_checkpoint / "photo-denoiser"
    result = run_module("model.evaluate", "--checkpoint", str(photo), "--data-dir",
                        str(tmp_path / "nowhere"), "--out", str(tmp_path / "o"), "--no-bm3d")
    assert_one_line_mistake(result, "no such folder")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"nope")
    result = run_module("model.evaluate", "--checkpoint", str(photo), "--data-dir", str(broken),
                        "--out", str(tmp_path / "o"), "--no-bm3d")
    assert_one_line_mistake(result, "a.png", "not a readable image")
    result = run_module("model.evaluate", "--checkpoint", str(tiny_checkpoints / "mnist-dae"),
                        "--data-dir", str(broken), "--out", str(tmp_path / "o"))
    assert_one_line_mistake(result, "no MNIST test images")


@pytest.mark.parametrize(("args", "words"), [
    (["--sigmas", "-5"], ["--sigmas", ">= 0"]),
    (["--limit", "x"], ["--limit", "'x'"]),
    (["--protocols", "clipped"], ["--protocols", "invalid choice"]),
    (["--device", "tpu"], ["--device", "invalid choice"]),
])
def test_flag_mistakes(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = run_module("model.evaluate", "--checkpoint", str(tmp_path), "--data-dir", str(tmp_path),
                        "--out", str(tmp_path / "o"), *args)
    assert_one_line_mistake(result, *words)


def test_data_is_required_except_for_timing_a_photo_denoiser(tiny_checkpoints: Path,
                                                              tmp_path: Path) -> None:
    result = run_module("model.evaluate", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"))
    assert_one_line_mistake(result, "--data-dir", "required")
    result = run_module("model.evaluate", "--checkpoint", str(tiny_checkpoints / "mnist-dae"),
                        "--out", str(tmp_path / "o"), "--speed-only")
    assert_one_line_mistake(result, "--speed-only", "photo denoiser", "mnist-dae")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu(tiny_photo_checkpoint: Path, tmp_path: Path) -> None:
    result = run_module("model.evaluate", "--checkpoint", str(tiny_photo_checkpoint / "photo-denoiser"),
                        "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cuda")
    assert_one_line_mistake(result, "no CUDA device")
