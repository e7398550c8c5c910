"""The photo denoiser's training recipes."""

from __future__ import annotations

from model.config import ModelConfig, NoiseConfig, RunConfig, TrainConfig

PATCH = 48
SIGMA_MAX = 55.0  # on the 0-255 scale


def photo_preset() -> RunConfig:
    """Blind Gaussian denoiser, sigma in [0, 55] (0-255 scale), trained on train400 patches.

    A 4-level residual U-Net with widths 32/64/128/256 and two 3x3 convs per level and side: most of
    its work happens at 1/4-1/64 of the pixels, so it has a large receptive field (for sigma 50) at
    a lower cost per pixel than a 20-layer, 64-channel DnCNN. Each patch's MSE is weighted by
    1 / (sigma + 0.04): with plain MSE the high noise levels dominate and the blind model gave up
    quality at sigma 15. The shipped weights: 19 epochs of 64000 patches in batches of 128, planned
    by ``--time-budget 220`` on a lent H200 (``scripts/train-photo-gpu.sh``), best validation at
    epoch 16; chosen by validation PSNR over widths 16 and 24 and over plain MSE.
    """
    return RunConfig(
        model=ModelConfig(
            kind="photo", image_size=[PATCH, PATCH], channels=1, hidden=[32, 64, 128, 256], depth=2,
            likelihood="mse", value_range=[0.0, 1.0],
        ),
        noise=NoiseConfig(kind="gaussian", sigma_min=0.0, sigma_max=SIGMA_MAX / 255.0, clip=False),
        train=TrainConfig(
            preset="photo-denoiser", dataset="folder", epochs=19, batch_size=128, lr=1e-3,
            lr_min=1e-5, patch_size=PATCH, patches_per_epoch=64000, sigma_weight_floor=0.04,
            val_fraction=0.05, seed=0,
        ),
    )
