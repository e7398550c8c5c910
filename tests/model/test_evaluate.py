"""``python -m model.evaluate``: --help at once, and ordinary mistakes in one line, no traceback (its
``main`` in this process: a mistake needs no process of its own)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.evaluate import main
from tests.model.commands import assert_one_line_mistake, modules_loaded_by_help, run_main, run_module


def test_help_answers_without_loading_torch() -> None:
    result = run_module("model.evaluate", "--help")
    assert result.returncode == 0 and "--protocols" in result.stdout and "--k-big" in result.stdout
    assert "torch" not in modules_loaded_by_help("model.evaluate")


def test_a_missing_checkpoint(tmp_path: Path) -> None:
    result = run_main(main, "--checkpoint", str(tmp_path / "none"), "--data-dir", str(tmp_path),
                      "--out", str(tmp_path / "o"))
    assert_one_line_mistake(result, "config.json", "missing")


def test_missing_and_malformed_data(tiny_photo_checkpoint: Path, tiny_checkpoints: Path,
                                    tmp_path: Path) -> None:
    photo = tiny_photo_checkpoint / "photo-denoiser"
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.png").write_bytes(b"nope")
    nowhere = run_main(main, "--checkpoint", str(photo), "--data-dir", str(tmp_path / "nowhere"),
                       "--out", str(tmp_path / "o"), "--no-bm3d")
    unreadable = run_main(main, "--checkpoint", str(photo), "--data-dir", str(broken),
                          "--out", str(tmp_path / "o"), "--no-bm3d")
    not_mnist = run_main(main, "--checkpoint", str(tiny_checkpoints / "mnist-dae"),
                         "--data-dir", str(broken), "--out", str(tmp_path / "o"))
    assert_one_line_mistake(nowhere, "no such folder")
    assert_one_line_mistake(unreadable, "a.png", "not a readable image")
    assert_one_line_mistake(not_mnist, "no MNIST test images")


@pytest.mark.parametrize(("args", "words"), [
    (["--sigmas", "-5"], ["--sigmas", ">= 0"]),
    (["--limit", "x"], ["--limit", "'x'"]),
    (["--protocols", "clipped"], ["--protocols", "invalid choice"]),
    (["--device", "tpu"], ["--device", "invalid choice"]),
])
def test_flag_mistakes(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = run_main(main, "--checkpoint", str(tmp_path), "--data-dir", str(tmp_path),
                      "--out", str(tmp_path / "o"), *args)
    assert_one_line_mistake(result, *words)


def test_data_is_required_except_for_timing_a_photo_denoiser(tiny_checkpoints: Path,
                                                              tmp_path: Path) -> None:
    no_data = run_main(main, "--checkpoint", str(tmp_path), "--out", str(tmp_path / "o"))
    speed_only = run_main(main, "--checkpoint", str(tiny_checkpoints / "mnist-dae"),
                          "--out", str(tmp_path / "o"), "--speed-only")
    assert_one_line_mistake(no_data, "--data-dir", "required")
    assert_one_line_mistake(speed_only, "--speed-only", "photo denoiser", "mnist-dae")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu(tiny_photo_checkpoint: Path, tmp_path: Path) -> None:
    result = run_main(main, "--checkpoint", str(tiny_photo_checkpoint / "photo-denoiser"),
                      "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--device", "cuda")
    assert_one_line_mistake(result, "no CUDA device")


def test_noise_levels_off_the_checkpoints_scale_are_refused_naming_the_level(
    tiny_photo_checkpoint: Path, tiny_checkpoints: Path, tmp_path: Path
) -> None:
    """0.1 meant for a photo denoiser (0-255) or 25 for a DAE ([0, 1]) would measure another noise
    level than the one meant: one line saying the scale and what the level would be on it."""
    photo = str(tiny_photo_checkpoint / "photo-denoiser")
    base = ["--data-dir", str(tmp_path), "--out", str(tmp_path / "o"), "--no-bm3d"]
    gray, colour, dae, vae = (
        run_main(main, "--checkpoint", checkpoint, *base, *levels) for checkpoint, levels in (
            (photo, ("--sigmas", "15", "0.1", "0.2")),
            (photo, ("--color-sigmas", "0.2")),
            (str(tiny_checkpoints / "mnist-dae"), ("--sigmas", "25")),
            (str(tiny_checkpoints / "mnist-vae"), ("--sigmas", "0.1"))))
    assert_one_line_mistake(gray, "--sigmas 0.1:", "0-255 scale, 1 to 255", "0.1 on the [0, 1] scale "
                            "is 25.5 on the 0-255 one")
    assert_one_line_mistake(colour, "--color-sigmas 0.2:", "51 on the 0-255 one")
    assert_one_line_mistake(dae, "--sigmas 25:", "[0, 1] scale, 0 to 1", "0.098 on the [0, 1] one")
    assert_one_line_mistake(vae, "--sigmas", "vae checkpoint is evaluated without added noise")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("kind", "flag", "levels", "refused"), [
    ("photo", "--sigmas", [1, 15, 255], None),
    ("photo", "--color-sigmas", [1, 50], None),
    ("photo", "--sigmas", [15, 0.999], "--sigmas 0.999: a photo checkpoint's noise levels are on the "
     "0-255 scale, 1 to 255 (e.g. 15 25 50); 0.999 on the [0, 1] scale is 255 on the 0-255 one"),
    ("photo", "--sigmas", [0], "--sigmas 0: a photo checkpoint's noise levels are on the 0-255 scale, "
     "1 to 255 (e.g. 15 25 50)"),
    ("photo", "--sigmas", [256], "--sigmas 256: a photo checkpoint's noise levels are on the 0-255 "
     "scale, 1 to 255 (e.g. 15 25 50)"),
    ("dae", "--sigmas", [0, 0.3, 1], None),
    ("dae", "--sigmas", [1.5], "--sigmas 1.5: a dae checkpoint's noise levels are on the [0, 1] scale, "
     "0 to 1 (e.g. 0.1 0.3 0.5); 1.5 on the 0-255 scale is 0.00588 on the [0, 1] one"),
    ("dae", "--color-sigmas", [0.1], "--color-sigmas does not apply to a dae checkpoint (its noise "
     "levels: --sigmas)"),
])
def test_noise_levels_are_checked_on_the_scale_of_the_checkpoints_kind(
    kind: str, flag: str, levels: list[float], refused: str | None
) -> None:
    from model.cli import UsageError
    from model.evaluate import check_sigmas, parse_args

    args = parse_args(["--checkpoint", "c", "--data-dir", "d", "--out", "o", flag,
                       *map(str, levels)])
    if refused is None:
        check_sigmas(args, kind)
    else:
        with pytest.raises(UsageError) as error:
            check_sigmas(args, kind)
        assert str(error.value) == refused


@pytest.mark.parametrize(("kind", "flags", "refused"), [
    ("dae", ["--no-bm3d"], "--no-bm3d does not apply to a dae checkpoint; it is for photo checkpoints"),
    ("dae", ["--protocols", "8bit"], "--protocols does not apply to a dae checkpoint; it is for photo "
     "checkpoints"),
    ("dae", ["--k", "10"], "--k does not apply to a dae checkpoint; it is for vae checkpoints"),
    ("vae", ["--bm3d-limit", "5"], "--bm3d-limit does not apply to a vae checkpoint; it is for dae and "
     "photo checkpoints"),
    ("photo", ["--k-big-images", "5"], "--k-big-images does not apply to a photo checkpoint; it is for "
     "vae checkpoints"),
    ("dae", ["--bm3d-limit", "0", "--bm3d"], None),  # --bm3d is the default: it changes nothing
    ("vae", ["--k", "10", "--k-big", "20", "--k-big-images", "5"], None),
    ("photo", ["--no-bm3d", "--protocols", "8bit", "--bm3d-limit", "3", "--bm3d-workers", "2"], None),
])
def test_a_flag_of_another_kind_of_checkpoint_is_refused(
    kind: str, flags: list[str], refused: str | None
) -> None:
    """``--no-bm3d`` given for a DAE left BM3D running (a DAE reads ``--bm3d-limit``), ``--k`` for a
    photo denoiser changed nothing: each was silently ignored, and recorded in the command that
    ``--update-checkpoint`` stores."""
    from model.cli import UsageError
    from model.evaluate import check_kind_flags, parse_args

    args = parse_args(["--checkpoint", "c", "--data-dir", "d", "--out", "o", *flags])
    if refused is None:
        check_kind_flags(args, kind)
    else:
        with pytest.raises(UsageError) as error:
            check_kind_flags(args, kind)
        assert str(error.value) == refused


def test_a_flag_of_another_kind_is_refused_in_one_line(tiny_checkpoints: Path, tmp_path: Path) -> None:
    result = run_main(main, "--checkpoint", str(tiny_checkpoints / "mnist-dae"), "--data-dir",
                      str(tmp_path), "--out", str(tmp_path / "o"), "--no-bm3d")
    assert_one_line_mistake(result, "--no-bm3d does not apply to a dae checkpoint")
    assert not (tmp_path / "o").exists()
