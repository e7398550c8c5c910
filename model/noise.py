"""Noise recipes that corrupt training inputs; the recipe is recorded in the checkpoint."""

from __future__ import annotations

import torch

from model.config import NoiseConfig


def draw_levels(
    cfg: NoiseConfig, n: int, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """One noise level per sample, uniform in [sigma_min, sigma_max]: shape (n, 1, 1, 1)."""
    u = torch.rand(n, 1, 1, 1, generator=generator, device=device)
    return cfg.sigma_min + (cfg.sigma_max - cfg.sigma_min) * u


def corrupt(
    x: torch.Tensor, cfg: NoiseConfig, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Apply the recipe to a batch in [0, 1]; returns a new tensor."""
    if cfg.kind == "none":
        return x.clone()
    level = draw_levels(cfg, x.shape[0], generator, x.device)
    if cfg.kind == "gaussian":
        noisy = x + level * torch.randn(x.shape, generator=generator, device=x.device)
        return noisy.clamp(0.0, 1.0) if cfg.clip else noisy
    hit = torch.rand(x.shape, generator=generator, device=x.device) < level
    if cfg.kind == "salt-pepper":
        salt = (torch.rand(x.shape, generator=generator, device=x.device) < 0.5).to(x.dtype)
        return torch.where(hit, salt, x)
    if cfg.kind == "mask":
        return torch.where(hit, torch.zeros_like(x), x)
    raise ValueError(f"unknown noise kind {cfg.kind!r}")


def add_gaussian(
    x: torch.Tensor, sigma: float, generator: torch.Generator | None = None, clip: bool = True
) -> torch.Tensor:
    """Fixed-sigma Gaussian noise, as the evaluation protocol uses."""
    noisy = x + sigma * torch.randn(x.shape, generator=generator, device=x.device)
    return noisy.clamp(0.0, 1.0) if clip else noisy
