"""The noise of training and evaluation: Gaussian (unclipped, clipped, 8-bit), salt-and-pepper, mask."""

from __future__ import annotations

import pytest
import torch

from model.config import NoiseConfig
from model.noise import (
    corrupt,
    draw_levels,
    eight_bit_items,
    gaussian_noise,
    item_count,
    spread_items,
)

CPU = torch.device("cpu")


def on_8bit_grid(x: torch.Tensor) -> bool:
    return torch.equal(x * 255.0, torch.round(x * 255.0))


def mid_gray(n: int = 4, size: int = 64) -> torch.Tensor:
    return torch.full((n, 1, size, size), 0.5)


def test_gaussian_noise_has_the_level_asked_for_and_unclipped_leaves_the_range() -> None:
    clean = mid_gray()
    normal = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    noisy = gaussian_noise(clean, 0.3, normal)
    assert float((noisy - clean).mean()) == pytest.approx(0.0, abs=0.01)
    assert float((noisy - clean).std()) == pytest.approx(0.3, rel=0.02)
    assert float(noisy.min()) < 0.0 and float(noisy.max()) > 1.0
    assert not on_8bit_grid(noisy)
    assert torch.equal(clean, mid_gray())  # the input is left alone


def test_clipped_noise_stays_in_range_and_8bit_noise_is_also_on_the_8bit_grid() -> None:
    clean = mid_gray()
    normal = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    clipped = gaussian_noise(clean, 0.3, normal, clip=True)
    assert float(clipped.min()) == 0.0 and float(clipped.max()) == 1.0
    assert not on_8bit_grid(clipped)
    eight = gaussian_noise(clean, 0.3, normal, eight_bit=True)
    assert float(eight.min()) == 0.0 and float(eight.max()) == 1.0
    assert on_8bit_grid(eight)
    assert float((eight - clipped).abs().max()) <= 0.5 / 255.0 + 1e-7  # the nearest 8-bit value


def test_per_item_choices_and_per_item_levels() -> None:
    clean = mid_gray(3)
    normal = torch.randn(clean.shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.05, 0.3, 0.3]).view(3, 1, 1, 1)
    noisy = gaussian_noise(clean, sigma, normal, clip=torch.tensor([False, True, False]),
                           eight_bit=torch.tensor([True, False, False]))
    assert on_8bit_grid(noisy[0]) and float((noisy[0] - 0.5).std()) == pytest.approx(0.05, rel=0.05)
    assert float(noisy[1].min()) == 0.0 and float(noisy[1].max()) == 1.0 and not on_8bit_grid(noisy[1])
    assert float(noisy[2].min()) < 0.0 and float(noisy[2].max()) > 1.0


@pytest.mark.parametrize(
    ("n", "fraction", "count"),
    [(128, 0.5, 64), (128, 0.25, 32), (1, 0.5, 1), (1, 0.1, 1), (3, 0.5, 2), (5, 0.5, 3),
     (2, 0.9, 1), (4, 0.01, 1), (4, 0.0, 0), (4, 1.0, 4), (1, 1.0, 1), (0, 0.5, 0)],
)
def test_a_fraction_of_a_batch_is_at_least_one_item_and_not_all(
    n: int, fraction: float, count: int
) -> None:
    assert item_count(n, fraction) == count
    cfg = NoiseConfig(kind="gaussian", eight_bit_fraction=fraction)
    assert int(eight_bit_items(cfg, n, CPU).sum()) == count
    assert int(spread_items(n, fraction, CPU).sum()) == count


def test_spread_items_fall_in_every_part_of_the_batch() -> None:
    assert spread_items(8, 0.25, CPU).nonzero().flatten().tolist() == [3, 7]
    spread = spread_items(128, 0.25, CPU)
    eight = eight_bit_items(NoiseConfig(kind="gaussian", eight_bit_fraction=0.5), 128, CPU)
    assert int((spread & eight).sum()) == int((spread & ~eight).sum()) == 16


def test_corrupt_gives_every_batch_its_8bit_items_even_a_batch_of_one() -> None:
    cfg = NoiseConfig(kind="gaussian", sigma_min=0.1, sigma_max=0.2, clip=False,
                      eight_bit_fraction=0.5)
    gen = torch.Generator().manual_seed(0)
    assert on_8bit_grid(corrupt(mid_gray(1), cfg, gen))
    noisy = corrupt(mid_gray(4), cfg, gen)
    assert on_8bit_grid(noisy[:2]) and not on_8bit_grid(noisy[2]) and not on_8bit_grid(noisy[3])


def test_levels_are_uniform_in_the_configured_range_and_seeded() -> None:
    cfg = NoiseConfig(kind="gaussian", sigma_min=0.1, sigma_max=0.3)
    levels = draw_levels(cfg, 10_000, torch.Generator().manual_seed(0), CPU)
    assert levels.shape == (10_000, 1, 1, 1)
    assert float(levels.min()) >= 0.1 and float(levels.max()) <= 0.3
    assert float(levels.mean()) == pytest.approx(0.2, abs=0.005)
    assert float(levels.std()) == pytest.approx(0.2 / 12**0.5, rel=0.02)
    assert torch.equal(levels, draw_levels(cfg, 10_000, torch.Generator().manual_seed(0), CPU))
    fixed = NoiseConfig(kind="gaussian", sigma_min=0.2, sigma_max=0.2)
    assert torch.all(draw_levels(fixed, 5, None, CPU) == 0.2)


def test_corrupt_gaussian_fixed_level_and_clip() -> None:
    cfg = NoiseConfig(kind="gaussian", sigma_min=0.1, sigma_max=0.1, clip=True)
    noisy = corrupt(mid_gray(), cfg, torch.Generator().manual_seed(0))
    assert float((noisy - 0.5).std()) == pytest.approx(0.1, rel=0.03)
    assert float(noisy.min()) >= 0.0 and float(noisy.max()) <= 1.0


def test_salt_and_pepper_hits_the_fraction_asked_for_with_black_and_white() -> None:
    cfg = NoiseConfig(kind="salt-pepper", sigma_min=0.2, sigma_max=0.2)
    clean = mid_gray()
    noisy = corrupt(clean, cfg, torch.Generator().manual_seed(0))
    hit = noisy != clean
    assert float(hit.float().mean()) == pytest.approx(0.2, abs=0.01)
    assert set(noisy[hit].unique().tolist()) == {0.0, 1.0}
    assert float((noisy[hit] == 1.0).float().mean()) == pytest.approx(0.5, abs=0.03)
    assert torch.equal(clean, mid_gray())


def test_mask_zeroes_the_fraction_asked_for_and_keeps_the_rest() -> None:
    cfg = NoiseConfig(kind="mask", sigma_min=0.3, sigma_max=0.3)
    clean = torch.rand(4, 1, 64, 64, generator=torch.Generator().manual_seed(1)) * 0.9 + 0.1
    noisy = corrupt(clean, cfg, torch.Generator().manual_seed(0))
    zeroed = noisy == 0.0
    assert float(zeroed.float().mean()) == pytest.approx(0.3, abs=0.01)
    assert torch.equal(noisy[~zeroed], clean[~zeroed])


def test_none_returns_an_unchanged_copy_and_an_unknown_kind_is_refused() -> None:
    clean = mid_gray()
    out = corrupt(clean, NoiseConfig(kind="none"))
    assert torch.equal(out, clean) and out.data_ptr() != clean.data_ptr()
    with pytest.raises(ValueError, match="unknown noise kind"):
        corrupt(clean, NoiseConfig(kind="speckle"))  # type: ignore[arg-type]
