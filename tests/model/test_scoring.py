"""Serving-time scores of a VAE: the importance-weighted bound, the likelihoods, the check."""

from __future__ import annotations

import pytest
import torch

from model.networks import VAE
from model.presets import get_preset
from model.scoring import iwae_nll, log_likelihood


def vae() -> VAE:
    torch.manual_seed(0)
    return VAE(get_preset("mnist-vae").model).eval()


def test_iwae_bound_is_tighter_than_the_elbo() -> None:
    model = vae()
    x = (torch.rand(4, 1, 28, 28) > 0.7).float()
    nll, neg_elbo = iwae_nll(model, x, k=64, chunk=16, generator=torch.Generator().manual_seed(0))
    assert nll.shape == neg_elbo.shape == (4,)
    assert torch.all(nll <= neg_elbo + 1e-4)


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
    torch.testing.assert_close(log_likelihood(model, x, logits), expected)
