"""The photo denoiser's training recipes.

- ``photo-denoiser``: the first run of the shipped gray checkpoint (train400, unclipped noise);
- ``photo-color``: the shipped checkpoint's colour network (3 channels in and out, the same widths),
  trained on CBSD432 (and Train400) with half of every batch's noise clipped and rounded to 8 bits
  and a quarter of the patches gray, so it can serve gray photos too;
- ``photo-gray``: ``photo-denoiser`` with the 8-bit noise of ``photo-color``; the second to fourth
  runs of the shipped gray network, each continued from the last with ``--init-from``.
"""

from __future__ import annotations

import dataclasses

from model.config import ModelConfig, NoiseConfig, RunConfig, TrainConfig

PATCH = 48
SIGMA_MAX = 55.0  # on the 0-255 scale
WIDTHS = [32, 64, 128, 256]


def photo_preset() -> RunConfig:
    """Blind Gaussian denoiser, sigma in [0, 55] (0-255 scale), trained on train400 patches.

    A 4-level residual U-Net with widths 32/64/128/256 and two 3x3 convs per level and side: most of
    its work happens at 1/4-1/64 of the pixels, so it has a large receptive field (for sigma 50) at
    a lower cost per pixel than a 20-layer, 64-channel DnCNN. Each patch's MSE is weighted by
    1 / (sigma + 0.04): with plain MSE the high noise levels dominate and the blind model gave up
    quality at sigma 15. The shipped weights' first run: 19 epochs of 64000 patches in batches of
    128, planned by ``--time-budget 220`` on an H200, best validation at epoch 16; chosen by
    validation PSNR over widths 16 and 24 and over plain MSE. Its later runs are ``photo-gray``.
    """
    return RunConfig(
        model=ModelConfig(
            kind="photo", image_size=[PATCH, PATCH], channels=1, hidden=list(WIDTHS), depth=2,
            likelihood="mse", value_range=[0.0, 1.0],
        ),
        noise=NoiseConfig(kind="gaussian", sigma_min=0.0, sigma_max=SIGMA_MAX / 255.0, clip=False),
        train=TrainConfig(
            preset="photo-denoiser", dataset="folder", epochs=19, batch_size=128, lr=1e-3,
            lr_min=1e-5, patches_per_epoch=64000, sigma_weight_floor=0.04,
            val_fraction=0.05, seed=0,
        ),
    )


def photo_gray_preset() -> RunConfig:
    """``photo-denoiser`` with half of every batch's noise clipped and rounded to 8 bits."""
    cfg = photo_preset()
    cfg.noise = dataclasses.replace(cfg.noise, eight_bit_fraction=0.5)
    cfg.train.preset = "photo-gray"
    return cfg


def photo_color_preset() -> RunConfig:
    """One RGB network (3 channels in and out) for colour and gray photos, 8-bit noise included.

    Train on CBSD432 and Train400 (``--data-dir $DATA/cbsd432 $DATA/train400``); gray images load
    as three equal planes. A quarter of the patches are made gray with the same noise in every
    plane (how a gray photo reaches this network); the rest get independent noise per channel.
    """
    cfg = photo_gray_preset()
    cfg.model.channels = 3
    cfg.train.preset = "photo-color"
    cfg.train.gray_fraction = 0.25
    return cfg


PHOTO_PRESETS = {
    "photo-denoiser": photo_preset,
    "photo-gray": photo_gray_preset,
    "photo-color": photo_color_preset,
}
