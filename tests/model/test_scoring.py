"""Serving-time scores of a VAE: the importance-weighted bound, the likelihoods, the check."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.distributions import MultivariateNormal, Normal, kl_divergence

from model.distributions import DiagonalGaussian, PixelLikelihood
from model.networks import VAE
from model.presets import get_preset
from model.scoring import iwae_nll


def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(get_preset("mnist-vae").model).eval()


DIM_X = 5


class LinearGaussianVAE(nn.Module):
    """z ~ N(0, I), x = W z + b + s * eps: log p(x) = log N(x; b, W W^T + s^2 I), in closed form.

    W's columns are orthogonal, so the exact posterior p(z | x) is a diagonal Gaussian. The encoder
    returns it, its mean moved by ``shift`` and its variance times ``widen``: (0, 1) is exact.
    """

    def __init__(self, shift: float = 0.0, widen: float = 1.0) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        q, _ = torch.linalg.qr(torch.randn(DIM_X, 2, generator=gen, dtype=torch.float64))
        self.w = q * torch.tensor([2.0, 1.0], dtype=torch.float64)
        self.b = torch.randn(DIM_X, generator=gen, dtype=torch.float64)
        self.s = 0.8
        self.likelihood = PixelLikelihood("gaussian", torch.tensor(math.log(self.s), dtype=torch.float64))
        self.shift, self.widen = shift, widen

    def posterior(self, x: torch.Tensor) -> Normal:
        precision = 1.0 + self.w.pow(2).sum(0) / self.s**2  # diagonal, as W^T W is
        mean = (x.flatten(1) - self.b) @ self.w / self.s**2 / precision
        return Normal(mean, precision.rsqrt().expand_as(mean))

    def encode(self, x: torch.Tensor) -> DiagonalGaussian:
        exact = self.posterior(x)
        return DiagonalGaussian(exact.mean + self.shift, (exact.variance * self.widen).log())

    def decode_logits(self, z: torch.Tensor) -> torch.Tensor:
        return (z @ self.w.T + self.b).view(-1, 1, 1, DIM_X)

    def nll(self, x: torch.Tensor) -> torch.Tensor:
        cov = self.w @ self.w.T + self.s**2 * torch.eye(DIM_X, dtype=torch.float64)
        return -MultivariateNormal(self.b, cov).log_prob(x.flatten(1))

    def sample_x(self, n: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(1)
        z = torch.randn(n, 2, generator=gen, dtype=torch.float64)
        eps = torch.randn(n, DIM_X, generator=gen, dtype=torch.float64)
        return (z @ self.w.T + self.b + self.s * eps).view(n, 1, 1, DIM_X)


def test_with_the_exact_posterior_both_scores_are_the_exact_nll() -> None:
    model = LinearGaussianVAE()
    x = model.sample_x(8)
    nll, neg_elbo = iwae_nll(model, x, k=5, chunk=2,  # type: ignore[arg-type]
                             generator=torch.Generator().manual_seed(0))
    assert nll.shape == neg_elbo.shape == (8,)
    # every importance weight p(x, z) / p(z | x) is p(x) itself
    torch.testing.assert_close(nll, model.nll(x))
    torch.testing.assert_close(neg_elbo, model.nll(x))


def test_with_a_poor_encoder_the_estimate_converges_to_the_exact_nll() -> None:
    model = LinearGaussianVAE(shift=0.5, widen=2.0)
    x = model.sample_x(64)
    errors = []
    for k in (1, 10, 100, 10_000):
        nll, neg_elbo = iwae_nll(model, x, k=k, chunk=1000,  # type: ignore[arg-type]
                                 generator=torch.Generator().manual_seed(k))
        errors.append(float((nll - model.nll(x)).abs().max()))
    assert errors[0] > errors[1] > errors[2] > errors[3]
    assert errors[0] > 2.0 and errors[3] < 0.1
    assert float((nll - model.nll(x)).mean()) == pytest.approx(0.0, abs=0.01)
    # the ELBO falls short of log p(x) by KL(q || p(z | x))
    q = model.encode(x)
    gap = kl_divergence(Normal(q.mean, q.std), model.posterior(x))
    assert float((neg_elbo - model.nll(x)).mean()) == pytest.approx(float(gap.sum(-1).mean()), rel=0.03)


class Stop(Exception):
    pass


def test_check_runs_before_every_chunk_and_its_exception_propagates() -> None:
    model = vae()
    x = (torch.rand(2, 1, 28, 28) > 0.7).float()
    calls: list[int] = []
    iwae_nll(model, x, k=50, chunk=16, check=lambda: calls.append(1))
    assert len(calls) == 4  # chunks of 16, 16, 16 and 2

    def stop_second() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise Stop("client gone")

    calls.clear()
    with pytest.raises(Stop, match="client gone"):
        iwae_nll(model, x, k=50, chunk=16, check=stop_second)
    assert len(calls) == 2


def test_gaussian_likelihood_is_the_squared_error_over_two_sigma_squared() -> None:
    cfg = get_preset("mnist-vae")
    cfg.model.likelihood = "gaussian"
    cfg.model.sigma = 0.5
    model = VAE(cfg.model)
    x = torch.rand(2, 1, 28, 28)
    logits = torch.rand(2, 1, 28, 28)
    expected = -(((x - logits) ** 2) / (2 * 0.25) + torch.log(torch.tensor(0.5))
                 + 0.5 * torch.log(torch.tensor(2 * torch.pi))).sum((1, 2, 3))
    torch.testing.assert_close(model.likelihood.log_prob(x, logits), expected)


def test_the_likelihood_gives_the_decoders_mean_and_the_bernoulli_log_probability() -> None:
    """One likelihood serves decoding (its mean), scoring and the loss (its log-probability)."""
    model = VAE(get_preset("mnist-vae").model)  # Bernoulli
    z = torch.randn(3, model.cfg.latent_dim, generator=torch.Generator().manual_seed(0))
    logits = model.decode_logits(z)
    torch.testing.assert_close(model.decode(z), torch.sigmoid(logits))
    x = (torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    p = torch.sigmoid(logits)
    expected = (x * p.log() + (1 - x) * (1 - p).log()).sum((1, 2, 3))
    torch.testing.assert_close(model.likelihood.log_prob(x, logits), expected, rtol=1e-4, atol=1e-3)
    gaussian = get_preset("mnist-vae").model
    gaussian.likelihood = "gaussian-learned"
    learned = VAE(gaussian)
    torch.testing.assert_close(learned.decode(z), learned.decode_logits(z).clamp(0.0, 1.0))
    with torch.no_grad():  # the learned sigma as it is now, not as it was
        learned.log_sigma.fill_(0.0)
    assert learned.likelihood.log_sigma.item() == 0.0
    mse = get_preset("mnist-vae").model
    mse.likelihood = "mse"
    with pytest.raises(ValueError, match="'mse' is not a VAE likelihood"):
        VAE(mse).likelihood.log_prob(x, logits)
