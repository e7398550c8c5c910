"""The VAE posterior: a diagonal Gaussian, its KL to the prior, its samples and densities."""

from __future__ import annotations

import math

import torch
from torch.distributions import Normal, kl_divergence

from model.distributions import DiagonalGaussian, standard_normal_log_prob


def test_kl_of_known_gaussians() -> None:
    # KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1 - log s^2) / 2 per dimension, summed
    q = DiagonalGaussian(torch.tensor([[1.0, 0.0], [0.0, 0.0]]),
                         torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]]))
    expected = torch.tensor([0.5 + (4.0 - 1.0 - math.log(4.0)) / 2, 0.0])
    torch.testing.assert_close(q.kl(), expected)


def test_kl_matches_closed_form() -> None:
    torch.manual_seed(0)
    mean, logvar = torch.randn(5, 7), torch.randn(5, 7)
    q = DiagonalGaussian(mean, logvar)
    expected = kl_divergence(Normal(mean, torch.exp(0.5 * logvar)), Normal(0.0, 1.0)).sum(-1)
    torch.testing.assert_close(q.kl(), expected)


def test_kl_matches_monte_carlo() -> None:
    gen = torch.Generator().manual_seed(0)
    q = DiagonalGaussian(torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]]))
    z = q.sample_n(200_000, gen)
    mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, q.kl(), atol=0.01, rtol=0.01)


def test_log_probs_match_torch() -> None:
    mean, logvar = torch.tensor([[0.5, -1.0]]), torch.tensor([[0.2, -0.7]])
    z = torch.randn(3, 1, 2, generator=torch.Generator().manual_seed(0))
    expected = Normal(mean, torch.exp(0.5 * logvar)).log_prob(z).sum(-1)
    torch.testing.assert_close(DiagonalGaussian(mean, logvar).log_prob(z), expected)
    torch.testing.assert_close(standard_normal_log_prob(z), Normal(0.0, 1.0).log_prob(z).sum(-1))


def test_reparameterised_sample_carries_gradients() -> None:
    mean = torch.zeros(3, 4, requires_grad=True)
    logvar = torch.zeros(3, 4, requires_grad=True)
    DiagonalGaussian(mean, logvar).sample(torch.Generator().manual_seed(1)).sum().backward()
    assert mean.grad is not None and torch.all(mean.grad == 1)
    assert logvar.grad is not None and logvar.grad.abs().sum() > 0


def test_sample_is_seeded_and_mode_is_the_mean() -> None:
    q = DiagonalGaussian(torch.randn(2, 3), torch.randn(2, 3))
    a = q.sample(torch.Generator().manual_seed(5))
    b = q.sample(torch.Generator().manual_seed(5))
    assert torch.equal(a, b)
    assert torch.equal(q.mode(), q.mean)
