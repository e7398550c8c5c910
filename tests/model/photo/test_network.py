"""The photo network: any size, the level input, gray and native colour shapes."""

from __future__ import annotations

import pytest
import torch

from model.config import ModelConfig
from model.photo.network import PhotoDenoiser


def test_network_keeps_any_size_and_conditions_on_the_level() -> None:
    net = PhotoDenoiser(ModelConfig(kind="photo", channels=1, hidden=[8, 16, 32], depth=1))
    with torch.no_grad():
        net.tail.weight.normal_(0.0, 0.1)
    for h, w in [(1, 1), (1, 9), (13, 1), (7, 5), (33, 20)]:
        assert net(torch.rand(2, 1, h, w)).shape == (2, 1, h, w)
    x = torch.rand(2, 1, 16, 16)
    blind = net(x)
    known = net(x, torch.tensor([0.1, float("nan")]))
    assert not torch.allclose(blind[0], known[0])  # the level reaches the network
    assert torch.allclose(blind[1], known[1])  # NaN means unknown: same as blind


@pytest.mark.parametrize("channels", [1, 3])
def test_gray_and_colour_networks_differ_only_in_their_first_and_last_layers(channels: int) -> None:
    gray = PhotoDenoiser(ModelConfig(kind="photo", channels=1, hidden=[8, 16], depth=1))
    net = PhotoDenoiser(ModelConfig(kind="photo", channels=channels, hidden=[8, 16], depth=1))
    assert net(torch.rand(2, channels, 12, 9)).shape == (2, channels, 12, 9)
    differ = {k for k, v in net.state_dict().items() if v.shape != gray.state_dict()[k].shape}
    assert differ == (set() if channels == 1 else {"head.0.weight", "tail.weight", "tail.bias"})


@pytest.mark.parametrize(("hidden", "depth", "context"), [
    ([4, 4, 4, 4], 2, 47),  # the shipped photo-denoiser's levels and depth, narrower
    ([4, 4], 1, 6),
    ([4, 4, 4, 4, 4], 2, 95),
    ([4], 5, 5),  # DnCNN-style: 5 convolutions of 3x3
])
def test_context_is_how_far_the_input_a_block_of_output_depends_on_reaches(
    hidden: list[int], depth: int, context: int
) -> None:
    """The input pixels that one block of output (on the downsampling grid) depends on, found by
    the gradient, reach exactly ``context`` beyond it: the overlap tiles need."""
    net = PhotoDenoiser(ModelConfig(kind="photo", channels=1, hidden=hidden, depth=depth)).double()
    with torch.no_grad():  # positive weights on a positive image: every ReLU passes, no path is cut
        for param in net.parameters():
            param.abs_()
    assert net.context == context
    m = net.multiple
    start = (context + m) // m * m  # a block with more than its context on each side
    size = start + m + context + m
    x = torch.rand(1, 1, size, size, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    x.requires_grad_()
    net.noise(x)[:, :, start : start + m, size // 2].sum().backward()
    assert x.grad is not None
    rows = (x.grad.abs().sum(dim=(0, 1, 3)) > 0).nonzero().flatten()
    assert max(start - int(rows.min()), int(rows.max()) - (start + m - 1)) == context
