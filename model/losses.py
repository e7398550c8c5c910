"""Training losses, assembled outside the networks' ``forward`` (the VAE's likelihood is
``model.distributions.PixelLikelihood``, which serving uses too)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from model.distributions import DiagonalGaussian
from model.networks import VAE


def vae_loss(
    model: VAE,
    target: torch.Tensor,
    logits: torch.Tensor,
    posterior: DiagonalGaussian,
    beta: float = 1.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Negative ELBO per item, averaged: reconstruction + beta * KL(q(z|x) || N(0, I)).

    The parts (their means) come back as detached tensors, still on the device: reading them waits
    for it, so the training loop reads them only when it shows them.
    """
    rec = -model.likelihood.log_prob(target, logits)
    kl = posterior.kl()
    loss = (rec + beta * kl).mean()
    return loss, {"rec": rec.mean().detach(), "kl": kl.mean().detach()}


def dae_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error per pixel: what PSNR measures."""
    return F.mse_loss(output, target)
