"""The training losses, against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from model.distributions import DiagonalGaussian
from model.losses import dae_loss, vae_loss
from model.networks import VAE
from model.presets import get_preset


def test_vae_loss_is_the_reconstruction_plus_beta_times_the_kl() -> None:
    model = VAE(get_preset("mnist-vae").model)  # Bernoulli likelihood
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    # p = 1/2 for every pixel: log 2 nats each, whatever x is
    logits = torch.zeros_like(x, requires_grad=True)
    # KL(N(1, 1) || N(0, 1)) = 1/2 in the first dimension, 0 in the others
    posterior = DiagonalGaussian(torch.tensor([[1.0, 0.0]] * 3, requires_grad=True), torch.zeros(3, 2))
    rec = 28 * 28 * math.log(2.0)
    loss, parts = vae_loss(model, x, logits, posterior, beta=2.0)
    assert float(loss.detach()) == pytest.approx(rec + 2.0 * 0.5)
    # the parts stay tensors, cut from the graph, so that the training loop reads them only when it
    # shows them (reading one waits for the device)
    assert all(torch.is_tensor(p) and p.ndim == 0 and not p.requires_grad for p in parts.values())
    assert {k: float(p) for k, p in parts.items()} == pytest.approx({"rec": rec, "kl": 0.5})


def test_dae_loss_is_the_mean_squared_error() -> None:
    target = torch.rand(2, 1, 8, 8)
    assert float(dae_loss(target + 0.1, target)) == pytest.approx(0.01)
    assert float(dae_loss(target, target)) == 0.0
