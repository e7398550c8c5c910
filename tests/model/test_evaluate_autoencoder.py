"""``model.evaluate`` on a DAE or a VAE checkpoint: its metrics, figures and the recorded command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model.checkpoint import load_checkpoint
from model.evaluate import evaluate


def test_a_dae_is_measured_at_each_sigma_beside_the_noisy_input(
    tiny_checkpoints: Path, tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    out = tmp_path / "eval"
    assert evaluate(["--checkpoint", str(tiny_checkpoints / "mnist-dae"), "--data-dir", str(tiny_mnist_dir),
                     "--out", str(out), "--limit", "12", "--sigmas", "0.1", "0.5", "--bm3d-limit", "0"]) == 0
    denoising = json.loads((out / "metrics.json").read_text())["denoising"]
    assert denoising["images"] == 12 and denoising["bm3d_images"] == 0
    assert denoising["0.1"]["noisy_psnr"] > denoising["0.5"]["noisy_psnr"]
    assert {"model_psnr", "model_ssim", "median3_psnr"} <= set(denoising["0.5"])
    assert "| 0.5 |" in (out / "metrics.md").read_text()
    assert all((out / f"denoise_sigma{s}.png").is_file() for s in (0.1, 0.5))


def test_a_vae_is_scored_in_nats_and_the_command_recorded(
    tiny_checkpoints: Path, tiny_mnist_dir: Path, tmp_path: Path
) -> None:
    checkpoint, out = tmp_path / "vae", tmp_path / "eval"
    shutil.copytree(tiny_checkpoints / "mnist-vae", checkpoint)
    assert evaluate(["--checkpoint", str(checkpoint), "--data-dir", str(tiny_mnist_dir), "--out", str(out),
                     "--limit", "12", "--k", "4", "--k-big", "8", "--k-big-images", "6",
                     "--update-checkpoint"]) == 0
    vae = json.loads((out / "metrics.json").read_text())["vae"]
    assert vae["images"] == 12 and vae["check"]["images"] == 12
    assert 0 < vae["nll_k4"] <= vae["neg_elbo"] and "nll_k8_first6" in vae  # the bound tightens with k
    assert all((out / name).is_file() for name in ("samples.png", "reconstructions.png", "interpolation.png"))
    evaluation = load_checkpoint(checkpoint).meta["evaluation"]
    assert evaluation["metrics"]["vae"] == vae
    assert evaluation["command"].startswith("python -m model.evaluate ")
