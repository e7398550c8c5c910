"""The one PSNR of ``model/``, against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.metrics import psnr, psnr_8bit, psnr_from_mse


def test_known_mse_gives_known_decibels() -> None:
    assert float(psnr_from_mse(0.01)) == 20.0  # 10 log10(1 / 0.01)
    assert float(psnr_from_mse(0.001)) == pytest.approx(30.0)
    assert float(psnr_from_mse(1.0)) == 0.0
    assert float(psnr_from_mse(650.25, peak=255.0)) == pytest.approx(20.0)  # 0.01 of 255**2
    np.testing.assert_allclose(psnr_from_mse([0.01, 0.0001]), [20.0, 40.0])


def test_psnr_of_a_constant_error() -> None:
    reference = np.full((2, 1, 8, 8), 0.5)
    assert float(psnr(reference + 0.1, reference)) == pytest.approx(20.0)
    assert float(psnr(reference * 255.0 + 25.5, reference * 255.0, peak=255.0)) == pytest.approx(20.0)
    per_image = psnr(reference + np.array([0.1, 0.01]).reshape(2, 1, 1, 1), reference, axis=(1, 2, 3))
    np.testing.assert_allclose(per_image, [20.0, 40.0])
    tensor = torch.from_numpy(reference).float()
    assert float(psnr(tensor + 0.1, tensor)) == pytest.approx(20.0, abs=1e-4)  # torch accepted


def test_psnr_8bit_rounds_and_clips_the_estimate_on_the_255_scale() -> None:
    clean = np.full((1, 8, 8), 250, dtype=np.uint8)
    # off by 5 levels everywhere: 10 log10(255**2 / 25)
    assert psnr_8bit(clean, (clean - 5) / 255.0) == pytest.approx(20.0 * np.log10(255.0 / 5.0))
    # 0.4 of a level rounds back to the clean value: no error left
    assert psnr_8bit(clean, (clean + 0.4) / 255.0) == psnr_8bit(clean, clean / 255.0)
    # 260 is clipped to 255: the same 5-level error
    assert psnr_8bit(clean, (clean + 10.0) / 255.0) == pytest.approx(20.0 * np.log10(255.0 / 5.0))
