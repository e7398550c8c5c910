"""The VAE's distributions: the posterior, a diagonal Gaussian q(z|x) = N(mu, diag(sigma^2)), and
the decoder's likelihood p(x|z) over the pixels."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from model.config import Likelihood

LOG_2PI = math.log(2.0 * math.pi)


class DiagonalGaussian:
    """A batch of diagonal Gaussians over the latent, parameterised by mean and log-variance."""

    def __init__(self, mean: torch.Tensor, logvar: torch.Tensor) -> None:
        self.mean = mean
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        """A reparameterised draw z = mu + sigma * eps, so gradients flow to mu and sigma."""
        eps = torch.randn(
            self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype
        )
        return self.mean + self.std * eps

    def sample_n(self, k: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``k`` draws per item: shape (k, batch, latent).

        The noise is drawn on the generator's device and moved, so a CPU generator gives the same
        draws whatever device the model runs on (evaluation figures then match across devices).
        """
        shape = (k, *self.mean.shape)
        where = generator.device if generator is not None else self.mean.device
        eps = torch.randn(shape, generator=generator, device=where, dtype=self.mean.dtype)
        eps = eps.to(self.mean.device, non_blocking=True)
        return self.mean.unsqueeze(0) + self.std.unsqueeze(0) * eps

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) in closed form, summed over the latent: one value per item."""
        return 0.5 * torch.sum(self.mean.pow(2) + self.logvar.exp() - 1.0 - self.logvar, dim=-1)

    def log_prob(self, z: torch.Tensor) -> torch.Tensor:
        """log q(z|x) summed over the latent; ``z`` broadcasts against the batch."""
        return -0.5 * torch.sum(
            (z - self.mean).pow(2) / self.logvar.exp() + self.logvar + LOG_2PI, dim=-1
        )


def standard_normal_log_prob(z: torch.Tensor) -> torch.Tensor:
    """log N(z; 0, I) summed over the last dimension."""
    return -0.5 * torch.sum(z.pow(2) + LOG_2PI, dim=-1)


class PixelLikelihood:
    """p(x|z), independent per pixel, from the decoder's logits: Bernoulli (``sigmoid(logits)``
    the probability of a 1) or Gaussian (mean ``logits``, standard deviation ``exp(log_sigma)``)."""

    def __init__(self, kind: Likelihood, log_sigma: torch.Tensor) -> None:
        self.kind = kind
        self.log_sigma = log_sigma

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """The mean image in [0, 1]."""
        if self.kind == "bernoulli":
            return torch.sigmoid(logits)
        return logits.clamp(0.0, 1.0)

    def log_prob(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over the pixels (the last three dimensions): one value per item;
        ``logits`` may carry extra leading dimensions, against which ``x`` broadcasts."""
        if self.kind == "bernoulli":
            ll = -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none")
        elif self.kind in ("gaussian", "gaussian-learned"):
            log_sigma = self.log_sigma
            ll = -((x - logits) ** 2) / (2.0 * torch.exp(2.0 * log_sigma)) - log_sigma - 0.5 * LOG_2PI
        else:
            raise ValueError(f"likelihood {self.kind!r} is not a VAE likelihood")
        return ll.flatten(start_dim=-3).sum(-1)
