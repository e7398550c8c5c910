"""Noise: the one Gaussian noise function of ``model/`` and the training recipes built on it."""

from __future__ import annotations

import math

import torch

from model.config import NoiseConfig


def gaussian_noise(
    clean: torch.Tensor,
    sigma: torch.Tensor | float,
    normal: torch.Tensor,
    clip: torch.Tensor | bool = False,
    eight_bit: torch.Tensor | bool = False,
) -> torch.Tensor:
    """``clean + sigma * normal`` on the [0, 1] scale; a new tensor.

    ``normal``: standard normal draws of ``clean``'s shape (the caller's generator decides them).
    ``sigma``: a float or one level per item, broadcastable (e.g. (B, 1, 1, 1)).
    ``clip``: clipped to [0, 1]; ``eight_bit``: clipped and rounded to 8 bits (multiples of 1/255),
    what a camera or an editor saves. Each is a bool for the whole batch or one bool per item (B,).
    """
    noisy = clean + sigma * normal
    if clip is False and eight_bit is False:
        return noisy
    clip_t = torch.as_tensor(clip, device=clean.device)
    eight_t = torch.as_tensor(eight_bit, device=clean.device)
    shape = (-1,) + (1,) * (clean.dim() - 1)
    clip_t = clip_t.reshape(shape) if clip_t.dim() else clip_t
    eight_t = eight_t.reshape(shape) if eight_t.dim() else eight_t
    clipped = noisy.clamp(0.0, 1.0)
    rounded = torch.round(clipped * 255.0) / 255.0
    return torch.where(eight_t, rounded, torch.where(clip_t, clipped, noisy))


def draw_levels(
    cfg: NoiseConfig, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """One noise level per sample, uniform in [sigma_min, sigma_max]: shape (n, 1, 1, 1)."""
    u = torch.rand(n, 1, 1, 1, generator=generator, device=device)
    return cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * u


def item_count(n: int, fraction: float) -> int:
    """How many of a batch's ``n`` items ``fraction`` of it is: ``n * fraction`` rounded half up,
    but at least one when ``fraction > 0`` and, with ``n > 1``, not all when ``fraction < 1``: a
    fraction promised for every batch is in every batch, and so is the rest."""
    if fraction <= 0.0 or n == 0:
        return 0
    if fraction >= 1.0:
        return n
    return min(max(math.floor(n * fraction + 0.5), 1), max(n - 1, 1))


def eight_bit_items(cfg: NoiseConfig, n: int, device: torch.device) -> torch.Tensor:
    """Which of a batch's ``n`` items get 8-bit noise: the first ``item_count(n, eight_bit_fraction)``.

    A fixed count, not a draw, so that every batch holds them (the items are in random order).
    """
    return torch.arange(n, device=device) < item_count(n, cfg.eight_bit_fraction)


def spread_items(n: int, fraction: float, device: torch.device) -> torch.Tensor:
    """``item_count(n, fraction)`` of a batch's ``n`` items, spread evenly over it (every fourth
    for 0.25): any leading block, such as ``eight_bit_items``, holds its share of them."""
    i = torch.arange(n, device=device)
    count = item_count(n, fraction)
    return (i + 1) * count // n > i * count // n


def corrupt(
    x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the recipe to a batch in [0, 1]; returns a new tensor."""
    if cfg.kind == "none":
        return x.clone()
    level = draw_levels(cfg, x.shape[0], generator, x.device)
    if cfg.kind == "gaussian":
        normal = torch.randn(x.shape, generator=generator, device=x.device)
        return gaussian_noise(x, level, normal, clip=cfg.clip,
                              eight_bit=eight_bit_items(cfg, x.shape[0], x.device))
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if cfg.kind == "salt-pepper":
        salt = (torch.rand(x.shape, generator=generator, device=x.device) < 0.5).to(x.dtype)
        return torch.where(hit, salt, x)
    if cfg.kind == "mask":
        return torch.where(hit, torch.zeros_like(x), x)
    raise ValueError(f"unknown noise kind {cfg.kind!r}")
