"""Synthetic photographs and small random photo networks for the photo tests."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from model.checkpoint import save_checkpoint
from model.metrics import psnr as psnr_array
from model.photo.network import PhotoDenoiser
from model.photo.preset import photo_color_preset, photo_gray_preset, photo_preset


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(psnr_array(a, b))


def photo(c: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    """A smooth image with edges, in [0, 1]."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    img = torch.stack([0.3 + 0.4 * (xx * torch.rand(1, generator=gen) + yy * torch.rand(1, generator=gen))
                       for _ in range(c)])[None]
    img[..., h // 4 : h // 2, w // 3 : w // 2] = 0.8
    return img.clamp(0, 1)


def busy_model(channels: int = 1) -> PhotoDenoiser:
    """A random network whose output leans heavily on context, so tiling mistakes would show."""
    torch.manual_seed(0)
    # the preset's levels and depth (so its receptive field), narrower to keep the test quick
    cfg = dataclasses.replace(photo_preset().model, hidden=[8, 16, 32, 64], channels=channels)
    net = PhotoDenoiser(cfg)
    with torch.no_grad():
        net.tail.weight.normal_(0.0, 0.05)
    return net.eval()


def save_photo_net(folder: Path, channels: int, seed: int) -> Path:
    """A ``busy_model`` of ``channels`` saved as a photo checkpoint (its last bias set by ``seed``,
    so two of them differ)."""
    cfg = photo_color_preset() if channels == 3 else photo_gray_preset()
    net = busy_model(channels)
    cfg.model = net.cfg
    with torch.no_grad():
        net.tail.bias.fill_(0.01 * seed)
    save_checkpoint(folder, net, cfg)
    return folder
