"""How gray and colour networks see gray and colour images: the opponent planes and the passes."""

from __future__ import annotations

import pytest
import torch

from model.photo.colour import GrayPlanes, NativeColour, opponent_to_rgb, planes_for, rgb_to_opponent


def test_opponent_transform_is_exact_and_keeps_noise_white() -> None:
    x = torch.rand(1, 3, 40, 50)
    planes = rgb_to_opponent(x)
    assert planes.shape == (3, 1, 40, 50)
    assert float(planes.min()) >= 0.0 and float(planes.max()) <= 1.0
    assert torch.allclose(opponent_to_rgb(planes), x, atol=1e-6)
    noise = rgb_to_opponent(torch.randn(1, 3, 400, 500, generator=torch.Generator().manual_seed(0)))
    noise = noise - torch.tensor([0.0, 0.5, 0.5]).view(3, 1, 1, 1)
    stds = noise.flatten(1).std(dim=1)
    assert torch.allclose(stds, torch.tensor([1 / 3**0.5, 1 / 2**0.5, 6**0.5 / 4]), rtol=0.02)
    corr = torch.corrcoef(noise.flatten(1))
    assert float((corr - torch.eye(3)).abs().max()) < 0.01


def test_level_scales_are_the_planes_measured_noise() -> None:
    """The level each plane is told is the standard deviation its noise really has."""
    view = GrayPlanes()
    clean = torch.rand(1, 3, 300, 400, generator=torch.Generator().manual_seed(1))
    noise = 0.1 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2))
    residual = view.split(clean + noise) - view.split(clean)
    measured = residual.flatten(1).std(dim=1)
    assert torch.allclose(measured, 0.1 * torch.tensor(view.level_scales(3)), rtol=0.02)
    assert view.level_scales(1) == NativeColour().level_scales(3) == (1.0,)


@pytest.mark.parametrize("channels", [1, 3])
def test_split_then_merge_of_an_untouched_image_gives_it_back(channels: int) -> None:
    x = torch.rand(1, channels, 20, 30)
    for view in (GrayPlanes(), NativeColour()):
        planes = view.split(x)
        assert planes.shape[0] == view.passes(channels)
        assert torch.allclose(view.merge(planes, channels), x, atol=1e-6)


def test_each_network_width_has_its_view() -> None:
    assert isinstance(planes_for(1), GrayPlanes) and isinstance(planes_for(3), NativeColour)
    assert (GrayPlanes().passes(3), NativeColour().passes(3)) == (5, 1)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        planes_for(2)
