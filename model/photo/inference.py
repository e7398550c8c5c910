"""Inference with the photo denoiser: any size, gray or colour, in overlapping tiles.

Colour: the network is a gray model. An RGB image is turned into three planes of an opponent colour
space whose rows are orthogonal::

    Y = (R + G + B) / 3,   U = (R - B) / 2 + 1/2,   V = (R - 2G + B) / 4 + 1/2

Orthogonal rows keep white Gaussian RGB noise white and independent across the planes, with a known
level in each (sigma/sqrt(3), sigma/sqrt(2), sigma*sqrt(6)/4), and every plane stays in [0, 1]. The
three planes are denoised as one batch and mapped back exactly (the transform is invertible). The
chroma planes are also denoised negated (1 - U, 1 - V) and the two results averaged, which makes the
chroma estimate exactly odd around 1/2: a neutral image (flat U = V = 1/2) comes back exactly
neutral, so there is no colour cast by construction. Alpha is not the model's business; the service strips it
and puts it back unchanged.

Tiles: the image is cut into ``tile`` x ``tile`` cores, each processed with ``overlap`` pixels of
real context on every side (clipped at the image border) and only the core is kept. Tile origins sit
on the network's downsampling grid, so a tiled result differs from the whole-image result only
through the context cut beyond ``overlap`` pixels: far below 0.05 dB.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from model.photo_net import PhotoDenoiser

SIGMA_CAP = 55.0  # levels are clamped to the training range (0-255 scale)
OPP_NOISE_SCALE = (1.0 / math.sqrt(3.0), 1.0 / math.sqrt(2.0), math.sqrt(6.0) / 4.0)
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 48  # >= the receptive-field radius (47): tiles equal the whole image
MARGIN = 16  # mirrored border, cropped after the network


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


def pad_edges(x: torch.Tensor, margin: int) -> torch.Tensor:
    """Mirror ``margin`` pixels on every side (edge replication along a side too short to mirror).

    The network's zero-padded convolutions then see real-looking content at the image border, so
    its border artefacts land in the margin that is cropped away.
    """
    for dim in (-2, -1):
        mode = "reflect" if x.shape[dim] > margin else "replicate"
        pad = (0, 0, margin, margin) if dim == -2 else (margin, margin, 0, 0)
        x = F.pad(x, pad, mode=mode)
    return x


def _network(model: nn.Module) -> PhotoDenoiser:
    inner = model.module if hasattr(model, "module") else model
    if not isinstance(inner, PhotoDenoiser):
        raise TypeError(f"expected a PhotoDenoiser, got {type(inner).__name__}")
    return inner


def _spans(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """(crop_start, crop_end, core_start, core_end) along one axis."""
    spans = []
    for start in range(0, size, tile):
        end = min(start + tile, size)
        spans.append((max(0, start - overlap), min(size, end + overlap), start, end))
    return spans


def run_tiled(
    net: PhotoDenoiser,
    planes: torch.Tensor,
    level: torch.Tensor | None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> torch.Tensor:
    """The network's output on (B, C, H, W), computed tile by tile (memory ~ (tile+2*overlap)^2)."""
    m = net.multiple
    tile = max(m, (tile // m) * m)
    overlap = ((max(overlap, 0) + m - 1) // m) * m  # crop origins stay on the downsampling grid
    _, _, h, w = planes.shape
    if h <= tile and w <= tile:
        return net(planes, level)
    out = torch.empty_like(planes)
    for y0, y1, cy0, cy1 in _spans(h, tile, overlap):
        for x0, x1, cx0, cx1 in _spans(w, tile, overlap):
            result = net(planes[..., y0:y1, x0:x1], level)
            out[..., cy0:cy1, cx0:cx1] = result[..., cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    return out


@torch.no_grad()
def denoise_image(
    model: nn.Module,
    x: torch.Tensor,
    sigma: float | None = None,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
) -> tuple[torch.Tensor, float]:
    """Denoise one image; returns ``(y, sigma_est)``.

    ``x``: float tensor (1, C, H, W) in [0, 1], C = 1 (gray) or 3 (RGB), any H, W >= 1.
    ``sigma``: the noise level on the 0-255 scale when the client knows it (clamped to [0, 55]);
    None: blind. ``y`` has the shape of ``x``, in [0, 1]; ``sigma_est`` (0-255 scale) is the
    standard deviation of the noise the model removed.
    """
    if x.dim() != 4 or x.shape[0] != 1 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected a (1, C, H, W) tensor with C = 1 or 3, got {tuple(x.shape)}")
    if x.shape[2] < 1 or x.shape[3] < 1:
        raise ValueError("image has no pixels")
    if sigma is not None and not (math.isfinite(sigma) and sigma >= 0.0):
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    net = _network(model)
    device = next(net.parameters()).device
    x = x.to(device=device, dtype=torch.float32)
    if not torch.isfinite(x).all():
        raise ValueError("image holds NaN or infinite values")
    colour = x.shape[1] == 3
    planes = rgb_to_opponent(x) if colour else x
    scales: tuple[float, ...] = OPP_NOISE_SCALE if colour else (1.0,)
    if colour:  # chroma is also denoised negated: the average is exactly odd around 1/2
        planes = torch.cat([planes, 1.0 - planes[1:]])
        scales = scales + scales[1:]
    level = None
    if sigma is not None:
        level = torch.tensor(scales, device=device) * (min(sigma, SIGMA_CAP) / 255.0)
    h, w = planes.shape[-2:]
    out = run_tiled(net, pad_edges(planes, MARGIN), level, tile, overlap)
    out = out[..., MARGIN : MARGIN + h, MARGIN : MARGIN + w]
    if colour:
        out = torch.cat([out[:1], 0.5 * (out[1:3] + 1.0 - out[3:])])
    y = opponent_to_rgb(out) if colour else out
    sigma_est = estimate_sigma(x, y)
    return y.clamp_(0.0, 1.0), sigma_est


def estimate_sigma(noisy: torch.Tensor, denoised: torch.Tensor) -> float:
    """Noise level (0-255 scale) as the RMS of what the denoiser removed, before clipping."""
    return float(torch.sqrt(torch.mean((noisy - denoised) ** 2)) * 255.0)
