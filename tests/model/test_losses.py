"""The posterior, the KL term and the ELBO."""

from __future__ import annotations

import torch
from torch.distributions import Normal, kl_divergence

from model.distributions import DiagonalGaussian
from model.losses import vae_loss
from model.networks import VAE
from model.presets import get_preset
from model.scoring import iwae_nll


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
    from model.distributions import standard_normal_log_prob

    mc = (q.log_prob(z) - standard_normal_log_prob(z)).mean(0)
    torch.testing.assert_close(mc, q.kl(), atol=0.01, rtol=0.01)


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


def test_iwae_bound_is_tighter_than_the_elbo() -> None:
    torch.manual_seed(0)
    cfg = get_preset("mnist-vae")
    model = VAE(cfg.model).eval()
    x = (torch.rand(4, 1, 28, 28) > 0.7).float()
    nll, neg_elbo = iwae_nll(model, x, k=64, chunk=16, generator=torch.Generator().manual_seed(0))
    assert nll.shape == neg_elbo.shape == (4,)
    assert torch.all(nll <= neg_elbo + 1e-4)
    logits, posterior = model(x, torch.Generator().manual_seed(1))
    loss, parts = vae_loss(model, x, logits, posterior)
    assert abs(loss.item() - (parts["rec"] + parts["kl"])) < 1e-3
