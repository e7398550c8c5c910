"""``python -m model.train``: --help at once, and ordinary mistakes in one line, no traceback (its
``main`` in this process: a mistake needs no process of its own)."""

from __future__ import annotations

import gzip
import os
import signal
from pathlib import Path

import pytest
import torch

from model.train import main
from tests.model.commands import (
    assert_one_line_mistake,
    modules_loaded_by_help,
    run_main,
    run_module,
    train_tiny_flags,
)


def test_help_answers_without_loading_torch() -> None:
    result = run_module("model.train", "--help")
    assert result.returncode == 0 and "--init-from" in result.stdout and "--preset" in result.stdout
    assert "torch" not in modules_loaded_by_help("model.train")


@pytest.mark.parametrize(("args", "words"), [
    (["--preset", "nope"], ["unknown preset 'nope'", "photo-color"]),
    (["--preset", "mnist-dae", "--batch-size", "0"], ["--batch-size", "positive integer"]),
    (["--preset", "mnist-dae", "--lr", "fast"], ["--lr", "'fast'"]),
    (["--preset", "mnist-dae", "--resume", "--init-from", "x"], ["--resume", "--init-from"]),
    (["--preset", "photo-gray", "--sigma-weight-floor", "-0.1"], ["--sigma-weight-floor", ">= 0"]),
    (["--preset", "photo-gray", "--sigma-weight-floor", "nan"], ["--sigma-weight-floor", ">= 0"]),
    (["--preset", "mnist-dae", "--time-budget", "-3"], ["--time-budget", ">= 0"]),
    # flags of another kind of preset: recorded in the checkpoint's command, and changing nothing
    (["--preset", "mnist-dae", "--patches-per-epoch", "100"],
     ["--patches-per-epoch does not apply to preset mnist-dae (a dae model); it is for photo presets"]),
    (["--preset", "mnist-vae", "--sigma-weight-floor", "0.1"],
     ["--sigma-weight-floor does not apply to preset mnist-vae (a vae model)"]),
    (["--preset", "photo-color", "--latent-dim", "8"],
     ["--latent-dim does not apply to preset photo-color (a photo model); it is for dae and vae presets"]),
    (["--preset", "photo-denoiser", "--hidden", "8", "--extra-convs", "1"],
     ["--extra-convs does not apply to preset photo-denoiser"]),
    (["--preset", "mnist-dae", "--patch-size", "48"], ["unrecognized arguments: --patch-size 48"]),
    (["--preset", "mnist-dae", "--gray-fraction", "0.2"], ["unrecognized arguments: --gray-fraction"]),
])
def test_flag_mistakes(tmp_path: Path, args: list[str], words: list[str]) -> None:
    result = run_main(main, *args, "--data-dir", str(tmp_path), "--out", str(tmp_path / "o"))
    assert_one_line_mistake(result, *words)


def test_a_batch_larger_than_the_data(tiny_mnist_dir: Path, tmp_path: Path) -> None:
    result = run_main(main, "--preset", "mnist-dae", "--data-dir", str(tiny_mnist_dir),
                      "--out", str(tmp_path / "o"), "--device", "cpu", "--batch-size", "100000")
    assert_one_line_mistake(result, "--batch-size 100000", "540 training examples")


def test_an_out_that_cannot_be_a_folder_is_refused_before_any_work(
    tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    afile = tmp_path / "a-file"
    afile.write_text("")
    outs = {afile: ["a file, not a folder"],
            afile / "x": ["a file, not a folder", f"({afile} is a file)"]}
    for out, words in outs.items():
        result = run_main(main, "--preset", "mnist-dae", "--data-dir", str(tiny_mnist_dir), "--out",
                          str(out), "--device", "cpu", "--max-steps", "2")
        assert_one_line_mistake(result, f"--out {out}", *words)


def test_a_missing_argument() -> None:
    assert_one_line_mistake(run_main(main, "--preset", "mnist-dae"), "--data-dir")


def test_missing_data(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    probes = {"mnist-dae": "no MNIST train images", "photo-denoiser": "no such folder"}
    for preset, probe in probes.items():
        result = run_main(main, "--preset", preset, "--data-dir", str(missing), "--out",
                          str(tmp_path / "o"), "--device", "cpu")
        assert_one_line_mistake(result, probe, "model.data check")


def test_malformed_data(tmp_path: Path) -> None:
    mnist = tmp_path / "mnist"
    mnist.mkdir()
    with gzip.open(mnist / "train-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(b"not an IDX file at all")
    photos = tmp_path / "photos"
    photos.mkdir()
    (photos / "broken.png").write_bytes(b"\x89PNG but not really")
    empty = tmp_path / "empty"
    empty.mkdir()
    not_idx, not_png, no_images = (
        run_main(main, "--preset", preset, "--data-dir", str(data), "--out", str(tmp_path / "o"),
                 "--device", "cpu")
        for preset, data in (("mnist-dae", mnist), ("photo-denoiser", photos), ("photo-color", empty)))
    assert_one_line_mistake(not_idx, "bad IDX magic")
    assert_one_line_mistake(not_png, "broken.png", "not a readable image")
    assert_one_line_mistake(no_images, "no PNG/JPEG images")


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_without_a_gpu(tmp_path: Path) -> None:
    result = run_main(main, "--preset", "mnist-dae", "--data-dir", str(tmp_path),
                      "--out", str(tmp_path / "o"), "--device", "cuda")
    assert_one_line_mistake(result, "--device cuda", "no CUDA device")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_an_interrupt_before_training_starts_says_so_in_one_line(
    tiny_mnist_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sig: signal.Signals
) -> None:
    """Ctrl-C while the data loads (seconds on a large set) ended with a KeyboardInterrupt
    traceback through torch's imports; it is one line and exit status 130, as an interrupt during
    training, and nothing is written."""
    from model.trainer import Trainer

    load_data = Trainer.load_data

    def interrupted_while_loading(trainer: Trainer) -> None:
        load_data(trainer)
        os.kill(os.getpid(), sig)

    monkeypatch.setattr(Trainer, "load_data", interrupted_while_loading)
    out = tmp_path / "run"
    result = run_main(main, *train_tiny_flags("mnist-dae", tiny_mnist_dir, out))
    assert result.returncode == 130, result.stderr[-2000:]
    said = "python -m model.train: interrupted before training started; nothing was written\n"
    assert result.stderr == said
    assert not out.exists()
