"""The blind noise-level estimate: synthetic images, a few BSD68 images, small and clipped inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.data.loaders import load_image_folder
from model.photo.evaluate import noisy_version
from model.photo.inference import estimate_noise_sigma
from tests.model.datasets import DATASETS
from tests.model.photo.synthetic import photo

BSD68 = DATASETS / "bsd68"


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("sigma", [5.0, 10.0, 25.0, 50.0])
def test_the_estimate_of_a_synthetic_photo(channels: int, sigma: float) -> None:
    clean = photo(channels, 200, 300)
    noisy = clean + (sigma / 255) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    assert estimate_noise_sigma(noisy) == pytest.approx(sigma, rel=0.05)
    assert estimate_noise_sigma(clean) < 1.0  # no noise: close to 0


def test_8bit_inputs_with_clipped_regions() -> None:
    clean = photo(1, 200, 300) * 0.5
    clean[..., :100, :] = 1.0  # a white sky: clipped, it has lost most of its noise
    for sigma in (15.0, 40.0):
        noisy = clean + (sigma / 255) * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
        eight_bit = torch.round(noisy.clamp(0, 1) * 255) / 255
        assert estimate_noise_sigma(eight_bit) == pytest.approx(sigma, rel=0.1)


def test_too_small_images_give_no_estimate_and_large_ones_are_sampled() -> None:
    assert estimate_noise_sigma(torch.rand(1, 1, 1, 1)) is None
    assert estimate_noise_sigma(torch.rand(1, 3, 6, 500)) is None  # no 7x7 patch fits
    assert estimate_noise_sigma(torch.rand(1, 1, 1, 5000)) is None
    assert estimate_noise_sigma(torch.rand(1, 1, 13, 13)) is None  # 49 patches: one per pixel
    assert estimate_noise_sigma(torch.rand(1, 1, 14, 14)) is not None
    big = 0.5 + (20 / 255) * torch.randn(1, 1, 1200, 1600, generator=torch.Generator().manual_seed(3))
    assert estimate_noise_sigma(big) == pytest.approx(20.0, rel=0.03)
    with pytest.raises(ValueError):
        estimate_noise_sigma(torch.rand(2, 1, 20, 20))


@pytest.mark.skipif(not (BSD68 / "test001.png").is_file(),
                    reason=f"{BSD68} is missing (docs/data.md; or set AESERVE_DATASETS)")
def test_within_ten_percent_on_bsd68_images() -> None:
    """The first 8 BSD68 images at the evaluation's noise; docs/photo-denoiser.md gives all 68."""
    images = load_image_folder(BSD68, 1)[:8]
    for sigma in (10.0, 25.0, 50.0):
        est = [estimate_noise_sigma(torch.from_numpy(noisy_version(img, sigma, i))[None].float())
               for i, img in enumerate(images)]
        assert float(np.max(np.abs(np.asarray(est) / sigma - 1.0))) < 0.10, (sigma, est)
