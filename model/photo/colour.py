"""How a photo network sees gray and colour images: the planes it denoises and the image made back.

Two kinds of network, told apart by their ``channels`` in one place (``planes_for``):

- ``NativeColour`` (3 channels in and out) denoises an RGB image in one pass; a gray image is given
  to it as three equal planes and the three outputs are averaged;
- ``GrayPlanes`` (1 channel) denoises a gray image directly; an RGB image becomes three planes of an
  opponent colour space whose rows are orthogonal::

      Y = (R + G + B) / 3,   U = (R - B) / 2 + 1/2,   V = (R - 2G + B) / 4 + 1/2

  Orthogonal rows keep white Gaussian RGB noise white and independent across the planes, with a
  known level in each (sigma/sqrt(3), sigma/sqrt(2), sigma*sqrt(6)/4), and every plane stays in
  [0, 1]. The chroma planes are also denoised negated (1 - U, 1 - V) and the two results averaged,
  which makes the chroma estimate exactly odd around 1/2: a neutral image comes back exactly
  neutral. That is five planes, so five gray passes per colour image.
"""

from __future__ import annotations

import math
from typing import Protocol

import torch

OPP_NOISE_SCALE = (1.0 / math.sqrt(3.0), 1.0 / math.sqrt(2.0), math.sqrt(6.0) / 4.0)


def rgb_to_opponent(x: torch.Tensor) -> torch.Tensor:
    """(1, 3, H, W) RGB in [0, 1] -> (3, 1, H, W): the Y, U, V planes as a batch of gray images."""
    r, g, b = x[0, 0], x[0, 1], x[0, 2]
    y = (r + g + b) / 3.0
    u = (r - b) / 2.0 + 0.5
    v = (r - 2.0 * g + b) / 4.0 + 0.5
    return torch.stack([y, u, v])[:, None]


def opponent_to_rgb(t: torch.Tensor) -> torch.Tensor:
    """Exact inverse of ``rgb_to_opponent``: (3, 1, H, W) -> (1, 3, H, W)."""
    y, u, v = t[0, 0], t[1, 0] - 0.5, t[2, 0] - 0.5
    r = y + u + (2.0 / 3.0) * v
    g = y - (4.0 / 3.0) * v
    b = y - u + (2.0 / 3.0) * v
    return torch.stack([r, g, b])[None]


class Planes(Protocol):
    """One kind of network's view of an image of ``channels`` planes (1 gray, 3 RGB)."""

    def passes(self, channels: int) -> int:
        """Images the network processes for one image (one forward each)."""
        ...

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(1, C, H, W) image -> (passes, network channels, H, W) planes."""
        ...

    def level_scales(self, channels: int) -> tuple[float, ...]:
        """Each plane's noise level relative to the image's (white Gaussian noise)."""
        ...

    def merge(self, out: torch.Tensor, channels: int) -> torch.Tensor:
        """The denoised planes -> the (1, C, H, W) image."""
        ...


class NativeColour:
    """A network with 3 channels: RGB as it is, gray as three equal planes (outputs averaged)."""

    def passes(self, channels: int) -> int:
        return 1

    def split(self, x: torch.Tensor) -> torch.Tensor:
        return x if x.shape[1] == 3 else x.expand(1, 3, *x.shape[2:])

    def level_scales(self, channels: int) -> tuple[float, ...]:
        return (1.0,)

    def merge(self, out: torch.Tensor, channels: int) -> torch.Tensor:
        return out if channels == 3 else out.mean(dim=1, keepdim=True)


class GrayPlanes:
    """A network with 1 channel: gray as it is, RGB as Y, U, V and the negated U and V."""

    def passes(self, channels: int) -> int:
        return 1 if channels == 1 else 5

    def split(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            return x
        planes = rgb_to_opponent(x)
        return torch.cat([planes, 1.0 - planes[1:]])

    def level_scales(self, channels: int) -> tuple[float, ...]:
        return (1.0,) if channels == 1 else OPP_NOISE_SCALE + OPP_NOISE_SCALE[1:]

    def merge(self, out: torch.Tensor, channels: int) -> torch.Tensor:
        if channels == 1:
            return out
        # chroma denoised both ways: the average is exactly odd around 1/2
        return opponent_to_rgb(torch.cat([out[:1], 0.5 * (out[1:3] + 1.0 - out[3:])]))


def planes_for(network_channels: int) -> Planes:
    """The view of a network with ``network_channels`` (1 or 3) channels."""
    if network_channels == 3:
        return NativeColour()
    if network_channels == 1:
        return GrayPlanes()
    raise ValueError(f"a photo network has 1 or 3 channels, not {network_channels}")
