"""Choosing photo checkpoints on a training run's validation split (``model.photo.validate``)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from model.photo import validate
from model.photo.preset import photo_gray_preset
from model.photo.task import PhotoTask
from tests.conftest import make_photos

SHIPPED = Path(__file__).resolve().parents[3] / "checkpoints" / "photo-denoiser"


def test_validate_scores_a_checkpoint_on_the_trainers_split(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    data = make_photos(tmp_path / "photos", 20, 64, 3)
    out = tmp_path / "val.json"
    assert validate.main(["--data-dir", str(data), "--channels", "1", "--val-fraction", "0.1",
                          "--checkpoint", str(SHIPPED), "--out", str(out)]) == 0
    results = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out) == results
    # the images the trainer holds out of the same folder, with the same fraction
    cfg = photo_gray_preset()
    cfg.train.val_fraction = 0.1
    task = PhotoTask(cfg, [data], torch.device("cpu"))
    assert results["split"] == task.data_description and len(task.val) == 2
    scores = results["checkpoints"][str(SHIPPED)]
    assert scores["val_loss"] == pytest.approx(-(scores["psnr"] + scores["psnr_8bit"]) / 2)
    # the same noise as the trainer's validation: the noisy input itself scores far lower
    noisy = task.score(lambda x: x)
    for key in ("psnr_15", "psnr_25", "psnr_50", "psnr_15_8bit", "psnr_25_8bit", "psnr_50_8bit"):
        assert scores[key] > noisy[key] + 3.0
    assert noisy["psnr_15"] > noisy["psnr_25"] > noisy["psnr_50"]


def test_a_checkpoint_that_is_not_there_is_one_line_and_exit_code_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = make_photos(tmp_path / "photos", 4, 64, 1)
    assert validate.main(["--data-dir", str(data), "--channels", "1",
                          "--checkpoint", str(tmp_path / "nowhere")]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("python -m model.photo.validate: error: ") and "config.json" in line
