"""``model.evaluate`` on a DAE or a VAE checkpoint: its metrics, figures and the recorded command."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from model.checkpoint import load_checkpoint, save_checkpoint
from model.evaluate import evaluate
from model.evaluate_autoencoder import training_curve
from model.networks import build_model
from model.presets import get_preset


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
    assert all((out / name).is_file() for name in ("denoise_sigma0.1.png", "denoise_sigma0.5.png",
                                                    "loss_curves.png"))


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


def validations(*val_losses: float) -> list[dict[str, float]]:
    return [{"epoch": epoch + 1.0, "step": 16 * (epoch + 1), "train_loss": 0.5, "val_loss": loss}
            for epoch, loss in enumerate(val_losses)]


def test_the_loss_curves_cover_the_epochs_after_the_best_one(tmp_path: Path) -> None:
    """config.json's history ends at the checkpoint (the best epoch, 2 here); the curve is the whole
    run's, from .state/state.json, when that state is this checkpoint's run."""
    cfg = get_preset("mnist-dae")
    folder = tmp_path / "dae"
    save_checkpoint(folder, build_model(cfg.model), cfg, extra={"training": {"history": validations(3, 1)}})
    assert training_curve(load_checkpoint(folder)) == (validations(3, 1), 2.0)  # no state: up to the best

    state = folder / ".state" / "state.json"
    state.parent.mkdir()
    state.write_text(json.dumps({"step": 64, "history": validations(3, 1, 2, 4)}))
    history, best = training_curve(load_checkpoint(folder))
    assert [h["epoch"] for h in history] == [1.0, 2.0, 3.0, 4.0] and best == 2.0

    # the state of another run in this folder (its first validations are not the checkpoint's)
    state.write_text(json.dumps({"step": 64, "history": validations(5, 4, 3)}))
    assert training_curve(load_checkpoint(folder)) == (validations(3, 1), 2.0)
